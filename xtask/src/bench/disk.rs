//! `cargo xtask bench --suites disk`: snap-disk on a 2 GiB ext4 image and a
//! 1% changed version of it, side by side with `zstd -T0 -3`, `borg create`,
//! `restic backup`, `rustic backup`, a whole-image write (`dd conv=fdatasync`) and bare
//! `qemu-img snapshot`, in the same run.
//!
//! The images are those of docs/benchmarks-anchors.md: v1 = `mke2fs -d` of
//! /usr/lib/x86_64-linux-gnu and /usr/lib/jvm into a 2 GiB ext4 image (fixed
//! UUID, hash seed and time), v2 = v1 with 20 regions of 1 MiB overwritten by
//! pseudo-random bytes at MiB 37 + 101·k. Each run starts from fresh targets:
//! first snapshot of v1, then the image becomes v2 and the second snapshot is
//! taken; then the in-place restore back to the first snapshot.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::args::Args;
use super::kit::{bin, fresh_dir};
use super::kit::{discard, disk_use_mib, measure, median, quiet, repo_cmd, version};
use crate::sh::{Result, ensure_apt};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Builds v1 and v2 once (kept across runs, like the other corpora).
pub(crate) fn images(base: &Path) -> Result<(PathBuf, PathBuf)> {
    let dir = base.join("corpus");
    let (v1, v2) = (dir.join("disk-v1.raw"), dir.join("disk-v2.raw"));
    let marker = dir.join("disk.done");
    if marker.exists() {
        return Ok((v1, v2));
    }
    eprintln!("xtask: building disk-v1.raw and disk-v2.raw (2 GiB ext4)");
    fresh_dir(&dir.join("disk-src"))?;
    for (name, from) in [
        ("lib", "/usr/lib/x86_64-linux-gnu"),
        ("jvm", "/usr/lib/jvm"),
    ] {
        if Path::new(from).is_dir() {
            quiet(
                Command::new("cp")
                    .args(["-a", from])
                    .arg(dir.join("disk-src").join(name)),
            )?;
        }
    }
    let _ = fs::remove_file(&v1);
    fs::File::create(&v1)
        .and_then(|f| f.set_len(2 * GIB))
        .map_err(|e| e.to_string())?;
    quiet(
        Command::new("mke2fs")
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-U",
                "6f1c3b1e-0d5e-4b6a-9b3e-2f4c5d6e7f80",
            ])
            .args(["-E", "hash_seed=1b4e28ba-2fa1-11d2-883f-0016d3cca427", "-d"])
            .arg(dir.join("disk-src"))
            .arg(&v1)
            .env("E2FSPROGS_FAKE_TIME", "1767225600")
            .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin"),
    )?;
    quiet(Command::new("cp").arg("--sparse=always").arg(&v1).arg(&v2))?;
    change(&v2)?;
    fs::remove_dir_all(dir.join("disk-src")).map_err(|e| e.to_string())?;
    fs::write(&marker, b"v1, v2").map_err(|e| e.to_string())?;
    Ok((v1, v2))
}

/// Overwrites the 20 regions that make v2 (deterministic bytes).
fn change(img: &Path) -> Result {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(img)
        .map_err(|e| e.to_string())?;
    let mut noise = Noise::new();
    for k in 0..20u64 {
        let data = noise.bytes(MIB as usize);
        f.write_all_at(&data, (37 + 101 * k) * MIB)
            .map_err(|e| e.to_string())?;
    }
    f.sync_all().map_err(|e| e.to_string())
}

/// Incompressible bytes from a fixed xorshift sequence: the same on every machine.
pub(crate) struct Noise(u64);

impl Noise {
    pub(crate) fn new() -> Noise {
        Noise(0x9E37_79B9_7F4A_7C15)
    }

    /// The next `len` bytes (a multiple of 8) of the sequence.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len / 8)
            .flat_map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0.to_le_bytes()
            })
            .collect()
    }
}

