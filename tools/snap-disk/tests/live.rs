//! Live snapshots against real QEMU, no KVM: qemu-storage-daemon holds the
//! image as a running VM would, the tests write through its NBD export as a
//! guest would (qemu-io), and snap-disk talks to its QMP monitor. Point in
//! time under a writer (checked against a plain copy, which must fail the
//! same check), changed blocks from dirty bitmaps, a killed QEMU's in-use
//! bitmap, and the guest freeze with a fake guest agent on every path.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::json;
use snap_testkit::qemu::{FakeAgent, Qsd, byte_at, consistent, send_signal};
use snap_testkit::{World, code, records, stderr};

const MIB: u64 = 1 << 20;
/// The writer's two blocks: a sequential reader reads LOW long before HIGH.
const LOW: u64 = 0;
const HIGH: u64 = 60 * MIB;

/// What these tests do in the shared test world.
trait DiskWorld {
    /// A new image of `size` bytes (`format` raw or qcow2).
    fn image(&self, name: &str, format: &str, size: u64) -> PathBuf;

    /// snap-disk with the world's store, ended after two minutes.
    fn cmd(&self) -> Command;

    fn disk(&self, args: &[&str]) -> Output;

    /// A live snapshot through `q`'s monitor (its NBD server is already taken by the guest).
    fn live(&self, q: &Qsd, image: &Path, name: &str, extra: &[&str]) -> Output;

    /// The snapshot as a raw file, through `snap-disk export`.
    fn export(&self, disk: &str, name: &str) -> PathBuf;
}

impl DiskWorld for World {
    fn image(&self, name: &str, format: &str, size: u64) -> PathBuf {
        let p = self.path(name);
        let out = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", format])
            .arg(&p)
            .arg(size.to_string())
            .output()
            .expect("qemu-img (cargo xtask test installs it)");
        assert!(out.status.success(), "{}", stderr(&out));
        p
    }

    fn cmd(&self) -> Command {
        let mut c = Command::from_std(self.tool("snap-disk"));
        c.env("SNAP_STORE", self.path("store"))
            .env("HOME", self.root())
            .timeout(Duration::from_secs(120));
        c
    }

