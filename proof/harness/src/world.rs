//! The machines' own stores, made once per harness run with the real tools
//! (in this process): each pusher has a set of its own with an incremental
//! chain (one archive a round, each on the one before) and a disk whose
//! `blocks` snapshots share most blocks: one of eight is new each round, and
//! one flips back to what it was two rounds before, so a push reuses a block
//! that only an older snapshot (one a prune may remove) has.

use std::path::{Path, PathBuf};

use crate::sched::Rng;

/// One pusher's store and what it pushes each round.
pub struct Pusher {
    pub store: PathBuf,
    /// Per round: the archive's record, the disk snapshot's record.
    pub rounds: Vec<[PathBuf; 2]>,
}

const BLOCK: usize = 64 << 10;
const BLOCKS: usize = 8;

fn run(tool: fn(Vec<std::ffi::OsString>) -> i32, args: &[&str]) -> Result<(), String> {
    let argv: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    match tool(argv) {
        0 => Ok(()),
        n => Err(format!("{} exited {n}", args.join(" "))),
    }
}

fn noise(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Makes `pushers` stores of `rounds` rounds under `dir`. One call at a
/// time in a process: the tools run in it, and they are made to run one to
/// a process.
pub fn make(dir: &Path, pushers: usize, rounds: usize) -> Result<Vec<Pusher>, String> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The tools run in this process, with its HOME: the signing key and the
    // list of allowed signers are named by a config of the run's own.
    let config = dir.join("config.json");
    let signing = serde_json::json!({"signing": {
        "key": dir.join("signing_key"),
        "allowed_signers": allowed_signers(dir),
    }});
    std::fs::write(&config, signing.to_string()).map_err(|e| e.to_string())?;
    let config = config.display().to_string();
    let mut out = Vec::new();
    for i in 0..pushers {
        let mut rng = Rng::new(1000 + i as u64);
        let base = dir.join(format!("m{i}"));
        let (store, src, img) = (base.join("store"), base.join("src"), base.join("vm.raw"));
        std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
        let mut image = noise(&mut rng, BLOCK * BLOCKS);
        let flip = [noise(&mut rng, BLOCK), noise(&mut rng, BLOCK)];
        let mut rounds_out = Vec::new();
        for r in 0..rounds {
            std::fs::write(src.join(format!("f{r}")), noise(&mut rng, 3000))
                .map_err(|e| e.to_string())?;
            let (s, set) = (store.display().to_string(), format!("s{i}"));
            run(
                collect,
                &[
                    "snap-collect",
                    "--store",
                    &s,
                    "--name",
                    &set,
                    &src.display().to_string(),
                    "--min-free",
                    "0",
                    "-q",
                ],
            )?;
            let snap = format!("{set}/latest");
            let mut pack = vec![
                "snap-pack",
                "--config",
                &config,
                "--store",
                &s,
                "--snapshot",
                &snap,
                "--min-free",
                "0",
                "-q",
            ];
            if r > 0 {
                pack.push("--incremental");
            }
            run(snap_pack_main, &pack)?;
            // A new block each round, and block 0 flipping between two
            // contents: each snapshot from the third on reuses a block
            // that only the one two rounds before it had (a VM reverted).
            let at = (1 + r % (BLOCKS - 1)) * BLOCK;
            image[at..at + BLOCK].copy_from_slice(&noise(&mut rng, BLOCK));
            image[..BLOCK].copy_from_slice(&flip[r % 2]);
            std::fs::write(&img, &image).map_err(|e| e.to_string())?;
            let (name, disk) = (format!("r{r}"), format!("vm{i}"));
            run(
                disk_main,
                &[
                    "snap-disk",
                    "--config",
                    &config,
                    "--store",
                    &s,
                    "create",
                    &img.display().to_string(),
                    &name,
                    "--block-size",
                    "64K",
                    "--disk",
                    &disk,
                    "-q",
                ],
            )?;
            let archive = newest_archive(&store.join("archives").join(&set))?;
            let disk_rec = store.join("disks").join(&disk).join(format!("{name}.json"));
            rounds_out.push([archive, disk_rec]);
        }
        out.push(Pusher {
            store,
            rounds: rounds_out,
        });
    }
    Ok(out)
}

/// The allowed signers of the archives [`make`] made under `dir` (a reader
/// of them puts it in its `~/.config/snap/allowed_signers`).
pub fn allowed_signers(dir: &Path) -> PathBuf {
    dir.join("allowed_signers")
}

fn collect(a: Vec<std::ffi::OsString>) -> i32 {
    snap_collect::main(a)
}

fn snap_pack_main(a: Vec<std::ffi::OsString>) -> i32 {
    snap_pack::main(a)
}

fn disk_main(a: Vec<std::ffi::OsString>) -> i32 {
    snap_disk::main(a)
}

/// The record of the newest archive in a set's folder.
fn newest_archive(dir: &Path) -> Result<PathBuf, String> {
    let ids = snap_shared::archive::archive_ids(dir).map_err(|e| e.to_string())?;
    let id = ids
        .last()
        .ok_or_else(|| format!("no archive in {}", dir.display()))?;
    Ok(dir.join(format!("{id}.json")))
}
