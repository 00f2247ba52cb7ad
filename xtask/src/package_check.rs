//! The package check of `cargo xtask test`: the .deb of the debug build
//! (`dist --debug`) passes lintian and installs with dpkg; every file is where
//! its program looks (man, bash, zsh and fish completions, systemd, udev,
//! cron); its apt hook takes a `pre-apt` rollback point through a real
//! `apt-get install` and never stops one; and purging the package leaves
//! nothing but the user's config and store.
//!
//! It changes the machine it runs on (dpkg -i, apt-get install), as a CI
//! machine is for, and always removes what it installed, even on failure.
//! It refuses to run where snap-backup is installed already: purging that
//! one would take its owner's edited cron file and apt hook with it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::dist::{self, APT_HOOK, PACKAGE, TOOLS};
use crate::sh::{Result, ensure_apt, root, show, stdout, write_file as write};

/// Programs the check calls, with the Debian package that has each.
const CHECK_PROGRAMS: &[(&str, &str)] = &[
    ("lintian", "lintian"),
    ("man", "man-db"),
    ("zsh", "zsh"),
    ("fish", "fish"),
    ("udevadm", "udev"),
    ("systemd-analyze", "systemd"),
    ("qemu-img", "qemu-utils"),
];

/// The empty package the apt hook's checks install and remove.
const PROBE: &str = "snap-apt-probe";

pub fn run() -> Result {
    ensure_apt(CHECK_PROGRAMS)?;
    if installed(PACKAGE) {
        return Err(format!(
            "package check: {PACKAGE} is installed on this machine; the check installs and purges \
             its own, so remove yours first (dpkg --purge {PACKAGE})"
        ));
    }
    let made = dist::build(true)?;
    // Errors fail; warnings (an initial upload closes no bug) do not.
    must(
        Command::new("lintian")
            .args(["--fail-on", "error"])
            .arg(&made.deb),
    )?;
    ok("lintian: no errors");
    let work = root().join("target/package-check");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    must(Command::new("dpkg").arg("-i").arg(&made.deb))?;
    let checked = installed_checks(&work);
    // Whatever failed, the machine gets its state back.
    if installed(PROBE) {
        let _ = Command::new("dpkg").args(["--purge", PROBE]).output();
    }
    let purged = purge_leaves_only_users_files(&work);
    checked.and(purged)
}

fn installed_checks(work: &Path) -> Result {
    versions()?;
    man_pages()?;
    completions()?;
    units()?;
    udev_rule()?;
    cron_file()?;
    apt_hook(work)
}

/// Each tool runs and says its name and version.
fn versions() -> Result {
    for tool in TOOLS {
        let said = stdout(Command::new(format!("/usr/bin/{tool}")).arg("--version"))?;
        if !said.starts_with(&format!("{tool} ")) {
            return Err(format!("{tool} --version said {said:?}"));
        }
    }
    must(Command::new("/usr/bin/snap-backup").arg("--help"))?;
    ok("the seven binaries run --version, snap-backup --help");
    Ok(())
}

/// `man -w` finds every page where man looks.
fn man_pages() -> Result {
    for page in TOOLS {
        let at = stdout(Command::new("man").args(["-w", page]))?;
        if at != format!("/usr/share/man/man1/{page}.1.gz") {
            return Err(format!("man -w {page} found {at:?}"));
        }
    }
    ok("man -w finds the seven pages in /usr/share/man/man1");
    Ok(())
}

/// Each shell parses its completion files, and bash registers them.
fn completions() -> Result {
    for tool in TOOLS {
        let bash = format!("/usr/share/bash-completion/completions/{tool}");
        must(Command::new("bash").arg("-n").arg(&bash))?;
        let registered =
            stdout(Command::new("bash").args(["-c", &format!(". {bash} && complete -p {tool}")]))?;
        if !registered.ends_with(tool) {
            return Err(format!("{bash} registers no completion: {registered:?}"));
        }
        must(
            Command::new("zsh")
                .arg("-n")
                .arg(format!("/usr/share/zsh/vendor-completions/_{tool}")),
        )?;
        must(
            Command::new("fish")
                .arg("-n")
                .arg(format!("/usr/share/fish/vendor_completions.d/{tool}.fish")),
        )?;
    }
    ok("bash -n, zsh -n and fish -n parse the completions; bash registers them");
    Ok(())
}

