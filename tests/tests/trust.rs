//! The second adversarial probe's findings (docs/reliability.md, "At the
//! destinations and on the page"), one test each, named after the finding:
//! each reproduces what the probe did and pins what a careful user expects.

use std::fs;
use std::path::Path;

use snap_e2e::{Pipeline, World, code, records, stderr};

/// Two full archives of set `s` whose trees differ (3 files, then 2): their ids.
fn two_archives(w: &World, extra: &[&str]) -> (String, String) {
    w.write_dated("src/a.txt", "a".repeat(5000));
    w.write_dated("src/b.txt", "b".repeat(5000));
    w.write_dated("src/c.txt", "c".repeat(5000));
    w.collect_ok(&[]);
    let x = w.pack(extra);
    assert_eq!(code(&x), 0, "{}", stderr(&x));
    fs::remove_file(w.path("src/c.txt")).unwrap();
    w.write_dated("src/b.txt", "B".repeat(5000));
    w.collect_ok(&[]);
    let y = w.pack(extra);
    assert_eq!(code(&y), 0, "{}", stderr(&y));
    let id = |out: &std::process::Output| records(out)[0]["id"].as_str().unwrap().to_string();
    (id(&x), id(&y))
}

/// The stored index file of archive `id` in `dir` (`ID.index.zst`, maybe `.age`).
fn index_of(dir: &Path, id: &str) -> std::path::PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&format!("{id}.index.zst"))
        })
        .expect("an index")
}

/// Finding 1: archive Y's index put in place of archive X's (plain and
/// age-encrypted, in the store and read as a destination) makes restore,
/// its dry run and cat fail with 65 naming the index, never a partial restore
/// with exit 0.
#[test]
fn a_swapped_index_is_damage_not_a_partial_restore() {
    for encrypted in [false, true] {
        let w = World::new();
        let recipient = snap_testkit::age_keygen(&w.path("key.txt"));
        let extra: Vec<&str> = match encrypted {
            true => vec!["--recipient", &recipient],
            false => vec![],
        };
        let (x, y) = two_archives(&w, &extra);
        let dir = w.path("store/archives/s");
        let ix = index_of(&dir, &x);
        fs::copy(index_of(&dir, &y), &ix).unwrap();
        let shown = w.redact(ix.to_string_lossy().as_bytes());
        let key = w.path("key.txt").to_string_lossy().into_owned();
        let with_key = |args: &[&str]| -> Vec<String> {
            let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            if encrypted {
                all.extend(["--identity".to_string(), key.clone()]);
            }
            all
        };
        let name = format!("s/{x}");
        let a = w.inside("src/a.txt");
        let runs: Vec<(&str, Vec<String>)> = vec![
            (
                "restore",
                with_key(&["restore", "--archive", &name, "--to", "r"]),
            ),
            (
                "restore --path",
                with_key(&["restore", "--archive", &name, "--to", "p", "--path", &a]),
            ),
            ("cat", with_key(&["cat", "--archive", &name, &a])),
            (
                "restore --dry-run",
                with_key(&["restore", "--archive", &name, "--to", "d", "--dry-run"]),
            ),
        ];
        for (what, args) in runs {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            for from in [None, Some("store/archives")] {
                let out = match from {
                    None => w.restore(&args),
                    Some(d) => {
                        let mut all = vec!["--from", d];
                        all.extend_from_slice(&args);
                        w.run("snap-restore", &all)
                    }
                };
                let err = w.redact(&out.stderr);
                assert_eq!(
                    code(&out),
                    65,
                    "{what} {from:?} encrypted={encrypted}: {err}"
                );
                let want = match from {
                    None => format!("{shown}: sha256 "),
                    Some(_) => format!("s/{}: sha256 ", ix.file_name().unwrap().to_string_lossy()),
                };
                assert!(err.contains(&want), "{what} {from:?}: {err}");
                assert!(
                    err.contains("the record says") && err.contains("not this archive's"),
                    "{what}: {err}"
                );
            }
        }
        assert!(!w.path("r").join(w.inside("src/c.txt")).exists());
    }
}

/// Finding 1, an archive whose record names no index sha256 (as before it
/// was recorded): a tar member its index does not list is damage (65,
/// named), as in verify; the files it does list are still restored.
#[test]
fn a_member_not_in_the_index_is_damage() {
    let w = World::new();
    let (x, y) = two_archives(&w, &[]);
    let dir = w.path("store/archives/s");
    let json = dir.join(format!("{x}.json"));
    let mut rec: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    rec.as_object_mut().unwrap().remove("index_sha256");
    fs::write(&json, serde_json::to_vec(&rec).unwrap()).unwrap();
    snap_testkit::sign_again(&json, &w.path("home"));
    fs::copy(index_of(&dir, &y), index_of(&dir, &x)).unwrap();
    let out = w.restore(&["restore", "--archive", &format!("s/{x}"), "--to", "r"]);
    let err = w.redact(&out.stderr);
    assert_eq!(code(&out), 65, "{err}");
    let c = w.inside("src/c.txt");
    assert!(
        err.contains(&format!("{c}: is in the archive but not in its index")),
        "{err}"
    );
    assert!(w.path("r").join(w.inside("src/a.txt")).exists());
}