/// Makes `img` a copy of `from` (sparse, flushed, untimed).
fn copy_image(from: &Path, img: &Path) -> Result {
    let _ = fs::remove_file(img);
    quiet(Command::new("cp").arg("--sparse=always").arg(from).arg(img))?;
    quiet(&mut Command::new("sync"))
}

fn snap_disk(store: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("snap-disk"));
    c.arg("--store").arg(store).arg("-q").args(args);
    c
}

/// Timings of one run, seconds and MiB.
#[derive(Default, Clone)]
struct Run {
    zstd: f64,
    zstd_out: f64,
    first: Vec<(u64, f64, f64, f64)>, // (block size, wall s, RSS MiB, stored MiB)
    second: Vec<(u64, f64, f64)>,     // (block size, wall s, new stored MiB)
    borg: (f64, f64, f64),            // (first s, second s, second growth MiB)
    restic: (f64, f64, f64),
    rustic: (f64, f64, f64),
    restore: f64,
    restore_rss: f64,
    /// The same restore with --no-undo.
    restore_bare: f64,
    dd: f64,
    q_create: (f64, f64), // (qemu-img, snap-disk)
    q_apply: (f64, f64),
    /// `qemu-img snapshot -c UNDO && qemu-img check && qemu-img snapshot -a`: the safe workflow snap-disk restore follows.
    q_check_apply: f64,
    live: super::live::Live,
    saves: super::savevm::Saves,
}

const BLOCK_SIZES: [u64; 3] = [MIB, 2 * MIB, 4 * MIB];

fn one_run(base: &Path, v1: &Path, v2: &Path) -> Result<Run> {
    let t = base.join("targets");
    fs::create_dir_all(&t).map_err(|e| e.to_string())?;
    let img = t.join("vm.raw");
    let mut r = Run::default();
    // The anchor for a first snapshot: compress the whole image.
    copy_image(v1, &img)?;
    let z = t.join("vm.raw.zst");
    let _ = fs::remove_file(&z);
    r.zstd = measure(
        Command::new("zstd")
            .args(["-T0", "-3", "-q", "-f"])
            .arg(&img)
            .arg("-o")
            .arg(&z),
    )?
    .0;
    r.zstd_out = fs::metadata(&z).map(|m| m.len()).unwrap_or(0) as f64 / MIB as f64;
    fs::remove_file(&z).map_err(|e| e.to_string())?;
    for bs in BLOCK_SIZES {
        let store = t.join(format!("disk-store-{bs}"));
        discard(&store)?;
        copy_image(v1, &img)?;
        let bs_arg = bs.to_string();
        let (wall, rss) = measure(&mut snap_disk(
            &store,
            &[
                "create",
                img.to_str().unwrap_or(""),
                "first",
                "--block-size",
                &bs_arg,
            ],
        ))?;
        r.first.push((bs, wall, rss, disk_use_mib(&store)));
        let before = disk_use_mib(&store);
        copy_image(v2, &img)?;
        let (wall, _) = measure(&mut snap_disk(
            &store,
            &["create", img.to_str().unwrap_or(""), "second"],
        ))?;
        r.second.push((bs, wall, disk_use_mib(&store) - before));
        if bs == MIB {
            let (wall, rss) = measure(&mut snap_disk(&store, &["restore", "vm", "first"]))?;
            r.restore = wall;
            r.restore_rss = rss;
            check_same(&img, v1)?;
            copy_image(v2, &img)?;
            let restore = ["restore", "vm", "first", "--no-undo"];
            r.restore_bare = measure(&mut snap_disk(&store, &restore))?.0;
            check_same(&img, v1)?;
        }
    }
    // The anchor for the restore: writing the whole image, durably.
    let out = t.join("whole.raw");
    let _ = fs::remove_file(&out);
    r.dd = measure(
        Command::new("dd")
            .arg(format!("if={}", v1.display()))
            .arg(format!("of={}", out.display()))
            .args(["bs=4M", "conv=fdatasync", "status=none"]),
    )?
    .0;
    fs::remove_file(&out).map_err(|e| e.to_string())?;
    r.borg = two_backups(&t, "borg", &img, v1, v2)?;
    r.restic = two_backups(&t, "restic", &img, v1, v2)?;
    r.rustic = two_backups(&t, "rustic", &img, v1, v2)?;
    (r.q_create, r.q_apply, r.q_check_apply) = qcow2_internal(&t, v1)?;
    r.live = super::live::run(&t, v1)?;
    r.saves = super::savevm::run(&t)?;
    Ok(r)
}

