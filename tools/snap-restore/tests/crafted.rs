//! Hand-made archives of the kinds other projects' test suites hold
//! (libarchive's and Go's archive/tar's): each is extracted by GNU tar and
//! restored by snap, and the two trees must be the same; where GNU tar
//! fails, snap refuses with the reason and its exit code.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use snap_testkit::tarcraft::{Head, Tar, checksum, record};
use snap_testkit::{code, stderr};

/// What a restored name holds, as compared: kind, content or link
/// target, mode and mtime in nanoseconds.
type Tree = BTreeMap<Vec<u8>, (char, Vec<u8>, u32, i128)>;

fn walk(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let (kind, content) = if m.is_dir() {
                stack.push(p.clone());
                ('d', vec![])
            } else if m.is_symlink() {
                (
                    'l',
                    fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
                )
            } else {
                ('f', fs::read(&p).unwrap())
            };
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
            let mtime = if kind == 'd' { 0 } else { mtime };
            out.insert(rel, (kind, content, m.mode() & 0o7777, mtime));
        }
    }
    out
}

fn show(t: &Tree) -> String {
    t.iter()
        .map(|(k, v)| {
            format!(
                "{} {} {:?} {:o} {}\n",
                v.0,
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(&v.1),
                v.2,
                v.3
            )
        })
        .collect()
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// `None`: GNU tar extracts it and snap restores the same tree.
    /// `Some((exit, words))`: GNU tar fails, and snap exits so, saying so.
    refused: Option<(i32, &'static str)>,
}

fn same(name: &'static str, bytes: Vec<u8>) -> Case {
    Case {
        name,
        bytes,
        refused: None,
    }
}

/// A GNU volume label (`tar -V`) as GNU tar writes it: its mode, ids and
/// size fields empty.
fn label() -> [u8; 512] {
    let mut h = Head::file(b"my label", 0).kind(b'V').block();
    h[100..136].fill(0);
    checksum(&mut h);
    h
}

fn cases() -> Vec<Case> {
    let long_a = [b"first-".as_slice(), &[b'a'; 120]].concat();
    let long_b = [b"second-".as_slice(), &[b'b'; 120]].concat();
    let mut name_a = long_a.clone();
    name_a.push(0);
    let mut name_b = long_b.clone();
    name_b.push(0);
    vec![
        // libarchive's test_compat_tar_directory: an old tar's folder has
        // size 1; its size is no data, so the next member is kept.
        same(
            "folder-with-a-size",
            Tar::new()
                .member(Head::file(b"dir/", 1).kind(b'5'), b"")
                .file(b"dir/a.txt", b"abc")
                .end(),
        ),
        // An old-style hard link with a size and no data after it.
        same(
            "hard-link-with-a-size",
            Tar::new()
                .file(b"a.txt", b"abc")
                .member(Head::file(b"b.txt", 3).kind(b'1').link(b"a.txt"), b"")
                .file(b"c.txt", b"hi")
                .end(),
        ),
        // Two GNU long names for one member: the last one wins.
        same(
            "repeated-long-names",
            Tar::new()
                .long(b'L', &name_a)
                .long(b'L', &name_b)
                .file(b"short", b"hi")
                .end(),
        ),
        // Two PAX headers for one member: the later record wins.
        same(
            "repeated-pax-headers",
            Tar::new()
                .pax(b'x', &record("path", b"one.txt"))
                .pax(b'x', &record("path", b"two.txt"))
                .member(Head::file(b"short", 2).posix(), b"hi")
                .end(),
        ),
        // A PAX path with no member after it before the end: nothing to make.
        same(
            "trailing-pax-path",
            Tar::new()
                .member(Head::file(b"a.txt", 2).posix(), b"hi")
                .pax(b'x', &record("path", b"ghost.txt"))
                .end(),
        ),
        // A PAX mtime with bytes after the time: GNU tar takes the time.
        same(
            "pax-time-with-junk",
            Tar::new()
                .pax(b'x', &record("mtime", b"1234.5x"))
                .member(Head::file(b"t.txt", 2).posix(), b"hi")
                .end(),
        ),
        // A size field led by a NUL (a writer whose previous field overflowed).
        same(
            "size-led-by-nul",
            Tar::new()
                .member(
                    Head::file(b"n.txt", 2).size_field(b"\x000000000002\0"),
                    b"hi",
                )
                .end(),
        ),
        // Go's gnu-long-nul.tar: a long name is cut at its first NUL.
        same(
            "long-name-cut-at-nul",
            Tar::new()
                .long(b'L', b"cut.txt\0junk")
                .file(b"whatever", b"hi")
                .end(),
        ),
        // Go's pax-nul-path.tar: a PAX path is cut at its first NUL too.
        same(
            "pax-path-cut-at-nul",
            Tar::new()
                .pax(b'x', &record("path", b"p.txt\0junk"))
                .member(Head::file(b"whatever", 2).posix(), b"hi")
                .end(),
        ),
        // A PAX record holding newlines, read by its length.
        same(
            "pax-value-with-newlines",
            Tar::new()
                .pax(b'x', &record("comment", b"one\ntwo\n3 x=y\n"))
                .member(Head::file(b"c.txt", 2).posix(), b"hi")
                .end(),
        ),
        // A volume label with empty numeric fields names the archive only.
        same(
            "volume-label",
            Tar::new().block(&label()).file(b"l.txt", b"hi").end(),
        ),
        // A PAX record without `=`: GNU tar and bsdtar both fail.
        Case {
            name: "pax-record-without-equals",
            bytes: Tar::new()
                .pax(b'x', b"21 SCHILY.xattr.user\n")
                .member(Head::file(b"x.txt", 2).posix(), b"hi")
                .end(),
            refused: Some((65, "a PAX record has no '='")),
        },
        // A PAX mtime that is no time at all: GNU tar fails.
        Case {
            name: "pax-time-not-a-time",
            bytes: Tar::new()
                .pax(b'x', &record("mtime", b"abc"))
                .member(Head::file(b"t.txt", 2).posix(), b"hi")
                .end(),
            refused: Some((
                65,
                "t.txt: not restored: it has a PAX mtime \"abc\" that is not a time",
            )),
        },
    ]
}

fn gnu_tar(archive: &Path, to: &Path) -> Output {
    fs::create_dir_all(to).unwrap();
    Command::new("tar")
        .args(["-xf"])
        .arg(archive)
        .args(["--numeric-owner", "-C"])
        .arg(to)
        .output()
        .unwrap()
}

fn snap(dir: &Path, archive: &Path, to: &Path) -> Output {
    Command::cargo_bin("snap-restore")
        .unwrap()
        .env_clear()
        .env("HOME", dir.join("home"))
        .arg("--store")
        .arg(dir.join("store"))
        .args(["-q", "restore"])
        .arg(archive)
        .arg("--to")
        .arg(to)
        .output()
        .unwrap()
}

/// Each hand-made archive GNU tar extracts restores as the same tree, and
/// each one GNU tar fails on is refused with its reason.
#[test]
fn odd_archives_restore_as_gnu_tar_extracts_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for c in cases() {
        let archive = dir.path().join(format!("{}.tar", c.name));
        fs::write(&archive, &c.bytes).unwrap();
        let reference = dir.path().join(format!("{}-gnu", c.name));
        let ours = dir.path().join(format!("{}-snap", c.name));
        let gnu = gnu_tar(&archive, &reference);
        let out = snap(dir.path(), &archive, &ours);
        match c.refused {
            None => {
                if code(&gnu) != 0 {
                    problems.push(format!("{}: GNU tar fails: {}", c.name, stderr(&gnu)));
                } else if code(&out) != 0 {
                    problems.push(format!("{}: exit {}: {}", c.name, code(&out), stderr(&out)));
                } else if walk(&reference) != walk(&ours) {
                    problems.push(format!(
                        "{}: GNU tar made\n{}snap made\n{}",
                        c.name,
                        show(&walk(&reference)),
                        show(&walk(&ours))
                    ));
                }
            }
            Some((exit, words)) => {
                if code(&gnu) == 0 {
                    problems.push(format!("{}: GNU tar extracts it", c.name));
                }
                if code(&out) != exit || !stderr(&out).contains(words) {
                    problems.push(format!(
                        "{}: exit {} (want {exit}, saying {words:?}): {}",
                        c.name,
                        code(&out),
                        stderr(&out)
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

fn getfattr(path: &Path, name: &str) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Solaris ACL header (`A`) is the next member's access ACL, not a file
/// of its own; a `LIBARCHIVE.xattr` record's URL-encoded name is decoded;
/// owners go by name as GNU tar gives them (uid 4242 named `daemon` is
/// daemon's here), and by number with `--numeric-owner`.
#[test]
fn solaris_acls_libarchive_names_and_owners_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let acl = b"01000005\0user::rw-,user:daemon:r--,group::r--,mask::r--,other::r--\0";
    let bytes = Tar::new()
        .member(
            Head::file(b"s.txt", acl.len() as u64).kind(b'A').posix(),
            acl,
        )
        .member(Head::file(b"s.txt", 2).posix(), b"hi")
        .pax(b'x', &record("LIBARCHIVE.xattr.user.a%3Db", b"dmFsdWU"))
        .member(Head::file(b"l.txt", 2).posix(), b"hi")
        .member(
            Head::file(b"o.txt", 2)
                .posix()
                .owner(4242, b"daemon", 4242, b"daemon"),
            b"hi",
        )
        .end();
    let archive = dir.path().join("odd.tar");
    fs::write(&archive, bytes).unwrap();
    let reference = dir.path().join("gnu");
    assert_eq!(code(&gnu_tar_by_name(&archive, &reference)), 0);
    let ours = dir.path().join("snap");
    let out = snap(dir.path(), &archive, &ours);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(walk(&reference), walk(&ours));
    let facl = Command::new("getfacl")
        .arg(ours.join("s.txt"))
        .output()
        .unwrap();
    let facl = String::from_utf8_lossy(&facl.stdout);
    assert!(facl.contains("user:daemon:r--\n"), "{facl}");
    assert_eq!(getfattr(&ours.join("l.txt"), "user.a=b"), "value");
    let owner = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&ours.join("o.txt")), owner(&reference.join("o.txt")));
    assert_eq!(owner(&ours.join("o.txt")), (1, 1), "daemon is 1 on Debian");
    let numeric = dir.path().join("numeric");
    let out = Command::cargo_bin("snap-restore")
        .unwrap()
        .env_clear()
        .env("HOME", dir.path().join("home"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["-q", "restore"])
        .arg(&archive)
        .arg("--to")
        .arg(&numeric)
        .arg("--numeric-owner")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(owner(&numeric.join("o.txt")), (4242, 4242));
}

/// GNU tar's extraction as root, owners by name (its default).
fn gnu_tar_by_name(archive: &Path, to: &Path) -> Output {
    fs::create_dir_all(to).unwrap();
    Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(to)
        .output()
        .unwrap()
}

/// libarchive's own test archives (tests/libarchive/, with its NOTICE):
/// each restores as GNU tar extracts it; the ACLs GNU tar `--acls` can
/// apply come back (names mapped here: Solaris's `lp` is uid 7 on Debian),
/// and the ones Linux cannot (NFSv4 ACLs, a name with no account here and
/// no id) are named, the run ending 1 with the rest restored.
#[test]
fn libarchive_test_archives_restore_as_gnu_tar_extracts_them() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/libarchive");
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for (name, exit, says) in [
        ("test_compat_tar_directory_1", 0, ""),
        ("test_read_format_gtar_redundant_L", 0, ""),
        ("test_pax_xattr_header_all", 0, ""),
        ("test_read_pax_xattr_schily", 0, ""),
        ("test_acl_pax_posix1e", 0, ""),
        (
            "test_compat_solaris_tar_acl",
            1,
            "file-with-nfsv4-acls: attribute system.posix_acl_access not set: a Solaris NFSv4 ACL",
        ),
        (
            "test_compat_star_acl_posix1e",
            1,
            "file1: attribute system.posix_acl_access not set: ACL entry \"user:user77:r--\" names \"user77\", who has no account here",
        ),
    ] {
        let archive = here.join(format!("{name}.tar"));
        let reference = dir.path().join(format!("{name}-gnu"));
        let ours = dir.path().join(format!("{name}-snap"));
        let gnu = gnu_tar(&archive, &reference);
        let out = snap(dir.path(), &archive, &ours);
        if code(&gnu) != 0 {
            problems.push(format!("{name}: GNU tar fails: {}", stderr(&gnu)));
        }
        if code(&out) != exit || !stderr(&out).contains(says) {
            problems.push(format!(
                "{name}: exit {} (want {exit}): {}",
                code(&out),
                stderr(&out)
            ));
        }
        if walk(&reference) != walk(&ours) {
            problems.push(format!(
                "{name}: GNU tar made\n{}snap made\n{}",
                show(&walk(&reference)),
                show(&walk(&ours))
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    let acl = |p: &str| {
        let out = Command::new("getfacl")
            .args(["-n", "--omit-header"])
            .arg(dir.path().join(p))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let solaris = acl("test_compat_solaris_tar_acl-snap/file-with-posix-acls");
    assert!(
        solaris.contains("user:7:--x") && solaris.contains("user:666:r--"),
        "{solaris}"
    );
    let folder = acl("test_compat_solaris_tar_acl-snap/dir-with-posix-acls");
    assert!(folder.contains("default:group:3:r-x"), "{folder}");
}