/// Pushes every archive record in `packed` (snap-pack's stdout) to the folder `usb`.
fn push(w: &World, packed: &[u8]) {
    let out = w.pipe(
        "snap-push",
        &["--dest", "usb", "--min-free", "0", "-q"],
        packed,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// Finding 5: a malformed id-named record and a good record copied under
/// another id's name at a destination: `list` lists every good archive once
/// and names both (65); prune keeps and names both (65), still removes what
/// its rule says, and still removes a record whose data file is gone.
#[test]
fn one_bad_record_is_named_and_kept() {
    let w = World::new();
    fs::create_dir_all(w.path("usb")).unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        w.write_dated("src/a.txt", format!("version {i}"));
        w.collect_ok(&[]);
        let packed = w.pack(&["-q"]);
        assert_eq!(code(&packed), 0, "{}", stderr(&packed));
        ids.push(records(&packed)[0]["id"].as_str().unwrap().to_string());
        push(&w, &packed.stdout);
    }
    let set = w.path("usb/s");
    let garbled = "2020-01-01T000000Z";
    let copied = "2020-01-02T000000Z";
    fs::write(
        set.join(format!("{garbled}.json")),
        "{\"schema\": \"snap/1\", \"cut",
    )
    .unwrap();
    fs::copy(
        set.join(format!("{}.json", ids[2])),
        set.join(format!("{copied}.json")),
    )
    .unwrap();
    // What an interrupted prune leaves: a good record whose data is gone.
    fs::remove_file(set.join(format!("{}.tar.zst", ids[0]))).unwrap();

    let list = w.run("snap-restore", &["--from", "usb", "list"]);
    let err = w.redact(&list.stderr);
    assert_eq!(code(&list), 65, "{err}");
    let shown = String::from_utf8_lossy(&list.stdout);
    for id in &ids[1..] {
        let rows = shown
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(id));
        assert_eq!(rows.count(), 1, "{shown}");
    }
    assert!(
        err.contains(&format!("[TMP]/usb/s/{garbled}.json: not a JSON record")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "[TMP]/usb/s/{copied}.json: the record inside is s/{}'s: copied or renamed",
            ids[2]
        )),
        "{err}"
    );

    let prune = w.run("snap-prune", &["--dest", "usb", "--keep-last", "1"]);
    let err = w.redact(&prune.stderr);
    assert_eq!(code(&prune), 65, "{err}");
    for bad in [garbled, copied] {
        assert!(
            set.join(format!("{bad}.json")).exists(),
            "{bad} was removed: {err}"
        );
        assert!(err.contains(&format!("[TMP]/usb/s/{bad}.json: ")), "{err}");
        assert!(err.contains("kept (what cannot be read"), "{err}");
    }
    assert!(!set.join(format!("{}.json", ids[0])).exists(), "{err}");
    assert!(!set.join(format!("{}.json", ids[1])).exists(), "{err}");
    assert!(set.join(format!("{}.json", ids[2])).exists(), "{err}");
}

