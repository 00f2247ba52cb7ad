//! The adversarial probe's findings (docs/reliability.md, "Under real
//! faults"), one test each, named after the finding: each reproduces what
//! the probe did and pins what a careful user expects instead.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use snap_e2e::{Pipeline, World, bin_dir, code, flip_byte, ok, records, rsync_changes, stderr};

fn archives(w: &World) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(w.path("store/archives/s"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Asserts `out` failed with `rc` and its stderr (redacted) says `needle`;
/// the redacted stderr, for more checks.
fn fails_saying(w: &World, out: &std::process::Output, rc: i32, needle: &str) -> String {
    assert_eq!(code(out), rc, "{}", stderr(out));
    let err = w.redact(&out.stderr);
    assert!(err.contains(needle), "{err}");
    err
}

/// Finding 1: a byte rotted in the store is refused by pack (65, naming the
/// file, no archive), named by verify with every snapshot that links the
/// same copy, and copied afresh by `collect --checksum` (exit 1, naming it),
/// after which pack is good again.
#[test]
fn bit_rot_in_the_store_never_travels() {
    let w = World::new();
    w.write_dated("src/a.txt", "hello world\n".repeat(1000));
    w.write_dated("src/b.txt", "other");
    let s1 = w.collect_ok(&[]);
    let tree1 = PathBuf::from(s1["path"].as_str().unwrap());
    let a = w.inside("src/a.txt");
    let rotted = tree1.join(&a);
    // How messages show the file inside a snapshot, after redaction.
    let a_shown = w.redact(format!("/{a}").as_bytes());
    flip_byte(&rotted, 100);

    // A plain collect links the rotted copy again, as rsync --link-dest does.
    let s2 = w.collect_ok(&[]);
    let id2 = s2["id"].as_str().unwrap().to_string();
    let tree2 = PathBuf::from(s2["path"].as_str().unwrap());
    assert_eq!(
        fs::metadata(tree2.join(&a)).unwrap().ino(),
        fs::metadata(&rotted).unwrap().ino()
    );

    let pack = w.pack(&[]);
    let err = fails_saying(
        &w,
        &pack,
        65,
        &format!(
            "snapshot file [TMP]/store/sets/s/{id2}{a_shown}: changed since the snapshot: sha256 "
        ),
    );
    assert!(err.contains("snap-collect --checksum"), "{err}");
    assert!(pack.stdout.is_empty());
    assert_eq!(archives(&w), Vec::<String>::new(), "nothing is published");

    let id1 = s1["id"].as_str().unwrap();
    let verify = w.restore(&["verify", &format!("s/{id1}")]);
    let err = fails_saying(
        &w,
        &verify,
        65,
        &format!("[TMP]/store/sets/s/{id1}{a_shown}: content changed: sha256 "),
    );
    assert!(
        err.contains(&format!(
            "; the same stored copy is in s/{id2} (damaged alike)"
        )),
        "{err}"
    );

    // Verify of the whole store names the damaged file in every snapshot.
    let all = w.restore(&["verify"]);
    assert_eq!(code(&all), 65);
    let err = w.redact(&all.stderr);
    for id in [id1, id2.as_str()] {
        let bad = format!("[TMP]/store/sets/s/{id}{a_shown}: content changed: sha256 ");
        assert!(err.contains(&bad), "{err}");
    }

    let out = w.collect(&["--checksum"]);
    let err = fails_saying(
        &w,
        &out,
        1,
        &format!("[TMP]/store/sets/s/{id2}{a_shown}: the stored copy is damaged: sha256 "),
    );
    assert!(err.contains("copied afresh from [TMP]/src/a.txt"), "{err}");
    let s3 = records(&out).pop().unwrap();
    assert_eq!(s3["damaged_in_store"], serde_json::json!(1));
    let tree3 = PathBuf::from(s3["path"].as_str().unwrap());
    assert_eq!(
        fs::read(tree3.join(&a)).unwrap(),
        fs::read(w.path("src/a.txt")).unwrap()
    );
    ok(&w.pack(&[]));
    let id3 = s3["id"].as_str().unwrap();
    ok(&w.restore(&["verify", &format!("s/{id3}")]));
    ok(&w.restore(&["verify", "--archive", &format!("s/{id3}")]));
}

/// A full archive and an incremental one on it (`s/A`, `s/B`), then a third
/// snapshot to pack; returns the ids A and B.
fn chain_of_two(w: &World) -> (String, String) {
    w.write_dated("src/a.txt", "first\n".repeat(5000));
    w.write_dated("src/b.txt", "stays\n".repeat(5000));
    let a = w.collect_ok(&[])["id"].as_str().unwrap().to_string();
    ok(&w.pack(&[]));
    w.write_dated("src/a.txt", "second\n".repeat(5000));
    let b = w.collect_ok(&[])["id"].as_str().unwrap().to_string();
    let out = w.pack(&["--incremental"]);
    ok(&out);
    assert_eq!(records(&out)[0]["base"], serde_json::json!(a));
    w.write_dated("src/a.txt", "third\n".repeat(5000));
    w.collect_ok(&[]);
    (a, b)
}

/// A way to damage archive `A` of a world.
type Damage = fn(&World, &str);

/// Finding 2: `verify` of an incremental archive reads its whole chain: a
/// flipped or cut base, or a base whose record is gone, is 65 naming it, and
/// `pack --incremental` builds a full archive instead of one on that base,
/// saying why.
#[test]
fn verify_covers_the_chain() {
    let damages: [(&str, Damage); 3] = [
        ("flipped", |w, a| {
            flip_byte(&w.path(&format!("store/archives/s/{a}.tar.zst")), 200)
        }),
        ("cut", |w, a| {
            let p = w.path(&format!("store/archives/s/{a}.tar.zst"));
            let len = fs::metadata(&p).unwrap().len();
            fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
        ("record removed", |w, a| {
            fs::remove_file(w.path(&format!("store/archives/s/{a}.json"))).unwrap()
        }),
    ];
    for (what, damage) in damages {
        let w = World::new();
        let (a, b) = chain_of_two(&w);
        ok(&w.restore(&["verify", "--archive", &format!("s/{b}")]));
        damage(&w, &a);
        let out = w.restore(&["verify", "--archive", &format!("s/{b}")]);
        assert_eq!(code(&out), 65, "{what}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&a), "{what}: {err}");
        assert!(!err.contains("all good"), "{what}: {err}");
        // The same from the archive folder read as a destination.
        let out = w.run(
            "snap-restore",
            &["--from", "store/archives", "verify", &format!("s/{b}")],
        );
        assert_eq!(code(&out), 65, "{what}, --from: {}", stderr(&out));
        assert!(stderr(&out).contains(&a), "{what}: {}", stderr(&out));

        let out = w.pack(&["--incremental"]);
        ok(&out);
        let rec = &records(&out)[0];
        assert_eq!(rec["base"], serde_json::Value::Null, "{what}");
        let err = w.redact(&out.stderr);
        assert!(err.contains("full archive: "), "{what}: {err}");
        assert!(err.contains("archive s/"), "{what}: {err}");
    }
}

/// Finding 2, the cost: `verify` of everything reads each archive once,
/// though two incremental archives stand on the full one (strace counts the
/// opens); a full archive too damaged to decode is named, fails both that
/// need it, and the rest is still verified.
#[test]
fn verify_of_everything_reads_each_archive_once() {
    let w = World::new();
    let (a, b) = chain_of_two(&w);
    let out = w.pack(&["--incremental"]);
    ok(&out);
    let c = records(&out)[0]["id"].as_str().unwrap().to_string();
    assert_eq!(records(&out)[0]["base"], serde_json::json!(b));
    let data = format!("archives/s/{a}.tar.zst");
    let verify = bin_dir().join("snap-restore");
    let verify = verify.to_str().unwrap();
    // The opens of A's data by a verify of NAMES (none: everything).
    let opens = |trace: &str, names: &[&str]| {
        let mut args = vec!["-f", "-qq", "-s", "4096", "-o", trace];
        args.extend(["-e", "trace=open,openat,openat2", verify]);
        args.extend(["--store", "store", "verify", "--archive"]);
        args.extend(names);
        let out = w.run("strace", &args);
        let text = fs::read_to_string(w.path(trace)).unwrap();
        let n = text.lines().filter(|l| l.contains(&data)).count();
        (out, n)
    };
    let (out, alone) = opens("alone.trace", &[&format!("s/{a}")]);
    ok(&out);
    assert!(alone > 0, "no open of {data} seen");
    let (out, all) = opens("all.trace", &[]);
    ok(&out);
    assert_eq!(
        all, alone,
        "verify of everything read {data} more than once"
    );
    flip_byte(&w.path(&format!("store/archives/s/{a}.tar.zst")), 200);
    let (out, all) = opens("bad.trace", &[]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert_eq!(
        all, alone,
        "verify of everything read {data} more than once"
    );
    // It goes on past the damage: three snapshots and three archives.
    assert_eq!(records(&out).len(), 6, "{}", stderr(&out));
    let bad: Vec<String> = records(&out)
        .iter()
        .filter(|r| r["errors"].as_u64() != Some(0))
        .map(|r| r["what"].as_str().unwrap().to_string())
        .collect();
    for id in [&a, &b, &c] {
        assert!(
            bad.contains(&format!("s/{id}")),
            "s/{id} not failed: {bad:?}\n{}",
            stderr(&out)
        );
    }
}

fn cat(w: &World, name: &str, path: &str) -> String {
    let out = w.restore(&["cat", name, &w.inside(path)]);
    ok(&out);
    String::from_utf8(out.stdout).unwrap()
}

/// Finding 3: a clock a day behind, then a year ahead, never reorders a
/// set: each snapshot sorts after its parent (warned, with the skew), so
/// `latest`, `cat`, `--keep-last` and `pack --latest` follow the chain.
#[test]
fn a_clock_step_never_reorders_snapshots() {
    let w = World::new();
    w.write_dated("src/a.txt", "one");
    let s1 = w.collect_ok(&[]);
    w.write_dated("src/a.txt", "two, behind");
    let out = w.run_at(
        "-1d",
        "snap-collect",
        &["--store", "store", "--min-free", "0", "--name", "s", "src"],
    );
    ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            " behind the newest snapshot {}: this snapshot is dated one second after it",
            s1["id"].as_str().unwrap()
        )),
        "{err}"
    );
    let s2 = records(&out).pop().unwrap();
    let (id1, id2) = (s1["id"].as_str().unwrap(), s2["id"].as_str().unwrap());
    assert!(id2 > id1, "{id2} sorts after {id1}");
    assert_eq!(s2["parent"], serde_json::json!(id1));
    assert!(
        s2["clock"].is_string(),
        "the record keeps the clock's time: {s2}"
    );
    assert_eq!(cat(&w, "s/latest", "src/a.txt"), "two, behind");

    // A run a year ahead, then the right clock again: it still sorts last,
    // and pack --latest packs it rather than saying "already packed".
    w.write_dated("src/a.txt", "three, ahead");
    ok(&w.run_at(
        "+365d",
        "snap-collect",
        &["--store", "store", "--min-free", "0", "--name", "s", "src"],
    ));
    ok(&w.pack(&[]));
    w.write_dated("src/a.txt", "four, right");
    let s4 = w.collect_ok(&[]);
    assert_eq!(cat(&w, "s/latest", "src/a.txt"), "four, right");
    let out = w.pack(&[]);
    ok(&out);
    assert_eq!(records(&out)[0]["id"], s4["id"], "{}", stderr(&out));

    let out = w.run("snap-prune", &["--store", "store", "--keep-last", "1"]);
    ok(&out);
    let kept: Vec<_> = records(&out)
        .into_iter()
        .filter(|r| r["action"] == "keep" && r["what"] == "snapshot")
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(kept, vec![s4["id"].clone()]);
    assert_eq!(cat(&w, "s/latest", "src/a.txt"), "four, right");
}

/// Finding 11: `restore /dev/zero` ends at once, where GNU tar ends it: two
/// zero blocks are an empty archive, said as such, exit 0 as `tar -x`.
#[test]
fn a_stream_of_zeros_is_an_empty_archive() {
    let w = World::new();
    let out = w
        .tool("timeout")
        .arg("60")
        .arg(snap_e2e::bin_dir().join("snap-restore"))
        .args(["restore", "/dev/zero", "--to", "out"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        w.redact(&out.stderr),
        "snap-restore: /dev/zero: an empty archive (it begins with its end-of-archive blocks, as GNU tar reads it); nothing to restore\n\
         snap-restore: /dev/zero -> [TMP]/out: 0 files, 0 B written\n"
    );
    let tar = w
        .tool("tar")
        .args(["-xf", "/dev/zero", "-C", "out"])
        .output()
        .unwrap();
    assert_eq!(code(&tar), 0, "GNU tar agrees");
    assert_eq!(fs::read_dir(w.path("out")).unwrap().count(), 0);
}

/// Finding 4: a restore locks its target. A second restore into it exits 75
/// naming the holder; two racing with --overwrite leave one snapshot whole.
#[test]
fn two_restores_into_one_target_never_mix() {
    let w = World::new();
    for i in 0..30 {
        w.write_dated(&format!("src/f{i}"), format!("one {i}\n").repeat(3000));
    }
    let s1 = w.collect_ok(&[])["path"].as_str().unwrap().to_string();
    for i in 0..30 {
        w.write_dated(&format!("src/f{i}"), format!("two {i}\n").repeat(4000));
    }
    let s2 = w.collect_ok(&[])["path"].as_str().unwrap().to_string();
    let (id1, id2) = (
        format!("s/{}", s1.rsplit('/').next().unwrap()),
        format!("s/{}", s2.rsplit('/').next().unwrap()),
    );

    fs::create_dir(w.path("held")).unwrap();
    let mut holder = w
        .tool("flock")
        .arg(w.path("held"))
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    while code(&w.run("flock", &["-n", "held", "true"])) == 0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = w.restore(&["restore", &id1, "--to", "held"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert_eq!(
        w.redact(&out.stderr),
        format!(
            "snap-restore: restoring into [TMP]/held: another restore into it is running: flock (pid {})\n\
             snap-restore: hint: try again when it is done; two restores into one folder would mix their files\n",
            holder.id()
        )
    );
    assert_eq!(fs::read_dir(w.path("held")).unwrap().count(), 0);

    for round in 0..3 {
        let to = format!("r{round}");
        let spawn = |name: &str| {
            w.tool("snap-restore")
                .args([
                    "--store",
                    "store",
                    "restore",
                    name,
                    "--to",
                    &to,
                    "--overwrite",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(&id1), spawn(&id2));
        for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            assert!([0, 75].contains(&code(&out)), "{}", stderr(&out));
        }
        let got = w.path(&to);
        let one = rsync_changes(Path::new(&s1), &got).is_empty();
        let two = rsync_changes(Path::new(&s2), &got).is_empty();
        assert!(one || two, "round {round}: the target mixes both snapshots");
    }
}

/// Finding 5: a restore over the right bytes with the wrong mode, owner and
/// mtime sets them again without rewriting the bytes; `--dry-run` names
/// them first, and rsync then finds nothing to change.
#[test]
fn a_restore_repairs_metadata() {
    let w = World::new();
    for i in 0..5 {
        w.write_dated(&format!("src/d/f{i}"), format!("file {i}\n").repeat(100));
    }
    std::os::unix::fs::symlink("f0", w.path("src/d/link")).unwrap();
    let snap = w.collect_ok(&[]);
    let tree = PathBuf::from(snap["path"].as_str().unwrap());
    let name = format!("s/{}", snap["id"].as_str().unwrap());
    ok(&w.restore(&["restore", &name, "--to", "r"]));
    assert_eq!(rsync_changes(&tree, &w.path("r")), "");

    let f1 = w.path("r").join(w.inside("src/d/f1"));
    let f2 = w.path("r").join(w.inside("src/d/f2"));
    let inode = fs::metadata(&f1).unwrap().ino();
    fs::set_permissions(&f1, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    snap_e2e::set_mtime(&f2, 1_700_000_000);
    let as_root = rustix_is_root();
    if as_root {
        std::os::unix::fs::lchown(&f2, Some(65534), Some(65534)).unwrap();
    }
    assert_ne!(rsync_changes(&tree, &w.path("r")), "");

    let out = w.restore(&["restore", &name, "--to", "r", "--dry-run"]);
    ok(&out);
    let err = w.redact(&out.stderr);
    let f2_differs = if as_root { "owner, mtime" } else { "mtime" };
    assert!(
        err.contains(&format!("set attributes: {} (mode)", w.inside("src/d/f1"))),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "set attributes: {} ({f2_differs})",
            w.inside("src/d/f2")
        )),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert_ne!(
        rsync_changes(&tree, &w.path("r")),
        "",
        "a dry run changes nothing"
    );

    let out = w.restore(&["restore", &name, "--to", "r"]);
    ok(&out);
    let err = w.redact(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: the content was right; mode, owner and mtime set again",
            w.inside("src/d/f1")
        )),
        "{err}"
    );
    assert!(
        err.contains(": 6 files, 0 B written, 6 already there (2 with their attributes set again)"),
        "{err}"
    );
    assert_eq!(records(&out)[0]["repaired"], serde_json::json!(2));
    assert_eq!(rsync_changes(&tree, &w.path("r")), "");
    assert_eq!(
        fs::metadata(&f1).unwrap().ino(),
        inode,
        "the bytes were not rewritten"
    );
}

fn rustix_is_root() -> bool {
    fs::metadata("/proc/self").unwrap().uid() == 0
}

/// Finding 8: names of 245 to 255 bytes collect, pack and restore (from the
/// snapshot and from its archive) equal to the source: temporary names fit.
#[test]
fn names_at_the_limit_restore() {
    let w = World::new();
    for len in [244, 245, 250, 255] {
        w.write_dated(&format!("src/{}", "n".repeat(len)), format!("{len}\n"));
    }
    std::os::unix::fs::symlink("x", w.path(&format!("src/{}", "l".repeat(255)))).unwrap();
    let snap = w.collect_ok(&[]);
    let tree = PathBuf::from(snap["path"].as_str().unwrap());
    ok(&w.pack(&[]));
    let name = format!("s/{}", snap["id"].as_str().unwrap());
    ok(&w.restore(&["restore", &name, "--to", "from-tree"]));
    assert_eq!(rsync_changes(&tree, &w.path("from-tree")), "");
    ok(&w.restore(&["restore", "--archive", &name, "--to", "from-archive"]));
    assert_eq!(rsync_changes(&tree, &w.path("from-archive")), "");
    let leftovers = w.run(
        "find",
        &["from-tree", "from-archive", "-name", "*.snap-part"],
    );
    assert_eq!(String::from_utf8_lossy(&leftovers.stdout), "");
}

/// Finding 12: with --overwrite, a file where the snapshot has a folder is
/// replaced by the folder (tar --overwrite does the same), never "give
/// --overwrite".
#[test]
fn overwrite_replaces_a_file_where_a_folder_belongs() {
    let w = World::new();
    w.write_dated("src/d/f", "inside");
    let snap = w.collect_ok(&[]);
    let name = format!("s/{}", snap["id"].as_str().unwrap());
    let d = w.path("r").join(w.inside("src/d"));
    fs::create_dir_all(d.parent().unwrap()).unwrap();
    fs::write(&d, "a file where the folder belongs").unwrap();
    let out = w.restore(&["restore", &name, "--to", "r"]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("give --overwrite"),
        "{}",
        stderr(&out)
    );
    let out = w.restore(&["restore", &name, "--to", "r", "--overwrite"]);
    ok(&out);
    assert_eq!(fs::read_to_string(d.join("f")).unwrap(), "inside");
}

/// Finding 12: `--path` of a hard link's second name restores it, from the
/// tree and from the archive, as `tar -x NAME` does.
#[test]
fn path_of_a_hard_links_second_name_restores() {
    let w = World::new();
    w.write_dated("src/a", "shared content");
    fs::hard_link(w.path("src/a"), w.path("src/b")).unwrap();
    fs::hard_link(w.path("src/a"), w.path("src/c")).unwrap();
    let snap = w.collect_ok(&[]);
    ok(&w.pack(&[]));
    let name = format!("s/{}", snap["id"].as_str().unwrap());
    let (b, c) = (w.inside("src/b"), w.inside("src/c"));
    for (to, archive) in [("tree", false), ("archive", true)] {
        let mut args = vec!["restore", &name, "--to", to, "--path", &b, "--path", &c];
        if archive {
            args.push("--archive");
        }
        let out = w.restore(&args);
        ok(&out);
        let got = w.path(to).join(&b);
        assert_eq!(fs::read_to_string(&got).unwrap(), "shared content");
        let other = fs::metadata(w.path(to).join(&c)).unwrap();
        assert_eq!(
            other.ino(),
            fs::metadata(&got).unwrap().ino(),
            "{to}: b and c are one file"
        );
        assert!(
            !w.path(to).join(w.inside("src/a")).exists(),
            "{to}: a was not chosen"
        );
    }
}

/// Finding 12: a closed stderr (`2>&1 | head -1` after head is gone) never
/// panics: the exit code is still the documented one.
#[test]
fn a_closed_stderr_never_panics() {
    let w = World::new();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = w
        .tool("snap-prune")
        .args(["--store", "nowhere", "--keep-last", "1"])
        .stderr(writer)
        .output()
        .unwrap();
    assert_eq!(code(&out), 66);
}

/// Finding 12: `"store": ""` in a config is a config error naming the file
/// and the key (78), not a message without a path.
#[test]
fn an_empty_store_in_the_config_is_named() {
    let w = World::new();
    let config = w.write_dated(
        "c.json",
        r#"{"store": "", "backup_sets": [{"name": "s", "sources": ["/tmp"]}]}"#,
    );
    let out = w.run("snap-collect", &["--config", config.to_str().unwrap()]);
    assert_eq!(code(&out), 78);
    assert_eq!(
        w.redact(&out.stderr),
        "snap-collect: config [TMP]/c.json: store: is empty; give the store's folder, like \"~/.local/share/snap\", or leave it out\n"
    );
}

/// Finding 12: the CLI refuses to restore into the store, as the page does.
#[test]
fn restore_into_the_store_is_refused() {
    let w = World::new();
    w.write_dated("src/a", "a");
    let snap = w.collect_ok(&[]);
    let name = format!("s/{}", snap["id"].as_str().unwrap());
    let out = w.restore(&["restore", &name, "--to", "store/sets"]);
    assert_eq!(code(&out), 64, "{}", stderr(&out));
    assert_eq!(
        w.redact(&out.stderr),
        "snap-restore: restore to [TMP]/store/sets: is inside the store; restore somewhere else\n"
    );
    assert_eq!(fs::read_dir(w.path("store/sets")).unwrap().count(), 1);
}

/// Finding 12: `list` marks an incremental archive whose base is gone.
#[test]
fn list_marks_an_archive_whose_base_is_gone() {
    let w = World::new();
    let (a, b) = chain_of_two(&w);
    for suffix in ["json", "tar.zst", "index.zst", "sha256"] {
        fs::remove_file(w.path(&format!("store/archives/s/{a}.{suffix}"))).unwrap();
    }
    let out = w.restore(&["list"]);
    ok(&out);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = listing
        .lines()
        .find(|l| l.contains(&b) && l.contains("archive"))
        .unwrap();
    assert!(
        line.ends_with(&format!(
            "on {a}, seekable, BROKEN: its base {a} is gone; it cannot be restored"
        )),
        "{listing}"
    );
}

/// Finding 10: one record cut short is named and stepped over: the next
/// collect of its set builds on the newest readable snapshot (exit 1),
/// `pack --latest` packs the other sets and names it (65), `list` lists the
/// rest and names it (65), and names of other snapshots resolve.
#[test]
fn one_truncated_record_is_named_and_skipped() {
    let w = World::new();
    w.write_dated("src/a", "a");
    let first = w.collect_ok(&[])["id"].as_str().unwrap().to_string();
    let cut = w.collect_ok(&[])["id"].as_str().unwrap().to_string();
    ok(&w.run(
        "snap-collect",
        &["--store", "store", "--min-free", "0", "--name", "t", "src"],
    ));
    let record = w.path(&format!("store/sets/s/{cut}.json"));
    let len = fs::metadata(&record).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&record)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let shown = format!("[TMP]/store/sets/s/{cut}.json");

    let pack = w.pack(&[]);
    assert_eq!(code(&pack), 65, "{}", stderr(&pack));
    assert_eq!(records(&pack).len(), 1, "set t is packed");
    assert!(
        w.redact(&pack.stderr)
            .contains(&format!("snap-pack: {shown}: not a snapshot record: "))
    );

    let list = w.restore(&["list"]);
    assert_eq!(code(&list), 65);
    let listing = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        listing.contains(&first) && listing.contains("t  "),
        "{listing}"
    );
    assert!(
        w.redact(&list.stderr)
            .contains(&format!("snap-restore: {shown}: not a JSON record: "))
    );
    ok(&w.restore(&["cat", "t/latest", &w.inside("src/a")]));
    assert_eq!(
        code(&w.restore(&["cat", "s/latest", &w.inside("src/a")])),
        65
    );

    let out = w.collect(&[]);
    let err = fails_saying(
        &w,
        &out,
        1,
        &format!("snap-collect: error: {shown}: not a snapshot record: "),
    );
    assert!(
        err.contains(&format!(
            "stepped over (its tree is still there), the new snapshot builds on {first}"
        )),
        "{err}"
    );
    let rec = records(&out).pop().unwrap();
    assert_eq!(rec["parent"], serde_json::json!(first));
    ok(&w.restore(&["cat", "s/latest", &w.inside("src/a")]));
}

/// Finding 6: a file rewritten in place all through the collect (same size,
/// as a database does) is read twice, then named and left out (exit 1):
/// the snapshot never holds bytes that were never on disk together. The
/// rest of the tree is collected.
#[test]
fn a_file_that_changes_while_read_is_named_not_torn() {
    let w = World::new();
    w.write_dated("src/calm", "calm");
    let busy = w.write_dated("src/busy.db", vec![7u8; 40 << 20]);
    let started = w.path("writer-started");
    let mut writer = w
        .tool("python3")
        .arg("-c")
        .arg(
            "import os, sys, time\n\
             fd = os.open(sys.argv[1], os.O_WRONLY)\n\
             open(sys.argv[2], 'w').close()\n\
             end = time.time() + 120\n\
             i = 0\n\
             while time.time() < end:\n\
             \x20   os.pwrite(fd, os.urandom(4096), (i * 7919 * 4096) % (40 << 20))\n\
             \x20   i += 1\n",
        )
        .arg(&busy)
        .arg(&started)
        .spawn()
        .unwrap();
    while !started.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The writer may miss a whole read on a busy machine (then that read is
    // whole and the run exits 0); a few runs give it the chance.
    let out = (0..5)
        .map(|_| w.collect(&[]))
        .find(|out| code(out) != 0)
        .expect("the writer never overlapped a read");
    writer.kill().unwrap();
    writer.wait().unwrap();
    let err = fails_saying(
        &w,
        &out,
        1,
        "[TMP]/src/busy.db: changed while it was read; reading it again",
    );
    assert!(
        err.contains(
            "[TMP]/src/busy.db: changed while it was read, twice: left out of this snapshot"
        ),
        "{err}"
    );
    let rec = records(&out).pop().unwrap();
    assert_eq!(rec["errors"], serde_json::json!(1));
    let tree = PathBuf::from(rec["path"].as_str().unwrap());
    assert!(!tree.join(w.inside("src/busy.db")).exists());
    assert_eq!(
        fs::read_to_string(tree.join(w.inside("src/calm"))).unwrap(),
        "calm"
    );
    ok(&w.restore(&["verify", &format!("s/{}", rec["id"].as_str().unwrap())]));
}

/// Finding 7: a store copied elsewhere is a store of its own: pack writes
/// its archive into the copy, and once the original is gone, collect,
/// pack, verify and restore of the copy all work and never recreate it.
#[test]
fn a_moved_store_never_writes_into_the_old_one() {
    let w = World::new();
    w.write_dated("src/a", "one");
    w.collect_ok(&[]);
    let copied = w.run("cp", &["-a", "store", "moved"]);
    ok(&copied);
    let pack = |store: &str| {
        w.run(
            "snap-pack",
            &["--store", store, "--min-free", "0", "--latest"],
        )
    };
    let out = pack("moved");
    ok(&out);
    let archive = records(&out)[0]["path"].as_str().unwrap().to_string();
    assert!(
        archive.starts_with(w.path("moved").to_str().unwrap()),
        "{archive}"
    );
    assert!(
        !w.path("store/archives").exists(),
        "nothing was written into the old store"
    );

    fs::remove_dir_all(w.path("store")).unwrap();
    w.write_dated("src/a", "two!");
    let out = w.run(
        "snap-collect",
        &["--store", "moved", "--min-free", "0", "--name", "s", "src"],
    );
    ok(&out);
    let snap = records(&out).pop().unwrap();
    assert!(
        snap["path"]
            .as_str()
            .unwrap()
            .starts_with(w.path("moved").to_str().unwrap())
    );
    ok(&pack("moved"));
    let name = format!("s/{}", snap["id"].as_str().unwrap());
    for args in [
        vec!["--store", "moved", "verify", name.as_str()],
        vec!["--store", "moved", "verify", "--archive", name.as_str()],
        vec![
            "--store",
            "moved",
            "restore",
            "--archive",
            name.as_str(),
            "--to",
            "r",
        ],
    ] {
        ok(&w.run("snap-restore", &args));
    }
    assert_eq!(
        fs::read_to_string(w.path("r").join(w.inside("src/a"))).unwrap(),
        "two!"
    );
    assert!(
        !w.path("store").exists(),
        "the old store was not made again"
    );
}

/// Runs qemu-img or qemu-io with `args` in the world; it must succeed.
fn qemu(w: &World, tool: &str, args: &[&str]) -> String {
    let out = w.run(tool, args);
    assert_eq!(code(&out), 0, "{tool} {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img info`'s format and virtual size of an image.
fn qemu_info(w: &World, image: &str) -> (String, u64) {
    let info: serde_json::Value =
        serde_json::from_str(&qemu(w, "qemu-img", &["info", "--output=json", image])).unwrap();
    (
        info["format"].as_str().unwrap().to_string(),
        info["virtual-size"].as_u64().unwrap(),
    )
}

/// Finding 13: the QCOW2 guide's whole internal-snapshot workflow (create,
/// list, restore, delete) works on the QEMU installed: Debian 12's 7.2 in
/// CI (its `qemu-img snapshot` takes no `-f`), and newer ones.
#[test]
fn qcow2_internal_snapshots_work_on_debian_12s_qemu() {
    let w = World::new();
    eprintln!(
        "{}",
        qemu(&w, "qemu-img", &["--version"]).lines().next().unwrap()
    );
    qemu(
        &w,
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "vm,1.qcow2", "16M"],
    );
    qemu(&w, "qemu-io", &["-c", "write -P 1 0 1M", "vm,1.qcow2"]);
    let disk = |args: &[&str]| {
        let mut all = vec!["--store", "store"];
        all.extend_from_slice(args);
        let out = w.run("snap-disk", &all);
        ok(&out);
        out
    };
    disk(&["create", "--disk", "vm", "vm,1.qcow2", "before-upgrade"]);
    qemu(&w, "qemu-io", &["-c", "write -P 2 0 1M", "vm,1.qcow2"]);
    let listed = String::from_utf8_lossy(&disk(&["list", "vm"]).stdout).into_owned();
    assert!(listed.contains("before-upgrade"), "{listed}");
    disk(&["restore", "vm", "before-upgrade"]);
    qemu(&w, "qemu-io", &["-c", "read -P 1 0 1M", "vm,1.qcow2"]);
    qemu(&w, "qemu-img", &["check", "vm,1.qcow2"]);
    disk(&["delete", "vm", "before-upgrade"]);
    let snaps = qemu(&w, "qemu-img", &["snapshot", "-l", "vm,1.qcow2"]);
    assert!(!snaps.contains("before-upgrade"), "{snaps}");
}

/// Finding 14: a dynamic VHD of exactly 10,485,760 bytes (as Windows makes
/// them) restored in place keeps its format and virtual size: qemu-img
/// info agrees with the record before and after.
#[test]
fn a_restored_vhd_keeps_its_virtual_size() {
    let w = World::new();
    qemu(
        &w,
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vpc",
            "-o",
            "force_size=on",
            "d.vhd",
            "10485760",
        ],
    );
    qemu(
        &w,
        "qemu-io",
        &["-f", "vpc", "-c", "write -P 7 0 1M", "d.vhd"],
    );
    assert_eq!(qemu_info(&w, "d.vhd"), ("vpc".to_string(), 10_485_760));
    let out = w.run("snap-disk", &["--store", "store", "create", "d.vhd", "s1"]);
    ok(&out);
    assert_eq!(
        records(&out)[0]["virtual_size"],
        serde_json::json!(10_485_760)
    );
    qemu(
        &w,
        "qemu-io",
        &["-f", "vpc", "-c", "write -P 9 2M 1M", "d.vhd"],
    );
    ok(&w.run("snap-disk", &["--store", "store", "restore", "d", "s1"]));
    assert_eq!(qemu_info(&w, "d.vhd"), ("vpc".to_string(), 10_485_760));
    qemu(
        &w,
        "qemu-io",
        &[
            "-f",
            "vpc",
            "-c",
            "read -P 7 0 1M",
            "-c",
            "read -P 0 2M 1M",
            "d.vhd",
        ],
    );
}

/// Finding 15: images of formats snap-disk does not take (Parallels, QED,
/// qcow v1) are refused by name (65), never snapshotted as raw bytes.
#[test]
fn a_parallels_image_is_refused_not_read_as_raw() {
    let w = World::new();
    for (format, file) in [("parallels", "p.hdd"), ("qed", "q.qed"), ("qcow", "o.qcow")] {
        qemu(&w, "qemu-img", &["create", "-q", "-f", format, file, "8M"]);
        let out = w.run("snap-disk", &["--store", "store", "create", file, "s1"]);
        assert_eq!(code(&out), 65, "{format}: {}", stderr(&out));
        assert_eq!(
            w.redact(&out.stderr),
            format!(
                "snap-disk: {file}: is a {format} image, which snap-disk does not take (raw, qcow2, VMDK, VHDX, VHD and VDI); it is never read as raw\n\
                 snap-disk: hint: convert it first: qemu-img convert -f {format} -O qcow2 {file} NEW.qcow2\n"
            )
        );
        assert!(out.stdout.is_empty());
    }
    assert!(
        !w.path("store/disks").exists()
            || fs::read_dir(w.path("store/disks")).unwrap().count() == 0
    );
}

/// Finding 16: a qcow2 v2 image (compat 0.10) takes blocks snapshots
/// without a persistent bitmap, saying so; each reads the image whole and
/// exports equal to it.
#[test]
fn a_qcow2_v2_image_takes_blocks_snapshots() {
    let w = World::new();
    qemu(
        &w,
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "compat=0.10",
            "v2.qcow2",
            "8M",
        ],
    );
    for (i, at) in ["0", "2M"].iter().enumerate() {
        qemu(
            &w,
            "qemu-io",
            &["-c", &format!("write -P {} {at} 1M", i + 1), "v2.qcow2"],
        );
        let name = format!("s{i}");
        let out = w.run(
            "snap-disk",
            &[
                "--store", "store", "create", "--method", "blocks", "v2.qcow2", &name,
            ],
        );
        ok(&out);
        assert!(
            w.redact(&out.stderr).contains(
                "v2.qcow2 is a qcow2 v2 image (compat 0.10), which keeps no dirty bitmap"
            ),
            "{}",
            stderr(&out)
        );
        ok(&w.run(
            "snap-disk",
            &["--store", "store", "export", "v2", &name, "out.raw"],
        ));
        qemu(
            &w,
            "qemu-img",
            &["compare", "-f", "raw", "-F", "qcow2", "out.raw", "v2.qcow2"],
        );
        fs::remove_file(w.path("out.raw")).unwrap();
    }
    assert!(qemu_info(&w, "v2.qcow2").0 == "qcow2");
}

/// Finding 9: a file under a path of over 4096 bytes (PATH_MAX) collects,
/// packs, verifies, cats and restores (from the tree and the archive)
/// equal to the source, as rsync and GNU tar find it.
#[test]
fn paths_longer_than_path_max_round_trip() {
    let w = World::new();
    let made = w
        .tool("bash")
        .arg("-c")
        .arg("cd src && n=$(printf 'd%.0s' $(seq 250)) && for i in $(seq 18); do mkdir $n && cd $n; done && echo deep > f")
        .status()
        .unwrap();
    assert!(made.success());
    w.write_dated("src/top", "top");
    let snap = w.collect_ok(&[]);
    let name = format!("s/{}", snap["id"].as_str().unwrap());
    ok(&w.pack(&[]));
    ok(&w.restore(&["verify", &name]));
    ok(&w.restore(&["verify", "--archive", &name]));
    let deep = format!(
        "{}/{}f",
        w.inside("src"),
        format!("{}/", "d".repeat(250)).repeat(18)
    );
    assert!(deep.len() > 4096);
    for archive in [false, true] {
        let mut args = vec!["cat", name.as_str(), deep.as_str()];
        if archive {
            args.insert(1, "--archive");
        }
        let out = w.restore(&args);
        ok(&out);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "deep\n");
    }
    ok(&w.restore(&["restore", &name, "--to", "from-tree"]));
    ok(&w.restore(&["restore", "--archive", &name, "--to", "from-archive"]));
    // rsync stops at PATH_MAX itself; GNU tar walks deeper: the same tar of
    // both trees (names, types, modes, owners, mtimes, content) is equality.
    let tar_of = |dir: &Path| {
        let out = w
            .tool("tar")
            .args(["--format=gnu", "--sort=name", "-C"])
            .arg(dir)
            .args(["-cf", "-", "."])
            .output()
            .unwrap();
        ok(&out);
        out.stdout
    };
    let source = tar_of(&w.path("src"));
    for to in ["from-tree", "from-archive"] {
        let restored = w.path(to).join(w.inside("src"));
        assert!(tar_of(&restored) == source, "{to} differs from the source");
    }
    let archive = records(&w.run("snap-restore", &["--store", "store", "list", "--json"]))
        .into_iter()
        .find(|r| r["kind"] == "archive")
        .unwrap();
    let listed = w.run("tar", &["--zstd", "-tf", archive["path"].as_str().unwrap()]);
    ok(&listed);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&deep),
        "GNU tar reads the long name"
    );
}
