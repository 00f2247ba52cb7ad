//! Everything a file carries (issue 33): extended attributes in every
//! namespace, POSIX ACLs, file capabilities and owners by name, judged by
//! `rsync -aHAX`, `getfattr`, `getfacl` and `getcap`, tools no one here wrote.
//! These tests run as root (CI does): `trusted.*` and capabilities need it.

use std::fs;
use std::path::Path;
use std::process::Command;

use snap_e2e::{Pipeline, World, code, records, rsync_changes, stderr};

/// Runs a command that must succeed (setfattr, setfacl, setcap…); its stdout.
fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} (cargo xtask test installs attr, acl, libcap2-bin): {e}",
                args[0]
            )
        });
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tree with user, trusted and binary-valued xattrs, an access ACL and a
/// default ACL, a file with a capability, a hard-linked pair with an xattr,
/// a sparse file with an xattr, and a file owned by another user.
fn tree(w: &World) {
    let p = |rel: &str| w.path(rel).display().to_string();
    w.write_dated("src/doc.txt", "a document\n");
    sh(&[
        "setfattr",
        "-n",
        "user.origin",
        "-v",
        "mail",
        &p("src/doc.txt"),
    ]);
    sh(&[
        "setfattr",
        "-n",
        "user.bin",
        "-v",
        "0x00ff0a00",
        &p("src/doc.txt"),
    ]);
    sh(&[
        "setfattr",
        "-n",
        "trusted.note",
        "-v",
        "root only",
        &p("src/doc.txt"),
    ]);
    w.write_dated("src/shared/journal", "entries\n");
    sh(&["setfacl", "-m", "u:nobody:rw", &p("src/shared/journal")]);
    sh(&["setfacl", "-d", "-m", "g:adm:rx", &p("src/shared")]);
    w.write_dated("src/bin/ping", "not really ping\n");
    sh(&["/usr/sbin/setcap", "cap_net_raw+ep", &p("src/bin/ping")]);
    w.write_dated("src/pair/one", "linked\n");
    fs::hard_link(w.path("src/pair/one"), w.path("src/pair/two")).unwrap();
    sh(&[
        "setfattr",
        "-n",
        "user.pair",
        "-v",
        "both",
        &p("src/pair/one"),
    ]);
    let sparse = w.write_dated("src/disk.img", "head");
    let f = fs::OpenOptions::new().write(true).open(&sparse).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"tail", 8 << 20).unwrap();
    drop(f);
    sh(&[
        "setfattr",
        "-n",
        "user.kind",
        "-v",
        "sparse",
        &p("src/disk.img"),
    ]);
    w.write_dated("src/theirs", "owned by nobody\n");
    sh(&["chown", "nobody:nogroup", &p("src/theirs")]);
    for f in [
        "src/doc.txt",
        "src/shared/journal",
        "src/bin/ping",
        "src/pair/one",
        "src/disk.img",
        "src/theirs",
    ] {
        snap_e2e::set_mtime(&w.path(f), 1_600_000_000);
    }
}

/// The store's tree of a snapshot record, where the source `src/` is.
fn in_store(w: &World, rec: &serde_json::Value) -> std::path::PathBuf {
    Path::new(rec["path"].as_str().unwrap()).join(w.inside("src"))
}

