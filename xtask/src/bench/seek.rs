//! The pack suite's one-file rows: one 1 MiB file back from a local S3
//! server (moto, behind a proxy that counts the bytes it sends), from the
//! archive snap-pack just made, against the same archive read as one stream
//! (its record without `frames`: how snap-restore read every archive before
//! seekable ones), `restic restore --include` and `rustic restore` of the
//! same file from repositories on the same server. The output column is
//! the MiB the server sent.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;

use serde_json::Value;
use snap_testkit::FaultProxy;

use super::kit::{Moto, bin, fresh_dir};
use super::kit::{Table, add_sample, discard, measure, quiet};
use crate::sh::Result;

/// The 1 MiB file every snapshot of the pack suite carries, in its own source folder.
pub(crate) const ONE_MIB: &str = "one-mib/file.bin";

/// Writes the 1 MiB file (half text, half noise, like tree-large) under `base`; its folder.
pub(crate) fn one_mib_source(base: &Path) -> Result<PathBuf> {
    let dir = base.join("one-mib");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut data = Vec::with_capacity(1 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 1 << 19 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        data.extend_from_slice(format!("line {} of the one MiB file\n", x >> 44).as_bytes());
    }
    data.truncate(1 << 19);
    while data.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(base.join(ONE_MIB), &data).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// What one measurement needs: the archive, and where things are.
pub(crate) struct Setup<'a> {
    pub corpus: &'a str,
    pub archive: &'a Path,
    pub snap_tree: &'a Path,
    /// The 1 MiB file's path inside the snapshot (no leading `/`).
    pub file: String,
    pub targets: &'a Path,
    pub runs: usize,
}

