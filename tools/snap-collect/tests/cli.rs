//! CLI tests for snap-collect: every error path with its exit code and whole
//! message (temporary paths redacted), and the records a run writes.

use snap_testkit::{World, code, records};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// What these tests do in the shared test world.
trait CollectWorld {
    /// Collects `src/` as the ad-hoc set `s` into `store/`, no free-space floor.
    fn collect_src(&self, extra: &[&str]) -> Output;

    /// snap-collect, run in the world.
    fn cmd(&self) -> Command;

    /// A config with one set `data` over `src/`, store in `store/`.
    fn config(&self, extra_set_fields: &str) -> PathBuf;
}

impl CollectWorld for World {
    fn collect_src(&self, extra: &[&str]) -> Output {
        self.cmd()
            .args(["--store", "store", "--min-free", "0", "--name", "s", "src"])
            .args(extra)
            .output()
            .unwrap()
    }

    fn cmd(&self) -> Command {
        Command::from_std(self.tool("snap-collect"))
    }

    fn config(&self, extra_set_fields: &str) -> PathBuf {
        let text = format!(
            r#"{{"store": "{}", "collect": {{"min_free": "0"}},
               "backup_sets": [{{"name": "data", "sources": ["{}"]{extra_set_fields}}}]}}"#,
            self.path("store").display(),
            self.path("src").display()
        );
        self.write("config.json", &text)
    }
}

/// `--help` and `--version` exit 0.
#[test]
fn help_and_version_exit_zero() {
    let w = World::new();
    let help = w.cmd().arg("--help").output().unwrap();
    assert_eq!(code(&help), 0);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: snap-collect"));
    assert_eq!(code(&w.cmd().arg("--version").output().unwrap()), 0);
}

/// A bad flag is a usage error, exit 64 (not clap's 2).
#[test]
fn unknown_flag_exits_64() {
    let w = World::new();
    let out = w.cmd().arg("--bogus").output().unwrap();
    assert_eq!(code(&out), 64);
    assert!(
        w.redact(&out.stderr)
            .starts_with("error: unexpected argument '--bogus' found")
    );
}

/// Paths need --name, and --name needs paths.
#[test]
fn paths_and_name_go_together() {
    let w = World::new();
    assert_eq!(code(&w.cmd().arg("/etc").output().unwrap()), 64);
    assert_eq!(code(&w.cmd().args(["--name", "x"]).output().unwrap()), 64);
    let both = w
        .cmd()
        .args(["--name", "x", "--set", "y", "/etc"])
        .output()
        .unwrap();
    assert_eq!(code(&both), 64);
}

/// With no config anywhere, exit 78 and say where it was looked for and what to do.
#[test]
fn missing_default_config_exits_78() {
    let w = World::new();
    let out = w.cmd().output().unwrap();
    assert_eq!(code(&out), 78);
    assert_eq!(
        w.redact(&out.stderr),
        "snap-collect: config [TMP]/home/.config/snap/config.json: not found\n\
         snap-collect: hint: write one (see `man snap-collect`), point --config or $SNAP_CONFIG at it, \
         or collect paths directly: snap-collect --name NAME PATH...\n"
    );
}

/// A config named on the command line that does not exist is exit 66.
#[test]
fn named_config_missing_exits_66() {
    let w = World::new();
    let out = w.cmd().args(["--config", "nope.json"]).output().unwrap();
    assert_eq!(code(&out), 66);
    assert_eq!(
        w.redact(&out.stderr),
        "snap-collect: config: nope.json: No such file or directory\n"
    );
}

/// A misspelt config field is named with its path and position, exit 78.
#[test]
fn bad_config_field_exits_78() {
    let w = World::new();
    let cfg = w.write(
        "c.json",
        r#"{"backup_sets": [{"name": "d", "sources": ["/x"], "exclusion": []}]}"#,
    );
    let out = w.cmd().arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(code(&out), 78);
    assert_eq!(
        w.redact(&out.stderr),
        "snap-collect: config [TMP]/c.json: backup_sets[0].exclusion: unknown field `exclusion`, \
         expected one of `name`, `sources`, `exclusions`, `method`, `one_file_system`, `tags` \
         (line 1 column 61)\n"
    );
}

