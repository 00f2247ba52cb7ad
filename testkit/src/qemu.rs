//! A stand-in for a running VM: qemu-storage-daemon holding an image, with
//! a QMP monitor and a writable NBD export that tests write through (as a
//! guest would), and a `qemu-io` writer fed line by line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// qemu-storage-daemon holding one image; killed when dropped.
pub struct Qsd {
    child: Child,
    _dir: tempfile::TempDir,
    pub qmp: PathBuf,
    /// The socket of its NBD server (the guest's writes go through it).
    pub nbd: PathBuf,
    /// The format node over the image.
    pub node: String,
}

impl Qsd {
    /// Starts the daemon on `image` (`format`: raw or qcow2) and waits for its monitor.
    pub fn start(image: &Path, format: &str) -> Qsd {
        let dir = tempfile::Builder::new()
            .prefix("qsd")
            .tempdir_in("/tmp")
            .unwrap();
        let qmp = dir.path().join("qmp.sock");
        let nbd = dir.path().join("nbd.sock");
        let child = Command::new("qemu-storage-daemon")
            .arg("--blockdev")
            .arg(format!(
                "driver=file,node-name=file0,filename={}",
                image.display()
            ))
            .arg("--blockdev")
            .arg(format!("driver={format},node-name=disk0,file=file0"))
            .arg("--nbd-server")
            .arg(format!("addr.type=unix,addr.path={}", nbd.display()))
            .arg("--export")
            .arg("type=nbd,id=guest,node-name=disk0,name=guest,writable=on")
            .arg("--chardev")
            .arg(format!(
                "socket,path={},server=on,wait=off,id=mon",
                qmp.display()
            ))
            .arg("--monitor")
            .arg("chardev=mon")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("qemu-storage-daemon: {e}; run `cargo xtask test`, which installs it")
            });
        let start = Instant::now();
        while !listening(&qmp) || !nbd.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "qemu-storage-daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Qsd {
            child,
            _dir: dir,
            qmp,
            nbd,
            node: "disk0".into(),
        }
    }

    /// The guest's view of the disk, for qemu-io and qemu-img.
    pub fn url(&self) -> String {
        format!("nbd+unix:///guest?socket={}", self.nbd.display())
    }

    /// Runs one QMP command on a connection of its own; panics when QEMU refuses it.
    pub fn qmp(&self, cmd: &str, args: Value) -> Value {
        self.try_qmp(cmd, args)
            .unwrap_or_else(|e| panic!("QMP {cmd}: {e}"))
    }

    /// Runs one QMP command; QEMU's refusal is the `Err`.
    pub fn try_qmp(&self, cmd: &str, args: Value) -> Result<Value, String> {
        let s = UnixStream::connect(&self.qmp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut rd = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut line = String::new();
        rd.read_line(&mut line).unwrap();
        for (c, a) in [("qmp_capabilities", json!({})), (cmd, args)] {
            writeln!(w, "{}", json!({"execute": c, "arguments": a})).unwrap();
            loop {
                line.clear();
                assert!(rd.read_line(&mut line).unwrap() > 0, "QMP closed");
                let v: Value = serde_json::from_str(&line).unwrap();
                if let Some(r) = v.get("return") {
                    if c == cmd {
                        return Ok(r.clone());
                    }
                    break;
                }
                if let Some(e) = v.get("error") {
                    return Err(e["desc"].as_str().unwrap_or("").to_string());
                }
            }
        }
        unreachable!()
    }

    /// The dirty bitmaps on the disk's node: (name, recording, inconsistent).
    pub fn bitmaps(&self) -> Vec<(String, bool, bool)> {
        let nodes = self.qmp("query-named-block-nodes", json!({"flat": true}));
        let node = nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node-name"] == self.node.as_str())
            .unwrap()
            .clone();
        let flag = |b: &Value, k: &str| b[k].as_bool().unwrap_or(false);
        node["dirty-bitmaps"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|b| {
                let name = b["name"].as_str()?.to_string();
                Some((name, flag(b, "recording"), flag(b, "inconsistent")))
            })
            .collect()
    }

    /// Names of every node, export and job QEMU has (what a snapshot must not leave behind).
    pub fn inventory(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (cmd, key) in [
            ("query-named-block-nodes", "node-name"),
            ("query-block-exports", "id"),
            ("query-block-jobs", "device"),
        ] {
            let list = self.qmp(cmd, json!({}));
            for v in list.as_array().unwrap() {
                if let Some(n) = v[key].as_str() {
                    out.push(n.to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// Writes `len` bytes of `pattern` at `offset` as the guest would.
    pub fn write(&self, offset: u64, len: u64, pattern: u8) {
        let out = Command::new("qemu-io")
            .args(["-f", "raw", &self.url(), "-c"])
            .arg(format!("write -P {pattern} {offset} {len}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "qemu-io: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A qemu-io process taking one command a line, through the guest's export.
    pub fn writer(&self) -> Writer {
        let child = Command::new("qemu-io")
            .args(["-f", "raw", &self.url()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Writer { child }
    }

    /// The daemon dies as a VM does when the host loses power or the OOM killer strikes.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Shuts the daemon down cleanly (persistent bitmaps are saved in a qcow2).
    pub fn stop(mut self) {
        send_signal(self.child.id(), "TERM");
        self.child.wait().unwrap();
    }
}

/// `kill -SIG PID`.
pub fn send_signal(pid: u32, sig: &str) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

impl Drop for Qsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A qemu-io process fed commands on its stdin; ended when dropped.
pub struct Writer {
    child: Child,
}

impl Writer {
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().unwrap()
    }

    /// Closes stdin and waits for qemu-io to finish the commands it was sent.
    pub fn finish(mut self) {
        drop(self.child.stdin.take());
        self.child.wait().unwrap();
    }

    /// Stops qemu-io at once, dropping the commands it has not run.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A fake qemu-guest-agent: answers guest-sync, freeze and thaw, logs them,
/// and holds its answer to a freeze for `freeze_delay`.
pub struct FakeAgent {
    pub path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeAgent {
    pub fn start(dir: &Path, freeze_delay: Duration) -> FakeAgent {
        let path = dir.join("qga.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let log = l2.clone();
                std::thread::spawn(move || serve_agent(conn, &log, freeze_delay));
            }
        });
        FakeAgent { path, log }
    }

    /// The freezes and thaws so far, in order.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn serve_agent(conn: std::os::unix::net::UnixStream, log: &Mutex<Vec<String>>, delay: Duration) {
    let mut w = conn.try_clone().unwrap();
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let v: Value = serde_json::from_str(&line).unwrap();
        let cmd = v["execute"].as_str().unwrap_or("").to_string();
        let reply = match cmd.as_str() {
            "guest-sync" => json!({"return": v["arguments"]["id"]}),
            "guest-fsfreeze-freeze" => {
                log.lock().unwrap().push("freeze".into());
                std::thread::sleep(delay);
                json!({"return": 2})
            }
            "guest-fsfreeze-thaw" => {
                log.lock().unwrap().push("thaw".into());
                json!({"return": 2})
            }
            _ => json!({"error": {"class": "CommandNotFound", "desc": "no"}}),
        };
        if writeln!(w, "{reply}").is_err() {
            return;
        }
    }
}

/// Whether the unix socket at `path` listens, from /proc/net/unix: probing
/// the monitor by connecting would take its one client slot for a moment,
/// and the tool under test could connect into that moment (snap-disk's own
/// daemon.rs waits the same way, for the same reason).
pub(crate) fn listening(path: &std::path::Path) -> bool {
    let want = path.to_string_lossy();
    std::fs::read_to_string("/proc/net/unix").is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 8
                && f[7..].join(" ") == want
                && u32::from_str_radix(f[3], 16).is_ok_and(|x| x & 0x0001_0000 != 0)
        })
    })
}

/// The byte at `offset` of a file.
pub fn byte_at(path: &Path, offset: u64) -> u8 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    b[0]
}

/// The test writers' rule: they write a counter to a low block, then to a
/// high one, so a state the disk had holds in the low block the high
/// block's counter or the next one (mod 256).
pub fn consistent(low: u8, high: u8) -> bool {
    low == high || low == high.wrapping_add(1)
}
