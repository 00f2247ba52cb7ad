//! Locks at the destination, on a real folder and on an in-memory bucket:
//! who may hold one with whom, what is stale, what is removed, and that a
//! lock someone broke is never brought back.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use snap_dest::host::Host;
use snap_dest::locks::{LOCKS, LockInfo};
use snap_dest::{Dest, DestSpec, LockOptions, Mode, Reach};
use snap_shared::error::Exit;

fn folder_dest(dir: &Path) -> Dest {
    let spec = DestSpec::from_url(dir.to_str().unwrap()).unwrap();
    Dest::open(
        &spec,
        &snap_dest::runtime().unwrap(),
        &Reach::default(),
        false,
    )
    .unwrap()
}

/// A lock of another machine, written straight into the folder, last
/// refreshed `age` ago, and a second more: the age is read against the time
/// of the lock a test takes next, a file time from the kernel's coarse
/// clock, which may trail `SystemTime::now()` by a tick, so exactly an hour
/// could read as 59m 59s.
fn foreign_lock(dir: &Path, name: &str, mode: &str, age: Duration) {
    let now = Utc::now();
    let info = serde_json::json!({
        "schema": "snap/1", "kind": "lock", "mode": mode, "tool": "snap-push 0.1.0",
        "host": "laptop", "machine": "0123456789abcdef", "boot": "b", "pid": 4242,
        "start": 1, "user": "me", "created": now, "refreshed": now, "stale_after": 1800
    });
    let locks = dir.join(LOCKS);
    std::fs::create_dir_all(&locks).unwrap();
    let path = locks.join(name);
    std::fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() - age - Duration::from_secs(1))
        .unwrap();
}

fn lock_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join(LOCKS))
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

const NONE: LockOptions = LockOptions {
    break_others: false,
};

/// Pushes share a destination; a prune waits for them, and they for it; a
/// released lock is gone from the destination.
#[test]
fn shared_locks_coexist_and_exclude_a_prune() {
    let dir = tempfile::tempdir().unwrap();
    let d = folder_dest(dir.path());
    let a = d.lock(Mode::Shared, "snap-push", &NONE).unwrap();
    let b = d.lock(Mode::Shared, "snap-push", &NONE).unwrap();
    assert_eq!(lock_names(dir.path()).len(), 2);
    let e = d.lock(Mode::Exclusive, "snap-prune", &NONE).unwrap_err();
    assert_eq!(e.exit, Exit::TempFail);
    assert!(e.cause.starts_with("busy: snap-push 0.1.0 (pid "), "{e}");
    assert!(e.cause.contains("holds a lock there (refreshed "), "{e}");
    assert_eq!(
        lock_names(dir.path()).len(),
        2,
        "the refused lock is removed"
    );
    drop((a, b));
    assert!(lock_names(dir.path()).is_empty());
    let p = d.lock(Mode::Exclusive, "snap-prune", &NONE).unwrap();
    let e = d.lock(Mode::Shared, "snap-push", &NONE).unwrap_err();
    assert!(e.cause.contains("snap-prune"), "{e}");
    p.ensure_live().unwrap();
}

/// Releasing a lock says when it could not be removed (and when it goes stale); a release that works says nothing.
#[test]
fn a_lock_that_cannot_be_removed_is_named_at_release() {
    let dir = tempfile::tempdir().unwrap();
    let d = folder_dest(dir.path());
    d.lock(Mode::Shared, "snap-push", &NONE)
        .unwrap()
        .release()
        .unwrap();
    assert!(lock_names(dir.path()).is_empty());
    let held = d.lock(Mode::Shared, "snap-push", &NONE).unwrap();
    // A folder in the lock's place: its removal fails even for root.
    let path = dir.path().join(held.key());
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir_all(path.join("x")).unwrap();
    let why = held.release().unwrap_err();
    assert!(
        why.starts_with(&format!("{}: lock not removed: ", path.display())),
        "{why}"
    );
    assert!(
        why.ends_with("prunes on other machines wait for it until 1d 0h after its last refresh (this machine's next run removes it, snap-prune --break-lock sooner)"),
        "{why}"
    );
}