/// Fails unless the two files are byte-identical (the restore is right).
fn check_same(a: &Path, b: &Path) -> Result {
    quiet(Command::new("cmp").arg("-s").arg(a).arg(b)).map_err(|_| {
        format!(
            "{} differs from {} after the restore",
            a.display(),
            b.display()
        )
    })
}

/// A borg, restic or rustic repository: first backup of v1, second of v2 (timed), growth.
fn two_backups(t: &Path, tool: &str, img: &Path, v1: &Path, v2: &Path) -> Result<(f64, f64, f64)> {
    let repo = t.join(format!("disk-{tool}"));
    discard(&repo)?;
    let backup = |n: u32| -> Command {
        if tool == "borg" {
            let mut c = Command::new(tool);
            c.arg("create")
                .arg(format!("{}::s{n}", repo.display()))
                .arg(img);
            c.env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes");
            c
        } else {
            let mut c = repo_cmd(tool, &repo, &["backup"]);
            c.arg(img);
            c
        }
    };
    if tool == "borg" {
        quiet(Command::new("borg").args(["init", "-e", "none"]).arg(&repo))?;
    } else {
        quiet(&mut repo_cmd(tool, &repo, &["init"]))?;
    }
    copy_image(v1, img)?;
    let first = measure(&mut backup(1))?.0;
    let before = disk_use_mib(&repo);
    copy_image(v2, img)?;
    let second = measure(&mut backup(2))?.0;
    Ok((first, second, disk_use_mib(&repo) - before))
}

/// (create: qemu-img, snap-disk), (restore: qemu-img, snap-disk), check-then-apply.
type QcowTimes = ((f64, f64), (f64, f64), f64);

/// Median of 5 of: bare `qemu-img snapshot -c`/`-a`, `qemu-img check` then
/// `-a`, and `snap-disk create`/`restore`.
fn qcow2_internal(t: &Path, v1: &Path) -> Result<QcowTimes> {
    let q = t.join("vm.qcow2");
    let _ = fs::remove_file(&q);
    quiet(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(v1)
            .arg(&q),
    )?;
    let store = t.join("disk-store-q");
    discard(&store)?;
    let (mut qc, mut qa, mut sc, mut sa) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut qca = Vec::new();
    // Each operation starts with nothing dirty in the page cache: a flush
    // (qemu-img's or snap-disk's) would otherwise pay for the writeback of
    // whatever the steps before left (ext4 data=ordered).
    let settle = || quiet(&mut Command::new("sync"));
    for i in 0..5 {
        let name = format!("b{i}");
        settle()?;
        qc.push(
            measure(
                Command::new("qemu-img")
                    .args(["snapshot", "-c", &name])
                    .arg(&q),
            )?
            .0,
        );
        settle()?;
        qa.push(
            measure(
                Command::new("qemu-img")
                    .args(["snapshot", "-a", &name])
                    .arg(&q),
            )?
            .0,
        );
        // The guide's safe workflow, as snap-disk restore does it: a
        // snapshot of the current state, a check, then the apply.
        let safe = format!(
            "qemu-img snapshot -c undo-{name} '{0}' && qemu-img check -q '{0}' && qemu-img snapshot -a {name} '{0}'",
            q.display()
        );
        settle()?;
        qca.push(measure(Command::new("sh").arg("-c").arg(safe))?.0);
        let name = format!("s{i}");
        settle()?;
        sc.push(
            measure(&mut snap_disk(
                &store,
                &["create", q.to_str().unwrap_or(""), &name],
            ))?
            .0,
        );
        settle()?;
        sa.push(measure(&mut snap_disk(&store, &["restore", "vm", &name]))?.0);
    }
    Ok((
        (median(&qc), median(&sc)),
        (median(&qa), median(&sa)),
        median(&qca),
    ))
}

