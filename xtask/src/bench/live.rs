//! The running-VM part of `cargo xtask bench --suites disk`: the 2 GiB v1
//! image held by qemu-storage-daemon (the VM), snapshotted live through
//! QMP with the guest frozen (a guest agent that answers at once stands in),
//! then 1% of its blocks written through its NBD export and snapshotted
//! again; a qcow2 copy of v1 snapshotted stopped (bytes read against its
//! allocated bytes); and `snap-disk serve` read whole by `qemu-img convert`
//! against `snap-disk restore --to` from the same store.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use snap_testkit::qemu::{FakeAgent, Qsd};

use super::kit::bin;
use super::kit::{discard, quiet};
use crate::sh::Result;

const MIB: u64 = 1 << 20;

/// One run's figures.
#[derive(Default, Clone)]
pub struct Live {
    /// Wall seconds and bytes read of the first and second live snapshots.
    pub first: (f64, u64),
    pub second: (f64, u64),
    /// The longest the guest was frozen, ms.
    pub frozen_ms: f64,
    /// A stopped qcow2: bytes read, allocated bytes.
    pub qcow: (u64, u64),
    /// Reading the snapshot whole: through `serve` and NBD, and `restore --to`.
    pub serve: f64,
    pub local: f64,
}

/// Runs `snap-disk` and returns its wall time and record.
fn timed(store: &Path, args: &[&str]) -> Result<(f64, Value)> {
    let (wall, mut recs) = timed_records(store, args)?;
    let first = match recs.is_empty() {
        true => Value::Object(Default::default()),
        false => recs.swap_remove(0),
    };
    Ok((wall, first))
}

/// Runs `snap-disk` (quiet, on `store`) and returns its wall time and records.
pub(crate) fn timed_records(store: &Path, args: &[&str]) -> Result<(f64, Vec<Value>)> {
    let start = Instant::now();
    let out = Command::new(bin("snap-disk"))
        .arg("--store")
        .arg(store)
        .arg("-q")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "snap-disk {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let recs = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
        .collect::<Result<Vec<Value>>>()?;
    Ok((wall, recs))
}

pub fn run(t: &Path, v1: &Path) -> Result<Live> {
    let mut r = Live::default();
    let img = t.join("live.raw");
    let _ = fs::remove_file(&img);
    quiet(Command::new("cp").arg("--sparse=always").arg(v1).arg(&img))?;
    let store = t.join("live-store");
    discard(&store)?;
    let q = Qsd::start(&img, "raw");
    let agent = FakeAgent::start(t, Duration::ZERO);
    let live = |name: &str| -> Result<(f64, Value)> {
        timed(
            &store,
            &[
                "create",
                img.to_str().unwrap_or(""),
                name,
                "--qmp",
                q.qmp.to_str().unwrap_or(""),
                "--nbd-server",
                q.nbd.to_str().unwrap_or(""),
                "--freeze",
                "--guest-agent",
                agent.path.to_str().unwrap_or(""),
            ],
        )
    };
    let read = |rec: &Value| rec["read_bytes"].as_u64().unwrap_or(0);
    let frozen = |rec: &Value| rec["frozen_ms"].as_f64().unwrap_or(f64::NAN);
    let (wall, rec) = live("s1")?;
    r.first = (wall, read(&rec));
    r.frozen_ms = frozen(&rec);
    // 1% of the blocks: 20 regions of 1 MiB, as v2 differs from v1.
    let mut w = q.writer();
    for k in 0..20u64 {
        writeln!(w.stdin(), "write -P {} {} 1M", k + 1, (37 + 101 * k) * MIB)
            .map_err(|e| e.to_string())?;
    }
    w.finish();
    let (wall, rec) = live("s2")?;
    r.second = (wall, read(&rec));
    r.frozen_ms = r.frozen_ms.max(frozen(&rec));
    q.stop();
    let _ = fs::remove_file(agent.path);
    r.qcow = stopped_qcow2(t, v1)?;
    (r.serve, r.local) = serve_vs_restore(t, &store)?;
    let _ = fs::remove_file(&img);
    Ok(r)
}

/// A stopped qcow2 copy of v1 snapshotted: bytes read and allocated bytes.
fn stopped_qcow2(t: &Path, v1: &Path) -> Result<(u64, u64)> {
    let q = t.join("live.qcow2");
    let _ = fs::remove_file(&q);
    quiet(
        Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(v1)
            .arg(&q),
    )?;
    let map = Command::new("qemu-img")
        .args(["map", "--output=json", "-f", "qcow2"])
        .arg(&q)
        .output()
        .map_err(|e| e.to_string())?;
    let extents: Vec<Value> = serde_json::from_slice(&map.stdout).map_err(|e| e.to_string())?;
    let allocated = extents
        .iter()
        .filter(|e| e["data"] == true)
        .map(|e| e["length"].as_u64().unwrap_or(0))
        .sum();
    let store = t.join("qcow-store");
    discard(&store)?;
    let (_, rec) = timed(
        &store,
        &["create", q.to_str().unwrap_or(""), "a", "-m", "blocks"],
    )?;
    let _ = fs::remove_file(&q);
    Ok((rec["read_bytes"].as_u64().unwrap_or(0), allocated))
}

