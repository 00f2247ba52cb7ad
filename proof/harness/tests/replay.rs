//! The fast part of the harness, for `cargo xtask test`: every regression
//! input, then two seeds with twenty crash points each. `cargo xtask interleave`
//! runs the long proof (every crash point of many seeds, and the mutants).

use std::process::Command;

/// Every regression input and a sample of crash points keep every invariant.
#[test]
fn regressions_and_a_sample_of_crash_points_hold() {
    let replay = concat!(env!("CARGO_MANIFEST_DIR"), "/regressions.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_snap-harness"))
        .args(["--seeds", "1..3", "--crashes", "20", "--replay", replay])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("snap-harness: replayed 8 inputs"),
        "{report}"
    );
    assert!(
        report.contains("seeds 1..3: 50 runs, 40 crash points, 0 failed"),
        "{report}"
    );
}