pub fn run(args: &Args, base: &Path) -> Result {
    ensure_apt(&[
        ("restic", "restic"),
        ("borg", "borgbackup"),
        ("zstd", "zstd"),
        ("qemu-img", "qemu-utils"),
        ("qemu-io", "qemu-utils"),
        ("qemu-storage-daemon", "qemu-system-common"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("mke2fs", "e2fsprogs"),
    ])?;
    super::kit::ensure_rustic()?;
    let (v1, v2) = images(base)?;
    let mut runs = Vec::new();
    for i in 0..args.runs {
        eprintln!("xtask: disk run {}/{}", i + 1, args.runs);
        runs.push(one_run(base, &v1, &v2)?);
    }
    let md = render(&runs, &v1);
    println!("{md}");
    // Other hypervisors' disks and libvirt domains: their own page.
    super::hypervisors::run(args, base)?;
    if !args.no_write {
        super::kit::write_doc(
            "benchmarks-disk.md",
            "Benchmarks: snap-disk",
            args.runs,
            &format!(
                "; {}; {}",
                version("zstd", "--version"),
                version("qemu-img", "--version")
            ),
            METHOD,
            &md,
        )?;
    }
    Ok(())
}

const METHOD: &str = "Images as in docs/benchmarks-anchors.md: v1 = a 2 GiB ext4 image made by `mke2fs -d` of\n\
/usr/lib/x86_64-linux-gnu and /usr/lib/jvm (fixed UUID, hash seed, time); v2 = v1 with 20 regions of\n\
1 MiB overwritten at MiB 37 + 101·k (20 MiB, about 1% of the image). Warm page cache. Per run, fresh\n\
targets: the image is a copy of v1 (untimed `cp --sparse`, `sync`), first snapshot; then a copy of v2,\n\
second snapshot. snap-disk flushes its blocks (syncfs) before publishing a snapshot; zstd, borg,\n\
restic and rustic do not flush. \"stored\" is `du` of the store or repository (growth for the second).\n\
The restore is `snap-disk restore` of the first snapshot into the v2 image, in place (ends with\n\
fsync), with its undo snapshot of the v2 image first, and again with --no-undo; its anchor is\n\
writing the whole image with `dd bs=4M conv=fdatasync`. qcow2 rows are medians\n\
of 5 operations on a qcow2 copy of v1.";

fn med(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>())
}