/// A lock of this machine whose process is gone is removed at once, by anyone.
#[test]
fn a_dead_process_lock_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let d = folder_dest(dir.path());
    let held = d.lock(Mode::Exclusive, "snap-prune", &NONE).unwrap();
    // Its twin with a pid that runs nothing.
    let src = dir.path().join(held.key());
    let mut info = LockInfo::parse(&std::fs::read(&src).unwrap()).unwrap();
    info.pid = u32::MAX - 1;
    std::fs::write(
        dir.path().join(LOCKS).join("dead.json"),
        serde_json::to_vec(&info).unwrap(),
    )
    .unwrap();
    drop(held);
    let again = d.lock(Mode::Exclusive, "snap-prune", &NONE).unwrap();
    assert_eq!(again.notes.len(), 1, "{:?}", again.notes);
    assert!(
        again.notes[0].contains(&format!("process {} is gone", u32::MAX - 1)),
        "{:?}",
        again.notes
    );
    assert!(!dir.path().join(LOCKS).join("dead.json").exists());
}

/// A push steps over a stale prune lock of another machine (and removes it);
/// a fresh one stops it.
#[test]
fn a_stale_exclusive_lock_does_not_block_pushes() {
    let dir = tempfile::tempdir().unwrap();
    foreign_lock(
        dir.path(),
        "fresh.json",
        "exclusive",
        Duration::from_secs(60),
    );
    let d = folder_dest(dir.path());
    let e = d.lock(Mode::Shared, "snap-push", &NONE).unwrap_err();
    assert!(e.cause.contains("pid 4242 on laptop"), "{e}");
    std::fs::remove_file(dir.path().join(LOCKS).join("fresh.json")).unwrap();
    foreign_lock(
        dir.path(),
        "old.json",
        "exclusive",
        Duration::from_secs(3600),
    );
    let held = d.lock(Mode::Shared, "snap-push", &NONE).unwrap();
    assert!(
        held.notes[0].starts_with("removed the stale lock of snap-push 0.1.0 (pid 4242 on laptop, user me): not refreshed for 1h 0m"),
        "{:?}",
        held.notes
    );
}

/// A prune waits for another machine's stale push lock until a day after its
/// last refresh (that push may only be stopped), saying so; then removes it.
#[test]
fn a_stale_shared_lock_holds_a_prune_for_a_day() {
    let dir = tempfile::tempdir().unwrap();
    foreign_lock(dir.path(), "push.json", "shared", Duration::from_secs(7200));
    let d = folder_dest(dir.path());
    d.lock(Mode::Shared, "snap-push", &NONE).unwrap();
    let e = d.lock(Mode::Exclusive, "snap-prune", &NONE).unwrap_err();
    assert_eq!(e.exit, Exit::TempFail);
    assert!(e.cause.contains("has not refreshed its lock for 2h 0m (stale after 30m 0s); it may be stopped or cut off"), "{e}");
    assert!(e.hint.as_deref().unwrap().contains("--break-lock"));
    // --break-lock is the user saying it is gone.
    let broke = LockOptions { break_others: true };
    let held = d.lock(Mode::Exclusive, "snap-prune", &broke).unwrap();
    assert!(
        held.notes[0].contains("as --break-lock asks"),
        "{:?}",
        held.notes
    );
    drop(held);
    foreign_lock(
        dir.path(),
        "push.json",
        "shared",
        Duration::from_secs(25 * 3600),
    );
    let held = d.lock(Mode::Exclusive, "snap-prune", &NONE).unwrap();
    assert!(
        held.notes[0].contains("not refreshed for 1d 1h"),
        "{:?}",
        held.notes
    );
}

/// An unreadable lock stops every tool (exit 65, naming it) and is removed
/// only when asked.
#[test]
fn a_garbled_lock_is_an_error_until_broken() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(LOCKS)).unwrap();
    std::fs::write(dir.path().join(LOCKS).join("x.json"), b"{\"kind\": 3").unwrap();
    let d = folder_dest(dir.path());
    let e = d.lock(Mode::Shared, "snap-push", &NONE).unwrap_err();
    assert_eq!(e.exit, Exit::Data);
    assert!(e.context.ends_with(".snap/locks/x.json"), "{e}");
    assert!(e.cause.starts_with("not a snap lock: "), "{e}");
    assert!(dir.path().join(LOCKS).join("x.json").exists());
    assert_eq!(lock_names(dir.path()), ["x.json"]);
    let held = d
        .lock(
            Mode::Exclusive,
            "snap-prune",
            &LockOptions { break_others: true },
        )
        .unwrap();
    assert!(held.notes[0].starts_with("removed unreadable lock"));
}

/// Clocks a test moves by hand.
#[derive(Debug)]
struct TestClock {
    skew: chrono::Duration,
    mark: Mutex<f64>,
}