/// systemd-analyze verifies the units and the timer, which run
/// /usr/bin/snap-backup; the hourly one runs `--due`.
fn units() -> Result {
    let units = package_files("/lib/systemd/system/")?;
    for want in [
        "snap-backup.service",
        "snap-backup.timer",
        "snap-external@.service",
    ] {
        if !units.iter().any(|u| u.ends_with(want)) {
            return Err(format!("{want} is not installed: {units:?}"));
        }
    }
    let service = fs::read_to_string("/lib/systemd/system/snap-backup.service")
        .map_err(|e| format!("snap-backup.service: {e}"))?;
    if !service.contains("ExecStart=/usr/bin/snap-backup --due\n") {
        return Err("snap-backup.service does not run snap-backup --due".into());
    }
    for unit in &units {
        let text = fs::read_to_string(unit).map_err(|e| format!("{}: {e}", unit.display()))?;
        if text.contains("/usr/local/") {
            return Err(format!("{} runs a program in /usr/local", unit.display()));
        }
    }
    must(Command::new("systemd-analyze").arg("verify").args(&units))?;
    ok(&format!("systemd-analyze verify: {} units", units.len()));
    Ok(())
}

/// The udev rule parses: `udevadm verify` where udev has it (253 and
/// later), else `udevadm test`, which reads every rule file and names the
/// lines it ignores.
fn udev_rule() -> Result {
    let rules = package_files("/lib/udev/rules.d/")?;
    let verify = Command::new("udevadm").args(["verify", "--help"]).output();
    if verify.is_ok_and(|o| o.status.success()) {
        must(Command::new("udevadm").arg("verify").args(&rules))?;
        ok("udevadm verify: the rule");
        return Ok(());
    }
    let out = output(Command::new("udevadm").args(["test", "/sys/class/net/lo"]))?;
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    for rule in &rules {
        let name = rule.file_name().expect("a rule file").to_string_lossy();
        if !said.contains(&*name) {
            return Err(format!("udevadm test did not read {name}:\n{said}"));
        }
        if let Some(bad) = said
            .lines()
            .find(|l| l.contains(&*name) && is_udev_complaint(l))
        {
            return Err(format!("udevadm test: {bad}"));
        }
    }
    ok("udevadm test reads the rule without a complaint");
    Ok(())
}

/// A line of `udevadm test` that says a rule line is wrong.
fn is_udev_complaint(line: &str) -> bool {
    ["nvalid", "ignoring", "rror", "nknown"]
        .iter()
        .any(|w| line.contains(w))
}

/// The cron file is in place with every job commented out.
fn cron_file() -> Result {
    let cron = fs::read_to_string("/etc/cron.d/snap-backup")
        .map_err(|e| format!("/etc/cron.d/snap-backup: {e}"))?;
    if let Some(job) = cron.lines().find(|l| dist::is_cron_job(l)) {
        return Err(format!(
            "/etc/cron.d/snap-backup runs a job as installed: {job}"
        ));
    }
    let off = cron
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .find(|l| dist::is_cron_job(l));
    if !off.is_some_and(|job| job.contains("snap-backup --due")) {
        return Err(format!(
            "/etc/cron.d/snap-backup has no commented snap-backup --due line:\n{cron}"
        ));
    }
    ok("/etc/cron.d/snap-backup is installed with its hourly --due off");
    Ok(())
}

/// The apt hook through real apt runs: a rollback point of the set and the
/// disk before an install, kept by the config's retention; an apt run that
/// still succeeds, with a warning, when the store is unusable; and one that
/// succeeds once the package is removed but its hook file is still there.
fn apt_hook(work: &Path) -> Result {
    let probe = probe_deb(work)?;
    let config = hook_config(work)?;
    let said = apt(&config, &["install", "-y", &probe.display().to_string()])?;
    let wanted = format!("before apt: install {PROBE} 1.0");
    let snap = pre_apt_snapshot(
        &config,
        ("snap-restore", &["list", "--json"]),
        "snapshot",
        &wanted,
    )
    .map_err(|e| format!("{e}\napt-get said:\n{said}"))?;
    pre_apt_snapshot(&config, ("snap-disk", &["list"]), "disk-snapshot", &wanted)?;
    ok(&format!(
        "apt-get install took a pre-apt snapshot of the set and the disk: {wanted:?}"
    ));
    retention_keeps(work, &config, &snap)?;

    let not_a_dir = work.join("not-a-folder");
    write(&not_a_dir, "a file where the store's parent should be\n")?;
    let store = not_a_dir.join("store").display().to_string();
    let broken = config_with(&config, ("store", store.into()), "unusable.json")?;
    let said = apt(&broken, &["remove", "-y", PROBE])?;
    if !said.contains("snap-backup: warning: no complete pre-apt rollback point") {
        return Err(format!(
            "apt-get remove with an unusable store gave no warning:\n{said}"
        ));
    }
    ok("with the store unusable, apt-get remove succeeds and warns");
    due_once(&config)?;

    must(Command::new("dpkg").args(["--remove", PACKAGE]))?;
    let hook = format!("/etc/apt/apt.conf.d/{APT_HOOK}");
    if !Path::new(&hook).exists() {
        return Err(format!(
            "{hook} is gone after dpkg --remove; it is a conffile"
        ));
    }
    apt(&config, &["install", "-y", &probe.display().to_string()])?;
    apt(&config, &["remove", "-y", PROBE])?;
    ok("removed, not purged: the hook file stays and apt-get still works");
    Ok(())
}

