//! Internal snapshots of a running VM, against real QEMU (qemu-system-x86_64,
//! TCG, no guest OS): saved with its memory (snapshot-save), loaded
//! (snapshot-load) and deleted (snapshot-delete) while it runs, disk-only
//! ones through a transaction, snapshots that qemu-img and HMP savevm made,
//! and the failure paths: a job QEMU fails, and snap-disk killed mid-job.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::{Value, json};
use snap_testkit::vm::{NODE, TestVm, VmOptions};
use snap_testkit::{World, code, records, stderr};

const MIB: u64 = 1 << 20;

trait VmWorld {
    /// A new empty qcow2 image.
    fn qcow2(&self, name: &str) -> PathBuf;
    fn cmd(&self) -> Command;
    fn disk(&self, args: &[&str]) -> Output;
    /// snap-disk with `--qmp` of `vm` after the arguments.
    fn on(&self, vm: &TestVm, args: &[&str]) -> Output;
}

impl VmWorld for World {
    fn qcow2(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            &p.display().to_string(),
            "64M",
        ]);
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

    fn on(&self, vm: &TestVm, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .arg("--qmp")
            .arg(&vm.qmp)
            .output()
            .unwrap()
    }
}

fn qemu_img(args: &[&str]) -> String {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-img {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tags `qemu-img snapshot -l` lists (the VM must have quit).
fn tags_on_file(img: &Path) -> Vec<String> {
    let out = qemu_img(&["info", "--output=json", &img.display().to_string()]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn ok(out: &Output) -> Vec<Value> {
    assert_eq!(code(out), 0, "{}", stderr(out));
    records(out)
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// With --vm-state the snapshot holds the VM's memory; list shows VM SIZE and
/// VM CLOCK; a restore while it runs brings the disk back and the VM runs on;
/// delete works online, as qemu-img agrees after the VM quits.
#[test]
fn a_running_vm_is_saved_loaded_and_deleted_with_its_memory() {
    let w = World::new();
    let img = w.qcow2("web.qcow2");
    let vm = TestVm::start(&img);
    vm.write(0, MIB, 0x11);
    let one = ok(&w.on(&vm, &["create", &p(&img), "one", "--vm-state"]));
    assert_eq!(one[0]["consistency"], "vm-state");
    assert!(one[0]["paused_ms"].as_f64().unwrap() > 0.0);
    vm.write(0, MIB, 0x55);
    let out = w.on(&vm, &["create", &p(&img), "two", "--vm-state"]);
    ok(&out);
    assert!(
        stderr(&out).contains("the guest was paused"),
        "{}",
        stderr(&out)
    );
    let out = w.on(&vm, &["list", &p(&img)]);
    let listed = ok(&out);
    assert!(stderr(&out).contains("ID   TAG"), "{}", stderr(&out));
    assert_eq!(listed.len(), 2);
    for r in &listed {
        assert!(r["vm_state_size"].as_u64().unwrap() > 0, "{r}");
    }
    assert_ne!(listed[0]["vm_clock_ns"], listed[1]["vm_clock_ns"]);
    // QEMU loads over no dirty bitmap: snap-disk's own go first, another
    // tool's refuse the load before the VM is stopped.
    for name in ["snap-disk-web/x", "backup-1"] {
        let bitmap = json!({"node": NODE, "name": name, "persistent": true});
        vm.qmp("block-dirty-bitmap-add", bitmap);
    }
    let out = w.on(&vm, &["restore", &p(&img), "one"]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(stderr(&out).contains("backup-1"), "{}", stderr(&out));
    assert_eq!(vm.status(), "running");
    assert_eq!(vm.snapshots().len(), 2, "a refused restore takes no undo");
    vm.qmp(
        "block-dirty-bitmap-remove",
        json!({"node": NODE, "name": "backup-1"}),
    );
    let restored = ok(&w.on(&vm, &["restore", &p(&img), "one"]));
    assert!(vm.holds(0, MIB, 0x11), "the disk is back at `one`");
    assert!(
        restored[0]["vm_state_size"].as_u64().unwrap() > 0,
        "the undo of a load keeps the memory it replaced: {}",
        restored[0]
    );
    assert_eq!(vm.status(), "running");
    let checked = w.on(&vm, &["verify", &p(&img)]);
    ok(&checked);
    assert!(
        stderr(&checked).contains("qemu-img check"),
        "{}",
        stderr(&checked)
    );
    ok(&w.on(&vm, &["delete", &p(&img), "two"]));
    assert!(!vm.snapshots().iter().any(|s| s.0 == "two"));
    vm.quit();
    assert!(!tags_on_file(&img).contains(&"two".to_string()));
    assert!(tags_on_file(&img).contains(&"one".to_string()));
}

/// Without --vm-state a running qcow2 gets a disk-only internal snapshot
/// through QEMU; QEMU cannot load one into a running VM (75, the VM runs
/// on); --require-stopped refuses the running image as before.
#[test]
fn a_disk_only_snapshot_of_a_running_vm() {
    let w = World::new();
    let img = w.qcow2("db.qcow2");
    let vm = TestVm::start(&img);
    let made = ok(&w.on(
        &vm,
        &["create", &p(&img), "d1", "--method", "qcow2-internal"],
    ));
    assert_eq!(made[0]["vm_state_size"], 0);
    assert_eq!(made[0]["consistency"], "point-in-time");
    let out = w.on(&vm, &["restore", &p(&img), "d1"]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(stderr(&out).contains("disk-only"), "{}", stderr(&out));
    assert_eq!(vm.status(), "running");
    let refused = w.disk(&["create", &p(&img), "d2", "--require-stopped"]);
    assert_eq!(code(&refused), 75, "{}", stderr(&refused));
    vm.write(0, MIB, 0x77);
    vm.quit();
    // Stopped: the same snapshot restores through qemu-img.
    ok(&w.disk(&["restore", &p(&img), "d1"]));
    let back = TestVm::start(&img);
    assert!(back.holds(0, MIB, 0));
}

/// Snapshots made by `qemu-img snapshot -c` and by HMP `savevm` are listed
/// (an image snap-disk never saw is not 66), restored by tag or ID,
/// exported and deleted.
#[test]
fn snapshots_other_tools_made_are_managed() {
    let w = World::new();
    let img = w.qcow2("old.qcow2");
    qemu_img(&["snapshot", "-c", "by-qemu-img", &p(&img)]);
    let listed = ok(&w.disk(&["list", &p(&img)]));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state"], "image-only");
    assert_eq!(listed[0]["id"], "1");
    let out = w.path("old-1.qcow2");
    ok(&w.disk(&["export", &p(&img), "1", &p(&out)]));
    let vm = TestVm::start(&img);
    vm.write(0, MIB, 0x22);
    vm.hmp("savevm by-hmp");
    vm.write(0, MIB, 0x33);
    let listed = ok(&w.on(&vm, &["list", &p(&img)]));
    let hmp = listed.iter().find(|r| r["name"] == "by-hmp").unwrap();
    assert!(hmp["vm_state_size"].as_u64().unwrap() > 0);
    assert_eq!(hmp["state"], "image-only");
    ok(&w.on(&vm, &["restore", &p(&img), "2"]));
    assert!(vm.holds(0, MIB, 0x22));
    assert_eq!(vm.status(), "running");
    ok(&w.on(&vm, &["delete", &p(&img), "by-hmp"]));
    vm.quit();
    let tags = tags_on_file(&img);
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert_eq!(tags[0], "by-qemu-img");
    assert!(
        tags[1].starts_with("before-restore-"),
        "the undo of the load: {tags:?}"
    );
    // qemu-img compare takes no snapshot: compare with a converted copy.
    let copy = w.path("copy.qcow2");
    qemu_img(&[
        "convert",
        "-l",
        "snapshot.name=by-qemu-img",
        "-O",
        "qcow2",
        &p(&img),
        &p(&copy),
    ]);
    qemu_img(&["compare", "-q", &p(&out), &p(&copy)]);
    ok(&w.disk(&["delete", &p(&img), "by-qemu-img", &tags[1]]));
    assert!(tags_on_file(&img).is_empty());
}

/// A save QEMU fails (an I/O error writing the VM state) is exit 69 naming
/// QEMU's error; the VM runs on and no disk holds a half-made snapshot; the
/// next save works.
#[test]
fn a_failed_save_leaves_the_vm_running_and_nothing_made() {
    let w = World::new();
    let img = w.qcow2("f.qcow2");
    let vm = TestVm::start_with(
        &img,
        VmOptions {
            blkdebug: vec![
                ("0.event", "vmstate_save"),
                ("0.errno", "5"),
                ("0.once", "on"),
            ],
            ..Default::default()
        },
    );
    let node = ["--node", NODE];
    let out = w.on(
        &vm,
        &[&["create", &p(&img), "s", "--vm-state"][..], &node].concat(),
    );
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(stderr(&out).contains("snapshot-save"), "{}", stderr(&out));
    assert!(stderr(&out).contains("the VM runs on"), "{}", stderr(&out));
    assert_eq!(vm.status(), "running");
    assert!(vm.snapshots().is_empty());
    assert!(vm.jobs().is_empty(), "the failed job is dismissed");
    let again = w.on(
        &vm,
        &[&["create", &p(&img), "s", "--vm-state"][..], &node].concat(),
    );
    ok(&again);
    assert!(
        !stderr(&again).contains("interrupted"),
        "{}",
        stderr(&again)
    );
}

/// A load QEMU fails leaves the VM paused, as QEMU's loadvm does; the
/// message says so (exit 69).
#[test]
fn a_failed_load_leaves_the_vm_paused_and_says_so() {
    let w = World::new();
    let img = w.qcow2("l.qcow2");
    let vm = TestVm::start_with(
        &img,
        VmOptions {
            blkdebug: vec![("0.event", "vmstate_load"), ("0.errno", "5")],
            ..Default::default()
        },
    );
    let node = ["--node", NODE];
    ok(&w.on(
        &vm,
        &[&["create", &p(&img), "s", "--vm-state"][..], &node].concat(),
    ));
    let out = w.on(&vm, &[&["restore", &p(&img), "s"][..], &node].concat());
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("QEMU left the VM"),
        "{}",
        stderr(&out)
    );
    assert_ne!(vm.status(), "running");
    assert!(vm.jobs().is_empty(), "the failed job is dismissed");
    assert!(
        !w.path("store/disks/l/.changing").exists(),
        "a job QEMU ended leaves nothing for the next run to settle"
    );
}

/// snap-disk killed while QEMU saves: the VM runs on, and the next run
/// dismisses the job, names it, and removes the snapshot nobody recorded.
#[test]
fn a_run_killed_mid_save_is_settled_by_the_next() {
    let w = World::new();
    let img = w.qcow2("k.qcow2");
    let vm = TestVm::start_with(
        &img,
        VmOptions {
            noisy_ram_mib: Some(256),
            ..Default::default()
        },
    );
    let mut events = vm.monitor();
    let mut running = w
        .tool("snap-disk")
        .env("SNAP_STORE", w.path("store"))
        .env("HOME", w.root())
        .args(["create", &p(&img), "k", "--vm-state", "--qmp"])
        .arg(&vm.qmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    events.wait_event("JOB_STATUS_CHANGE", |d| d["status"] == "running");
    running.kill().unwrap();
    running.wait().unwrap();
    events.wait_event("JOB_STATUS_CHANGE", |d| d["status"] == "concluded");
    drop(events);
    assert_eq!(vm.status(), "running");
    assert_eq!(
        vm.jobs().len(),
        1,
        "the killed run's job waits to be dismissed"
    );
    let next = w.on(&vm, &["create", &p(&img), "k2", "--vm-state"]);
    ok(&next);
    let err = stderr(&next);
    assert!(err.contains("left by an interrupted run"), "{err}");
    assert!(err.contains("removed snapshot k"), "{err}");
    assert!(vm.jobs().is_empty());
    let tags: Vec<String> = vm.snapshots().into_iter().map(|s| s.0).collect();
    assert_eq!(tags, ["k2"]);
}
