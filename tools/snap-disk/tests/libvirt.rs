//! libvirt domains, against Debian's own libvirtd (a private one per test,
//! in system mode: QEMU runs as libvirt-qemu) and a TCG domain with no guest
//! OS: live snapshots through libvirt's pull-mode backup and checkpoints
//! (point in time under a writer, checked against a plain copy that must
//! fail the same check; changed blocks only; a killed run; checkpoints
//! deleted by hand), restore refused while the domain runs or done with
//! `--stop`, and internal snapshots with memory through virsh.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use snap_testkit::libvirt::{Domain, Libvirtd};
use snap_testkit::qemu::{byte_at, consistent};
use snap_testkit::{World, code, records, stderr};

const MIB: u64 = 1 << 20;
/// The writer's two blocks: a sequential reader reads LOW long before HIGH.
const LOW: u64 = 0;
const HIGH: u64 = 250 * MIB;

/// snap-disk in the world, with the test's libvirtd as virsh's default.
fn snap_disk(w: &World, lv: &Libvirtd, args: &[&str]) -> Output {
    w.tool("snap-disk")
        .env("SNAP_STORE", w.path("store"))
        .env("LIBVIRT_DEFAULT_URI", &lv.uri)
        .args(args)
        .output()
        .unwrap()
}

fn ok(w: &World, lv: &Libvirtd, args: &[&str]) -> serde_json::Value {
    let out = snap_disk(w, lv, args);
    assert_eq!(code(&out), 0, "snap-disk {args:?}: {}", stderr(&out));
    records(&out).remove(0)
}

/// A live snapshot of the domain's disk, named by `--domain`.
fn live(w: &World, d: &Domain, name: &str) -> serde_json::Value {
    ok(w, d.d, &["create", "--domain", &d.name, name])
}

/// The snapshot as a raw file.
fn export(w: &World, lv: &Libvirtd, disk: &str, name: &str) -> PathBuf {
    let out = w.path(&format!("{disk}-{name}.raw"));
    ok(w, lv, &["export", disk, name, out.to_str().unwrap()]);
    out
}

/// Fails unless the raw file equals the image (read with -U, the domain idle).
fn same_as_image(raw: &Path, image: &Path) {
    let out = Command::new("qemu-img")
        .args(["compare", "-U", "-f", "raw", "-F", "qcow2"])
        .arg(raw)
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

/// Fills the image before the domain starts: 1 MiB of pattern i at i MiB.
fn fill(image: &Path, mib: u64) {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "qcow2"]);
    for i in 0..mib {
        c.args(["-c", &format!("write -P {} {} 1M", i % 250 + 1, i * MIB)]);
    }
    let out = c.arg(image).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The domain's checkpoints.
fn checkpoints(d: &Domain) -> Vec<String> {
    d.d.ok(&["checkpoint-list", &d.name, "--name"])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether libvirt runs a backup job on the domain.
fn has_job(d: &Domain) -> bool {
    d.d.virsh(&["backup-dumpxml", &d.name]).status.success()
}

/// Every snapshot taken under a writer holds a state the disk had; a plain
/// copy of the image under the same writer does not (the control); after
/// the first, a snapshot reads only the changed blocks, and the image is
/// found through the QEMU that holds it when --domain is not given.
#[test]
fn domain_snapshots_are_point_in_time_and_read_only_what_changed() {
    let w = World::new();
    let lv = Libvirtd::start();
    let img = lv.image("web.qcow2", 256 * MIB);
    fill(&img, 256);
    let d = lv.domain("web", &img);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let p = (n % 256) as u8;
                d.write(LOW, 64 << 10, p);
                for i in 1..15 {
                    d.write(i * 16 * MIB, 4096, p);
                }
                d.write(HIGH, 64 << 10, p);
                n += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let torn = (0..40).any(|i| {
            let copy = w.path(&format!("cp{i}.raw"));
            let out = Command::new("qemu-img")
                .args(["convert", "-U", "-f", "qcow2", "-O", "raw"])
                .arg(&img)
                .arg(&copy)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            let bad = !consistent(byte_at(&copy, LOW), byte_at(&copy, HIGH));
            std::fs::remove_file(&copy).unwrap();
            bad
        });
        let mut recs = Vec::new();
        for i in 0..4 {
            recs.push(live(&w, &d, &format!("s{i}")));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(
            torn,
            "the control failed: a plain copy never caught the writer"
        );
        for (i, rec) in recs.iter().enumerate() {
            assert_eq!(rec["consistency"], "point-in-time", "{rec}");
            assert_eq!(rec["domain"], "web");
            assert_eq!(rec["target"], "vda");
            assert_eq!(rec["full_read"], i == 0, "{rec}");
            let raw = export(&w, &lv, "web", &format!("s{i}"));
            let (low, high) = (byte_at(&raw, LOW), byte_at(&raw, HIGH));
            assert!(consistent(low, high), "s{i}: LOW {low}, HIGH {high}");
        }
    });
    // The writer is gone: after one more snapshot, a 1 MiB change is a 1 MiB read.
    live(&w, &d, "quiet");
    d.write(5 * MIB, MIB, 0xee);
    let img_arg = img.display().to_string();
    let rec = ok(&w, &lv, &["create", &img_arg, "small"]);
    assert_eq!(
        rec["domain"], "web",
        "found from the QEMU holding the image"
    );
    assert_eq!(rec["full_read"], false);
    assert_eq!(rec["read_bytes"], MIB, "{rec}");
    same_as_image(&export(&w, &lv, "web", "small"), &img);
    assert_eq!(
        checkpoints(&d),
        ["snap-disk-3.web.small"],
        "older ones pruned"
    );
    assert!(!has_job(&d));
}

