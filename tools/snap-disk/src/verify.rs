//! `verify`: the image's own metadata, then every snapshot of the disk.
//!
//! A qcow2 image is checked by `qemu-img check` (read-only: nothing is
//! repaired): corruptions are damage (exit 65), leaked clusters only waste
//! space and are said. While a VM runs the image, qemu-img reads a file
//! QEMU is writing, so what it finds is not conclusive and is said as such;
//! QEMU's own view comes first (the node's `corrupt` flag, which QEMU sets
//! when it finds its metadata damaged). Then each snapshot: a blocks
//! snapshot's every block read and hashed, an internal one present in the
//! image (as the running VM sees it), an overlay's chain checked.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use snap_cli::Reporter;
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::{DiskSnapshotRecord, Record};

use crate::cli::{Keys, MonitorArgs};
use crate::disk::{Context, Disk};
use crate::restore::{frozen_of, outcome, unknown_method};
use crate::savevm::Vm;
use crate::{blocks, internal, overlay};

pub fn verify(
    ctx: &Context,
    operand: &str,
    name: Option<&str>,
    keys: &Keys,
    monitor: &MonitorArgs,
    report: &Reporter,
) -> Result<Exit> {
    let dec = keys.decrypt()?;
    let disk = ctx.disk(operand)?;
    let mut vm = internal::running_vm(ctx, &disk.image, monitor, report)?;
    let internal = internal::snapshots(&disk, vm.as_mut())?;
    let recs = match name {
        Some(n) => vec![crate::listing::find(&disk, n, internal.as_deref())?],
        None => crate::listing::merged(&disk, internal.as_deref())?,
    };
    let mut bad_total = 0;
    if internal.is_some() {
        bad_total += check_image(&disk.image, vm.as_mut(), report)?;
    }
    let mut out = RecordWriter::new(io::stdout().lock());
    for rec in &recs {
        let problems = verify_one(&disk, rec, &dec)?;
        for p in &problems {
            report.error(&format!("{}/{}: {p}", rec.disk, rec.name));
        }
        if problems.is_empty() {
            report.note(&format!("{}/{}: ok", rec.disk, rec.name));
        }
        bad_total += problems.len();
        let mut o = outcome(rec, &disk.image, rec.virtual_size);
        o.to = None;
        o.errors = problems.len() as u64;
        out.write(&Record::Verified(o))?;
    }
    Ok(if bad_total > 0 { Exit::Data } else { Exit::Ok })
}

/// Checks a qcow2 image's metadata; how many problems it found.
fn check_image(img: &Path, vm: Option<&mut Vm>, report: &Reporter) -> Result<usize> {
    let shown = img.display();
    let running = vm.is_some();
    if let Some(vm) = vm
        && vm.corrupt()?
    {
        report.error(&format!(
            "{shown}: QEMU has marked the image corrupt (it found its metadata damaged)"
        ));
        return Ok(1);
    }
    let mut cmd = Command::new("qemu-img");
    cmd.args(["check", "--output=json", "-f", "qcow2"]);
    if running || !snap_shared::holders::holders(img).is_empty() {
        cmd.arg("-U");
    }
    let out = cmd
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io_ctx("qemu-img check", e))?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        let err = String::from_utf8_lossy(&out.stderr);
        Error::new(
            Exit::Io,
            format!("qemu-img check {shown}"),
            err.lines().last().unwrap_or("failed").to_string(),
        )
    })?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let (corrupt, leaks, errors) = (n("corruptions"), n("leaks"), n("check-errors"));
    let found = corrupt + errors;
    if found > 0 && running {
        report.warn(&format!(
            "{shown}: qemu-img check found {corrupt} corruptions and {errors} errors, reading \
             the file while the VM writes it: not conclusive; check again with the VM stopped"
        ));
        return Ok(0);
    }
    if found > 0 {
        report.error(&format!(
            "{shown}: qemu-img check found {corrupt} corruptions and {errors} errors"
        ));
        return Ok(1);
    }
    match leaks {
        0 => report.note(&format!("{shown}: qemu-img check: no errors")),
        l => report.warn(&format!(
            "{shown}: qemu-img check: no errors, {l} leaked clusters (space only; \
             `qemu-img check -r leaks` gives it back with the VM stopped)"
        )),
    }
    Ok(0)
}

/// What is wrong with one snapshot (empty when it is intact).
fn verify_one(disk: &Disk, rec: &DiskSnapshotRecord, dec: &Decrypt) -> Result<Vec<String>> {
    let as_problem = |r: Result<()>| -> Result<Vec<String>> {
        match r {
            Ok(()) => Ok(Vec::new()),
            Err(e) if matches!(e.exit, Exit::Data | Exit::NoInput | Exit::Io) => {
                Ok(vec![format!("{}: {}", e.context, e.cause)])
            }
            Err(e) => Err(e),
        }
    };
    match rec.method.as_str() {
        "blocks" => {
            let map = disk.dir.map_path(&rec.name);
            if !map.exists() {
                return Ok(vec!["its block map is missing".into()]);
            }
            blocks::verify(&map, &disk.dir.blocks_dir(), dec)
        }
        "qcow2-internal" => Ok(match rec.extra.get("state").and_then(Value::as_str) {
            Some("missing") => vec!["its snapshot is gone from the image".into()],
            _ => Vec::new(),
        }),
        "overlay" => as_problem(frozen_of(rec).and_then(|f| overlay::check_chain(&f))),
        m => Err(unknown_method(rec, m)),
    }
}
