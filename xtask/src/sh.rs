//! Running commands and installing what a fresh machine lacks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

pub type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (the folder above xtask/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, echoing it; fails on a non-zero exit.
pub fn exec(cmd: &mut Command) -> Result {
    eprintln!("xtask: $ {}", show(cmd));
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("{}: {e}", show(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", show(cmd)))
    }
}

/// A command's stdout, trimmed; it must succeed, else what it printed is the error.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("{}: {e}", show(cmd)))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}{}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Writes a file, making its folder first.
pub fn write_file(path: &Path, content: impl AsRef<[u8]>) -> Result {
    let dir = path.parent().expect("files live in folders");
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::write(path, content).map_err(|e| format!("{}: {e}", path.display()))
}

/// Removes `path` and all below it if it is there, read-only folders
/// included (a snapshot's are; `chmod -R u+w` first). Nothing there is
/// nothing to do, and no command is run.
pub fn remove_tree(path: &Path) -> Result {
    if !path.exists() {
        return Ok(());
    }
    exec(Command::new("chmod").args(["-R", "u+w"]).arg(path))?;
    std::fs::remove_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Cargo, as the xtask was run. Under CI (`CI` set) without incremental
/// compilation: a clean build never reuses it, and it takes gigabytes of disk.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if std::env::var_os("CI").is_some() {
        c.env("CARGO_INCREMENTAL", "0");
    }
    c
}

/// True when `program` is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The packages of the `(program, package)` pairs whose program is not `present`.
fn missing<'a>(needs: &[(&str, &'a str)], present: impl Fn(&str) -> bool) -> Vec<&'a str> {
    needs
        .iter()
        .filter(|(program, _)| !present(program))
        .map(|(_, package)| *package)
        .collect()
}

static APT_UPDATE: Once = Once::new();

/// Installs Debian packages for the programs that are missing (idempotent).
pub fn ensure_apt(needs: &[(&str, &str)]) -> Result {
    let missing = missing(needs, have);
    if missing.is_empty() {
        return Ok(());
    }
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    apt_get(&args)
}

/// Runs `apt-get ARGS` (through sudo when not root), after one `apt-get update` a run.
pub fn apt_get(args: &[&str]) -> Result {
    let apt = |args: &[&str]| {
        let mut cmd = match unsafe { libc::geteuid() } {
            0 => Command::new("apt-get"),
            _ => {
                let mut c = Command::new("sudo");
                c.arg("apt-get");
                c
            }
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    let mut update_result = Ok(());
    APT_UPDATE.call_once(|| update_result = exec(&mut apt(&["update", "-qq"])));
    update_result?;
    exec(&mut apt(args))
}

/// Installs PyPI packages for the programs that are missing (idempotent), and
/// returns the folder pip puts programs in, for PATH (pyenv's shims may not
/// be on a fresh machine's PATH).
pub fn ensure_pip(needs: &[(&str, &str)]) -> Result<std::path::PathBuf> {
    let scripts = python_scripts_dir()?;
    let missing = missing(needs, |p| have(p) || scripts.join(p).exists());
    if !missing.is_empty() {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(&missing);
        exec(&mut cmd)?;
    }
    Ok(scripts)
}

fn python_scripts_dir() -> Result<std::path::PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .map_err(|e| format!("python3: {e} (the S3 test server needs Python 3 and pip)"))?;
    Ok(std::path::PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim(),
    ))
}

/// Installs npm packages globally for the programs that are missing (idempotent).
pub fn ensure_npm(needs: &[(&str, &str)]) -> Result {
    let missing = missing(needs, have);
    if missing.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("npm");
    cmd.args([
        "install",
        "--global",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ])
    .args(&missing);
    exec(&mut cmd)
}
