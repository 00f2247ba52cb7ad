//! `cargo xtask bench --suites push`: snap-push against `rclone copy`
//! (Debian's rclone), side by side in one run, on a 1 GiB archive, to a
//! folder and to a local S3 server (moto, started fresh for each push so its
//! memory does not grow across runs), plus the resume goal: a push killed
//! (kill -9) once half of its parts are at the destination, then run again;
//! the rerun's `sent` over the archive's size is what a resume costs.
//!
//! The archive is made untimed by snap-collect and snap-pack from one file of
//! incompressible bytes. Each timed push starts on an empty destination with
//! no resume journal and the archive in the page cache. snap-push fsyncs
//! every part it writes to a folder and the file before its rename; rclone
//! does not flush, so a "rclone + sync" row is measured too.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::args::Args;
use super::kit::{Moto, Table, bin, discard, fresh_dir, measure, median, quiet};
use super::pushing::{resume_share, snap_push};
use crate::sh::{Result, ensure_apt, ensure_pip};

const CORPUS: &str = "archive-1GiB";

/// Makes the 1 GiB archive (untimed); returns its `.json` record path and data path.
fn make_archive(base: &Path) -> Result<(PathBuf, PathBuf)> {
    let src = base.join("push-src");
    let store = base.join("push-store");
    discard(&src)?;
    discard(&store)?;
    fs::create_dir_all(&src).map_err(|e| e.to_string())?;
    quiet(Command::new("sh").arg("-c").arg(format!(
        "head -c 1073741824 /dev/urandom > '{}/blob.bin'",
        src.display()
    )))?;
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' --store '{s}' --min-free 0 -q --name push '{src}' | '{}' --store '{s}' --min-free 0 -q",
            bin("snap-collect").display(),
            bin("snap-pack").display(),
            s = store.display(),
            src = src.display()
        ))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "making the archive: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    discard(&src)?;
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let data = PathBuf::from(rec["path"].as_str().unwrap_or_default());
    let json = data.with_file_name(format!("{}.json", rec["id"].as_str().unwrap_or_default()));
    Ok((json, data))
}

fn add(table: &mut Table, step: &str, tool: &str, wall: f64, rss: f64, mib: f64) {
    eprintln!("xtask: {CORPUS} {step} {tool}: {wall:.2} s, {rss:.0} MiB");
    super::kit::add_sample(table, (CORPUS, step, tool), wall, rss, Some(mib));
}

pub fn run(args: &Args, base: &Path) -> Result {
    ensure_apt(&[
        ("rclone", "rclone"),
        ("ssh", "openssh-client"),
        ("/usr/sbin/sshd", "openssh-server"),
        ("/usr/lib/openssh/sftp-server", "openssh-sftp-server"),
        ("openssl", "openssl"),
    ])?;
    let scripts = ensure_pip(crate::test::TEST_SERVERS_PIP)?;
    let (json, data) = make_archive(base)?;
    let size = fs::metadata(&data).map_err(|e| e.to_string())?.len();
    let mib = size as f64 / (1 << 20) as f64;
    let folder = base.join("push-dest");
    let state = base.join("push-state");
    let mut table = Table::new();
    let mut resumes: Vec<(String, f64, f64)> = Vec::new();
    quiet(
        Command::new("sh")
            .arg("-c")
            .arg(format!("cat '{}' > /dev/null; sync", data.display())),
    )?;
    for run in 0..args.runs {
        let tools: [&str; 3] = ["snap", "rclone", "rclone+sync"];
        for k in 0..tools.len() {
            let tool = tools[(k + run) % tools.len()];
            fresh_dir(&folder)?;
            fresh_dir(&state)?;
            quiet(&mut Command::new("sync"))?;
            let dest = folder.display().to_string();
            let (wall, rss) = match tool {
                "snap" => measure(&mut snap_push(&json, &dest, &state, &[]))?,
                "rclone" => measure(Command::new("rclone").arg("copy").arg(&data).arg(&folder))?,
                _ => measure(
                    Command::new("sh")
                        .arg("-c")
                        .arg(format!("rclone copy '{}' '{dest}' && sync", data.display())),
                )?,
            };
            add(&mut table, "push-folder", tool, wall, rss, mib);
        }
        for k in 0..2 {
            let tool = ["snap", "rclone"][(k + run) % 2];
            let moto = Moto::start(&scripts)?;
            fresh_dir(&state)?;
            let (wall, rss) = match tool {
                "snap" => measure(&mut snap_push(
                    &json,
                    "s3://bench/snap",
                    &state,
                    &moto.env(),
                ))?,
                // This machine sets AWS_CA_BUNDLE, which rclone's S3 client cannot load.
                _ => measure(
                    Command::new("rclone")
                        .env_remove("AWS_CA_BUNDLE")
                        .args(["copy", "--s3-upload-concurrency", "4"])
                        .arg(&data)
                        .arg(moto.rclone_remote()),
                )?,
            };
            add(&mut table, "push-s3", tool, wall, rss, mib);
        }
        fresh_dir(&folder)?;
        fresh_dir(&state)?;
        let (sent, at) = resume_share(&json, &folder.display().to_string(), &state, &[], size)?;
        resumes.push(("folder".into(), sent, at));
        let moto = Moto::start(&scripts)?;
        fresh_dir(&state)?;
        let (sent, at) = resume_share(&json, "s3://bench/resume", &state, &moto.env(), size)?;
        resumes.push(("s3".into(), sent, at));
        drop(moto);
        super::remote::measure_round(
            run,
            base,
            &json,
            &data,
            &mut table,
            &|t, step, tool, wall, rss| add(t, step, tool, wall, rss, mib),
        )?;
        let (sent, at) = super::remote::sftp_resume(base, &json, size)?;
        resumes.push(("sftp".into(), sent, at));
    }
    discard(&folder)?;
    let md = super::kit::render_rows(&table, "archive MiB");
    let resume_md = render_resumes(&resumes);
    println!("{md}\n{resume_md}");
    if !args.no_write {
        write_doc(args, &md, &resume_md)?;
    }
    Ok(())
}

