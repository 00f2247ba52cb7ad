//! CLI tests for snap-disk, on real images made here: raw ext4 images filled
//! by `mke2fs -d` (no mounting), qcow2 images from `qemu-img convert`, and
//! writes into them with `qemu-io`. Each method's create, list, restore and
//! delete; byte-identical restores (sha256); what a 1% change stores; refusal
//! while a process holds the image; kill -9 mid-restore; overlay chains;
//! exports read back by `qemu-img compare`; encryption; the --before guard.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use snap_testkit::{World, code, records, stderr};

const MIB: u64 = 1 << 20;

/// Deterministic incompressible bytes (xorshift), so sizes are repeatable.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha(path: &Path) -> String {
    Sha256::digest(fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn path_env() -> String {
    format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs a helper program, panicking with its stderr when it fails.
fn sh(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .env("PATH", path_env())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (cargo xtask test installs it)"));
    assert!(out.status.success(), "{program} {args:?}: {}", stderr(&out));
}

/// What these tests do in the shared test world.
trait DiskWorld {
    fn disk(&self, args: &[&str]) -> Output;

    /// snap-disk ARGS with the world's store, sbin on PATH.
    fn cmd(&self, args: &[&str]) -> Command;

    /// Runs snap-disk and expects success; returns its records.
    fn disk_ok(&self, args: &[&str]) -> Vec<Value>;

    /// A raw ext4 image of `size_mib` holding `files` files of 256 KiB of noise.
    fn ext4(&self, name: &str, size_mib: u64, files: usize) -> PathBuf;

    /// A qcow2 copy of a raw image.
    fn qcow2(&self, raw: &Path, name: &str) -> PathBuf;

    fn store_bytes(&self, rel: &str) -> u64;
}

impl DiskWorld for World {
    fn disk(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::from_std(self.tool("snap-disk"));
        c.env("PATH", path_env())
            .env("SNAP_STORE", self.path("store"))
            .args(args);
        c
    }

    fn disk_ok(&self, args: &[&str]) -> Vec<Value> {
        let out = self.disk(args);
        assert_eq!(code(&out), 0, "snap-disk {args:?}: {}", stderr(&out));
        records(&out)
    }

    fn ext4(&self, name: &str, size_mib: u64, files: usize) -> PathBuf {
        let src = self.path(&format!("{name}.src"));
        fs::create_dir_all(&src).unwrap();
        for i in 0..files {
            fs::write(src.join(format!("f{i}")), noise(256 << 10, i as u64 + 1)).unwrap();
        }
        fs::write(src.join("notes.txt"), "hello\n".repeat(1000)).unwrap();
        let img = self.path(name);
        fs::File::create(&img)
            .unwrap()
            .set_len(size_mib * MIB)
            .unwrap();
        sh(
            "mke2fs",
            &[
                "-q",
                "-F",
                "-t",
                "ext4",
                "-d",
                &src.display().to_string(),
                &img.display().to_string(),
            ],
        );
        img
    }

    fn qcow2(&self, raw: &Path, name: &str) -> PathBuf {
        let out = self.path(name);
        sh(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                &raw.display().to_string(),
                &out.display().to_string(),
            ],
        );
        out
    }

    fn store_bytes(&self, rel: &str) -> u64 {
        walk(&self.path(rel))
    }
}

fn walk(p: &Path) -> u64 {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::read_dir(p)
            .unwrap()
            .map(|e| walk(&e.unwrap().path()))
            .sum(),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Overwrites `len` bytes at `at` of a file with noise.
fn scribble(img: &Path, at: u64, len: usize, seed: u64) {
    let f = fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(&noise(len, seed), at).unwrap();
}

fn qemu_io(img: &Path, fmt: &str, cmd: &str) {
    sh(
        "qemu-io",
        &["-f", fmt, "-c", cmd, &img.display().to_string()],
    );
}

fn identical(a: &Path, fa: &str, b: &Path, fb: &str) -> bool {
    std::process::Command::new("qemu-img")
        .args(["compare", "-q", "-f", fa, "-F", fb])
        .arg(a)
        .arg(b)
        .status()
        .unwrap()
        .success()
}

/// What `qemu-img info --output=json` says of an image.
fn image_info(path: &Path) -> Value {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-img info {}", path.display());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// blocks: create, list, restore in place and delete; the restored image is byte-identical.
#[test]
fn blocks_round_trip() {
    let w = World::new();
    let img = w.ext4("vm.raw", 64, 40);
    let before = sha(&img);
    let rec = &w.disk_ok(&[
        "create",
        &w.p("vm.raw"),
        "clean",
        "-d",
        "fresh install",
        "-t",
        "keep",
    ])[0];
    assert_eq!(rec["kind"], "disk-snapshot");
    assert_eq!(rec["method"], "blocks");
    assert_eq!(rec["disk"], "vm");
    assert_eq!(rec["virtual_size"], 64 * MIB);
    assert_eq!(rec["description"], "fresh install");
    assert_eq!(
        rec["created_by"]["tool"],
        concat!("snap-disk ", env!("CARGO_PKG_VERSION"))
    );
    let catalog = || {
        let store = snap_shared::store::Store::new(w.path("store"));
        let (c, _) = snap_shared::catalog::Catalog::open(&store).unwrap();
        c.disk_snapshots(Some("vm")).unwrap()
    };
    assert_eq!(catalog().len(), 1, "the catalog has the snapshot's row");
    scribble(&img, 20 * MIB, 3 * MIB as usize, 99);
    fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(70 * MIB)
        .unwrap();
    assert_ne!(sha(&img), before);
    let listed = w.disk_ok(&["list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "clean");
    let out = w.disk_ok(&["restore", "vm", "clean"]);
    assert_eq!(
        out[0]["tags"],
        json!(["pre-restore"]),
        "the undo snapshot first"
    );
    assert_eq!(out[1]["kind"], "restored");
    assert_eq!(out[1]["undo"], out[0]["name"]);
    assert_eq!(sha(&img), before);
    assert_eq!(fs::metadata(&img).unwrap().len(), 64 * MIB);
    // Nothing differs now: a second restore writes nothing.
    let again = w.disk_ok(&["restore", "vm", "clean", "--no-undo"]);
    assert_eq!(again.len(), 1, "--no-undo takes no snapshot");
    assert_eq!(again[0]["bytes"], 0);
    w.disk_ok(&["delete", "vm", "clean", out[0]["name"].as_str().unwrap()]);
    assert!(w.disk_ok(&["list", "vm"]).is_empty());
    assert!(catalog().is_empty(), "and loses it with the snapshot");
    assert_eq!(
        w.store_bytes("store/disks/vm/blocks"),
        0,
        "the deleted snapshot's blocks are collected"
    );
}

/// `restore --dry-run` names the blocks a restore would rewrite, raw,
/// qcow2, and a qcow2 over a backing file (read through a read-only QEMU
/// export), and changes nothing: the image's bytes
/// and time stay, no undo snapshot is taken; while a process holds the image
/// it is refused as the restore is (75).
#[test]
fn a_dry_run_counts_the_blocks_and_changes_nothing() {
    let w = World::new();
    let raw = w.ext4("dry.raw", 32, 20);
    let q = w.qcow2(&raw, "dryq.qcow2");
    let o = w.path("dryo.qcow2");
    let (b, op) = (raw.display().to_string(), o.display().to_string());
    sh(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "-b", &b, "-F", "raw", &op],
    );
    for (img, name) in [(&raw, "dry"), (&q, "dryq"), (&o, "dryo")] {
        let p = img.display().to_string();
        let rec = &w.disk_ok(&["create", &p, "s", "--method", "blocks"])[0];
        let disk = rec["disk"].as_str().unwrap().to_string();
        let block = rec["block_size"].as_u64().unwrap_or(MIB);
        // Three blocks changed: 2 MiB from 5 MiB on, written through the format.
        match name {
            "dry" => scribble(img, 5 * MIB, 2 * MIB as usize, 5),
            _ => qemu_io(
                img,
                "qcow2",
                &format!("write -P 0x5a {} {}", 5 * MIB, 2 * MIB),
            ),
        }
        let (bytes, time) = (sha(img), fs::metadata(img).unwrap().modified().unwrap());
        let out = w.disk_ok(&["restore", &disk, "s", "--dry-run"]);
        assert_eq!(out.len(), 1, "no undo snapshot: {out:?}");
        assert_eq!(out[0]["dry_run"], true);
        let n = out[0]["blocks"].as_u64().unwrap();
        assert_eq!(n, (2 * MIB).div_ceil(block), "{name}: {out:?}");
        assert_eq!(out[0]["would_write"].as_u64().unwrap(), n * block);
        assert_eq!(sha(img), bytes, "{name}: the dry run wrote");
        assert_eq!(fs::metadata(img).unwrap().modified().unwrap(), time);
        assert_eq!(w.disk_ok(&["list", &disk]).len(), 1);
        let mut held = std::process::Command::new("sleep")
            .arg("60")
            .stdin(fs::File::open(img).unwrap())
            .spawn()
            .unwrap();
        let refused = w.disk(&["restore", &disk, "s", "--dry-run"]);
        held.kill().unwrap();
        held.wait().unwrap();
        assert_eq!(code(&refused), 75, "{}", stderr(&refused));
        // And the restore does what the dry run said.
        let done = w.disk_ok(&["restore", &disk, "s", "--no-undo"]);
        assert_eq!(done[0]["bytes"].as_u64().unwrap(), n * block, "{name}");
    }
}

/// A change of about 1% of the image's data stores about 1%, and both snapshots restore.
#[test]
fn one_percent_change_stores_about_one_percent() {
    let w = World::new();
    let img = w.ext4("big.raw", 128, 400); // 100 MiB of noise
    let first = &w.disk_ok(&["create", &w.p("big.raw"), "a"])[0];
    let stored = first["stored_bytes"].as_u64().unwrap();
    assert!(stored > 95 * MIB, "noise does not compress: {stored}");
    let a = sha(&img);
    scribble(&img, 30 * MIB + 12345, (MIB as usize) + 1, 7); // 1 MiB, across two blocks
    let second = &w.disk_ok(&["create", &w.p("big.raw"), "b"])[0];
    let new = second["new_bytes"].as_u64().unwrap();
    assert!(new <= 2 * MIB + 4096, "a 1% change stored {new} bytes");
    assert!(new >= MIB, "the change was stored: {new}");
    assert_eq!(second["parent"], "a");
    let b = sha(&img);
    w.disk_ok(&["restore", "big", "a"]);
    assert_eq!(sha(&img), a);
    w.disk_ok(&["restore", "big", "b"]);
    assert_eq!(sha(&img), b);
}

/// Holes and zero blocks are not stored; the restored image is sparse again.
#[test]
fn zero_blocks_are_not_stored() {
    let w = World::new();
    let img = w.path("sparse.raw");
    let f = fs::File::create(&img).unwrap();
    f.set_len(256 * MIB).unwrap();
    f.write_all_at(&noise(4096, 1), 100 * MIB).unwrap();
    f.write_all_at(&vec![0u8; MIB as usize], 10 * MIB).unwrap(); // written zeros
    let rec = &w.disk_ok(&["create", &w.p("sparse.raw")])[0];
    assert_eq!(rec["blocks"], 1);
    assert!(
        rec["read_bytes"].as_u64().unwrap() <= 3 * MIB,
        "holes were read: {rec}"
    );
    let name = rec["name"].as_str().unwrap().to_string();
    w.disk_ok(&["restore", "sparse", &name, "--to", &w.p("copy.raw")]);
    assert_eq!(sha(&w.path("copy.raw")), sha(&img));
    use std::os::unix::fs::MetadataExt;
    assert!(fs::metadata(w.path("copy.raw")).unwrap().blocks() * 512 <= 2 * MIB);
}

/// Restore and delete refuse with 75, naming the process, while one holds the image; nothing changes.
#[test]
fn refuses_an_image_in_use() {
    let w = World::new();
    let img = w.ext4("busy.raw", 32, 4);
    w.disk_ok(&["create", &w.p("busy.raw"), "s"]);
    scribble(&img, MIB, 4096, 3);
    let changed = sha(&img);
    let mut vm = std::process::Command::new("sleep")
        .arg("60")
        .stdin(fs::File::open(&img).unwrap())
        .spawn()
        .unwrap();
    let out = w.disk(&["restore", "busy", "s"]);
    let err = stderr(&out);
    let pid = vm.id();
    let with_require = w.disk(&["create", &w.p("busy.raw"), "t", "--require-stopped"]);
    let warned = w.disk(&["create", &w.p("busy.raw"), "u"]);
    vm.kill().unwrap();
    vm.wait().unwrap();
    assert_eq!(code(&out), 75, "{err}");
    assert!(
        err.contains(&format!("in use by sleep (pid {pid})")),
        "{err}"
    );
    assert_eq!(sha(&img), changed);
    assert_eq!(code(&with_require), 75);
    assert_eq!(code(&warned), 0);
    assert!(
        stderr(&warned).contains("no QMP socket is known"),
        "{}",
        stderr(&warned)
    );
    assert_eq!(records(&warned)[0]["crash_consistent"], true);
    assert_eq!(records(&warned)[0]["consistency"], "none");
}

/// kill -9 in the middle of a restore leaves a marker that blocks new snapshots; rerunning finishes it.
#[test]
fn kill_mid_restore_then_rerun() {
    let w = World::new();
    let img = w.path("k.raw");
    fs::write(&img, noise(96 * MIB as usize, 5)).unwrap();
    w.disk_ok(&["create", &w.p("k.raw"), "s"]);
    let want = sha(&img);
    fs::write(&img, noise(96 * MIB as usize, 6)).unwrap();
    let marker = w.path("store/disks/k/.restoring");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("snap-disk"))
        .args(["restore", "k", "s"])
        .env("SNAP_STORE", w.path("store"))
        .env("HOME", w.path("home"))
        .env("PATH", path_env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !marker.exists() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        marker.exists(),
        "the restore was killed while rewriting the image"
    );
    let refused = w.disk(&["create", &w.p("k.raw"), "t"]);
    assert_eq!(code(&refused), 65, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("snap-disk restore k s"),
        "{}",
        stderr(&refused)
    );
    w.disk_ok(&["restore", "k", "s"]);
    assert_eq!(sha(&img), want);
    assert!(!marker.exists());
}

/// Every in-place restore first takes `before-restore-TIME` (tagged
/// pre-restore) by the image's own method; restoring it undoes the restore:
/// the image is as it was (qemu-img compare), for blocks, internal and overlay.
#[test]
fn a_restore_is_undone_by_its_before_restore_snapshot() {
    let w = World::new();
    let raw = w.ext4("u.raw", 32, 8);
    let q = w.qcow2(&raw, "q.qcow2");
    let o = w.qcow2(&raw, "o.qcow2");
    for (img, fmt, extra) in [
        (&raw, "raw", None),
        (&q, "qcow2", None),
        (&o, "qcow2", Some("--overlay")),
    ] {
        let mut create = vec!["create", img.to_str().unwrap(), "a"];
        create.extend(extra);
        w.disk_ok(&create);
        qemu_io(img, fmt, "write -P 0x5a 1M 2M");
        let before = w.path(&format!("{fmt}-before.raw"));
        sh(
            "qemu-img",
            &[
                "convert",
                "-f",
                fmt,
                "-O",
                "raw",
                img.to_str().unwrap(),
                before.to_str().unwrap(),
            ],
        );
        let out = w.disk_ok(&["restore", img.to_str().unwrap(), "a"]);
        let undo = out[0]["name"].as_str().unwrap().to_string();
        assert!(undo.starts_with("before-restore-"), "{undo}");
        assert_eq!(out[0]["tags"], json!(["pre-restore"]));
        assert_eq!(out[1]["undo"], undo.as_str());
        assert!(
            !identical(&before, "raw", img, fmt),
            "the restore changed it"
        );
        w.disk_ok(&["restore", img.to_str().unwrap(), &undo, "--no-undo"]);
        assert!(identical(&before, "raw", img, fmt), "{fmt}: undone");
    }
}

/// show gives every method's sizes: the disk, what the snapshot stores
/// alone and the ratio; an internal one's ID and VM state. Its stderr whole,
/// with the time, the paths and the user redacted.
#[test]
fn show_gives_sizes_for_every_method() {
    let w = World::new();
    let img = w.path("d.qcow2");
    sh(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "64M"],
    );
    qemu_io(&img, "qcow2", "write -P 1 0 8M");
    w.disk_ok(&["create", img.to_str().unwrap(), "a"]);
    qemu_io(&img, "qcow2", "write -P 2 0 3M");
    let out = w.disk(&["show", "d", "a"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out)
        .lines()
        .map(|l| {
            for key in ["Disk", "Created", "Created by"] {
                let head = format!("snap-disk:   {key}: ");
                if l.starts_with(&head) {
                    let what = match key {
                        "Disk" => "[DISK]",
                        "Created" => "[TIME]",
                        _ => "[WHO]",
                    };
                    return format!("{head}{what}");
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        text,
        "snap-disk: Snapshot: a
snap-disk:   Disk: [DISK]
snap-disk:   Created: [TIME]
snap-disk:   Method: qcow2-internal (qcow2 image)
snap-disk:   ID: 1
snap-disk:   Disk size: 64.0 MiB
snap-disk:   VM state: none (disk only)
snap-disk:   Stored: 3.12 MiB (4.9% of the disk size)
snap-disk:   Created by: [WHO]"
    );
    assert_eq!(records(&out)[0]["owned_bytes"], (3 << 20) + (128 << 10));
    let raw = w.ext4("b.raw", 32, 8);
    w.disk_ok(&["create", raw.to_str().unwrap(), "b1"]);
    w.disk_ok(&["create", img.to_str().unwrap(), "o1", "--overlay"]);
    for (disk, name) in [("b", "b1"), ("d", "o1")] {
        let out = w.disk(&["show", disk, name]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let rec = &records(&out)[0];
        let stored = rec["stored_bytes"].as_u64().unwrap();
        assert!(stored > 0, "{rec}");
        let pct = format!(
            "{:.1}%",
            stored as f64 * 100.0 / rec["virtual_size"].as_f64().unwrap()
        );
        assert!(
            stderr(&out).contains("of the disk size") && stderr(&out).contains(&pct),
            "{}",
            stderr(&out)
        );
    }
}

/// qcow2-internal: qemu-img's snapshots with snap's description; list flags the ones in one place only.
#[test]
fn qcow2_internal_round_trip() {
    let w = World::new();
    let raw = w.ext4("base.raw", 32, 8);
    let img = w.qcow2(&raw, "dev.qcow2");
    let rec = &w.disk_ok(&[
        "create",
        &w.p("dev.qcow2"),
        "before-upgrade",
        "-d",
        "Before system upgrade",
    ])[0];
    assert_eq!(rec["method"], "qcow2-internal");
    sh(
        "qemu-img",
        &["snapshot", "-c", "by-hand", &w.p("dev.qcow2")],
    );
    qemu_io(&img, "qcow2", "write -P 0xab 0 1M");
    let listed = w.disk_ok(&["list", "dev"]);
    let state = |n: &str| listed.iter().find(|r| r["name"] == n).unwrap()["state"].clone();
    assert_eq!(state("before-upgrade"), Value::Null);
    assert_eq!(state("by-hand"), "image-only");
    w.disk_ok(&["restore", &w.p("dev.qcow2"), "before-upgrade", "--no-undo"]);
    assert!(identical(&raw, "raw", &img, "qcow2"));
    sh(
        "qemu-img",
        &["snapshot", "-d", "before-upgrade", &w.p("dev.qcow2")],
    );
    let listed = w.disk_ok(&["list", "dev"]);
    assert_eq!(
        listed
            .iter()
            .find(|r| r["name"] == "before-upgrade")
            .unwrap()["state"],
        "missing"
    );
    w.disk_ok(&["delete", "dev", "before-upgrade"]);
    assert_eq!(w.disk_ok(&["list", "dev"]).len(), 1);
}

/// `create --all` snapshots every disk of the config with the given tag and
/// description; a missing one is reported and the others are still made,
/// the exit is the failure's; with no disks configured it does nothing, exit 0.
#[test]
fn create_all_takes_every_configured_disk() {
    let w = World::new();
    let raw = w.ext4("base.raw", 8, 2);
    w.qcow2(&raw, "a.qcow2");
    w.qcow2(&raw, "b.qcow2");
    let config = w.path("config.json");
    let write = |images: &[&str]| {
        let disks: Vec<Value> = images
            .iter()
            .map(|i| serde_json::json!({"image": w.p(i)}))
            .collect();
        fs::write(&config, serde_json::json!({"disks": disks}).to_string()).unwrap();
    };
    write(&["a.qcow2", "b.qcow2"]);
    let recs = w.disk_ok(&[
        "--config",
        &w.p("config.json"),
        "create",
        "--all",
        "--tag",
        "pre-apt",
        "-d",
        "before apt",
    ]);
    let disks: Vec<&Value> = recs.iter().map(|r| &r["disk"]).collect();
    assert_eq!(disks, ["a", "b"]);
    assert!(
        recs.iter().all(
            |r| r["tags"] == serde_json::json!(["pre-apt"]) && r["description"] == "before apt"
        )
    );

    write(&["gone.qcow2", "b.qcow2"]);
    let out = w.disk(&["--config", &w.p("config.json"), "create", "--all"]);
    assert_eq!(code(&out), 66, "{}", stderr(&out));
    assert!(stderr(&out).contains("gone.qcow2"), "{}", stderr(&out));
    assert_eq!(records(&out).len(), 1, "b is still snapshotted");
    assert_eq!(w.disk_ok(&["list", "b"]).len(), 2);

    write(&[]);
    assert!(
        w.disk_ok(&["--config", &w.p("config.json"), "create", "--all"])
            .is_empty()
    );
    let out = w.disk(&["create", "--all", &w.p("a.qcow2")]);
    assert_eq!(code(&out), 64, "--all with an image is a usage error");
}

/// A create killed inside `qemu-img snapshot` (its intent left, the snapshot
/// made in the image but not recorded) is repaired by the next command, which
/// can then use the name; a delete killed after qemu-img drops the record.
#[test]
fn interrupted_qemu_img_is_repaired_by_the_next_command() {
    let w = World::new();
    let raw = w.ext4("base.raw", 32, 8);
    w.qcow2(&raw, "dev.qcow2");
    w.disk_ok(&["create", &w.p("dev.qcow2"), "first"]);
    let intent = w.path("store/disks/dev/.changing");
    sh("qemu-img", &["snapshot", "-c", "second", &w.p("dev.qcow2")]);
    fs::write(&intent, r#"{"op":"create","name":"second"}"#).unwrap();
    let out = w.disk(&["create", &w.p("dev.qcow2"), "second"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a `qemu-img snapshot` on it was interrupted; repairing it"),
        "{}",
        stderr(&out)
    );
    assert!(!intent.exists());
    let listed = w.disk_ok(&["list", "dev"]);
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r["state"].is_null()), "{listed:?}");
    sh("qemu-img", &["snapshot", "-d", "first", &w.p("dev.qcow2")]);
    fs::write(&intent, r#"{"op":"delete","name":"first"}"#).unwrap();
    w.disk_ok(&["delete", "dev", "first"]);
    let names: Vec<Value> = w
        .disk_ok(&["list", "dev"])
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, ["second"]);
    assert!(!intent.exists());
}

/// overlay: a chain of two snapshots; restore goes back, delete rebases, commit folds the chain.
#[test]
fn overlay_chain_round_trip() {
    let w = World::new();
    let raw = w.ext4("base.raw", 32, 8);
    let img = w.qcow2(&raw, "ov.qcow2");
    let mut vm = std::process::Command::new("sleep")
        .arg("60")
        .stdin(fs::File::open(&img).unwrap())
        .spawn()
        .unwrap();
    let held = w.disk(&["create", &w.p("ov.qcow2"), "--overlay", "o0"]);
    vm.kill().unwrap();
    vm.wait().unwrap();
    assert_eq!(
        code(&held),
        75,
        "never freeze an image in use: {}",
        stderr(&held)
    );
    assert!(!w.path("ov.qcow2.snapshots").exists());
    w.disk_ok(&["create", &w.p("ov.qcow2"), "--overlay", "o1"]);
    qemu_io(&img, "qcow2", "write -P 0xcd 0 1M");
    w.disk_ok(&["create", &w.p("ov.qcow2"), "--overlay", "o2"]);
    let at_o2 = w.path("at-o2.raw");
    sh(
        "qemu-img",
        &[
            "convert",
            "-O",
            "raw",
            &w.p("ov.qcow2"),
            &at_o2.display().to_string(),
        ],
    );
    qemu_io(&img, "qcow2", "write -P 0xef 2M 1M");
    let frozen = w.path("ov.qcow2.snapshots/o1.qcow2");
    assert!(fs::metadata(&frozen).unwrap().permissions().readonly());
    w.disk_ok(&["restore", "ov", "o2", "--no-undo"]);
    assert!(identical(&at_o2, "raw", &img, "qcow2"));
    w.disk_ok(&["restore", "ov", "o1", "--no-undo"]);
    assert!(identical(&raw, "raw", &img, "qcow2"));
    w.disk_ok(&["restore", "ov", "o2", "--no-undo"]);
    w.disk_ok(&["delete", "ov", "o1"]);
    assert!(!frozen.exists());
    assert!(
        identical(&at_o2, "raw", &img, "qcow2"),
        "o2 keeps its data once o1 is gone"
    );
    qemu_io(&img, "qcow2", "write -P 0x11 4M 1M");
    let now = w.path("now.raw");
    sh(
        "qemu-img",
        &[
            "convert",
            "-O",
            "raw",
            &w.p("ov.qcow2"),
            &now.display().to_string(),
        ],
    );
    w.disk_ok(&["commit", "ov"]);
    assert!(identical(&now, "raw", &img, "qcow2"));
    let info = image_info(&img);
    assert!(
        info.get("backing-filename").is_none(),
        "one image after commit: {info}"
    );
    assert!(w.disk_ok(&["list", "ov"]).is_empty());
}

/// Exports by every suffix read back identical to the snapshot (qemu-img
/// compare), in the format the suffix names (qemu-img info); a suffix it
/// does not know is 64, and an existing file is never written over.
#[test]
fn exports_read_back() {
    let w = World::new();
    let raw = w.ext4("e.raw", 32, 8);
    w.disk_ok(&["create", &w.p("e.raw"), "s"]);
    w.qcow2(&raw, "q.qcow2");
    w.disk_ok(&["create", &w.p("q.qcow2"), "qs"]);
    let suffixes = [
        ("raw", "raw"),
        ("img", "raw"),
        ("raw.zst", "raw"),
        ("raw.gz", "raw"),
        ("qcow2", "qcow2"),
        ("qcow2.zst", "qcow2"),
        ("qcow2.gz", "qcow2"),
        ("vhdx", "vhdx"),
        ("vdi", "vdi"),
        ("vmdk", "vmdk"),
    ];
    for (disk, snap) in [("e", "s"), ("q", "qs")] {
        for (ext, fmt) in suffixes {
            let out = w.path(&format!("{disk}-out.{ext}"));
            w.disk_ok(&["export", disk, snap, &out.display().to_string()]);
            let readable = match ext.rsplit_once('.') {
                Some((_, z @ ("zst" | "gz"))) => {
                    let dst = w.path(&format!("{disk}-{z}.{fmt}"));
                    let tool = if z == "zst" { "zstd" } else { "gzip" };
                    let data = std::process::Command::new(tool)
                        .arg("-dc")
                        .arg(&out)
                        .output()
                        .unwrap();
                    assert!(data.status.success(), "{disk} {ext}: {tool} -dc");
                    fs::write(&dst, data.stdout).unwrap();
                    dst
                }
                _ => out,
            };
            assert_eq!(
                image_info(&readable)["format"],
                fmt,
                "{disk} {ext}: qemu-img info"
            );
            assert!(identical(&raw, "raw", &readable, fmt), "{disk} {ext}");
        }
    }
    let again = w.disk(&["export", "e", "s", &w.p("e-out.raw")]);
    assert_eq!(code(&again), 73, "never over an existing file");
    for unknown in [
        "e-out.gz",
        "e-out.zst",
        "e-out.qcow",
        "e-out.vhdx.gz",
        "e-out",
    ] {
        let bad = w.disk(&["export", "e", "s", &w.p(unknown)]);
        assert_eq!(code(&bad), 64, "{unknown}");
        assert!(
            stderr(&bad).contains(".qcow2.gz") && stderr(&bad).contains(".vmdk"),
            "{unknown}: the suffixes are named: {}",
            stderr(&bad)
        );
        assert!(!w.path(unknown).exists(), "{unknown}: nothing written");
    }
}

/// Encrypted blocks are age files; restoring needs the identity.
#[test]
fn encrypted_blocks_need_the_identity() {
    let w = World::new();
    let img = w.ext4("sec.raw", 32, 8);
    let id = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    fs::write(w.path("key.txt"), id.to_string().expose_secret()).unwrap();
    let recipient = id.to_public().to_string();
    w.disk_ok(&["create", &w.p("sec.raw"), "s", "-r", &recipient]);
    let plain = w.disk(&["create", &w.p("sec.raw"), "t"]);
    assert_eq!(
        code(&plain),
        64,
        "an encrypted disk never gets plain blocks"
    );
    let want = sha(&img);
    scribble(&img, 0, 8192, 4);
    let no_key = w.disk(&["restore", "sec", "s"]);
    assert_eq!(code(&no_key), 64, "{}", stderr(&no_key));
    w.disk_ok(&["restore", "sec", "s", "-i", &w.p("key.txt")]);
    assert_eq!(sha(&img), want);
}

/// verify finds a damaged block (exit 65) and names it.
#[test]
fn verify_finds_damage() {
    let w = World::new();
    w.ext4("v.raw", 32, 8);
    w.disk_ok(&["create", &w.p("v.raw"), "s"]);
    w.disk_ok(&["verify", "v"]);
    let fan = fs::read_dir(w.path("store/disks/v/blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| fs::read_dir(p).unwrap().next().is_some())
        .unwrap();
    let block = fs::read_dir(fan).unwrap().next().unwrap().unwrap().path();
    fs::write(&block, zstd::encode_all(&b"not it"[..], 3).unwrap()).unwrap();
    let out = w.disk(&["verify", "v"]);
    assert_eq!(code(&out), 65);
    assert!(
        stderr(&out).contains("do not match its sha256"),
        "{}",
        stderr(&out)
    );
    assert_eq!(records(&out)[0]["errors"], 1);
}

/// verify runs qemu-img check on a qcow2 image besides its snapshots: an
/// intact one passes; a refcount set to zero under a used cluster is damage
/// (exit 65), named; a snapshot gone from the image is named too.
#[test]
fn verify_checks_a_qcow2_image_with_qemu_img() {
    let w = World::new();
    let img = w.path("c.qcow2");
    let p = img.to_str().unwrap();
    sh("qemu-img", &["create", "-q", "-f", "qcow2", p, "16M"]);
    qemu_io(&img, "qcow2", "write -P 1 0 1M");
    w.disk_ok(&["create", p, "s1"]);
    w.disk_ok(&["create", p, "s2"]);
    let out = w.disk(&["verify", p]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("qemu-img check: no errors"),
        "{}",
        stderr(&out)
    );
    sh("qemu-img", &["snapshot", "-d", "s2", p]);
    // The header cluster's refcount, the first entry of the first refcount block, to 0.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let mut h = [0u8; 8];
    f.read_exact_at(&mut h, 48).unwrap();
    let table = u64::from_be_bytes(h);
    f.read_exact_at(&mut h, table).unwrap();
    let block = u64::from_be_bytes(h) & !0x1ff;
    f.write_all_at(&[0, 0], block).unwrap();
    drop(f);
    let out = w.disk(&["verify", p]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("qemu-img check found 1 corruptions"), "{err}");
    assert!(
        err.contains("s2: its snapshot is gone from the image"),
        "{err}"
    );
}

/// compact gives back what a qcow2 image no longer uses: it refuses while an
/// internal snapshot would be dropped unexported (64, named) and while the
/// image is in use (75); after an export it swaps in an equal image
/// (qemu-img compare) with the same mode, smaller on disk.
#[test]
fn compact_swaps_in_an_equal_smaller_image() {
    let w = World::new();
    let img = w.path("c.qcow2");
    let p = img.to_str().unwrap();
    sh("qemu-img", &["create", "-q", "-f", "qcow2", p, "64M"]);
    qemu_io(&img, "qcow2", "write -P 1 0 16M");
    w.disk_ok(&["create", p, "old"]);
    qemu_io(&img, "qcow2", "write -P 2 0 16M");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&img, fs::Permissions::from_mode(0o640)).unwrap();
    let refused = w.disk(&["compact", p]);
    assert_eq!(code(&refused), 64, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("drop: old"),
        "{}",
        stderr(&refused)
    );
    let mut vm = std::process::Command::new("sleep")
        .arg("60")
        .stdin(fs::File::open(&img).unwrap())
        .spawn()
        .unwrap();
    let held = w.disk(&["compact", p, "--drop-snapshots"]);
    vm.kill().unwrap();
    vm.wait().unwrap();
    assert_eq!(code(&held), 75, "{}", stderr(&held));
    w.disk_ok(&["export", "c", "old", &w.p("old.qcow2")]);
    let copy = w.path("now.raw");
    sh(
        "qemu-img",
        &["convert", "-O", "raw", p, copy.to_str().unwrap()],
    );
    use std::os::unix::fs::MetadataExt;
    let before = fs::metadata(&img).unwrap().blocks();
    let out = w.disk(&["compact", p]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("given back"), "{}", stderr(&out));
    assert!(fs::metadata(&img).unwrap().blocks() < before);
    assert_eq!(fs::metadata(&img).unwrap().mode() & 0o777, 0o640);
    assert!(identical(&copy, "raw", &img, "qcow2"));
    assert!(
        w.disk_ok(&["list", "c"]).is_empty(),
        "the dropped snapshot's record is gone"
    );
}

/// export --recipient writes one age stream (NAME.SUFFIX.age, mode 0600)
/// that `age -d` turns back into the image the suffix names; a name and
/// flags that disagree are 64.
#[test]
fn encrypted_exports_decrypt_with_age() {
    let w = World::new();
    let img = w.path("e.qcow2");
    let p = img.to_str().unwrap();
    sh("qemu-img", &["create", "-q", "-f", "qcow2", p, "16M"]);
    qemu_io(&img, "qcow2", "write -P 7 0 2M");
    w.disk_ok(&["create", p, "s"]);
    let recipient = snap_testkit::age_keygen(&w.path("key.txt"));
    let sealed = w.path("s.qcow2.zst.age");
    let rec = w.disk_ok(&[
        "export",
        "e",
        "s",
        sealed.to_str().unwrap(),
        "-r",
        &recipient,
    ]);
    assert_eq!(rec[0]["encryption"], "age");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&sealed).unwrap().mode() & 0o777, 0o600);
    let zst = w.path("s.qcow2.zst");
    sh(
        "age",
        &[
            "-d",
            "-i",
            &w.p("key.txt"),
            "-o",
            zst.to_str().unwrap(),
            sealed.to_str().unwrap(),
        ],
    );
    let plain = w.path("s.qcow2");
    sh(
        "zstd",
        &[
            "-q",
            "-d",
            zst.to_str().unwrap(),
            "-o",
            plain.to_str().unwrap(),
        ],
    );
    assert_eq!(image_info(&plain)["format"], "qcow2");
    let at_s = w.path("at-s.raw");
    sh(
        "qemu-img",
        &[
            "convert",
            "-l",
            "snapshot.name=s",
            "-O",
            "raw",
            p,
            at_s.to_str().unwrap(),
        ],
    );
    assert!(identical(&at_s, "raw", &plain, "qcow2"));
    let unnamed = w.disk(&["export", "e", "s", &w.p("x.qcow2"), "-r", &recipient]);
    assert_eq!(code(&unnamed), 64, "{}", stderr(&unnamed));
    let keyless = w.disk(&["export", "e", "s", &w.p("y.qcow2.age")]);
    assert_eq!(code(&keyless), 64, "{}", stderr(&keyless));
}

/// --before: a failing command leaves the snapshot and says how to roll back;
/// --rollback-on-failure rolls back a stopped image.
#[test]
fn before_guard() {
    let w = World::new();
    let img = w.ext4("g.raw", 32, 8);
    let want = sha(&img);
    let cmd = format!(
        "dd if=/dev/urandom of={} bs=64k count=4 conv=notrunc 2>/dev/null; exit 3",
        w.p("g.raw")
    );
    let out = w.disk(&["create", &w.p("g.raw"), "pre", "--before", &cmd]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("snap-disk restore g pre"),
        "{}",
        stderr(&out)
    );
    assert_ne!(sha(&img), want);
    w.disk_ok(&["restore", "g", "pre"]);
    let out = w.disk(&[
        "create",
        &w.p("g.raw"),
        "pre2",
        "--before",
        &cmd,
        "--rollback-on-failure",
    ]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("rolled back to pre2"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sha(&img), want);
    let fine = w.disk(&["create", &w.p("g.raw"), "pre3", "--before", "echo upgraded"]);
    assert_eq!(code(&fine), 0);
    assert_eq!(
        records(&fine).len(),
        1,
        "the command's output goes to stderr, not among the records"
    );
}

/// Bad input: a missing image (66), a bad name (64), a taken name (73), an unknown snapshot (66).
#[test]
fn bad_input() {
    let w = World::new();
    w.ext4("b.raw", 32, 2);
    let out = w.disk(&["create", &w.p("nope.raw")]);
    assert_eq!(code(&out), 66, "{}", stderr(&out));
    let out = w.disk(&["create", &w.p("b.raw"), "../x"]);
    assert_eq!(code(&out), 64, "{}", stderr(&out));
    let out = w.disk(&["create", &w.p("b.raw"), "disk"]);
    assert_eq!(
        code(&out),
        64,
        "the name of the settings file: {}",
        stderr(&out)
    );
    w.disk_ok(&["create", &w.p("b.raw"), "s"]);
    let out = w.disk(&["create", &w.p("b.raw"), "s"]);
    assert_eq!(code(&out), 73, "{}", stderr(&out));
    let out = w.disk(&["restore", "b", "nope"]);
    assert_eq!(code(&out), 66);
    assert_eq!(
        stderr(&out).lines().next().unwrap(),
        "snap-disk: disk b: no snapshot named nope"
    );
    let out = w.disk(&["create", &w.p("b.raw"), "--overlay", "o"]);
    assert_eq!(code(&out), 64, "overlay needs qcow2: {}", stderr(&out));
}

/// Blocks left by a create that died before flushing are collected by the next create.
#[test]
fn interrupted_create_is_cleaned_up() {
    let w = World::new();
    w.ext4("c.raw", 32, 4);
    w.disk_ok(&["create", &w.p("c.raw"), "s"]);
    let stray = w.path("store/disks/c/blocks/00/00aa");
    fs::write(&stray, b"torn").unwrap();
    fs::write(w.path("store/disks/c/.unsynced"), b"").unwrap();
    let out = w.disk(&["create", &w.p("c.raw"), "t"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stray.exists());
    w.disk_ok(&["verify", "c"]);
}

/// Two disks with the same blocks store them once (hard links); deleting one
/// disk's snapshot leaves the other's whole. An encrypted disk shares nothing.
#[test]
fn disks_share_blocks() {
    let w = World::new();
    let img = w.ext4("a.raw", 32, 20);
    fs::copy(&img, w.path("b.raw")).unwrap();
    fs::copy(&img, w.path("c.raw")).unwrap();
    let a = &w.disk_ok(&["create", &w.p("a.raw"), "s"])[0];
    assert!(a["new_bytes"].as_u64().unwrap() > 4 * MIB);
    let b = &w.disk_ok(&["create", &w.p("b.raw"), "s"])[0];
    assert_eq!(b["new_bytes"], 0, "b's blocks are a's: {b}");
    let id = age::x25519::Identity::generate();
    let c = &w.disk_ok(&[
        "create",
        &w.p("c.raw"),
        "s",
        "-r",
        &id.to_public().to_string(),
    ])[0];
    assert!(
        c["new_bytes"].as_u64().unwrap() > 4 * MIB,
        "an encrypted disk stores its own"
    );
    w.disk_ok(&["delete", "a", "s"]);
    w.disk_ok(&["verify", "b"]);
    let want = sha(&img);
    scribble(&w.path("b.raw"), 0, 4096, 1);
    w.disk_ok(&["restore", "b", "s"]);
    assert_eq!(sha(&w.path("b.raw")), want);
}

/// A finished snapshot leaves no "unflushed blocks" marker (which would make
/// the next create collect garbage first).
#[test]
fn create_leaves_no_marker() {
    let w = World::new();
    w.ext4("m.raw", 32, 2);
    w.disk_ok(&["create", &w.p("m.raw"), "s"]);
    assert!(!w.path("store/disks/m/.unsynced").exists());
}
