//! The disk scenarios: snap-disk creating, restoring, and managing internal
//! snapshots of a qcow2 image, each from a state that already holds
//! snapshots, so a kill has something to break.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::sweep::{Check, Scenario, World};

/// `snap-disk ARGS --store store -q`.
pub(crate) fn disk(w: &World, args: &[&str]) -> Command {
    let mut c = w.tool("snap-disk");
    c.args(args).args(["--store", "store", "-q"]);
    c
}

/// The sha256 of a file's bytes.
pub(crate) fn sha_of(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(snap_shared::hash::Sha256Digest::of(&bytes).to_hex())
}

/// The sha256 of what a disk image holds (qcow2 read through qemu-img).
pub(crate) fn content_of(w: &World, image: &str) -> Result<String, String> {
    let raw = w.path("content.raw");
    let _ = fs::remove_file(&raw);
    w.ok(Command::new("qemu-img")
        .args(["convert", "-U", "-O", "raw", image])
        .arg(&raw)
        .current_dir(&w.root))?;
    sha_of(&raw)
}

/// Overwrites `len` bytes at `at` of a raw image with a pattern of `seed`.
pub(crate) fn scribble(path: &Path, at: u64, len: usize, seed: u8) -> Check {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect();
    f.write_all_at(&data, at).map_err(|e| e.to_string())
}

/// Writes `len` bytes of `pattern` at `at` into a qcow2 image (through qemu-io).
pub(crate) fn qemu_write(w: &World, image: &str, pattern: u8, at: &str, len: &str) -> Check {
    w.ok(Command::new("qemu-io")
        .args(["-c", &format!("write -P {pattern} {at} {len}"), image])
        .current_dir(&w.root))
        .map(drop)
}

/// Every snapshot of `disk` verifies, and the ones named are listed.
pub(crate) fn disk_whole(w: &World, name: &str, must_list: &[&str]) -> Check {
    w.ok(&mut disk(w, &["verify", name]))
        .map_err(|e| format!("a listed snapshot does not verify: {e}"))?;
    let out = w.ok(&mut disk(w, &["list", name]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for n in must_list {
        if !text.contains(&format!("\"name\":\"{n}\"")) {
            return Err(format!("snapshot {n} is no longer listed"));
        }
    }
    Ok(())
}

/// Whether snapshot `name` of `disk` is listed (its record is there).
pub(crate) fn listed_disk(w: &World, disk_name: &str, name: &str) -> bool {
    w.ok(&mut disk(w, &["list", disk_name]))
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("\"name\":\"{name}\"")))
}