    fn disk(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn live(&self, q: &Qsd, image: &Path, name: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "create".to_string(),
            image.display().to_string(),
            name.to_string(),
            "--qmp".into(),
            q.qmp.display().to_string(),
            "--nbd-server".into(),
            q.nbd.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.cmd().args(&args).output().unwrap()
    }

    fn export(&self, disk: &str, name: &str) -> PathBuf {
        let out = self.path(&format!("{disk}-{name}.raw"));
        let o = self.disk(&["export", disk, name, out.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        out
    }
}

/// Fails unless `other` (a file or NBD URL of `format`) holds the same disk as the raw file `raw`.
fn same_image(raw: &Path, other: impl AsRef<std::ffi::OsStr>, format: &str) {
    let cmp = std::process::Command::new("qemu-img")
        .args(["compare", "-U", "-f", "raw", "-F", format])
        .arg(raw)
        .arg(other)
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{}{}",
        String::from_utf8_lossy(&cmp.stdout),
        stderr(&cmp)
    );
}

/// A guest that keeps writing LOW, then a little into every 4 MiB between
/// (so that a changed-blocks read has many blocks to read between LOW and
/// HIGH, as a full read does), then HIGH, with the same increasing counter,
/// until dropped.
struct Guest {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Guest {
    fn start(q: &Qsd) -> Guest {
        let mut w = q.writer();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 1u64;
            while !flag.load(Ordering::Relaxed) {
                let p = n % 256;
                let mut cmds = format!("write -P {p} {LOW} 64k\n");
                for i in 1..15 {
                    cmds.push_str(&format!("write -P {p} {} 4k\n", i * 4 * MIB));
                }
                cmds.push_str(&format!("write -P {p} {HIGH} 64k\n"));
                if w.stdin().write_all(cmds.as_bytes()).is_err() {
                    break;
                }
                n += 1;
            }
            w.kill();
        });
        // Let it get going.
        std::thread::sleep(Duration::from_millis(200));
        Guest {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// Every snapshot taken under a writer holds a state the disk had; a plain
/// copy of the image under the same writer does not (the control).
#[test]
fn live_snapshots_are_point_in_time() {
    let w = World::new();
    let img = w.image("vm.raw", "raw", 64 * MIB);
    let q = Qsd::start(&img, "raw");
    fill(&q, 64);
    let before = q.inventory();
    let guest = Guest::start(&q);
    let torn = (0..20).any(|i| {
        let copy = w.path(&format!("cp{i}.raw"));
        fs::copy(&img, &copy).unwrap();
        let bad = !consistent(byte_at(&copy, LOW), byte_at(&copy, HIGH));
        fs::remove_file(&copy).unwrap();
        bad
    });
    assert!(
        torn,
        "the control failed: a plain copy never caught the writer"
    );
    for i in 0..6 {
        let name = format!("s{i}");
        let out = w.live(&q, &img, &name, &[]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let rec = &records(&out)[0];
        assert_eq!(rec["consistency"], "point-in-time");
        assert_eq!(rec["full_read"], i == 0, "{rec}");
    }
    drop(guest);
    for i in 0..6 {
        let raw = w.export("vm", &format!("s{i}"));
        let (low, high) = (byte_at(&raw, LOW), byte_at(&raw, HIGH));
        assert!(consistent(low, high), "s{i}: low {low}, high {high}");
        assert_ne!(high, 0, "s{i} saw no write");
    }
    assert_eq!(q.inventory(), before, "a snapshot left something in QEMU");
    let names: Vec<String> = q.bitmaps().into_iter().map(|b| b.0).collect();
    assert_eq!(names, ["snap-disk-vm/s5"]);
    // Restores refuse while the VM runs; once it is stopped, the image comes
    // back byte for byte.
    let busy = w.disk(&["restore", "vm", "s3"]);
    assert_eq!(code(&busy), 75, "{}", stderr(&busy));
    q.stop();
    let out = w.disk(&["restore", "vm", "s3"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sha(&img), sha(&w.path("vm-s3.raw")));
}

fn sha(path: &Path) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fills `mib` MiB from the start, a pattern per MiB, through the guest.
fn fill(q: &Qsd, mib: u64) {
    let mut w = q.writer();
    for i in 0..mib {
        writeln!(w.stdin(), "write -P {} {} 1M", i % 250 + 1, i * MIB).unwrap();
    }
    w.finish();
}

/// After a 1% change the next snapshot reads 1% of the disk; a QEMU killed
/// with its bitmaps loaded leaves them in use, and the snapshot after reads
/// everything, says why, and is still right.
#[test]
fn dirty_bitmaps_read_only_what_changed() {
    let w = World::new();
    let img = w.image("vm.qcow2", "qcow2", 100 * MIB);
    let q = Qsd::start(&img, "qcow2");
    fill(&q, 64);
    let first = w.live(&q, &img, "one", &[]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert_eq!(records(&first)[0]["read_bytes"], 64 * MIB);
    q.write(70 * MIB, MIB, 0x77);
    let second = w.live(&q, &img, "two", &[]);
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    let rec = &records(&second)[0];
    assert_eq!(rec["read_bytes"], MIB, "{rec}");
    assert_eq!(rec["full_read"], false);
    assert_eq!(rec["blocks"], 65);
    // A persistent bitmap: the daemon's clean exit saves it, a restart keeps using it.
    q.stop();
    let q = Qsd::start(&img, "qcow2");
    q.write(80 * MIB, MIB, 0x78);
    let third = w.live(&q, &img, "three", &[]);
    assert_eq!(code(&third), 0, "{}", stderr(&third));
    assert_eq!(records(&third)[0]["read_bytes"], MIB);
    // Saved at a clean exit, loaded (and marked in use in the image) at the
    // next start, then the daemon dies with it loaded.
    q.stop();
    let q = Qsd::start(&img, "qcow2");
    q.kill9();
    let q = Qsd::start(&img, "qcow2");
    assert!(q.bitmaps().iter().any(|b| b.2), "{:?}", q.bitmaps());
    q.write(90 * MIB, MIB, 0x79);
    let fourth = w.live(&q, &img, "four", &[]);
    assert_eq!(code(&fourth), 0, "{}", stderr(&fourth));
    assert!(
        stderr(&fourth).contains("marked in use"),
        "{}",
        stderr(&fourth)
    );
    let rec = &records(&fourth)[0];
    assert_eq!(rec["full_read"], true);
    assert_eq!(rec["read_bytes"], 67 * MIB);
    let raw = w.export("vm", "four");
    same_image(&raw, q.url(), "raw");
    assert_eq!(
        q.bitmaps(),
        [("snap-disk-vm/four".to_string(), true, false)]
    );
}

/// --freeze freezes once and thaws once, around the transaction, and the
/// record says so.
#[test]
fn freeze_thaws_once() {
    let w = World::new();
    let img = w.image("vm.raw", "raw", 16 * MIB);
    let q = Qsd::start(&img, "raw");
    let agent = FakeAgent::start(w.root(), Duration::ZERO);
    let a = agent.path.display().to_string();
    let out = w.live(&q, &img, "f", &["--freeze", "--guest-agent", &a]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(agent.log(), ["freeze", "thaw"]);
    let rec = &records(&out)[0];
    assert_eq!(rec["consistency"], "application");
    assert!(rec["frozen_ms"].as_f64().unwrap() < 1000.0, "{rec}");
}

/// A transaction QEMU refuses still thaws the guest, exactly once, and
/// leaves QEMU and the previous snapshot's bitmap as they were.
#[test]
fn freeze_thaws_once_when_qemu_refuses() {
    let w = World::new();
    let img = w.image("vm.raw", "raw", 16 * MIB);
    let q = Qsd::start(&img, "raw");
    let first = w.live(&q, &img, "one", &[]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    // Another export holds the previous bitmap busy: disabling it, in the
    // transaction, fails.
    q.qmp(
        "block-export-add",
        json!({"type": "nbd", "id": "other", "node-name": q.node, "name": "other",
            "writable": true, "bitmaps": ["snap-disk-vm/one"]}),
    );
    let before = q.inventory();
    let agent = FakeAgent::start(w.root(), Duration::ZERO);
    let a = agent.path.display().to_string();
    let out = w.live(&q, &img, "two", &["--freeze", "--guest-agent", &a]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("transaction"), "{}", stderr(&out));
    assert_eq!(agent.log(), ["freeze", "thaw"]);
    assert_eq!(q.inventory(), before);
    let bm = q.bitmaps();
    assert!(
        bm.contains(&("snap-disk-vm/one".to_string(), true, false)),
        "{bm:?}"
    );
}

/// kill -TERM while the guest is frozen: the thaw still runs once, QEMU is
/// left as before, and the exit is 130; the next snapshot reads only what
/// changed since the last good one.
#[test]
fn freeze_thaws_once_on_sigterm() {
    let w = World::new();
    let img = w.image("vm.raw", "raw", 16 * MIB);
    let q = Qsd::start(&img, "raw");
    let first = w.live(&q, &img, "one", &[]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let before = q.inventory();
    let agent = FakeAgent::start(w.root(), Duration::from_millis(1500));
    let a = agent.path.display().to_string();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("snap-disk"))
        .env_remove("SNAP_CONFIG")
        .env("SNAP_STORE", w.path("store"))
        .env("HOME", w.root())
        .args(["create", img.to_str().unwrap(), "two", "--qmp"])
        .arg(&q.qmp)
        .arg("--nbd-server")
        .arg(&q.nbd)
        .args(["--freeze", "--guest-agent", &a])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while agent.log().is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    send_signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(agent.log(), ["freeze", "thaw"]);
    assert_eq!(q.inventory(), before);
    assert_eq!(q.bitmaps(), [("snap-disk-vm/one".to_string(), true, false)]);
    q.write(3 * MIB, MIB, 9);
    let next = w.live(&q, &img, "three", &[]);
    assert_eq!(code(&next), 0, "{}", stderr(&next));
    assert_eq!(records(&next)[0]["read_bytes"], MIB);
}

/// A stopped qcow2 image is read through QEMU, only its allocated blocks
/// (no raw copy); the dirty bitmap left in it makes the snapshot after a VM
/// run (qemu-io stands in) read only what the VM wrote; and a restore of
/// the last snapshot gives the image's exact contents.
#[test]
fn stopped_qcow2_reads_allocated_then_what_the_vm_wrote() {
    let w = World::new();
    let img = w.image("vm.qcow2", "qcow2", 256 * MIB);
    let io = |cmd: &str| {
        let out = std::process::Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", cmd])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    io("write -P 1 0 20M");
    io("write -P 2 200M 4M");
    let first = w.disk(&["create", img.to_str().unwrap(), "a", "-m", "blocks"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let rec = &records(&first)[0];
    assert_eq!(rec["read_bytes"], 24 * MIB, "{rec}");
    assert_eq!(rec["consistency"], "stopped");
    io("write -P 3 100M 1M");
    let second = w.disk(&["create", img.to_str().unwrap(), "b", "-m", "blocks"]);
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    let rec = &records(&second)[0];
    assert_eq!(rec["read_bytes"], MIB, "{rec}");
    assert_eq!(rec["blocks"], 25);
    let to = w.path("back.raw");
    let out = w.disk(&["restore", "vm", "b", "--to", to.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    same_image(&to, &img, "qcow2");
    assert!(
        fs::read_dir(w.path("store/disks/vm")).unwrap().all(|e| {
            let n = e.unwrap().file_name();
            !n.to_string_lossy().starts_with('.')
        }),
        "a temporary file was left in the store"
    );
}

/// QEMU refuses to revert an internal snapshot while the image has a
/// persistent dirty bitmap: a qcow2-internal restore removes ours first, and
/// the blocks snapshot after it reads the whole image and is right.
#[test]
fn internal_restore_with_a_blocks_bitmap_in_the_image() {
    let w = World::new();
    let img = w.image("vm.qcow2", "qcow2", 64 * MIB);
    let i = img.to_str().unwrap();
    let io = |cmd: &str| {
        let out = std::process::Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", cmd, i])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    io("write -P 1 0 4M");
    let ok = |o: Output| {
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        o
    };
    ok(w.disk(&["create", i, "a", "-m", "blocks"]));
    ok(w.disk(&["create", i, "x", "-m", "qcow2-internal"]));
    io("write -P 2 50M 1M");
    ok(w.disk(&["create", i, "b", "-m", "blocks"]));
    ok(w.disk(&["restore", "vm", "x"]));
    let c = ok(w.disk(&["create", i, "c", "-m", "blocks"]));
    let rec = &records(&c)[0];
    assert_eq!(rec["full_read"], true, "{rec}");
    assert_eq!(rec["read_bytes"], 4 * MIB);
    let raw = w.export("vm", "c");
    same_image(&raw, &img, "qcow2");
}

/// A dynamic VHDX (WSL's and Hyper-V's format) is snapshotted through QEMU
/// without being changed, restored in place as a VHDX, and exported as a
/// dynamic VHDX and as qcow2, each with the snapshot's contents.
#[test]
fn dynamic_vhdx_round_trip() {
    let w = World::new();
    let img = w.path("wsl.vhdx");
    let run = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let i = img.to_str().unwrap();
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vhdx",
            "-o",
            "subformat=dynamic",
            i,
            "64M",
        ],
    );
    run("qemu-io", &["-f", "vhdx", "-c", "write -P 5 1M 3M", i]);
    let before = sha(&img);
    let out = w.disk(&["create", i, "a"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(records(&out)[0]["format"], "vhdx");
    assert_eq!(sha(&img), before, "a snapshot changed the image");
    let snap = w.export("wsl", "a");
    run("qemu-io", &["-f", "vhdx", "-c", "write -P 6 30M 1M", i]);
    let out = w.disk(&["restore", "wsl", "a"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    same_image(&snap, &img, "vhdx");
    for (ext, fmt) in [("vhdx", "vhdx"), ("qcow2", "qcow2")] {
        let out_path = w.path(&format!("out.{ext}"));
        let o = w.disk(&["export", "wsl", "a", out_path.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        same_image(&snap, &out_path, fmt);
    }
    let info = run(
        "qemu-img",
        &[
            "info",
            "--output=json",
            w.path("out.vhdx").to_str().unwrap(),
        ],
    );
    assert!(info.contains("\"format\": \"vhdx\""), "{info}");
}

/// The test writer's dynamic VHDX is one qemu-img reads as written: the
/// parts a differencing file shares with it are right.
#[test]
fn vhdx_writer_agrees_with_qemu() {
    use snap_testkit::vhdx::{self, Block};
    let w = World::new();
    let img = w.path("w.vhdx");
    vhdx::write(
        &img,
        8 * MIB,
        &[
            (1, Block::Full(vec![7u8; MIB as usize])),
            (5, Block::Full(vec![9u8; MIB as usize])),
        ],
        None,
        "01234567-89AB-CDEF-0123-456789ABCDEF",
    );
    let raw = w.path("w.raw");
    let f = fs::File::create(&raw).unwrap();
    f.set_len(8 * MIB).unwrap();
    f.write_all_at(&vec![7u8; MIB as usize], MIB).unwrap();
    f.write_all_at(&vec![9u8; MIB as usize], 5 * MIB).unwrap();
    same_image(&raw, &img, "vhdx");
}

/// A differencing VHDX (which QEMU cannot open) is read with its parent:
/// absent blocks from the parent, a partly present block sector by sector;
/// its snapshot restores in place as a standalone dynamic VHDX. A parent
/// written after the child was made, or a missing one, is refused.
#[test]
fn differencing_vhdx_reads_through_its_parent() {
    use snap_testkit::vhdx::{self, Block, Parent};
    let w = World::new();
    let fill = |b: u8| vec![b; MIB as usize];
    let linkage = "0A0B0C0D-1111-2222-3333-444455556666";
    let parent_blocks = [
        (0, Block::Full(fill(1))),
        (1, Block::Full(fill(2))),
        (3, Block::Full(fill(4))),
    ];
    let parent = w.path("base.vhdx");
    vhdx::write(&parent, 8 * MIB, &parent_blocks, None, linkage);
    let child = w.path("child.vhdx");
    let sectors: Vec<(u64, Vec<u8>)> = (0..8).map(|s| (s, vec![6u8; 512])).collect();
    let link = Parent {
        relative_path: ".\\base.vhdx",
        data_write_guid: linkage,
    };
    let child_blocks = [
        (1, Block::Full(fill(5))),
        (3, Block::Partial(sectors)),
        (6, Block::Full(fill(7))),
    ];
    vhdx::write(
        &child,
        8 * MIB,
        &child_blocks,
        Some(&link),
        "99999999-0000-0000-0000-000000000001",
    );
    let mut expected = vec![0u8; 8 * MIB as usize];
    let m = MIB as usize;
    expected[..m].fill(1);
    expected[m..2 * m].fill(5);
    expected[3 * m..4 * m].fill(4);
    expected[3 * m..3 * m + 4096].fill(6);
    expected[6 * m..7 * m].fill(7);
    let c = child.to_str().unwrap();
    let out = w.disk(&["create", c, "a"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(records(&out)[0]["format"], "vhdx");
    assert_eq!(records(&out)[0]["consistency"], "stopped");
    let raw = w.export("child", "a");
    assert!(
        fs::read(&raw).unwrap() == expected,
        "the snapshot is not the chain's contents"
    );
    // The child changes (a Windows update), then is rolled back.
    vhdx::write(
        &child,
        8 * MIB,
        &child_blocks[2..],
        Some(&link),
        "99999999-0000-0000-0000-000000000002",
    );
    let out = w.disk(&["restore", "child", "a"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    same_image(&raw, &child, "vhdx");
    // A child whose parent was written since.
    vhdx::write(&child, 8 * MIB, &child_blocks[..1], Some(&link), linkage);
    vhdx::write(
        &parent,
        8 * MIB,
        &parent_blocks,
        None,
        "0A0B0C0D-1111-2222-3333-000000000000",
    );
    let out = w.disk(&["create", c, "b", "--disk", "other"]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("was written after it was made"),
        "{}",
        stderr(&out)
    );
    fs::remove_file(&parent).unwrap();
    let out = w.disk(&["create", c, "b", "--disk", "other"]);
    assert_eq!(code(&out), 66, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its parent VHDX is not found"),
        "{}",
        stderr(&out)
    );
}

/// kill -9 of snap-disk mid-snapshot (at its NBD connect, after the
/// transaction) leaves its nodes, export and job in QEMU and two bitmaps;
/// the next snapshot removes them, merges the bitmaps, reads every change
/// since the last good snapshot and no more, and is right.
#[test]
fn a_killed_live_snapshot_is_cleaned_up_by_the_next() {
    let w = World::new();
    let img = w.image("vm.raw", "raw", 32 * MIB);
    let q = Qsd::start(&img, "raw");
    fill(&q, 8);
    let before = q.inventory();
    let one = w.live(&q, &img, "one", &[]);
    assert_eq!(code(&one), 0, "{}", stderr(&one));
    q.write(10 * MIB, MIB, 0x41);
    let killed = std::process::Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e", "trace=connect"])
        .args(["-e", "inject=connect:signal=KILL:when=2"])
        .arg(assert_cmd::cargo::cargo_bin!("snap-disk"))
        .env_remove("SNAP_CONFIG")
        .env("SNAP_STORE", w.path("store"))
        .env("HOME", w.root())
        .args(["create", img.to_str().unwrap(), "two", "--qmp"])
        .arg(&q.qmp)
        .arg("--nbd-server")
        .arg(&q.nbd)
        .output()
        .expect("strace (cargo xtask test installs it)");
    assert!(!killed.status.success());
    assert_ne!(
        q.inventory(),
        before,
        "the kill left nothing behind: it came too late"
    );
    assert_eq!(q.bitmaps().len(), 2, "{:?}", q.bitmaps());
    q.write(20 * MIB, MIB, 0x42);
    let three = w.live(&q, &img, "three", &[]);
    assert_eq!(code(&three), 0, "{}", stderr(&three));
    let rec = &records(&three)[0];
    assert_eq!(rec["read_bytes"], 2 * MIB, "{rec}");
    assert_eq!(rec["parent"], "one");
    assert_eq!(q.inventory(), before);
    assert_eq!(
        q.bitmaps(),
        [("snap-disk-vm/three".to_string(), true, false)]
    );
    let leftovers: Vec<_> = fs::read_dir(w.path("store/disks/vm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".fleece"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let raw = w.export("vm", "three");
    same_image(&raw, q.url(), "raw");
}

/// A raw image's bitmap lives only in QEMU's memory: after the VM (the
/// daemon) restarts, the next snapshot reads the whole disk once, says why,
/// and the one after reads only what changed.
#[test]
fn raw_image_after_a_restart_reads_everything_once() {
    let w = World::new();
    let img = w.image("vm.raw", "raw", 32 * MIB);
    let q = Qsd::start(&img, "raw");
    fill(&q, 8);
    let one = w.live(&q, &img, "one", &[]);
    assert_eq!(code(&one), 0, "{}", stderr(&one));
    q.stop();
    let q = Qsd::start(&img, "raw");
    q.write(12 * MIB, MIB, 0x51);
    let two = w.live(&q, &img, "two", &[]);
    assert_eq!(code(&two), 0, "{}", stderr(&two));
    assert!(stderr(&two).contains("is gone"), "{}", stderr(&two));
    assert_eq!(records(&two)[0]["read_bytes"], 9 * MIB);
    q.write(20 * MIB, MIB, 0x52);
    let three = w.live(&q, &img, "three", &[]);
    assert_eq!(code(&three), 0, "{}", stderr(&three));
    assert_eq!(records(&three)[0]["read_bytes"], MIB);
    same_image(&w.export("vm", "three"), q.url(), "raw");
}
