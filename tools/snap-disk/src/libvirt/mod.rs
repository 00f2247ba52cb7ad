//! libvirt domains, through the `virsh` command line, as qemu-img is used
//! for images: a domain's disks, its state, its checkpoints and backup job,
//! its internal snapshots, and stopping and starting it around a restore.
//!
//! libvirt keeps the QMP socket of the QEMU it runs to itself, so a live
//! snapshot of a domain's disk goes through libvirt's own backup API
//! (`backup.rs`): a checkpoint and a pull-mode backup job whose NBD export
//! shows the disk at one point in time. The virsh CLI is used rather than a
//! crate: the `virt` crate links libvirt.so and needs libvirt-dev to build,
//! which a user of snap's .deb does not have; virsh comes with every libvirt.
//!
//! A domain is found from the flags (`--domain`), from the config's disk
//! entry (`"domain"`), or from the QEMU process that holds the image: libvirt
//! starts QEMU with `-name guest=NAME`.

mod backup;
mod job;
mod power;
mod snapshots;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use snap_shared::error::{Error, Exit, Result};

pub use backup::{Backup, BeginArgs, Checkpoints, checkpoint_name, checkpoint_prefix};
pub use power::Stopped;

/// How to reach libvirt: virsh's `-c URI`, or virsh's default
/// (`LIBVIRT_DEFAULT_URI`, else `qemu:///system` for root).
#[derive(Debug, Clone, Default)]
pub struct Virsh {
    pub uri: Option<String>,
}

impl Virsh {
    /// Whether virsh is installed at all.
    pub fn installed() -> bool {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("virsh").is_file()))
    }

    fn command(&self) -> Command {
        let mut c = Command::new("virsh");
        if let Some(u) = &self.uri {
            c.args(["-c", u]);
        }
        c.arg("-q");
        c.stdin(Stdio::null());
        c
    }

    /// Runs virsh and returns its stdout; a failure is one error naming the
    /// command and virsh's own message.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let what = format!("virsh {}", args.join(" "));
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::new(Exit::Unavailable, "virsh", "not installed").with_hint(
                        "install libvirt-clients (Debian, Ubuntu) or libvirt-client (Fedora)",
                    )
                }
                _ => Error::io_ctx(what.clone(), e),
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(virsh_error(&what, &String::from_utf8_lossy(&out.stderr)))
    }
}

/// virsh's message as an error with the exit code it calls for.
fn virsh_error(what: &str, stderr: &str) -> Error {
    let cause = stderr
        .lines()
        .map(|l| l.trim().trim_start_matches("error: ").trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let cause = if cause.is_empty() {
        "failed with no message".to_string()
    } else {
        cause
    };
    if cause.contains("failed to connect") || cause.contains("Failed to connect") {
        return Error::new(Exit::Unavailable, what, cause)
            .with_hint("is libvirtd running? give its URI with --connect (or \"connect\" in the config's disk entry)");
    }
    if cause.contains("Domain not found") || cause.contains("no domain with matching") {
        return Error::new(Exit::NoInput, what, cause);
    }
    if cause.contains("Requested operation is not valid") || cause.contains("Timed out") {
        return Error::new(Exit::TempFail, what, cause);
    }
    Error::new(Exit::Unavailable, what, cause)
}

/// A libvirt domain.
#[derive(Debug, Clone)]
pub struct Domain {
    pub virsh: Virsh,
    pub name: String,
}

/// One disk of a domain, as `virsh domblklist --details` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomDisk {
    /// file, block, network, volume.
    pub kind: String,
    /// disk, cdrom, floppy.
    pub device: String,
    pub target: String,
    /// The image file or device; None for an empty drive.
    pub source: Option<PathBuf>,
}

/// The domain's states in which its QEMU runs (and holds its disks).
const ACTIVE: &[&str] = &["running", "paused", "in shutdown", "pmsuspended", "blocked"];

impl Domain {
    pub fn new(virsh: Virsh, name: &str) -> Domain {
        Domain {
            virsh,
            name: name.to_string(),
        }
    }

    /// virsh with the domain's name after the verb.
    pub fn run(&self, verb: &str, rest: &[&str]) -> Result<String> {
        let mut args = vec![verb, self.name.as_str()];
        args.extend_from_slice(rest);
        self.virsh.run(&args)
    }

