//! `snap-restore serve`: the live timeline over HTTP on a free loopback
//! port, spoken to with raw requests. Pins what keeps it safe (token, Host,
//! CSRF, read-only by default, loopback unless asked) and that the pages
//! and the edit form work.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use snap_testkit::free_port;
use snap_testkit::serve::{Server, TOKEN, bin, collect, collect_as, run_ok};

/// A store with two snapshots of a small tree; returns their ids.
fn store(dir: &Path) -> (String, String) {
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(dir.join("src/a.txt"), "a\n").unwrap();
    let first = collect(dir);
    fs::write(dir.join("src/b.txt"), "b\n").unwrap();
    (first, collect(dir))
}

fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" content=\"").unwrap() + 21;
    page[at..at + 32].to_string()
}

fn record(dir: &Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join(format!("store/sets/s/{id}.json"))).unwrap()).unwrap()
}

/// The token in the URL opens the page (and sets a cookie that opens the
/// next ones) with a strict CSP; no token, a wrong one or a foreign Host
/// header is refused.
#[test]
fn token_and_host_guard_every_page() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    let srv = Server::start(t.path(), &[]);
    let (status, head, body) = srv.ask("GET", &format!("/?token={TOKEN}"), None, false, "");
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_lowercase().contains("set-cookie: snap_token="),
        "{head}"
    );
    assert!(head.contains("default-src 'none'"), "{head}");
    assert!(body.contains(&format!("s/{first}")) && body.contains(&format!("s/{second}")));
    assert!(
        srv.page().contains(&format!("s/{second}")),
        "the cookie alone opens the page"
    );
    for (path, host, cookie) in [
        ("/", None, false),
        ("/?token=ffffffffffffffffffffffffffffffff", None, false),
        ("/", Some("evil.example:80".to_string()), true),
        ("/", Some(format!("attacker.example:{}", srv.port)), true),
    ] {
        let (status, _, _) = srv.ask("GET", path, host.as_deref(), cookie, "");
        assert_eq!(status, 403, "{path} {host:?} {cookie}");
    }
}

