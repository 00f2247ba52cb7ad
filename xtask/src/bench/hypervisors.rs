//! Other hypervisors' disks in `cargo xtask bench --suites disk`: the 2 GiB
//! v1 image as a VDI and a VMDK, restored in place after the 1% change
//! (through QEMU, keeping the image's identity) against writing the image
//! whole with `qemu-img convert`; and a libvirt domain over a qcow2 of v1,
//! snapshotted live twice through libvirt's backup API (the second after a
//! 1% change written by the guest), against virtnbdbackup's full and
//! incremental backups of a twin domain with the same change.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use snap_testkit::libvirt::{Domain, Libvirtd};

use super::kit::{bin, fresh_dir, median, quiet};
use crate::sh::Result;

const MIB: u64 = 1 << 20;

/// One run's figures, seconds and bytes.
#[derive(Default, Clone)]
pub struct Hyper {
    /// Per format (vdi, vmdk): restore --no-undo, restore with its undo,
    /// `qemu-img convert` of the whole image, bytes the restore wrote.
    pub restores: Vec<(&'static str, f64, f64, f64, u64)>,
    /// snap-disk through libvirt: first and second snapshot, and bytes read by each.
    pub domain: (f64, f64, u64, u64),
    /// virtnbdbackup: full and incremental.
    pub vnb: (f64, f64),
}

fn timed(cmd: &mut Command) -> Result<f64> {
    let t0 = Instant::now();
    quiet(cmd)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// The 20 MiB of v2's change, written as qemu-io commands.
fn change_cmds() -> Vec<String> {
    (0..20u64)
        .map(|k| format!("write -P {} {} 1M", k + 1, (37 + 101 * k) * MIB))
        .collect()
}

fn qemu_io(img: &Path, format: &str) -> Result {
    let mut c = Command::new("qemu-io");
    c.args(["-f", format]);
    for cmd in change_cmds() {
        c.args(["-c", &cmd]);
    }
    quiet(c.arg(img))
}

fn same(img: &Path, format: &str, v1: &Path) -> Result {
    quiet(
        Command::new("qemu-img")
            .args(["compare", "-q", "-f", format, "-F", "raw"])
            .arg(img)
            .arg(v1),
    )
}

/// A restore's wall time, and the bytes its record says it wrote.
fn restored_bytes(store: &Path, args: &[&str]) -> Result<(f64, u64)> {
    let (wall, recs) = super::live::timed_records(store, args)?;
    let bytes = recs
        .iter()
        .filter(|r| r["kind"] == "restored")
        .find_map(|r| r["bytes"].as_u64())
        .unwrap_or(0);
    Ok((wall, bytes))
}

/// A VDI or VMDK of v1, snapshotted, changed by 1%, restored in place.
fn restore_row(
    dir: &Path,
    v1: &Path,
    format: &'static str,
) -> Result<(&'static str, f64, f64, f64, u64)> {
    let whole = dir.join(format!("whole.{format}"));
    let convert = timed(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", format])
            .arg(v1)
            .arg(&whole),
    )? + timed(Command::new("sync").arg(&whole))?;
    let img = dir.join(format!("img.{format}"));
    fs::rename(&whole, &img).map_err(|e| e.to_string())?;
    let store = dir.join(format!("store-{format}"));
    let img_s = img.display().to_string();
    quiet(
        Command::new(bin("snap-disk"))
            .arg("--store")
            .arg(&store)
            .args(["-q", "create", &img_s, "s1", "--method", "blocks"]),
    )?;
    qemu_io(&img, format)?;
    let (bare, bytes) = restored_bytes(&store, &["restore", "img", "s1", "--no-undo"])?;
    same(&img, format, v1)?;
    qemu_io(&img, format)?;
    let (undo, _) = restored_bytes(&store, &["restore", "img", "s1"])?;
    same(&img, format, v1)?;
    Ok((format, bare, undo, convert, bytes))
}

/// The guest writes v2's change (20 MiB) through HMP's qemu-io.
fn guest_change(d: &Domain) {
    for cmd in change_cmds() {
        d.hmp(&format!(
            "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"{cmd}\""
        ));
    }
}

fn live(store: &Path, lv: &Libvirtd, dom: &str, name: &str) -> Result<(f64, u64)> {
    let args = ["create", "--connect", &lv.uri, "--domain", dom, name];
    let (wall, recs) = super::live::timed_records(store, &args)?;
    let read = recs.first().and_then(|r| r["read_bytes"].as_u64());
    Ok((wall, read.unwrap_or(0)))
}

/// virtnbdbackup takes any URI with a transport (`qemu+unix://…`) for a
/// remote one and asks for a user and password: it runs in a mount
/// namespace where the test libvirtd's socket is at libvirt's default
/// path, with the default URI.
fn virtnbdbackup(lv: &Libvirtd, dom: &str, level: &str, out: &Path) -> Result<f64> {
    let script = format!(
        "mount --bind {} /run/libvirt && exec virtnbdbackup -d {dom} -l {level} --noprogress -o {}",
        lv.socket_dir().display(),
        out.display()
    );
    fs::create_dir_all("/run/libvirt").map_err(|e| e.to_string())?;
    timed(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]))
}

