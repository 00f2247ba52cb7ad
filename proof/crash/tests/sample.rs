//! The fast subset of the crash sweep that `cargo xtask test` runs: every
//! scenario killed, and cut by a power loss, at a sample of its points (the
//! whole sweeps are `cargo xtask crash` and `cargo xtask crash --power`).

use std::process::Command;

/// Every scenario recovers at 6 points spread over its run, and each run has at least 50 points.
#[test]
fn every_scenario_recovers_at_a_sample_of_points() {
    let text = sweep_passes(&["--points", "6"], 13);
    for line in scenario_lines(&text) {
        let points: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(points >= 50, "a run too small to sweep: {line}");
    }
}

/// Every scenario survives a power cut (only flushed bytes and names kept) at 3 points and after its run.
#[test]
fn every_scenario_survives_power_cuts_at_a_sample_of_points() {
    let text = sweep_passes(&["--points", "3", "--power"], 13);
    for line in scenario_lines(&text) {
        assert!(line.contains(" 8 power-cut states,"), "{line}");
    }
}

/// Every scenario meets a full disk from 4 points of its run on: one line, exit 73/74, nothing lost, the rerun finishes.
#[test]
fn every_scenario_survives_a_full_disk_at_a_sample_of_points() {
    sweep_passes(&["--fault", "full", "--points", "4"], 13);
}

/// Pushes and prunes at a folder, and the store prune that asks a drive what it holds, meet an unplugged drive from 6 points of their run on.
#[test]
fn drive_scenarios_survive_an_unplugged_drive_at_a_sample_of_points() {
    sweep_passes(&["--fault", "unplugged", "--points", "6"], 3);
}

/// The scenario lines of snap-crash's output (failures and notes are indented under them).
fn scenario_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.starts_with(' '))
}

/// Runs snap-crash with `args`; it must pass and report `scenarios` scenarios. Its output.
fn sweep_passes(args: &[&str], scenarios: usize) -> String {
    let tools = assert_cmd::cargo::cargo_bin("snap-collect");
    let out = Command::new(env!("CARGO_BIN_EXE_snap-crash"))
        .arg("--bin")
        .arg(tools.parent().unwrap())
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(scenario_lines(&text).count(), scenarios, "{text}");
    text
}