/// A snapshot killed in the middle of its read: the backup job is ended
/// for it (a watchdog), the next snapshot is right and reads only changes,
/// and the killed run's checkpoint goes. Checkpoints deleted by hand mean
/// a full read, saying why.
#[test]
fn a_killed_snapshot_leaves_no_job_and_lost_checkpoints_mean_a_full_read() {
    let w = World::new();
    let lv = Libvirtd::start();
    let img = lv.image("db.qcow2", 512 * MIB);
    fill(&img, 512);
    let d = lv.domain("db", &img);
    live(&w, &d, "s1");
    d.write(3 * MIB, MIB, 0x33);
    // Every block changed: the second read is long enough to be killed in.
    d.hmp("qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P 0x44 16M 480M\"");
    let mut child = w
        .tool("snap-disk")
        .env("SNAP_STORE", w.path("store"))
        .env("LIBVIRT_DEFAULT_URI", &lv.uri)
        .args(["create", "--domain", "db", "killed"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !has_job(&d) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no backup job began"
        );
        assert!(child.try_wait().unwrap().is_none(), "snap-disk ended first");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "snap-disk ended before the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let t0 = Instant::now();
    while has_job(&d) {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the killed run's backup job still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.write(600 * MIB - MIB, MIB, 0x55);
    let rec = live(&w, &d, "s2");
    assert_eq!(rec["full_read"], false, "{rec}");
    assert!(rec["read_bytes"].as_u64().unwrap() < 500 * MIB, "{rec}");
    same_as_image(&export(&w, &lv, "db", "s2"), &img);
    assert_eq!(checkpoints(&d), ["snap-disk-2.db.s2"]);
    // Checkpoints deleted by hand: a full read, and the note says why.
    lv.ok(&["checkpoint-delete", "db", "snap-disk-2.db.s2"]);
    let out = snap_disk(&w, &lv, &["create", "--domain", "db", "s3"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(records(&out)[0]["full_read"], true);
    assert!(
        stderr(&out)
            .contains("reading the whole disk: the domain has no checkpoint snap-disk-2.db.s2"),
        "{}",
        stderr(&out)
    );
}

/// A restore into a running domain's image is refused, naming the domain;
/// with --stop it waits for the guest to shut down and changes nothing when
/// it does not; with --force too, the domain is destroyed, restored and
/// started again. A --freeze without a guest agent fails and leaves no job
/// and no checkpoint behind.
#[test]
fn restore_refuses_while_the_domain_runs_and_stop_restores() {
    let w = World::new();
    let lv = Libvirtd::start();
    let img = lv.image("app.qcow2", 32 * MIB);
    fill(&img, 32);
    let d = lv.domain("app", &img);
    live(&w, &d, "s1");
    let before = checkpoints(&d);
    let out = snap_disk(
        &w,
        &lv,
        &["create", "--domain", "app", "--freeze", "frozen"],
    );
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(stderr(&out).contains("guest agent"), "{}", stderr(&out));
    assert!(!has_job(&d));
    assert_eq!(checkpoints(&d), before);
    d.write(2 * MIB, MIB, 0x99);
    let out = snap_disk(&w, &lv, &["restore", "app", "s1"]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("libvirt domain app runs it"),
        "{}",
        stderr(&out)
    );
    // The guest has no OS: it never answers the shutdown request.
    let out = snap_disk(
        &w,
        &lv,
        &["restore", "app", "s1", "--stop", "--timeout", "1"],
    );
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did not shut down within 1 s"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.state(), "running");
    assert!(d.holds(2 * MIB, MIB, 0x99), "nothing was restored");
    let out = snap_disk(
        &w,
        &lv,
        &[
            "restore",
            "app",
            "s1",
            "--stop",
            "--timeout",
            "1",
            "--force",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("domain app started again"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.state(), "running");
    assert!(d.holds(2 * MIB, MIB, 3), "back at s1 (pattern 3 at 2 MiB)");
    let recs = records(&out);
    let undo = recs.last().unwrap()["undo"].as_str().unwrap().to_string();
    assert_eq!(
        recs[0]["name"].as_str(),
        Some(undo.as_str()),
        "the undo snapshot's record"
    );
    assert!(undo.starts_with("before-restore-"), "{undo}");
}

/// Internal snapshots with the VM's memory go through virsh: libvirt lists
/// them, a restore reverts the running domain (deleting snap-disk's
/// checkpoints first, so the next live snapshot reads everything and says
/// so), and a delete removes them from libvirt and the image. A config
/// entry naming only the domain snapshots it with --all.
#[test]
fn internal_snapshots_with_memory_go_through_virsh() {
    let w = World::new();
    let lv = Libvirtd::start();
    let img = lv.image("vm1.qcow2", 16 * MIB);
    fill(&img, 16);
    let d = lv.domain("vm1", &img);
    live(&w, &d, "b1");
    let rec = ok(&w, &lv, &["create", "--domain", "vm1", "--vm-state", "v1"]);
    assert_eq!(rec["method"], "qcow2-internal");
    assert_eq!(rec["consistency"], "vm-state");
    assert!(rec["vm_state_size"].as_u64().unwrap() > 0, "{rec}");
    let names = lv.ok(&["snapshot-list", "vm1", "--name"]);
    assert!(names.lines().any(|l| l.trim() == "v1"), "{names}");
    let out = snap_disk(&w, &lv, &["list", "vm1"]);
    assert!(stderr(&out).contains("v1") || String::from_utf8_lossy(&out.stdout).contains("v1"));
    d.write(MIB, MIB, 0x77);
    let out = snap_disk(&w, &lv, &["restore", "vm1", "v1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(d.state(), "running");
    assert!(d.holds(MIB, MIB, 2), "back at v1");
    assert!(
        checkpoints(&d).is_empty(),
        "the revert deleted the checkpoints"
    );
    let out = snap_disk(&w, &lv, &["create", "--domain", "vm1", "b2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(records(&out)[0]["full_read"], true);
    let out = snap_disk(&w, &lv, &["delete", "vm1", "v1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let names = lv.ok(&["snapshot-list", "vm1", "--name"]);
    assert!(!names.lines().any(|l| l.trim() == "v1"), "{names}");
    let info = Command::new("qemu-img")
        .args(["snapshot", "-U", "-l"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&info.stdout).contains(" v1 "));
    // A config that names only the domain and its disk.
    let config = w.write(
        "config.json",
        r#"{"disks": [{"domain": "vm1", "target": "vda"}]}"#,
    );
    let out = w
        .tool("snap-disk")
        .env("SNAP_STORE", w.path("store"))
        .env("LIBVIRT_DEFAULT_URI", &lv.uri)
        .args(["-c", config.to_str().unwrap(), "create", "--all"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rec = &records(&out)[0];
    assert_eq!(
        (rec["disk"].as_str(), rec["domain"].as_str()),
        (Some("vm1"), Some("vm1"))
    );
    assert_eq!(rec["full_read"], false, "{rec}");
}