/// Runs the rows `args.runs` times and writes docs/benchmarks-hypervisors.md.
pub fn run(args: &super::Args, base: &Path) -> Result {
    crate::sh::ensure_apt(&[
        ("qemu-img", "qemu-utils"),
        ("qemu-io", "qemu-utils"),
        ("qemu-storage-daemon", "qemu-system-common"),
        ("virsh", "libvirt-clients"),
        ("/usr/sbin/libvirtd", "libvirt-daemon-system"),
        ("virtnbdbackup", "virtnbdbackup"),
    ])?;
    let v1 = super::disk::images(base)?.0;
    let mut runs = Vec::new();
    for i in 0..args.runs {
        eprintln!("xtask: hypervisors run {}/{}", i + 1, args.runs);
        runs.push(run_once(base, &v1)?);
    }
    let md = render(&runs);
    println!("{md}");
    if !args.no_write {
        super::kit::write_doc(
            "benchmarks-hypervisors.md",
            "Benchmarks: other hypervisors' disks and libvirt domains",
            args.runs,
            &format!(
                "; {}; libvirt {}; virtnbdbackup {}",
                super::kit::version("qemu-img", "--version"),
                super::kit::version("virsh", "--version"),
                super::kit::version("virtnbdbackup", "--version"),
            ),
            METHOD,
            &md,
        )?;
    }
    Ok(())
}

const METHOD: &str = "v1 is the 2 GiB ext4 image of docs/benchmarks-disk.md; the change is 20 regions of 1 MiB\n\
at MiB 37 + 101·k (about 1%). VDI and VMDK: `qemu-img convert -O vdi|vmdk` of v1 (timed, with a `sync` of\n\
the file: the anchor, writing the image whole), a blocks snapshot of it, the change written by qemu-io,\n\
then `snap-disk restore --no-undo` (and again, changed again, with its undo snapshot), each checked\n\
equal to v1 by `qemu-img compare`. libvirt: Debian 12's libvirtd 9.0 (a private one, system mode, QEMU\n\
7.2 as libvirt-qemu under TCG), two domains (q35, 64 MiB, no guest OS) each with a qcow2 of v1 as vda;\n\
the guest's change goes through HMP's qemu-io. `snap-disk create --domain` twice on one, `virtnbdbackup\n\
-l full` then `-l inc` (Debian 12's package, no compression) on the other.";

pub fn run_once(base: &Path, v1: &Path) -> Result<Hyper> {
    let dir = base.join("targets/hyper");
    fresh_dir(&dir)?;
    let mut h = Hyper::default();
    for format in ["vdi", "vmdk"] {
        h.restores.push(restore_row(&dir, v1, format)?);
    }
    let lv = Libvirtd::start();
    let ours = lv.import("snap.qcow2", v1);
    let theirs = lv.import("vnb.qcow2", v1);
    let (a, b) = (lv.domain("snap", &ours), lv.domain("vnb", &theirs));
    let store = dir.join("store-libvirt");
    let (first, first_read) = live(&store, &lv, "snap", "s1")?;
    guest_change(&a);
    let (second, second_read) = live(&store, &lv, "snap", "s2")?;
    h.domain = (first, second, first_read, second_read);
    let out = dir.join("vnb");
    let full = virtnbdbackup(&lv, "vnb", "full", &out)?;
    guest_change(&b);
    let inc = virtnbdbackup(&lv, "vnb", "inc", &out)?;
    h.vnb = (full, inc);
    drop((a, b));
    drop(lv);
    let _ = fs::remove_dir_all(&dir);
    Ok(h)
}

pub fn render(runs: &[Hyper]) -> String {
    let med = |f: &dyn Fn(&Hyper) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let mut md = String::from(
        "### In-place restore of the 1% change into a VDI and a VMDK (through QEMU, identity kept)\n\n\
         | format | qemu-img convert (the image whole) | restore --no-undo | ratio | restore with its undo snapshot | ratio | written |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (i, format) in ["vdi", "vmdk"].iter().enumerate() {
        let conv = med(&|h| h.restores[i].3);
        let bare = med(&|h| h.restores[i].1);
        let undo = med(&|h| h.restores[i].2);
        let bytes = med(&|h| h.restores[i].4 as f64) / MIB as f64;
        md.push_str(&format!(
            "| {format} | {conv:.2} s | {bare:.2} s | {:.2}x | {undo:.2} s | {:.2}x | {bytes:.0} MiB |\n",
            bare / conv,
            undo / conv
        ));
    }
    md.push_str("\nGoal: at most 0.15x (the restore itself, --no-undo).\n\n");
    let (first, second) = (med(&|h| h.domain.0), med(&|h| h.domain.1));
    let (r1, r2) = (
        med(&|h| h.domain.2 as f64) / MIB as f64,
        med(&|h| h.domain.3 as f64) / MIB as f64,
    );
    let (full, inc) = (med(&|h| h.vnb.0), med(&|h| h.vnb.1));
    md.push_str(&format!(
        "### A libvirt domain snapshotted live (pull-mode backup, checkpoints)\n\n\
         | tool | first (full) | second (1% dirty) | second vs first | second vs virtnbdbackup's |\n\
         |---|---|---|---|---|\n\
         | virtnbdbackup -l full / -l inc | {full:.2} s | {inc:.2} s | {:.2}x | 1.00x |\n\
         | snap-disk create --domain | {first:.2} s ({r1:.0} MiB read) | {second:.2} s ({r2:.0} MiB read) | {:.2}x | {:.2}x |\n\n\
         Goals: the second at most 0.1x the first, and at most 1.2x virtnbdbackup's incremental.\n",
        inc / full,
        second / first,
        second / inc,
    ));
    md
}
