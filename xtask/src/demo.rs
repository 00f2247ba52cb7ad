//! `cargo xtask demo`: the main job on a sample tree, with release binaries.
//!
//! Makes a sample tree and a config under target/demo, collects it, changes a
//! few files, collects again, and shows what the second snapshot cost on disk
//! and that it equals the tree it was taken from. Then packs it and pushes
//! it (`snap-pack | snap-push`) to a local "external" folder named in the
//! config, verifies the archive from that folder alone, restores it from
//! there and shows the restored tree equals the source. Last, a disk image:
//! a blocks snapshot pushed to the same folder, a 1% change whose snapshot
//! sends only the changed blocks, and restores in place and from the folder.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sh::{Result, exec, root, write_file as write};

/// A small source-tree-like sample: 40 folders of 50 files, a few binaries, links.
fn make_sample(src: &Path) -> Result {
    for d in 0..40 {
        for f in 0..50 {
            let mut text = String::new();
            for line in 0..(20 + (d * 7 + f * 13) % 200) {
                let _ = writeln!(
                    text,
                    "// module {d} file {f} line {line}: let x = {};",
                    line * f
                );
            }
            write(&src.join(format!("project/mod{d:02}/file{f:02}.rs")), text)?;
        }
    }
    let blob: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&src.join("media/video.bin"), &blob)?;
    write(
        &src.join(".config/app/settings.json"),
        r#"{"theme":"dark"}"#,
    )?;
    write(
        &src.join("project/target/debug/build.log"),
        "excluded by the config\n",
    )?;
    let _ = std::os::unix::fs::symlink("mod00/file00.rs", src.join("project/main.rs"));
    // A real tree's files are older than the snapshot; files changed in the
    // second before a run are copied again by the next one (racy timestamps).
    exec(
        Command::new("find")
            .arg(src)
            .args(["-exec", "touch", "-h", "-d", "yesterday", "{}", "+"]),
    )
}

