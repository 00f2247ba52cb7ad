//! Signed records (docs/pack-restore.md, "Signed records"): an archive is
//! read only when its record is signed by a key in the reader's allowed
//! signers. age encrypts to public recipients, so these tests forge
//! archives the way the second adversarial probe did: another machine with
//! write access to the destination and the victim's recipient.

use std::fs;
use std::process::Output;

use snap_e2e::{Pipeline, World, code, records, stderr};

/// The victim: `src/` collected as set `s`, packed to the age recipient of
/// `key.txt`, pushed to `usb/`. Its recipient and the archive's id.
fn victim(w: &World) -> (String, String) {
    let recipient = snap_testkit::age_keygen(&w.path("key.txt"));
    w.write_dated("src/a.txt", "the real file\n");
    w.collect_ok(&[]);
    let packed = w.pack(&["--recipient", &recipient]);
    assert_eq!(code(&packed), 0, "{}", stderr(&packed));
    fs::create_dir_all(w.path("usb")).unwrap();
    push(w, "home", "store");
    let id = records(&packed)[0]["id"].as_str().unwrap().to_string();
    (recipient, id)
}

/// Runs a tool as the forger: a HOME, a store and a tree of its own.
fn forger(w: &World, tool: &str, args: &[&str]) -> Output {
    w.tool(tool)
        .env("HOME", w.path("forger"))
        .args(args)
        .output()
        .unwrap()
}