/// $SNAP_CONFIG is honoured.
#[test]
fn snap_config_env_is_used() {
    let w = World::new();
    w.write("src/a", "a");
    let cfg = w.config("");
    let out = w.cmd().env("SNAP_CONFIG", &cfg).output().unwrap();
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert_eq!(records(&out)[0]["set"], "data");
}

/// A missing source is exit 66 naming the set and the path; nothing is collected.
#[test]
fn missing_source_exits_66() {
    let w = World::new();
    fs::remove_dir(w.path("src")).unwrap();
    let cfg = w.config("");
    let out = w.cmd().arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(code(&out), 66);
    assert_eq!(
        w.redact(&out.stderr),
        "snap-collect: set data: source: [TMP]/src: No such file or directory\n"
    );
    assert!(out.stdout.is_empty());
    assert!(!w.path("store/sets/data").exists());
}

/// An unknown --set is a usage error that lists the configured sets.
#[test]
fn unknown_set_exits_64() {
    let w = World::new();
    w.write("src/a", "a");
    let cfg = w.config("");
    let out = w
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["--set", "dat"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 64);
    assert_eq!(
        w.redact(&out.stderr),
        "snap-collect: --set dat: no such set in [TMP]/config.json\n\
         snap-collect: hint: configured sets: data\n"
    );
}

