//! The bench's kit, which every suite uses: the corpora it builds, running
//! and measuring a command (wall time, peak RSS), the tables and the docs
//! writer, the trash that keeps deletes out of the timings, moto for S3,
//! and where the release binaries are.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::sh::{Result, cargo, exec, root};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::Duration;

use super::args::Args;

pub(crate) const TOOLS_APT: &[(&str, &str)] = &[
    ("rsync", "rsync"),
    ("restic", "restic"),
    ("borg", "borgbackup"),
];

/// Installs rustic (the restic repository format today; Debian's restic is
/// 0.14 of 2022) unless it is on the PATH: a release build from crates.io,
/// about 20 minutes on 2 cores, once. Only the suites that race it call this.
pub(crate) fn ensure_rustic() -> Result {
    if crate::sh::have("rustic") {
        return Ok(());
    }
    eprintln!("xtask: installing rustic-rs 0.11 (cargo install, once)");
    exec(cargo().args(["install", "rustic-rs", "--locked", "--version", "^0.11"]))
}

/// The restic-format anchors: Debian's restic and rustic.
pub(crate) const RESTIC_LIKE: [&str; 2] = ["restic", "rustic"];

/// `TOOL SUB…` on a restic-format repository (`restic` or `rustic`) with the
/// bench's password and no progress output; the caller adds what follows.
pub(crate) fn repo_cmd(tool: &str, repo: &Path, sub: &[&str]) -> Command {
    let mut c = Command::new(tool);
    if tool == "rustic" {
        c.arg("--repository")
            .arg(repo)
            .args([
                "--password",
                "bench",
                "--no-progress",
                "--log-level",
                "warn",
            ])
            .args(sub);
    } else {
        c.args(sub)
            .args(["--quiet", "--repo"])
            .arg(repo)
            .env("RESTIC_PASSWORD", "bench");
    }
    c
}

/// Restores a restic-format repository's latest snapshot into `out`.
pub(crate) fn repo_restore(tool: &str, repo: &Path, out: &Path) -> Command {
    let mut c = repo_cmd(tool, repo, &["restore", "latest"]);
    if tool == "rustic" {
        c.arg(out);
    } else {
        c.arg("--target").arg(out);
    }
    c
}

/// A deterministic generator (xorshift64*), so corpora are the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "fn", "let", "mut", "self", "return", "match", "impl", "struct", "pub", "use", "crate",
    "Result", "Option", "Some", "None", "Ok", "Err", "if", "else", "for", "in", "while", "buffer",
    "index", "path", "entry", "record", "config", "value", "count", "error", "=", "==", "+", "(",
    ")", "{", "}", ";", "->", "&", "0", "1", "42", "\"text\"",
];

/// Source-code-like text: compresses about as well as real source trees.
fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        let indent = rng.below(4) as usize * 4;
        out.extend(std::iter::repeat_n(b' ', indent));
        for _ in 0..(3 + rng.below(9)) {
            out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
            out.push(b' ');
        }
        if rng.below(5) == 0 {
            let _ = write!(out, "// {:x}", rng.next());
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

fn write_file(path: &Path, data: &[u8]) -> Result {
    fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))
}

/// tree-small: `n` files of 1-64 KiB (log-uniform) in a source-tree shape
/// (top folders, packages, modules; about 30 files a folder).
fn make_tree_small(dir: &Path, n: usize) -> Result {
    let mut rng = Rng(0x5eed_0001);
    let mut made = 0;
    let mut folder = 0;
    while made < n {
        let top = folder / 100;
        let path = dir.join(format!(
            "proj{top:02}/pkg{:02}/mod{folder:04}",
            folder % 100 / 10
        ));
        fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let in_folder = (10 + rng.below(40) as usize).min(n - made);
        for i in 0..in_folder {
            let size = (1024.0 * 64f64.powf(rng.below(1_000_000) as f64 / 1_000_000.0)) as usize;
            let name = if i % 7 == 0 {
                format!(".hidden{i}.cfg")
            } else {
                format!("file{i:03}.rs")
            };
            write_file(&path.join(name), &text(&mut rng, size))?;
        }
        made += in_folder;
        folder += 1;
    }
    Ok(())
}

/// usr-share: the corpus of docs/benchmarks-anchors.md, /usr/share and the
/// toolchain's docs, copied (symlinks kept, special files skipped).
fn copy_usr_share(dir: &Path) -> Result {
    let docs = Command::new("rustc").args(["--print", "sysroot"]).output();
    let docs = docs
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("share/doc"))
        .filter(|d| d.is_dir());
    let mut cmd = Command::new("rsync");
    cmd.args(["-a", "--no-specials", "--no-devices", "/usr/share"]);
    if let Some(d) = docs {
        cmd.arg(d);
    }
    quiet(cmd.arg(dir))
}