impl Host for TestClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.skew
    }
    fn mark(&self) -> f64 {
        *self.mark.lock().unwrap()
    }
}

fn memory_dest(clock: Arc<TestClock>) -> (Dest, Arc<object_store::memory::InMemory>) {
    let store = Arc::new(object_store::memory::InMemory::new());
    let d = Dest::over_store(
        "m",
        store.clone(),
        store.clone(),
        &snap_dest::runtime().unwrap(),
        clock,
        16,
    );
    (d, store)
}

/// A machine whose clock is off by more than five minutes is refused (78).
#[test]
fn clock_skew_is_refused() {
    let clock = Arc::new(TestClock {
        skew: chrono::Duration::minutes(-7),
        mark: Mutex::new(0.0),
    });
    let (d, _) = memory_dest(clock);
    let e = d.lock(Mode::Shared, "snap-push", &NONE).unwrap_err();
    assert_eq!(e.exit, Exit::Config);
    // 7 minutes, less the instants between the clock readings.
    assert!(
        e.cause.starts_with("this machine's clock is 6m 59s behind"),
        "{e}"
    );
    assert!(
        e.cause
            .ends_with("the destination's (more than 5m 0s apart)"),
        "{e}"
    );
}

/// A holder that was stopped past its bound refreshes before it acts; if
/// its lock was removed meanwhile, it stops (75) and never recreates it.
#[test]
fn a_broken_lock_is_never_brought_back() {
    let clock = Arc::new(TestClock {
        skew: chrono::Duration::zero(),
        mark: Mutex::new(0.0),
    });
    let (d, store) = memory_dest(clock.clone());
    let held = d.lock(Mode::Shared, "snap-push", &NONE).unwrap();
    held.ensure_live().unwrap();
    // Stopped for an hour: the check refreshes, which works while it is there.
    *clock.mark.lock().unwrap() += 3600.0;
    held.ensure_live().unwrap();
    // Someone removes it; an hour later the refresh finds it gone.
    use object_store::ObjectStoreExt;
    let key = object_store::path::Path::from(held.key());
    futures::executor::block_on(store.delete(&key)).unwrap();
    *clock.mark.lock().unwrap() += 3600.0;
    let e = held.ensure_live().unwrap_err();
    assert_eq!(e.exit, Exit::TempFail);
    assert!(
        e.cause
            .contains("is no longer held: it was removed or replaced"),
        "{e}"
    );
    assert!(d.locks().unwrap().is_empty(), "not recreated");
    // A fenced destination refuses removals from then on.
    let fenced = d.clone().fenced(held.fence());
    assert_eq!(fenced.delete("a/b").unwrap_err().exit, Exit::TempFail);
}

/// One folder under two names (its path, and a link to it, as a drive's
/// mount path and its uuid:// name resolve to one folder) is one
/// destination for its locks.
#[test]
fn two_names_of_one_folder_share_its_locks() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("drive");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("by-uuid");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let _push = folder_dest(&real)
        .lock(Mode::Shared, "snap-push", &NONE)
        .unwrap();
    let e = folder_dest(&link)
        .lock(Mode::Exclusive, "snap-prune", &NONE)
        .unwrap_err();
    assert_eq!(e.exit, Exit::TempFail, "{e}");
    assert!(e.cause.contains("holds a lock there"), "{e}");
}

/// A lock of a live process of this machine that stopped refreshing (a
/// SIGSTOP) keeps a prune out, naming the pid, but not another push.
#[test]
fn a_stopped_process_of_this_machine_keeps_a_prune_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = folder_dest(dir.path());
    let held = d.lock(Mode::Shared, "snap-push", &NONE).unwrap();
    // A copy of it (this test process: alive), last refreshed an hour ago
    // (and 10 s: a file's time comes from the kernel's coarse clock, which
    // may trail `SystemTime::now()` by a tick, so exactly an hour may read
    // as 59m 59s).
    let text = std::fs::read(dir.path().join(held.key())).unwrap();
    drop(held);
    let path = dir.path().join(LOCKS).join("stopped.json");
    std::fs::write(&path, text).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3610))
        .unwrap();
    let e = d.lock(Mode::Exclusive, "snap-prune", &NONE).unwrap_err();
    assert_eq!(e.exit, Exit::TempFail);
    assert!(
        e.cause
            .contains("is alive but has not refreshed its lock for 1h 0m (stopped?)"),
        "{e}"
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .contains(&format!("kill -CONT {}", std::process::id()))
    );
    d.lock(Mode::Shared, "snap-push", &NONE).unwrap();
}
