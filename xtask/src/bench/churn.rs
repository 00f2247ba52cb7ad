//! `cargo xtask bench --suites churn`: 20 days of a home folder that changes
//! a little each day, backed up by snap (collect, pack --incremental, push
//! to a folder), restic and borg side by side; what each destination holds
//! after days 1, 10 and 20, each day's time, the store on XFS with reflink,
//! and restoring the big file after 20 days of deltas against restoring it
//! from one full archive.
//!
//! The corpus (issue 37's): 300 documents (~50 KB of text each), 50 photos
//! (3.5 MB, incompressible), a 512 MiB database that compresses about 2:1
//! and a 64 MiB log. Each day 5 documents are rewritten, a photo is added,
//! 1% of the database is rewritten in place in 10 regions, and 1 MiB is
//! appended to the log. Everything is made by a seeded generator, so every
//! run measures the same bytes.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::args::Args;
use super::kit::{bin, measure, quiet};
use crate::sh::{Result, remove_tree};

const DAYS: u32 = 20;
const DB: u64 = 512 << 20;
const LOG: u64 = 64 << 20;
const PHOTO: usize = 3_500_000;

/// A seeded xorshift generator: the same corpus every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// Pages of half random bytes, half zeros: compresses about 2:1.
    fn half(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        for page in v.chunks_mut(4096) {
            let half = page.len() / 2;
            self.fill(&mut page[..half]);
        }
        v
    }

    fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: [&str; 12] = [
            "backup", "the", "file", "of", "snapshot", "and", "a", "disk", "week", "restore",
            "notes", "\n",
        ];
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            out.extend_from_slice(WORDS[(self.next() % 12) as usize].as_bytes());
            out.push(b' ');
        }
        out.truncate(len);
        out
    }
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// The first day's tree.
fn make_corpus(src: &Path, rng: &mut Rng) -> Result {
    fs::create_dir_all(src.join("docs")).map_err(io)?;
    fs::create_dir_all(src.join("photos")).map_err(io)?;
    for i in 0..300 {
        fs::write(src.join(format!("docs/doc{i:03}.txt")), rng.text(50_000)).map_err(io)?;
    }
    for i in 0..50 {
        let mut p = vec![0u8; PHOTO];
        rng.fill(&mut p);
        fs::write(src.join(format!("photos/img{i:03}.jpg")), p).map_err(io)?;
    }
    let mut db = fs::File::create(src.join("app.db")).map_err(io)?;
    for _ in 0..(DB >> 20) {
        db.write_all(&rng.half(1 << 20)).map_err(io)?;
    }
    let mut log = fs::File::create(src.join("app.log")).map_err(io)?;
    for _ in 0..(LOG >> 20) {
        log.write_all(&rng.text(1 << 20)).map_err(io)?;
    }
    Ok(())
}

/// One day's changes; the bytes changed.
fn change(src: &Path, day: u32, rng: &mut Rng) -> Result<u64> {
    let mut changed = 0u64;
    for _ in 0..5 {
        let i = rng.next() % 300;
        fs::write(src.join(format!("docs/doc{i:03}.txt")), rng.text(50_000)).map_err(io)?;
        changed += 50_000;
    }
    let mut p = vec![0u8; PHOTO];
    rng.fill(&mut p);
    fs::write(src.join(format!("photos/day{day:02}.jpg")), p).map_err(io)?;
    changed += PHOTO as u64;
    // 1% of the database, in 10 regions, in place.
    let db = OpenOptions::new()
        .write(true)
        .open(src.join("app.db"))
        .map_err(io)?;
    let region = (DB / 100 / 10) as usize;
    for _ in 0..10 {
        let at = (rng.next() % (DB - region as u64)) / 4096 * 4096;
        db.write_all_at(&rng.half(region), at).map_err(io)?;
        changed += region as u64;
    }
    let mut log = OpenOptions::new()
        .append(true)
        .open(src.join("app.log"))
        .map_err(io)?;
    log.write_all(&rng.text(1 << 20)).map_err(io)?;
    Ok(changed + (1 << 20))
}

/// Bytes a folder holds on disk.
fn du(p: &Path) -> u64 {
    (super::kit::disk_use_mib(p) * (1u64 << 20) as f64) as u64
}

