//! `cargo xtask dist`: a Debian package and a tarball of the release build,
//! made from one staged tree (dpkg-deb, no packaging tool to install):
//!
//! - the six tools and `snap-backup` (seven binaries) in /usr/bin;
//! - man pages, gzipped, in /usr/share/man/man1;
//! - completions where bash-completion, zsh and fish look for a package's;
//! - the systemd units and timers and the udev rule under /lib (Debian 12);
//! - the cron file as /etc/cron.d/snap-backup, its jobs commented out: a
//!   package must not start backups no one configured;
//! - apt's pre-apt hook as /etc/apt/apt.conf.d/80snap-backup-pre-apt (a
//!   conffile: deleting it turns the hook off for good);
//! - copyright and changelog in /usr/share/doc/snap-backup.
//!
//! The package is `snap-backup`: Debian already has a package named `snap`.
//! Its Depends come from `dpkg-shlibdeps` on the built binaries, which are
//! stripped.
//!
//! `--debug` packages the debug build instead: `cargo xtask test` checks the
//! package's layout and install with the binaries it already built, without
//! a second, release, build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sh::{Result, cargo, ensure_apt, exec, root, stdout, write_file};

pub const PACKAGE: &str = "snap-backup";
/// apt's hook file, in contrib/apt and /etc/apt/apt.conf.d.
pub const APT_HOOK: &str = "80snap-backup-pre-apt";
pub const TOOLS: [&str; 7] = [
    "snap-collect",
    "snap-pack",
    "snap-push",
    "snap-restore",
    "snap-prune",
    "snap-disk",
    "snap-backup",
];

/// What `run` made.
pub struct Made {
    pub deb: PathBuf,
    pub tarball: PathBuf,
}

#[derive(clap::Args)]
pub struct Args {
    /// Package the debug build (what `cargo xtask test` checks), not a release build
    #[arg(long)]
    pub debug: bool,
}

pub fn run(args: Args) -> Result {
    let made = build(args.debug)?;
    println!("{}", made.deb.display());
    println!("{}", made.tarball.display());
    Ok(())
}

/// `cargo build` of the seven binaries alone (not xtask, the generator or the
/// test harnesses), in release mode with `release`.
pub fn build_tools(release: bool) -> Command {
    let mut build = cargo();
    build.arg("build");
    if release {
        build.arg("--release");
    }
    for tool in TOOLS {
        build.args(["-p", tool]);
    }
    build
}

