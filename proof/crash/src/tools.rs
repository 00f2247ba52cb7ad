//! The scenarios: one representative run of each tool, from a state that
//! already holds published snapshots and archives, so a kill has something
//! to break.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::check::{
    all_verify, digests, listed, names, no_leftovers, recall, remember, same_tree, unchanged,
};
use crate::disks::{DiskCommit, DiskCreate, DiskQcow2, DiskRestore};
use crate::sweep::{Check, Scenario, World};

/// A source tree of small and larger files, a folder, a symlink; `round`
/// changes a file, adds one and removes one, so each snapshot differs.
pub(crate) fn source(w: &World, round: u32) -> Check {
    let src = w.path("src");
    let e = |e: std::io::Error| e.to_string();
    fs::create_dir_all(src.join("docs/deep")).map_err(e)?;
    if round == 0 {
        for i in 0..16u32 {
            let dir = if i % 3 == 0 { "docs" } else { "" };
            let body: Vec<u8> = (0..(i * 997 + 11)).map(|j| (j * 31 + i) as u8).collect();
            fs::write(src.join(dir).join(format!("f{i}")), body).map_err(e)?;
        }
        let big: Vec<u8> = (0..400_000u32)
            .map(|j| (j.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        fs::write(src.join("docs/deep/big.bin"), big).map_err(e)?;
        std::os::unix::fs::symlink("f1", src.join("link")).map_err(e)?;
    } else {
        fs::write(
            src.join(format!("f{round}")),
            format!("changed in round {round}\n"),
        )
        .map_err(e)?;
        fs::write(
            src.join(format!("docs/new{round}")),
            format!("new in round {round}\n"),
        )
        .map_err(e)?;
        let _ = fs::remove_file(src.join(format!("f{}", round + 6)));
    }
    Ok(())
}

pub(crate) fn collect(w: &World) -> Command {
    let mut c = w.tool("snap-collect");
    c.args([
        "--store",
        "store",
        "--name",
        "s",
        "--min-free",
        "0",
        "-q",
        "src",
    ]);
    c
}

fn pack(w: &World, incremental: bool) -> Command {
    let mut c = w.tool("snap-pack");
    c.args([
        "--store",
        "store",
        "--snapshot",
        "s/latest",
        "--min-free",
        "0",
        "-q",
    ]);
    if incremental {
        c.arg("--incremental");
    }
    c
}

/// Incremental archives in chains of two, so a prune has whole chains to remove.
pub(crate) fn pack_pairs(w: &World) -> Command {
    let mut c = pack(w, true);
    c.args(["--full-every", "2"]);
    c
}

pub(crate) fn push(w: &World) -> Command {
    let mut c = w.tool("snap-push");
    c.args([
        "--store",
        "store",
        "--dest",
        "drive",
        "--all",
        "--min-free",
        "0",
        "-q",
    ])
    .args(["--state-dir", "state"]);
    c
}

/// `rounds` backups (collect, pack, incremental after the first).
fn backups(w: &World, rounds: u32) -> Check {
    for r in 0..rounds {
        source(w, r)?;
        w.ok(&mut collect(w))?;
        w.ok(&mut pack(w, r > 0))?;
    }
    Ok(())
}

/// The source as the store's snapshots and archives keep it (under its absolute path).
fn inside(w: &World, out: &str) -> std::path::PathBuf {
    let src = w.path("src");
    w.path(out).join(src.strip_prefix("/").unwrap())
}

/// The newest archive of set `s` listed at `place`.
fn newest_archive(w: &World, place: &[&str]) -> Result<String, String> {
    listed(w, place)?
        .iter()
        .filter(|i| i["kind"] == "archive")
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        // Ids of one second end -2 … -10, which text order puts out of turn.
        .max_by(|a, b| snap_shared::id::cmp_ids(a, b))
        .ok_or_else(|| "no archive is listed".to_string())
}

/// The newest archive at `place` restores equal to the source.
pub(crate) fn newest_restores(w: &World, place: &[&str]) -> Check {
    let id = newest_archive(w, place)?;
    let out = w.path("check-out");
    let _ = fs::remove_dir_all(&out);
    w.ok(w.tool("snap-restore").args(place).args([
        "-q",
        "restore",
        "--archive",
        &format!("s/{id}"),
        "--to",
        "check-out",
    ]))?;
    same_tree(&w.path("src"), &inside(w, "check-out"))
}

/// snap-collect: a second snapshot of a changed tree, beside a published one.
pub struct Collect;

impl Scenario for Collect {
    fn name(&self) -> &'static str {
        "snap-collect"
    }

    fn prepare(&self, w: &World) -> Check {
        source(w, 0)?;
        w.ok(&mut collect(w))?;
        remember(w, "sets", &digests(&w.path("store/sets"))?)?;
        source(w, 1)
    }

    fn run(&self, w: &World) -> Command {
        collect(w)
    }

    fn after_kill(&self, w: &World) -> Check {
        unchanged(&w.path("store/sets"), &recall(w, "sets")?)?;
        all_verify(w, &["--store", "store"])
    }

    fn after_run(&self, w: &World) -> Check {
        all_verify(w, &["--store", "store"])?;
        let out = w.path("check-out");
        let _ = fs::remove_dir_all(&out);
        w.ok(w.tool("snap-restore").args([
            "--store",
            "store",
            "-q",
            "restore",
            "s/latest",
            "--to",
            "check-out",
        ]))?;
        same_tree(&w.path("src"), &inside(w, "check-out"))?;
        crate::catalog::agrees(&w.path("store"))
    }
}

/// snap-pack: an incremental archive on top of a published full one.
pub struct Pack;

impl Scenario for Pack {
    fn name(&self) -> &'static str {
        "snap-pack"
    }

    fn prepare(&self, w: &World) -> Check {
        backups(w, 1)?;
        remember(w, "archives", &digests(&w.path("store/archives"))?)?;
        source(w, 1)?;
        w.ok(&mut collect(w)).map(drop)
    }

    fn run(&self, w: &World) -> Command {
        pack(w, true)
    }

    fn after_kill(&self, w: &World) -> Check {
        unchanged(&w.path("store/archives"), &recall(w, "archives")?)?;
        all_verify(w, &["--store", "store"])
    }

    fn after_run(&self, w: &World) -> Check {
        all_verify(w, &["--store", "store"])?;
        newest_restores(w, &["--store", "store"])?;
        no_leftovers(&w.path("store/archives"), &[".part"])?;
        crate::catalog::agrees(&w.path("store"))
    }
}

