//! An in-place restore of a VDI, VMDK, VHDX or qcow2 image (blocks method)
//! goes through QEMU's block layer: the image stays the same file with the
//! same identity, only about the changed bytes are written, and QEMU's own
//! tools find it equal to the snapshot and clean.

use std::path::Path;
use std::process::Command;

use snap_testkit::{World, code, records, stderr};

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn snap_disk(w: &World, args: &[&str]) -> Vec<serde_json::Value> {
    let out = w
        .tool("snap-disk")
        .env("SNAP_STORE", w.path("store"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "snap-disk {args:?}: {}", stderr(&out));
    records(&out)
}

fn qemu_io(img: &Path, format: &str, cmd: &str) {
    run(Command::new("qemu-io")
        .args(["-f", format, "-c", cmd])
        .arg(img));
}

/// The bytes of the header that say which disk this is.
fn identity(img: &Path, format: &str) -> Vec<u8> {
    let bytes = std::fs::read(img).unwrap();
    match format {
        // The image UUID and the modification UUID.
        "vdi" => bytes[0x188..0x1a8].to_vec(),
        // The descriptor's CID.
        "vmdk" => {
            let at = bytes.windows(5).position(|w| w == b"\nCID=").unwrap();
            let len = bytes[at + 5..].iter().position(|&b| b == b'\n').unwrap();
            bytes[at + 5..at + 5 + len].to_vec()
        }
        _ => Vec::new(),
    }
}

/// For each format: a pattern, a snapshot, 1 MiB changed, a restore in place.
#[test]
fn restores_in_place_keep_the_image_and_its_identity() {
    for format in ["vdi", "vmdk", "vhdx", "qcow2"] {
        let w = World::new();
        let img = w.path(&format!("d.{format}"));
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", format])
            .arg(&img)
            .arg("32M"));
        qemu_io(&img, format, "write -P 0x11 0 8M");
        qemu_io(&img, format, "write -P 0x22 16M 4M");
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&img).unwrap());
        snap_disk(
            &w,
            &["create", img.to_str().unwrap(), "s1", "--method", "blocks"],
        );
        qemu_io(&img, format, "write -P 0x33 4M 1M");
        // What the image says it is just before the restore (a write renews a VMDK's CID).
        let id = identity(&img, format);
        let out = snap_disk(&w, &["restore", "d", "s1", "--no-undo"]);
        let bytes = out[0]["bytes"].as_u64().unwrap();
        assert!(
            bytes <= 2 << 20,
            "{format}: {bytes} bytes written for a 1 MiB change"
        );
        assert_eq!(identity(&img, format), id, "{format}: its identity changed");
        let now = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&img).unwrap());
        assert_eq!(now, inode, "{format}: not the same file");
        let want = w.path("want.raw");
        snap_disk(&w, &["export", "d", "s1", want.to_str().unwrap()]);
        run(Command::new("qemu-img")
            .args(["compare", "-f", format, "-F", "raw"])
            .arg(&img)
            .arg(&want));
        run(Command::new("qemu-img")
            .args(["check", "-q", "-f", format])
            .arg(&img));
        // With its undo snapshot, whose map says what the image holds: the
        // restore compares maps instead of reading the image again.
        qemu_io(&img, format, "write -P 0x44 20M 1M");
        let out = snap_disk(&w, &["restore", "d", "s1"]);
        let restored = out.iter().find(|r| r["kind"] == "restored").unwrap();
        assert_eq!(restored["bytes"], 1 << 20, "{format}: {restored}");
        run(Command::new("qemu-img")
            .args(["compare", "-f", format, "-F", "raw"])
            .arg(&img)
            .arg(&want));
    }
}

/// kill -9 of a restore in the middle of its writes (once the marker says it
/// is under way): its qemu-storage-daemon goes with it, and running the
/// restore again finishes it: the image equals the snapshot and is clean.
#[test]
fn a_restore_killed_mid_write_is_finished_by_the_rerun() {
    let w = World::new();
    let img = w.path("d.vdi");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "vdi"])
        .arg(&img)
        .arg("64M"));
    qemu_io(&img, "vdi", "write -P 0x11 0 48M");
    snap_disk(
        &w,
        &["create", img.to_str().unwrap(), "s1", "--method", "blocks"],
    );
    qemu_io(&img, "vdi", "write -P 0x44 0 48M");
    let id = identity(&img, "vdi");
    let marker = w.path("store/disks/d/.restoring");
    let mut child = w
        .tool("snap-disk")
        .env("SNAP_STORE", w.path("store"))
        .args(["restore", "d", "s1", "--no-undo"])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !marker.exists() && start.elapsed() < std::time::Duration::from_secs(30) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
    let out = snap_disk(&w, &["restore", "d", "s1", "--no-undo"]);
    assert!(out[0]["bytes"].as_u64().unwrap() <= 48 << 20);
    assert!(!marker.exists());
    assert_eq!(identity(&img, "vdi"), id);
    let want = w.path("want.raw");
    snap_disk(&w, &["export", "d", "s1", want.to_str().unwrap()]);
    run(Command::new("qemu-img")
        .args(["compare", "-f", "vdi", "-F", "raw"])
        .arg(&img)
        .arg(&want));
    run(Command::new("qemu-img")
        .args(["check", "-q", "-f", "vdi"])
        .arg(&img));
}

/// A stopped VDI, VMDK (sparse, and stream-optimized, whose grains are
/// compressed and read through QEMU), VHDX or VHD snapshotted by blocks
/// holds what QEMU reads from it; a VDI or VMDK's holes were not read.
#[test]
fn stopped_images_read_from_their_files_hold_what_qemu_reads() {
    for (format, opts) in [
        ("vdi", ""),
        ("vmdk", ""),
        ("vmdk", "subformat=streamOptimized"),
        ("vhdx", ""),
        ("vpc", ""),
    ] {
        let w = World::new();
        let img = w.path(&format!("d.{format}"));
        let mut create = Command::new("qemu-img");
        create.args(["create", "-q", "-f", format]);
        if !opts.is_empty() {
            create.args(["-o", opts]);
        }
        run(create.arg(&img).arg("32M"));
        qemu_io(&img, format, "write -P 0x11 1M 2M");
        qemu_io(&img, format, "write -P 0x22 20M 1536K");
        let rec = &snap_disk(
            &w,
            &["create", img.to_str().unwrap(), "s1", "--method", "blocks"],
        )[0];
        // Blocks 1, 2, 20 and 21 (VHDX and VHD allocate in larger units).
        if format == "vdi" || format == "vmdk" {
            assert_eq!(rec["read_bytes"], 4 << 20, "{format} {opts}: {rec}");
        }
        let got = w.path("got.raw");
        snap_disk(&w, &["export", "d", "s1", got.to_str().unwrap()]);
        run(Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", format])
            .arg(&got)
            .arg(&img));
    }
}
