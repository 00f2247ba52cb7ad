//! Seekable archives: one file back from a bucket reads only the frames
//! that hold it (counted at a proxy in front of moto), along a chain of
//! incremental archives and through age; a damaged frame fails only its
//! files; tar, zstd and age read the archives as they are; archives made
//! before frames (one zstd stream) still restore.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::Ordering;

use serde_json::Value;

use snap_testkit::{Fault, FaultProxy, Moto, World};

/// The shared world with a tree of small files around three 12 MiB files
/// that do not compress (a 37 MiB archive of 18 frames or so), and the
/// environment its tools run in (a bucket's settings).
struct Seek {
    w: World,
    env: Vec<(String, String)>,
}

impl std::ops::Deref for Seek {
    type Target = World;

    fn deref(&self) -> &World {
        &self.w
    }
}

/// Bytes that do not compress (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

impl Seek {
    fn new() -> Seek {
        let w = Seek {
            w: World::new(),
            env: Vec::new(),
        };
        w.write("src/a.txt", b"first file\n");
        w.write("src/b/one.bin", noise(12 << 20, 1));
        w.write("src/c.txt", b"in the middle\n");
        w.write("src/d/two.bin", noise(12 << 20, 2));
        w.write("src/f/three.bin", noise(12 << 20, 3));
        w.write("src/z.txt", b"the last file\n");
        w
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        self.tool(tool)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .output()
            .unwrap()
    }

    fn ok_out(&self, tool: &str, args: &[&str]) -> Output {
        let out = self.run(tool, args);
        assert_eq!(code(&out), 0, "{tool} {args:?}: {}", stderr(&out));
        out
    }

    fn collect(&self) {
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
        self.ok_out("snap-collect", &args);
    }

    fn pack(&self, extra: &[&str]) -> Value {
        let mut args = vec![
            "--store",
            "store",
            "--min-free",
            "0",
            "-q",
            "--snapshot",
            "s/latest",
        ];
        args.extend_from_slice(extra);
        records(&self.ok_out("snap-pack", &args)).remove(0)
    }

