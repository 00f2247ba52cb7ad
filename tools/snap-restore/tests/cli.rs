//! CLI tests for snap-pack and snap-restore together: round trips through
//! every kind of archive, interop with GNU tar and age, hostile archives,
//! damaged data, and the error paths with their exit codes.
//!
//! The binaries of snap-collect and snap-pack are used too: `cargo xtask test`
//! builds every binary before running the tests.

use snap_testkit::World;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// A scratch world with a small tricky tree in `src/`, collected once as set `s`.
/// A world with a small tricky tree in `src/`, collected once as set `s`.
fn world() -> World {
    let w = World::new();
    w.write("src/a.txt", "alpha\n");
    w.write("src/docs/b.txt", "b".repeat(100_000));
    w.write(&format!("src/{}/long.txt", "n".repeat(120)), "long name\n");
    std::os::unix::fs::symlink("../a.txt", w.path("src/docs/link")).unwrap();
    fs::hard_link(w.path("src/a.txt"), w.path("src/hard")).unwrap();
    fs::set_permissions(w.path("src/docs/b.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(
        w.path("src")
            .join(std::ffi::OsStr::from_bytes_compat(b"caf\xe9")),
        "latin1\n",
    )
    .unwrap();
    snap_testkit::world::set_mtime(&w.path("src/a.txt"), 1_600_000_000);
    w.collect();
    w
}

/// What these tests do in the shared test world.
trait RestoreWorld {
    /// A tool, run in the world.
    fn cmd(&self, name: &str) -> Command;

    fn collect(&self) -> Output;

    fn pack(&self, args: &[&str]) -> Output;

    fn restore(&self, args: &[&str]) -> Output;

    /// The source tree as the snapshot keeps it (under its absolute path),
    /// below `root`.
    fn src_in(&self, root: &str) -> PathBuf;
}

impl RestoreWorld for World {
    fn cmd(&self, name: &str) -> Command {
        Command::from_std(self.tool(name))
    }

    fn collect(&self) -> Output {
        let out = self
            .cmd("snap-collect")
            .args([
                "--store",
                "store",
                "--min-free",
                "0",
                "--name",
                "s",
                "src",
                "-q",
            ])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn pack(&self, args: &[&str]) -> Output {
        self.cmd("snap-pack")
            .args([
                "--store",
                "store",
                "--min-free",
                "0",
                "-q",
                "--snapshot",
                "s/latest",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    fn restore(&self, args: &[&str]) -> Output {
        self.cmd("snap-restore")
            .args(["--store", "store", "-q"])
            .args(args)
            .output()
            .unwrap()
    }

    fn src_in(&self, root: &str) -> PathBuf {
        let src = fs::canonicalize(self.path("src")).unwrap();
        self.path(root).join(src.strip_prefix("/").unwrap())
    }
}

trait FromBytesCompat {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytesCompat for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn records(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Asserts two trees hold the same entries, contents, modes, mtimes (ns) and symlink targets.
fn assert_same_tree(a: &Path, b: &Path) {
    assert_same_tree_at(a, b, 1);
}

/// Like [`assert_same_tree`], with mtimes compared in units of `tick` ns (GNU tar keeps seconds).
fn assert_same_tree_at(a: &Path, b: &Path, tick: i64) {
    let list = |root: &Path| {
        let mut v = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                let content = if m.is_file() {
                    fs::read(&p).unwrap()
                } else if m.file_type().is_symlink() {
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes()
                } else {
                    Vec::new()
                };
                let mtime = if m.file_type().is_symlink() || m.is_dir() {
                    0
                } else {
                    (m.mtime() * 1_000_000_000 + m.mtime_nsec()) / tick
                };
                v.push((rel, m.mode(), mtime, content));
                if m.is_dir() {
                    stack.push(p);
                }
            }
        }
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    let names = |l: &Vec<(PathBuf, u32, i64, Vec<u8>)>| {
        l.iter()
            .map(|e| (e.0.clone(), e.1, e.2, e.3.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&la), names(&lb));
    assert!(la == lb, "contents differ");
}

/// collect → pack → restore gives the tree back: contents, modes, mtimes, symlinks, long and non-UTF-8 names.
#[test]
fn zstd_archive_round_trip() {
    let w = world();
    let packed = w.pack(&[]);
    assert_eq!(code(&packed), 0, "{}", w.redact(&packed.stderr));
    let rec = &records(&packed)[0];
    assert_eq!(rec["kind"], "archive");
    assert_eq!(rec["compression"], "zstd");
    let out = w.restore(&["restore", "--archive", "s/latest", "--to", "r"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert_eq!(records(&out)[0]["errors"], 0);
    assert_same_tree(&w.path("src"), &w.src_in("r"));
    let a = fs::metadata(w.src_in("r").join("a.txt")).unwrap();
    assert_eq!(
        a.ino(),
        fs::metadata(w.src_in("r").join("hard")).unwrap().ino(),
        "hard link kept"
    );
}

/// GNU tar extracts a snap archive and sha256sum -c accepts its .sha256, with no snap tool.
#[test]
fn gnu_tar_and_sha256sum_read_archives() {
    let w = world();
    let rec = &records(&w.pack(&[]))[0];
    let path = PathBuf::from(rec["path"].as_str().unwrap());
    let dir = path.parent().unwrap();
    let sums = std::process::Command::new("sh")
        .arg("-c")
        .arg("sha256sum -c --quiet *.sha256")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stderr)
    );
    fs::create_dir(w.path("x")).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["--zstd", "-xf"])
        .arg(&path)
        .arg("-C")
        .arg(w.path("x"))
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    assert_eq!(
        fs::read(w.src_in("x").join("docs/b.txt")).unwrap(),
        fs::read(w.path("src/docs/b.txt")).unwrap()
    );
    assert_eq!(
        fs::read_link(w.src_in("x").join("docs/link")).unwrap(),
        Path::new("../a.txt")
    );
}

/// An archive encrypted to an age key opens with `age -d -i` and restores with --identity; without a key, exit 64.
#[test]
fn age_recipient_round_trip_and_interop() {
    let w = world();
    let recipient = snap_testkit::age_keygen(&w.path("key.txt"));
    let packed = w.pack(&["--recipient", &recipient]);
    assert_eq!(code(&packed), 0, "{}", w.redact(&packed.stderr));
    let rec = &records(&packed)[0];
    assert_eq!(rec["encryption"], "age");
    let path = rec["path"].as_str().unwrap();
    assert!(path.ends_with(".tar.zst.age"));
    assert_eq!(fs::metadata(path).unwrap().mode() & 0o777, 0o600);
    assert!(
        !fs::read_to_string(
            rec["path"]
                .as_str()
                .unwrap()
                .replace(".tar.zst.age", ".json")
        )
        .unwrap()
        .contains(&recipient[10..])
    );
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i key.txt '{path}' | tar --zstd -tf - | grep -c docs/b.txt"
        ))
        .current_dir(w.root())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listing.stdout).trim(), "1");
    let no_key = w.restore(&["restore", "--archive", "s/latest", "--to", "r"]);
    assert_eq!(code(&no_key), 64);
    assert!(
        w.redact(&no_key.stderr).contains("is encrypted"),
        "{}",
        w.redact(&no_key.stderr)
    );
    let out = w.restore(&[
        "restore",
        "--archive",
        "s/latest",
        "--to",
        "r",
        "--identity",
        "key.txt",
    ]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert_same_tree(&w.path("src"), &w.src_in("r"));
}

/// gzip with a passphrase (age scrypt) round-trips; a wrong passphrase is exit 64.
#[test]
fn gzip_passphrase_round_trip() {
    let w = world();
    w.write("pw", "correct horse\n");
    w.write("bad", "wrong\n");
    let packed = w.pack(&["--compression", "gzip", "--passphrase-file", "pw"]);
    assert_eq!(code(&packed), 0, "{}", w.redact(&packed.stderr));
    assert!(
        records(&packed)[0]["path"]
            .as_str()
            .unwrap()
            .ends_with(".tar.gz.age")
    );
    let bad = w.restore(&[
        "restore",
        "--archive",
        "s/latest",
        "--to",
        "r",
        "--passphrase-file",
        "bad",
    ]);
    assert_eq!(code(&bad), 64, "{}", w.redact(&bad.stderr));
    let out = w.restore(&[
        "restore",
        "--archive",
        "s/latest",
        "--to",
        "r",
        "--passphrase-file",
        "pw",
    ]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert_same_tree(&w.path("src"), &w.src_in("r"));
}

/// An incremental chain (change, delete, add) restores to the last snapshot exactly; without its base it is exit 66 naming the base.
#[test]
fn incremental_chain_round_trip() {
    let w = world();
    assert_eq!(code(&w.pack(&[])), 0);
    w.write("src/a.txt", "alpha changed\n");
    fs::remove_file(w.path("src/docs/b.txt")).unwrap();
    w.write("src/new.txt", "new\n");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.collect();
    let packed = w.pack(&["--incremental"]);
    assert_eq!(code(&packed), 0, "{}", w.redact(&packed.stderr));
    let rec = &records(&packed)[0];
    assert!(rec["base"].is_string());
    assert_eq!(rec["chain"], 2);
    assert_eq!(rec["packed_files"], 2, "only a.txt and new.txt travel");
    let out = w.restore(&["restore", "--archive", "s/latest", "--to", "r"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert_same_tree(&w.path("src"), &w.src_in("r"));

    let base = rec["base"].as_str().unwrap();
    fs::remove_file(w.path(&format!("store/archives/s/{base}.json"))).unwrap();
    let out = w.restore(&["restore", "--archive", "s/latest", "--to", "r2"]);
    assert_eq!(code(&out), 66, "{}", w.redact(&out.stderr));
    assert!(
        w.redact(&out.stderr).contains(&format!(
            "its chain needs {base}, which is not in [TMP]/store/archives/s"
        )),
        "{}",
        w.redact(&out.stderr)
    );
}

/// Restoring again into the same folder continues: files already right are not rewritten
/// (with or without --overwrite: the same file keeps its inode), and a file with other
/// content is refused without --overwrite (exit 1), replaced with it.
#[test]
fn rerun_continues_and_overwrite_is_explicit() {
    let w = world();
    assert_eq!(code(&w.restore(&["restore", "s/latest", "--to", "r"])), 0);
    let b = w.src_in("r").join("docs/b.txt");
    let ino = || std::os::unix::fs::MetadataExt::ino(&fs::metadata(&b).unwrap());
    let first = ino();
    let again = w.restore(&["restore", "s/latest", "--to", "r"]);
    assert_eq!(code(&again), 0);
    assert_eq!(records(&again)[0]["already"], records(&again)[0]["files"]);
    assert_eq!(ino(), first, "a file already right was written again");
    fs::write(w.src_in("r").join("a.txt"), "mine").unwrap();
    let refused = w.restore(&["restore", "s/latest", "--to", "r"]);
    assert_eq!(code(&refused), 1);
    assert!(
        w.redact(&refused.stderr)
            .contains("a.txt: already exists with other content")
    );
    assert_eq!(
        fs::read_to_string(w.src_in("r").join("a.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        code(&w.restore(&["restore", "s/latest", "--to", "r", "--overwrite"])),
        0
    );
    assert_eq!(
        fs::read_to_string(w.src_in("r").join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(ino(), first, "--overwrite wrote a file already right again");
}

/// --path restores only what is under it; a path that matches nothing is exit 66.
#[test]
fn restore_selected_paths() {
    let w = world();
    let inner = w
        .src_in("x")
        .strip_prefix(w.path("x"))
        .unwrap()
        .join("docs");
    let p = format!("/{}", inner.display());
    let out = w.restore(&["restore", "s/latest", "--to", "r", "--path", &p]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert!(w.src_in("r").join("docs/b.txt").exists());
    assert!(!w.src_in("r").join("a.txt").exists());
    let none = w.restore(&["restore", "s/latest", "--to", "r2", "--path", "no/such"]);
    assert_eq!(code(&none), 66);
    assert_eq!(
        w.redact(&none.stderr),
        "snap-restore: --path no/such: matches nothing in the snapshot\nsnap-restore: hint: paths are inside the snapshot, e.g. home/me/docs for /home/me/docs; see `snap-restore show`\n"
    );
}

/// A flipped byte in an archive is found by verify, naming the file; exit 65.
#[test]
fn verify_names_the_damaged_file() {
    let w = world();
    let rec = &records(&w.pack(&["--compression", "none"]))[0];
    let path = rec["path"].as_str().unwrap();
    let mut bytes = fs::read(path).unwrap();
    let at = bytes.windows(10).position(|x| x == b"bbbbbbbbbb").unwrap();
    bytes[at + 5] = b'X';
    fs::write(path, bytes).unwrap();
    let out = w.restore(&["verify", "--archive", "s/latest"]);
    assert_eq!(code(&out), 65);
    let err = w.redact(&out.stderr);
    assert!(err.contains("docs/b.txt: sha256 "), "{err}");
    assert!(err.contains("archive sha256"), "{err}");
    assert_eq!(records(&out)[0]["kind"], "verified");
}

/// The source folder inside the one tree snapshot of `w`.
fn src_in_snapshot(w: &World) -> PathBuf {
    let rec: Value = serde_json::from_str(
        &fs::read_to_string(
            fs::read_dir(w.path("store/sets/s"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "json"))
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let tree = PathBuf::from(rec["path"].as_str().unwrap());
    tree.join(w.src_in("x").strip_prefix(w.path("x")).unwrap())
}

/// Bit rot in a tree snapshot is found by verify; a clean one verifies with exit 0.
#[test]
fn verify_tree_snapshot() {
    let w = world();
    assert_eq!(code(&w.restore(&["verify", "s/latest"])), 0);
    let file = src_in_snapshot(&w).join("docs/b.txt");
    fs::write(&file, "b".repeat(99_999) + "c").unwrap();
    let out = w.restore(&["verify", "s/latest"]);
    assert_eq!(code(&out), 65);
    assert!(
        w.redact(&out.stderr)
            .contains("docs/b.txt: content changed"),
        "{}",
        w.redact(&out.stderr)
    );
}

/// A tree edited by hand after it was taken (a file added, one removed, a mode and an mtime changed): verify names each, exit 65.
#[test]
fn verify_names_each_hand_edit_of_a_tree() {
    let w = world();
    let src = src_in_snapshot(&w);
    fs::write(src.join("docs/added"), "not backed up").unwrap();
    fs::remove_file(src.join("docs/link")).unwrap();
    fs::set_permissions(src.join("docs/b.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    let later = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    fs::File::open(src.join("a.txt"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    let out = w.restore(&["verify", "s/latest"]);
    assert_eq!(code(&out), 65);
    let err = w.redact(&out.stderr);
    for want in [
        "docs/added: not in the snapshot (added after it was taken)",
        "docs/link: No such file or directory",
        "docs/b.txt: mode changed: 644, the index says 600",
        "a.txt: mtime changed: 1700000000000000000 ns, the index says 1600000000000000000",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
}

/// A hostile tar (`..`, absolute paths, a symlink then a write through it) writes nothing outside the target; exit 65.
#[test]
fn hostile_archive_stays_inside() {
    let w = world();
    fs::create_dir(w.path("outside")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &[u8], kind: tar::EntryType, link: Option<&str>, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add(b"../evil.txt", tar::EntryType::Regular, None, b"evil");
    add(
        b"esc",
        tar::EntryType::Symlink,
        Some(&w.path("outside").display().to_string()),
        b"",
    );
    add(b"esc/pwned.txt", tar::EntryType::Regular, None, b"pwned");
    add(b"/abs.txt", tar::EntryType::Regular, None, b"abs");
    add(b"ok.txt", tar::EntryType::Regular, None, b"ok");
    fs::write(w.path("hostile.tar"), b.into_inner().unwrap()).unwrap();
    let out = w.restore(&["restore", "hostile.tar", "--to", "r"]);
    assert_eq!(code(&out), 65, "{}", w.redact(&out.stderr));
    assert!(!w.path("evil.txt").exists());
    assert_eq!(fs::read_dir(w.path("outside")).unwrap().count(), 0);
    assert_eq!(fs::read_to_string(w.path("r/abs.txt")).unwrap(), "abs");
    assert_eq!(fs::read_to_string(w.path("r/ok.txt")).unwrap(), "ok");
    let err = w.redact(&out.stderr);
    assert!(
        err.contains("../evil.txt: refused: ../evil.txt has a `..` component"),
        "{err}"
    );
    assert!(
        err.contains("esc/pwned.txt: refused: esc is a symlink or not a folder"),
        "{err}"
    );
}

/// A plain tar.gz made by GNU tar restores and lists its files.
#[test]
fn foreign_tar_gz_restores() {
    let w = world();
    let made = std::process::Command::new("tar")
        .args(["-czf", "manual.tar.gz", "src"])
        .current_dir(w.root())
        .output()
        .unwrap();
    assert!(made.status.success());
    let out = w.restore(&["restore", "manual.tar.gz", "--to", "r"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert_same_tree_at(&w.path("src"), &w.path("r/src"), 1_000_000_000);
    assert_eq!(code(&w.restore(&["verify", "manual.tar.gz"])), 0);
}

/// A .tar.zst that starts with a zstd skippable frame (metadata some tools
/// put first) restores as `tar --zstd -xf` extracts it (it was refused as
/// not a tar).
#[test]
fn a_tar_zst_with_a_skippable_frame_first_restores() {
    let w = world();
    let made = std::process::Command::new("tar")
        .args(["-cf", "plain.tar", "src"])
        .current_dir(w.root())
        .output()
        .unwrap();
    assert!(made.status.success());
    let tar = fs::read(w.path("plain.tar")).unwrap();
    let mut bytes = vec![0x5e, 0x2a, 0x4d, 0x18, 5, 0, 0, 0];
    bytes.extend_from_slice(b"notes");
    bytes.extend(zstd::encode_all(&tar[..], 3).unwrap());
    fs::write(w.path("skip.tar.zst"), &bytes).unwrap();
    fs::create_dir(w.path("gnu")).unwrap();
    let gnu = std::process::Command::new("tar")
        .args(["--zstd", "-xf", "../skip.tar.zst"])
        .current_dir(w.path("gnu"))
        .output()
        .unwrap();
    assert!(
        gnu.status.success(),
        "{}",
        String::from_utf8_lossy(&gnu.stderr)
    );
    let out = w.restore(&["restore", "skip.tar.zst", "--to", "r"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert_same_tree_at(&w.path("gnu/src"), &w.path("r/src"), 1_000_000_000);
}

/// list shows snapshots and archives from the files alone; diff names the changes.
#[test]
fn list_and_diff() {
    let w = world();
    assert_eq!(code(&w.pack(&[])), 0);
    let list = w.restore(&["list", "--json"]);
    let kinds: Vec<String> = records(&list)
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["snapshot", "archive"]);
    w.write("src/new.txt", "n\n");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.collect();
    let ids: Vec<String> = records(&w.restore(&["list", "--json"]))
        .iter()
        .filter(|r| r["kind"] == "snapshot")
        .map(|r| format!("s/{}", r["id"].as_str().unwrap()))
        .collect();
    let diff = w.restore(&["diff", &ids[0], &ids[1]]);
    assert_eq!(code(&diff), 0);
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("+    ") && l.ends_with("/new.txt")),
        "{text}"
    );
    // The snapshot holds the parents of src/ too (/tmp…), whose mtimes other
    // processes change: the metadata-only count is not pinned.
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with("1 added, 0 removed, 0 modified, 0 changed type, "),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("U    ") && l.ends_with("/src")),
        "{text}"
    );
}

/// snap-pack: a malformed record on stdin is exit 65 naming the line; an unknown snapshot is exit 66.
#[test]
fn pack_input_errors() {
    let w = world();
    let bad = w
        .cmd("snap-pack")
        .args(["--store", "store"])
        .write_stdin("{\"schema\":\"snap/1\",\"kind\":\"x\"}\nnot json\n")
        .output()
        .unwrap();
    assert_eq!(code(&bad), 65);
    assert!(
        w.redact(&bad.stderr)
            .starts_with("snap-pack: stdin line 2: not a JSON record")
    );
    let none = w
        .cmd("snap-pack")
        .args(["--store", "store", "--snapshot", "s/2000-01-01T000000Z"])
        .output()
        .unwrap();
    assert_eq!(code(&none), 66);
    assert_eq!(
        w.redact(&none.stderr),
        "snap-pack: snapshot s/2000-01-01T000000Z: not in store [TMP]/store\nsnap-pack: hint: list them with `snap-restore list`\n"
    );
}

/// Records of other kinds pass through snap-pack unchanged, in order.
#[test]
fn pack_passes_other_records_through() {
    let w = world();
    let snap = w.collect();
    let mut input = b"{\"schema\":\"snap/1\",\"kind\":\"future-thing\",\"x\":1}\n".to_vec();
    input.extend_from_slice(&snap.stdout);
    let out = w
        .cmd("snap-pack")
        .args(["--store", "store", "--min-free", "0", "-q"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let recs = records(&out);
    assert_eq!(
        recs[0],
        serde_json::json!({"schema":"snap/1","kind":"future-thing","x":1})
    );
    assert_eq!(recs[1]["kind"], "archive");
}

/// pin writes a pin beside the record that `show` names and snap-prune
/// honours; unpin removes it and the next prune takes the snapshot.
#[test]
fn pin_keeps_a_snapshot_from_prune() {
    let w = world();
    let first = records(&w.collect())[0]["id"].as_str().unwrap().to_string();
    w.write("src/later.txt", "later\n");
    w.collect();
    let name = format!("s/{first}");
    let out = w.restore(&["pin", &name, "-r", "before the upgrade"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert!(w.path(&format!("store/sets/s/{first}.pin")).is_file());
    let shown = String::from_utf8_lossy(&w.restore(&["show", &name]).stdout).into_owned();
    assert!(
        shown.contains("  pinned       before the upgrade (since "),
        "{shown}"
    );
    let prune = |w: &World| {
        w.cmd("snap-prune")
            .args(["--store", "store", "-q", "--keep-last", "1"])
            .output()
            .unwrap()
    };
    let out = prune(&w);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let mine = records(&out)
        .into_iter()
        .find(|r| r["id"] == first.as_str())
        .unwrap();
    assert_eq!(mine["action"], "keep");
    assert_eq!(mine["reasons"], serde_json::json!(["pinned"]));
    let out = w.restore(&["unpin", &name]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert!(!w.path(&format!("store/sets/s/{first}.pin")).exists());
    assert_eq!(
        code(&w.restore(&["unpin", &name])),
        0,
        "unpinning twice is no error"
    );
    let out = prune(&w);
    let mine = records(&out)
        .into_iter()
        .find(|r| r["id"] == first.as_str())
        .unwrap();
    assert_eq!(mine["action"], "remove");
    assert!(!w.path(&format!("store/sets/s/{first}")).exists());
    let out = w.restore(&["pin", "s/2020-01-01T000000Z"]);
    assert_eq!(code(&out), 66, "{}", w.redact(&out.stderr));
}

/// tag and describe rewrite the record (every other field kept) and the
/// catalog row, of a snapshot and of an archive; show and a tag-keeping
/// prune see them; a bad tag is refused and changes nothing.
#[test]
fn tag_and_describe_a_snapshot_and_an_archive() {
    let w = world();
    let id = records(&w.collect())[0]["id"].as_str().unwrap().to_string();
    let snap = format!("s/{id}");
    let rec_path = w.path(&format!("store/sets/s/{id}.json"));
    let before: Value = serde_json::from_slice(&fs::read(&rec_path).unwrap()).unwrap();
    for args in [
        vec!["tag", &snap, "--add", "keep", "--add", "pre-upgrade"],
        vec!["tag", &snap, "--remove", "pre-upgrade"],
        vec!["describe", &snap, "Before the upgrade"],
    ] {
        let out = w.restore(&args);
        assert_eq!(code(&out), 0, "{args:?}: {}", w.redact(&out.stderr));
    }
    let after: Value = serde_json::from_slice(&fs::read(&rec_path).unwrap()).unwrap();
    assert_eq!(after["tags"], serde_json::json!(["keep"]));
    assert_eq!(after["description"], "Before the upgrade");
    let mut same = after.clone();
    same["tags"] = before["tags"].clone();
    same["description"] = before["description"].clone();
    assert_eq!(same, before, "only tags and description changed");
    let store = snap_shared::store::Store::new(w.path("store"));
    let (catalog, _) = snap_shared::catalog::Catalog::open(&store).unwrap();
    let rows = catalog.snapshots(Some("s")).unwrap();
    let row = rows.iter().find(|r| r.id == id).unwrap();
    assert_eq!(row.tags, ["keep"]);
    assert_eq!(row.description.as_deref(), Some("Before the upgrade"));
    let out = w.restore(&["tag", &snap, "--add", "a,b"]);
    assert_eq!(code(&out), 64, "{}", w.redact(&out.stderr));
    assert_eq!(
        serde_json::from_slice::<Value>(&fs::read(&rec_path).unwrap()).unwrap(),
        after
    );
    assert_eq!(code(&w.pack(&[])), 0);
    let out = w.restore(&["tag", &snap, "--archive", "--add", "offsite"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    // snap-pack copied the snapshot's tags into the archive's record.
    let shown =
        String::from_utf8_lossy(&w.restore(&["show", &snap, "--archive"]).stdout).into_owned();
    assert!(shown.contains("  tags         keep, offsite\n"), "{shown}");
    let out = w.restore(&["describe", &snap]);
    assert_eq!(code(&out), 0);
    let cleared: Value = serde_json::from_slice(&fs::read(&rec_path).unwrap()).unwrap();
    assert_eq!(cleared["description"], Value::Null);
}

/// A `wsl --export` tarball (a root filesystem, `./` names, numeric owners)
/// imports with its description and tags: in the record, the catalog's row
/// and `show`, and it restores.
#[test]
fn import_wsl_export_with_description() {
    let w = world();
    let root = w.path("rootfs");
    for d in ["etc", "usr/bin", "home/me"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/os-release"), "NAME=\"Ubuntu\"\n").unwrap();
    fs::write(root.join("home/me/.bashrc"), "alias ll='ls -l'\n").unwrap();
    let made = std::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&root)
        .args(["-cf", "ubuntu.tar", "."])
        .current_dir(w.root())
        .output()
        .unwrap();
    assert!(made.status.success());
    let what = "WSL Ubuntu before the 24.04 upgrade";
    let out = w.restore(&[
        "import",
        "ubuntu.tar",
        "--set",
        "wsl",
        "--id",
        "2026-11-30T080000Z",
        "-d",
        what,
        "-t",
        "pre-upgrade",
    ]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert_eq!(records(&out)[0]["description"], what);
    let store = snap_shared::store::Store::new(w.path("store"));
    let (catalog, _) = snap_shared::catalog::Catalog::open(&store).unwrap();
    let rows = catalog.archives(Some("wsl")).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].extra["description"], what);
    assert_eq!(rows[0].extra["tags"], serde_json::json!(["pre-upgrade"]));
    let shown = String::from_utf8_lossy(&w.restore(&["show", "wsl/latest"]).stdout).into_owned();
    assert!(
        shown.contains(&format!("  description  {what}\n")),
        "{shown}"
    );
    let out = w.restore(&["restore", "wsl/latest", "--to", "back"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert_eq!(
        fs::read_to_string(w.path("back/etc/os-release")).unwrap(),
        "NAME=\"Ubuntu\"\n"
    );
}

/// import adds a GNU tar.gz to the store: listed, verified (a flipped file is named), restored.
#[test]
fn import_foreign_archive() {
    let w = world();
    let made = std::process::Command::new("tar")
        .args(["-cf", "manual.tar", "src"])
        .current_dir(w.root())
        .output()
        .unwrap();
    assert!(made.status.success());
    let out = w.restore(&[
        "import",
        "manual.tar",
        "--set",
        "manual",
        "--id",
        "2026-01-02T030405Z",
    ]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let rec = &records(&out)[0];
    assert_eq!(rec["kind"], "archive");
    assert_eq!(rec["imported"], true);
    assert_eq!(rec["compression"], "none");
    let listed = records(&w.restore(&["list", "--json", "--set", "manual"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(code(&w.restore(&["verify", "manual/latest"])), 0);
    let out = w.restore(&["restore", "manual/2026-01-02T030405Z", "--to", "r"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert_same_tree_at(&w.path("src"), &w.path("r/src"), 1_000_000_000);
    let data = PathBuf::from(rec["path"].as_str().unwrap());
    let mut bytes = fs::read(&data).unwrap();
    let at = bytes.windows(10).position(|x| x == b"bbbbbbbbbb").unwrap();
    bytes[at + 3] = b'Z';
    fs::write(&data, bytes).unwrap();
    let bad = w.restore(&["verify", "manual/latest"]);
    assert_eq!(code(&bad), 65);
    assert!(
        w.redact(&bad.stderr).contains(
            "src/docs/b.txt: is in the index but missing from the archive, or its content changed"
        ),
        "{}",
        w.redact(&bad.stderr)
    );
    let again = w.restore(&[
        "import",
        "manual.tar",
        "--set",
        "manual",
        "--id",
        "2026-01-02T030405Z",
    ]);
    assert_eq!(code(&again), 73);
}

/// A small tmpfs mounted on a new folder, unmounted when dropped (None
/// where mounting is not allowed).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir(dir).unwrap();
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "snaptest"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success())
            .then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills up mid-pack: exit 74, the temporary files removed, nothing under a final name.
#[test]
fn pack_on_a_full_disk_exits_74_and_leaves_nothing() {
    let w = world();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..3 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    fs::write(w.path("src/noise.bin"), noise).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.collect();
    let Some(_small) = Tmpfs::mount(&w.path("small"), "1m") else {
        eprintln!("cannot mount a tmpfs here; nothing to test");
        return;
    };
    let out = w.pack(&["--out", "small"]);
    assert_eq!(code(&out), 74, "{}", w.redact(&out.stderr));
    let err = w.redact(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains("hint: the disk filled up; the unfinished archive was removed"),
        "{err}"
    );
    let left: Vec<String> = fs::read_dir(w.path("small/s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [".lock"]);
}

/// Without --min-free, snap-pack keeps the config's store floor (collect.min_free) in the store, and the default elsewhere.
#[test]
fn pack_keeps_the_configs_store_floor() {
    let w = world();
    let pack = |config: &str, extra: &[&str]| {
        w.write("snap.json", config);
        w.cmd("snap-pack")
            .args(["--config", "snap.json", "--store", "store", "-q"])
            .args(["--snapshot", "s/latest"])
            .args(extra)
            .output()
            .unwrap()
    };
    let all = r#"{"collect": {"min_free": "100%"}}"#;
    let out = pack(all, &[]);
    assert_eq!(code(&out), 73, "{}", w.redact(&out.stderr));
    let err = w.redact(&out.stderr);
    assert!(
        err.starts_with("snap-pack: archive folder [TMP]/store/archives/s: "),
        "{err}"
    );
    assert!(err.contains("free, below the floor of"), "{err}");
    assert!(
        !w.path("store/archives/s")
            .read_dir()
            .is_ok_and(|mut d| d.any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")))
    );
    // The flag wins over the config.
    let out = pack(all, &["--min-free", "0"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    // The store's floor is not the floor of another folder (--out): a small
    // tmpfs keeps its default floor (5% of it), whatever the host's disk has.
    match Tmpfs::mount(&w.path("small"), "64m") {
        Some(_small) => {
            let out = pack(all, &["--out", "small"]);
            assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
        }
        None => eprintln!("cannot mount a tmpfs here; --out's floor not tested"),
    }
    let out = pack(r#"{"collect": {"min_free": "0"}}"#, &[]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let out = pack(r#"{"collect": {"min_free": "lots"}}"#, &[]);
    assert_eq!(code(&out), 78, "{}", w.redact(&out.stderr));
}

/// A file the index lists but the archive lacks is named as missing; exit 65
/// (the record names no index sha256, as before it was recorded; with one,
/// the swapped index is refused first: tests/tests/trust.rs).
#[test]
fn restore_names_a_file_missing_from_the_archive() {
    let w = world();
    let rec = &records(&w.pack(&[]))[0];
    let json = rec["path"].as_str().unwrap().replace(".tar.zst", ".json");
    let mut on_disk: Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    on_disk.as_object_mut().unwrap().remove("index_sha256");
    fs::write(&json, serde_json::to_vec(&on_disk).unwrap()).unwrap();
    snap_testkit::sign_again(Path::new(&json), &w.path("home"));
    w.write("src/extra.txt", "not in the archive\n");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let snap: Value = serde_json::from_slice(&w.collect().stdout).unwrap();
    fs::copy(
        snap["index"].as_str().unwrap(),
        rec["index"].as_str().unwrap(),
    )
    .unwrap();
    let out = w.restore(&["restore", rec["path"].as_str().unwrap(), "--to", "r"]);
    assert_eq!(code(&out), 65, "{}", w.redact(&out.stderr));
    assert!(
        w.redact(&out.stderr)
            .contains("/extra.txt: missing from the archive"),
        "{}",
        w.redact(&out.stderr)
    );
    assert!(w.src_in("r").join("docs/b.txt").exists());
}

/// import leaves out a hard link whose first name leaves the archive, so the
/// index it writes stays readable (verify and diff work on it), and exits 65 naming it.
#[test]
fn import_leaves_out_an_escaping_hard_link() {
    let w = world();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = link {
            h.set_link_name_literal(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("ok.txt", tar::EntryType::Regular, None, b"ok");
    add("bad", tar::EntryType::Link, Some("../outside"), b"");
    fs::write(w.path("links.tar"), b.into_inner().unwrap()).unwrap();
    let out = w.restore(&["import", "links.tar", "--set", "l"]);
    assert_eq!(code(&out), 65, "{}", w.redact(&out.stderr));
    assert!(
        w.redact(&out.stderr)
            .contains("bad: left out of the index: its hard link leaves the archive"),
        "{}",
        w.redact(&out.stderr)
    );
    assert_eq!(records(&out)[0]["files"], 1);
    assert_eq!(code(&w.restore(&["verify", "l/latest"])), 0);
}

/// timeline --html writes one page with every snapshot, its archive, pin,
/// tags and description (escaped), what the configured retention keeps
/// and why, the disks, and nothing that reaches the network.
#[test]
fn timeline_page_shows_everything_and_fetches_nothing() {
    let w = world();
    let first = records(&w.collect())[0]["id"].as_str().unwrap().to_string();
    w.write("src/later.txt", "later\n");
    let second = records(&w.collect())[0]["id"].as_str().unwrap().to_string();
    assert_eq!(code(&w.pack(&[])), 0);
    let name = format!("s/{first}");
    for args in [
        vec!["pin", name.as_str(), "-r", "before the upgrade"],
        vec![
            "describe",
            name.as_str(),
            "<script>alert(1)</script> & more",
        ],
        vec!["tag", name.as_str(), "--add", "pre-upgrade"],
    ] {
        assert_eq!(code(&w.restore(&args)), 0, "{args:?}");
    }
    w.write(
        "cfg.json",
        r#"{"retention": {"local": 1}, "schedule": {"incremental": "daily"}}"#,
    );
    let out = w.restore(&["-c", "cfg.json", "timeline", "--html", "t.html"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "records only on stdout, and a page is none"
    );
    let page = fs::read_to_string(w.path("t.html")).unwrap();
    for want in [
        format!("s/{first}"),
        format!("s/{second}"),
        "pinned: before the upgrade".into(),
        "kept: pinned".into(),
        "kept: last snapshot".into(),
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more".into(),
        "pre-upgrade".into(),
        format!("snap-restore restore s/{second} --to DIR"),
        "retention: keep 1 latest snapshots".into(),
        "since the one before: 1 added, 0 changed, 0 removed".into(),
        "<div class=\"day\">today, ".into(),
        "default-src 'none'".into(),
    ] {
        assert!(page.contains(&want), "missing {want:?}");
    }
    assert!(
        !page.contains("<script>alert"),
        "a description was not escaped"
    );
    for net in ["http://", "https://", "src=", "@import", "url("] {
        assert!(!page.contains(net), "the page would fetch: {net}");
    }
    // The oldest snapshot apart from the pinned one: the policy would remove it.
    let sets = records(&w.restore(&["list", "--json"]));
    assert!(sets.len() >= 3);
    assert!(page.contains("the configured retention would remove it"));
}

/// The page's pictures, inline SVG: one bar per snapshot whose numbers are
/// the records' added bytes, a pin marked over its snapshot, and the
/// stacked growth's total the sum of them; `--no-pictures` leaves them out.
#[test]
fn timeline_plots_draw_one_bar_per_snapshot() {
    let w = world();
    let mut ids = Vec::new();
    for i in 0..3 {
        w.write(&format!("src/n{i}.txt"), "x".repeat(1000 * (i + 1)));
        ids.push(records(&w.collect())[0]["id"].as_str().unwrap().to_string());
    }
    let pinned = format!("s/{}", ids[1]);
    assert_eq!(code(&w.restore(&["pin", pinned.as_str(), "-r", "keep"])), 0);
    // Archives of the two newest: the newest verified, the other never.
    for id in &ids[1..] {
        let snapshot = format!("s/{id}");
        let out = w
            .cmd("snap-pack")
            .args([
                "--store",
                "store",
                "--min-free",
                "0",
                "-q",
                "--snapshot",
                &snapshot,
            ])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    }
    let newest = format!("s/{}", ids[2]);
    assert_eq!(code(&w.restore(&["verify", "--archive", &newest])), 0);
    let out = w.restore(&["timeline", "--html", "t.html"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let page = fs::read_to_string(w.path("t.html")).unwrap();
    let recs = records(&w.restore(&["list", "--json"]));
    let snaps: Vec<&serde_json::Value> = recs.iter().filter(|r| r["kind"] == "snapshot").collect();
    assert_eq!(
        page.matches("<rect class=\"bar\"").count(),
        snaps.len(),
        "one bar per snapshot"
    );
    let total: u64 = snaps.iter().map(|r| r["new_bytes"].as_u64().unwrap()).sum();
    for r in &snaps {
        let bar = format!(
            "data-id=\"{}\" data-bytes=\"{}\"",
            r["id"].as_str().unwrap(),
            r["new_bytes"]
        );
        assert!(page.contains(&bar), "missing {bar}");
    }
    assert!(page.contains(&format!("class=\"plot added\" viewBox=\"0 0 1000 150\" role=\"img\" aria-label=\"bytes each snapshot added\" data-bars=\"{}\" data-total=\"{total}\"", snaps.len())));
    assert!(page.contains(&format!("class=\"plot growth\" viewBox=\"0 0 1000 150\" role=\"img\" aria-label=\"the store's bytes over time\" data-total=\"{total}\"")));
    assert!(page.contains(&format!(
        "<circle class=\"mark pin\" data-id=\"{}\"",
        ids[1]
    )));
    assert!(page.contains("verify-age\" viewBox=\"0 0 1000 150\" role=\"img\" aria-label=\"days since each archive was last verified\" data-bars=\"2\""));
    let never = format!(
        "<rect class=\"age\" data-id=\"{}\" data-days=\"never\"",
        ids[1]
    );
    assert!(page.contains(&never), "missing {never}");
    let fresh = format!(
        "<rect class=\"age\" data-id=\"{}\" data-days=\"0.0\"",
        ids[2]
    );
    assert!(page.contains(&fresh), "missing {fresh}");
    let out = w.restore(&["timeline", "--no-pictures", "--html", "plain.html"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let plain = fs::read_to_string(w.path("plain.html")).unwrap();
    assert!(
        !plain.contains("<svg class=\"plot"),
        "--no-pictures draws none"
    );
    assert!(plain.contains(&format!("s/{}", ids[2])), "the cards stay");
}

/// The timeline page opens in a real browser (headless Chromium) with every
/// network path closed, and shows every card.
#[test]
fn timeline_page_opens_offline_in_chromium() {
    let w = world();
    w.collect();
    w.write("src/b.txt", "b\n");
    w.collect();
    let out = w.restore(&["timeline", "--html", "t.html"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let profile = w.path("chromium-profile");
    let dom = std::process::Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", w.path("t.html").display()))
        .output()
        .expect("chromium (cargo xtask test installs it)");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(dom.matches("class=\"card").count(), 3, "{dom}");
    assert!(dom.contains("<h2>Set s</h2>"), "{dom}");
}

/// The timeline names the destinations that hold each archive and when
/// each was last pushed to, one that cannot be reached, and each
/// snapshot's and archive's last verify (from the store's verify log).
#[test]
fn timeline_shows_destinations_and_verifies() {
    let w = world();
    let id = records(&w.collect())[0]["id"].as_str().unwrap().to_string();
    assert_eq!(code(&w.pack(&[])), 0);
    // A folder destination holds what the store's archive folder holds.
    fs::create_dir_all(w.path("usb")).unwrap();
    let cp = std::process::Command::new("cp")
        .args(["-a", "store/archives/s", "usb/s"])
        .current_dir(w.path(""))
        .status()
        .unwrap();
    assert!(cp.success());
    w.write(
        "cfg.json",
        format!(
            r#"{{"destinations": [{{"name": "usb", "path": "{}"}}, {{"name": "gone", "uuid": "dead-beef", "path": "snap"}}],
               "schedule": {{"verify": 7}}}}"#,
            w.path("usb").display()
        ),
    );
    let name = format!("s/{id}");
    assert_eq!(code(&w.restore(&["verify", &name])), 0);
    let out = w.restore(&["-c", "cfg.json", "--from", "usb", "verify", &name]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let log = fs::read_to_string(w.path("store/verified.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    let out = w.restore(&["-c", "cfg.json", "timeline", "--html", "t.html"]);
    assert_eq!(code(&out), 0, "{}", w.redact(&out.stderr));
    let page = fs::read_to_string(w.path("t.html")).unwrap();
    for want in [
        "<b>destination usb</b>".to_string(),
        "last push just now".into(),
        "at usb</span>".into(),
        "snapshot verified at store just now".into(),
        "archive verified at usb just now".into(),
        "<b>destination gone</b>".into(),
        "not reachable".into(),
        "verified just now".into(),
    ] {
        assert!(page.contains(&want), "missing {want:?}");
    }
    w.write("bad.json", r#"{"schedule": {"verify": "sometimes"}}"#);
    let out = w.restore(&["-c", "bad.json", "timeline", "--html", "t.html"]);
    assert_eq!(code(&out), 78, "{}", w.redact(&out.stderr));
    assert!(w.redact(&out.stderr).contains("schedule.verify"));
}

/// snap-pack's zstd archives are seekable: independent frames (each decodes
/// alone), a seek table at the end that adds up to the file and the tar
/// stream, `zstd -t` passes, and the archive's index says where each
/// carried entry's header is in the tar stream.
#[test]
fn archives_are_seekable_frames_with_offsets_in_the_index() {
    let w = world();
    // 24 MiB of varied text: more than two frames of tar.
    let mut big = Vec::with_capacity(24 << 20);
    let mut x: u64 = 7;
    while big.len() < 24 << 20 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        big.extend_from_slice(format!("line {} of the big file\n", x >> 40).as_bytes());
    }
    fs::write(w.path("src/big.txt"), &big).unwrap();
    w.collect();
    let rec = &records(&w.pack(&[]))[0];
    let path = PathBuf::from(rec["path"].as_str().unwrap());
    let zstd_t = std::process::Command::new("zstd")
        .args(["-q", "-t"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(zstd_t.success());
    let bytes = fs::read(&path).unwrap();
    let frames = snap_shared::seekable::read_seek_table(&bytes).expect("a seek table");
    assert!(frames.len() >= 3, "{frames:?}");
    assert_eq!(rec["frames"], frames.len());
    let tar_len: u64 = frames.iter().map(|f| u64::from(f.tar)).sum();
    assert_eq!(rec["tar_bytes"], tar_len);
    let tar = zstd::decode_all(&bytes[..]).unwrap();
    assert_eq!(tar.len() as u64, tar_len);
    let (mut at, mut tar_at) = (0usize, 0usize);
    for f in &frames {
        let alone = zstd::decode_all(&bytes[at..at + f.compressed as usize]).unwrap();
        assert_eq!(alone[..], tar[tar_at..tar_at + f.tar as usize]);
        at += f.compressed as usize;
        tar_at += f.tar as usize;
    }
    let table = bytes.len() - at;
    assert_eq!(table, 8 + frames.len() * 8 + 9, "the table ends the file");
    let index = PathBuf::from(rec["index"].as_str().unwrap());
    let mut r = snap_shared::index::IndexReader::open(&index).unwrap();
    let mut checked = 0;
    while let Some(e) = r.next_entry().unwrap() {
        let off = e.tar_offset.expect("a full archive carries every entry") as usize;
        let h = tar::Header::from_byte_slice(&tar[off..off + 512]);
        let name = match h.path_bytes().as_ref() {
            b"././@LongLink" => tar[off + 512..].split(|b| *b == 0).next().unwrap().to_vec(),
            n => n.to_vec(),
        };
        let name = name.strip_suffix(b"/").unwrap_or(&name).to_vec();
        assert_eq!(name, e.path, "at {off}");
        checked += 1;
    }
    assert!(checked > 5);
    // list and show say so; a gzip archive is one stream.
    let id = rec["id"].as_str().unwrap();
    let shown = w.restore(&["show", "--archive", &format!("s/{id}")]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    let want = format!(
        "seekable     yes: {} zstd frames and a seek table",
        frames.len()
    );
    assert!(shown.contains(&want), "{shown}");
    let listed = String::from_utf8_lossy(&w.restore(&["list"]).stdout).into_owned();
    assert!(listed.contains(", seekable"), "{listed}");
    w.write("src/later.txt", "later\n");
    w.collect();
    let gz = &records(&w.pack(&["--compression", "gzip"]))[0];
    let gz_id = gz["id"].as_str().unwrap();
    let shown = w.restore(&["show", "--archive", &format!("s/{gz_id}")]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains("seekable     no: one stream, read whole"),
        "{shown}"
    );
}
