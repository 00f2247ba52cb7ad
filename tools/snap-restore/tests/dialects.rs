//! Tars written by other tools restore as GNU tar extracts them, or the
//! restore fails naming what it could not restore.
//!
//! The corpus is made here, by the real tools: GNU tar in each `--format` and
//! sparse version, bsdtar in its three formats, 7-Zip, Python's tarfile and
//! Go's archive/tar (their generators are in `dialects/`). They all archive
//! one tree holding what tars find hard: a sparse file, a file that is all
//! hole, names past 100 and 255 bytes, a long symlink target, hard links (one
//! with a long name), a fifo, a device, a non-UTF-8 name, times in
//! nanoseconds, before 1970 and after 2242 (base-256 or PAX), and ids past
//! what octal fields hold. A format that cannot hold a member leaves it out
//! (as its tool says), so every comparison is against GNU tar's extraction of
//! the same archive: the same names, types, contents, modes, owners, mtimes,
//! link targets, devices and hard-link groups, and never more blocks used
//! than GNU tar's files (sparse files stay sparse).
//!
//! One difference is GNU tar's, not ours: a folder listed before members
//! outside it gets its mtime from GNU tar before its later children change
//! it, so there folders are compared with the archived tree instead.
//! These tests need root (owners, a device node), as CI runs them.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use assert_cmd::cargo::CommandCargoExt;

const SPARSE_SIZE: u64 = 8 << 20;

