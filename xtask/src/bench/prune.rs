//! `cargo xtask bench --suites prune`: planning and deleting at a
//! destination with many archives, at a folder and at a local S3 server.
//!
//! The archives are hourly, in chains of 24 (a full one at midnight, then
//! incrementals on the one before), so keeping a day's last archive keeps its
//! whole chain: the planner reads records generation by generation, the
//! worst case for a bucket. Policy: --keep-daily 7 --keep-weekly 4
//! --keep-monthly 12. "plan" is the wall time of `--dry-run` (process start,
//! listing, the records read, the plan); "prune" that of the real run
//! (planning, then deleting everything else: 4 objects an archive). Peak RSS
//! at 100 and 1,000 archives shows whether memory grows with their number.

use std::fs;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::args::Args;
use super::kit::{Moto, bin, fresh_dir};
use super::kit::{measure, median, quiet};
use crate::sh::{Result, ensure_pip};

pub(crate) const POLICY: [&str; 6] = [
    "--keep-daily",
    "7",
    "--keep-weekly",
    "4",
    "--keep-monthly",
    "12",
];

/// Writes `n` hourly archives of set `d` into `dir/d` (untimed): small data,
/// real sha256s (snap-push checks them), chains of 24, each record signed by
/// `ssh-keygen -Y sign` as snap-pack signs it (five objects an archive).
pub(crate) fn make_archives(dir: &Path, n: usize) -> Result {
    let set = dir.join("d");
    fresh_dir(&set)?;
    let key = dir.join("signing_key");
    let _ = fs::remove_file(&key);
    let _ = fs::remove_file(dir.join("signing_key.pub"));
    crate::sh::exec(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    )?;
    let mut records = Vec::new();
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .map_err(|e| e.to_string())?
        .to_utc();
    let mut prev: Option<String> = None;
    for i in 0..n {
        let t = start + chrono::Duration::hours(i as i64);
        let id = t.format("%Y-%m-%dT%H%M%SZ").to_string();
        let base = if i % 24 == 0 { None } else { prev.clone() };
        let data = format!("archive {id}").repeat(64).into_bytes();
        let index = format!("index {id}").into_bytes();
        let hex = |b: &[u8]| -> String {
            Sha256::digest(b)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect()
        };
        let w = |name: String, bytes: &[u8]| {
            fs::write(set.join(name), bytes).map_err(|e| e.to_string())
        };
        w(format!("{id}.tar.zst"), &data)?;
        w(format!("{id}.index.zst"), &index)?;
        let sums = format!(
            "{}  {id}.tar.zst\n{}  {id}.index.zst\n",
            hex(&data),
            hex(&index)
        );
        w(format!("{id}.sha256"), sums.as_bytes())?;
        let rec = serde_json::json!({"kind": "archive", "schema": "snap/1", "set": "d", "id": id,
            "source": id, "path": set.join(format!("{id}.tar.zst")), "bytes": data.len(),
            "sha256": hex(&data), "compression": "zstd", "encryption": null, "base": base,
            "index": set.join(format!("{id}.index.zst")), "chain": i % 24 + 1});
        w(format!("{id}.json"), format!("{rec}\n").as_bytes())?;
        records.push(set.join(format!("{id}.json")));
        prev = Some(id);
    }
    // One ssh-keygen for every record (it signs each file it is given).
    for chunk in records.chunks(500) {
        crate::sh::exec(
            Command::new("ssh-keygen")
                .args(["-q", "-Y", "sign", "-n", "snap-record", "-f"])
                .arg(&key)
                .args(chunk),
        )?;
    }
    Ok(())
}

fn prune(dest: &str, dry: bool, env: &[(String, String)], state: &Path) -> Command {
    let mut c = Command::new(bin("snap-prune"));
    c.args(["--dest", dest, "-q", "--state-dir"])
        .arg(state)
        .args(POLICY)
        .envs(env.iter().cloned());
    if dry {
        c.arg("--dry-run");
    }
    c
}

