//! One live snapshot of a domain's disk through libvirt's backup API, as
//! virtnbdbackup takes them: `virsh backup-begin` with a pull-mode backup
//! XML (an NBD export on a unix socket, and `<incremental>` naming the
//! parent's checkpoint) and a checkpoint XML for the new checkpoint, both in
//! one call, so the checkpoint and the exported state are the same instant.
//! The export shows the disk as it was then while the guest writes on (QEMU
//! copies old blocks to a scratch file first); its `qemu:dirty-bitmap:`
//! context says what changed since the parent's checkpoint. Then
//! `virsh domjobabort` ends the job.
//!
//! Checkpoints are the bitmaps of the next incremental: the new one is
//! deleted again when the snapshot fails, and the older ones of this disk
//! only once the new snapshot's record is published ([`Checkpoints`]). A
//! job a killed run left is ended by a watchdog process that waits for this
//! one's end (a pipe closing), and found and ended by the next run too.
//!
//! The socket and the scratch file go in /var/tmp: QEMU runs as libvirt's
//! user (libvirt-qemu on Debian), which must be able to create them there.

use std::path::PathBuf;
use std::process::{Child, ChildStdin};
use std::time::{Duration, Instant};

use snap_shared::error::{Error, Result};

use super::job::{abort_job, end_leftover_job, watchdog};
use super::{DomDisk, Domain};
use crate::blocks::Take;
use crate::live::{Export, OURS, Parent, Since, Stop, plan_export};

/// The checkpoint a snapshot of `disk` named `snap` starts.
pub fn checkpoint_name(disk: &str, snap: &str) -> String {
    format!("{}{snap}", checkpoint_prefix(disk))
}

/// Every checkpoint of `disk` starts so. libvirt allows only letters,
/// digits, '_', '-' and '.' in a checkpoint's name, which disk names use
/// too: the disk name's length before it keeps one disk's prefix from
/// being the start of another's.
pub fn checkpoint_prefix(disk: &str) -> String {
    format!("{OURS}{}.{disk}.", disk.len())
}

/// Where QEMU puts the export's socket and scratch file.
pub(super) const SHARED_TMP: &str = "/var/tmp";

/// What `begin` needs.
pub struct BeginArgs<'a> {
    pub dom: &'a Domain,
    pub disk: &'a DomDisk,
    /// The image's format: checkpoints live only in qcow2 images.
    pub format: &'a str,
    pub virtual_size: u64,
    /// The store's name of the disk, and the new snapshot's.
    pub disk_name: &'a str,
    pub snap: &'a str,
    pub parent: Option<&'a Parent>,
    /// Freeze the guest's filesystems for the instant (`--quiesce`).
    pub freeze: bool,
}

/// A running pull-mode backup job of ours.
pub struct Backup {
    dom: Domain,
    target: String,
    socket: PathBuf,
    scratch: PathBuf,
    xml_dir: PathBuf,
    /// What the snapshot can read changes from, or why it reads everything.
    pub since: Since,
    /// How long `backup-begin` took with the guest frozen in it.
    pub frozen: Option<Duration>,
    active: bool,
    watchdog: Option<(Child, ChildStdin)>,
}

/// The checkpoint a snapshot started, to keep (deleting the older ones of
/// the disk) once its record is published, or to delete when it fails.
pub struct Checkpoints {
    dom: Domain,
    prefix: String,
    pub new: String,
    settled: bool,
}

impl Backup {
    /// Ends a job a killed run left, checks the parent's checkpoint, and
    /// starts the backup job with the new checkpoint. Returns what a
    /// finished snapshot keeps, and notes for the user.
    pub fn begin(a: BeginArgs<'_>) -> Result<(Backup, Option<Checkpoints>, Vec<String>)> {
        let mut notes = Vec::new();
        if let Some(left) = end_leftover_job(a.dom)? {
            notes.push(left);
        }
        let prefix = checkpoint_prefix(a.disk_name);
        let keeps = a.format == "qcow2";
        let existing = match keeps {
            true => checkpoint_names(a.dom)?,
            false => Vec::new(),
        };
        let since = plan_since(&a, keeps, &existing);
        let new = keeps.then(|| checkpoint_name(a.disk_name, a.snap));
        let base = format!(
            "{SHARED_TMP}/{OURS}{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
        );
        let mut b = Backup {
            dom: a.dom.clone(),
            target: a.disk.target.clone(),
            socket: PathBuf::from(format!("{base}.nbd")),
            scratch: PathBuf::from(format!("{base}.scratch")),
            xml_dir: crate::daemon::private_dir()?,
            since,
            frozen: None,
            active: false,
            watchdog: None,
        };
        let all = a.dom.disks()?;
        // The watchdog first: from the job's first instant, a killed run ends it.
        b.watchdog = Some(watchdog(a.dom, &b.socket)?);
        let t0 = Instant::now();
        match b.begin_job(&all, new.as_deref(), a.freeze) {
            Ok(()) => {}
            // The parent's checkpoint is listed but its bitmap is missing or
            // broken (a revert removed it, QEMU died holding it): it goes,
            // and the whole disk is read.
            Err(e) if matches!(b.since, Since::Bitmap(_)) && broken_checkpoint(&e.cause) => {
                let Since::Bitmap(old) = &b.since else {
                    unreachable!("matched above")
                };
                let old = old.clone();
                if a.dom.run("checkpoint-delete", &[&old]).is_err() {
                    a.dom.run("checkpoint-delete", &[&old, "--metadata"])?;
                }
                b.since =
                    Since::Everything(format!("the checkpoint {old} is broken ({})", e.cause));
                b.begin_job(&all, new.as_deref(), a.freeze)?;
            }
            Err(e) => return Err(e),
        }
        b.active = true;
        if a.freeze {
            b.frozen = Some(t0.elapsed());
        }
        let checkpoints = new.map(|new| Checkpoints {
            dom: a.dom.clone(),
            prefix,
            new,
            settled: false,
        });
        Ok((b, checkpoints, notes))
    }