fn render(runs: &[Run], v1: &Path) -> String {
    let size = fs::metadata(v1).map(|m| m.len()).unwrap_or(0) as f64 / MIB as f64;
    let zstd = med(runs, |r| r.zstd);
    let mut md = format!(
        "### First snapshot of v1 ({size:.0} MiB image)\n\n| tool | wall | MB/s of image | throughput vs zstd | peak RSS | stored |\n|---|---|---|---|---|---|\n| zstd -T0 -3 | {zstd:.2} s | {:.0} | 1.00x | – | {:.0} MiB |\n",
        size * 1.048_576 / zstd,
        med(runs, |r| r.zstd_out)
    );
    for (i, bs) in BLOCK_SIZES.iter().enumerate() {
        let wall = med(runs, |r| r.first[i].1);
        md.push_str(&format!(
            "| snap-disk blocks {} MiB | {wall:.2} s | {:.0} | {:.2}x | {:.0} MiB | {:.0} MiB |\n",
            bs / MIB,
            size * 1.048_576 / wall,
            zstd / wall,
            med(runs, |r| r.first[i].2),
            med(runs, |r| r.first[i].3)
        ));
    }
    for (tool, first) in [
        ("borg create", med(runs, |r| r.borg.0)),
        ("restic backup", med(runs, |r| r.restic.0)),
        ("rustic backup", med(runs, |r| r.rustic.0)),
    ] {
        md.push_str(&format!(
            "| {tool} | {first:.2} s | {:.0} | {:.2}x | – | – |\n",
            size * 1.048_576 / first,
            zstd / first,
        ));
    }
    md.push_str("\nGoal: snap-disk blocks at least 0.9x the throughput of zstd -T0 -3.\n\n");
    let borg = med(runs, |r| r.borg.1);
    let restic = med(runs, |r| r.restic.1);
    let rustic = med(runs, |r| r.rustic.1);
    md.push_str("### Second snapshot (v2: 20 MiB changed)\n\n| tool | wall | vs borg | vs restic | vs rustic | stored growth |\n|---|---|---|---|---|---|\n");
    let mut row = |tool: String, wall: f64, growth: f64| {
        md.push_str(&format!(
            "| {tool} | {wall:.2} s | {:.2}x | {:.2}x | {:.2}x | {growth:.1} MiB |\n",
            wall / borg,
            wall / restic,
            wall / rustic,
        ));
    };
    row("borg create".into(), borg, med(runs, |r| r.borg.2));
    row("restic backup".into(), restic, med(runs, |r| r.restic.2));
    row("rustic backup".into(), rustic, med(runs, |r| r.rustic.2));
    for (i, bs) in BLOCK_SIZES.iter().enumerate() {
        row(
            format!("snap-disk blocks {} MiB", bs / MIB),
            med(runs, |r| r.second[i].1),
            med(runs, |r| r.second[i].2),
        );
    }
    md.push_str("\nGoal: at most 0.5x the wall time of borg and of restic (and rustic), storing no more than they do.\n\n");
    let (restore, dd) = (med(runs, |r| r.restore), med(runs, |r| r.dd));
    let bare = med(runs, |r| r.restore_bare);
    md.push_str(&format!(
        "### In-place restore of the 1% change (1 MiB blocks)\n\n| operation | wall | vs writing the image | peak RSS |\n|---|---|---|---|\n| dd the whole image, conv=fdatasync | {dd:.2} s | 1.00x | – |\n| snap-disk restore (undo snapshot first, compare, rewrite 20 blocks, fsync) | {restore:.2} s | {:.2}x | {:.0} MiB |\n| snap-disk restore --no-undo | {bare:.2} s | {:.2}x | – |\n\nGoal: at most 0.2x.\n\n",
        restore / dd,
        med(runs, |r| r.restore_rss),
        bare / dd,
    ));
    let (qc, sc) = (med(runs, |r| r.q_create.0), med(runs, |r| r.q_create.1));
    let (qa, sa) = (med(runs, |r| r.q_apply.0), med(runs, |r| r.q_apply.1));
    let qca = med(runs, |r| r.q_check_apply);
    md.push_str(&format!(
        "### qcow2-internal\n\n| operation | qemu-img snapshot | snap-disk | ratio |\n|---|---|---|---|\n| create | {:.1} ms | {:.1} ms | {:.2}x |\n| restore | {:.1} ms | {:.1} ms | {:.2}x |\n| restore vs `qemu-img snapshot -c UNDO && qemu-img check && qemu-img snapshot -a` | {:.1} ms | {:.1} ms | {:.2}x |\n\nGoals: create at most 1.1x bare `qemu-img snapshot -c`; restore within 1.2x of the safe workflow.\n",
        qc * 1e3,
        sc * 1e3,
        sc / qc,
        qa * 1e3,
        sa * 1e3,
        sa / qa,
        qca * 1e3,
        sa * 1e3,
        sa / qca
    ));
    let live: Vec<_> = runs.iter().map(|r| r.live.clone()).collect();
    let anchors: Vec<_> = runs
        .iter()
        .map(|r| {
            [
                (r.borg.0, r.borg.1),
                (r.restic.0, r.restic.1),
                (r.rustic.0, r.rustic.1),
            ]
        })
        .collect();
    md.push('\n');
    md.push_str(&super::live::render(&live, &anchors));
    md.push('\n');
    let saves: Vec<_> = runs.iter().map(|r| r.saves.clone()).collect();
    md.push_str(&super::savevm::render(&saves));
    md
}
