//! `create --before CMD`: the snapshot is made; CMD runs, and when it fails
//! the way back is said, or taken when asked and the image is not in use.

use snap_cli::Reporter;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::record::DiskSnapshotRecord;

use crate::disk::{Context, Disk};
use crate::source::stderr_stdio;

/// `--before CMD`: the snapshot is made; run CMD, and on failure say how to
/// roll back, or roll back when asked and the image is not in use.
pub(crate) fn guard(
    ctx: &Context,
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    cmd: &str,
    rollback: bool,
    report: &Reporter,
) -> Result<Exit> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        // Its output goes to stderr: stdout carries only records.
        .stdout(stderr_stdio()?)
        .status()
        .map_err(|e| Error::io_ctx("sh -c", e))?;
    if status.success() {
        report.note(&format!(
            "{cmd:?} succeeded; snapshot {} stays as a rollback point",
            rec.name
        ));
        return Ok(Exit::Ok);
    }
    let how = format!("snap-disk restore {} {}", disk.dir.name, rec.name);
    report.error(&format!("{cmd:?} failed ({status})"));
    if !rollback {
        report.note(&format!("to roll back, stop the VM and run: {how}"));
        return Ok(Exit::Partial);
    }
    if let Err(e) = disk.refuse_if_in_use("rolling back") {
        report.failed(&e);
        report.note(&format!("not rolled back; stop the VM and run: {how}"));
        return Ok(Exit::Partial);
    }
    let _lock = ctx.lock(false)?;
    crate::restore::restore_record(disk, rec, None, &Default::default(), None, None, report)?;
    report.note(&format!("rolled back to {}", rec.name));
    Ok(Exit::Partial)
}