/// tree-large: four files, each half text, half random (zstd -3 ratio about 0.6).
fn make_tree_large(dir: &Path, total_mib: u64) -> Result {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut rng = Rng(0x5eed_0002);
    for f in 0..4 {
        let path = dir.join(format!("large{f}.bin"));
        let mut out = fs::File::create(&path).map_err(|e| e.to_string())?;
        for _ in 0..(total_mib / 4) {
            let chunk = if rng.below(2) == 0 {
                text(&mut rng, 1 << 20)
            } else {
                (0..(1 << 17))
                    .flat_map(|_| rng.next().to_le_bytes())
                    .collect()
            };
            out.write_all(&chunk).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

pub(crate) fn corpus(base: &Path, name: &str, args: &Args) -> Result<PathBuf> {
    let dir = base.join("corpus").join(name);
    let marker = base.join("corpus").join(format!("{name}.done"));
    let spec = match name {
        "tree-small" => format!("files={}", args.small_files),
        "tree-large" => format!("mib={}", args.large_mib),
        "tree-small-10pct" => format!("files={}", args.small_files / 10),
        "usr-share" => "copy of /usr/share and the Rust docs".to_string(),
        _ => return Err(format!("unknown corpus {name}")),
    };
    if fs::read_to_string(&marker).ok().as_deref() == Some(spec.as_str()) {
        return Ok(dir);
    }
    eprintln!("xtask: building corpus {name} ({spec})");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    match name {
        "tree-small" => make_tree_small(&dir, args.small_files)?,
        "tree-small-10pct" => make_tree_small(&dir, args.small_files / 10)?,
        "usr-share" => copy_usr_share(&dir)?,
        _ => make_tree_large(&dir, args.large_mib)?,
    }
    write_file(&marker, spec.as_bytes())?;
    Ok(dir)
}

/// Wall seconds and peak RSS (MiB) of one command.
pub(crate) fn measure(cmd: &mut Command) -> Result<(f64, f64)> {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", crate::sh::show(cmd)))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Reads stderr after the exit: tools here print little.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    if rc < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        return Err(format!(
            "`{}` failed ({status}): {err}",
            crate::sh::show(cmd)
        ));
    }
    Ok((wall, usage.ru_maxrss as f64 / 1024.0))
}

pub(crate) fn quiet(cmd: &mut Command) -> Result {
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", crate::sh::show(cmd)))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            crate::sh::show(cmd),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Reads the whole tree once (through a pipe: GNU tar skips reading into /dev/null).
pub(crate) fn warm(tree: &Path) -> Result {
    quiet(Command::new("sh").arg("-c").arg(format!(
        "tar -cf - -C '{}' . | cat > /dev/null; sync",
        tree.display()
    )))
}

/// Below this much free space, [`discard`] empties the trash at once: the
/// disk here fills (and every tool on it fails) before a 3-run pack suite
/// on tree-large is done. Suites that write much make room between rounds
/// ([`make_room`]), so this is the last guard.
const TRASH_ROOM: u64 = 6 << 30;

/// Free bytes on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statvfs.
    match unsafe { libc::statvfs(c.as_ptr(), &mut st) } {
        0 => Some(st.f_bavail as u64 * st.f_frsize as u64),
        _ => None,
    }
}

/// Moves an old target into the trash: deleting 100,000 files right before a
/// timed step slows that step several times on this disk (online discard),
/// so the trash is emptied only when the bench is done, or when the disk
/// runs low (then it settles for a while before the next step).
pub(crate) fn discard(target: &Path) -> Result {
    if !target.exists() {
        return Ok(());
    }
    let trash = target
        .parent()
        .and_then(Path::parent)
        .expect("targets live in <base>/targets/")
        .join("trash");
    fs::create_dir_all(&trash).map_err(|e| e.to_string())?;
    let n = fs::read_dir(&trash).map_err(|e| e.to_string())?.count();
    fs::rename(target, trash.join(n.to_string())).map_err(|e| e.to_string())?;
    make_room(
        trash.parent().expect("the trash is in the base"),
        TRASH_ROOM,
    );
    Ok(())
}

/// Empties the trash when less than `need` bytes are free, then lets the
/// disk settle (trim, and 30 s: deleting much slows the next writes here).
pub(crate) fn make_room(base: &Path, need: u64) {
    if free_bytes(base).is_none_or(|free| free >= need) {
        return;
    }
    eprintln!("xtask: making room on the disk (emptying the trash, then 30 s)");
    empty_trash(base);
    let _ = Command::new("sh")
        .args(["-c", "sync; fstrim -a 2>/dev/null; sync"])
        .status();
    std::thread::sleep(std::time::Duration::from_secs(30));
}

pub(crate) fn empty_trash(base: &Path) {
    let _ = crate::sh::remove_tree(&base.join("trash"));
}

