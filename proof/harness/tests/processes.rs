//! The scenario as real processes against real servers: three pushers,
//! each with its own store and state folder, and a pruner run side by side
//! as separate processes against one destination (a folder, moto's S3,
//! Azurite), round after round, with kill -9 of a random one at a random
//! moment in most rounds. After every round, every archive and disk
//! snapshot the destination lists verifies (`snap-restore verify`, reading
//! every byte); after the next runs (every pusher again, then a prune) all
//! runs succeed, and at the folder nothing is left that no record needs
//! but blocks younger than the day's grace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use snap_harness::sched::Rng;
use snap_harness::world::{self, Pusher};

const ROUNDS: usize = 3;

struct Run<'a> {
    dest: String,
    env: Vec<(String, String)>,
    work: &'a Path,
    pushers: &'a [Pusher],
}

impl Run<'_> {
    fn tool(&self, name: &str, who: usize) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin(name));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.work.join(format!("home{who}")))
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn push(&self, who: usize, rounds: &[usize]) -> Command {
        let mut c = self.tool("snap-push", who);
        for r in rounds {
            for f in &self.pushers[who].rounds[*r] {
                c.arg("--file").arg(f);
            }
        }
        // The test's folder sits on whatever disk the host has: no floor.
        c.args(["--dest", &self.dest, "--min-free", "0", "-q"]);
        c
    }

    fn prune(&self) -> Command {
        let mut c = self.tool("snap-prune", self.pushers.len());
        c.args(["--dest", &self.dest, "--keep-last", "1", "-q"]);
        c
    }

    /// Every listed archive and disk snapshot reads back whole.
    fn verify_all(&self) -> Vec<String> {
        let out = self
            .tool("snap-restore", 9)
            .args(["list", &self.dest, "--json"])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "list failed");
        let mut bad = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let rec: serde_json::Value = serde_json::from_str(line).unwrap();
            let what = match (rec["set"].as_str(), rec["disk"].as_str()) {
                (Some(set), _) => format!("{set}/{}", rec["id"].as_str().unwrap_or("")),
                (_, Some(disk)) => format!("disks/{disk}/{}", rec["name"].as_str().unwrap_or("")),
                _ => continue,
            };
            let status = self
                .tool("snap-restore", 9)
                .args(["--from", &self.dest, "verify", &what, "-q"])
                .status()
                .unwrap();
            if !status.success() {
                bad.push(format!("{what} does not verify ({status})"));
            }
        }
        bad
    }
}

/// Runs the rounds with kill -9s, then the next runs; returns what is wrong.
fn scenario(
    dest: &str,
    env: Vec<(String, String)>,
    seed: u64,
) -> (Vec<String>, PathBuf, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let pushers = world::make(work.path(), 3, ROUNDS).unwrap();
    // The verifier (HOME 9) believes the machines' signatures.
    let trusted = work.path().join("home9/.config/snap");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(
        world::allowed_signers(work.path()),
        trusted.join("allowed_signers"),
    )
    .unwrap();
    let run = Run {
        dest: dest.to_string(),
        env,
        work: work.path(),
        pushers: &pushers,
    };
    let mut rng = Rng::new(seed);
    let mut bad = Vec::new();
    for round in 0..ROUNDS * 2 {
        let r = round / 2;
        let mut kids: Vec<Child> = (0..pushers.len())
            .map(|who| run.push(who, &(0..=r).collect::<Vec<_>>()).spawn().unwrap())
            .collect();
        kids.push(run.prune().spawn().unwrap());
        if rng.below(4) != 0 {
            std::thread::sleep(Duration::from_millis(rng.below(400)));
            let victim = rng.below(kids.len() as u64) as usize;
            let _ = kids[victim].kill();
        }
        for mut k in kids {
            let _ = k.wait();
        }
        bad.extend(
            run.verify_all()
                .into_iter()
                .map(|b| format!("seed {seed} round {round}: {b}")),
        );
    }
    for who in 0..pushers.len() {
        let all: Vec<usize> = (0..ROUNDS).collect();
        if !run.push(who, &all).status().unwrap().success() {
            bad.push(format!("seed {seed}: the next push of pusher {who} failed"));
        }
    }
    if !run.prune().status().unwrap().success() {
        bad.push(format!("seed {seed}: the next prune failed"));
    }
    bad.extend(run.verify_all());
    let root = PathBuf::from(dest);
    (bad, root, work)
}

/// At a folder: what no record needs, but blocks younger than a day.
fn folder_leaks(root: &Path) -> Vec<String> {
    let store = object_store::memory::InMemory::new();
    let mut files = Vec::new();
    walk(root, root, &mut files);
    for (rel, bytes) in &files {
        let _ = futures::executor::block_on(object_store::ObjectStoreExt::put(
            &store,
            &object_store::path::Path::from(rel.as_str()),
            bytes.clone().into(),
        ));
    }
    snap_harness::check::leaks(&store)
        .into_iter()
        .filter(|l| !l.contains("/blocks/"))
        .collect()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, bytes::Bytes)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            walk(root, &p, out);
        } else if !name.starts_with('.')
            || p.parent()
                .is_some_and(|d| d.ends_with("locks") || d.ends_with("pruning"))
        {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, std::fs::read(&p).unwrap().into()));
        }
    }
}

/// A folder destination: every round verifies; after the next runs,
/// nothing is left over (but young blocks), no lock, no intent.
#[test]
fn processes_killed_at_a_folder_lose_nothing() {
    let dest = tempfile::tempdir().unwrap();
    for seed in [1, 2] {
        let d = dest.path().join(format!("d{seed}"));
        std::fs::create_dir(&d).unwrap();
        let (mut bad, root, _work) = scenario(d.to_str().unwrap(), Vec::new(), seed);
        bad.extend(folder_leaks(&root));
        assert!(bad.is_empty(), "{bad:#?}");
    }
}

/// The same at moto's S3.
#[test]
fn processes_killed_at_s3_lose_nothing() {
    let s3 = snap_testkit::Moto::start();
    s3.create_bucket("bkt");
    let (bad, _, _work) = scenario("s3://bkt/snap", s3.env(), 3);
    assert!(bad.is_empty(), "{bad:#?}");
}

/// The same at Azurite.
#[test]
fn processes_killed_at_azure_lose_nothing() {
    let az = snap_testkit::Azurite::start();
    az.create_container("bkt");
    let (bad, _, _work) = scenario("az://bkt/snap", az.env(), 4);
    assert!(bad.is_empty(), "{bad:#?}");
}