/// What the timer and the cron line run, once, as installed: `snap-backup
/// --due` with the hook's config and a new store collects the set (due:
/// never done) and says so in a `job` record; a second run right after
/// finds nothing due.
fn due_once(config: &Path) -> Result {
    let store = config.with_file_name("due-store").display().to_string();
    let config = config_with(config, ("store", store.into()), "due.json")?;
    let run = || {
        stdout(
            Command::new("/usr/bin/snap-backup")
                .args(["--due", "--config"])
                .arg(&config),
        )
    };
    let said = run()?;
    let jobs: Vec<serde_json::Value> = said
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let collected = jobs
        .iter()
        .any(|j| j["kind"] == "job" && j["job"] == "collect" && j["status"] == "done");
    if !collected {
        return Err(format!("snap-backup --due collected nothing:\n{said}"));
    }
    let again = run()?;
    if again.lines().any(|l| l.contains("\"job\":\"collect\"")) {
        return Err(format!("a second --due run collected again:\n{again}"));
    }
    ok("snap-backup --due, as the timer runs it: collects what is due, then nothing more");
    Ok(())
}

/// An empty package for apt to install, built here.
fn probe_deb(work: &Path) -> Result<PathBuf> {
    let tree = work.join("probe");
    write(
        &tree.join("DEBIAN/control"),
        format!(
            "Package: {PROBE}\nVersion: 1.0\nArchitecture: all\n\
             Maintainer: snap tests <snap@example.invalid>\n\
             Description: an empty package the apt hook check installs\n"
        ),
    )?;
    let deb = work.join(format!("{PROBE}_1.0_all.deb"));
    must(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&tree)
            .arg(&deb),
    )?;
    Ok(deb)
}

/// A config with one set and one qcow2 disk, its store in `work`.
fn hook_config(work: &Path) -> Result<PathBuf> {
    let src = work.join("etc-like");
    write(&src.join("app.conf"), "setting = 1\n")?;
    let image = work.join("vm.qcow2");
    must(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&image)
            .arg("1M"),
    )?;
    let config = work.join("config.json");
    let v = serde_json::json!({
        "store": work.join("store"),
        "backup_sets": [{"name": "etc", "sources": [src]}],
        "disks": [{"image": image}],
    });
    write(&config, v.to_string())?;
    Ok(config)
}

/// A copy of `config` with one field set, as `name` beside it.
fn config_with(config: &Path, (key, value): (&str, Value), name: &str) -> Result<PathBuf> {
    let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", config.display());
    let text = fs::read_to_string(config).map_err(|e| bad(&e))?;
    let mut v: Value = serde_json::from_str(&text).map_err(|e| bad(&e))?;
    v[key] = value;
    let to = config.with_file_name(name);
    write(&to, v.to_string())?;
    Ok(to)
}

/// The HOME the package's tools run with: beside the check's config, so that
/// what they keep there (snap's signing key) is the check's, not root's.
fn home_of(config: &Path) -> std::path::PathBuf {
    config
        .parent()
        .expect("the config is in a folder")
        .join("home")
}

/// Runs apt-get with the hook's config; it must succeed. Its stdout and stderr.
fn apt(config: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("apt-get");
    cmd.args(args)
        .env("SNAP_CONFIG", config)
        .env("HOME", home_of(config))
        .env("DEBIAN_FRONTEND", "noninteractive")
        .current_dir(config.parent().expect("the config is in a folder"));
    let out = output(&mut cmd)?;
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    match out.status.success() {
        true => Ok(said),
        false => Err(format!("`{}` failed ({}):\n{said}", show(&cmd), out.status)),
    }
}

