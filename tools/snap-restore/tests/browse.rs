//! The file browser of `snap-restore serve`: folders of a snapshot and of
//! its archive, read from their indexes, with what changed since the one
//! before; files downloaded whole and checked; paths that climb out, and
//! requests without the token, refused.

use std::fs;
use std::path::Path;
use std::process::Command;

use snap_testkit::serve::{Server, TOKEN, browser_script, collect, disk_snapshot, run_ok};

/// A tree three folders deep, snapshotted twice (a file changed, one added,
/// one removed between); returns the ids and the tree's path inside them.
fn two_snapshots(dir: &Path) -> (String, String, String) {
    let deep = dir.join("src/docs/2026/dec");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("notes.txt"), "first\n").unwrap();
    fs::write(deep.join("old.txt"), "old\n").unwrap();
    fs::write(deep.join("big.bin"), snap_testkit::noise(7, 300_000)).unwrap();
    let first = collect(dir);
    fs::write(deep.join("notes.txt"), "second, longer\n").unwrap();
    fs::remove_file(deep.join("old.txt")).unwrap();
    fs::write(deep.join("new one.txt"), "new\n").unwrap();
    let second = collect(dir);
    let inside = fs::canonicalize(dir.join("src"))
        .unwrap()
        .display()
        .to_string()
        .trim_start_matches('/')
        .to_string();
    (first, second, inside)
}

fn get(srv: &Server, path: &str) -> (u16, String) {
    let (status, _, body) = srv.ask("GET", path, None, true, "");
    (status, body)
}

/// Three folders down from the snapshot's top, each a link on the one
/// above; the deepest lists its files with their marks against the
/// snapshot before (+ new, ~ changed, − gone); sorting by size puts the
/// biggest last; a file downloads byte for byte.
#[test]
fn browse_walks_folders_and_downloads_files() {
    let t = tempfile::tempdir().unwrap();
    let (_, second, inside) = two_snapshots(t.path());
    let srv = Server::start(t.path(), &[]);
    let (status, page) = get(&srv, &format!("/browse/s/{second}?token={TOKEN}"));
    assert_eq!(status, 200, "{page}");
    let top = inside.split('/').next().unwrap();
    assert!(page.contains(&format!("{top}/")), "{page}");
    let mut url = format!("/browse/s/{second}");
    for seg in inside.split('/').chain(["docs", "2026", "dec"]) {
        url.push('/');
        url.push_str(seg);
        let (status, page) = get(&srv, &url);
        assert_eq!(status, 200, "{url}: {page}");
    }
    let (_, page) = get(&srv, &url);
    let row = |name: &str| {
        page.split("<tr")
            .find(|r| r.contains(&format!(">{name}<")))
            .unwrap_or_else(|| panic!("no row {name}: {page}"))
            .to_string()
    };
    assert!(row("notes.txt").contains(">~<"), "{}", row("notes.txt"));
    assert!(row("new one.txt").contains(">+<"), "{}", row("new one.txt"));
    assert!(row("old.txt").contains(">−<"), "{}", row("old.txt"));
    assert!(
        row("big.bin").contains("<td class=\"mark\"></td>"),
        "{}",
        row("big.bin")
    );
    assert!(page.contains("docs</a> / <a"), "breadcrumbs: {page}");
    let (_, by_size) = get(&srv, &format!("{url}?sort=size"));
    let (small, big) = (
        by_size.find("notes.txt").unwrap(),
        by_size.find("big.bin").unwrap(),
    );
    assert!(small < big, "sorted by size");
    let file = format!("/file/s/{second}/{inside}/docs/2026/dec/big.bin");
    let (status, head, body) = srv.ask_bytes("GET", &file);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-disposition: attachment; filename=\"big.bin\""),
        "{head}"
    );
    let want = fs::read(t.path().join("src/docs/2026/dec/big.bin")).unwrap();
    assert!(
        body == want,
        "the downloaded file: {} bytes of {}",
        body.len(),
        want.len()
    );
    // The folder two levels up, as a tar.zst: what the index holds under it.
    let tarball = format!("/tarball/s/{second}/{inside}/docs/2026");
    let (status, head, body) = srv.ask_bytes("GET", &tarball);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("filename=\"2026.tar.zst\""), "{head}");
    assert_eq!(
        tar_list(t.path(), &body),
        [
            "2026/",
            "2026/dec/",
            "2026/dec/big.bin",
            "2026/dec/new one.txt",
            "2026/dec/notes.txt"
        ]
    );
    let spaced = format!("/file/s/{second}/{inside}/docs/2026/dec/new%20one.txt");
    let (status, _, body) = srv.ask_bytes("GET", &spaced);
    assert_eq!((status, body.as_slice()), (200, &b"new\n"[..]));
}