/// The tree every tool archives, in `root/src`.
fn make_tree(src: &Path) {
    let at = |rel: &[u8]| src.join(OsStr::from_bytes(rel));
    let long_dir = format!("dir/{}", "l".repeat(120));
    let long_name = format!("{long_dir}/{}", "n".repeat(150));
    fs::create_dir_all(src.join("dir/nested/deep")).unwrap();
    fs::create_dir_all(src.join(&long_dir)).unwrap();
    fs::write(src.join("small.txt"), "hello\n").unwrap();
    fs::write(src.join("empty"), "").unwrap();
    fs::write(src.join("dir/nested/deep/file"), "deep\n").unwrap();
    fs::write(src.join(&long_name), "long\n").unwrap();
    fs::write(at(b"caf\xe9.txt"), "latin1\n").unwrap();
    let sparse = fs::File::create(src.join("sparse.img")).unwrap();
    sparse.set_len(SPARSE_SIZE).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(&[7u8; 4096], 1 << 20).unwrap();
    sparse.write_all_at(b"tail", SPARSE_SIZE - 4).unwrap();
    fs::File::create(src.join("allzero.sparse"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    std::os::unix::fs::symlink("small.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("t".repeat(200), src.join("longlink")).unwrap();
    fs::hard_link(src.join("small.txt"), src.join("hard")).unwrap();
    fs::hard_link(
        src.join("small.txt"),
        src.join(format!("{long_dir}/hard-{}", "n".repeat(150))),
    )
    .unwrap();
    run(Command::new("mkfifo").arg(src.join("fifo")));
    run(Command::new("mknod")
        .arg(src.join("devnull"))
        .args(["c", "1", "3"]));
    fs::write(src.join("bigid.txt"), "id\n").unwrap();
    std::os::unix::fs::chown(src.join("bigid.txt"), Some(3_000_000), Some(3_000_001)).unwrap();
    fs::set_permissions(
        src.join("small.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    fs::write(src.join("old.txt"), "old\n").unwrap();
    fs::write(src.join("future.txt"), "future\n").unwrap();
    let set = |rel: &str, t: SystemTime| {
        fs::File::open(src.join(rel))
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    set(
        "small.txt",
        UNIX_EPOCH + Duration::new(1_614_834_367, 123_456_789),
    );
    set("old.txt", UNIX_EPOCH - Duration::from_secs(315_619_200));
    set(
        "future.txt",
        UNIX_EPOCH + Duration::from_secs(10_413_792_000),
    );
    for dir in ["dir/nested/deep", "dir/nested", &long_dir, "dir", ""] {
        set(dir, UNIX_EPOCH + Duration::new(1_700_000_000, 500));
    }
    fs::set_permissions(
        src.join("dir"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One way of writing a tar of `src` to `out`.
struct Dialect {
    name: &'static str,
    /// The program and its arguments; `{src}` and `{out}` are replaced.
    argv: &'static [&'static str],
    /// Whether the archive stores `sparse.img` as a sparse file.
    sparse: bool,
}

const GNU_FORMATS: &[Dialect] = &[
    Dialect {
        name: "gnu",
        argv: &["tar", "--format=gnu", "-cf", "{out}", "-C", "{src}", "."],
        sparse: false,
    },
    Dialect {
        name: "oldgnu",
        argv: &["tar", "--format=oldgnu", "-cf", "{out}", "-C", "{src}", "."],
        sparse: false,
    },
    Dialect {
        name: "posix",
        argv: &["tar", "--format=posix", "-cf", "{out}", "-C", "{src}", "."],
        sparse: false,
    },
    Dialect {
        name: "ustar",
        argv: &["tar", "--format=ustar", "-cf", "{out}", "-C", "{src}", "."],
        sparse: false,
    },
    Dialect {
        name: "v7",
        argv: &["tar", "--format=v7", "-cf", "{out}", "-C", "{src}", "."],
        sparse: false,
    },
    Dialect {
        name: "gnu-incremental",
        argv: &[
            "tar",
            "--listed-incremental={out}.snar",
            "-cf",
            "{out}",
            "-C",
            "{src}",
            ".",
        ],
        sparse: false,
    },
];

const GNU_SPARSE: &[Dialect] = &[
    Dialect {
        name: "gnu-sparse",
        argv: &[
            "tar",
            "--format=gnu",
            "--sparse",
            "-cf",
            "{out}",
            "-C",
            "{src}",
            ".",
        ],
        sparse: true,
    },
    Dialect {
        name: "oldgnu-sparse",
        argv: &[
            "tar",
            "--format=oldgnu",
            "--sparse",
            "-cf",
            "{out}",
            "-C",
            "{src}",
            ".",
        ],
        sparse: true,
    },
    Dialect {
        name: "pax-sparse-0.0",
        argv: &[
            "tar",
            "--format=posix",
            "--sparse",
            "--sparse-version=0.0",
            "-cf",
            "{out}",
            "-C",
            "{src}",
            ".",
        ],
        sparse: true,
    },
    Dialect {
        name: "pax-sparse-0.1",
        argv: &[
            "tar",
            "--format=posix",
            "--sparse",
            "--sparse-version=0.1",
            "-cf",
            "{out}",
            "-C",
            "{src}",
            ".",
        ],
        sparse: true,
    },
    Dialect {
        name: "pax-sparse-1.0",
        argv: &[
            "tar",
            "--format=posix",
            "--sparse",
            "--sparse-version=1.0",
            "-cf",
            "{out}",
            "-C",
            "{src}",
            ".",
        ],
        sparse: true,
    },
];

const BSDTAR: &[Dialect] = &[
    // bsdtar finds holes itself and writes PAX sparse 1.0.
    Dialect {
        name: "bsdtar-pax",
        argv: &[
            "bsdtar", "--format", "pax", "-cf", "{out}", "-C", "{src}", ".",
        ],
        sparse: true,
    },
    Dialect {
        name: "bsdtar-ustar",
        argv: &[
            "bsdtar", "--format", "ustar", "-cf", "{out}", "-C", "{src}", ".",
        ],
        sparse: false,
    },
    Dialect {
        name: "bsdtar-gnutar",
        argv: &[
            "bsdtar", "--format", "gnutar", "-cf", "{out}", "-C", "{src}", ".",
        ],
        sparse: false,
    },
];

const OTHERS: &[Dialect] = &[
    // 7-Zip opens a fifo to read it (and waits), so it archives the rest.
    Dialect {
        name: "7zip",
        argv: &[
            "7zz",
            "a",
            "-ttar",
            "-snl",
            "-snh",
            "-x!fifo",
            "-x!devnull",
            "{out}",
            "{src}/.",
        ],
        sparse: false,
    },
    Dialect {
        name: "python-ustar",
        argv: &["python3", "{dialects}/gen.py", "{src}", "{out}", "ustar"],
        sparse: false,
    },
    Dialect {
        name: "python-gnu",
        argv: &["python3", "{dialects}/gen.py", "{src}", "{out}", "gnu"],
        sparse: false,
    },
    Dialect {
        name: "python-pax",
        argv: &["python3", "{dialects}/gen.py", "{src}", "{out}", "pax"],
        sparse: false,
    },
    Dialect {
        name: "go-ustar",
        argv: &["go", "run", "{dialects}/gen.go", "{src}", "{out}", "ustar"],
        sparse: false,
    },
    Dialect {
        name: "go-gnu",
        argv: &["go", "run", "{dialects}/gen.go", "{src}", "{out}", "gnu"],
        sparse: false,
    },
    Dialect {
        name: "go-pax",
        argv: &["go", "run", "{dialects}/gen.go", "{src}", "{out}", "pax"],
        sparse: false,
    },
];

/// What a tree holds at one name, as compared.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i128,
    content: Vec<u8>,
    rdev: u64,
    /// 512-byte blocks used.
    blocks: u64,
    ino: u64,
    nlink: u64,
}

fn walk(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let t = m.file_type();
            let (kind, content) = if t.is_file() {
                ("file", fs::read(&p).unwrap())
            } else if t.is_dir() {
                stack.push(p.clone());
                ("dir", vec![])
            } else if t.is_symlink() {
                (
                    "symlink",
                    fs::read_link(&p).unwrap().into_os_string().into_vec(),
                )
            } else if t.is_fifo() {
                ("fifo", vec![])
            } else if t.is_char_device() {
                ("char", vec![])
            } else {
                ("other", vec![])
            };
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            out.insert(
                rel,
                Node {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                    content,
                    rdev: m.rdev(),
                    blocks: m.blocks(),
                    ino: m.ino(),
                    nlink: m.nlink(),
                },
            );
        }
    }
    out
}

use std::os::unix::ffi::OsStringExt;

/// The groups of names that are one file (hard links), each sorted.
fn link_groups(tree: &BTreeMap<Vec<u8>, Node>) -> Vec<Vec<Vec<u8>>> {
    let mut by_ino: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for (name, n) in tree {
        if n.kind == "file" && n.nlink > 1 {
            by_ino.entry(n.ino).or_default().push(name.clone());
        }
    }
    let mut groups: Vec<_> = by_ino.into_values().collect();
    groups.sort();
    groups
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Differences of `ours` from GNU tar's `reference` (folders' mtimes from `src`).
fn compare(
    reference: &BTreeMap<Vec<u8>, Node>,
    ours: &BTreeMap<Vec<u8>, Node>,
    src: &BTreeMap<Vec<u8>, Node>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let names: std::collections::BTreeSet<&Vec<u8>> = reference.keys().chain(ours.keys()).collect();
    for name in names {
        let (Some(r), Some(o)) = (reference.get(name), ours.get(name)) else {
            let side = if reference.contains_key(name) {
                "GNU tar's"
            } else {
                "ours"
            };
            diffs.push(format!("{}: only in {side}", show(name)));
            continue;
        };
        let mtime_ok = match r.kind {
            "dir" => o.mtime_ns / 1_000_000_000 == src[name].mtime_ns / 1_000_000_000,
            _ => o.mtime_ns == r.mtime_ns,
        };
        let same = (r.kind, r.mode, r.uid, r.gid, &r.content, r.rdev)
            == (o.kind, o.mode, o.uid, o.gid, &o.content, o.rdev);
        if !same || !mtime_ok {
            diffs.push(format!(
                "{}: GNU tar {:?}, ours {:?}",
                show(name),
                (
                    r.kind,
                    r.mode,
                    r.uid,
                    r.gid,
                    r.mtime_ns,
                    r.content.len(),
                    r.rdev
                ),
                (
                    o.kind,
                    o.mode,
                    o.uid,
                    o.gid,
                    o.mtime_ns,
                    o.content.len(),
                    o.rdev
                )
            ));
        }
        if o.blocks > r.blocks {
            diffs.push(format!(
                "{}: uses {} blocks, GNU tar's {}",
                show(name),
                o.blocks,
                r.blocks
            ));
        }
    }
    if link_groups(reference) != link_groups(ours) {
        diffs.push(format!(
            "hard links: GNU tar {:?}, ours {:?}",
            link_groups(reference).len(),
            link_groups(ours).len()
        ));
    }
    diffs
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let s = Scratch {
            dir: tempfile::tempdir().unwrap(),
        };
        make_tree(&s.path("src"));
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn snap(&self, args: &[&str]) -> Output {
        Command::cargo_bin("snap-restore")
            .unwrap()
            .env_clear()
            .env("HOME", self.path("home"))
            .args(["--store"])
            .arg(self.path("store"))
            .args(["-q"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Writes the archive of `d`; a format that cannot hold some members leaves them out.
    fn make(&self, d: &Dialect) -> PathBuf {
        let out = self.path(&format!("{}.tar", d.name));
        let dialects = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dialects");
        let fill = |a: &str| {
            a.replace("{out}", out.to_str().unwrap())
                .replace("{src}", self.path("src").to_str().unwrap())
                .replace("{dialects}", dialects.to_str().unwrap())
        };
        let argv: Vec<String> = d.argv.iter().map(|a| fill(a)).collect();
        let made = Command::new(&argv[0])
            .args(&argv[1..])
            .env(
                "GOCACHE",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache"),
            )
            .env("GO111MODULE", "off")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // GNU tar says 2 when it left members out; the archive is still whole.
        assert!(
            made.status.code().is_some_and(|c| c <= 2) && out.exists(),
            "{}: {}",
            d.name,
            String::from_utf8_lossy(&made.stderr)
        );
        out
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Checks one dialect: GNU tar's extraction and ours (direct, and after import) agree.
fn check(s: &Scratch, d: &Dialect) -> Vec<String> {
    let archive = s.make(d);
    let a = archive.to_str().unwrap();
    let reference = s.path(&format!("{}-gnu", d.name));
    fs::create_dir(&reference).unwrap();
    run(Command::new("tar")
        .args(["-xf", a, "--numeric-owner", "-C"])
        .arg(&reference));
    let mut problems = Vec::new();
    let mut expect = |what: &str, out: Output| {
        if code(&out) != 0 {
            problems.push(format!(
                "{what}: exit {}: {}",
                code(&out),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    };
    let ours = s.path(&format!("{}-snap", d.name));
    expect(
        "restore",
        s.snap(&["restore", a, "--to", ours.to_str().unwrap()]),
    );
    expect("verify", s.snap(&["verify", a]));
    expect("import", s.snap(&["import", a, "--set", d.name]));
    let imported = s.path(&format!("{}-imported", d.name));
    expect(
        "restore of the import",
        s.snap(&[
            "restore",
            &format!("{}/latest", d.name),
            "--to",
            imported.to_str().unwrap(),
        ]),
    );
    expect(
        "verify of the import",
        s.snap(&["verify", &format!("{}/latest", d.name)]),
    );
    let (reference, src) = (walk(&reference), walk(&s.path("src")));
    for name in ["small.txt", "sparse.img", "link", "dir/nested/deep/file"] {
        if !reference.contains_key(name.as_bytes()) {
            problems.push(format!("{name}: not in the archive at all"));
        }
    }
    let sparse_used =
        |t: &BTreeMap<Vec<u8>, Node>| t.get(b"sparse.img".as_slice()).map(|n| n.blocks * 512);
    if d.sparse && sparse_used(&reference) >= Some(SPARSE_SIZE / 2) {
        problems
            .push("sparse.img: GNU tar's extraction is not sparse: not a sparse archive".into());
    }
    for (how, dir) in [("restored", &ours), ("imported", &imported)] {
        let tree = walk(dir);
        if sparse_used(&tree).is_some_and(|b| b > 64 << 10) {
            problems.push(format!("{how}: sparse.img is not sparse"));
        }
        problems.extend(
            compare(&reference, &tree, &src)
                .into_iter()
                .map(|p| format!("{how}: {p}")),
        );
    }
    problems
        .into_iter()
        .map(|p| format!("{}: {p}", d.name))
        .collect()
}

fn check_all(dialects: &[Dialect]) {
    let s = Scratch::new();
    let problems: Vec<String> = dialects.iter().flat_map(|d| check(&s, d)).collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// GNU tar's gnu, oldgnu, posix, ustar and v7 formats and its incremental dumps restore as GNU tar extracts them.
#[test]
fn gnu_tar_formats_restore_as_gnu_tar_extracts_them() {
    check_all(GNU_FORMATS);
}

/// GNU tar's old GNU sparse and PAX sparse 0.0, 0.1 and 1.0 restore under their names, sparse.
#[test]
fn gnu_tar_sparse_files_restore_sparse() {
    check_all(GNU_SPARSE);
}

/// bsdtar's pax (with its sparse files), ustar and gnutar formats restore as GNU tar extracts them.
#[test]
fn bsdtar_formats_restore_as_gnu_tar_extracts_them() {
    check_all(BSDTAR);
}

/// 7-Zip's tars, Python's tarfile (with a PAX global header) and Go's archive/tar restore as GNU tar extracts them.
#[test]
fn other_writers_restore_as_gnu_tar_extracts_them() {
    check_all(OTHERS);
}

/// `tar` run in `dir`.
fn tar_in(dir: &Path, args: &[&str]) {
    run(Command::new("tar").args(args).current_dir(dir));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The later volume of a multi-volume archive (it starts inside a file) and
/// the first one (it ends inside a file) each exit 65, naming the file.
#[test]
fn multi_volume_parts_exit_65_naming_the_file() {
    let s = Scratch::new();
    let noise: Vec<u8> = (0..250_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(s.path("big.bin"), noise).unwrap();
    let dir = s.dir.path();
    tar_in(
        dir,
        &[
            "-c", "-M", "-L", "100", "-f", "v1.tar", "-f", "v2.tar", "-f", "v3.tar", "big.bin",
        ],
    );
    let second = s.snap(&[
        "restore",
        s.path("v2.tar").to_str().unwrap(),
        "--to",
        s.path("r2").to_str().unwrap(),
    ]);
    assert_eq!(code(&second), 65, "{}", stderr(&second));
    assert!(
        stderr(&second).contains("big.bin: not restored: it continues a file from the previous volume of a multi-volume archive"),
        "{}",
        stderr(&second)
    );
    let first = s.snap(&[
        "restore",
        s.path("v1.tar").to_str().unwrap(),
        "--to",
        s.path("r1").to_str().unwrap(),
    ]);
    assert_eq!(code(&first), 65, "{}", stderr(&first));
    assert!(
        stderr(&first).contains("big.bin: the archive ends inside a member: it was cut short"),
        "{}",
        stderr(&first)
    );
    assert!(
        !s.path("r1/big.bin").exists(),
        "a cut file is never published under its name"
    );
}

/// Writes `a.txt`, a sparse file and `z.txt` (last, not ending in zeros) as PAX sparse 1.0.
fn small_sparse_archive(s: &Scratch) -> Vec<u8> {
    let d = s.path("cut");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("a.txt"), "a".repeat(600)).unwrap();
    let f = fs::File::create(d.join("sparse.bin")).unwrap();
    f.set_len(1 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[9u8; 5000], 512 << 10).unwrap();
    fs::write(d.join("z.txt"), "z".repeat(3000)).unwrap();
    tar_in(
        &d,
        &[
            "--format=posix",
            "--sparse",
            "--sparse-version=1.0",
            "-cf",
            "../cut.tar",
            "a.txt",
            "sparse.bin",
            "z.txt",
        ],
    );
    fs::read(s.path("cut.tar")).unwrap()
}

/// An archive cut anywhere before its end-of-archive blocks exits 65 from
/// restore, import and verify, never publishes a cut file, and restores the
/// files whole before the cut; once one zero block is there, the content is
/// whole and it restores (as with GNU tar).
#[test]
fn cut_archives_exit_65() {
    let s = Scratch::new();
    let whole = small_sparse_archive(&s);
    let content = whole.iter().rposition(|&b| b != 0).unwrap() + 1;
    let members_end = content.div_ceil(512) * 512;
    let mut cuts: Vec<usize> = (1..members_end / 512 + 1)
        .flat_map(|k| [k * 512 - 212, k * 512, k * 512 + 1])
        .filter(|&c| c < members_end + 512)
        .collect();
    cuts.push(members_end + 511);
    // Where a.txt's content ends: cut after that, it is whole and restored.
    let a_end = whole
        .windows(600)
        .position(|w| w == "a".repeat(600).as_bytes())
        .unwrap()
        + 600;
    let mut wrong = Vec::new();
    for (i, &cut) in cuts.iter().enumerate() {
        let path = s.path(&format!("cut-{cut}.tar"));
        fs::write(&path, &whole[..cut]).unwrap();
        let p = path.to_str().unwrap();
        let to = s.path(&format!("r-{cut}"));
        let mut runs = vec![(
            "restore",
            s.snap(&["restore", p, "--to", to.to_str().unwrap()]),
        )];
        if i % 3 == 0 {
            runs.push(("verify", s.snap(&["verify", p])));
            runs.push((
                "import",
                s.snap(&["import", p, "--set", &format!("c{cut}")]),
            ));
        }
        for (what, out) in runs {
            if code(&out) != 65 {
                wrong.push(format!(
                    "{what} of {cut} bytes: exit {}: {}",
                    code(&out),
                    stderr(&out)
                ));
            }
        }
        for name in ["a.txt", "sparse.bin", "z.txt"] {
            let got = fs::read(to.join(name));
            let want = fs::read(s.path("cut").join(name)).unwrap();
            if got.as_ref().is_ok_and(|g| *g != want) {
                wrong.push(format!("restore of {cut} bytes published a cut {name}"));
            }
            if name == "a.txt" && cut >= a_end && got.is_err() {
                wrong.push(format!(
                    "restore of {cut} bytes left out a.txt, whole before the cut"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    let enough = s.path("enough.tar");
    fs::write(&enough, &whole[..members_end + 512]).unwrap();
    let out = s.snap(&[
        "restore",
        enough.to_str().unwrap(),
        "--to",
        s.path("r-enough").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        fs::read(s.path("r-enough/z.txt")).unwrap(),
        "z".repeat(3000).as_bytes()
    );
}

/// Cut compressed archives exit 65 (the decoder finds the cut).
#[test]
fn cut_compressed_archives_exit_65() {
    let s = Scratch::new();
    small_sparse_archive(&s);
    for (name, flag) in [("cut.tar.gz", "-z"), ("cut.tar.zst", "--zstd")] {
        tar_in(
            &s.path("cut"),
            &[
                "-c",
                flag,
                "-f",
                &format!("../{name}"),
                "a.txt",
                "sparse.bin",
                "z.txt",
            ],
        );
        let whole = fs::read(s.path(name)).unwrap();
        for cut in [whole.len() / 4, whole.len() / 2, whole.len() - 3] {
            let path = s.path(&format!("{cut}-{name}"));
            fs::write(&path, &whole[..cut]).unwrap();
            let to = s.path(&format!("r-{cut}-{name}"));
            let out = s.snap(&[
                "restore",
                path.to_str().unwrap(),
                "--to",
                to.to_str().unwrap(),
            ]);
            assert_eq!(code(&out), 65, "{name} cut at {cut}: {}", stderr(&out));
            let out = s.snap(&["verify", path.to_str().unwrap()]);
            assert_eq!(
                code(&out),
                65,
                "verify {name} cut at {cut}: {}",
                stderr(&out)
            );
        }
    }
}

/// Rewrites the header at `at` with `edit`, then gives it a right checksum.
fn edit_header(archive: &mut [u8], at: usize, edit: impl FnOnce(&mut [u8])) {
    let h = &mut archive[at..at + 512];
    edit(h);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// A header with a wrong checksum, and a PAX sparse map that is not numbers, exit 65.
#[test]
fn garbled_archives_exit_65() {
    let s = Scratch::new();
    let whole = small_sparse_archive(&s);
    let mut bad_sum = whole.clone();
    bad_sum[1] ^= 0x20;
    let mut bad_map = whole.clone();
    let map_at = whole
        .windows(4)
        .position(|w| w == b"\n524")
        .expect("the map of sparse.bin")
        + 1;
    bad_map[map_at] = b'x';
    for (name, bytes, says) in [
        ("sum.tar", bad_sum, "checksum"),
        ("map.tar", bad_map, "sparse map is not a number"),
    ] {
        fs::write(s.path(name), bytes).unwrap();
        let p = s.path(name);
        let out = s.snap(&[
            "restore",
            p.to_str().unwrap(),
            "--to",
            s.path(&format!("r-{name}")).to_str().unwrap(),
        ]);
        assert_eq!(code(&out), 65, "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{name}: {}", stderr(&out));
    }
}

/// An unknown member type restores as a regular file with a warning, and a
/// base-256 size reads, as GNU tar does both.
#[test]
fn unknown_types_and_base_256_sizes_read_as_gnu_tar_does() {
    let s = Scratch::new();
    fs::write(s.path("s.txt"), "hello\n").unwrap();
    tar_in(s.dir.path(), &["--format=gnu", "-cf", "one.tar", "s.txt"]);
    let one = fs::read(s.path("one.tar")).unwrap();
    let mut unknown = one.clone();
    edit_header(&mut unknown, 0, |h| h[156] = b'Z');
    let mut big = one;
    edit_header(&mut big, 0, |h| {
        h[124] = 0x80;
        h[125..136].copy_from_slice(&6u128.to_be_bytes()[5..]);
    });
    for (name, bytes, warns) in [("unknown.tar", unknown, true), ("b256.tar", big, false)] {
        fs::write(s.path(name), bytes).unwrap();
        let to = s.path(&format!("r-{name}"));
        let gnu = s.path(&format!("g-{name}"));
        fs::create_dir(&gnu).unwrap();
        run(Command::new("tar")
            .arg("-xf")
            .arg(s.path(name))
            .arg("-C")
            .arg(&gnu));
        let out = s.snap(&[
            "restore",
            s.path(name).to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ]);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        assert_eq!(
            fs::read(to.join("s.txt")).unwrap(),
            fs::read(gnu.join("s.txt")).unwrap()
        );
        assert_eq!(
            stderr(&out).contains(
                "s.txt: unknown tar type 'Z', restored as a regular file (as GNU tar does)"
            ),
            warns,
            "{name}: {}",
            stderr(&out)
        );
    }
}