/// `snap-push --all` of STORE to `usb/`, with HOME under the world.
fn push(w: &World, home: &str, store: &str) {
    let out = w
        .tool("snap-push")
        .env("HOME", w.path(home))
        .args([
            "--store",
            store,
            "--all",
            "--dest",
            "usb",
            "--min-free",
            "0",
        ])
        .args(["-q"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// The forger's archive of set `s` at `usb/`, packed to the victim's
/// recipient with the forger's own (made on first use) key: its id.
fn forge(w: &World, recipient: &str) -> String {
    w.write_dated("evil/a.txt", "a forged file\n");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let c = forger(
        w,
        "snap-collect",
        &[
            "--store",
            "fstore",
            "--min-free",
            "0",
            "--name",
            "s",
            "evil",
        ],
    );
    assert_eq!(code(&c), 0, "{}", stderr(&c));
    let mut pack = vec!["--store", "fstore", "--min-free", "0", "--latest"];
    if !recipient.is_empty() {
        pack.extend(["--recipient", recipient]);
    }
    let p = forger(w, "snap-pack", &pack);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    push(w, "forger", "fstore");
    records(&p)[0]["id"].as_str().unwrap().to_string()
}

/// The fingerprint `ssh-keygen -lf` prints for a public key file.
fn fingerprint(pub_file: &std::path::Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_file)
        .output()
        .expect("ssh-keygen (cargo xtask test installs openssh-client)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().nth(1).unwrap().to_string()
}

/// An archive packed to the same age recipient by a machine whose key is not
/// allowed is refused by restore, cat and verify (77, naming the signer's
/// fingerprint, nothing written); without its signature it is refused as
/// unsigned; with the victim's signature beside it, it is damage (65); the
/// victim's own archive still restores, signed by the victim.
#[test]
fn a_forged_archive_is_refused_naming_its_signer() {
    let w = World::new();
    let (recipient, real) = victim(&w);
    let forged = forge(&w, &recipient);
    assert_ne!(real, forged);
    let key = w.path("key.txt").display().to_string();
    let restore = |args: &[&str]| {
        let mut all = vec!["--from", "usb", "-i", &key];
        all.extend_from_slice(args);
        w.run("snap-restore", &all)
    };
    let print = fingerprint(&w.path("forger/.config/snap/signing_key.pub"));
    let target = &format!("s/{forged}");
    for args in [
        vec!["restore", target, "--to", "r"],
        vec!["restore", "s/latest", "--to", "r", "--dry-run"],
        vec!["cat", target, &w.inside("evil/a.txt")],
        vec!["verify", target],
    ] {
        let out = restore(&args);
        let err = w.redact(&out.stderr);
        assert_eq!(code(&out), 77, "{args:?}: {err}");
        assert!(
            err.contains(&format!("archive s/{forged}: signed by {print}, a key not in [TMP]/home/.config/snap/allowed_signers")),
            "{args:?}: {err}"
        );
        assert!(err.contains("--allow-unsigned"), "{err}");
        assert!(out.stdout.is_empty() || args[0] == "verify", "{args:?}");
    }
    assert!(!w.path("r").exists(), "a refused restore made its target");

    // Restored into `r`: refused with `code`, saying `why`.
    let refused = |code_wanted: i32, why: &str| {
        let out = restore(&["restore", target, "--to", "r"]);
        let err = w.redact(&out.stderr);
        assert_eq!(code(&out), code_wanted, "{err}");
        assert!(err.contains(why), "{err}");
    };
    let sig = w.path(&format!("usb/s/{forged}.json.sig"));
    fs::remove_file(&sig).unwrap();
    refused(
        77,
        &format!(
            "archive s/{forged}: its record is not signed ({forged}.json.sig is not beside it)"
        ),
    );
    fs::copy(w.path(&format!("usb/s/{real}.json.sig")), &sig).unwrap();
    refused(
        65,
        &format!("[TMP]/usb/s/{forged}.json.sig: does not sign the record of archive s/{forged}"),
    );
    assert!(!w.path("r").exists());

    let out = restore(&["restore", &format!("s/{real}"), "--to", "r"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        records(&out)[0]["signed_by"],
        format!("snap@{}", hostname())
    );
    assert!(w.path("r").join(w.inside("src/a.txt")).exists());
}

/// A key added to the allowed signers (the line the refusal gives) is
/// believed; `--allow-unsigned` reads an unsigned archive, an old one, with
/// a warning naming it, and its `restored` record says "unsigned".
#[test]
fn allowed_keys_and_old_unsigned_archives() {
    let w = World::new();
    let (recipient, _) = victim(&w);
    let forged = forge(&w, &recipient);
    let key = w.path("key.txt").display().to_string();
    let target = format!("s/{forged}");
    let refused = w.run(
        "snap-restore",
        &["--from", "usb", "-i", &key, "restore", &target, "--to", "r"],
    );
    assert_eq!(code(&refused), 77);
    // The hint's line, added as the hint says: now it is a known machine.
    let err = stderr(&refused);
    let line = err
        .split("add this line to ")
        .nth(1)
        .and_then(|rest| rest.split_once(": "))
        .map(|(_, l)| l.trim_end().trim_end_matches("; or --allow-unsigned"))
        .expect("the hint gives the line")
        .replace(&format!("snap@{}", hostname()), "snap@forger");
    let list = w.path("home/.config/snap/allowed_signers");
    let mut text = fs::read_to_string(&list).unwrap();
    text.push_str(&line);
    text.push('\n');
    fs::write(&list, text).unwrap();
    let out = w.run(
        "snap-restore",
        &["--from", "usb", "-i", &key, "restore", &target, "--to", "r"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(records(&out)[0]["signed_by"], "snap@forger");

    // An archive from before records were signed.
    fs::remove_file(w.path(&format!("usb/s/{forged}.json.sig"))).unwrap();
    let out = w.run(
        "snap-restore",
        &[
            "--from", "usb", "-i", &key, "restore", &target, "--to", "r2",
        ],
    );
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    assert!(!w.path("r2").exists());
    let out = w.run(
        "snap-restore",
        &[
            "--from",
            "usb",
            "-i",
            &key,
            "--allow-unsigned",
            "restore",
            &target,
            "--to",
            "r2",
        ],
    );
    let err = w.redact(&out.stderr);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains(&format!(
            "snap-restore: warning: s/{forged}: its record is not signed ({forged}.json.sig is not beside it); read because of --allow-unsigned"
        )),
        "{err}"
    );
    assert_eq!(records(&out)[0]["signed_by"], "unsigned");
    assert_eq!(
        fs::read(w.path("r2").join(w.inside("evil/a.txt"))).unwrap(),
        b"a forged file\n"
    );
}

/// An incremental archive is read only when every base of its chain is
/// signed by an allowed key: a base swapped for another machine's is
/// refused, naming the base, before anything is written.
#[test]
fn every_base_of_a_chain_is_checked() {
    let w = World::new();
    w.write_dated("src/a.txt", "one\n");
    w.collect_ok(&[]);
    let full = w.pack(&[]);
    assert_eq!(code(&full), 0, "{}", stderr(&full));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.write_dated("src/b.txt", "two\n");
    w.collect_ok(&[]);
    let inc = w.pack(&["--incremental"]);
    assert_eq!(code(&inc), 0, "{}", stderr(&inc));
    let base = records(&full)[0]["id"].as_str().unwrap().to_string();
    let top = records(&inc)[0]["id"].as_str().unwrap().to_string();
    assert_eq!(records(&inc)[0]["base"], base.as_str());
    // The base's record signed again by a key this machine does not allow.
    let json = w.path(&format!("store/archives/s/{base}.json"));
    let other = w.path("other");
    fs::create_dir_all(other.join(".config/snap")).unwrap();
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(other.join(".config/snap/signing_key"))
        .output()
        .unwrap();
    assert!(made.status.success());
    snap_testkit::sign_again(&json, &other);
    for args in [
        vec!["restore", "s/latest", "--to", "r"],
        vec!["cat", "s/latest", &w.inside("src/a.txt")],
        vec!["verify", &format!("s/{top}")],
    ] {
        let mut all = vec![args[0], "--archive"];
        all.extend_from_slice(&args[1..]);
        let out = w.restore(&all);
        let err = w.redact(&out.stderr);
        assert_eq!(code(&out), 77, "{args:?}: {err}");
        assert!(
            err.contains(&format!("archive s/{base}: signed by SHA256:")),
            "{args:?}: {err}"
        );
    }
    assert!(!w.path("r").exists());
}

/// The first pack makes the key (0600) and says so once, with the line it
/// added to the allowed signers; `tag` and `describe` rewrite a signed
/// record and sign it again (the signature still checks with `ssh-keygen -Y
/// verify`, and the archive still restores); a record whose signature does
/// not match is not re-signed by a tag.
#[test]
fn tags_sign_the_record_again() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    w.write_dated("src/a.txt", "one\n");
    w.collect_ok(&[]);
    let packed = w.pack(&[]);
    assert_eq!(code(&packed), 0, "{}", stderr(&packed));
    let said = w.redact(&packed.stderr);
    let list = fs::read_to_string(w.path("home/.config/snap/allowed_signers")).unwrap();
    assert!(
        said.contains(&format!(
            "snap-pack: made this machine's signing key [TMP]/home/.config/snap/signing_key; its archives are signed with it. Its line, added to [TMP]/home/.config/snap/allowed_signers, goes into the allowed_signers of every machine that restores them: {}",
            list.trim()
        )),
        "{said}"
    );
    let key = fs::metadata(w.path("home/.config/snap/signing_key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let again = w.pack(&[]);
    assert!(
        !stderr(&again).contains("signing key"),
        "{}",
        stderr(&again)
    );
    let id = records(&packed)[0]["id"].as_str().unwrap().to_string();
    let name = format!("s/{id}");
    let out = w.restore(&["tag", "--archive", &name, "--add", "keep"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = w.restore(&["describe", "--archive", &name, "before the upgrade"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = w.path(&format!("store/archives/s/{id}.json"));
    let check = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ssh-keygen -Y verify -f home/.config/snap/allowed_signers -I snap@{} -n snap-record -s '{}.sig' < '{}'",
            hostname(),
            json.display(),
            json.display()
        ))
        .current_dir(w.path(""))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let out = w.restore(&["restore", "--archive", &name, "--to", "r"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // Changed behind snap's back: refused, and a tag does not launder it.
    let text = fs::read_to_string(&json)
        .unwrap()
        .replace("before the upgrade", "after the upgrade");
    fs::write(&json, text).unwrap();
    let out = w.restore(&["tag", "--archive", &name, "--add", "again"]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    let out = w.restore(&["restore", "--archive", &name, "--to", "r2"]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
}

/// This machine's name, as the records and the default principal give it.
fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// A blocks disk snapshot's record is signed too, and names its map's
/// sha256: pushed, it verifies and restores signed; without its signature
/// it is refused (77) unless `--allow-unsigned`; a map swapped for another
/// snapshot's is damage (65); a tag signs the record again.
#[test]
fn disk_snapshots_are_signed() {
    let w = World::new();
    let image = w.path("vm.raw");
    fs::write(&image, vec![7u8; 1 << 20]).unwrap();
    let snap = |name: &str| {
        let out = w.run(
            "snap-disk",
            &[
                "--store",
                "store",
                "create",
                "vm.raw",
                name,
                "--block-size",
                "64K",
            ],
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    };
    snap("one");
    let mut other = vec![7u8; 1 << 20];
    other[..4096].fill(9);
    fs::write(&image, &other).unwrap();
    snap("two");
    fs::create_dir_all(w.path("usb")).unwrap();
    push(&w, "home", "store");
    assert!(w.path("usb/disks/vm/one.json.sig").exists());
    let from = |args: &[&str]| {
        let mut all = vec!["--from", "usb"];
        all.extend_from_slice(args);
        w.run("snap-restore", &all)
    };
    let out = from(&["verify", "disks/vm/one"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        records(&out)[0]["signed_by"],
        format!("snap@{}", hostname())
    );
    let out = w.restore(&["tag", "disks/vm/one", "--add", "keep"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = w.restore(&["restore", "disks/vm/one", "--to", "back.raw"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(w.path("back.raw")).unwrap(), vec![7u8; 1 << 20]);

    fs::copy(
        w.path("usb/disks/vm/two.map.zst"),
        w.path("usb/disks/vm/one.map.zst"),
    )
    .unwrap();
    let out = from(&["restore", "disks/vm/one", "--to", "swapped.raw"]);
    let err = w.redact(&out.stderr);
    assert_eq!(code(&out), 65, "{err}");
    assert!(err.contains("not this snapshot's map"), "{err}");

    fs::remove_file(w.path("usb/disks/vm/two.json.sig")).unwrap();
    let out = from(&["restore", "disks/vm/two", "--to", "two.raw"]);
    let err = w.redact(&out.stderr);
    assert_eq!(code(&out), 77, "{err}");
    assert!(
        err.contains("disk snapshot disks/vm/two: its record is not signed"),
        "{err}"
    );
    assert!(!w.path("two.raw").exists());
    let out = from(&["verify", "disks/vm/two"]);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    let out = from(&[
        "--allow-unsigned",
        "restore",
        "disks/vm/two",
        "--to",
        "two.raw",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(records(&out)[0]["signed_by"], "unsigned");
    assert_eq!(fs::read(w.path("two.raw")).unwrap(), other);
}

/// A tag with `--allow-unsigned` never makes this machine vouch for an
/// archive it could not check: a forged archive's tag leaves it unsigned
/// (its foreign signature removed), still refused without the flag.
#[test]
fn a_tag_does_not_adopt_a_foreign_archive() {
    let w = World::new();
    let (recipient, _) = victim(&w);
    let forged = forge(&w, &recipient);
    let target = format!("s/{forged}");
    let tag = w.run(
        "snap-restore",
        &["--from", "usb", "tag", &target, "--add", "x"],
    );
    assert_eq!(code(&tag), 77, "{}", stderr(&tag));
    let tag = w.run(
        "snap-restore",
        &[
            "--from",
            "usb",
            "--allow-unsigned",
            "tag",
            &target,
            "--add",
            "x",
        ],
    );
    assert_eq!(code(&tag), 0, "{}", stderr(&tag));
    assert!(!w.path(&format!("usb/s/{forged}.json.sig")).exists());
    let key = w.path("key.txt").display().to_string();
    let out = w.run(
        "snap-restore",
        &["--from", "usb", "-i", &key, "restore", &target, "--to", "r"],
    );
    let err = w.redact(&out.stderr);
    assert_eq!(code(&out), 77, "{err}");
    assert!(err.contains("its record is not signed"), "{err}");
}