/// Builds the binaries (release, or debug with `debug`), stages the tree,
/// and packs both artifacts.
pub fn build(debug: bool) -> Result<Made> {
    ensure_apt(&[("dpkg-shlibdeps", "dpkg-dev"), ("strip", "binutils")])?;
    let (profile, out) = match debug {
        true => ("debug", root().join("target/dist-debug")),
        false => ("release", root().join("target/dist")),
    };
    exec(&mut build_tools(!debug))?;
    let version = env!("CARGO_PKG_VERSION");
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"))?;
    let stage = out.join(format!("{PACKAGE}_{version}-1_{arch}"));
    let _ = fs::remove_dir_all(&stage);
    stage_tree(&stage, &root().join("target").join(profile))?;
    let deb = out.join(format!("{PACKAGE}_{version}-1_{arch}.deb"));
    control(&stage, version, &arch)?;
    exec(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    let tarball = out.join(format!("{PACKAGE}-{version}-{arch}.tar.gz"));
    exec(
        Command::new("tar")
            .args(["--owner=0", "--group=0", "--exclude=DEBIAN", "-czf"])
            .arg(&tarball)
            .arg("-C")
            .arg(&stage)
            .args(["usr", "lib", "etc"]),
    )?;
    Ok(Made { deb, tarball })
}

fn stage_tree(stage: &Path, built: &Path) -> Result {
    let root = root();
    let bin = stage.join("usr/bin");
    for tool in TOOLS {
        install(&built.join(tool), &bin.join(tool), 0o755)?;
    }
    // The release profile keeps line tables for backtraces; a package ships
    // stripped binaries, as Debian's policy asks.
    exec(
        Command::new("strip")
            .arg("--strip-unneeded")
            .args(TOOLS.map(|t| bin.join(t))),
    )?;
    let man = stage.join("usr/share/man/man1");
    let mut pages = Vec::new();
    // Every page is generated (snap-docgen), snap-backup's too.
    for entry in read_dir(&root.join("man"))? {
        let to = man.join(file_name(&entry));
        install(&entry, &to, 0o644)?;
        pages.push(to);
    }
    exec(Command::new("gzip").args(["-9n"]).args(&pages))?;
    let completions = root.join("completions");
    for tool in TOOLS {
        for (from, to) in [
            (
                format!("{tool}.bash"),
                format!("usr/share/bash-completion/completions/{tool}"),
            ),
            (
                format!("_{tool}"),
                format!("usr/share/zsh/vendor-completions/_{tool}"),
            ),
            (
                format!("{tool}.fish"),
                format!("usr/share/fish/vendor_completions.d/{tool}.fish"),
            ),
        ] {
            install(&completions.join(from), &stage.join(to), 0o644)?;
        }
    }
    // contrib's units run the package's /usr/bin/snap-backup.
    for entry in read_dir(&root.join("contrib/systemd"))? {
        let to = stage.join("lib/systemd/system").join(file_name(&entry));
        install(&entry, &to, 0o644)?;
    }
    for entry in read_dir(&root.join("contrib/udev"))? {
        let to = stage.join("lib/udev/rules.d").join(file_name(&entry));
        install(&entry, &to, 0o644)?;
    }
    let cron = fs::read_to_string(root.join("contrib/cron/snap")).map_err(|e| e.to_string())?;
    write(
        &stage.join("etc/cron.d/snap-backup"),
        &disabled_cron(&cron),
        0o644,
    )?;
    install(
        &root.join("contrib/apt").join(APT_HOOK),
        &stage.join("etc/apt/apt.conf.d").join(APT_HOOK),
        0o644,
    )?;
    let doc = stage.join("usr/share/doc").join(PACKAGE);
    write(&doc.join("copyright"), &copyright(), 0o644)?;
    write(&doc.join("changelog.Debian"), &changelog(), 0o644)?;
    exec(
        Command::new("gzip")
            .args(["-9n"])
            .arg(doc.join("changelog.Debian")),
    )?;
    Ok(())
}

/// The cron file with its jobs commented out and a line saying how to
/// turn them on: installing the package configures no backup.
fn disabled_cron(text: &str) -> String {
    let mut out = String::from(
        "# Installed by the snap-backup package with its jobs commented out:\n\
         # write the config first (snap-backup --help), then remove the '#'\n\
         # before the job line below.\n",
    );
    for line in text.lines() {
        if is_cron_job(line) {
            out.push('#');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A cron line that runs something: it starts with a time field (a digit
/// or `*`), not a comment, a variable or a blank.
pub fn is_cron_job(line: &str) -> bool {
    line.trim_start()
        .starts_with(|c: char| c.is_ascii_digit() || c == '*')
}

/// DEBIAN/control and DEBIAN/conffiles; Depends from dpkg-shlibdeps.
fn control(stage: &Path, version: &str, arch: &str) -> Result {
    let depends = shlib_depends(stage)?;
    let size_kib = du_kib(stage)?;
    let text = format!(
        "Package: {PACKAGE}\n\
         Version: {version}-1\n\
         Architecture: {arch}\n\
         Maintainer: snap developers <snap@example.invalid>\n\
         Installed-Size: {size_kib}\n\
         Depends: {depends}\n\
         Recommends: qemu-utils, age\n\
         Suggests: rclone, openssh-client, libvirt-clients, qemu-system-common\n\
         Section: admin\n\
         Priority: optional\n\
         Homepage: https://example.invalid/snap\n\
         Description: backups of files and virtual-machine disks, as small tools\n \
         snap-collect makes browsable hard-linked snapshots, snap-disk snapshots\n \
         VM disks (qcow2, overlays, changed blocks), snap-pack packs them into\n \
         verified tar.zst archives (optionally age-encrypted, incremental),\n \
         snap-push sends them to drives, S3, GCS, Azure, SFTP and rclone\n \
         remotes, resumably, snap-restore lists, verifies and restores, and\n \
         snap-prune keeps what restic's retention rules keep.\n"
    );
    write(&stage.join("DEBIAN/control"), &text, 0o644)?;
    write(
        &stage.join("DEBIAN/conffiles"),
        &format!("/etc/cron.d/snap-backup\n/etc/apt/apt.conf.d/{APT_HOOK}\n"),
        0o644,
    )
}

/// `dpkg-shlibdeps` on the seven binaries: it wants a debian/control, so it
/// runs in a scratch folder that has one.
fn shlib_depends(stage: &Path) -> Result<String> {
    let scratch = stage.with_extension("shlibdeps");
    let _ = fs::remove_dir_all(&scratch);
    write(
        &scratch.join("debian/control"),
        &format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"),
        0o644,
    )?;
    let mut cmd = Command::new("dpkg-shlibdeps");
    cmd.args(["-O", "--warnings=0"]).current_dir(&scratch);
    for tool in TOOLS {
        cmd.arg(stage.join("usr/bin").join(tool));
    }
    let said = stdout(&mut cmd)?;
    let _ = fs::remove_dir_all(&scratch);
    said.strip_prefix("shlibs:Depends=")
        .map(str::to_string)
        .ok_or_else(|| format!("dpkg-shlibdeps said: {said}"))
}

fn du_kib(dir: &Path) -> Result<u64> {
    let said = stdout(Command::new("du").args(["-sk"]).arg(dir))?;
    said.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("du said: {said}"))
}

fn copyright() -> String {
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
     Upstream-Name: snap\n\
     Source: https://example.invalid/snap\n\
     \n\
     Files: *\n\
     Copyright: 2026 the snap developers\n\
     License: MIT or Apache-2.0\n \
     snap may be used under the terms of either the MIT license or the\n \
     Apache License, Version 2.0, at your option. On Debian systems the\n \
     Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0.\n"
        .to_string()
}

fn changelog() -> String {
    let date = stdout(Command::new("date").args(["-R", "-u"])).unwrap_or_default();
    format!(
        "{PACKAGE} ({}-1) unstable; urgency=medium\n\n  \
         * Built by `cargo xtask dist` from the snap workspace.\n\n \
         -- snap developers <snap@example.invalid>  {date}\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn install(from: &Path, to: &Path, mode: u32) -> Result {
    let bytes = fs::read(from).map_err(|e| format!("{}: {e}", from.display()))?;
    write_bytes(to, &bytes, mode)
}

pub fn write(to: &Path, text: &str, mode: u32) -> Result {
    write_bytes(to, text.as_bytes(), mode)
}

fn write_bytes(to: &Path, bytes: &[u8], mode: u32) -> Result {
    use std::os::unix::fs::PermissionsExt;
    write_file(to, bytes)?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", to.display()))
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .expect("entries have names")
        .to_string_lossy()
        .into_owned()
}