fn render_resumes(resumes: &[(String, f64, f64)]) -> String {
    let mut md = String::from(
        "| destination | killed at (parts there) | rerun sent, median (min–max) | goal |\n|---|---|---|---|\n",
    );
    for dest in ["folder", "s3", "sftp"] {
        let sent: Vec<f64> = resumes
            .iter()
            .filter(|r| r.0 == dest)
            .map(|r| r.1 * 100.0)
            .collect();
        let at: Vec<f64> = resumes
            .iter()
            .filter(|r| r.0 == dest)
            .map(|r| r.2 * 100.0)
            .collect();
        if sent.is_empty() {
            continue;
        }
        let lo = sent.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = sent.iter().cloned().fold(0.0, f64::max);
        md.push_str(&format!(
            "| {dest} | {:.0}% | {:.1}% ({lo:.1}–{hi:.1}) of a full push | ≤ 60% |\n",
            median(&at),
            median(&sent)
        ));
    }
    md
}

fn write_doc(args: &Args, md: &str, resume_md: &str) -> Result {
    let method = "One 1 GiB archive (incompressible data, made untimed by snap-collect | snap-pack) pushed to an empty\n\
folder on the same disk and to a local moto S3 server (started fresh for each push), by\n\
`snap-push --file` and by `rclone copy` (4 parallel parts to S3 for both; rclone's default 5 MiB parts,\n\
snap's default 8 MiB). snap-push fsyncs each 16 MiB part it writes to a folder and the file before\n\
its rename; rclone does not flush, so \"rclone+sync\" is the like-for-like row.\n\
push-sftp: the same archive to Debian's sshd on loopback (started by the bench with its own keys), by\n\
snap-push (sftp://), scp, sftp (batch put) and rclone copy to an :sftp remote of the same server.\n\
snap-push flushes each part there (fsync@openssh.com) and hashes every byte; \"scp+sync\" adds a\n\
`sync -f` of the folder on the server, and \"scp+sha256+sync\" also runs `openssl dgst -sha256` of the\n\
archive alongside (SHA-NI, as fast as snap's own hash): the same work as snap. push-rclone-local / push-rclone-webdav: snap-push to\n\
rclone:REMOTE:PATH (through `rclone rcd`: the data file by an `operations/copyfile` job, hashed again\n\
by snap alongside) and rclone copy,\n\
to a local remote on the same disk and to a webdav remote served by `rclone serve webdav`\n\
(restarted on an empty folder for each push); \"rclone+sha256\" runs `openssl dgst -sha256` alongside.\n\
\"snap / tool\" is snap's wall time over the tool's; throughput relative to the tool is its inverse\n\
(the goal \"at least 0.9x rclone's throughput\" is snap / tool ≤ 1.11).";

    let tables = format!(
        "{md}\n## Resume\n\nA push is killed (kill -9) as soon as its journal records half of the parts, then run\n\
again; \"rerun sent\" is what the second run sent over the archive's size.\n\n{resume_md}"
    );
    let rclone = format!("; {}", super::kit::version("rclone", "version"));
    super::kit::write_doc(
        "benchmarks-push.md",
        "Benchmarks: snap-push",
        args.runs,
        &rclone,
        method,
        &tables,
    )
}