pub(crate) fn disk_use_mib(path: &Path) -> f64 {
    let out = Command::new("du").args(["-s", "-B1"]).arg(path).output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split('\t')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map(|b| b / (1 << 20) as f64)
        .unwrap_or(f64::NAN)
}

#[derive(Default)]
pub(crate) struct Samples {
    pub(crate) wall: Vec<f64>,
    pub(crate) rss: Vec<f64>,
    pub(crate) growth: Vec<f64>,
}

/// Adds one measurement of a tool doing a step on a corpus.
pub(crate) fn add_sample(
    table: &mut Table,
    (corpus, step, tool): (&str, &str, &str),
    wall: f64,
    rss: f64,
    growth: Option<f64>,
) {
    let s = table
        .entry((corpus.into(), step.into(), tool.into()))
        .or_default();
    s.wall.push(wall);
    s.rss.push(rss);
    if let Some(g) = growth {
        s.growth.push(g);
    }
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        f64::NAN
    } else {
        s[s.len() / 2]
    }
}

pub(crate) type Table = BTreeMap<(String, String, String), Samples>;

/// The markdown table of medians and snap's ratio to each tool; `size_label`
/// names the size column (store growth, archive size).
pub(crate) fn render_rows(table: &Table, size_label: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| corpus | scenario | tool | wall s median (min–max) | peak RSS MiB | {size_label} | snap / tool |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for ((corpus, step, tool), s) in table {
        let snap = table.get(&(corpus.clone(), step.clone(), "snap".into()));
        let ratio = match snap {
            Some(sn) if tool != "snap" => format!("{:.2}x", median(&sn.wall) / median(&s.wall)),
            _ => "–".into(),
        };
        let min = s.wall.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = s.wall.iter().cloned().fold(0.0, f64::max);
        let size = if s.growth.is_empty() {
            "–".into()
        } else {
            format!("{:.1}", median(&s.growth))
        };
        let _ = writeln!(
            md,
            "| {corpus} | {step} | {tool} | {:.2} ({min:.2}–{max:.2}) | {:.0} | {size} | {ratio} |",
            median(&s.wall),
            median(&s.rss)
        );
    }
    md
}

/// The first line a program prints for `program ARG` (its version), or "".
pub(crate) fn version(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// Writes a benchmark page `docs/PAGE`: the title, when and on what it was
/// measured (`anchors` adds the versions of a suite's own anchors), the
/// command that produced it, how it was measured, the tables, and then the
/// hand-written notes kept beside it in `docs/PAGE-notes.md`.
pub(crate) fn write_doc(
    page: &str,
    title: &str,
    runs: usize,
    anchors: &str,
    method: &str,
    tables: &str,
) -> Result {
    let cmd = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let docs = root().join("docs");
    let notes = fs::read_to_string(docs.join(page.replace(".md", "-notes.md"))).unwrap_or_default();
    let doc = format!(
        "# {title}\n\nMeasured {} on {}{anchors}.\n\nCommand: `cargo xtask {cmd}` ({runs} runs; medians).\n{method}\n\n{tables}\n{notes}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
    );
    fs::write(docs.join(page), doc).map_err(|e| e.to_string())?;
    eprintln!("xtask: wrote docs/{page}");
    Ok(())
}

pub(crate) fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    format!(
        "{cpu}, {cores} cores, {} GiB; {}; {}; {}; {}",
        mem >> 20,
        version("rsync", "--version"),
        version("restic", "version"),
        version("rustic", "--version"),
        version("borg", "--version")
    )
}

pub(crate) fn bin(name: &str) -> PathBuf {
    root().join("target/release").join(name)
}

/// A moto server for one measurement.
pub(crate) struct Moto {
    child: Child,
    pub(crate) port: u16,
}

impl Moto {
    pub(crate) fn start(scripts: &Path) -> Result<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new(scripts.join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("moto_server: {e}"))?;
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                return Err("moto_server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        write!(
            s,
            "PUT /bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut s, &mut reply).map_err(|e| e.to_string())?;
        Ok(Moto { child, port })
    }

    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AWS_ENDPOINT".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
            ("AWS_ACCESS_KEY_ID".into(), "bench".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "bench".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }

    pub(crate) fn rclone_remote(&self) -> String {
        self.rclone_at("bench/rclone")
    }

    /// rclone's name for a path (`bucket/prefix`) on this server.
    pub(crate) fn rclone_at(&self, path: &str) -> String {
        format!(
            ":s3,provider=Other,env_auth=false,access_key_id=bench,secret_access_key=bench,endpoint='http://127.0.0.1:{}':{path}",
            self.port
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn fresh_dir(p: &Path) -> Result {
    discard(p)?;
    fs::create_dir_all(p).map_err(|e| e.to_string())
}
