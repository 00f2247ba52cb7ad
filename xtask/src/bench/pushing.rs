//! Running snap-push for the suites that push (push, remote): its command
//! line, and how far a resumed upload had come by its journal.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::kit::bin;
use crate::sh::Result;

pub(crate) fn snap_push(
    json: &Path,
    dest: &str,
    state: &Path,
    env: &[(String, String)],
) -> Command {
    let mut c = Command::new(bin("snap-push"));
    c.args(["-q", "--file"])
        .arg(json)
        .args(["--dest", dest, "--state-dir"])
        .arg(state)
        .envs(env.iter().cloned());
    c
}

/// Parts a resume journal under `state` records, and how many the file has.
fn journal_parts(state: &Path) -> (usize, usize) {
    let Ok(entries) = fs::read_dir(state) else {
        return (0, 1);
    };
    for e in entries.flatten() {
        let Ok(text) = fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let (size, part) = (
            v["size"].as_u64().unwrap_or(0),
            v["part_size"].as_u64().unwrap_or(1),
        );
        let total = size.div_ceil(part.max(1)).max(1) as usize;
        return (v["done"].as_object().map_or(0, |d| d.len()), total);
    }
    (0, 1)
}

/// Kills a push once half its parts are there, reruns it; returns the share
/// of the archive the rerun sent and the share that was there at the kill.
pub(crate) fn resume_share(
    json: &Path,
    dest: &str,
    state: &Path,
    env: &[(String, String)],
    size: u64,
) -> Result<(f64, f64)> {
    let mut child = snap_push(json, dest, state, env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let at_kill = loop {
        let (done, total) = journal_parts(state);
        if done * 2 >= total {
            break done as f64 / total as f64;
        }
        if start.elapsed() > Duration::from_secs(300) || child.try_wait().ok().flatten().is_some() {
            return Err("the push to interrupt finished or stalled before half".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = child.kill();
    let _ = child.wait();
    let out = snap_push(json, dest, state, env)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "resumed push: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok((
        rec["sent"].as_u64().unwrap_or(0) as f64 / size as f64,
        at_kill,
    ))
}