/// snap-push to a folder: two new incremental archives, beside a pushed full one.
pub struct PushFolder;

impl Scenario for PushFolder {
    fn name(&self) -> &'static str {
        "snap-push-folder"
    }

    fn prepare(&self, w: &World) -> Check {
        backups(w, 1)?;
        fs::create_dir(w.path("drive")).map_err(|e| e.to_string())?;
        w.ok(&mut push(w))?;
        remember(w, "drive", &digests(&w.path("drive"))?)?;
        for r in 1..3 {
            source(w, r)?;
            w.ok(&mut collect(w))?;
            w.ok(&mut pack(w, true))?;
        }
        Ok(())
    }

    fn run(&self, w: &World) -> Command {
        push(w)
    }

    fn drive(&self) -> Option<&'static str> {
        Some("drive")
    }

    fn after_kill(&self, w: &World) -> Check {
        // Lock files come and go; what was pushed stays as it was.
        let mut before = recall(w, "drive")?;
        before.retain(|k, _| !k.starts_with(".snap/"));
        unchanged(&w.path("drive"), &before)?;
        all_verify(w, &["--from", "drive"])
    }

    fn after_run(&self, w: &World) -> Check {
        all_verify(w, &["--from", "drive"])?;
        let archives = |place| -> Result<Vec<String>, String> {
            Ok(names(&listed(w, place)?)
                .into_iter()
                .filter(|n| n.starts_with("archive "))
                .collect())
        };
        let (store, drive) = (
            archives(&["--store", "store"])?,
            archives(&["--from", "drive"])?,
        );
        if store != drive {
            return Err(format!("the store has {store:?}, the drive {drive:?}"));
        }
        newest_restores(w, &["--from", "drive"])?;
        no_leftovers(&w.path("drive"), &[".part"])
    }
}

/// snap-push to S3 (moto): two new incremental archives, beside a pushed full
/// one, each point into a bucket of its own.
pub struct PushS3 {
    moto: std::sync::OnceLock<snap_testkit::Moto>,
}