/// `qemu-img check` finds no corruption (leaked clusters after a kill are allowed: exit 3).
pub(crate) fn qcow2_sound(w: &World, image: &str) -> Check {
    let out = Command::new("qemu-img")
        .args(["check", "-U", image])
        .current_dir(&w.root)
        .output()
        .map_err(|e| e.to_string())?;
    match out.status.code() {
        Some(0) | Some(3) => Ok(()),
        c => Err(format!(
            "qemu-img check {image}: exit {c:?}: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        )),
    }
}

/// The internal snapshots qemu-img lists in a qcow2 image.
pub(crate) fn internal_snapshots(w: &World, image: &str) -> Result<String, String> {
    let out = w.ok(Command::new("qemu-img")
        .args(["snapshot", "-U", "-l", image])
        .current_dir(&w.root))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// snap-disk create, blocks method: a second snapshot of a changed raw image.
pub struct DiskCreate;

impl Scenario for DiskCreate {
    fn name(&self) -> &'static str {
        "snap-disk-create"
    }

    fn prepare(&self, w: &World) -> Check {
        let img = w.path("vm.raw");
        let body: Vec<u8> = (0..8u32 << 20)
            .map(|i| (i.wrapping_mul(7) % 251) as u8)
            .collect();
        fs::write(&img, body).map_err(|e| e.to_string())?;
        w.ok(&mut disk(
            w,
            &["create", "vm.raw", "first", "--block-size", "64K"],
        ))?;
        scribble(&img, 3 << 20, 1 << 20, 1)?;
        scribble(&img, (6 << 20) + 4096, 70_000, 2)?;
        fs::write(w.path("image-sha"), sha_of(&img)?).map_err(|e| e.to_string())
    }

    fn run(&self, w: &World) -> Command {
        disk(w, &["create", "vm.raw", "second"])
    }

    fn rerun(&self, w: &World) -> Option<Command> {
        (!listed_disk(w, "vm", "second")).then(|| self.run(w))
    }

    fn after_kill(&self, w: &World) -> Check {
        if sha_of(&w.path("vm.raw"))? != fs::read_to_string(w.path("image-sha")).unwrap_or_default()
        {
            return Err("the image changed".into());
        }
        disk_whole(w, "vm", &["first"])
    }

    fn after_run(&self, w: &World) -> Check {
        disk_whole(w, "vm", &["first", "second"])?;
        let _ = fs::remove_file(w.path("check.raw"));
        w.ok(&mut disk(
            w,
            &["restore", "vm", "second", "--to", "check.raw"],
        ))?;
        match sha_of(&w.path("check.raw"))? == sha_of(&w.path("vm.raw"))? {
            true => Ok(()),
            false => Err("the second snapshot does not restore to the image".into()),
        }
    }
}

/// snap-disk restore in place, blocks method: the image back to its first snapshot.
pub struct DiskRestore;

impl Scenario for DiskRestore {
    fn name(&self) -> &'static str {
        "snap-disk-restore"
    }

    fn prepare(&self, w: &World) -> Check {
        let img = w.path("vm.raw");
        let body: Vec<u8> = (0..8u32 << 20)
            .map(|i| (i.wrapping_mul(11) % 253) as u8)
            .collect();
        fs::write(&img, body).map_err(|e| e.to_string())?;
        fs::write(w.path("first-sha"), sha_of(&img)?).map_err(|e| e.to_string())?;
        w.ok(&mut disk(
            w,
            &["create", "vm.raw", "first", "--block-size", "64K"],
        ))?;
        scribble(&img, 1 << 20, 2 << 20, 3)?;
        w.ok(&mut disk(w, &["create", "vm.raw", "second"]))?;
        scribble(&img, 5 << 20, 1 << 20, 4)
    }

    fn run(&self, w: &World) -> Command {
        disk(w, &["restore", "vm", "first"])
    }

    fn after_kill(&self, w: &World) -> Check {
        disk_whole(w, "vm", &["first", "second"])
    }

    fn after_run(&self, w: &World) -> Check {
        disk_whole(w, "vm", &["first", "second"])?;
        match sha_of(&w.path("vm.raw"))?
            == fs::read_to_string(w.path("first-sha")).unwrap_or_default()
        {
            true => Ok(()),
            false => Err("the image is not back to the first snapshot".into()),
        }
    }
}

/// snap-disk create and delete of qcow2 internal snapshots (qemu-img does the writing).
pub struct DiskQcow2 {
    pub delete: bool,
}

impl Scenario for DiskQcow2 {
    fn name(&self) -> &'static str {
        match self.delete {
            false => "snap-disk-qcow2-create",
            true => "snap-disk-qcow2-delete",
        }
    }

    fn prepare(&self, w: &World) -> Check {
        w.ok(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "q.qcow2", "8M"])
            .current_dir(&w.root))?;
        qemu_write(w, "q.qcow2", 7, "0", "1M")?;
        w.ok(&mut disk(w, &["create", "q.qcow2", "s1"]))?;
        qemu_write(w, "q.qcow2", 9, "2M", "1M")?;
        if self.delete {
            w.ok(&mut disk(w, &["create", "q.qcow2", "s2"]))?;
        }
        fs::write(w.path("content-sha"), content_of(w, "q.qcow2")?).map_err(|e| e.to_string())
    }

    fn run(&self, w: &World) -> Command {
        match self.delete {
            false => disk(w, &["create", "q.qcow2", "s2"]),
            true => disk(w, &["delete", "q", "s1"]),
        }
    }

    fn rerun(&self, w: &World) -> Option<Command> {
        let done = match self.delete {
            false => listed_disk(w, "q", "s2"),
            true => !listed_disk(w, "q", "s1"),
        };
        (!done).then(|| self.run(w))
    }

    fn after_kill(&self, w: &World) -> Check {
        // qemu-img is not atomic: what it leaves must at least be flagged
        // for the repair the next snap-disk command makes.
        let flagged = w.path("store/disks/q/.changing").exists();
        if !flagged {
            qcow2_sound(w, "q.qcow2")?;
        }
        let inside = internal_snapshots(w, "q.qcow2")?;
        let listed =
            String::from_utf8_lossy(&w.ok(&mut disk(w, &["list", "q"]))?.stdout).into_owned();
        for name in ["s1", "s2"] {
            if !flagged
                && listed.contains(&format!("\"name\":\"{name}\""))
                && !inside.contains(&format!(" {name} "))
            {
                return Err(format!(
                    "{name} is listed but not in the image, and no repair is flagged"
                ));
            }
        }
        let keep = if self.delete { "s2" } else { "s1" };
        if !listed.contains(&format!("\"name\":\"{keep}\"")) {
            return Err(format!("{keep} is no longer listed"));
        }
        self.same_content(w)
    }

    fn after_run(&self, w: &World) -> Check {
        qcow2_sound(w, "q.qcow2")?;
        let listed =
            String::from_utf8_lossy(&w.ok(&mut disk(w, &["list", "q"]))?.stdout).into_owned();
        let inside = internal_snapshots(w, "q.qcow2")?;
        let s1_there = listed.contains("\"name\":\"s1\"") || inside.contains(" s1 ");
        if self.delete == s1_there || !listed.contains("\"name\":\"s2\"") {
            return Err(format!(
                "after the run: listed {listed}, in the image {inside}"
            ));
        }
        self.same_content(w)
    }
}

