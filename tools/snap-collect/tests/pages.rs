//! The block digests of big files in the store's snapshot indexes, kept as
//! content-addressed pages shared between snapshots (`sets/<set>/.blocks/`).

use std::fs;

use snap_shared::index::{BLOCK, IndexReader};
use snap_testkit::World;

fn collect(w: &World) {
    // Files written in the second before a run are read again: wait it out.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let args = [
        "--store",
        "store",
        "--min-free",
        "0",
        "--name",
        "s",
        "src",
        "-q",
    ];
    w.ok("snap-collect", &args);
}

fn pages(w: &World) -> usize {
    fs::read_dir(w.path("store/sets/s/.blocks"))
        .unwrap()
        .count()
}

/// The newest snapshot's entry of big.bin: its block digests as read back.
fn newest_blocks(w: &World) -> Option<Vec<snap_shared::hash::Sha256Digest>> {
    let mut indexes: Vec<_> = fs::read_dir(w.path("store/sets/s"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".index.zst"))
        .collect();
    indexes.sort();
    let mut r = IndexReader::open(indexes.last().unwrap()).unwrap();
    while let Some(e) = r.next_entry().unwrap() {
        if e.path.ends_with(b"big.bin") {
            return e.blocks.map(|b| b.digests);
        }
    }
    panic!("big.bin is not in the newest index");
}

/// An unchanged big file costs a new snapshot no page, a change in one
/// place one page; the digests read back are the file's; a prune removes
/// the pages only removed snapshots named; a damaged page leaves the file
/// without digests, and the next collect and pack still work.
#[test]
fn digests_are_pages_shared_between_snapshots() {
    let w = World::new();
    let mut data = snap_testkit::noise(9, 20 << 20);
    w.write("src/big.bin", &data);
    collect(&w);
    assert_eq!(pages(&w), 3, "320 digests in pages of 128");
    let index = fs::metadata(
        fs::read_dir(w.path("store/sets/s"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".index.zst"))
            .unwrap(),
    )
    .unwrap()
    .len();
    assert!(
        index < 2048,
        "the index is {index} bytes: digests are not inline"
    );
    collect(&w);
    assert_eq!(pages(&w), 3, "unchanged: no new page");

    data[1 << 20] ^= 1;
    w.write("src/big.bin", &data);
    collect(&w);
    assert_eq!(pages(&w), 4, "one block changed: one new page");
    let want = snap_shared::index::Blocks::of(&data, BLOCK).digests;
    assert_eq!(newest_blocks(&w).unwrap(), want);

    w.ok(
        "snap-prune",
        &["--store", "store", "--keep-last", "1", "-q"],
    );
    assert_eq!(pages(&w), 3, "the old first page went with its snapshots");

    let dir = w.path("store/sets/s/.blocks");
    let page = fs::read_dir(&dir).unwrap().flatten().next().unwrap().path();
    let mut bytes = fs::read(&page).unwrap();
    bytes[0] ^= 1;
    fs::write(&page, &bytes).unwrap();
    data[9 << 20] ^= 1;
    w.write("src/big.bin", &data);
    collect(&w);
    w.ok(
        "snap-pack",
        &["--store", "store", "--min-free", "0", "--latest", "-q"],
    );
    w.ok("snap-restore", &["--store", "store", "verify", "-q"]);
    assert_eq!(
        newest_blocks(&w).unwrap(),
        snap_shared::index::Blocks::of(&data, BLOCK).digests
    );
}