/// The archive of a snapshot browses and downloads the same way, from its
/// index and only the frames of the file.
#[test]
fn an_archive_browses_like_its_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let (_, second, inside) = two_snapshots(t.path());
    let snapshot = format!("s/{second}");
    // Its signing key is made, and allowed, where the server looks.
    run_ok(t.path(), "snap-pack", &["-q", "--snapshot", &snapshot]);
    let srv = Server::start(t.path(), &[]);
    let url = format!("/browse/s/{second}/{inside}/docs/2026/dec?archive=1");
    let (status, page) = get(&srv, &url);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("archive s/"), "{page}");
    let tarball = format!("/tarball/s/{second}/{inside}/docs?archive=1");
    let (status, head, body) = srv.ask_bytes("GET", &tarball);
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        tar_list(t.path(), &body).len(),
        6,
        "docs/, 2026/, dec/ and its three files"
    );
    let file = format!("/file/s/{second}/{inside}/docs/2026/dec/notes.txt?archive=1");
    let (status, _, body) = srv.ask_bytes("GET", &file);
    assert_eq!((status, body.as_slice()), (200, &b"second, longer\n"[..]));
}

/// `..` or `.` in a browse or file path is refused (400), plain or
/// percent-encoded; a folder or file that is not there is 404; no token,
/// no page.
#[test]
fn browse_refuses_paths_that_climb_out() {
    let t = tempfile::tempdir().unwrap();
    let (_, second, inside) = two_snapshots(t.path());
    let srv = Server::start(t.path(), &[]);
    for path in [
        format!("/browse/s/{second}/{inside}/../../etc"),
        format!("/browse/s/{second}/%2e%2e/etc"),
        format!("/file/s/{second}/{inside}/./docs/2026/dec/notes.txt"),
        format!("/file/s/{second}/..%2f..%2fetc%2fpasswd"),
    ] {
        let (status, body) = get(&srv, &path);
        assert_eq!(status, 400, "{path}: {body}");
    }
    let (status, _) = get(&srv, &format!("/browse/s/{second}/no/such/folder"));
    assert_eq!(status, 404);
    let (status, _) = get(&srv, &format!("/file/s/{second}/{inside}/nothing.txt"));
    assert_eq!(status, 404);
    let (status, _, _) = srv.ask("GET", &format!("/browse/s/{second}"), None, false, "");
    assert_eq!(status, 403);
    let (status, _, _) = srv.ask(
        "GET",
        &format!("/file/s/{second}/{inside}/docs/2026/dec/notes.txt"),
        None,
        false,
        "",
    );
    assert_eq!(status, 403);
}