impl PushS3 {
    fn bucket(w: &World) -> String {
        format!(
            "s3://{}",
            fs::read_to_string(w.path("bucket")).unwrap_or_default()
        )
    }

    fn push_to(w: &World, to: &str) -> Command {
        let mut c = w.tool("snap-push");
        c.args(["--store", "store", "--dest", to, "--min-free", "0", "-q"])
            .args(["--state-dir", "state", "--retries", "2"]);
        c
    }
}

impl Scenario for PushS3 {
    fn name(&self) -> &'static str {
        "snap-push-s3"
    }

    fn env(&self) -> Vec<(String, String)> {
        self.moto.get_or_init(snap_testkit::Moto::start).env()
    }

    fn prepare(&self, w: &World) -> Check {
        backups(w, 1)?;
        let first = listed(w, &["--store", "store"])?
            .into_iter()
            .find(|i| i["kind"] == "archive")
            .ok_or("no archive after the first backup")?;
        let record = first["path"]
            .as_str()
            .unwrap_or_default()
            .replace(".tar.zst", ".json");
        fs::write(w.path("first"), record).map_err(|e| e.to_string())?;
        for r in 1..3 {
            source(w, r)?;
            w.ok(&mut collect(w))?;
            w.ok(&mut pack(w, true))?;
        }
        Ok(())
    }

    fn before_each(&self, w: &World, point: u64) -> Check {
        let name = format!("crash-{point}");
        self.moto
            .get_or_init(snap_testkit::Moto::start)
            .create_bucket(&name);
        fs::write(w.path("bucket"), &name).map_err(|e| e.to_string())?;
        let first = fs::read_to_string(w.path("first")).map_err(|e| e.to_string())?;
        w.ok(Self::push_to(w, &Self::bucket(w)).args(["--file", &first]))
            .map(drop)
    }

    fn run(&self, w: &World) -> Command {
        let mut c = Self::push_to(w, &Self::bucket(w));
        c.arg("--all");
        c
    }

    fn after_kill(&self, w: &World) -> Check {
        let bucket = Self::bucket(w);
        let listed_now = names(&listed(w, &["--from", &bucket])?);
        if listed_now.is_empty() {
            return Err("the archive pushed before is no longer listed".into());
        }
        all_verify(w, &["--from", &bucket])
    }

    fn after_run(&self, w: &World) -> Check {
        let bucket = Self::bucket(w);
        all_verify(w, &["--from", &bucket])?;
        let archives = |place: &[&str]| -> Result<Vec<String>, String> {
            Ok(names(&listed(w, place)?)
                .into_iter()
                .filter(|n| n.starts_with("archive "))
                .collect())
        };
        let (store, there) = (
            archives(&["--store", "store"])?,
            archives(&["--from", &bucket])?,
        );
        if store != there {
            return Err(format!("the store has {store:?}, the bucket {there:?}"));
        }
        newest_restores(w, &["--from", &bucket])
    }
}

/// snap-restore of an incremental chain into a new folder.
pub struct Restore;

impl Scenario for Restore {
    fn name(&self) -> &'static str {
        "snap-restore"
    }

    fn prepare(&self, w: &World) -> Check {
        backups(w, 2)?;
        let id = newest_archive(w, &["--store", "store"])?;
        fs::write(w.path("newest"), id).map_err(|e| e.to_string())
    }

    fn run(&self, w: &World) -> Command {
        let id = fs::read_to_string(w.path("newest")).unwrap_or_default();
        let mut c = w.tool("snap-restore");
        c.args(["--store", "store", "-q", "restore", "--archive"])
            .arg(format!("s/{id}"))
            .args(["--to", "out"]);
        c
    }

    fn after_kill(&self, w: &World) -> Check {
        // Whatever is under a real name is whole; the rest is under `.NAME.snap-part`.
        let out = inside(w, "out");
        if !out.exists() {
            return Ok(());
        }
        let want = digests(&w.path("src"))?;
        for (name, d) in digests(&out)? {
            let base = Path::new(&name)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if base.starts_with('.') && base.ends_with(".snap-part") {
                continue;
            }
            if want.get(&name) != Some(&d) {
                return Err(format!("{name} is under its name with other content"));
            }
        }
        Ok(())
    }

    fn after_run(&self, w: &World) -> Check {
        same_tree(&w.path("src"), &inside(w, "out"))
    }
}

