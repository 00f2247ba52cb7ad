//! snap-prune on snapshots inside the store's disk images: internal ones
//! of a stopped qcow2 (qemu-img) and of a running VM's (QMP, qemu-system-x86_64
//! under TCG), and overlays. A pre-apt snapshot on every apt run stays
//! bounded by the rules; pins and snapshots snap-disk did not make are kept;
//! qemu-img agrees with what the records say.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::{Value, json};
use snap_testkit::vm::TestVm;
use snap_testkit::{World, code, records, stderr};

trait ImagesWorld {
    fn snap(&self, name: &str) -> Command;
    fn store_ok(&self, name: &str, args: &[&str]) -> Vec<Value>;
    fn qcow2(&self, name: &str) -> PathBuf;
}

impl ImagesWorld for World {
    fn snap(&self, name: &str) -> Command {
        let mut c = Command::from_std(self.tool(name));
        c.env("SNAP_STORE", self.path("store"))
            .env("HOME", self.root());
        c
    }

    fn store_ok(&self, name: &str, args: &[&str]) -> Vec<Value> {
        let out: Output = self.snap(name).args(args).output().unwrap();
        assert_eq!(code(&out), 0, "{name} {args:?}: {}", stderr(&out));
        records(&out)
    }

    fn qcow2(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        let ok = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&p)
            .arg("16M")
            .status()
            .unwrap();
        assert!(ok.success());
        p
    }
}

/// The tags in the image's snapshot table, as qemu-img lists them (sorted).
fn tags_on_file(img: &Path) -> Vec<String> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(img)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut tags: Vec<String> = v["snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    tags.sort();
    tags
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Twenty pre-apt snapshots under `--tag pre-apt --keep-last 3` leave three,
/// and the pinned one; one qemu-img made survives without --include-foreign
/// and goes with it; the records and qemu-img agree.
#[test]
fn pre_apt_snapshots_stay_bounded_in_a_stopped_image() {
    let w = World::new();
    let img = w.qcow2("apt.qcow2");
    let p = img.display().to_string();
    let made = std::process::Command::new("qemu-img")
        .args(["snapshot", "-c", "mine", &p])
        .status()
        .unwrap();
    assert!(made.success());
    for n in 1..=20 {
        w.store_ok(
            "snap-disk",
            &["create", &p, &format!("pre-apt-{n:02}"), "-t", "pre-apt"],
        );
    }
    w.store_ok("snap-restore", &["pin", "disks/apt/pre-apt-01"]);
    let out = w
        .snap("snap-prune")
        .args(["--tag", "pre-apt", "--keep-last", "3"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did not make are kept"),
        "{}",
        stderr(&out)
    );
    let removed = records(&out)
        .iter()
        .filter(|r| r["action"] == "remove")
        .count();
    assert_eq!(removed, 16);
    let left = sorted(&[
        "mine",
        "pre-apt-01",
        "pre-apt-18",
        "pre-apt-19",
        "pre-apt-20",
    ]);
    assert_eq!(tags_on_file(&img), left);
    let listed: Vec<String> = w
        .store_ok("snap-disk", &["list", "apt"])
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        sorted(&listed.iter().map(String::as_str).collect::<Vec<_>>()),
        left
    );
    // With --include-foreign the rules judge qemu-img's snapshot too.
    w.store_ok("snap-prune", &["--keep-last", "3", "--include-foreign"]);
    let left = sorted(&["pre-apt-01", "pre-apt-18", "pre-apt-19", "pre-apt-20"]);
    assert_eq!(tags_on_file(&img), left);
}

/// The same while the VM runs: the snapshots are made and removed through
/// its QEMU (the config's disk entry names the monitor), and qemu-img agrees
/// after the VM quits.
#[test]
fn pre_apt_snapshots_stay_bounded_in_a_running_vm() {
    let w = World::new();
    let img = w.qcow2("live.qcow2");
    let p = img.display().to_string();
    let vm = TestVm::start(&img);
    let config = w.path("config.json");
    let cfg = json!({"disks": [{"image": p, "qmp": vm.qmp.display().to_string()}]});
    std::fs::write(&config, cfg.to_string()).unwrap();
    let c = config.display().to_string();
    for n in 1..=20 {
        w.store_ok(
            "snap-disk",
            &[
                "-c",
                &c,
                "create",
                &p,
                &format!("pre-apt-{n:02}"),
                "-t",
                "pre-apt",
                "--method",
                "qcow2-internal",
            ],
        );
    }
    vm.hmp("savevm by-hand");
    w.store_ok("snap-restore", &["pin", "disks/live/pre-apt-05"]);
    w.store_ok(
        "snap-prune",
        &["-c", &c, "--tag", "pre-apt", "--keep-last", "3"],
    );
    let mut in_vm: Vec<String> = vm.snapshots().into_iter().map(|s| s.0).collect();
    in_vm.sort();
    let left = sorted(&[
        "by-hand",
        "pre-apt-05",
        "pre-apt-18",
        "pre-apt-19",
        "pre-apt-20",
    ]);
    assert_eq!(in_vm, left);
    assert_eq!(vm.status(), "running");
    vm.quit();
    assert_eq!(tags_on_file(&img), left);
}

/// Overlay snapshots under `--keep-last 2`: the older ones are folded into
/// the files above them (never cut), so the image reads the same after.
#[test]
fn overlay_chains_are_folded_not_cut() {
    let w = World::new();
    let img = w.qcow2("ov.qcow2");
    let p = img.display().to_string();
    let qemu_io = |cmd: &str| {
        let ok = std::process::Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", cmd, &p])
            .output()
            .unwrap();
        assert!(ok.status.success());
    };
    for n in 1..=4 {
        qemu_io(&format!("write -P {n} {}M 1M", n - 1));
        w.store_ok("snap-disk", &["create", &p, &format!("o{n}"), "--overlay"]);
    }
    qemu_io("write -P 9 8M 1M");
    let before = w.path("before.raw");
    let ok = std::process::Command::new("qemu-img")
        .args(["convert", "-O", "raw", &p])
        .arg(&before)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = w.store_ok("snap-prune", &["--keep-last", "2"]);
    let removed: Vec<&str> = out
        .iter()
        .filter(|r| r["action"] == "remove")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(removed, ["o1", "o2"]);
    let same = std::process::Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "qcow2"])
        .arg(&before)
        .arg(&img)
        .status()
        .unwrap();
    assert!(same.success(), "the image reads the same after the prune");
    assert!(!w.path("ov.qcow2.snapshots/o1.qcow2").exists());
    let listed = w.store_ok("snap-disk", &["list", "ov"]);
    assert_eq!(listed.len(), 2);
}