impl DiskQcow2 {
    /// A snapshot never changes what the image holds.
    fn same_content(&self, w: &World) -> Check {
        match content_of(w, "q.qcow2")?
            == fs::read_to_string(w.path("content-sha")).unwrap_or_default()
        {
            true => Ok(()),
            false => Err("the image's content changed".into()),
        }
    }
}

/// snap-disk commit: an overlay chain folded back into one image.
pub struct DiskCommit;

impl DiskCommit {
    fn same_content(&self, w: &World) -> Check {
        match content_of(w, "q.qcow2")?
            == fs::read_to_string(w.path("content-sha")).unwrap_or_default()
        {
            true => Ok(()),
            false => Err("the image's content changed".into()),
        }
    }
}

impl Scenario for DiskCommit {
    fn name(&self) -> &'static str {
        "snap-disk-commit"
    }

    fn prepare(&self, w: &World) -> Check {
        w.ok(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "q.qcow2", "8M"])
            .current_dir(&w.root))?;
        qemu_write(w, "q.qcow2", 7, "0", "1M")?;
        w.ok(&mut disk(w, &["create", "q.qcow2", "o1", "--overlay"]))?;
        qemu_write(w, "q.qcow2", 9, "2M", "1M")?;
        w.ok(&mut disk(w, &["create", "q.qcow2", "o2", "--overlay"]))?;
        qemu_write(w, "q.qcow2", 5, "4M", "512K")?;
        fs::write(w.path("content-sha"), content_of(w, "q.qcow2")?).map_err(|e| e.to_string())
    }

    fn run(&self, w: &World) -> Command {
        disk(w, &["commit", "q"])
    }

    fn after_kill(&self, w: &World) -> Check {
        // qemu-img is not atomic: an unsound image must be flagged for repair.
        if !w.path("store/disks/q/.changing").exists() {
            qcow2_sound(w, "q.qcow2")?;
        }
        self.same_content(w)
    }

    fn after_run(&self, w: &World) -> Check {
        qcow2_sound(w, "q.qcow2")?;
        if w.path("store/disks/q/.changing").exists() {
            return Err("the repair flag is still there after the run".into());
        }
        self.same_content(w)?;
        let info = w.ok(Command::new("qemu-img")
            .args(["info", "-U", "q.qcow2"])
            .current_dir(&w.root))?;
        if String::from_utf8_lossy(&info.stdout).contains("backing file:") {
            return Err("the image still has a backing file after the commit".into());
        }
        Ok(())
    }
}
