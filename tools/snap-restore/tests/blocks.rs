//! Big files in archives: the block digests an archive's index records for
//! each file of 16 MiB or more (what the next incremental compares with),
//! in full and incremental archives.

use std::fs;
use std::path::Path;

use snap_shared::hash::Sha256Digest;
use snap_shared::index::{BLOCK, Entry, IndexReader};
use snap_testkit::{World, code, stderr};

fn run(w: &World, tool: &str, args: &[&str]) {
    let out = w.tool(tool).args(args).output().unwrap();
    assert_eq!(code(&out), 0, "{tool} {args:?}: {}", stderr(&out));
}

fn collect(w: &World) {
    run(
        w,
        "snap-collect",
        &[
            "--store",
            "store",
            "--min-free",
            "0",
            "--name",
            "s",
            "src",
            "-q",
        ],
    );
}

fn pack(w: &World, extra: &[&str]) {
    let mut args = vec![
        "--store",
        "store",
        "--min-free",
        "0",
        "-q",
        "--snapshot",
        "s/latest",
    ];
    args.extend(extra);
    run(w, "snap-pack", &args);
}

/// The entry of the file named `name` in the newest archive's index.
fn newest_entry(w: &World, name: &str) -> Entry {
    let dir = w.path("store/archives/s");
    let mut indexes: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".index.zst"))
        .collect();
    indexes.sort();
    let mut reader = IndexReader::open(Path::new(indexes.last().unwrap())).unwrap();
    while let Some(e) = reader.next_entry().unwrap() {
        if e.path.ends_with(name.as_bytes()) {
            return e;
        }
    }
    panic!("{name} is not in the newest index");
}

fn content(seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    (0..(20 << 20) + 12345)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A full archive records each 64 KiB block's digest of a 20 MiB file (and
/// none for a small one); an incremental that does not carry the file
/// records the same digests, and one that carries a new version its own.
#[test]
fn big_files_record_their_blocks() {
    let w = World::new();
    let big = content(1);
    fs::write(w.path("src/big.bin"), &big).unwrap();
    fs::write(w.path("src/small.txt"), "small\n").unwrap();
    collect(&w);
    pack(&w, &[]);
    let full = newest_entry(&w, "big.bin");
    let blocks = full.blocks.clone().expect("a 20 MiB file has blocks");
    assert_eq!(blocks.size, BLOCK);
    assert_eq!(blocks.digests.len() as u64, big.len() as u64 / BLOCK + 1);
    assert_eq!(blocks.digests[0], Sha256Digest::of(&big[..BLOCK as usize]));
    assert_eq!(
        blocks.digests.last().unwrap(),
        &Sha256Digest::of(&big[big.len() / BLOCK as usize * BLOCK as usize..])
    );
    assert!(newest_entry(&w, "small.txt").blocks.is_none());

    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(w.path("src/small.txt"), "changed\n").unwrap();
    collect(&w);
    pack(&w, &["--incremental"]);
    let carried_on = newest_entry(&w, "big.bin");
    assert_eq!(
        carried_on.tar_offset, None,
        "the unchanged file is not carried"
    );
    assert_eq!(carried_on.blocks, full.blocks);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut changed = big.clone();
    changed[5 << 20] ^= 1;
    fs::write(w.path("src/big.bin"), &changed).unwrap();
    collect(&w);
    pack(&w, &["--incremental"]);
    let new = newest_entry(&w, "big.bin").blocks.unwrap();
    let differ: Vec<usize> = (0..new.digests.len())
        .filter(|&i| new.digests[i] != blocks.digests[i])
        .collect();
    assert_eq!(differ, [(5 << 20) / BLOCK as usize]);
}