/// Seconds to read snapshot s2 whole into a raw file: through `serve` with
/// `qemu-img convert` from NBD, and with `snap-disk restore --to`, each
/// followed by a sync of the file.
fn serve_vs_restore(t: &Path, store: &Path) -> Result<(f64, f64)> {
    let sock = t.join("live.nbd");
    let _ = fs::remove_file(&sock);
    let mut server = Command::new(bin("snap-disk"))
        .arg("--store")
        .arg(store)
        .args(["-q", "serve", "live", "s2", "--socket"])
        .arg(&sock)
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    while !sock.exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = t.join("served.raw");
    let _ = fs::remove_file(&out);
    let start = Instant::now();
    let convert = quiet(
        Command::new("sh")
            .arg("-c")
            .arg("qemu-img convert -f raw -O raw \"$1\" \"$2\" && sync \"$2\"")
            .arg("sh")
            .arg(format!("nbd+unix:///live?socket={}", sock.display()))
            .arg(&out),
    );
    let served = start.elapsed().as_secs_f64();
    let _ = server.kill();
    let _ = server.wait();
    let _ = fs::remove_file(&sock);
    convert?;
    let _ = fs::remove_file(&out);
    let start = Instant::now();
    timed(
        store,
        &["restore", "live", "s2", "--to", out.to_str().unwrap_or("")],
    )?;
    let local = start.elapsed().as_secs_f64();
    let _ = fs::remove_file(&out);
    Ok((served, local))
}

/// borg's, restic's and rustic's first and second backup of the same run, seconds.
pub type Anchors = [(f64, f64); 3];

/// The section of benchmarks-disk.md, from each run's figures and the
/// borg/restic/rustic backups of the same run.
pub fn render(live: &[Live], anchors: &[Anchors]) -> String {
    let med =
        |f: &dyn Fn(&Live) -> f64| super::kit::median(&live.iter().map(f).collect::<Vec<_>>());
    let first = med(&|l| l.first.0);
    let second = med(&|l| l.second.0);
    let anchor = |tool: usize, second: bool| {
        let pick = |a: &Anchors| if second { a[tool].1 } else { a[tool].0 };
        super::kit::median(&anchors.iter().map(pick).collect::<Vec<_>>())
    };
    let (borg1, restic1, rustic1) = (anchor(0, false), anchor(1, false), anchor(2, false));
    let (borg, restic, rustic) = (anchor(0, true), anchor(1, true), anchor(2, true));
    let mib = |b: u64| b as f64 / MIB as f64;
    let (qread, qalloc) = (med(&|l| l.qcow.0 as f64), med(&|l| l.qcow.1 as f64));
    let (serve, local) = (med(&|l| l.serve), med(&|l| l.local));
    format!(
        "### A running VM (qemu-storage-daemon holding v1, 1% of blocks written between snapshots)\n\n\
| snapshot | wall | read | vs first | vs borg create | vs restic backup | vs rustic backup |\n|---|---|---|---|---|---|---|\n\
| first live (full read) | {first:.2} s | {:.0} MiB | 1.00x | {:.2}x | {:.2}x | {:.2}x |\n\
| second live (dirty bitmap) | {second:.3} s | {:.0} MiB | {:.3}x | {:.3}x | {:.3}x | {:.3}x |\n\n\
The first row is compared with borg's, restic's and rustic's first backup of v1, the second with their second backup (of v2, the same 1% change), same run.\n\n\
Goals: the second at most 0.1x the first, and at most 0.05x of borg create / restic backup.\n\n\
Guest frozen, the longer of the two snapshots (a fake guest agent that answers at once, so this is snap-disk's and QEMU's share, not the guest's sync): {:.1} ms. Goal: at most 100 ms.\n\n\
### A stopped qcow2 (v1 converted)\n\n| allocated | read | ratio |\n|---|---|---|\n| {:.0} MiB | {:.0} MiB | {:.3}x |\n\nGoal: at most 1.1x.\n\n\
### Serve: reading the second snapshot whole into a raw file (then sync)\n\n| path | wall | vs restore |\n|---|---|---|\n\
| snap-disk restore --to (local store) | {local:.2} s | 1.00x |\n| snap-disk serve + qemu-img convert (NBD) | {serve:.2} s | {:.2}x throughput |\n\nGoal: serve at least 0.8x the throughput of the local restore.\n",
        mib(med(&|l| l.first.1 as f64) as u64),
        first / borg1,
        first / restic1,
        first / rustic1,
        mib(med(&|l| l.second.1 as f64) as u64),
        second / first,
        second / borg,
        second / restic,
        second / rustic,
        med(&|l| l.frozen_ms),
        qalloc / MIB as f64,
        qread / MIB as f64,
        qread / qalloc,
        local / serve,
    )
}