/// The id (or name) of the one record of `kind` that `tool args` lists with
/// tag pre-apt and a description starting with `wanted`.
fn pre_apt_snapshot(
    config: &Path,
    (tool, args): (&str, &[&str]),
    kind: &str,
    wanted: &str,
) -> Result<String> {
    let listed = stdout(
        Command::new(format!("/usr/bin/{tool}"))
            .args(args)
            .env("SNAP_CONFIG", config)
            .env("HOME", home_of(config)),
    )?;
    let records: Vec<Value> = listed
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("{tool} {}: {e}", args.join(" ")))?;
    let tagged: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["kind"] == kind
                && r["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "pre-apt"))
        })
        .collect();
    match tagged.as_slice() {
        [r] if r["description"]
            .as_str()
            .is_some_and(|d| d.starts_with(wanted)) =>
        {
            Ok(r["id"]
                .as_str()
                .or(r["name"].as_str())
                .unwrap_or_default()
                .to_string())
        }
        _ => Err(format!(
            "{tool} {} lists no one pre-apt record described {wanted:?}:\n{listed}",
            args.join(" ")
        )),
    }
}

/// Two later plain snapshots, then `snap-prune` by the config's retention
/// (`"local": {"last": 1, "tags": ["pre-apt"]}`): the pre-apt one stays.
fn retention_keeps(work: &Path, config: &Path, pre_apt: &str) -> Result {
    for n in 0..2 {
        write(
            &work.join("etc-like/app.conf"),
            format!("setting = {}\n", n + 2),
        )?;
        must(
            Command::new("/usr/bin/snap-collect")
                .arg("--quiet")
                .env("SNAP_CONFIG", config)
                .env("HOME", home_of(config)),
        )?;
    }
    let rule = serde_json::json!({"local": {"last": 1, "tags": ["pre-apt"]}});
    let pruning = config_with(config, ("retention", rule), "pruning.json")?;
    let pruned = stdout(
        Command::new("/usr/bin/snap-prune")
            .arg("--quiet")
            .env("SNAP_CONFIG", &pruning)
            .env("HOME", home_of(config)),
    )?;
    let actions: Vec<(String, String)> = pruned
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                r["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let kept = |id: &str| actions.iter().any(|(i, a)| i == id && a == "keep");
    let removed = actions.iter().filter(|(_, a)| a == "remove").count();
    if !kept(pre_apt) || removed != 1 {
        return Err(format!(
            "snap-prune by {{\"last\": 1, \"tags\": [\"pre-apt\"]}} should keep {pre_apt} and remove one:\n{pruned}"
        ));
    }
    ok("snap-prune keeps the pre-apt snapshot by the config's \"tags\" rule");
    Ok(())
}

/// Purges the package; every file it installed is gone, and the user's
/// config and store (in `work`) are still there.
fn purge_leaves_only_users_files(work: &Path) -> Result {
    let listed = stdout(Command::new("dpkg-query").args(["-L", PACKAGE])).unwrap_or_default();
    must(Command::new("dpkg").args(["--purge", PACKAGE]))?;
    let left: Vec<&str> = listed
        .lines()
        .filter(|p| {
            let p = Path::new(p);
            p.exists() && !p.is_dir()
        })
        .collect();
    let doc = format!("/usr/share/doc/{PACKAGE}");
    let hook = format!("/etc/apt/apt.conf.d/{APT_HOOK}");
    let extra: Vec<&str> = [doc.as_str(), "/etc/cron.d/snap-backup", hook.as_str()]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    if !left.is_empty() || !extra.is_empty() {
        return Err(format!("dpkg --purge {PACKAGE} left: {left:?} {extra:?}"));
    }
    for users in ["config.json", "store", "etc-like/app.conf"] {
        if !work.join(users).exists() {
            return Err(format!("the purge took the user's {users}"));
        }
    }
    ok("dpkg --purge leaves nothing of the package; the user's config and store stay");
    Ok(())
}

/// The files the package installed under `dir`.
fn package_files(dir: &str) -> Result<Vec<PathBuf>> {
    let listed = stdout(Command::new("dpkg-query").args(["-L", PACKAGE]))?;
    Ok(listed
        .lines()
        .filter(|l| l.starts_with(dir) && l.len() > dir.len() && !l[dir.len()..].contains('/'))
        .map(PathBuf::from)
        .collect())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .output()
        // "install ok installed"; a removed one is "deinstall ok config-files".
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).ends_with(" installed"))
}

fn ok(what: &str) {
    eprintln!("xtask: package: ok: {what}");
}

fn output(cmd: &mut Command) -> Result<Output> {
    cmd.output().map_err(|e| format!("{}: {e}", show(cmd)))
}

/// Runs `cmd`; it must succeed.
fn must(cmd: &mut Command) -> Result {
    stdout(cmd).map(drop)
}