/// A file whose stored copy no longer matches its sha256 never downloads
/// whole: the last bytes are held back until the check, which fails.
#[test]
fn a_damaged_file_never_downloads_whole() {
    let t = tempfile::tempdir().unwrap();
    let (_, second, inside) = two_snapshots(t.path());
    let stored: Vec<_> = walk(&t.path().join("store"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "big.bin"))
        .collect();
    assert!(!stored.is_empty(), "big.bin in the store");
    // Each snapshot's copy (a file written in the second before a collect
    // is copied again rather than linked).
    // (Two names of one inode would flip the byte back: the damage is made once.)
    let mut bytes = fs::read(t.path().join("src/docs/2026/dec/big.bin")).unwrap();
    bytes[150_000] ^= 0xff;
    for copy in &stored {
        fs::write(copy, &bytes).unwrap();
    }
    let srv = Server::start(t.path(), &[]);
    let file = format!("/file/s/{second}/{inside}/docs/2026/dec/big.bin");
    let (_, head, body) = srv.ask_bytes("GET", &file);
    assert!(
        body.len() < bytes.len(),
        "{head}: {} bytes of {}",
        body.len(),
        bytes.len()
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// GNU tar's listing (the oracle) of tar.zst bytes, sorted.
fn tar_list(dir: &Path, tarball: &[u8]) -> Vec<String> {
    let file = dir.join("got.tar.zst");
    fs::write(&file, tarball).unwrap();
    tar_names(&file)
}

/// A destination the config names browses like the store (its archives,
/// read from their indexes; files by ranged reads, checked); a name the
/// config does not hold, or a path, is refused.
#[test]
fn a_configured_destination_browses_and_others_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (_, second, inside) = two_snapshots(t.path());
    far_destination(t.path());
    pack_and_push(t.path(), &second, "far");
    // Only the destination holds the archive now.
    fs::remove_dir_all(t.path().join("store/archives")).ok();
    let srv = Server::start(t.path(), &["-c", "config.json"]);
    let url = format!("/browse/s/{second}/{inside}/docs/2026/dec?from=far");
    let (status, page) = get(&srv, &url);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("at far"), "{page}");
    assert!(
        page.contains("from=far"),
        "links keep the destination: {page}"
    );
    let file = format!("/file/s/{second}/{inside}/docs/2026/dec/notes.txt?from=far");
    let (status, _, body) = srv.ask_bytes("GET", &file);
    assert_eq!((status, body.as_slice()), (200, &b"second, longer\n"[..]));
    // The destination's own view: what it holds beside the store, each
    // archive a link into the browser there.
    let (status, page) = get(&srv, "/dest/far");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("/browse/s/{second}?from=far")),
        "{page}"
    );
    assert!(page.contains("1 archives"), "{page}");
    let (status, _) = get(&srv, "/dest/elsewhere");
    assert_eq!(status, 400);
    let (status, _, _) = srv.ask("GET", "/dest/far", None, false, "");
    assert_eq!(status, 403, "no token, no page");
    for from in ["elsewhere", "/tmp", "s3%3A%2F%2Fbkt%2Fx"] {
        let (status, body) = get(&srv, &format!("/browse/s/{second}?from={from}"));
        assert_eq!(status, 400, "{from}: {body}");
    }
}

/// The browser is read-only unless the server allows changes: only then
/// does a folder offer its restore, whose form comes with the folder filled
/// in; a foreign Host header is refused on its routes as on every other.
#[test]
fn restore_this_folder_needs_allow_changes() {
    let t = tempfile::tempdir().unwrap();
    let (_, second, inside) = two_snapshots(t.path());
    let url = format!("/browse/s/{second}/{inside}/docs");
    {
        let srv = Server::start(t.path(), &[]);
        let (status, page) = get(&srv, &url);
        assert_eq!(status, 200, "{page}");
        assert!(!page.contains("restore this folder"), "{page}");
        for route in [url.clone(), format!("/tarball/s/{second}/{inside}/docs")] {
            let (status, _, _) = srv.ask("GET", &route, Some("evil.example:80"), true, "");
            assert_eq!(status, 403, "{route}");
        }
    }
    let srv = Server::start(t.path(), &["--allow-changes"]);
    let (_, page) = get(&srv, &url);
    let docs = format!("{inside}/docs");
    let link = format!(
        "/restore?name={}&amp;path={}",
        url::form_urlencoded::byte_serialize(format!("s/{second}").as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(docs.as_bytes()).collect::<String>()
    );
    assert!(page.contains(&link), "missing {link}: {page}");
    let form = link.replace("&amp;", "&");
    let (status, page) = get(&srv, &form);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!(">{docs}</textarea>")), "{page}");
}