/// The environment that sends S3 requests to `port` (the server, or the
/// proxy in front of it).
fn env(port: u16) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "bench".into()),
        ("AWS_SECRET_ACCESS_KEY", "bench".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("RESTIC_PASSWORD", "bench".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A copy of the archive's files as set `b1`, its record without `frames`:
/// the same bytes, read as one stream. Returns its record's path.
fn stream_copy(archive: &Path, into: &Path) -> Result<PathBuf> {
    let dir = into.join("b1");
    fresh_dir(&dir)?;
    let name = archive.file_name().unwrap_or_default().to_string_lossy();
    let id = name.trim_end_matches(".tar.zst").to_string();
    let from = archive.parent().ok_or("the archive has no folder")?;
    for suffix in [".tar.zst", ".index.zst", ".sha256"] {
        fs::copy(
            from.join(format!("{id}{suffix}")),
            dir.join(format!("{id}{suffix}")),
        )
        .map_err(|e| e.to_string())?;
    }
    let text = fs::read(from.join(format!("{id}.json"))).map_err(|e| e.to_string())?;
    let mut rec: Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let obj = rec.as_object_mut().ok_or("a record is an object")?;
    obj.remove("frames");
    obj.insert("set".into(), "b1".into());
    let path = |s: &str| Value::from(dir.join(format!("{id}{s}")).display().to_string());
    obj.insert("path".into(), path(".tar.zst"));
    obj.insert("index".into(), path(".index.zst"));
    let json = dir.join(format!("{id}.json"));
    fs::write(&json, serde_json::to_vec(&rec).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    Ok(json)
}

/// rustic's profile for the repository on the server at `port`; its path without `.toml`.
fn rustic_profile(dir: &Path, port: u16) -> Result<PathBuf> {
    let profile = dir.join(format!("rustic-{port}"));
    let text = format!(
        "[repository]\nrepository = \"opendal:s3\"\npassword = \"bench\"\n\
[repository.options]\nbucket = \"bench\"\nroot = \"/rustic\"\nendpoint = \"http://127.0.0.1:{}\"\n\
region = \"us-east-1\"\naccess_key_id = \"bench\"\nsecret_access_key = \"bench\"\n",
        port
    );
    fs::write(profile.with_extension("toml"), text).map_err(|e| e.to_string())?;
    Ok(profile)
}

fn rustic(profile: &Path, sub: &[&str]) -> Command {
    let mut c = Command::new("rustic");
    c.arg("-P")
        .arg(profile)
        .args(["--no-progress", "--log-level", "warn"])
        .args(sub);
    c
}

/// The one-file rows of one corpus.
pub(crate) fn one_file(s: &Setup, scripts: &Path, table: &mut Table) -> Result {
    let moto = Moto::start(scripts)?;
    let proxy = FaultProxy::start(moto.port, Vec::new());
    let work = s.targets.join("seek");
    fresh_dir(&work)?;
    // Untimed, straight to the server (the proxy holds each request's body
    // in memory, and a child's peak RSS counts the parent's at fork): the
    // archive and its one-stream copy, and a repository of each
    // restic-format tool.
    let setup = env(moto.port);
    let env = env(proxy.port);
    let json = s.archive.with_file_name(format!(
        "{}.json",
        s.archive
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .trim_end_matches(".tar.zst")
    ));
    let copy = stream_copy(s.archive, &work)?;
    for record in [&json, &copy] {
        let mut push = Command::new(bin("snap-push"));
        push.args(["-q", "--dest", "s3://bench/snap", "--state-dir"])
            .arg(work.join("state"))
            .arg("--file")
            .arg(record)
            .envs(setup.iter().cloned());
        quiet(&mut push)?;
    }
    let restic = |port: u16, sub: &[&str]| {
        let repo = format!("s3:http://127.0.0.1:{port}/bench/restic");
        let mut c = Command::new("restic");
        c.args(["--quiet", "--repo", &repo])
            .args(sub)
            .envs(self::env(port));
        c
    };
    quiet(&mut restic(moto.port, &["init"]))?;
    quiet(restic(moto.port, &["backup"]).arg(s.snap_tree))?;
    let direct = rustic_profile(&work, moto.port)?;
    quiet(&mut rustic(&direct, &["init"]))?;
    quiet(rustic(&direct, &["backup"]).arg(s.snap_tree))?;
    let profile = rustic_profile(&work, proxy.port)?;
    let abs = s.snap_tree.join(&s.file);
    let abs = abs.display().to_string();
    let tools = ["snap", "snap cat", "snap, one stream", "restic", "rustic"];
    for run in 0..s.runs {
        for k in 0..tools.len() {
            let tool = tools[(k + run) % tools.len()];
            let out = work.join(format!("out-{k}"));
            fresh_dir(&out)?;
            // The one-stream copy stands for an archive made before frames,
            // and so before records were signed: it is read as such.
            let snap = |set: &str| {
                let mut c = Command::new(bin("snap-restore"));
                if set == "b1" {
                    c.arg("--allow-unsigned");
                }
                c.args(["-q", "--from", "s3://bench/snap", "restore"])
                    .arg(format!("{set}/latest"))
                    .arg("--to")
                    .arg(&out)
                    .args(["--path", &s.file])
                    .envs(env.iter().cloned());
                c
            };
            let mut cmd = match tool {
                "snap" => snap("b"),
                "snap, one stream" => snap("b1"),
                "snap cat" => {
                    let mut c = Command::new("sh");
                    c.arg("-c")
                        .arg(format!(
                            "'{}' -q --from s3://bench/snap cat b/latest '{}' > '{}/file'",
                            bin("snap-restore").display(),
                            s.file,
                            out.display()
                        ))
                        .envs(env.iter().cloned());
                    c
                }
                "restic" => {
                    let mut c = restic(
                        proxy.port,
                        &["restore", "latest", "--include", &abs, "--target"],
                    );
                    c.arg(&out);
                    c
                }
                _ => {
                    let mut c = rustic(&profile, &["restore", &format!("latest:{abs}")]);
                    c.arg(out.join("file"));
                    c
                }
            };
            let before = proxy.sent.load(Ordering::SeqCst);
            let (wall, rss) = measure(&mut cmd)?;
            let sent = proxy.sent.load(Ordering::SeqCst) - before;
            let mib = sent as f64 / (1 << 20) as f64;
            eprintln!(
                "xtask: {} 4-one-file {tool}: {wall:.2} s, {mib:.1} MiB fetched",
                s.corpus
            );
            add_sample(
                table,
                (s.corpus, "4-one-file (S3)", tool),
                wall,
                rss,
                Some(mib),
            );
            check_restored(&out, s, tool)?;
            discard(&out)?;
        }
    }
    drop(moto);
    discard(&work)
}

/// The file came back whole (each tool lays it out its own way).
fn check_restored(out: &Path, s: &Setup, tool: &str) -> Result {
    let want = fs::read(s.snap_tree.join(&s.file)).map_err(|e| e.to_string())?;
    let candidates = [
        out.join(&s.file),
        out.join("file"),
        out.join(
            s.snap_tree
                .join(&s.file)
                .strip_prefix("/")
                .unwrap_or(Path::new("")),
        ),
    ];
    match candidates
        .iter()
        .any(|p| fs::read(p).is_ok_and(|got| got == want))
    {
        true => Ok(()),
        false => Err(format!("{tool} did not restore {} whole", s.file)),
    }
}