/// A second writer gets exit 75 and a line naming who holds the store.
#[test]
fn locked_store_exits_75() {
    let w = World::new();
    w.write("src/a", "a");
    fs::create_dir_all(w.path("store")).unwrap();
    let _held = snap_shared::lock::StoreLock::acquire(&w.path("store/lock"), "snap-prune").unwrap();
    let out = w
        .cmd()
        .args(["--store", "store", "--name", "x", "src"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 75);
    let err = w.redact(&out.stderr);
    let pid = std::process::id();
    assert!(
        err.starts_with(&format!(
            "snap-collect: store lock [TMP]/store/lock: held by snap-prune (pid {pid} on "
        )),
        "{err}"
    );
    assert!(err.ends_with("snap-collect: hint: another snap tool is writing to this store; try again when it is done\n"));
}

/// Below the free-space floor the run refuses to start, exit 73.
#[test]
fn below_floor_exits_73() {
    let w = World::new();
    w.write("src/a", "a");
    let out = w
        .cmd()
        .args([
            "--store",
            "store",
            "--min-free",
            "100%",
            "--name",
            "x",
            "src",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 73);
    let err = w.redact(&out.stderr);
    assert!(
        err.starts_with("snap-collect: store [TMP]/store: "),
        "{err}"
    );
    assert!(err.contains("free, below the floor of"), "{err}");
    assert!(
        !w.path("store/sets/x")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    );
}

/// A bad --min-free is a usage error.
#[test]
fn bad_min_free_exits_64() {
    let w = World::new();
    w.write("src/a", "a");
    let out = w
        .cmd()
        .args(["--min-free", "lots", "--name", "x", "src"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 64);
    assert_eq!(
        w.redact(&out.stderr),
        "snap-collect: --min-free: \"lots\" is not a size (try 500M or 2GiB)\n"
    );
}

/// The store comes from $SNAP_STORE, else $DBACKUP (the planning document's variable).
#[test]
fn store_from_environment() {
    let w = World::new();
    w.write("src/a", "a");
    let out = w
        .cmd()
        .env("DBACKUP", w.path("dbackup"))
        .args(["--min-free", "0", "--name", "x", "src"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert!(w.path("dbackup/sets/x/latest").exists());
    let out = w
        .cmd()
        .env("DBACKUP", w.path("dbackup"))
        .env("SNAP_STORE", w.path("snapstore"))
        .args(["--min-free", "0", "--name", "x", "src"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    assert!(w.path("snapstore/sets/x/latest").exists());
}

/// Every configured set gets one record on stdout, in the catalog, and a summary on stderr.
#[test]
fn collects_every_configured_set() {
    let w = World::new();
    w.write("a/one", "1");
    w.write("b/two", "22");
    let cfg = w.write(
        "c.json",
        format!(
            r#"{{"store": "{0}/store", "collect": {{"min_free": "0"}}, "backup_sets": [
                {{"name": "a", "sources": ["{0}/a"]}},
                {{"name": "b", "sources": ["{0}/b"], "tags": ["t1"]}}]}}"#,
            w.root().display()
        ),
    );
    let out = w
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .arg("--tag")
        .arg("cli")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let recs = records(&out);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["kind"], "snapshot");
    assert_eq!(recs[0]["schema"], "snap/1");
    assert_eq!(
        (recs[0]["set"].as_str(), recs[1]["set"].as_str()),
        (Some("a"), Some("b"))
    );
    assert_eq!(recs[1]["tags"], serde_json::json!(["t1", "cli"]));
    assert_eq!(recs[1]["bytes"], 2);
    let stderr = w.redact(&out.stderr);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(
        stderr.starts_with("snap-collect: set a: snapshot "),
        "{stderr}"
    );
    let store = snap_shared::store::Store::new(w.path("store"));
    let (cat, _) = snap_shared::catalog::Catalog::open(&store).unwrap();
    assert_eq!(cat.snapshots(None).unwrap().len(), 2);
    let only_b = w
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["--set", "b"])
        .output()
        .unwrap();
    assert_eq!(records(&only_b).len(), 1);
}

/// A second run hard-links every unchanged file and copies only what changed.
#[test]
fn second_run_links_unchanged_files() {
    let w = World::new();
    w.write_dated("src/keep", "same");
    w.write("src/change", "v1");
    let run = || {
        let out = w.collect_src(&[]);
        assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
        records(&out).remove(0)
    };
    let first = run();
    w.write("src/change", "v2 longer");
    let second = run();
    assert_eq!(second["parent"], first["id"]);
    assert_eq!(second["new_files"], 1);
    assert_eq!(second["new_bytes"], 9);
    assert_eq!(second["linked_files"], 1);
    let inside = |rec: &Value, f: &str| {
        let root = PathBuf::from(rec["path"].as_str().unwrap());
        root.join(
            fs::canonicalize(w.path("src"))
                .unwrap()
                .strip_prefix("/")
                .unwrap(),
        )
        .join(f)
    };
    let ino = |p: PathBuf| fs::metadata(p).unwrap().ino();
    assert_eq!(ino(inside(&first, "keep")), ino(inside(&second, "keep")));
    assert_ne!(
        ino(inside(&first, "change")),
        ino(inside(&second, "change"))
    );
    assert_eq!(fs::read_to_string(inside(&first, "change")).unwrap(), "v1");
    let latest = fs::read_link(w.path("store/sets/s/latest")).unwrap();
    assert_eq!(latest, Path::new(second["id"].as_str().unwrap()));
}

/// The record counts what changed since its parent, entry by entry:
/// added, removed, modified, type, metadata only.
#[test]
fn record_counts_changes_since_the_parent() {
    let w = World::new();
    w.write_dated("src/keep", "same");
    w.write_dated("src/change", "v1");
    w.write_dated("src/gone", "bye");
    w.write_dated("src/d/perm", "p");
    let first = w.collect_src(&[]);
    assert_eq!(code(&first), 0, "{}", w.redact(&first.stderr));
    assert!(
        records(&first)[0].get("changes").is_none(),
        "no parent, no counts"
    );
    // Adding and removing touch src's mtime: put it back, so only the files count.
    let src_mtime = fs::metadata(w.path("src")).unwrap().modified().unwrap();
    w.write_dated("src/change", "v2 longer");
    fs::remove_file(w.path("src/gone")).unwrap();
    w.write_dated("src/new", "n");
    fs::set_permissions(w.path("src/d/perm"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::File::open(w.path("src"))
        .unwrap()
        .set_modified(src_mtime)
        .unwrap();
    let second = w.collect_src(&[]);
    assert_eq!(code(&second), 0, "{}", w.redact(&second.stderr));
    let mut changes = records(&second)[0]["changes"].clone();
    // The folders above src (/tmp and the test's own) are in the snapshot
    // too, and other tests change /tmp's mtime at any moment: each may count
    // as a metadata change, besides d/perm's mode.
    let above = fs::canonicalize(w.path("src")).unwrap().ancestors().count() as u64 - 2;
    let metadata = changes["metadata"].take().as_u64().unwrap();
    assert!((1..=1 + above).contains(&metadata), "{metadata}");
    assert_eq!(
        changes,
        serde_json::json!({"added": 1, "removed": 1, "modified": 1, "type": 0, "metadata": null})
    );
}

/// Content changed behind the same size and mtime is only seen with --checksum.
#[test]
fn checksum_catches_same_metadata_changes() {
    let w = World::new();
    let f = w.write("src/f", "aaaa");
    // Long before the snapshot, so the metadata is trusted (see the racy test).
    let mtime = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(code(&w.collect_src(&[])), 0);
    fs::write(&f, "bbbb").unwrap();
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let plain = records(&w.collect_src(&[])).remove(0);
    assert_eq!(
        plain["new_files"], 0,
        "size+mtime match: linked, like rsync"
    );
    let checked = records(&w.collect_src(&["--checksum"])).remove(0);
    assert_eq!(checked["new_files"], 1);
}

/// An unreadable file is reported, the rest collected, exit 1 with `errors` counted.
#[test]
fn unreadable_file_exits_1_and_counts() {
    let w = World::new();
    w.write("src/ok", "fine");
    let secret = w.write("src/secret", "no");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    // Last in the walk: its error must still reach the record.
    w.write("src/zz-locked/inside", "no");
    fs::set_permissions(w.path("src/zz-locked"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::create_dir_all(w.path("store")).unwrap();
    let mut cmd = w.cmd();
    if rustix::process::geteuid().is_root() {
        // Root reads everything: run as nobody, who owns the store but not the secret.
        std::os::unix::fs::chown(w.path("store"), Some(65534), Some(65534)).unwrap();
        let bin = assert_cmd::cargo::cargo_bin("snap-collect");
        cmd = Command::new("setpriv");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", w.path("home"))
            .current_dir(w.root())
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin);
    }
    let out = cmd
        .args(["--store", "store", "--min-free", "0", "--name", "s", "src"])
        .output()
        .unwrap();
    let err = w.redact(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    // Workers and the walk report from different threads: any order.
    assert!(
        err.contains("snap-collect: error: [TMP]/src/secret: Permission denied\n"),
        "{err}"
    );
    assert!(
        err.contains("snap-collect: error: [TMP]/src/zz-locked: Permission denied\n"),
        "{err}"
    );
    fs::set_permissions(w.path("src/zz-locked"), fs::Permissions::from_mode(0o755)).unwrap();
    let rec = records(&out).remove(0);
    assert_eq!(rec["errors"], 2);
    assert_eq!(rec["files"], 1);
}

/// An unfinished snapshot left by a crash is removed by the next run; earlier ones stay.
#[test]
fn leftover_partial_is_cleaned() {
    let w = World::new();
    w.write("src/a", "a");
    let first = records(&w.collect_src(&[])).remove(0);
    let partial = w.path("store/sets/s/.2020-01-01T000000Z.partial/deep");
    fs::create_dir_all(&partial).unwrap();
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o555)).unwrap();
    w.write("store/sets/s/2020-01-01T000000Z.index.zst", "junk");
    let out = w.collect_src(&[]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert!(
        w.redact(&out.stderr)
            .contains("removing unfinished snapshot 2020-01-01T000000Z")
    );
    assert!(!w.path("store/sets/s/.2020-01-01T000000Z.partial").exists());
    assert!(!w.path("store/sets/s/2020-01-01T000000Z.index.zst").exists());
    assert!(Path::new(first["path"].as_str().unwrap()).is_dir());
}

/// A crash between the tree's rename and the record's is finished by the next run.
#[test]
fn interrupted_publication_is_completed() {
    let w = World::new();
    w.write_dated("src/a", "a");
    let first = records(&w.collect_src(&[])).remove(0);
    let id = first["id"].as_str().unwrap();
    let set = w.path("store/sets/s");
    fs::rename(
        set.join(format!("{id}.json")),
        set.join(format!(".{id}.json.pending")),
    )
    .unwrap();
    let second = records(&w.collect_src(&[])).remove(0);
    assert!(set.join(format!("{id}.json")).exists());
    assert_eq!(second["parent"], id, "the completed snapshot is the parent");
    assert_eq!(second["new_files"], 0);
}

/// The store is never collected into itself when it lies inside a source.
#[test]
fn store_inside_source_is_skipped() {
    let w = World::new();
    w.write("src/a", "a");
    let out = w
        .cmd()
        .args([
            "--store",
            "src/store",
            "--min-free",
            "0",
            "--name",
            "s",
            "src",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    assert!(
        w.redact(&out.stderr)
            .contains("warning: [TMP]/src/store: the store itself is not collected")
    );
    assert_eq!(records(&out)[0]["files"], 1);
}

/// Exclusions from the config and --exclude, and .snapignore files, are honoured;
/// .gitignore is not (a backup never skips silently).
#[test]
fn exclusions_apply_but_gitignore_does_not() {
    let w = World::new();
    for f in [
        "src/a.log",
        "src/tmp/x",
        "src/keep",
        "src/cache/c",
        "src/.gitignore",
        "src/ignored-by-git",
        "src/sub/.snapignore",
        "src/sub/skip",
        "src/sub/stay",
    ] {
        w.write(f, "x");
    }
    w.write("src/.gitignore", "ignored-by-git\n");
    w.write("src/sub/.snapignore", "skip\n");
    let cfg = w.config(r#", "exclusions": ["*.log", "tmp/"]"#);
    let out = w
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["--exclude", "/cache"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let rec = records(&out).remove(0);
    let index = fs::read(rec["index"].as_str().unwrap()).unwrap();
    let text = String::from_utf8(zstd::decode_all(&index[..]).unwrap()).unwrap();
    let src_rel = fs::canonicalize(w.path("src"))
        .unwrap()
        .display()
        .to_string()[1..]
        .to_string();
    let names: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter_map(|p| p.strip_prefix(&format!("{src_rel}/")).map(str::to_string))
        .collect();
    assert_eq!(
        names,
        [
            ".gitignore",
            "ignored-by-git",
            "keep",
            "sub",
            "sub/.snapignore",
            "sub/stay"
        ]
    );
}

/// A file whose previous copy already has the most links the filesystem allows
/// (EMLINK) is copied instead of linked, without an error.
#[test]
fn too_many_links_falls_back_to_copy() {
    let w = World::new();
    w.write_dated("src/f", "content");
    let first = records(&w.collect_src(&[])).remove(0);
    let src_rel = fs::canonicalize(w.path("src")).unwrap();
    let in_first = PathBuf::from(first["path"].as_str().unwrap())
        .join(src_rel.strip_prefix("/").unwrap())
        .join("f");
    let scratch = w.path("links");
    fs::create_dir(&scratch).unwrap();
    let emlink = rustix::io::Errno::MLINK.raw_os_error();
    for n in 0.. {
        match fs::hard_link(&in_first, scratch.join(n.to_string())) {
            Ok(()) if n < 200_000 => {}
            Ok(()) => {
                eprintln!("this filesystem has no link limit below 200,000; nothing to test");
                return;
            }
            Err(e) if e.raw_os_error() == Some(emlink) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let out = w.collect_src(&[]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let second = records(&out).remove(0);
    assert_eq!(
        (second["new_files"].as_u64(), second["errors"].as_u64()),
        (Some(1), Some(0))
    );
    let in_second = PathBuf::from(second["path"].as_str().unwrap())
        .join(src_rel.strip_prefix("/").unwrap())
        .join("f");
    assert_eq!(fs::read_to_string(&in_second).unwrap(), "content");
    assert_ne!(
        fs::metadata(&in_second).unwrap().ino(),
        fs::metadata(&in_first).unwrap().ino()
    );
}

/// When the set's last run copied more than now fits above the floor, the next run warns.
#[test]
fn warns_when_the_run_will_likely_not_fit() {
    let w = World::new();
    fs::create_dir_all(w.path("src")).unwrap();
    // 256 MiB of hole: counted as 256 MiB copied, costs no space.
    fs::File::create(w.path("src/sparse"))
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let base = ["--store", "store", "--name", "s", "src"];
    let out = w
        .cmd()
        .args(base)
        .args(["--min-free", "0"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    let st = rustix::fs::statvfs(w.path("store")).unwrap();
    let free = st.f_bavail * st.f_frsize;
    if free < 1 << 30 {
        eprintln!("less than 1 GiB free; nothing to test");
        return;
    }
    let floor = (free - (128 << 20)).to_string();
    let out = w
        .cmd()
        .args(base)
        .args(["--min-free", &floor])
        .output()
        .unwrap();
    let err = w.redact(&out.stderr);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains(
            "set s copied 256 MiB last time, so this run will likely not fit above the floor"
        ),
        "{err}"
    );
}

/// --one-file-system keeps a mount point as an empty folder and does not enter it.
#[test]
fn one_file_system_stops_at_mount_points() {
    let w = World::new();
    w.write("src/a", "a");
    let mnt = w.path("src/mnt");
    fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "snaptest"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs here; nothing to test");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    fs::write(mnt.join("inside"), "other filesystem").unwrap();
    let run = |extra: &[&str]| {
        let out = w
            .cmd()
            .args(["--store", "store", "--min-free", "0", "--name", "s"])
            .args(extra)
            .arg("src")
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
        records(&out).remove(0)
    };
    assert_eq!(run(&["-x"])["files"], 1, "only src/a");
    assert_eq!(run(&[])["files"], 2, "src/a and src/mnt/inside");
}

/// A corrupt previous index does not stop the backup: a warning, and files are copied.
#[test]
fn corrupt_previous_index_only_warns() {
    let w = World::new();
    w.write_dated("src/a", "a");
    w.write_dated("src/b", "b");
    let first = records(&w.collect_src(&[])).remove(0);
    fs::write(
        first["index"].as_str().unwrap(),
        b"\x28\xb5\x2f\xfd garbage",
    )
    .unwrap();
    let out = w.collect_src(&[]);
    let err = w.redact(&out.stderr);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains("files from here on are copied, not linked"),
        "{err}"
    );
    let second = records(&out).remove(0);
    assert_eq!(second["new_files"], 2);
    assert_eq!(second["parent"], first["id"]);
}

/// A file rewritten in the same clock tick after the previous run read it keeps
/// its size and mtime; such "racy" entries are copied again, not trusted.
#[test]
fn racy_entries_are_copied_again() {
    let w = World::new();
    let f = w.write("src/f", "aaaa");
    let first = records(&w.collect_src(&[])).remove(0);
    // The rewrite lands after the read but carries the mtime it had (same tick).
    let mtime = fs::metadata(&f).unwrap().modified().unwrap();
    fs::write(&f, "bbbb").unwrap();
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let second = records(&w.collect_src(&[])).remove(0);
    assert_eq!(second["parent"], first["id"]);
    assert_eq!(second["new_files"], 1, "a racy entry must not be linked");
    let src_rel = fs::canonicalize(w.path("src")).unwrap();
    let copy = PathBuf::from(second["path"].as_str().unwrap())
        .join(src_rel.strip_prefix("/").unwrap())
        .join("f");
    assert_eq!(fs::read_to_string(copy).unwrap(), "bbbb");
}

/// A source inside the store is refused (exit 64) before anything is written.
#[test]
fn source_inside_store_is_refused() {
    let w = World::new();
    w.write("store/notes/a", "a");
    let out = w
        .cmd()
        .args([
            "--store",
            "store",
            "--min-free",
            "0",
            "--name",
            "s",
            "store/notes",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 64);
    assert_eq!(
        w.redact(&out.stderr),
        "snap-collect: set s: source [TMP]/store/notes: is inside the store [TMP]/store\n\
         snap-collect: hint: snapshots are already in the store; pick a source outside it or another --store\n"
    );
    assert!(!w.path("store/sets/s").exists());
}