/// A destination's pictures, offline and live: its bytes over time stacked
/// per set add up to the archives' objects there, and its cost a month,
/// now and after its retention policy (`last: 1` keeps the newest full
/// archive), comes from those bytes and its `price_per_gib_month`.
#[test]
fn a_destination_plots_its_growth_and_cost() {
    let t = tempfile::tempdir().unwrap();
    let (first, second, _) = two_snapshots(t.path());
    fs::create_dir_all(t.path().join("far")).unwrap();
    let config = format!(
        r#"{{"destinations": [{{"name": "far", "path": "{}", "min_free": "0", "price_per_gib_month": 1024}}],
            "retention": {{"far": {{"last": 1}}}}}}"#,
        t.path().join("far").display()
    );
    fs::write(t.path().join("config.json"), config).unwrap();
    for id in [&first, &second] {
        pack_and_push(t.path(), id, "far");
    }
    // What the folder holds of each archive: every object named by its id.
    let bytes_of = |id: &str| -> u64 {
        fs::read_dir(t.path().join("far/s"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{id}."))
            })
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let (stored, kept) = (bytes_of(&first) + bytes_of(&second), bytes_of(&second));
    assert!(kept < stored && kept > 0);
    let cost = format!(
        "class=\"dest-cost\" data-dest=\"far\" data-stored=\"{stored}\" data-kept=\"{kept}\" data-price=\"1024\""
    );
    // 1024 a GiB-month is 1 a MiB-month.
    let money = format!("now: {:.2} a month", stored as f64 / (1 << 20) as f64);
    let growth = format!("data-total=\"{stored}\" data-dest=\"far\"");
    run_ok(
        t.path(),
        "snap-restore",
        &["-c", "config.json", "timeline", "--html", "t.html"],
    );
    let offline = fs::read_to_string(t.path().join("t.html")).unwrap();
    let srv = Server::start(t.path(), &["-c", "config.json"]);
    let (status, live) = get(&srv, "/");
    assert_eq!(status, 200, "{live}");
    for page in [&offline, &live] {
        assert!(page.contains(&cost), "missing {cost}: {page}");
        assert!(page.contains(&money), "missing {money}");
        assert!(page.contains("class=\"plot dest-growth\""), "{page}");
        assert!(page.contains(&growth), "missing {growth}");
    }
}

/// A destination that never answers shows as still being listed, beside
/// one that answers, and holds neither the page nor its own view more than
/// a few seconds.
#[test]
fn a_silent_destination_does_not_hold_the_page() {
    let t = tempfile::tempdir().unwrap();
    let (_, second, _) = two_snapshots(t.path());
    // Accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            held.push(s);
        }
    });
    fs::create_dir_all(t.path().join("far")).unwrap();
    let config = format!(
        r#"{{"destinations": [
            {{"name": "far", "path": "{}", "min_free": "0"}},
            {{"name": "silent", "url": "s3://bucket/p", "options": {{"endpoint": "http://127.0.0.1:{port}",
              "allow_http": "true", "region": "x", "access_key_id": "a", "secret_access_key": "b"}}}}]}}"#,
        t.path().join("far").display()
    );
    fs::write(t.path().join("config.json"), config).unwrap();
    pack_and_push(t.path(), &second, "far");
    let srv = Server::start(t.path(), &["-c", "config.json"]);
    let started = std::time::Instant::now();
    let (status, page) = get(&srv, "/");
    assert_eq!(status, 200, "{page}");
    assert!(
        started.elapsed().as_secs() < 10,
        "the page waited {:?}",
        started.elapsed()
    );
    let silent_box = page.split("destination silent").nth(1).expect(&page);
    assert!(silent_box.contains("listing…"), "{silent_box}");
    let far_box = page.split("destination far").nth(1).expect(&page);
    assert!(
        far_box
            .split("destination ")
            .next()
            .unwrap()
            .contains("1 archives"),
        "{far_box}"
    );
    let started = std::time::Instant::now();
    let (status, view) = get(&srv, "/dest/silent");
    assert_eq!(status, 200, "{view}");
    assert!(view.contains("still being listed"), "{view}");
    assert!(started.elapsed().as_secs() < 10);
}