/// The diff page lists what changed between two snapshots.
#[test]
fn diff_of_two_snapshots() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    let srv = Server::start(t.path(), &[]);
    assert!(
        srv.page()
            .contains(&format!("/diff?a=s/{first}&amp;b=s/{second}"))
    );
    let (status, _, body) = srv.ask(
        "GET",
        &format!("/diff?a=s/{first}&b=s/{second}"),
        None,
        true,
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<code>+</code> b.txt"), "{body}");
    assert!(!body.contains("a.txt"), "{body}");
    // A changed text file: which attributes changed, and the lines.
    fs::write(t.path().join("src/a.txt"), "a\nchanged\n").unwrap();
    fs::set_permissions(
        t.path().join("src/a.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let third = collect(t.path());
    let (_, _, body) = srv.ask(
        "GET",
        &format!("/diff?a=s/{second}&b=s/{third}"),
        None,
        true,
        "",
    );
    assert!(body.contains("<code>M</code> a.txt"), "{body}");
    assert!(body.contains("size 2 B → 10 B"), "{body}");
    assert!(body.contains("mode 644 → 600"), "{body}");
    let at = body.find("href=\"/text?").expect("a text diff link") + 6;
    let link = body[at..].split('"').next().unwrap().replace("&amp;", "&");
    let (status, _, text) = srv.ask("GET", &link, None, true, "");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\n+changed\n"), "{text}");
    assert!(text.contains(" a\n"), "{text}");
}

/// A file's history across the set: where it changed, where it is absent;
/// "changed only" leaves out the snapshots where it stayed the same.
#[test]
fn history_of_one_path() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    let srv = Server::start(t.path(), &[]);
    let src = t.path().join("src").canonicalize().unwrap();
    let rel = src.display().to_string();
    let rel = rel.trim_start_matches('/');
    let (status, _, page) = srv.ask(
        "GET",
        &format!("/history?set=s&path={rel}/b.txt"),
        None,
        true,
        "",
    );
    assert_eq!(status, 200, "{page}");
    let at = |id: &str| page.find(&format!("s/{id}</span>")).unwrap();
    assert!(at(&second) < at(&first), "newest first");
    assert!(page.contains("not in this snapshot"), "{page}");
    let (_, _, same) = srv.ask(
        "GET",
        &format!("/history?set=s&path={rel}/a.txt&changed=1"),
        None,
        true,
        "",
    );
    assert_eq!(
        same.matches("class=\"card").count(),
        1,
        "a.txt changed once: {same}"
    );
    assert!(same.contains(&format!("s/{first}</span>")), "{same}");
    // A new version: each snapshot shows its own (trees answer by inode,
    // the index is read once per version).
    fs::write(t.path().join("src/a.txt"), "a longer\n").unwrap();
    let third = collect(t.path());
    let (_, _, two) = srv.ask(
        "GET",
        &format!("/history?set=s&path={rel}/a.txt&changed=1"),
        None,
        true,
        "",
    );
    assert_eq!(two.matches("class=\"card").count(), 2, "{two}");
    let (_, _, all) = srv.ask(
        "GET",
        &format!("/history?set=s&path={rel}/a.txt"),
        None,
        true,
        "",
    );
    let size_at = |id: &str| {
        let at = all.find(&format!("s/{id}</span>")).unwrap();
        all[at..].split("</div>").next().unwrap().to_string()
    };
    assert!(size_at(&third).contains("9 B"), "{all}");
    assert!(size_at(&second).contains("2 B"), "{all}");
    assert!(size_at(&first).contains("2 B"), "{all}");
}

/// snap-collect folds each snapshot into the path index as it is made;
/// history and search answer from it, a damaged one is rebuilt (the page
/// says so) and one that cannot be opened leaves the answer to reading
/// every index, still right.
#[test]
fn search_and_history_answer_from_the_path_index() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    let st = snap_shared::store::Store::new(t.path().join("store"));
    let (folded, _) =
        snap_shared::pathindex::with_paths(&st, |ix| ix.folded("s")).expect("the path index");
    assert_eq!(
        folded,
        [first.clone(), second.clone()],
        "folded by snap-collect"
    );
    let srv = Server::start(t.path(), &[]);
    let src = t.path().join("src").canonicalize().unwrap();
    let rel = src.display().to_string();
    let b = format!("/history?set=s&path={}/b.txt", rel.trim_start_matches('/'));
    let rows = |page: &str| {
        [&first, &second].map(|id| {
            let at = page.find(&format!("s/{id}</span>")).expect(page);
            page[at..]
                .split("</div>")
                .next()
                .unwrap()
                .contains("not in this snapshot")
        })
    };
    let (_, _, page) = srv.ask("GET", &b, None, true, "");
    assert_eq!(rows(&page), [true, false], "{page}");
    assert!(!page.contains("path index"), "{page}");
    let paths = t.path().join("store/paths.sqlite");
    let _ = fs::remove_file(t.path().join("store/paths.sqlite-wal"));
    fs::write(&paths, vec![0x5a; 8192]).unwrap();
    let (_, _, page) = srv.ask("GET", &b, None, true, "");
    assert_eq!(rows(&page), [true, false], "{page}");
    assert!(page.contains("was damaged"), "{page}");
    let (_, _, found) = srv.ask("GET", "/search?q=b.txt", None, true, "");
    assert!(
        found.contains(&format!("in 1 snapshots, {second} to {second}")),
        "{found}"
    );
    for ext in ["sqlite", "sqlite-wal", "sqlite-shm"] {
        let _ = fs::remove_file(paths.with_extension(ext));
    }
    fs::create_dir(&paths).unwrap();
    let (status, _, page) = srv.ask("GET", &b, None, true, "");
    assert_eq!(status, 200, "{page}");
    assert_eq!(rows(&page), [true, false], "{page}");
    assert!(page.contains("answered without the path index"), "{page}");
    let (_, _, found) = srv.ask("GET", "/search?q=b.txt", None, true, "");
    assert!(found.contains("answered without the path index"), "{found}");
    assert!(
        found.contains(&format!("in 1 snapshots, {second} to {second}")),
        "{found}"
    );
}

/// A search finds a file name (any case) across snapshots and says where.
#[test]
fn search_finds_a_name_across_snapshots() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    let srv = Server::start(t.path(), &[]);
    assert!(srv.page().contains("action=\"/search\""));
    let (status, _, page) = srv.ask("GET", "/search?q=A.TXT", None, true, "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("1 paths"), "{page}");
    assert!(
        page.contains(&format!("in 2 snapshots, {first} to {second}")),
        "{page}"
    );
    let (_, _, none) = srv.ask("GET", "/search?q=nothing-like-this", None, true, "");
    assert!(none.contains("0 paths"), "{none}");
}