    /// What a `--name` listing prints (`snapshot-list`, `checkpoint-list`), one name a line.
    pub fn names(&self, verb: &str) -> Result<Vec<String>> {
        Ok(self
            .run(verb, &["--name"])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// `running`, `shut off`, `paused`, ….
    pub fn state(&self) -> Result<String> {
        Ok(self.run("domstate", &[])?.trim().to_string())
    }

    /// Whether its QEMU runs.
    pub fn is_active(&self) -> Result<bool> {
        let s = self.state()?;
        Ok(ACTIVE.contains(&s.as_str()))
    }

    /// Its disks, in its definition's order.
    pub fn disks(&self) -> Result<Vec<DomDisk>> {
        Ok(parse_domblklist(&self.run("domblklist", &["--details"])?))
    }

    /// The disk at `target`, or, with none given, the one with `image`
    /// (the same file), or the domain's only disk.
    pub fn disk(&self, target: Option<&str>, image: Option<&Path>) -> Result<DomDisk> {
        let disks: Vec<DomDisk> = self
            .disks()?
            .into_iter()
            .filter(|d| d.device == "disk")
            .collect();
        let ctx = || format!("domain {}", self.name);
        let found = match (target, image) {
            (Some(t), _) => disks
                .iter()
                .find(|d| d.target == t)
                .cloned()
                .ok_or_else(|| {
                    let all: Vec<&str> = disks.iter().map(|d| d.target.as_str()).collect();
                    Error::new(
                        Exit::NoInput,
                        ctx(),
                        format!("has no disk {t} (its disks: {})", all.join(", ")),
                    )
                })?,
            (None, Some(img)) => disks
                .iter()
                .find(|d| d.source.as_deref().is_some_and(|s| same_file(s, img)))
                .cloned()
                .ok_or_else(|| {
                    Error::new(
                        Exit::NoInput,
                        ctx(),
                        format!("has no disk whose image is {}", img.display()),
                    )
                })?,
            (None, None) => match disks.as_slice() {
                [one] => one.clone(),
                [] => return Err(Error::new(Exit::NoInput, ctx(), "has no disk")),
                many => {
                    let all: Vec<&str> = many.iter().map(|d| d.target.as_str()).collect();
                    return Err(Error::usage(
                        ctx(),
                        format!(
                            "has {} disks ({}): say which with --target",
                            many.len(),
                            all.join(", ")
                        ),
                    ));
                }
            },
        };
        if found.source.is_none() {
            return Err(Error::new(
                Exit::NoInput,
                ctx(),
                format!("disk {} has no image", found.target),
            ));
        }
        if let Some(img) = image
            && !found.source.as_deref().is_some_and(|s| same_file(s, img))
        {
            return Err(Error::usage(
                ctx(),
                format!(
                    "disk {} is {}, not {}",
                    found.target,
                    found.source.as_deref().unwrap_or(Path::new("")).display(),
                    img.display()
                ),
            ));
        }
        Ok(found)
    }
}

/// `virsh domblklist --details` (quiet: no header), one disk per line:
/// type, device, target, source (`-` for none; a path may hold spaces).
pub fn parse_domblklist(out: &str) -> Vec<DomDisk> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let kind = it.next()?.to_string();
            let device = it.next()?.to_string();
            let target = it.next()?.to_string();
            let rest: Vec<&str> = it.collect();
            let source = rest.join(" ");
            // The header and its rule, when virsh prints them anyway.
            if kind == "Type" || kind.starts_with('-') {
                return None;
            }
            Some(DomDisk {
                kind,
                device,
                target,
                source: (!source.is_empty() && source != "-").then(|| PathBuf::from(source)),
            })
        })
        .collect()
}

/// Whether two paths are the same file (device and inode), else the same path.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}

/// The libvirt domain whose QEMU (one of `holders`) holds an image:
/// libvirt starts QEMU with `-name guest=NAME,…` (a comma in the name
/// doubled).
pub fn domain_holding(holders: &[snap_shared::holders::Holder]) -> Option<String> {
    holders.iter().filter_map(|h| h.pid).find_map(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        guest_name(&cmdline)
    })
}

/// The running domain with `image` among its disks, asked of libvirt (for
/// an image whose holder cannot be seen, only its lock: QEMU runs as
/// another user). None when libvirt cannot be reached.
pub fn domain_with_image(virsh: &Virsh, image: &Path) -> Option<String> {
    let names = virsh.run(&["list", "--name"]).ok()?;
    names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .find(|n| {
            Domain::new(virsh.clone(), n).disks().is_ok_and(|disks| {
                disks
                    .iter()
                    .any(|d| d.source.as_deref().is_some_and(|s| same_file(s, image)))
            })
        })
        .map(String::from)
}

/// The guest name in a QEMU command line (NUL-separated), as libvirt writes it.
fn guest_name(cmdline: &[u8]) -> Option<String> {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let i = args.iter().position(|a| a == "-name")?;
    let value = args.get(i + 1)?;
    let rest = value.strip_prefix("guest=")?;
    // QEMU's option syntax: ",," is a literal comma, "," ends the value.
    let mut name = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                name.push(',');
                continue;
            }
            break;
        }
        name.push(c);
    }
    Some(name).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// domblklist's columns, a path with a space, an empty cdrom.
    #[test]
    fn domblklist_is_parsed() {
        let out = " file   disk     vda      /var/lib/libvirt/images/web 1.qcow2\n \
                   file   cdrom    sda      -\n";
        let disks = parse_domblklist(out);
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0].target, "vda");
        assert_eq!(
            disks[0].source.as_deref(),
            Some(Path::new("/var/lib/libvirt/images/web 1.qcow2"))
        );
        assert_eq!(disks[1].device, "cdrom");
        assert_eq!(disks[1].source, None);
    }

    /// libvirt's -name guest=…, with QEMU's doubled comma.
    #[test]
    fn guest_name_is_read_from_the_command_line() {
        let cl = b"/usr/bin/qemu-system-x86_64\0-name\0guest=web,,1,debug-threads=on\0-S\0";
        assert_eq!(guest_name(cl).as_deref(), Some("web,1"));
        assert_eq!(guest_name(b"qemu\0-name\0plain\0"), None);
        assert_eq!(guest_name(b"qemu\0-m\0\x364\0"), None);
    }

    /// virsh's messages map to the documented exit codes.
    #[test]
    fn virsh_errors_carry_exit_codes() {
        let e = virsh_error(
            "virsh domstate x",
            "error: failed to get domain 'x'\nerror: Domain not found: no domain with matching name 'x'\n",
        );
        assert_eq!(e.exit, Exit::NoInput);
        let e = virsh_error("virsh list", "error: failed to connect to the hypervisor\n");
        assert_eq!(e.exit, Exit::Unavailable);
        let e = virsh_error(
            "v",
            "error: Requested operation is not valid: domain is not running\n",
        );
        assert_eq!(e.exit, Exit::TempFail);
    }
}