/// Bytes used on the filesystem of `p` (df: shared extents counted once).
fn df_used(p: &Path) -> u64 {
    let _ = Command::new("sync").status();
    Command::new("df")
        .args(["-B1", "--output=used"])
        .arg(p)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn mb(b: u64) -> String {
    format!("{:.0} MB", b as f64 / 1e6)
}

/// The XFS (reflink) store on a loop file, unmounted at the end; None
/// where loop devices or mkfs.xfs are not there (the store is a plain folder).
struct Xfs(PathBuf);

impl Xfs {
    fn mount(image: &Path, at: &Path) -> Option<Xfs> {
        let _ = fs::remove_file(image);
        let ok = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
        let made = ok(Command::new("truncate").args(["-s", "24G"]).arg(image))
            && ok(Command::new("mkfs.xfs")
                .args(["-q", "-m", "reflink=1"])
                .arg(image))
            && ok(Command::new("mount")
                .args(["-o", "loop"])
                .arg(image)
                .arg(at));
        made.then(|| Xfs(at.to_path_buf()))
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

struct Day {
    snap_dest: u64,
    restic: u64,
    borg: u64,
    snap_s: f64,
    restic_s: f64,
    borg_s: f64,
}

pub(crate) fn run(args: &Args, base: &Path) -> Result {
    crate::sh::ensure_apt(&[("mkfs.xfs", "xfsprogs")])?;
    let root = base.join("churn");
    let _ = Command::new("umount").arg(root.join("store")).status();
    remove_tree(&root)?;
    let (src, store, dest) = (root.join("src"), root.join("store"), root.join("dest"));
    let (restic, borg, home) = (root.join("restic"), root.join("borg"), root.join("home"));
    for d in [&src, &store, &dest, &home] {
        fs::create_dir_all(d).map_err(io)?;
    }
    let xfs = Xfs::mount(&root.join("xfs.img"), &store);
    let store_base = df_used(&store);
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    make_corpus(&src, &mut rng)?;
    let source0 = du(&src);
    quiet(
        Command::new("restic")
            .args(["init", "--quiet", "--repo"])
            .arg(&restic)
            .env("RESTIC_PASSWORD", "bench"),
    )?;
    quiet(Command::new("borg").args(["init", "-e", "none"]).arg(&borg))?;
    let snap = |tool: &str| {
        let mut c = Command::new(bin(tool));
        c.env("HOME", &home).env("SNAP_STORE", &store);
        c
    };
    let mut days = Vec::new();
    let mut changed_total = 0u64;
    for day in 1..=DAYS {
        if day > 1 {
            changed_total += change(&src, day, &mut rng)?;
        }
        let c = measure(
            snap("snap-collect")
                .args(["--name", "home", "-q", "--min-free", "0"])
                .arg(&src),
        )?
        .0;
        let p = measure(snap("snap-pack").args([
            "--snapshot",
            "home/latest",
            "--incremental",
            "--full-every",
            "0",
            "-q",
            "--min-free",
            "0",
        ]))?
        .0;
        let u = measure(
            snap("snap-push")
                .args(["--all", "-q", "--min-free", "0", "--dest"])
                .arg(&dest)
                .arg("--state-dir")
                .arg(root.join("state")),
        )?
        .0;
        let t = c + p + u;
        eprintln!("xtask: churn day {day}: collect {c:.2} s, pack {p:.2} s, push {u:.2} s");
        let restic_s = measure(
            Command::new("restic")
                .args(["backup", "--quiet", "--repo"])
                .arg(&restic)
                .arg(&src)
                .env("RESTIC_PASSWORD", "bench"),
        )?
        .0;
        let borg_s = measure(
            Command::new("borg")
                .arg("create")
                .arg(format!("{}::day{day:02}", borg.display()))
                .arg(&src),
        )?
        .0;
        days.push(Day {
            snap_dest: du(&dest),
            restic: du(&restic),
            borg: du(&borg),
            snap_s: t,
            restic_s,
            borg_s,
        });
        eprintln!(
            "xtask: churn day {day}: snap {} ({t:.1} s), restic {} ({restic_s:.1} s), borg {} ({borg_s:.1} s)",
            mb(days.last().unwrap().snap_dest),
            mb(days.last().unwrap().restic),
            mb(days.last().unwrap().borg)
        );
    }
    let store_used = df_used(&store).saturating_sub(store_base);
    // The database back: from the chain of 20, and from one full archive of day 20.
    let db_path = fs::canonicalize(src.join("app.db")).map_err(io)?;
    let inside = db_path
        .strip_prefix("/")
        .map_err(|e| e.to_string())?
        .display()
        .to_string();
    // The median of five restores (the first pays for the page cache; this
    // machine's disk is noisy at half a second).
    let restore = |from: &Path, to: &Path| -> Result<f64> {
        let mut times = Vec::new();
        for _ in 0..5 {
            remove_tree(to)?;
            let mut c = snap("snap-restore");
            c.arg("--from")
                .arg(from)
                .args(["restore", "home/latest", "--path", &inside, "--to"])
                .arg(to)
                .arg("-q");
            times.push(measure(&mut c)?.0);
        }
        let back = fs::read(to.join(&inside)).map_err(io)?;
        let want = fs::read(&db_path).map_err(io)?;
        if back != want {
            return Err("the database restored different".into());
        }
        Ok(super::kit::median(&times))
    };
    let chain_s = restore(&dest, &root.join("r-chain"))?;
    let full_dir = root.join("full");
    quiet(
        snap("snap-pack")
            .args([
                "--snapshot",
                "home/latest",
                "-q",
                "--min-free",
                "0",
                "--out",
            ])
            .arg(&full_dir),
    )?;
    let full_s = restore(&full_dir, &root.join("r-full"))?;
    let md = render(
        &days,
        (source0, du(&src), changed_total),
        (store_used, xfs.is_some()),
        (chain_s, full_s),
    );
    drop(xfs);
    println!("{md}");
    if !args.no_write {
        write_doc(&md)?;
    }
    Ok(())
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    super::kit::median(&v)
}

fn render(
    days: &[Day],
    (source0, source20, changed): (u64, u64, u64),
    (store, on_xfs): (u64, bool),
    (chain_s, full_s): (f64, f64),
) -> String {
    let mut md = String::from(
        "| day | snap destination | restic repo | borg repo | snap / restic | goal |\n|---|---|---|---|---|---|\n",
    );
    for d in [1usize, 10, 20] {
        let x = &days[d - 1];
        let goal = if d == 20 { "≤ 1.3x" } else { "" };
        md.push_str(&format!(
            "| {d} | {} | {} | {} | {:.2}x | {goal} |\n",
            mb(x.snap_dest),
            mb(x.restic),
            mb(x.borg),
            x.snap_dest as f64 / x.restic.max(1) as f64
        ));
    }
    let later = || days.iter().skip(1);
    let (s, r, b) = (
        median(later().map(|d| d.snap_s)),
        median(later().map(|d| d.restic_s)),
        median(later().map(|d| d.borg_s)),
    );
    let store_goal = 2 * source20 + changed;
    md.push_str(&format!(
        "\n| measure | snap | anchor | ratio | goal |\n|---|---|---|---|---|\n\
         | a day's collect + pack + push (median of days 2–20) vs `restic backup` | {s:.1} s | {r:.1} s | {:.2}x | ≤ 1.0x |\n\
         | the same vs `borg create` | {s:.1} s | {b:.1} s | {:.2}x | |\n\
         | the store after 20 days{} vs 2x source + changed bytes | {} | {} (source {} → {}, changed {}) | {:.2}x | ≤ 1.0x |\n\
         | restoring the 512 MiB database from the chain of 20 vs from one full archive | {chain_s:.1} s | {full_s:.1} s | {:.2}x | ≤ 1.5x |\n",
        s / r,
        s / b,
        if on_xfs { " (XFS, reflink)" } else { " (no XFS here: plain folder)" },
        mb(store),
        mb(store_goal),
        mb(source0),
        mb(source20),
        mb(changed),
        store as f64 / store_goal as f64,
        chain_s / full_s
    ));
    md
}

fn write_doc(md: &str) -> Result {
    let method = "Issue 37's home folder, 20 days: 300 documents, 50 photos (3.5 MB, random), a 512 MiB\n\
database (pages half random, half zeros: about 2:1), a 64 MiB log. Each day 5 documents are\n\
rewritten, a photo is added, 1% of the database is rewritten in place in 10 regions, 1 MiB is\n\
appended to the log. snap: `snap-collect`, `snap-pack --incremental --full-every 0`, `snap-push\n\
--all` to a folder, the store on an XFS loop file with reflink; restic (repository v2, its default\n\
compression) and borg (`borg init -e none`, lz4) back up the same tree each day. Sizes are `du` of\n\
each destination; the store's is `df`'s used bytes (shared extents once). One run: the days build on\n\
each other.";
    super::kit::write_doc(
        "benchmarks-churn.md",
        "Benchmarks: a month of small changes",
        1,
        "",
        method,
        md,
    )
}