/// Edits need the page's CSRF token and --allow-changes; then a tag and a
/// pin land in the record and beside it.
#[test]
fn edits_need_csrf_and_allow_changes() {
    let t = tempfile::tempdir().unwrap();
    let (first, _) = store(t.path());
    let before = record(t.path(), &first);
    let form = |csrf: &str, action: &str| {
        format!("csrf={csrf}&name=s%2F{first}&action={action}&value=keep")
    };
    {
        let ro = Server::start(t.path(), &[]);
        let token = csrf(&ro.page());
        for body in [
            form("", "tag"),
            form("00000000000000000000000000000000", "tag"),
            form(&token, "tag"),
        ] {
            let (status, _, said) = ro.ask("POST", "/edit", None, true, &body);
            assert_eq!(status, 403, "{body}: {said}");
        }
        assert!(
            ro.ask("POST", "/edit", None, true, &form(&token, "tag"))
                .2
                .contains("read-only")
        );
    }
    assert_eq!(
        record(t.path(), &first),
        before,
        "a refused edit changed the record"
    );
    let rw = Server::start(t.path(), &["--allow-changes"]);
    let page = rw.page();
    assert!(!page.contains("tag\">keep</span>"), "{page}");
    let token = csrf(&page);
    let (status, _, _) = rw.ask("POST", "/edit", None, false, &form(&token, "tag"));
    assert_eq!(status, 403, "no token, no edit");
    let (status, head, _) = rw.ask("POST", "/edit", None, true, &form(&token, "tag"));
    assert_eq!(status, 303, "{head}");
    assert_eq!(
        record(t.path(), &first)["tags"],
        serde_json::json!(["keep"])
    );
    let page = rw.page();
    assert!(
        page.contains("tag\">keep</span>"),
        "the page was not made again: {page}"
    );
    let (status, _, _) = rw.ask("POST", "/edit", None, true, &form(&token, "pin"));
    assert_eq!(status, 303);
    assert!(t.path().join(format!("store/sets/s/{first}.pin")).is_file());
}

/// A non-loopback address needs --allow-remote (exit 64 otherwise).
#[test]
fn remote_listening_needs_a_flag() {
    let t = tempfile::tempdir().unwrap();
    store(t.path());
    let out = Command::new(bin("snap-restore"))
        .args(["--store", "store", "serve", "--listen", "0.0.0.0:0"])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");
}