    /// `virsh backup-begin` with the backup XML and the new checkpoint's.
    fn begin_job(&self, all: &[DomDisk], new: Option<&str>, freeze: bool) -> Result<()> {
        let bx = self.xml_dir.join("backup.xml");
        std::fs::write(&bx, self.backup_xml(all)).map_err(|e| Error::io(&bx, e))?;
        let mut args: Vec<String> = vec![bx.display().to_string()];
        if let Some(n) = new {
            let cx = self.xml_dir.join("checkpoint.xml");
            std::fs::write(&cx, checkpoint_xml(n, &self.target, all))
                .map_err(|e| Error::io(&cx, e))?;
            args.push(cx.display().to_string());
        }
        if freeze {
            args.push("--quiesce".into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.dom.run("backup-begin", &refs).map(drop).map_err(|e| match freeze {
            true => e.with_hint(
                "--freeze needs the QEMU guest agent running in the guest, and a \
                 <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel> \
                 in the domain; nothing was changed",
            ),
            false => e,
        })
    }

    fn backup_xml(&self, all: &[DomDisk]) -> String {
        let mut x = String::from("<domainbackup mode='pull'>\n");
        if let Since::Bitmap(c) = &self.since {
            x += &format!("  <incremental>{}</incremental>\n", xml_text(c));
        }
        x += &format!(
            "  <server transport='unix' socket='{}'/>\n  <disks>\n",
            xml_text(&self.socket.display().to_string())
        );
        for d in all.iter().filter(|d| d.device == "disk") {
            let t = xml_text(&d.target);
            if d.target == self.target {
                let bitmap = match self.since {
                    Since::Bitmap(_) => format!(" exportbitmap='backup-{t}'"),
                    Since::Everything(_) => String::new(),
                };
                x += &format!(
                    "    <disk name='{t}' backup='yes' type='file' exportname='{t}'{bitmap}>\
<scratch file='{}'/></disk>\n",
                    xml_text(&self.scratch.display().to_string())
                );
            } else {
                x += &format!("    <disk name='{t}' backup='no'/>\n");
            }
        }
        x + "  </disks>\n</domainbackup>\n"
    }

    /// Reads the export's extents and plans which blocks to read.
    pub fn plan(
        &mut self,
        block_size: u64,
        parent: Option<&Parent>,
        stop: &Stop,
    ) -> Result<(Export, Vec<(u64, Take)>)> {
        let bitmap = format!("backup-{}", self.target);
        let since = matches!(self.since, Since::Bitmap(_)).then_some(bitmap.as_str());
        plan_export(&self.socket, &self.target, since, parent, block_size, stop)
    }

    /// Ends the job (QEMU drops the export and the scratch file).
    pub fn finish(mut self) -> Result<()> {
        self.end()
    }

    fn end(&mut self) -> Result<()> {
        if self.active {
            self.active = false;
            abort_job(&self.dom)?;
        }
        for f in [&self.socket, &self.scratch] {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir_all(&self.xml_dir);
        if let Some((mut child, stdin)) = self.watchdog.take() {
            // The job is over: the watchdog finds none and exits.
            drop(stdin);
            let _ = child.wait();
        }
        Ok(())
    }
}

impl Drop for Backup {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

impl Checkpoints {
    /// The new snapshot is published: its checkpoint is the next one's
    /// base, and the disk's older checkpoints go.
    pub fn keep_new(mut self) -> Result<()> {
        self.settled = true;
        for old in checkpoint_names(&self.dom)? {
            if old.starts_with(&self.prefix) && old != self.new {
                self.dom.run("checkpoint-delete", &[&old])?;
            }
        }
        Ok(())
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        // A failed snapshot: its checkpoint goes (libvirt merges its bitmap
        // into the parent's, so no change is forgotten).
        if !self.settled {
            let _ = self.dom.run("checkpoint-delete", &[&self.new]);
        }
    }
}

/// libvirt's words for a checkpoint whose bitmap is not in the image.
fn broken_checkpoint(cause: &str) -> bool {
    cause.contains("checkpoint inconsistent")
        || cause.contains("missing or broken bitmap")
        || (cause.contains("bitmap") && cause.contains("not found"))
}

/// The parent's checkpoint when the export can be read as changes since it.
fn plan_since(a: &BeginArgs<'_>, keeps: bool, existing: &[String]) -> Since {
    let why = match a.parent {
        _ if !keeps => format!(
            "the disk is {}; libvirt keeps checkpoints only in qcow2 images",
            a.format
        ),
        None => "the disk's first snapshot through libvirt".to_string(),
        Some(p) if !existing.contains(&p.bitmap) => format!(
            "the domain has no checkpoint {} any more (redefined, or moved without its checkpoints)",
            p.bitmap
        ),
        Some(p) if p.virtual_size != a.virtual_size => {
            "the disk changed size since the last snapshot".to_string()
        }
        Some(p) if !p.map.is_file() => "the last snapshot's block map is missing".to_string(),
        Some(p) => return Since::Bitmap(p.bitmap.clone()),
    };
    Since::Everything(why)
}

fn checkpoint_xml(name: &str, target: &str, all: &[DomDisk]) -> String {
    let mut x = format!(
        "<domaincheckpoint>\n  <name>{}</name>\n  <disks>\n",
        xml_text(name)
    );
    for d in all.iter().filter(|d| d.device == "disk") {
        let how = if d.target == target { "bitmap" } else { "no" };
        x += &format!(
            "    <disk name='{}' checkpoint='{how}'/>\n",
            xml_text(&d.target)
        );
    }
    x + "  </disks>\n</domaincheckpoint>\n"
}

/// Text safe inside an XML attribute or element.
fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The domain's checkpoints, by name.
fn checkpoint_names(dom: &Domain) -> Result<Vec<String>> {
    dom.names("checkpoint-list")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disks() -> Vec<DomDisk> {
        let d = |t: &str, dev: &str| DomDisk {
            kind: "file".into(),
            device: dev.into(),
            target: t.into(),
            source: Some(PathBuf::from(format!("/i/{t}"))),
        };
        vec![d("vda", "disk"), d("vdb", "disk"), d("sda", "cdrom")]
    }

    /// Only the chosen disk is backed up and checkpointed; the others are
    /// named "no" (libvirt would include them), the cdrom left out.
    #[test]
    fn the_xml_names_one_disk() {
        let b = Backup {
            dom: Domain::new(Default::default(), "web"),
            target: "vdb".into(),
            socket: "/var/tmp/s.nbd".into(),
            scratch: "/var/tmp/s.scratch".into(),
            xml_dir: PathBuf::new(),
            since: Since::Bitmap("snap-disk-3.web.a".into()),
            frozen: None,
            active: false,
            watchdog: None,
        };
        let x = b.backup_xml(&disks());
        assert!(
            x.contains("<incremental>snap-disk-3.web.a</incremental>"),
            "{x}"
        );
        assert!(x.contains("<disk name='vda' backup='no'/>"), "{x}");
        assert!(x.contains("<disk name='vdb' backup='yes' type='file' exportname='vdb' exportbitmap='backup-vdb'><scratch file='/var/tmp/s.scratch'/></disk>"), "{x}");
        assert!(!x.contains("sda"), "{x}");
        let c = checkpoint_xml("n", "vdb", &disks());
        assert!(c.contains("<disk name='vda' checkpoint='no'/>"), "{c}");
        assert!(c.contains("<disk name='vdb' checkpoint='bitmap'/>"), "{c}");
    }

    /// A parent checkpoint libvirt no longer has means a full read, saying why.
    #[test]
    fn a_lost_checkpoint_means_a_full_read() {
        let t = std::env::temp_dir();
        let p = Parent {
            bitmap: "snap-disk-3.web.a".into(),
            map: t.clone(),
            virtual_size: 1 << 20,
        };
        let dom = Domain::new(Default::default(), "web");
        let disk = &disks()[0];
        let a = BeginArgs {
            dom: &dom,
            disk,
            format: "qcow2",
            virtual_size: 1 << 20,
            disk_name: "web",
            snap: "b",
            parent: Some(&p),
            freeze: false,
        };
        assert!(
            matches!(plan_since(&a, true, &[]), Since::Everything(w) if w.contains("no checkpoint"))
        );
        let raw = BeginArgs { format: "raw", ..a };
        assert!(
            matches!(plan_since(&raw, false, &[]), Since::Everything(w) if w.contains("qcow2"))
        );
    }
}
