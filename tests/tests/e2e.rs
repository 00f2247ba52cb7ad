//! Runs the shell scripts in tests/e2e/ against the built binaries.

use std::process::Command;

use snap_e2e::{bin_dir, workspace};

fn run_script(name: &str) {
    let work = tempfile::tempdir().unwrap();
    let script = workspace().join("tests/e2e").join(name);
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(&script)
        .env("PATH", path)
        .env("WORK", work.path())
        .env_remove("SNAP_CONFIG")
        .env_remove("SNAP_STORE")
        .env_remove("DBACKUP")
        .current_dir(work.path())
        .output()
        .unwrap();
    let _ = Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(work.path())
        .status();
    assert!(
        out.status.success(),
        "{name} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tricky tree collected twice: shared inodes, and each snapshot equals its tree.
#[test]
fn collect_tricky_tree() {
    run_script("collect_tricky_tree.sh");
}

/// kill -9 mid-collect never harms an earlier snapshot; the next run succeeds.
#[test]
fn kill_mid_collect() {
    run_script("kill_mid_collect.sh");
}

/// collect | pack (full, then incremental) restores the tree exactly; sha256sum -c passes.
#[test]
fn pack_restore_pipeline() {
    run_script("pack_restore_pipeline.sh");
}

/// kill -9 mid-pack and mid-restore: no half file under a final name; reruns finish.
#[test]
fn kill_mid_pack_restore() {
    run_script("kill_mid_pack_restore.sh");
}

/// snap-backup runs both phases, each alone, reports absent media and failing stages.
#[test]
fn backup_script() {
    run_script("backup_script.sh");
}

/// snap-backup --pre-apt: apt's package list becomes the pre-apt snapshots' description; a failure never fails apt.
#[test]
fn pre_apt_hook() {
    run_script("pre_apt_hook.sh");
}

/// Retention end to end: the config's local/external policy on a store and a
/// folder drive, freed bytes equal to du's, chains kept, restore still equal.
#[test]
fn prune_pipeline() {
    run_script("prune_pipeline.sh");
}

/// Disk snapshots: blocks create | push twice (the second sends only the change), restore from the drive alone.
#[test]
fn disk_pipeline() {
    run_script("disk_pipeline.sh");
}

/// Two machines share a profile on one drive: published by one, listed and
/// taken by the other (its own store, no secret travelling, its machines
/// block applied); a restore with --host picks one machine's newest.
#[test]
fn profiles_between_machines() {
    run_script("profiles.sh");
}

/// Two machines (own host name, machine id, state and store) on one drive:
/// a prune waits for a push and keeps what its records need; a push stopped
/// across a forced prune publishes nothing.
#[test]
fn shared_dest() {
    run_script("shared_dest.sh");
}

/// A source file that gives EIO is named and counted (exit 1); one of a
/// snapshot stops a pack (exit 74, no archive); a symlink swapped in
/// mid-collect is never read through; a folder renamed mid-collect is named
/// (exit 1); a read-only store stops the writers with one line (exit 74) and
/// changes nothing, while verify and restore read it.
#[test]
fn surroundings() {
    run_script("surroundings.sh");
}

/// docs/recovery.md as written: every sh block runs in order on a new
/// machine with only the drive and the age key, and restores files, an
/// encrypted set, an incremental chain and a VM disk exactly.
#[test]
fn recovery_guide() {
    run_script("recovery_guide.sh");
}