/// A form value, percent-encoded.
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A restore from the page: the dry run lists what it would create and
/// writes nothing; confirmed, it runs, its events end with "done", and the
/// files are on disk; with overwrite, what it replaces is kept first in an
/// undo snapshot the job names.
#[test]
fn restore_from_the_page_with_a_dry_run_and_progress() {
    let t = tempfile::tempdir().unwrap();
    let (_, second) = store(t.path());
    let srv = Server::start(t.path(), &["--allow-changes"]);
    let page = srv.page();
    assert!(
        page.contains(&format!("/restore?name=s/{second}")),
        "{page}"
    );
    let token = csrf(&page);
    let out = t.path().join("out");
    let form = format!(
        "csrf={token}&name=s%2F{second}&to={}&paths=",
        enc(&out.display().to_string())
    );
    let (status, _, plan) = srv.ask("POST", "/restore/preview", None, true, &form);
    assert_eq!(status, 200, "{plan}");
    assert!(plan.contains("b.txt"), "{plan}");
    assert!(plan.contains("create"), "{plan}");
    assert!(!out.exists(), "a dry run wrote to the target");
    let (status, head, _) = srv.ask("POST", "/restore/start", None, true, &form);
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("location: /restore/job?id=0"), "{head}");
    let (status, _, job) = srv.ask("GET", "/restore/job?id=0", None, true, "");
    assert_eq!(status, 200);
    assert!(job.contains("EventSource('/restore/events?id=0')"), "{job}");
    let (status, head, events) = srv.ask("GET", "/restore/events?id=0", None, true, "");
    assert_eq!(status, 200);
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(events.contains("\"done\":true"), "{events}");
    assert!(events.contains("restored: "), "{events}");
    let src = t.path().join("src").canonicalize().unwrap();
    let rel = src.display().to_string();
    let back = out.join(rel.trim_start_matches('/'));
    assert_eq!(fs::read_to_string(back.join("a.txt")).unwrap(), "a\n");
    assert_eq!(fs::read_to_string(back.join("b.txt")).unwrap(), "b\n");
    let (_, _, again) = srv.ask("POST", "/restore/preview", None, true, &form);
    assert!(
        again.contains(">0</") || again.contains("0 to create"),
        "{again}"
    );

    // Restored again over a changed file with overwrite: the changed file
    // is kept first in a pre-restore snapshot, which the job names.
    fs::write(back.join("a.txt"), "changed here\n").unwrap();
    let form = format!("{form}&overwrite=1");
    let (status, head, _) = srv.ask("POST", "/restore/start", None, true, &form);
    assert_eq!(status, 303, "{head}");
    let (_, _, events) = srv.ask("GET", "/restore/events?id=1", None, true, "");
    assert!(events.contains("\"done\":true"), "{events}");
    assert!(
        events.contains("what it replaced is kept in pre-restore/"),
        "{events}"
    );
    assert_eq!(fs::read_to_string(back.join("a.txt")).unwrap(), "a\n");
    let undo = fs::read_dir(t.path().join("store/sets/pre-restore"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("an undo snapshot");
    let kept = undo.join(back.join("a.txt").strip_prefix("/").unwrap());
    assert_eq!(fs::read_to_string(kept).unwrap(), "changed here\n");
}

/// A restore form that points outside its target, or at a relative folder,
/// or into the store, is refused and writes nothing; so is one without the
/// CSRF token or on a read-only server.
#[test]
fn restore_form_refuses_what_leaves_the_target() {
    let t = tempfile::tempdir().unwrap();
    let (_, second) = store(t.path());
    let out = t.path().join("out");
    let o = enc(&out.display().to_string());
    {
        let ro = Server::start(t.path(), &[]);
        let token = csrf(&ro.page());
        let form = format!("csrf={token}&name=s%2F{second}&to={o}");
        for path in ["/restore/preview", "/restore/start"] {
            let (status, _, said) = ro.ask("POST", path, None, true, &form);
            assert_eq!(status, 403, "{path}: {said}");
        }
    }
    let srv = Server::start(t.path(), &["--allow-changes"]);
    let token = csrf(&srv.page());
    let store = enc(&t.path().join("store/x").display().to_string());
    let dotdot = enc(&format!("{}/../escaped", out.display()));
    for (form, why) in [
        (
            format!("csrf={token}&name=s%2F{second}&to={o}&paths=..%2F..%2Fetc"),
            "--path",
        ),
        (
            format!("csrf={token}&name=s%2F{second}&to={o}&paths=a%2F..%2F..%2Fb"),
            "--path",
        ),
        (
            format!("csrf={token}&name=s%2F{second}&to=relative%2Fdir"),
            "absolute",
        ),
        (
            format!("csrf={token}&name=s%2F{second}&to={dotdot}"),
            "absolute",
        ),
        (
            format!("csrf={token}&name=s%2F{second}&to={store}"),
            "inside the store",
        ),
        (format!("csrf=&name=s%2F{second}&to={o}"), "CSRF"),
    ] {
        for path in ["/restore/preview", "/restore/start"] {
            let (status, _, said) = srv.ask("POST", path, None, true, &form);
            assert!(
                status == 400 || status == 403,
                "{path} {form}: {status} {said}"
            );
            assert!(said.contains(why), "{path} {form}: {said}");
        }
    }
    assert!(!out.exists(), "a refused restore wrote");
    assert!(!t.path().join("escaped").exists());
    assert!(!t.path().join("store/x").exists());
    assert!(!t.path().join("relative").exists());
}

/// A delete shows the bytes it frees and needs the name typed again; a
/// pinned snapshot is refused; once confirmed, the tree and its catalog row
/// are gone.
#[test]
fn delete_needs_the_name_typed_and_refuses_a_pin() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    let restore_cli = |args: &[&str]| run_ok(t.path(), "snap-restore", args);
    restore_cli(&["pin", &format!("s/{first}"), "-r", "audit"]);
    let srv = Server::start(t.path(), &["--allow-changes"]);
    let token = csrf(&srv.page());
    let (status, _, refused) = srv.ask("GET", &format!("/delete?name=s/{first}"), None, true, "");
    assert_eq!(status, 200);
    assert!(
        refused.contains("refused") && refused.contains("pinned"),
        "{refused}"
    );
    assert!(!refused.contains("name=\"confirm\""), "{refused}");
    let form = |confirm: &str| format!("csrf={token}&name=s%2F{second}&confirm={confirm}");
    let (status, _, asks) = srv.ask("GET", &format!("/delete?name=s/{second}"), None, true, "");
    assert_eq!(status, 200);
    assert!(
        asks.contains("This frees") && asks.contains("name=\"confirm\""),
        "{asks}"
    );
    for wrong in ["", "s%2Fother", "yes"] {
        let (status, _, said) = srv.ask("POST", "/delete", None, true, &form(wrong));
        assert_eq!(status, 400, "{said}");
    }
    let (status, _, said) = srv.ask(
        "POST",
        "/delete",
        None,
        true,
        &form(&format!("s%2F{first}")),
    );
    assert_eq!(status, 400, "another name is no confirmation: {said}");
    let tree = t.path().join(format!("store/sets/s/{second}"));
    assert!(tree.is_dir(), "removed without confirmation");
    let (status, _, done) = srv.ask(
        "POST",
        "/delete",
        None,
        true,
        &form(&format!("s%2F{second}")),
    );
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("deleted s/"), "{done}");
    assert!(!tree.exists());
    let listed = restore_cli(&["list", "--json"]);
    assert!(!listed.contains(&second), "{listed}");
    assert!(listed.contains(&first), "{listed}");
    let store = snap_shared::store::Store::new(t.path().join("store"));
    let catalog = snap_shared::catalog::Catalog::open_path(&store.catalog_path()).unwrap();
    let ids: Vec<String> = catalog
        .snapshots(Some("s"))
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        ids,
        vec![first.clone()],
        "the catalog still has the deleted snapshot"
    );
    let (_, _, pinned) = srv.ask(
        "POST",
        "/delete",
        None,
        true,
        &format!("csrf={token}&name=s%2F{first}&confirm=s%2F{first}"),
    );
    assert!(pinned.contains("pinned"), "{pinned}");
    assert!(t.path().join(format!("store/sets/s/{first}")).is_dir());
}

