//! Big files in archives: the block digests an archive's index records for
//! each file of 16 MiB or more (what the next incremental compares with),
//! in full and incremental archives.

use std::fs;
use std::path::Path;

use snap_shared::hash::Sha256Digest;
use snap_shared::index::{BLOCK, Entry, IndexReader};
use snap_testkit::{World, code, stderr};

fn collect(w: &World) {
    w.ok(
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
    w.ok("snap-pack", &args);
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
    snap_testkit::noise(u64::from(seed), (20 << 20) + 12345)
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

/// The newest archive record's `bytes` (the archive's size).
fn newest_bytes(w: &World) -> u64 {
    let dir = w.path("store/archives/s");
    let mut records: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    records.sort();
    let rec: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(records.last().unwrap()).unwrap()).unwrap();
    rec["bytes"].as_u64().unwrap()
}

/// A 64 MiB file changed in 3 places, then appended to: each incremental
/// carries about the changed blocks (and the tail), not the file, and the
/// chain restores it byte for byte, from the store and from a copy of the
/// archives elsewhere.
#[test]
fn changed_blocks_travel_and_restore() {
    let w = World::new();
    let mut data = snap_testkit::noise(7, 64 << 20);
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    pack(&w, &[]);
    let full = newest_bytes(&w);
    for at in [1 << 20, 20 << 20, 50 << 20] {
        data[at] ^= 0x55;
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    pack(&w, &["--incremental"]);
    let e = newest_entry(&w, "db.bin");
    assert_eq!(e.tar_offset, None);
    let runs = e.delta.clone().expect("runs of changed blocks");
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.iter().all(|r| r.len == BLOCK));
    let delta = newest_bytes(&w);
    assert!(
        delta < 1 << 20,
        "the incremental is {delta} bytes (the full one {full})"
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    data.extend(std::iter::repeat_n(7u8, 300_000));
    data[2 << 20] ^= 1;
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    pack(&w, &["--incremental"]);
    let runs = newest_entry(&w, "db.bin").delta.unwrap();
    // One changed block, then the old short last block and the new tail.
    assert_eq!(runs.len(), 2, "{runs:?}");

    let restored = |from: &[&str], to: &str| {
        let mut args = from.to_vec();
        args.extend(["restore", "s/latest", "--archive", "--to", to, "-q"]);
        w.ok("snap-restore", &args);
        let src = fs::canonicalize(w.path("src/db.bin")).unwrap();
        let back = w.path(to).join(src.strip_prefix("/").unwrap());
        fs::read(back).unwrap()
    };
    assert!(
        restored(&["--store", "store"], "r1") == data,
        "from the store"
    );
    // The archives alone, as a folder destination holds them.
    let copy = w.path("copy");
    w.ok(
        "cp",
        &[
            "-r",
            w.path("store/archives").to_str().unwrap(),
            copy.to_str().unwrap(),
        ],
    );
    assert!(
        restored(&["--from", copy.to_str().unwrap()], "r2") == data,
        "from a folder"
    );
}

/// verify reads back every archive of a chain with runs (each run checked
/// against the block digests of its index entry), and cat gives the file.
#[test]
fn verify_and_cat_follow_the_runs() {
    let w = World::new();
    let mut data = content(3);
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    pack(&w, &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    data[(7 << 20) + 3] ^= 0xff;
    data.truncate(data.len() - 70_000);
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    pack(&w, &["--incremental"]);
    assert!(newest_entry(&w, "db.bin").delta.is_some());
    w.ok(
        "snap-restore",
        &["--store", "store", "verify", "--archive", "-q"],
    );
    let src = fs::canonicalize(w.path("src/db.bin")).unwrap();
    let inside = src.strip_prefix("/").unwrap().to_str().unwrap().to_string();
    let out = w
        .tool("snap-restore")
        .args(["--store", "store", "cat", "--archive", "s/latest", &inside])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout == data, "cat gave {} bytes", out.stdout.len());
}

/// From a bucket (moto), cat and restore of a big file put together from
/// a full archive and an incremental's runs give its bytes.
#[test]
fn runs_from_a_bucket() {
    let moto = snap_testkit::Moto::start();
    moto.create_bucket("bkt");
    let w = World::new();
    let mut data = content(9);
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    pack(&w, &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    data[3 << 20] ^= 1;
    data.extend_from_slice(b"appended");
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    pack(&w, &["--incremental"]);
    let with_moto = |tool: &str, args: &[&str]| {
        let out = w.tool(tool).envs(moto.env()).args(args).output().unwrap();
        assert_eq!(code(&out), 0, "{tool} {args:?}: {}", stderr(&out));
        out.stdout
    };
    with_moto(
        "snap-push",
        &["--store", "store", "--all", "--dest", "s3://bkt/snap", "-q"],
    );
    let src = fs::canonicalize(w.path("src/db.bin")).unwrap();
    let inside = src.strip_prefix("/").unwrap().to_str().unwrap().to_string();
    let from = ["--from", "s3://bkt/snap", "-q"];
    let mut args = from.to_vec();
    args.extend(["cat", "s/latest", &inside]);
    assert!(
        with_moto("snap-restore", &args) == data,
        "cat from the bucket"
    );
    let mut args = from.to_vec();
    args.extend(["restore", "s/latest", "--to", "r", "--path", &inside]);
    with_moto("snap-restore", &args);
    assert!(
        fs::read(w.path("r").join(&inside)).unwrap() == data,
        "restore --path from the bucket"
    );
}

/// A damaged run: the restore names the big file (exit 65) and restores the
/// rest, and verify names the run.
#[test]
fn a_damaged_run_names_its_file() {
    let w = World::new();
    let mut data = content(5);
    fs::write(w.path("src/db.bin"), &data).unwrap();
    fs::write(w.path("src/notes.txt"), "v1\n").unwrap();
    collect(&w);
    pack(&w, &["--compression", "none"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let at = 9 << 20;
    data[at] ^= 0xff;
    fs::write(w.path("src/db.bin"), &data).unwrap();
    fs::write(w.path("src/notes.txt"), "v2\n").unwrap();
    collect(&w);
    pack(&w, &["--compression", "none", "--incremental"]);
    // Flip a byte inside the run (the changed block, found in the tar).
    let dir = w.path("store/archives/s");
    let mut tars: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tar"))
        .collect();
    tars.sort();
    let tar = tars.last().unwrap();
    let mut bytes = fs::read(tar).unwrap();
    let block = &data[at / BLOCK as usize * BLOCK as usize..][..BLOCK as usize];
    let pos = bytes
        .windows(block.len())
        .position(|win| win == block)
        .expect("the run is in the tar");
    bytes[pos + 100] ^= 1;
    fs::write(tar, &bytes).unwrap();
    let out = w
        .tool("snap-restore")
        .args([
            "--store",
            "store",
            "restore",
            "s/latest",
            "--archive",
            "--to",
            "r",
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(stderr(&out).contains("db.bin"), "{}", stderr(&out));
    let src = fs::canonicalize(w.path("src")).unwrap();
    let notes = w
        .path("r")
        .join(src.strip_prefix("/").unwrap())
        .join("notes.txt");
    assert_eq!(fs::read_to_string(notes).unwrap(), "v2\n");
    let out = w
        .tool("snap-restore")
        .args(["--store", "store", "verify", "--archive", "s/latest", "-q"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(stderr(&out).contains(".snap-blocks/"), "{}", stderr(&out));
}

/// The snapshot's own index has the block digests (snap-collect hashes big
/// files as it copies them, and keeps them for a file it links), so an
/// encrypted chain, whose archive indexes pack cannot read, carries runs too.
#[test]
fn encrypted_chains_carry_runs() {
    let w = World::new();
    let key = w.path("key.txt");
    let recipient = snap_testkit::age_keygen(&key);
    let mut data = content(7);
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    let snap_index = |w: &World| {
        let dir = w.path("store/sets/s");
        let mut idx: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".index.zst"))
            .collect();
        idx.sort();
        let mut r = IndexReader::open(idx.last().unwrap()).unwrap();
        let mut found = None;
        while let Some(e) = r.next_entry().unwrap() {
            if e.path.ends_with(b"db.bin") {
                found = Some(e);
            }
        }
        found.unwrap()
    };
    let first = snap_index(&w)
        .blocks
        .expect("the snapshot index has the blocks");
    assert_eq!(first.digests[0], Sha256Digest::of(&data[..BLOCK as usize]));
    pack(&w, &["--recipient", &recipient]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(w.path("src/other.txt"), "unrelated\n").unwrap();
    collect(&w);
    assert_eq!(
        snap_index(&w).blocks.unwrap(),
        first,
        "kept for the linked file"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    data[11 << 20] ^= 1;
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    pack(&w, &["--recipient", &recipient, "--incremental"]);
    let bytes = newest_bytes(&w);
    assert!(
        bytes < 1 << 20,
        "the encrypted incremental is {bytes} bytes"
    );
    let key = key.to_str().unwrap();
    w.ok(
        "snap-restore",
        &[
            "--store",
            "store",
            "--identity",
            key,
            "restore",
            "s/latest",
            "--archive",
            "--to",
            "r",
            "-q",
        ],
    );
    let src = fs::canonicalize(w.path("src/db.bin")).unwrap();
    assert!(fs::read(w.path("r").join(src.strip_prefix("/").unwrap())).unwrap() == data);
}

/// Makes archive `id` of set `s` look as archives made before block digests
/// were recorded: its index without `blocks`, its record, sums and signature
/// made again to match.
fn strip_blocks(w: &World, id: &str) {
    let dir = w.path("store/archives/s");
    let index = dir.join(format!("{id}.index.zst"));
    let text =
        String::from_utf8(zstd::decode_all(&fs::read(&index).unwrap()[..]).unwrap()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        v.as_object_mut().unwrap().remove("blocks");
        out.push_str(&format!("{v}\n"));
    }
    let packed = zstd::encode_all(out.as_bytes(), 3).unwrap();
    fs::write(&index, &packed).unwrap();
    let sha = Sha256Digest::of(&packed).to_hex();
    let json = dir.join(format!("{id}.json"));
    let mut rec: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    rec["index_sha256"] = sha.clone().into();
    fs::write(&json, format!("{rec}\n")).unwrap();
    let sums = dir.join(format!("{id}.sha256"));
    let name = format!("{id}.index.zst");
    let lines: Vec<String> = fs::read_to_string(&sums)
        .unwrap()
        .lines()
        .map(|l| match l.ends_with(&name) {
            true => format!("{sha}  {name}"),
            false => l.to_string(),
        })
        .collect();
    fs::write(&sums, lines.join("\n") + "\n").unwrap();
    snap_testkit::sign_again(&json, &w.path("home"));
}

/// A chain whose full archive was made before block digests (no `blocks`
/// in its index): the next incremental carries the big file whole, the one
/// after it by its changed blocks, and the chain restores and verifies.
#[test]
fn archives_made_before_block_digests_still_restore() {
    let w = World::new();
    let mut data = content(3);
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    pack(&w, &[]);
    let first = newest_id(&w);
    strip_blocks(&w, &first);
    assert!(newest_entry(&w, "db.bin").blocks.is_none());
    for (n, at) in [(1u8, 5usize << 20), (2, 9 << 20)] {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        data[at] ^= n;
        fs::write(w.path("src/db.bin"), &data).unwrap();
        collect(&w);
        pack(&w, &["--incremental"]);
        let e = newest_entry(&w, "db.bin");
        match n {
            1 => assert!(e.tar_offset.is_some() && e.delta.is_none(), "carried whole"),
            _ => assert!(e.tar_offset.is_none() && e.delta.is_some(), "by its blocks"),
        }
        assert!(e.blocks.is_some());
    }
    w.ok(
        "snap-restore",
        &[
            "--store",
            "store",
            "restore",
            "--archive",
            "s/latest",
            "--to",
            "r",
            "-q",
        ],
    );
    let back = fs::read(w.path(&format!("r/{}/db.bin", w.inside("src")))).unwrap();
    assert!(back == data, "restored different");
    w.ok(
        "snap-restore",
        &["--store", "store", "verify", "--archive", "s/latest", "-q"],
    );
}

/// The id of the newest archive of set `s` in the store.
fn newest_id(w: &World) -> String {
    let mut ids: Vec<String> = fs::read_dir(w.path("store/archives/s"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    ids.sort();
    ids.pop().unwrap()
}