/// The listing a prune must leave, from its own dry run.
fn plan(w: &World, place: &[&str]) -> Check {
    let out = w.ok(w.tool("snap-prune").args(place).args([
        "--keep-last",
        "2",
        "--dry-run",
        "-q",
        "--state-dir",
        "state",
    ]))?;
    let mut keep: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["action"] == "keep")
        .map(|r| {
            format!(
                "{} {}/{}",
                r["what"].as_str().unwrap_or("?"),
                r["set"].as_str().unwrap_or("?"),
                r["id"].as_str().unwrap_or("?")
            )
        })
        .collect();
    keep.sort();
    keep.dedup();
    fs::write(w.path("keep.json"), serde_json::to_string(&keep).unwrap()).map_err(|e| e.to_string())
}

/// What the dry run in [`plan`] keeps.
fn planned(w: &World) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(w.path("keep.json")).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn kept_as_planned(w: &World, place: &[&str]) -> Check {
    let keep = planned(w)?;
    let now = names(&listed(w, place)?);
    if now != keep {
        return Err(format!("the prune left {now:?}, its plan keeps {keep:?}"));
    }
    Ok(())
}

/// Every item the plan keeps is still listed (it may list more: the prune
/// had not finished).
fn kept_still_there(w: &World, place: &[&str]) -> Check {
    let keep = planned(w)?;
    let now = names(&listed(w, place)?);
    match keep.iter().find(|k| !now.contains(k)) {
        Some(gone) => Err(format!("{gone} is kept by the plan but gone")),
        None => Ok(()),
    }
}

/// snap-prune, keep the last two: in the store (four backups in chains of
/// two), or at a folder destination (ten pushed backups in chains of two).
pub struct Prune {
    at_dest: bool,
}

impl Prune {
    /// How snap-prune names the place, and how snap-restore does.
    fn places(&self) -> ([&'static str; 2], [&'static str; 2]) {
        match self.at_dest {
            false => (["--store", "store"], ["--store", "store"]),
            true => (["--dest", "drive"], ["--from", "drive"]),
        }
    }
}

impl Scenario for Prune {
    fn name(&self) -> &'static str {
        match self.at_dest {
            false => "snap-prune-store",
            true => "snap-prune-dest",
        }
    }

    fn prepare(&self, w: &World) -> Check {
        if self.at_dest {
            fs::create_dir(w.path("drive")).map_err(|e| e.to_string())?;
        }
        for r in 0..if self.at_dest { 10 } else { 4 } {
            source(w, r)?;
            w.ok(&mut collect(w))?;
            w.ok(&mut pack_pairs(w))?;
            if self.at_dest {
                w.ok(&mut push(w))?;
            }
        }
        plan(w, &self.places().0)
    }

    fn drive(&self) -> Option<&'static str> {
        self.at_dest.then_some("drive")
    }

    fn run(&self, w: &World) -> Command {
        let mut c = w.tool("snap-prune");
        c.args(self.places().0)
            .args(["--keep-last", "2", "-q", "--state-dir", "state"]);
        c
    }

    fn after_kill(&self, w: &World) -> Check {
        let listed_at = self.places().1;
        kept_still_there(w, &listed_at)?;
        all_verify(w, &listed_at)
    }

    fn after_run(&self, w: &World) -> Check {
        let listed_at = self.places().1;
        kept_as_planned(w, &listed_at)?;
        all_verify(w, &listed_at)?;
        match self.at_dest {
            false => crate::catalog::agrees(&w.path("store")),
            true => newest_restores(w, &listed_at),
        }
    }
}

/// Every scenario, by name.
pub fn all() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(Collect),
        Box::new(Pack),
        Box::new(PushFolder),
        Box::new(PushS3 {
            moto: std::sync::OnceLock::new(),
        }),
        Box::new(Restore),
        Box::new(Prune { at_dest: false }),
        Box::new(Prune { at_dest: true }),
        Box::new(crate::handover::Handover),
        Box::new(DiskCreate),
        Box::new(DiskRestore),
        Box::new(DiskQcow2 { delete: false }),
        Box::new(DiskQcow2 { delete: true }),
        Box::new(DiskCommit),
    ]
}