/// The whole flow in a real browser (headless Chromium, playwright-core):
/// open the timeline, filter by tag, diff, follow a history, restore a
/// folder to a new place, pin one and delete another. Then on disk: the
/// restored files are there, a prune keeps the pinned snapshot because of
/// its pin, and the deleted one is gone from the store and the catalog.
/// With SNAP_SCREENSHOTS=DIR the screenshots are kept there (docs/screenshots).
#[test]
fn the_whole_flow_in_a_browser() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("src/docs")).unwrap();
    fs::write(t.path().join("src/docs/notes.txt"), "one\ntwo\n").unwrap();
    let (first, second) = store(t.path());
    fs::write(t.path().join("src/docs/notes.txt"), "one\ntwo\nthree\n").unwrap();
    let third = collect(t.path());
    let cli = |tool: &str, args: &[&str]| run_ok(t.path(), tool, args);
    cli(
        "snap-restore",
        &["tag", &format!("s/{first}"), "--add", "keep"],
    );
    let srv = Server::start(t.path(), &["--allow-changes"]);
    let shots = match std::env::var_os("SNAP_SCREENSHOTS") {
        Some(d) => PathBuf::from(d),
        None => t.path().join("shots"),
    };
    fs::create_dir_all(&shots).unwrap();
    let src = t.path().join("src").canonicalize().unwrap();
    let docs = format!("{}/docs", src.display().to_string().trim_start_matches('/'));
    let to = t.path().join("restored");
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/flow.cjs");
    // The folder to restore: the last argument, after the names.
    let out = snap_testkit::serve::browser_script(
        &flow,
        &[
            format!("http://127.0.0.1:{}/?token={TOKEN}", srv.port).into(),
            shots.clone().into(),
            to.clone().into(),
            format!("s/{first}").into(),
            format!("s/{second}").into(),
            format!("s/{first}").into(),
            docs.clone().into(),
        ],
    );
    assert!(
        out.status.success(),
        "the browser flow failed (screenshots in {}):\n{}{}",
        shots.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for shot in [
        "timeline",
        "filter",
        "diff",
        "history",
        "restore-preview",
        "restore-done",
        "delete",
    ] {
        assert!(shots.join(format!("{shot}.png")).is_file(), "no {shot}.png");
    }
    // Restored: the folder asked for, and nothing else.
    let back = to.join(&docs);
    assert_eq!(
        fs::read_to_string(back.join("notes.txt")).unwrap(),
        "one\ntwo\nthree\n"
    );
    assert!(
        !to.join(src.display().to_string().trim_start_matches('/'))
            .join("a.txt")
            .exists()
    );
    // Pinned from the page: a prune keeps it, and says why.
    assert!(
        t.path()
            .join(format!("store/sets/s/{second}.pin"))
            .is_file()
    );
    let pruned = cli("snap-prune", &["--keep-last", "1"]);
    let kept: Vec<serde_json::Value> = pruned
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |id: &str| kept.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(of(&second)["action"], "keep");
    assert_eq!(of(&second)["reasons"], serde_json::json!(["pinned"]));
    assert_eq!(of(&third)["action"], "keep");
    // Deleted from the page: gone from the store and the catalog.
    assert!(!t.path().join(format!("store/sets/s/{first}")).exists());
    assert!(!t.path().join(format!("store/sets/s/{first}.json")).exists());
    let store = snap_shared::store::Store::new(t.path().join("store"));
    let catalog = snap_shared::catalog::Catalog::open_path(&store.catalog_path()).unwrap();
    let ids: Vec<String> = catalog
        .snapshots(Some("s"))
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![second.clone(), third.clone()]);
}