    /// The path of a source file as snapshots keep it (absolute, without its `/`).
    fn inside(&self, rel: &str) -> String {
        let src = fs::canonicalize(self.path("src")).unwrap();
        format!("{}/{rel}", src.strip_prefix("/").unwrap().display())
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn records(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The archive file of a record.
fn data_of(rec: &Value) -> PathBuf {
    PathBuf::from(rec["path"].as_str().unwrap())
}

/// Bytes the proxy passed back while `f` ran.
fn counted(proxy: &FaultProxy, f: impl FnOnce()) -> u64 {
    let before = proxy.sent.load(Ordering::SeqCst);
    f();
    proxy.sent.load(Ordering::SeqCst) - before
}

/// From a bucket, `restore --path` and `cat` of a small file at the start,
/// in the middle and at the end of a 37 MiB archive fetch a few MiB (the
/// index and the frames holding it), and so does a file of an incremental
/// archive whose content is in the full archive below it; the bytes are
/// the file's. Ranged GETs the server fails (503) are retried.
#[test]
fn one_file_from_a_bucket_reads_only_its_frames() {
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let busy = Fault {
        method: "GET",
        contains: ".tar.zst",
        header: Some("range"),
        status: Some(503),
        delay: std::time::Duration::ZERO,
        times: 2,
        drop_header: None,
        answer_lost: false,
    };
    let proxy = FaultProxy::start(moto.port, vec![busy]);
    let mut w = Seek::new();
    w.env = moto.env();
    for (k, v) in &mut w.env {
        if k == "AWS_ENDPOINT" {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    w.collect();
    let full = w.pack(&[]);
    let archive_bytes = fs::metadata(data_of(&full)).unwrap().len();
    assert!(archive_bytes > 36 << 20, "{archive_bytes}");
    assert!(full["frames"].as_u64().unwrap() >= 9, "{full}");
    // The incremental archive holds only z.txt: c.txt's content is below it.
    w.write("src/z.txt", b"the last file, changed\n");
    w.collect();
    let incr = w.pack(&["--incremental"]);
    assert_eq!(incr["base"], full["id"]);
    w.ok_out(
        "snap-push",
        &["--store", "store", "--all", "--dest", "s3://bkt/snap", "-q"],
    );
    let from = ["--from", "s3://bkt/snap", "-q"];
    let full_name = format!("s/{}", full["id"].as_str().unwrap());
    let cases = [
        (&full_name, "a.txt", &b"first file\n"[..]),
        (&full_name, "c.txt", b"in the middle\n"),
        (&full_name, "z.txt", b"the last file\n"),
        (&"s/latest".to_string(), "c.txt", b"in the middle\n"),
        (
            &"s/latest".to_string(),
            "z.txt",
            b"the last file, changed\n",
        ),
    ];
    let budget = 6 << 20;
    for (i, (name, file, want)) in cases.into_iter().enumerate() {
        let path = w.inside(file);
        let mut out = None;
        let sent = counted(&proxy, || {
            let mut args = from.to_vec();
            args.extend(["cat", name.as_str(), &path]);
            out = Some(w.ok_out("snap-restore", &args));
        });
        assert_eq!(out.unwrap().stdout, want, "cat {name} {file}");
        assert!(sent < budget, "cat {name} {file}: {sent} bytes fetched");
        let to = format!("r{i}");
        let sent = counted(&proxy, || {
            let mut args = from.to_vec();
            args.extend(["restore", name.as_str(), "--to", &to, "--path", &path]);
            w.ok_out("snap-restore", &args);
        });
        assert_eq!(fs::read(w.path(&to).join(&path)).unwrap(), want);
        assert!(sent < budget, "restore {name} {file}: {sent} bytes fetched");
    }
    assert_eq!(proxy.injected.load(Ordering::SeqCst), 2, "503s answered");
    // A whole restore reads it all, and gets it all.
    let sent = counted(&proxy, || {
        let mut args = from.to_vec();
        args.extend(["restore", "s/latest", "--to", "all"]);
        w.ok_out("snap-restore", &args);
    });
    assert!(sent > archive_bytes, "{sent}");
    let big = fs::read(w.path("all").join(w.inside("d/two.bin"))).unwrap();
    assert!(big == noise(12 << 20, 2));
}

/// Azure (Azurite) and GCS (fake-gcs-server) too: `cat` and `restore
/// --path` read only the frames (Azure takes no suffix ranges, so the
/// archive's end is found by its size).
#[test]
fn one_file_from_azure_and_gcs() {
    let az = snap_testkit::Azurite::start();
    az.create_container("bkt");
    let gcs = snap_testkit::FakeGcs::start();
    gcs.create_bucket("bkt");
    for (url, env) in [("az://bkt/snap", az.env()), ("gs://bkt/snap", gcs.env())] {
        let mut w = Seek::new();
        w.env = env;
        w.collect();
        let rec = w.pack(&[]);
        if url.starts_with("az:") {
            w.ok_out(
                "snap-push",
                &["--store", "store", "--all", "--dest", url, "-q"],
            );
        } else {
            // fake-gcs-server takes no uploads from object_store: put the files in place.
            for f in fs::read_dir(data_of(&rec).parent().unwrap()).unwrap() {
                let p = f.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    gcs.upload("bkt", &format!("snap/s/{name}"), &fs::read(&p).unwrap());
                }
            }
        }
        let c = w.inside("c.txt");
        let cat = w.ok_out(
            "snap-restore",
            &["--from", url, "-q", "cat", "s/latest", &c],
        );
        assert_eq!(cat.stdout, b"in the middle\n", "{url}");
        w.ok_out("snap-restore", &["--from", url, "-q", "verify", "s/latest"]);
        let args = [
            "--from", url, "-q", "restore", "s/latest", "--to", "r", "--path", &c,
        ];
        w.ok_out("snap-restore", &args);
        assert_eq!(fs::read(w.path("r").join(&c)).unwrap(), b"in the middle\n");
    }
}

/// An age-encrypted seekable archive: `age -d | tar --zstd -x` reads it,
/// `cat` from a bucket decrypts only the chunks of the frames it needs, and
/// a damaged chunk fails only the files of its frame.
#[test]
fn encrypted_archives_seek_through_age_chunks() {
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let proxy = FaultProxy::start(moto.port, Vec::new());
    let mut w = Seek::new();
    w.env = moto.env();
    for (k, v) in &mut w.env {
        if k == "AWS_ENDPOINT" {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    let recipient = snap_testkit::age_keygen(&w.path("key.txt"));
    w.collect();
    let rec = w.pack(&["--recipient", &recipient]);
    assert!(rec["frames"].as_u64().unwrap() >= 9, "{rec}");
    fs::create_dir_all(w.path("gnu")).unwrap();
    let gnu = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i key.txt '{}' | tar --zstd -xf - -C gnu",
            data_of(&rec).display()
        ))
        .current_dir(w.root())
        .status()
        .unwrap();
    assert!(gnu.success());
    assert_eq!(
        fs::read(w.path("gnu").join(w.inside("c.txt"))).unwrap(),
        b"in the middle\n"
    );
    w.ok_out(
        "snap-push",
        &["--store", "store", "--all", "--dest", "s3://bkt/snap", "-q"],
    );
    for file in ["a.txt", "c.txt", "z.txt"] {
        let path = w.inside(file);
        let mut out = None;
        let sent = counted(&proxy, || {
            let args = [
                "--from",
                "s3://bkt/snap",
                "-q",
                "--identity",
                "key.txt",
                "cat",
                "s/latest",
                &path,
            ];
            out = Some(w.ok_out("snap-restore", &args));
        });
        let want = fs::read(w.path("src").join(file)).unwrap();
        assert_eq!(out.unwrap().stdout, want, "{file}");
        assert!(sent < 6 << 20, "cat {file}: {sent} bytes fetched");
    }
    // A chunk that fails age's authentication fails the files of its frame only.
    let data = data_of(&rec);
    let cipher = fs::read(&data).unwrap();
    let plain = std::process::Command::new("age")
        .args(["-d", "-i", "key.txt"])
        .arg(&data)
        .current_dir(w.root())
        .output()
        .unwrap()
        .stdout;
    let (frame, _) = frame_in(&w, &rec, &plain, "c.txt", 0);
    let mac = cipher.windows(4).position(|x| x == b"\n---").unwrap();
    let payload = mac + 1 + cipher[mac + 1..].iter().position(|&b| b == b'\n').unwrap() + 1 + 16;
    let chunk = (frame.start + frame.end) / 2 / 65536;
    damage(&data, payload + chunk * 65552 + 100);
    let archive = data.display().to_string();
    let (a, c) = (w.inside("a.txt"), w.inside("c.txt"));
    let args = [
        "-q", "-i", "key.txt", "restore", &archive, "--to", "r", "--path", &a, "--path", &c,
    ];
    let out = w.run("snap-restore", &args);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{c}: zstd frame ")),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(w.path("r").join(&a)).unwrap(), b"first file\n");
    assert!(!w.path("r").join(&c).exists());
}

/// Where in `rec`'s archive file is the frame holding the header of
/// `file`, or the `later`th frame after it.
fn frame_of(w: &Seek, rec: &Value, file: &str, later: usize) -> std::ops::Range<usize> {
    frame_in(w, rec, &fs::read(data_of(rec)).unwrap(), file, later).0
}

/// The same in the seekable stream `bytes` (an archive, or a decrypted
/// one), with the frame's number.
fn frame_in(
    w: &Seek,
    rec: &Value,
    bytes: &[u8],
    file: &str,
    later: usize,
) -> (std::ops::Range<usize>, usize) {
    let mut index = PathBuf::from(rec["index"].as_str().unwrap());
    if index.to_string_lossy().ends_with(".age") {
        let plain = w.path("index.zst");
        let status = std::process::Command::new("age")
            .args(["-d", "-i", "key.txt", "-o"])
            .arg(&plain)
            .arg(&index)
            .current_dir(w.root())
            .status()
            .unwrap();
        assert!(status.success());
        index = plain;
    }
    let mut r = snap_shared::index::IndexReader::open(&index).unwrap();
    let wanted = w.inside(file);
    let at = loop {
        let e = r.next_entry().unwrap().expect("the file is in the index");
        if e.path == wanted.as_bytes() {
            break e.tar_offset.unwrap();
        }
    };
    let frames = snap_shared::seekable::read_seek_table(bytes).unwrap();
    let (mut comp, mut tar) = (0usize, 0u64);
    let mut found = None;
    for (i, f) in frames.iter().enumerate() {
        if found.is_none() && tar + u64::from(f.tar) > at {
            found = Some(i);
        }
        if found.is_some_and(|first| i == first + later) {
            return (comp..comp + f.compressed as usize, i);
        }
        comp += f.compressed as usize;
        tar += u64::from(f.tar);
    }
    panic!("no frame holds {file}");
}

fn damage(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0x55;
    fs::write(path, bytes).unwrap();
}

/// A damaged frame: restoring files from other frames works and the file
/// in it is named (exit 65); cat of it is exit 65; a whole restore and a
/// verify fail loudly.
#[test]
fn a_damaged_frame_fails_only_its_files() {
    let w = Seek::new();
    w.collect();
    let rec = w.pack(&[]);
    let frame = frame_of(&w, &rec, "c.txt", 0);
    assert_ne!(frame, frame_of(&w, &rec, "a.txt", 0));
    assert_ne!(frame, frame_of(&w, &rec, "z.txt", 0));
    damage(&data_of(&rec), frame.start + (frame.end - frame.start) / 2);
    let archive = data_of(&rec).display().to_string();
    let (a, c, z) = (w.inside("a.txt"), w.inside("c.txt"), w.inside("z.txt"));
    let args = [
        "-q", "restore", &archive, "--to", "r", "--path", &a, "--path", &c, "--path", &z,
    ];
    let out = w.run("snap-restore", &args);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert_eq!(fs::read(w.path("r").join(&a)).unwrap(), b"first file\n");
    assert_eq!(fs::read(w.path("r").join(&z)).unwrap(), b"the last file\n");
    assert!(!w.path("r").join(&c).exists());
    let err = stderr(&out);
    assert!(err.contains(&format!("{c}: zstd frame ")), "{err}");
    assert!(err.contains("is damaged"), "{err}");
    assert_eq!(err.matches(&c).count(), 1, "named once: {err}");
    assert!(!err.contains(&a) && !err.contains(&z), "{err}");
    // A large file with a damaged frame in its middle: not kept, named once.
    let inner = frame_of(&w, &rec, "f/three.bin", 1);
    assert_ne!(inner, frame_of(&w, &rec, "z.txt", 0));
    damage(&data_of(&rec), inner.start + 100);
    let big = w.inside("f/three.bin");
    let args = [
        "-q", "restore", &archive, "--to", "r2", "--path", &big, "--path", &z,
    ];
    let out = w.run("snap-restore", &args);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert_eq!(stderr(&out).matches(&big).count(), 1, "{}", stderr(&out));
    assert!(!w.path("r2").join(&big).exists());
    assert_eq!(fs::read(w.path("r2").join(&z)).unwrap(), b"the last file\n");
    let cat = w.run("snap-restore", &["-q", "cat", &archive, &c]);
    assert_eq!(code(&cat), 65, "{}", stderr(&cat));
    assert!(stderr(&cat).contains("is damaged"), "{}", stderr(&cat));
    let cat = w.run("snap-restore", &["-q", "cat", &archive, &z]);
    assert_eq!(cat.stdout, b"the last file\n");
    let whole = w.run("snap-restore", &["-q", "restore", &archive, "--to", "all"]);
    assert_eq!(code(&whole), 65, "{}", stderr(&whole));
    let verify = w.run("snap-restore", &["-q", "verify", &archive]);
    assert_eq!(code(&verify), 65, "{}", stderr(&verify));
}

/// GNU tar, zstd and sha256sum read a seekable archive as the plain
/// `.tar.zst` it is: the table is skipped, every file comes out whole.
#[test]
fn plain_tools_read_seekable_archives() {
    let w = Seek::new();
    w.collect();
    let rec = w.pack(&[]);
    fs::create_dir_all(w.path("gnu")).unwrap();
    let data = data_of(&rec);
    let sidecar = data.with_file_name(format!("{}.sha256", rec["id"].as_str().unwrap()));
    let script = format!(
        "tar --zstd -xf '{}' -C gnu && zstd -dc '{}' | tar -tf - | wc -l && cd '{}' && sha256sum -c --quiet '{}'",
        data.display(),
        data.display(),
        data.parent().unwrap().display(),
        sidecar.display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(w.root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for (file, seed) in [("b/one.bin", 1), ("d/two.bin", 2), ("f/three.bin", 3)] {
        let got = fs::read(w.path("gnu").join(w.inside(file))).unwrap();
        assert!(got == noise(12 << 20, seed), "{file}");
    }
    let got = fs::read(w.path("gnu").join(w.inside("z.txt"))).unwrap();
    assert_eq!(got, b"the last file\n");
}

/// An archive made before frames (one zstd stream, no seek table, no
/// offsets in its record) still restores by streaming: whole, by path and
/// cat; cat refuses a folder (64) and a path that is not there (66).
#[test]
fn single_stream_archives_still_restore() {
    let w = Seek::new();
    w.collect();
    let rec = w.pack(&[]);
    let data = data_of(&rec);
    let plain = zstd::decode_all(&fs::read(&data).unwrap()[..]).unwrap();
    let one = zstd::encode_all(&plain[..], 3).unwrap();
    assert!(snap_shared::seekable::read_seek_table(&one).is_none());
    fs::write(&data, &one).unwrap();
    let json = data.with_file_name(format!("{}.json", rec["id"].as_str().unwrap()));
    let mut r: Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let sha = snap_shared::hash::Sha256Digest::of(&one).to_hex();
    r["sha256"] = Value::from(sha.clone());
    r["bytes"] = Value::from(one.len());
    r.as_object_mut().unwrap().remove("frames");
    fs::write(&json, serde_json::to_vec(&r).unwrap()).unwrap();
    snap_testkit::sign_again(&json, &w.path("home"));
    let sidecar = data.with_file_name(format!("{}.sha256", rec["id"].as_str().unwrap()));
    let name = data.file_name().unwrap().to_string_lossy().into_owned();
    // The archive's line changes; the index's stays.
    let kept = fs::read_to_string(&sidecar).unwrap();
    let index_line = kept.lines().find(|l| l.ends_with(".index.zst")).unwrap();
    fs::write(&sidecar, format!("{sha}  {name}\n{index_line}\n")).unwrap();
    let archive = data.display().to_string();
    let shown = w.ok_out("snap-restore", &["show", &archive]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("seekable     no: one stream, read whole"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
    w.ok_out("snap-restore", &["-q", "verify", &archive]);
    let c = w.inside("c.txt");
    let cat = w.ok_out("snap-restore", &["-q", "cat", &archive, &c]);
    assert_eq!(cat.stdout, b"in the middle\n");
    w.ok_out(
        "snap-restore",
        &["-q", "restore", &archive, "--to", "r", "--path", &c],
    );
    assert_eq!(fs::read(w.path("r").join(&c)).unwrap(), b"in the middle\n");
    // cat names what is not a file, and what is not there.
    let folder = w.run("snap-restore", &["-q", "cat", &archive, &w.inside("d")]);
    assert_eq!(code(&folder), 64, "{}", stderr(&folder));
    assert!(
        stderr(&folder).contains("/d: is a folder"),
        "{}",
        stderr(&folder)
    );
    let missing = w.run(
        "snap-restore",
        &["-q", "cat", &archive, &w.inside("nope.txt")],
    );
    assert_eq!(code(&missing), 66, "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("nope.txt: not in s/"),
        "{}",
        stderr(&missing)
    );
    w.ok_out("snap-restore", &["-q", "restore", &archive, "--to", "all"]);
    let big = fs::read(w.path("all").join(w.inside("f/three.bin"))).unwrap();
    assert!(big == noise(12 << 20, 3));
}