/// From a bucket (moto, behind a proxy that counts the bytes it answers):
/// the first folder fetches the listing and the archive's index; walking
/// further and back fetches nothing more; a file downloads with only the
/// frames that hold it (a few MiB of a 20 MiB archive), its bytes the
/// file's; a folder downloads as a tar.zst listing what the folder holds.
#[test]
fn a_bucket_browses_reading_its_index_once_and_a_files_frames() {
    let moto = snap_testkit::Moto::start();
    moto.create_bucket("bkt");
    let proxy = snap_testkit::FaultProxy::start(moto.port, Vec::new());
    let sent = || proxy.sent.load(std::sync::atomic::Ordering::SeqCst);
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("src/big")).unwrap();
    fs::write(
        t.path().join("src/big/blob.bin"),
        snap_testkit::noise(3, 20 << 20),
    )
    .unwrap();
    let (_, second, inside) = two_snapshots(t.path());
    let config = format!(
        r#"{{"destinations": [{{"name": "bkt", "url": "s3://bkt/snap", "options": {{
            "endpoint": "http://127.0.0.1:{}", "allow_http": "true", "region": "us-east-1",
            "access_key_id": "test", "secret_access_key": "test"}}}}]}}"#,
        proxy.port
    );
    fs::write(t.path().join("config.json"), config).unwrap();
    pack_and_push(t.path(), &second, "bkt");
    let archives = t.path().join("store/archives/s");
    let size = |suffix: &str| {
        fs::metadata(archives.join(format!("{second}{suffix}")))
            .unwrap()
            .len()
    };
    let (data, index) = (size(".tar.zst"), size(".index.zst"));
    assert!(data > 20 << 20, "{data}");
    fs::remove_dir_all(t.path().join("store/archives")).unwrap();
    let srv = Server::start(t.path(), &["-c", "config.json"]);
    let before = sent();
    let top = format!("/browse/s/{second}?from=bkt");
    assert_eq!(get(&srv, &top).0, 200);
    let first_page = sent() - before;
    assert!(
        first_page >= index,
        "the index came: {first_page} of {index}"
    );
    assert!(
        first_page < index + (64 << 10),
        "{first_page}: the listing and the index only"
    );
    let before = sent();
    let mut at = format!("/browse/s/{second}/{inside}");
    for level in ["docs", "2026", "dec"] {
        at = format!("{at}/{level}");
        let (status, page) = get(&srv, &format!("{at}?from=bkt"));
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("at bkt"), "{page}");
    }
    assert_eq!(get(&srv, &top).0, 200);
    assert_eq!(sent() - before, 0, "walking on and back reads nothing more");
    let before = sent();
    let file = format!("/file/s/{second}/{inside}/docs/2026/dec/notes.txt?from=bkt");
    let (status, _, body) = srv.ask_bytes("GET", &file);
    assert_eq!((status, body.as_slice()), (200, &b"second, longer\n"[..]));
    let file_bytes = sent() - before;
    assert!(
        file_bytes < 5 << 20,
        "{file_bytes} bytes of {data} for one small file"
    );
    let tarball = format!("/tarball/s/{second}/{inside}/docs?from=bkt");
    let before = sent();
    let (status, _, tar) = srv.ask_bytes("GET", &tarball);
    assert_eq!(status, 200);
    let folder_bytes = sent() - before;
    assert!(
        folder_bytes < 9 << 20,
        "{folder_bytes} bytes of {data} for a small folder"
    );
    fs::write(t.path().join("docs.tar.zst"), &tar).unwrap();
    let listed = bare(tar_names(&t.path().join("docs.tar.zst")));
    let mut want = vec!["docs".to_string()];
    for e in tree_under(&t.path().join("src/docs")) {
        want.push(format!("docs/{e}"));
    }
    want.sort();
    assert_eq!(listed, want);
}

/// `config.json` naming one destination, the folder `far`, made empty.
fn far_destination(dir: &Path) {
    fs::create_dir_all(dir.join("far")).unwrap();
    let config = format!(
        r#"{{"destinations": [{{"name": "far", "path": "{}", "min_free": "0"}}]}}"#,
        dir.join("far").display()
    );
    fs::write(dir.join("config.json"), config).unwrap();
}

