//! The backup job libvirt runs for a snapshot, around its begin: a job a
//! killed run left is found and ended, a job is ended and waited for, and a
//! watchdog process ends it when snap-disk dies without doing so.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use snap_shared::error::{Error, Exit, Result};

use super::Domain;
use super::backup::SHARED_TMP;
use crate::live::OURS;

/// The running backup job's XML, if there is one.
pub(super) fn job_xml(dom: &Domain) -> Result<Option<String>> {
    match dom.run("backup-dumpxml", &[]) {
        Ok(x) => Ok(Some(x)),
        Err(e) if e.cause.contains("no domain backup job") => Ok(None),
        Err(e) => Err(e),
    }
}

/// A job of ours a killed run left is ended (a note says so); another
/// tool's job makes this run wait for it to end (75).
pub(super) fn end_leftover_job(dom: &Domain) -> Result<Option<String>> {
    let Some(xml) = job_xml(dom)? else {
        return Ok(None);
    };
    if !xml.contains(&format!("{SHARED_TMP}/{OURS}")) {
        return Err(Error::new(
            Exit::TempFail,
            format!("domain {}", dom.name),
            "another backup job runs on it (libvirt runs one at a time)",
        )
        .with_hint("wait for it to end (virsh domjobinfo), then run again"));
    }
    abort_job(dom)?;
    Ok(Some(format!(
        "domain {}: ended the backup job an interrupted snapshot left",
        dom.name
    )))
}

/// Ends the backup job and waits until libvirt says it is gone.
pub(super) fn abort_job(dom: &Domain) -> Result<()> {
    match dom.run("domjobabort", &[]) {
        Ok(_) => {}
        // Already over (a watchdog, or libvirt after an error).
        Err(_) if job_xml(dom)?.is_none() => return Ok(()),
        Err(e) => return Err(e),
    }
    let t0 = Instant::now();
    while job_xml(dom)?.is_some() {
        if t0.elapsed() > Duration::from_secs(30) {
            return Err(Error::new(
                Exit::TempFail,
                format!("domain {}", dom.name),
                "its backup job did not end within 30 s of virsh domjobabort",
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A process that ends the job when this one ends without doing so (kill
/// -9 included): it waits for its stdin to close, then aborts the domain's
/// backup job if it is still the one exporting `socket`. It runs in its own
/// session, so a Ctrl-C to this process's group does not stop it first.
pub(super) fn watchdog(dom: &Domain, socket: &Path) -> Result<(Child, ChildStdin)> {
    const SCRIPT: &str = r#"cat >/dev/null
d=$1 s=$2; shift 2
if [ $# -gt 0 ]; then set -- -c "$1"; fi
if virsh "$@" -q backup-dumpxml "$d" 2>/dev/null | grep -qF "$s"; then
  virsh "$@" -q domjobabort "$d" >/dev/null 2>&1
fi
exit 0"#;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", SCRIPT, "snap-disk-watchdog", &dom.name])
        .arg(socket)
        .args(dom.virsh.uri.iter())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            rustix::process::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io_ctx("sh (the backup job's watchdog)", e))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Nothing is ever written; a write error only means it died already.
    let _ = stdin.flush();
    Ok((child, stdin))
}