/// Finding 8: a missing `.sha256` makes verify 65 naming it (it said "all
/// good"); a missing index or `.sha256` makes list 65 naming each, the
/// archive still listed; a `.sha256` that disagrees with the record is named.
#[test]
fn missing_sidecars_are_named_by_verify_and_list() {
    let w = World::new();
    let (x, y) = two_archives(&w, &[]);
    let dir = w.path("store/archives/s");
    fs::remove_file(dir.join(format!("{x}.sha256"))).unwrap();
    fs::remove_file(index_of(&dir, &y)).unwrap();
    let from = ["--from", "store/archives"];
    let verify_x = || {
        let name = format!("s/{x}");
        w.run("snap-restore", &[&from[..], &["verify", &name]].concat())
    };
    let verify = verify_x();
    let err = w.redact(&verify.stderr);
    assert_eq!(code(&verify), 65, "{err}");
    assert!(
        err.contains(&format!("[TMP]/store/archives/s/{x}.sha256: missing")),
        "{err}"
    );
    assert!(!err.contains("all good"), "{err}");
    let list = w.run("snap-restore", &[&from[..], &["list"]].concat());
    let err = w.redact(&list.stderr);
    assert_eq!(code(&list), 65, "{err}");
    assert!(
        err.contains(&format!("s/{x}.sha256: missing (its .sha256")),
        "{err}"
    );
    assert!(
        err.contains(&format!("s/{y}.index.zst: missing (its index")),
        "{err}"
    );
    let shown = String::from_utf8_lossy(&list.stdout);
    assert!(shown.contains(&x) && shown.contains(&y), "{shown}");

    fs::write(
        dir.join(format!("{x}.sha256")),
        format!("{}  {x}.tar.zst\n", "0".repeat(64)),
    )
    .unwrap();
    let verify = verify_x();
    let err = w.redact(&verify.stderr);
    assert_eq!(code(&verify), 65, "{err}");
    assert!(
        err.contains(&format!(
            "says {} for {x}.tar.zst, the record says",
            "0".repeat(64)
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("has no line for {x}.index.zst")),
        "{err}"
    );
}

/// Finding 8: a restore target reached through a symlink is followed, and
/// the dry run and the restore say where the files go.
#[test]
fn a_symlinked_target_is_said() {
    let w = World::new();
    let (x, _) = two_archives(&w, &[]);
    fs::create_dir(w.path("real")).unwrap();
    std::os::unix::fs::symlink(w.path("real"), w.path("link")).unwrap();
    let name = format!("s/{x}");
    let args = ["restore", "--archive", &name, "--to", "link/r"];
    let dry = w.restore(&[&args[..], &["--dry-run"]].concat());
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let err = w.redact(&dry.stderr);
    assert!(
        err.contains("dry run into link/r (a symlink on the way: the files go into [TMP]/real/r)"),
        "{err}"
    );
    let out = w.restore(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = w.redact(&out.stderr);
    assert!(
        err.contains("link/r: a symlink on the way: the files go into [TMP]/real/r"),
        "{err}"
    );
    assert!(w.path("real/r").join(w.inside("src/a.txt")).is_file());
}

/// Finding 8: a push that fails (66: its base is not at the destination)
/// after its data went says what it sent, not "sent 0 B".
#[test]
fn a_failed_push_says_what_it_sent() {
    let w = World::new();
    fs::create_dir_all(w.path("usb")).unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    w.write_dated("src/a.txt", "a");
    w.collect_ok(&[]);
    assert_eq!(code(&w.pack(&[])), 0);
    w.write_dated("src/big.bin", &big);
    w.collect_ok(&[]);
    let incr = w.pack(&["--incremental"]);
    assert_eq!(code(&incr), 0, "{}", stderr(&incr));
    assert!(records(&incr)[0]["base"].is_string());
    let out = w.pipe(
        "snap-push",
        &["--dest", "usb", "--min-free", "0"],
        &incr.stdout,
    );
    let err = w.redact(&out.stderr);
    assert_eq!(code(&out), 66, "{err}");
    assert!(err.contains("is not at"), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("sent "))
        .expect("a summary");
    assert!(
        line.contains("sent ") && !line.contains("sent 0 B"),
        "{err}"
    );
}

/// Finding 4, the first half: with `signing.key` in the config, snap-pack
/// signs each record into `ID.json.sig`, which `ssh-keygen -Y verify`
/// accepts (and refuses once the record changes); snap-push carries it,
/// before the record; snap-prune removes it with its archive.
#[test]
fn records_are_signed_and_the_signature_travels() {
    let w = World::new();
    let key = w.path("home/signing_key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "snap@test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success());
    let config = w.write_dated(
        "home/config.json",
        format!("{{\"signing\": {{\"key\": \"{}\"}}}}", key.display()),
    );
    let config = config.to_string_lossy().into_owned();
    let (x, y) = two_archives(&w, &["--config", &config]);
    let dir = w.path("store/archives/s");
    let public = fs::read_to_string(w.path("home/signing_key.pub")).unwrap();
    w.write_dated("allowed", format!("snap@test {public}"));
    let verify = |json: &Path| {
        let sig = format!("{}.sig", json.display());
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ssh-keygen -Y verify -f allowed -I snap@test -n snap-record -s '{sig}' < '{}'",
                json.display()
            ))
            .current_dir(w.path(""))
            .output()
            .unwrap()
    };
    for id in [&x, &y] {
        let out = verify(&dir.join(format!("{id}.json")));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fs::create_dir_all(w.path("usb")).unwrap();
    let all = w.run(
        "snap-push",
        &[
            "--store",
            "store",
            "--all",
            "--dest",
            "usb",
            "--min-free",
            "0",
            "-q",
        ],
    );
    assert_eq!(code(&all), 0, "{}", stderr(&all));
    for id in [&x, &y] {
        let json = w.path(&format!("usb/s/{id}.json"));
        let out = verify(&json);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A record changed after it was signed no longer verifies.
    let json = w.path(&format!("usb/s/{y}.json"));
    let text = fs::read_to_string(&json).unwrap().replace("\"s\"", "\"S\"");
    fs::write(&json, text).unwrap();
    assert!(!verify(&json).status.success());

    let prune = w.run("snap-prune", &["--dest", "usb", "--keep-last", "1", "-q"]);
    assert_eq!(code(&prune), 0, "{}", stderr(&prune));
    let left: Vec<String> = fs::read_dir(w.path("usb/s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left.iter().any(|n| n.starts_with(&format!("{x}."))),
        "{left:?}"
    );
    assert!(left.contains(&format!("{y}.json.sig")), "{left:?}");
}