/// Packs snapshot `s/ID` and pushes every archive to the configured `dest`.
fn pack_and_push(dir: &Path, id: &str, dest: &str) {
    run_ok(dir, "snap-pack", &["-q", "--snapshot", &format!("s/{id}")]);
    run_ok(
        dir,
        "snap-push",
        &["-c", "config.json", "--all", "--dest", dest, "-q"],
    );
}

/// What GNU tar lists of a tar.zst, sorted (folders end in `/`).
fn tar_names(tar: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .args(["--zstd", "-tf"])
        .arg(tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// Names without the `/` that ends a folder's, sorted.
fn bare(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .map(|n| n.trim_end_matches('/').to_string())
        .collect();
    out.sort();
    out
}

/// Every path under `dir`, relative, folders included.
fn tree_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(
                tree_under(&e.path())
                    .into_iter()
                    .map(|p| format!("{name}/{p}")),
            );
        }
        out.push(name);
    }
    out
}

/// In Chromium: the pictures draw one bar per snapshot; three folders down
/// (the first by keyboard alone) a file downloads with the snapshot's bytes
/// (its sha256 the index's) and the folder as a tar.zst `tar --zstd -t`
/// lists as the index does; the folder restores (dry run, confirm) with
/// what it held and nothing else; the page fits 375 px; a disk snapshot
/// restores in place from its card (the image's sha256 the snapshot's).
/// Screenshots go to $SNAP_SCREENSHOTS (docs/screenshots) when it is set.
#[test]
fn the_browser_and_a_disk_restore_in_chromium() {
    use sha2::{Digest, Sha256};
    let t = tempfile::tempdir().unwrap();
    let (_, second, inside) = two_snapshots(t.path());
    let img = disk_snapshot(t.path(), 21, 4 << 20);
    let at_snapshot = fs::read(&img).unwrap();
    let mut changed = at_snapshot.clone();
    changed[1 << 20..(1 << 20) + 4096].fill(0x77);
    fs::write(&img, &changed).unwrap();
    let srv = Server::start(t.path(), &["--allow-changes"]);
    let shots = match std::env::var_os("SNAP_SCREENSHOTS") {
        Some(d) => std::path::PathBuf::from(d),
        None => t.path().join("shots"),
    };
    let downloads = t.path().join("downloads");
    let to = t.path().join("restored");
    fs::create_dir_all(&shots).unwrap();
    fs::create_dir_all(&downloads).unwrap();
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/browse.cjs");
    let url = format!("http://127.0.0.1:{}/?token={TOKEN}", srv.port);
    let args = [
        url.as_ref(),
        shots.as_os_str(),
        second.as_ref(),
        inside.as_ref(),
    ]
    .into_iter()
    .chain([downloads.as_os_str(), to.as_os_str(), "2".as_ref()])
    .map(std::ffi::OsString::from)
    .collect::<Vec<_>>();
    let out = browser_script(&flow, &args);
    assert!(
        out.status.success(),
        "the browser flow failed (screenshots in {}):\n{}{}",
        shots.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The index's word on the folder and the file.
    let dec = format!("{inside}/docs/2026/dec");
    let index = t.path().join(format!("store/sets/s/{second}.index.zst"));
    let mut r = snap_shared::index::IndexReader::open(&index).unwrap();
    let (mut listed, mut notes) = (Vec::new(), None);
    while let Some(e) = r.next_entry().unwrap() {
        let p = String::from_utf8_lossy(&e.path).into_owned();
        if let Some(rest) = p.strip_prefix(&format!("{dec}/")) {
            listed.push(format!("dec/{rest}"));
            if rest == "notes.txt" {
                notes = e.sha256;
            }
        }
    }
    listed.push("dec".to_string());
    listed.sort();
    let got = fs::read(downloads.join("notes.txt")).unwrap();
    let digest: [u8; 32] = Sha256::digest(&got).into();
    assert_eq!(Some(digest), notes.map(|d| d.0), "the file is the index's");
    assert_eq!(bare(tar_names(&downloads.join("dec.tar.zst"))), listed);
    // Restored: the folder, nothing else.
    let mut back: Vec<String> = tree_under(&to.join(&inside))
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    back.sort();
    let mut want: Vec<String> = ["docs", "docs/2026", "docs/2026/dec"]
        .iter()
        .map(|s| s.to_string())
        .chain(
            listed
                .iter()
                .filter(|n| *n != "dec")
                .map(|n| format!("docs/2026/{n}")),
        )
        .collect();
    want.sort();
    assert_eq!(back, want);
    assert_eq!(
        fs::read(&img).unwrap(),
        at_snapshot,
        "the disk is the snapshot again"
    );
    for shot in [
        "pictures",
        "browse",
        "browse-restore-preview",
        "phone",
        "phone-browse",
        "disk-preview",
        "disk-done",
    ] {
        assert!(shots.join(format!("{shot}.png")).is_file(), "no {shot}.png");
    }
}

/// Every route the browser, the destinations' view and the disk page added
/// keeps the page's guards: without the token, or with a foreign Host,
/// 403; the tarball refuses `..` as the browser does; the disk form and its
/// POSTs are 403 on a read-only server even with the CSRF token, and every
/// POST without the token is 403 where changes are allowed. Nothing changed.
#[test]
fn every_new_route_keeps_the_guards() {
    let t = tempfile::tempdir().unwrap();
    let (_, second, inside) = two_snapshots(t.path());
    let img = disk_snapshot(t.path(), 31, 1 << 20);
    far_destination(t.path());
    let gets = [
        format!("/browse/s/{second}"),
        format!("/browse/s/{second}/{inside}/docs"),
        format!("/file/s/{second}/{inside}/docs/2026/dec/notes.txt"),
        format!("/tarball/s/{second}"),
        format!("/tarball/s/{second}/{inside}/docs"),
        "/dest/far".to_string(),
        "/history?set=s&path=a".to_string(),
        "/search?q=notes".to_string(),
        "/disk?name=disks/vm/s".to_string(),
    ];
    let posts = ["/disk/preview", "/disk/start", "/disk/stop"];
    let image = fs::read(&img).unwrap();
    for extra in [
        &["-c", "config.json"][..],
        &["-c", "config.json", "--allow-changes"],
    ] {
        let writable = extra.len() == 3;
        let srv = Server::start(t.path(), extra);
        let token = {
            let page = srv.page();
            let at = page.find("name=\"csrf\" content=\"").unwrap() + 21;
            page[at..at + 32].to_string()
        };
        let foreign = format!("attacker.example:{}", srv.port);
        for path in &gets {
            let (status, _, _) = srv.ask("GET", path, None, false, "");
            assert_eq!(status, 403, "{path} without the token");
            let (status, _, _) = srv.ask("GET", path, Some(&foreign), true, "");
            assert_eq!(status, 403, "{path} with a foreign Host");
            let (status, _, body) = srv.ask_bytes("GET", path);
            let want = match (path.starts_with("/disk"), writable) {
                (true, false) => 403,
                _ => 200,
            };
            let body = String::from_utf8_lossy(&body);
            assert_eq!(status, want, "{path} (writable: {writable}): {body}");
        }
        let (status, _) = get(&srv, &format!("/tarball/s/{second}/{inside}/../../etc"));
        assert_eq!(status, 400, "the tarball climbs out");
        for path in posts {
            let form = format!("csrf={token}&name=disks%2Fvm%2Fs&mode=inplace&id=0");
            let (status, _, body) = srv.ask("POST", path, None, true, &form);
            if !writable {
                assert_eq!(status, 403, "{path} read-only: {body}");
                assert!(body.contains("read-only"), "{body}");
            }
            let forged =
                "csrf=00000000000000000000000000000000&name=disks%2Fvm%2Fs&mode=inplace&id=0";
            let (status, _, _) = srv.ask("POST", path, None, true, forged);
            assert_eq!(status, 403, "{path} with a forged CSRF token");
            let (status, _, _) = srv.ask("POST", path, None, false, &form);
            assert_eq!(status, 403, "{path} without the token");
            let (status, _, _) = srv.ask("POST", path, Some(&foreign), true, &form);
            assert_eq!(status, 403, "{path} with a foreign Host");
        }
    }
    // The one writable POST that passed every guard was a dry run (preview),
    // then a start whose restore found nothing to change: the bytes stay.
    assert_eq!(fs::read(&img).unwrap(), image);
}

/// From a folder destination only (the store's archives gone): its view
/// names each archive's host and the disk snapshots it holds; a folder
/// downloads as a tar.zst listing what the store's folder held; and "restore
/// this folder" restores it from there (dry run, confirm): the files land,
/// nothing else.
#[test]
fn a_folder_restores_from_a_destination() {
    let t = tempfile::tempdir().unwrap();
    let (_, second, inside) = two_snapshots(t.path());
    disk_snapshot(t.path(), 41, 1 << 20);
    far_destination(t.path());
    pack_and_push(t.path(), &second, "far");
    fs::remove_dir_all(t.path().join("store/archives")).ok();
    let srv = Server::start(t.path(), &["-c", "config.json", "--allow-changes"]);
    let (status, view) = get(&srv, "/dest/far");
    assert_eq!(status, 200, "{view}");
    let host = snap_shared::hostname();
    assert!(
        view.contains(&format!("<td>{host}</td>")),
        "the host: {view}"
    );
    assert!(view.contains("disks/vm/s"), "the disk snapshot: {view}");
    assert!(
        view.contains(&format!("/restore?name=s%2F{second}&amp;from=far")),
        "{view}"
    );
    let (status, _, tar) = srv.ask_bytes(
        "GET",
        &format!("/tarball/s/{second}/{inside}/docs?from=far"),
    );
    assert_eq!(status, 200);
    fs::write(t.path().join("docs.tar.zst"), &tar).unwrap();
    let mut want = vec!["docs".to_string()];
    want.extend(
        tree_under(&t.path().join("src/docs"))
            .into_iter()
            .map(|p| format!("docs/{p}")),
    );
    want.sort();
    assert_eq!(bare(tar_names(&t.path().join("docs.tar.zst"))), want);
    let (_, folder) = get(
        &srv,
        &format!("/browse/s/{second}/{inside}/docs/2026?from=far"),
    );
    assert!(folder.contains("restore this folder"), "{folder}");
    let token = {
        let page = srv.page();
        let at = page.find("name=\"csrf\" content=\"").unwrap() + 21;
        page[at..at + 32].to_string()
    };
    let to = t.path().join("from-far");
    let dir = format!("{inside}/docs/2026");
    let form = format!(
        "csrf={token}&name=s%2F{second}&from=far&to={}&paths={}",
        to.display().to_string().replace('/', "%2F"),
        dir.replace('/', "%2F")
    );
    let (status, _, dry) = srv.ask("POST", "/restore/preview", None, true, &form);
    assert_eq!(status, 200, "{dry}");
    assert!(dry.contains("from far"), "{dry}");
    assert!(dry.contains("to create"), "{dry}");
    let (status, head, _) = srv.ask("POST", "/restore/start", None, true, &form);
    assert_eq!(status, 303, "{head}");
    let (_, _, events) = srv.ask("GET", "/restore/events?id=0", None, true, "");
    assert!(events.contains("restored: "), "{events}");
    let mut back = tree_under(&to.join(&inside));
    back.sort();
    let mut want: Vec<String> = ["docs".to_string(), "docs/2026".to_string()]
        .into_iter()
        .chain(
            tree_under(&t.path().join("src/docs/2026"))
                .into_iter()
                .map(|p| format!("docs/2026/{p}")),
        )
        .collect();
    want.sort();
    assert_eq!(back, want);
    assert_eq!(
        fs::read(to.join(&inside).join("docs/2026/dec/notes.txt")).unwrap(),
        b"second, longer\n"
    );
}