/// Collect keeps every attribute on the store's copy, as rsync -aHAX,
/// getfacl and getcap judge it, and in the index (names and base64 values,
/// owner names beside the ids).
#[test]
fn collect_keeps_every_attribute() {
    let w = World::new();
    tree(&w);
    let rec = w.collect_ok(&[]);
    let copy = in_store(&w, &rec);
    assert_eq!(rsync_changes(&w.path("src"), &copy), "");
    let src = w.path("src").display().to_string();
    let dst = copy.display().to_string();
    let acl = |d: &str| sh(&["getfacl", "-R", "-p", "--absolute-names", d]).replace(d, "X");
    assert_eq!(acl(&src), acl(&dst));
    let caps = |d: &str| sh(&["/usr/sbin/getcap", "-r", d]).replace(d, "X");
    assert_eq!(caps(&src), caps(&dst));
    assert!(
        caps(&dst).contains("X/bin/ping cap_net_raw=ep"),
        "{}",
        caps(&dst)
    );

    let index = Path::new(rec["index"].as_str().unwrap());
    let text =
        String::from_utf8(zstd::decode_all(fs::File::open(index).unwrap()).unwrap()).unwrap();
    let entry = |name: &str| -> serde_json::Value {
        let want = format!("{}/{name}", w.inside("src"));
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["path"] == want.as_str())
            .unwrap_or_else(|| panic!("{want} not in the index"))
    };
    let doc = entry("doc.txt");
    assert_eq!(doc["xattrs"]["user.origin"], "bWFpbA==");
    assert_eq!(doc["xattrs"]["user.bin"], "AP8KAA==");
    assert_eq!(doc["xattrs"]["trusted.note"], "cm9vdCBvbmx5");
    assert_eq!(
        (&doc["user"], &doc["group"]),
        (&"root".into(), &"root".into())
    );
    assert!(entry("shared")["xattrs"]["system.posix_acl_default"].is_string());
    assert!(entry("shared/journal")["xattrs"]["system.posix_acl_access"].is_string());
    assert!(entry("bin/ping")["xattrs"]["security.capability"].is_string());
    assert_eq!(entry("theirs")["user"], "nobody");
}