/// One row: (where, archives, plan s, plan RSS MiB, prune s, kept, listing by rclone s).
type Row = (String, usize, f64, f64, f64, usize, Option<f64>);

pub fn run(args: &Args, base: &Path) -> Result {
    crate::sh::ensure_apt(&[("rclone", "rclone")])?;
    let scripts = ensure_pip(crate::test::TEST_SERVERS_PIP)?;
    let src = base.join("prune-src");
    let store = base.join("prune-store");
    let state = base.join("prune-state");
    let mut rows: Vec<Row> = Vec::new();
    for n in [100, 1000] {
        for place in ["folder", "s3"] {
            let (mut plans, mut rss, mut prunes, mut lists) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut kept = 0;
            for _ in 0..args.runs {
                fresh_dir(&state)?;
                let (dest, env, _moto) = match place {
                    "folder" => {
                        make_archives(&src, n)?;
                        (src.display().to_string(), Vec::new(), None)
                    }
                    _ => {
                        let moto = Moto::start(&scripts)?;
                        fresh_dir(&store)?;
                        make_archives(&store.join("archives"), n)?;
                        let env = moto.env();
                        quiet(
                            Command::new(bin("snap-push"))
                                .args(["--all", "-q", "--dest", "s3://bench/prune", "--store"])
                                .arg(&store)
                                .arg("--state-dir")
                                .arg(&state)
                                .envs(env.iter().cloned()),
                        )?;
                        // The anchor: listing the same keys, which any planner must do.
                        let mut ls = Command::new("rclone");
                        ls.args(["lsf", "-R", &moto.rclone_at("bench/prune")])
                            .env_remove("AWS_CA_BUNDLE");
                        lists.push(measure(&mut ls)?.0);
                        ("s3://bench/prune".to_string(), env, Some(moto))
                    }
                };
                let (wall, mem) = measure(&mut prune(&dest, true, &env, &state))?;
                plans.push(wall);
                rss.push(mem);
                let out = prune(&dest, true, &env, &state)
                    .output()
                    .map_err(|e| e.to_string())?;
                kept = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| l.contains("\"action\":\"keep\""))
                    .count();
                prunes.push(measure(&mut prune(&dest, false, &env, &state))?.0);
            }
            let list = (!lists.is_empty()).then(|| median(&lists));
            rows.push((
                place.into(),
                n,
                median(&plans),
                median(&rss),
                median(&prunes),
                kept,
                list,
            ));
        }
    }
    let md = render(&rows);
    println!("{md}");
    if !args.no_write {
        write_doc(args, &md)?;
    }
    Ok(())
}

fn render(rows: &[Row]) -> String {
    let mut md = String::from(
        "| destination | archives | plan (dry run) | `rclone lsf -R` (listing only) | peak RSS | plan + delete | kept | goal |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (place, n, plan, rss, prune, kept, list) in rows {
        let list = list.map_or("–".to_string(), |l| format!("{l:.2} s"));
        md.push_str(&format!(
            "| {place} | {n} | {plan:.2} s | {list} | {rss:.1} MiB | {prune:.2} s | {kept} | plan < 1 s at 1,000 |\n"
        ));
    }
    md
}

fn write_doc(args: &Args, md: &str) -> Result {
    let method = "Hourly archives of one set in chains of 24 (a full one at midnight, then incrementals on the one\n\
before), 5 objects each (data, index, sums, the record's signature, the record), at a folder and at a local moto S3 server (filled by `snap-push --all`,\n\
untimed). Policy: `--keep-daily 7 --keep-weekly 4 --keep-monthly 12`; a kept archive keeps its\n\
whole chain. \"plan\" is the wall time of `snap-prune --dry-run` (process start, listing, reading\n\
the records of kept archives and their bases, the plan); \"plan + delete\" that of the real run.";
    super::kit::write_doc(
        "benchmarks-prune.md",
        "Benchmarks: snap-prune",
        args.runs,
        "",
        method,
        md,
    )
}