/// Runs one of the tools, passing its stderr through; returns its stdout.
fn tool(bin: &Path, name: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(bin.join(name))
        .args(args)
        .output()
        .map_err(|e| format!("{name}: {e}"))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("{name} {} failed ({})", args.join(" "), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    Ok(text)
}

/// Runs a shell pipeline of the tools (bash, pipefail), passing stderr through.
fn pipeline(bin: &Path, line: &str) -> Result<String> {
    let mut path = std::ffi::OsString::from(bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", line])
        .env("PATH", path)
        .output()
        .map_err(|e| format!("bash: {e}"))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("`{line}` failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    Ok(text)
}

/// Packs the newest snapshot in the store and pushes it to the configured
/// "external" folder, then verifies and restores it from there alone.
fn pack_push_verify_restore(bin: &Path, config: &Path, src: &Path, base: &Path) -> Result {
    let cfg = config.to_str().ok_or("config path is not UTF-8")?;
    let external = base.join("external");
    let restored = base.join("restored");
    let (ext, to) = (
        external.display().to_string(),
        restored.display().to_string(),
    );
    println!("== pack the newest snapshot and push it to the configured destination {ext}");
    pipeline(
        bin,
        &format!(
            "snap-pack --config '{cfg}' --snapshot data/latest --min-free 0 | snap-push --config '{cfg}' --verify"
        ),
    )?;
    println!("== what the external folder holds, read from its files alone");
    tool(bin, "snap-restore", &["list", &ext])?;
    println!(
        "== verify there: its record's signature, every byte of the archive against its sha256 and every file's"
    );
    tool(
        bin,
        "snap-restore",
        &["--config", cfg, "verify", "--from", &ext, "data/latest"],
    )?;
    println!("== restore from the external folder into {to}");
    tool(
        bin,
        "snap-restore",
        &[
            "--config",
            cfg,
            "restore",
            "--from",
            &ext,
            "data/latest",
            "--to",
            &to,
        ],
    )?;
    same_tree(src, &to)?;
    println!("== the restored tree equals the source (diff -r)");
    Ok(())
}

/// A raw ext4 image of the sample tree (mke2fs -d, no mounting): a blocks
/// snapshot pushed to the external folder, a change, a second snapshot that
/// stores and sends only the changed blocks, an in-place restore of the first,
/// and a restore from the external folder alone; each checked by sha256.
fn disk_round_trip(bin: &Path, config: &Path, src: &Path, base: &Path) -> Result {
    crate::sh::ensure_apt(&[("mke2fs", "e2fsprogs")])?;
    let cfg = config.to_str().ok_or("config path is not UTF-8")?;
    let img = base.join("vm.raw");
    let (im, ext) = (
        img.display().to_string(),
        base.join("external").display().to_string(),
    );
    fs::File::create(&img)
        .and_then(|f| f.set_len(256 << 20))
        .map_err(|e| e.to_string())?;
    exec(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-d"])
            .arg(src)
            .arg(&img)
            .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin"),
    )?;
    println!("== disk: a 256 MiB ext4 image of the sample ({im}); blocks snapshot, pushed");
    let first = pipeline(
        bin,
        &format!(
            "snap-disk --config '{cfg}' create '{im}' first -d 'demo' | snap-push --config '{cfg}' -q"
        ),
    )?;
    let sum1 = sha256(&img)?;
    // 1% of the image: 2.5 MiB of incompressible bytes written over the middle.
    let noise = crate::bench::disk::Noise::new().bytes(5 << 19);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .map_err(|e| e.to_string())?;
    std::os::unix::fs::FileExt::write_all_at(&f, &noise, 100 << 20).map_err(|e| e.to_string())?;
    drop(f); // an open image is an image in use: snap-disk would refuse the restore
    println!(
        "== wrote 2.5 MiB into the image; second snapshot, pushed: only the changed blocks go"
    );
    let second = pipeline(
        bin,
        &format!("snap-disk --config '{cfg}' create '{im}' second | snap-push --config '{cfg}' -q"),
    )?;
    let sent = |out: &str| -> u64 {
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|r| r["bytes"].as_u64())
            .unwrap_or(0)
    };
    println!(
        "== first push sent {} bytes, second {} bytes",
        sent(&first),
        sent(&second)
    );
    println!("== restore the first snapshot in place");
    tool(
        bin,
        "snap-disk",
        &["--config", cfg, "restore", "vm", "first"],
    )?;
    if sha256(&img)? != sum1 {
        return Err("the restored image differs from the first snapshot".into());
    }
    println!("== the image is byte-identical to the first snapshot (sha256)");
    let copy = base.join("vm-from-external.raw");
    println!(
        "== restore the first snapshot from the external folder alone into {}",
        copy.display()
    );
    tool(
        bin,
        "snap-restore",
        &[
            "--config",
            cfg,
            "--from",
            &ext,
            "restore",
            "disks/vm/first",
            "--to",
            &copy.display().to_string(),
        ],
    )?;
    if sha256(&copy)? != sum1 {
        return Err("the image restored from the external folder differs".into());
    }
    println!("== identical too (sha256)");
    Ok(())
}

fn sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let data = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn collect(bin: &Path, config: &Path) -> Result<serde_json::Value> {
    let out = Command::new(bin.join("snap-collect"))
        .arg("--config")
        .arg(config)
        .output()
        .map_err(|e| format!("snap-collect: {e}"))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("snap-collect failed ({})", out.status));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    println!("{}", line.trim_end());
    serde_json::from_str(line.trim()).map_err(|e| format!("snap-collect's record: {e}"))
}

/// Bytes on disk of `b` beyond what it shares with `a` (du counts each inode once).
fn extra_disk_use(a: &str, b: &str) -> Result<String> {
    let out = Command::new("du")
        .args(["-s", "-h", a, b])
        .output()
        .map_err(|e| format!("du: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text
        .lines()
        .nth(1)
        .unwrap_or("")
        .split('\t')
        .next()
        .unwrap_or("?")
        .to_string())
}

fn same_tree(src: &Path, snapshot: &str) -> Result {
    let inside = PathBuf::from(snapshot).join(src.strip_prefix("/").expect("absolute"));
    exec(
        Command::new("diff")
            .args(["-r", "--no-dereference", "-x", "target"])
            .arg(src)
            .arg(inside),
    )
}

pub fn run() -> Result {
    exec(&mut crate::dist::build_tools(true))?;
    let base = root().join("target/demo");
    // A previous demo's read-only folders are made writable before they go;
    // on a fresh checkout there is nothing to clear, and nothing is said.
    crate::sh::remove_tree(&base)?;
    let src = base.join("home/data");
    let store = base.join("store");
    make_sample(&src)?;
    let config = base.join("config.json");
    let cfg = serde_json::json!({
        "store": store,
        "backup_sets": [{"name": "data", "sources": [src], "exclusions": ["target/"]}],
        "collect": {"min_free": "0"},
        "destinations": [{"name": "external", "path": base.join("external"), "min_free": "0"}],
        // The demo's own signing key (made by its first pack), not the user's.
        "signing": {"key": base.join("signing_key"), "allowed_signers": base.join("allowed_signers")}
    });
    fs::create_dir_all(base.join("external")).map_err(|e| e.to_string())?;
    write(&config, serde_json::to_string_pretty(&cfg).expect("json"))?;
    let bin = root().join("target/release");

    println!("== first collect of {}", src.display());
    let first = collect(&bin, &config)?;
    for f in ["project/mod03/file07.rs", "project/mod11/file42.rs"] {
        let p = src.join(f);
        let mut text = fs::read_to_string(&p).map_err(|e| e.to_string())?;
        text.push_str("// changed by the demo\n");
        write(&p, text)?;
    }
    write(&src.join("project/mod05/new.rs"), "fn added() {}\n")?;
    fs::remove_file(src.join("project/mod07/file01.rs")).map_err(|e| e.to_string())?;
    println!("== changed 2 files, added 1, removed 1; second collect");
    let second = collect(&bin, &config)?;
    let (p1, p2) = (
        first["path"].as_str().unwrap_or(""),
        second["path"].as_str().unwrap_or(""),
    );
    println!(
        "== second snapshot: {} files, {} copied ({} bytes), {} hard-linked; {} more on disk",
        second["files"],
        second["new_files"],
        second["new_bytes"],
        second["linked_files"],
        extra_disk_use(p1, p2)?
    );
    same_tree(&src, p2)?;
    println!("== the second snapshot equals the tree (diff -r); browse it: ls {p2}");
    pack_push_verify_restore(&bin, &config, &src, &base)?;
    disk_round_trip(&bin, &config, &src, &base)?;
    println!("== store: {}", store.display());
    Ok(())
}
