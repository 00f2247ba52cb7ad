//! Carrying files from one machine's home to another's: `restore --to ~`
//! puts the home folder a snapshot was made in onto this one, `--preview`
//! says what it would create, replace, keep or delete, `--delete` removes
//! only inside the restored folders, and the undo snapshot taken before
//! anything is replaced brings the replaced and deleted files back.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use snap_testkit::serve::bin;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `tool` with `home` as its HOME, in `dir`.
fn as_home(dir: &Path, home: &Path, tool: &str, args: &[&str]) -> Output {
    Command::new(bin(tool))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("SNAP_CONFIG")
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A snapshot, made with `home` as HOME, of `paths` as set `set` in `dir/store`; its id.
fn collect(dir: &Path, home: &Path, set: &str, paths: &[&Path]) -> String {
    let mut args = vec!["--store", "store", "--min-free", "0", "--name", set, "-q"];
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let out = as_home(dir, home, "snap-collect", &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// A laptop's home with its settings, and a desktop's with other ones:
/// (the world's folder, the laptop's home, the desktop's home).
fn two_homes() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(t.path()).unwrap();
    let (laptop, desktop) = (root.join("laptop/home"), root.join("desktop/home"));
    fs::create_dir_all(laptop.join(".config/app")).unwrap();
    fs::write(laptop.join(".config/app/settings.ini"), "laptop\n").unwrap();
    fs::write(laptop.join(".config/app/new.ini"), "new\n").unwrap();
    fs::write(laptop.join("env.sh"), "export EDITOR=vi\n").unwrap();
    fs::create_dir_all(desktop.join(".config/app")).unwrap();
    fs::write(desktop.join(".config/app/settings.ini"), "desktop!\n").unwrap();
    fs::write(desktop.join(".config/app/mine.txt"), "only here\n").unwrap();
    fs::write(desktop.join("notes.txt"), "the desktop's own\n").unwrap();
    fs::set_permissions(&desktop, fs::Permissions::from_mode(0o711)).unwrap();
    (t, laptop, desktop)
}

/// The records a run wrote on stdout, one per line.
fn records(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The laptop's snapshot of its ~/.config and ~/env.sh: `config/ID`.
fn laptop_config(dir: &Path, laptop: &Path) -> String {
    let sources = [&laptop.join(".config"), &laptop.join("env.sh")];
    let sources: Vec<&Path> = sources.iter().map(|p| p.as_path()).collect();
    format!("config/{}", collect(dir, laptop, "config", &sources))
}

fn rel(p: &Path) -> String {
    p.display().to_string().trim_start_matches('/').to_string()
}

/// The laptop's ~/.config and ~/env.sh onto the desktop's home: the preview
/// (the whole output) names each file by where it lands; the restore
/// replaces, creates and deletes just that, leaves the home folder's own
/// mode and the files above the sources alone, and its undo snapshot puts
/// the replaced and the deleted files back byte for byte.
#[test]
fn a_laptop_home_lands_on_a_desktop_home() {
    let (t, laptop, desktop) = two_homes();
    let dir = t.path();
    let name = laptop_config(dir, &laptop);
    let host = snap_shared::hostname();
    let to = desktop.display().to_string();
    let before = |p: &str| fs::read(desktop.join(p)).unwrap();
    let (settings, mine) = (
        before(".config/app/settings.ini"),
        before(".config/app/mine.txt"),
    );
    let mtime = |p: &Path| fs::symlink_metadata(p).unwrap().mtime();
    let settings_mtime = mtime(&desktop.join(".config/app/settings.ini"));

    let args = ["--store", "store", "restore", &name, "--to", &to];
    let preview = [&args[..], &["--preview", "--overwrite", "--delete"]].concat();
    let out = as_home(dir, &desktop, "snap-restore", &preview);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "snap-restore: {} ({host}'s home) -> {to}\n\
             snap-restore: create: .config/app/new.ini\n\
             snap-restore: replace: .config/app/settings.ini (content, size)\n\
             snap-restore: create: env.sh\n\
             snap-restore: delete: .config/app/mine.txt\n\
             snap-restore: dry run into {to}: 2 create, 2 same, 1 replace, 1 delete; 3 files, 28 B to write; nothing was written\n",
            rel(&laptop)
        )
    );
    assert_eq!(before(".config/app/settings.ini"), settings);

    let apply = [&args[..], &["--overwrite", "--delete"]].concat();
    let out = as_home(dir, &desktop, "snap-restore", &apply);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let recs = records(&out);
    let (snap, rec) = (&recs[0], &recs[1]);
    let undo = rec["undo"].as_str().expect("an undo snapshot").to_string();
    assert!(undo.starts_with("pre-restore/"), "{rec}");
    // The undo snapshot's record comes first, as snap-disk's does.
    assert_eq!(snap["kind"], "snapshot");
    assert_eq!(
        format!(
            "{}/{}",
            snap["set"].as_str().unwrap(),
            snap["id"].as_str().unwrap()
        ),
        undo
    );
    assert_eq!(snap["tags"], serde_json::json!(["pre-restore"]));
    assert!(
        err.contains(&format!(
            "snap-restore: undo: {undo} keeps the 2 paths this restore replaces or deletes; to put them back: snap-restore restore {undo} --to ~ --overwrite\n"
        )),
        "{err}"
    );
    assert_eq!(rec["deleted"], 1, "{rec}");
    assert_eq!(rec["home"]["from"], rel(&laptop), "{rec}");
    assert_eq!(before(".config/app/settings.ini"), b"laptop\n");
    assert_eq!(before(".config/app/new.ini"), b"new\n");
    assert_eq!(before("env.sh"), b"export EDITOR=vi\n");
    assert!(!desktop.join(".config/app/mine.txt").exists());
    assert_eq!(before("notes.txt"), b"the desktop's own\n");
    assert!(!desktop.join("home").exists() && !desktop.join(rel(&laptop)).exists());
    let mode = fs::metadata(&desktop).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o711, "the home folder's own mode is left alone");

    // The undo, as the message says (with ~ spelled out).
    let back = [
        "--store",
        "store",
        "restore",
        &undo,
        "--to",
        &to,
        "--overwrite",
    ];
    let out = as_home(dir, &desktop, "snap-restore", &back);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(before(".config/app/settings.ini"), settings);
    assert_eq!(before(".config/app/mine.txt"), mine);
    assert_eq!(
        mtime(&desktop.join(".config/app/settings.ini")),
        settings_mtime
    );
}