/// A change of an attribute alone is a change: the file is copied, not
/// linked, the older snapshot keeps its value, and `diff` names what
/// changed (`U` with "xattrs" or "acl"); an unchanged tree is linked whole.
#[test]
fn an_attribute_change_alone_is_a_change() {
    let w = World::new();
    tree(&w);
    let first = w.collect_ok(&[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let same = w.collect_ok(&[]);
    assert_eq!(same["new_files"], 0, "{same}");
    let doc = w.path("src/doc.txt").display().to_string();
    sh(&["setfattr", "-n", "user.origin", "-v", "post", &doc]);
    let journal = w.path("src/shared/journal").display().to_string();
    sh(&["setfacl", "-m", "u:daemon:r", &journal]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let changed = w.collect_ok(&[]);
    assert_eq!(changed["new_files"], 2, "{changed}");
    let value = |rec: &serde_json::Value| {
        let f = in_store(&w, rec).join("doc.txt").display().to_string();
        sh(&["getfattr", "--only-values", "-n", "user.origin", &f])
    };
    assert_eq!(value(&first), "mail");
    assert_eq!(value(&changed), "post");
    assert_eq!(rsync_changes(&w.path("src"), &in_store(&w, &changed)), "");
    let out = w.restore(&[
        "diff",
        &format!("s/{}", same["id"].as_str().unwrap()),
        &format!("s/{}", changed["id"].as_str().unwrap()),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    let src = w.inside("src");
    assert!(
        said.contains(&format!("U    {src}/doc.txt  (xattrs user.origin)\n")),
        "{said}"
    );
    assert!(
        said.contains(&format!("U    {src}/shared/journal  (acl access)\n")),
        "{said}"
    );
    let json = w.restore(&[
        "diff",
        "--json",
        &format!("s/{}", same["id"].as_str().unwrap()),
        &format!("s/{}", changed["id"].as_str().unwrap()),
    ]);
    let lines = records(&json);
    assert!(
        lines
            .iter()
            .any(|l| l["attributes"] == serde_json::json!(["xattrs user.origin"])),
        "{lines:?}"
    );
}

/// The archive's data file of a pack's record.
fn archive_of(w: &World) -> std::path::PathBuf {
    let out = w.pack(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rec = records(&out).pop().expect("an archive record");
    Path::new(rec["path"].as_str().unwrap()).to_path_buf()
}

/// getfacl, getcap and getfattr of what is inside a tree (the top folder
/// is the restore's target, the user's own), with its root shown as X.
fn judged(dir: &Path) -> String {
    let d = dir.display().to_string();
    let acl = sh(&["getfacl", "-R", "-p", "--absolute-names", &d]);
    let caps = sh(&["/usr/sbin/getcap", "-r", &d]);
    let attrs = sh(&[
        "getfattr",
        "-R",
        "-d",
        "-m",
        "-",
        "-e",
        "hex",
        "--absolute-names",
        &d,
    ]);
    format!("{acl}\n{caps}\n{attrs}")
        .replace(&d, "X")
        .split("\n\n")
        .filter(|block| !block.starts_with("# file: X\n"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A restore from the store's tree and one from the archive are the tree
/// itself, as rsync -aHAX, getfacl, getcap and getfattr judge it, with a
/// default ACL on the target folder (which restored entries inherit, and
/// which a restore removes where the source had none).
#[test]
fn a_restore_is_the_tree() {
    let w = World::new();
    tree(&w);
    let snap = w.collect_ok(&[]);
    archive_of(&w);
    let id = snap["id"].as_str().unwrap();
    for (how, name, extra) in [
        ("tree", format!("s/{id}"), None),
        ("archive", format!("s/{id}"), Some("--archive")),
    ] {
        let to = w.path(&format!("to-{how}"));
        fs::create_dir(&to).unwrap();
        sh(&[
            "setfacl",
            "-d",
            "-m",
            "u:daemon:rwx",
            &to.display().to_string(),
        ]);
        let mut args = vec!["restore", name.as_str(), "--to", to.to_str().unwrap()];
        args.extend(extra);
        let out = w.restore(&args);
        assert_eq!(code(&out), 0, "{how}: {}", stderr(&out));
        let restored = to.join(w.inside("src"));
        assert_eq!(rsync_changes(&w.path("src"), &restored), "", "{how}");
        assert_eq!(judged(&w.path("src")), judged(&restored), "{how}");
    }
}

/// GNU tar `--xattrs --xattrs-include='*' --acls` and bsdtar extract snap's
/// archive with every attribute, as rsync -aHAX, getfacl, getcap and
/// getfattr judge them.
#[test]
fn gnu_tar_and_bsdtar_extract_the_archive_whole() {
    let w = World::new();
    tree(&w);
    w.collect_ok(&[]);
    let archive = archive_of(&w);
    let tar = w.path("plain.tar");
    let unzstd = Command::new("zstd")
        .args(["-d", "-q", "-f", "-o"])
        .arg(&tar)
        .arg(&archive)
        .output()
        .unwrap();
    assert!(unzstd.status.success(), "{}", stderr(&unzstd));
    let tar = tar.display().to_string();
    for (tool, args) in [
        (
            "tar",
            vec![
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
                "-xpf",
                &tar,
                "-C",
            ],
        ),
        ("bsdtar", vec!["-xpf", &tar, "-C"]),
    ] {
        let to = w.path(&format!("by-{tool}"));
        fs::create_dir(&to).unwrap();
        let mut cmd = Command::new(tool);
        cmd.args(&args).arg(&to);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{tool}: {}", stderr(&out));
        let extracted = to.join(w.inside("src"));
        assert_eq!(rsync_changes(&w.path("src"), &extracted), "", "{tool}");
        assert_eq!(judged(&w.path("src")), judged(&extracted), "{tool}");
    }
}

/// Tars made by GNU tar `--xattrs --acls` and by bsdtar (its PAX format,
/// with `LIBARCHIVE.xattr` records, and headers holding the owning group's
/// bits where an ACL's mask differs) restore with every attribute, into a
/// folder with a default ACL as well.
#[test]
fn foreign_tars_restore_with_everything() {
    let w = World::new();
    tree(&w);
    let src = w.path("src").display().to_string();
    for (tool, args) in [
        (
            "tar",
            vec![
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
                "--format=posix",
                "-cf",
            ],
        ),
        ("bsdtar", vec!["--format=pax", "-cf"]),
    ] {
        let tar = w.path(&format!("{tool}.tar")).display().to_string();
        let mut cmd = Command::new(tool);
        cmd.args(&args).arg(&tar).args(["-C", &src, "."]);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{tool}: {}", stderr(&out));
        let to = w.path(&format!("from-{tool}"));
        fs::create_dir(&to).unwrap();
        sh(&[
            "setfacl",
            "-d",
            "-m",
            "u:daemon:rwx",
            &to.display().to_string(),
        ]);
        let out = w.restore(&["restore", &tar, "--to", to.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{tool}: {}", stderr(&out));
        assert_eq!(rsync_changes(&w.path("src"), &to), "", "{tool}");
        assert_eq!(judged(&w.path("src")), judged(&to), "{tool}");
    }
}

/// As an unprivileged user, a restore of an archive holding `trusted.*`
/// attributes and a capability names each one it could not set and exits
/// non-zero; with `--no-xattrs` it sets none of them and exits 0.
#[test]
fn unprivileged_restore_names_what_it_could_not_set() {
    let w = World::new();
    tree(&w);
    w.collect_ok(&[]);
    let archive = archive_of(&w);
    let shared = w.path("shared");
    fs::create_dir(&shared).unwrap();
    let copy = shared.join("a.tar.zst");
    fs::copy(&archive, &copy).unwrap();
    sh(&["chmod", "-R", "a+rwX", &shared.display().to_string()]);
    let as_nobody = |to: &str, extra: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(snap_e2e::bin_dir().join("snap-restore"))
            .args(["--store"])
            .arg(shared.join("store"))
            .args(["restore"])
            .arg(&copy)
            .args(["--to"])
            .arg(shared.join(to))
            .args(extra)
            .env_clear()
            .env("HOME", &shared);
        cmd.output().unwrap()
    };
    let out = as_nobody("r1", &[]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    let src = w.inside("src");
    for line in [
        format!("{src}/doc.txt: attribute trusted.note not set: not permitted"),
        format!("{src}/bin/ping: attribute security.capability not set: not permitted"),
    ] {
        assert!(err.contains(&line), "{line}\n{err}");
    }
    let out = as_nobody("r2", &["--no-xattrs"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = shared.join("r2").join(&src).join("doc.txt");
    assert_eq!(
        sh(&["getfattr", "-d", "-m", "-", &doc.display().to_string()]),
        ""
    );
}

/// A target whose filesystem keeps no extended attributes (ramfs, as a
/// tmpfs without them) gets one clear line per attribute and a non-zero
/// exit; `--no-xattrs --no-acls` restores there with exit 0.
#[test]
fn a_target_without_xattrs_is_named() {
    let w = World::new();
    tree(&w);
    let snap = w.collect_ok(&[]);
    let name = format!("s/{}", snap["id"].as_str().unwrap());
    let mnt = w.path("ramfs");
    fs::create_dir(&mnt).unwrap();
    sh(&["mount", "-t", "ramfs", "none", &mnt.display().to_string()]);
    let to = mnt.join("r");
    let out = w.restore(&["restore", &name, "--to", to.to_str().unwrap()]);
    let quiet = mnt.join("q");
    let without = w.restore(&[
        "restore",
        &name,
        "--to",
        quiet.to_str().unwrap(),
        "--no-xattrs",
        "--no-acls",
    ]);
    sh(&["umount", &mnt.display().to_string()]);
    let err = stderr(&out);
    assert_ne!(code(&out), 0, "{err}");
    assert!(
        err.contains(&format!(
            "{}/doc.txt: attribute user.origin not set: the filesystem there keeps no such attributes",
            w.inside("src")
        )),
        "{err}"
    );
    assert_eq!(code(&without), 0, "{}", stderr(&without));
}

/// A copy of this machine's /etc (`cp -a`) restores from the store's tree
/// and from the archive as rsync -aHAX judges it.
#[test]
fn a_copy_of_etc_restores_as_it_was() {
    let w = World::new();
    let etc = w.path("src/etc").display().to_string();
    sh(&["cp", "-a", "/etc", &etc]);
    let snap = w.collect_ok(&[]);
    archive_of(&w);
    let name = format!("s/{}", snap["id"].as_str().unwrap());
    for (how, extra) in [("tree", None), ("archive", Some("--archive"))] {
        let to = w.path(&format!("to-{how}"));
        let mut args = vec!["restore", name.as_str(), "--to", to.to_str().unwrap()];
        args.extend(extra);
        let out = w.restore(&args);
        assert_eq!(code(&out), 0, "{how}: {}", stderr(&out));
        let restored = to.join(w.inside("src"));
        assert_eq!(rsync_changes(&w.path("src"), &restored), "", "{how}");
    }
}
