//! The fast subset of the crash sweep that `cargo xtask test` runs: every
//! scenario killed at a sample of its points (the whole sweep is `cargo xtask crash`).

use std::process::Command;

/// Every scenario recovers at 6 points spread over its run, and each run has at least 50 points.
#[test]
fn every_scenario_recovers_at_a_sample_of_points() {
    let tools = assert_cmd::cargo::cargo_bin("snap-collect");
    let out = Command::new(env!("CARGO_BIN_EXE_snap-crash"))
        .arg("--bin")
        .arg(tools.parent().unwrap())
        .args(["--points", "6"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 6, "{text}");
    for line in lines {
        let points: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(points >= 50, "a run too small to sweep: {line}");
    }
}