/// A snapshot with a source outside the home it was made in keeps its
/// whole paths under ~, with a warning that says why; `--full-paths`
/// keeps them whole without one.
#[test]
fn whole_paths_where_a_source_lies_outside_the_home() {
    let (t, laptop, desktop) = two_homes();
    let dir = t.path();
    let etc = dir.join("etc");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    let id = collect(dir, &laptop, "mixed", &[&laptop.join("env.sh"), &etc]);
    let to = desktop.display().to_string();
    let name = format!("mixed/{id}");
    let out = as_home(
        dir,
        &desktop,
        "snap-restore",
        &["--store", "store", "restore", &name, "--to", &to, "-q"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "snap-restore: warning: {to} is your home, but {} lies outside {}: the snapshot's whole paths are kept under it (--full-paths)",
            rel(&etc),
            rel(&laptop)
        )),
        "{err}"
    );
    assert!(desktop.join(rel(&etc)).join("hosts").exists());
    assert!(desktop.join(rel(&laptop)).join("env.sh").exists());

    let id = collect(dir, &laptop, "env", &[&laptop.join("env.sh")]);
    let name = format!("env/{id}");
    let args = ["--store", "store", "restore", &name, "--to", &to];
    let out = as_home(
        dir,
        &desktop,
        "snap-restore",
        &[&args[..], &["--full-paths", "-q"]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert!(!desktop.join("env.sh").exists());
}

/// `--delete` removes only inside the restored folders: a symlink there
/// goes, not what it points at; a folder goes with what it holds; the
/// files beside the sources stay. A restore with errors deletes nothing.
#[test]
fn delete_stays_inside_the_restored_folders() {
    let (t, laptop, desktop) = two_homes();
    let dir = t.path();
    let name = laptop_config(dir, &laptop);
    let outside = dir.join("precious.txt");
    fs::write(&outside, "not ours\n").unwrap();
    let app = desktop.join(".config/app");
    symlink(&outside, app.join("link")).unwrap();
    fs::create_dir_all(app.join("cache/deep")).unwrap();
    fs::write(app.join("cache/deep/blob"), "x").unwrap();
    let to = desktop.display().to_string();
    let args = [
        "--store", "store", "restore", &name, "--to", &to, "--delete",
    ];

    // settings.ini differs and --overwrite is not given: an error, nothing deleted.
    let out = as_home(dir, &desktop, "snap-restore", &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "snap-restore: warning: nothing deleted (3 paths the snapshot lacks): the restore had errors\n"
        ),
        "{}",
        text(&out.stderr)
    );
    assert!(app.join("mine.txt").exists() && app.join("cache/deep/blob").exists());

    let out = as_home(
        dir,
        &desktop,
        "snap-restore",
        &[&args[..], &["--overwrite"]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut left: Vec<String> = fs::read_dir(&app)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["new.ini", "settings.ini"]);
    assert_eq!(fs::read(&outside).unwrap(), b"not ours\n");
    assert!(desktop.join("notes.txt").exists());

    // Into another folder, with whole paths: the folders above the sources
    // (the laptop's home among them) are not restored folders either.
    let other = dir.join("other");
    let beside = other.join(rel(&laptop)).join("beside.txt");
    fs::create_dir_all(beside.parent().unwrap()).unwrap();
    fs::write(&beside, "beside the sources\n").unwrap();
    let other_s = other.display().to_string();
    let args = [
        "--store", "store", "restore", &name, "--to", &other_s, "--delete",
    ];
    let out = as_home(dir, &desktop, "snap-restore", &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read(&beside).unwrap(), b"beside the sources\n");
}

/// When the undo snapshot cannot be taken, nothing is written; `--no-undo`
/// restores without one.
#[test]
fn no_undo_no_restore() {
    let (t, laptop, desktop) = two_homes();
    let dir = t.path();
    let id = collect(dir, &laptop, "config", &[&laptop.join(".config")]);
    fs::write(dir.join("not-a-store"), "a file").unwrap();
    let (name, to) = (format!("config/{id}"), desktop.display().to_string());
    let args = [
        "--from",
        "store",
        "--store",
        "not-a-store",
        "restore",
        &name,
        "--to",
        &to,
        "--overwrite",
    ];
    let out = as_home(dir, &desktop, "snap-restore", &args);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the undo snapshot (--no-undo restores without one)"),
        "{err}"
    );
    assert_eq!(
        fs::read(desktop.join(".config/app/settings.ini")).unwrap(),
        b"desktop!\n"
    );
    assert!(!desktop.join(".config/app/new.ini").exists());

    let out = as_home(
        dir,
        &desktop,
        "snap-restore",
        &[&args[..], &["--no-undo"]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let recs = records(&out);
    assert_eq!(recs.len(), 1, "no undo snapshot: {recs:?}");
    assert!(recs[0].get("undo").is_none(), "{recs:?}");
    assert_eq!(
        fs::read(desktop.join(".config/app/settings.ini")).unwrap(),
        b"laptop\n"
    );
}

/// A tar snap did not make: `--overwrite` keeps what it replaces in the
/// undo snapshot; `--delete` is refused (64), since no index says what its
/// folders hold.
#[test]
fn a_foreign_tar_keeps_what_it_replaces() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "f.txt", &b"new\n"[..]).unwrap();
    fs::write(dir.join("x.tar"), b.into_inner().unwrap()).unwrap();
    let to = dir.join("to");
    fs::create_dir_all(&to).unwrap();
    fs::write(to.join("f.txt"), "old\n").unwrap();
    let to_s = to.display().to_string();
    let args = ["--store", "store", "restore", "x.tar", "--to", &to_s];
    let out = as_home(
        dir,
        dir,
        "snap-restore",
        &[&args[..], &["--delete"]].concat(),
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert_eq!(fs::read(to.join("f.txt")).unwrap(), b"old\n");

    let out = as_home(
        dir,
        dir,
        "snap-restore",
        &[&args[..], &["--overwrite"]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read(to.join("f.txt")).unwrap(), b"new\n");
    let recs = records(&out);
    let undo = recs[1]["undo"].as_str().unwrap();
    let kept = dir
        .join("store/sets")
        .join(undo)
        .join(rel(&fs::canonicalize(&to).unwrap()))
        .join("f.txt");
    assert_eq!(fs::read(kept).unwrap(), b"old\n");
}
