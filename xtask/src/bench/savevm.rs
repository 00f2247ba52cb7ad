//! The savevm part of `cargo xtask bench --suites disk`: a running VM
//! (qemu-system-x86_64 under TCG, no guest OS, 256 MiB of RAM filled with
//! noise so that its state is not mostly zero pages) on a qcow2 image, saved
//! with its memory three ways, alternating, five times each:
//!
//! - `snap-disk create IMAGE NAME --vm-state --qmp SOCKET`;
//! - the same `snapshot-save` job run by hand over QMP (start it, wait for
//!   its `concluded` event, dismiss it): the anchor of the wall time;
//! - HMP `savevm`: the anchor of how long the guest is paused.
//!
//! The pause is QEMU's own STOP to RESUME events for all three, seen on a
//! second monitor. Each snapshot is deleted again, untimed.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::json;
use snap_testkit::vm::{NODE, TestVm, VmOptions};

use super::kit::{bin, discard, median, quiet};
use crate::sh::Result;

/// One run's medians: (wall ms, paused ms) of each way.
#[derive(Default, Clone)]
pub struct Saves {
    pub snap: (f64, f64),
    pub by_hand: (f64, f64),
    pub savevm: (f64, f64),
    /// The VM state's size, MiB.
    pub state_mib: f64,
}

const REPS: usize = 5;

pub fn run(t: &Path) -> Result<Saves> {
    let img = t.join("savevm.qcow2");
    let store = t.join("disk-store-savevm");
    discard(&store)?;
    let _ = std::fs::remove_file(&img);
    quiet(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&img)
            .arg("1G"),
    )?;
    let vm = TestVm::start_with(
        &img,
        VmOptions {
            noisy_ram_mib: Some(256),
            ..Default::default()
        },
    );
    let mut m = vm.monitor();
    let (mut snap, mut hand, mut hmp) = (Vec::new(), Vec::new(), Vec::new());
    let mut state = 0;
    for i in 0..REPS {
        // By hand: the job snap-disk runs, with nothing around it.
        m.clear_events();
        let id = format!("bench-{i}");
        let start = Instant::now();
        m.run(
            "snapshot-save",
            json!({"job-id": id, "tag": id, "vmstate": NODE, "devices": [NODE]}),
        )?;
        m.wait_event("JOB_STATUS_CHANGE", |d| {
            d["id"] == id.as_str() && d["status"] == "concluded"
        });
        m.run("job-dismiss", json!({ "id": id }))?;
        hand.push((ms(start), m.paused_ms()));
        // HMP savevm.
        m.clear_events();
        let tag = format!("hmp-{i}");
        let start = Instant::now();
        m.run(
            "human-monitor-command",
            json!({"command-line": format!("savevm {tag}")}),
        )?;
        hmp.push((ms(start), m.paused_ms()));
        // snap-disk.
        m.clear_events();
        let name = format!("snap-{i}");
        let start = Instant::now();
        let out = Command::new(bin("snap-disk"))
            .arg("--store")
            .arg(&store)
            .args(["-q", "create"])
            .arg(&img)
            .args([&name, "--vm-state", "--qmp"])
            .arg(&vm.qmp)
            .output()
            .map_err(|e| e.to_string())?;
        let wall = ms(start);
        if !out.status.success() {
            return Err(format!(
                "snap-disk create --vm-state: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        snap.push((wall, m.paused_ms()));
        let rec: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        state = rec["vm_state_size"].as_u64().unwrap_or(0);
        for tag in [&id, &tag, &name] {
            m.run(
                "human-monitor-command",
                json!({"command-line": format!("delvm {tag}")}),
            )?;
        }
    }
    drop(m);
    vm.quit();
    discard(&store)?;
    let _ = std::fs::remove_file(&img);
    let med = |v: &[(f64, f64)]| {
        (
            median(&v.iter().map(|x| x.0).collect::<Vec<_>>()),
            median(&v.iter().map(|x| x.1).collect::<Vec<_>>()),
        )
    };
    Ok(Saves {
        snap: med(&snap),
        by_hand: med(&hand),
        savevm: med(&hmp),
        state_mib: state as f64 / (1 << 20) as f64,
    })
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// The section of docs/benchmarks-disk.md, from every run's medians.
pub fn render(runs: &[Saves]) -> String {
    let med = |f: &dyn Fn(&Saves) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let (sw, sp) = (med(&|r| r.snap.0), med(&|r| r.snap.1));
    let (hw, hp) = (med(&|r| r.by_hand.0), med(&|r| r.by_hand.1));
    let (vw, vp) = (med(&|r| r.savevm.0), med(&|r| r.savevm.1));
    format!(
        "### A running VM saved with its memory ({:.0} MiB of VM state)\n\n\
| way | wall | vs the job by hand | guest paused | vs savevm's pause |\n|---|---|---|---|---|\n\
| snapshot-save job by hand over QMP | {hw:.0} ms | 1.00x | {hp:.0} ms | {:.2}x |\n\
| HMP savevm | {vw:.0} ms | {:.2}x | {vp:.0} ms | 1.00x |\n\
| snap-disk create --vm-state | {sw:.0} ms | {:.2}x | {sp:.0} ms | {:.2}x |\n\n\
Goals: snap-disk's wall time at most 1.2x the job run by hand; the guest paused at most 1.1x \
savevm's own pause.\n",
        med(&|r| r.state_mib),
        hp / vp,
        vw / hw,
        sw / hw,
        sp / vp,
    )
}