/// 10,000 snapshots in 20 sets (and 200 disk snapshots): the file and the
/// live page show every card, every set, every pin, and the live one the
/// tools of each card.
#[test]
fn pages_for_ten_thousand_snapshots() {
    let t = tempfile::tempdir().unwrap();
    snap_testkit::timeline::synthetic_store(&t.path().join("store"), 20, 500).unwrap();
    run_ok(t.path(), "snap-restore", &["timeline", "--html", "t.html"]);
    let file = fs::read_to_string(t.path().join("t.html")).unwrap();
    let srv = Server::start(t.path(), &["--allow-changes"]);
    let live = srv.page();
    for page in [&file, &live] {
        assert_eq!(page.matches("<div class=\"card").count(), 10_000 + 200);
        for s in 0..20 {
            assert!(
                page.contains(&format!("<h2>Set set{s:02}</h2>")),
                "set{s:02}"
            );
        }
        assert_eq!(page.matches("class=\"badge pin\"").count(), 100);
        assert_eq!(page.matches("class=\"badge tag\"").count(), 20 * 21);
    }
    assert_eq!(live.matches(">restore…</a>").count(), 10_000);
    assert!(
        !file.contains(">restore…</a>"),
        "the file has no live tools"
    );
}

/// The filter of the file hides the cards that do not match and the day
/// headings left with no card.
#[test]
fn the_filter_hides_cards_and_empty_days() {
    let t = tempfile::tempdir().unwrap();
    // Two sets of 48 hourly snapshots (two days each); only the first of each is described.
    snap_testkit::timeline::synthetic_store(&t.path().join("store"), 2, 48).unwrap();
    run_ok(t.path(), "snap-restore", &["timeline", "--html", "t.html"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/filter.cjs");
    let out = snap_testkit::serve::browser_script(
        &script,
        &[t.path().join("t.html").into(), "before change 0".into()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        seen,
        serde_json::json!({"before": {"cards": 96 + 200, "days": 4},
                           "after": {"cards": 2, "days": 2}})
    );
}

/// Every form and link of the page takes names held to the store it serves
/// (issue 32, finding 2): an absolute or relative path to a record, `..`,
/// their encoded forms, a set folder that is a symlink out of the store and
/// a NUL are each 400 on every route, and nothing outside the store is
/// rewritten or pinned.
#[test]
fn the_page_takes_names_never_paths() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    // Another store on the same host, and its set linked into this one.
    let other = t.path().join("other");
    fs::create_dir_all(other.join("src")).unwrap();
    fs::write(other.join("src/x.txt"), "x\n").unwrap();
    let id2 = collect_as(&other, "s2");
    let theirs = other.join(format!("store/sets/s2/{id2}.json"));
    let before = fs::read(&theirs).unwrap();
    std::os::unix::fs::symlink(other.join("store/sets/s2"), t.path().join("store/sets/s2"))
        .unwrap();
    let abs = theirs.to_string_lossy().into_owned();
    let names = [
        abs.clone(),
        format!("other/store/sets/s2/{id2}.json"),
        format!("s/../../other/store/sets/s2/{id2}"),
        format!("%2e%2e/%2e%2e/other/store/sets/s2/{id2}"),
        format!("/{}", t.path().join("store/sets/s").display()),
        format!("s2/{id2}"),
        format!("s/{first}\0"),
    ];
    let rw = Server::start(t.path(), &["--allow-changes"]);
    let token = csrf(&rw.page());
    for name in &names {
        for action in ["tag", "describe", "pin"] {
            let body = format!(
                "csrf={token}&name={}&action={action}&value=owned",
                enc(name)
            );
            let (status, _, said) = rw.ask("POST", "/edit", None, true, &body);
            assert_eq!(status, 400, "/edit {action} {name:?}: {said}");
        }
        let form = format!(
            "csrf={token}&name={}&to={}",
            enc(name),
            enc("/tmp/x-restore")
        );
        for route in ["/restore/preview", "/restore/start"] {
            let (status, _, said) = rw.ask("POST", route, None, true, &form);
            assert_eq!(status, 400, "{route} {name:?}: {said}");
        }
        let del = format!("csrf={token}&name={}&confirm={}", enc(name), enc(name));
        let (status, _, said) = rw.ask("POST", "/delete", None, true, &del);
        assert_eq!(status, 400, "/delete {name:?}: {said}");
        let (status, _, said) = rw.ask(
            "GET",
            &format!("/delete?name={}", enc(name)),
            None,
            true,
            "",
        );
        assert!(
            said.contains("refused"),
            "GET /delete {name:?}: {status} {said}"
        );
        for q in [
            format!("/diff?a={}&b=s%2F{second}", enc(name)),
            format!("/text?a=s%2F{second}&b={}&path=x.txt", enc(name)),
        ] {
            let (status, _, said) = rw.ask("GET", &q, None, true, "");
            assert_eq!(status, 400, "{q}: {said}");
        }
    }
    assert_eq!(
        fs::read(&theirs).unwrap(),
        before,
        "a record outside was rewritten"
    );
    assert!(!other.join(format!("store/sets/s2/{id2}.pin")).exists());
    assert!(other.join(format!("store/sets/s2/{id2}")).is_dir());
    assert!(!Path::new("/tmp/x-restore").exists());
    // A NUL in any other field is 400 too; the names themselves still work.
    for body in [
        format!("csrf={token}&name=s%2F{first}&action=describe&value=a%00b"),
        format!("csrf={token}&name=s%2F{first}&to=%2Ftmp%2Fa%00b"),
    ] {
        let route = if body.contains("action") {
            "/edit"
        } else {
            "/restore/preview"
        };
        let (status, _, said) = rw.ask("POST", route, None, true, &body);
        assert_eq!(status, 400, "{route} {body}: {said}");
    }
    let ok = format!("csrf={token}&name=s%2F{first}&action=tag&value=fine");
    assert_eq!(rw.ask("POST", "/edit", None, true, &ok).0, 303);
}

/// `serve --allow-remote --listen 0.0.0.0:P` answers a browser that names
/// this machine (its host name, any of its addresses) and still refuses
/// other names; the URL it prints follows --listen (issue 32, finding 7).
#[test]
fn the_host_check_and_the_url_follow_listen() {
    let t = tempfile::tempdir().unwrap();
    store(t.path());
    // The server (stopped when dropped, even when an assertion fails) and
    // what it said up to its URL.
    let start = |ip: &str, port: u16, extra: &[&str]| -> (Server, String) {
        let mut child = Command::new(bin("snap-restore"))
            .args(["--store", "store", "serve", "--listen"])
            .arg(format!("{ip}:{port}"))
            .args(extra)
            .env("SNAP_SERVE_TOKEN", TOKEN)
            .current_dir(t.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let server = Server { child, port };
        let mut said = String::new();
        while !said.contains("open http") {
            let mut line = String::new();
            use std::io::BufRead;
            assert!(err.read_line(&mut line).unwrap() > 0, "serve ended: {said}");
            said.push_str(&line);
        }
        (server, said)
    };
    let port = free_port();
    let (first, said) = start("127.0.0.2", port, &[]);
    assert!(
        said.contains(&format!("open http://127.0.0.2:{port}/?token=")),
        "{said}"
    );
    drop(first);

    let port = free_port();
    let (server, said) = start("0.0.0.0", port, &["--allow-remote"]);
    let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_lowercase();
    assert!(
        said.contains(&format!("open http://{host}:{port}/?token=")),
        "{said}"
    );
    let ips =
        String::from_utf8(Command::new("hostname").arg("-I").output().unwrap().stdout).unwrap();
    let mut names = vec![
        format!("{host}:{port}"),
        format!("{}:{port}", host.to_uppercase()),
    ];
    names.extend(
        ips.split_whitespace()
            .filter(|ip| !ip.contains(':'))
            .map(|ip| format!("{ip}:{port}")),
    );
    for name in &names {
        let (status, _, body) = server.ask("GET", "/", Some(name), true, "");
        assert_eq!(status, 200, "Host {name}: {body}");
    }
    for name in [
        format!("evil.example:{port}"),
        format!("{host}.evil.example:{port}"),
    ] {
        let (status, _, _) = server.ask("GET", "/", Some(&name), true, "");
        assert_eq!(status, 403, "Host {name}");
    }
}

/// The page's dry run into a folder reached through a symlink says where the
/// files go, as the command line does (issue 32, finding 8).
#[test]
fn the_page_says_where_a_symlinked_target_leads() {
    let t = tempfile::tempdir().unwrap();
    let (first, _) = store(t.path());
    fs::create_dir(t.path().join("real")).unwrap();
    std::os::unix::fs::symlink(t.path().join("real"), t.path().join("link")).unwrap();
    let rw = Server::start(t.path(), &["--allow-changes"]);
    let token = csrf(&rw.page());
    let to = t.path().join("link/r").display().to_string();
    let body = format!("csrf={token}&name=s%2F{first}&to={}", enc(&to));
    let (status, _, page) = rw.ask("POST", "/restore/preview", None, true, &body);
    assert_eq!(status, 200, "{page}");
    let real = fs::canonicalize(t.path()).unwrap().join("real/r");
    assert!(page.contains("id=\"elsewhere\""), "{page}");
    assert!(page.contains(&real.display().to_string()), "{page}");
}

/// The page restores an archive only when its record is signed by a key in
/// the allowed signers, as the command line does: one not signed is 403,
/// naming why, before anything is made; `serve --allow-unsigned` restores it.
#[test]
fn the_page_restores_only_signed_archives() {
    let t = tempfile::tempdir().unwrap();
    let (_, second) = store(t.path());
    let snapshot = format!("s/{second}");
    run_ok(
        t.path(),
        "snap-pack",
        &["--min-free", "0", "-q", "--snapshot", &snapshot],
    );
    // Only the archive is left of the set: the page's name means it.
    fs::remove_dir_all(t.path().join("store/sets/s")).unwrap();
    let out = t.path().join("out");
    let form = |page: &str| {
        format!(
            "csrf={}&name=s%2F{second}&to={}&paths=",
            csrf(page),
            enc(&out.display().to_string())
        )
    };
    {
        let srv = Server::start(t.path(), &["--allow-changes"]);
        let (status, _, plan) = srv.ask("POST", "/restore/preview", None, true, &form(&srv.page()));
        assert_eq!(status, 200, "{plan}");
    }
    fs::remove_file(t.path().join(format!("store/archives/s/{second}.json.sig"))).unwrap();
    {
        let srv = Server::start(t.path(), &["--allow-changes"]);
        let form = form(&srv.page());
        for route in ["/restore/preview", "/restore/start"] {
            let (status, _, body) = srv.ask("POST", route, None, true, &form);
            assert_eq!(status, 403, "{route}: {body}");
            assert!(body.contains("its record is not signed"), "{body}");
            assert!(body.contains("--allow-unsigned"), "{body}");
        }
        assert!(!out.exists(), "a refused restore made its target");
    }
    let srv = Server::start(t.path(), &["--allow-changes", "--allow-unsigned"]);
    let (status, head, _) = srv.ask("POST", "/restore/start", None, true, &form(&srv.page()));
    assert_eq!(status, 303, "{head}");
    let (_, _, events) = srv.ask("GET", "/restore/events?id=0", None, true, "");
    assert!(events.contains("\"done\":true"), "{events}");
    assert!(
        events.contains("read because of --allow-unsigned"),
        "{events}"
    );
    let src = t.path().join("src").canonicalize().unwrap();
    let back = out.join(src.display().to_string().trim_start_matches('/'));
    assert_eq!(fs::read_to_string(back.join("b.txt")).unwrap(), "b\n");
}
