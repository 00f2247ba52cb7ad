//! A running VM for snap-disk's tests: qemu-system-x86_64 under TCG (no
//! KVM), with no guest OS. Firmware, RAM and devices are real, so `savevm`
//! saves and `loadvm` loads them; the "guest" writes to its disk through the
//! monitor (`qemu-io` in HMP). It has two QMP monitors, since each takes one
//! client: `qmp` for the tool under test, `test` for the test itself.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How the VM is set up.
#[derive(Default)]
pub struct VmOptions {
    /// RAM filled with noise (MiB), so a save has that much to write and
    /// takes a while; else 64 MiB of mostly zeros, saved in milliseconds.
    pub noisy_ram_mib: Option<u64>,
    /// A blkdebug node between the image's format and file nodes, with
    /// these `inject-error.N.*` options (e.g. `vmstate_save` failing once).
    pub blkdebug: Vec<(&'static str, &'static str)>,
}

/// qemu-system-x86_64 running one qcow2 image as node `disk0`; killed when dropped.
pub struct TestVm {
    child: Child,
    _dir: tempfile::TempDir,
    /// The monitor the tool under test is given.
    pub qmp: PathBuf,
    /// The test's own monitor, held open for every command (a chardev
    /// takes one client: connecting anew for each command raced QEMU's
    /// noticing the last one had gone, and got a broken pipe under load).
    pub test: PathBuf,
    /// A third monitor, for a test that waits for events on its own.
    pub watch: PathBuf,
    conn: std::sync::Mutex<Option<Monitor>>,
    /// QEMU's stderr.
    pub log: PathBuf,
}

/// The format node over the image.
pub const NODE: &str = "disk0";

impl TestVm {
    pub fn start(image: &Path) -> TestVm {
        Self::start_with(image, VmOptions::default())
    }

    pub fn start_with(image: &Path, opts: VmOptions) -> TestVm {
        let dir = tempfile::Builder::new()
            .prefix("vm")
            .tempdir_in("/tmp")
            .unwrap();
        let qmp = dir.path().join("qmp.sock");
        let test = dir.path().join("test.sock");
        let watch = dir.path().join("watch.sock");
        let log = dir.path().join("qemu.log");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-nodefaults", "-display", "none", "-no-user-config"]);
        match opts.noisy_ram_mib {
            Some(mib) => {
                // Written a MiB at a time: the caller's memory stays small
                // (a benchmark measures its children's peak RSS, which a
                // spawned child inherits from its parent until it execs).
                let ram = dir.path().join("ram");
                let mut f = std::io::BufWriter::new(fs::File::create(&ram).unwrap());
                for chunk in 0..mib {
                    let noise: Vec<u8> = (chunk << 20..(chunk + 1) << 20)
                        .map(|i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
                        .collect();
                    f.write_all(&noise).unwrap();
                }
                f.flush().unwrap();
                cmd.args(["-machine", "q35,accel=tcg,memory-backend=mem"])
                    .args(["-m", &format!("{mib}")])
                    .arg("-object")
                    .arg(format!(
                        "memory-backend-file,id=mem,size={mib}M,mem-path={},share=off",
                        ram.display()
                    ));
            }
            None => {
                cmd.args(["-machine", "q35,accel=tcg", "-m", "64"]);
            }
        }
        for sock in [&qmp, &test, &watch] {
            cmd.arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", sock.display()));
        }
        cmd.arg("-blockdev").arg(format!(
            "driver=file,node-name=file0,filename={}",
            image.display()
        ));
        let mut under = "file0";
        if !opts.blkdebug.is_empty() {
            let mut spec = "driver=blkdebug,node-name=debug0,image=file0".to_string();
            for (k, v) in &opts.blkdebug {
                spec.push_str(&format!(",inject-error.{k}={v}"));
            }
            cmd.arg("-blockdev").arg(spec);
            under = "debug0";
        }
        cmd.arg("-blockdev")
            .arg(format!("driver=qcow2,node-name={NODE},file={under}"))
            .arg("-device")
            .arg(format!("virtio-blk-pci,drive={NODE},share-rw=on"));
        let child = cmd
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("qemu-system-x86_64: {e}; run `cargo xtask test`, which installs it")
            });
        let start = Instant::now();
        while ![&qmp, &test, &watch]
            .iter()
            .all(|s| crate::qemu::listening(s))
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "qemu-system-x86_64 did not start: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        TestVm {
            child,
            _dir: dir,
            qmp,
            test,
            watch,
            log,
            conn: std::sync::Mutex::new(None),
        }
    }

    /// The process id, to tell which QEMU holds an image.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs one QMP command on the test's monitor; panics when QEMU refuses it.
    pub fn qmp(&self, cmd: &str, args: Value) -> Value {
        self.with_monitor(|m| m.run(cmd, args))
            .unwrap_or_else(|e| panic!("QMP {cmd}: {e}"))
    }

    /// Runs `f` on the test's monitor, connected once.
    fn with_monitor<T>(&self, f: impl FnOnce(&mut Monitor) -> T) -> T {
        let mut conn = self.conn.lock().unwrap();
        f(conn.get_or_insert_with(|| Monitor::connect(&self.test)))
    }

    /// Runs one HMP command line (`savevm NAME`, `qemu-io …`) and returns its output.
    pub fn hmp(&self, line: &str) -> String {
        let out = self.qmp("human-monitor-command", json!({"command-line": line}));
        out.as_str().unwrap_or("").to_string()
    }

    /// Writes `len` bytes of `pattern` at `offset` of the disk, as the guest
    /// would (HMP's qemu-io prints on QEMU's stdout, not the monitor: the
    /// write is read back to be sure).
    pub fn write(&self, offset: u64, len: u64, pattern: u8) {
        self.hmp(&format!(
            "qemu-io {NODE} \"write -P {pattern} {offset} {len}\""
        ));
        assert!(
            self.holds(offset, len, pattern),
            "qemu-io write {pattern} at {offset}"
        );
    }

    /// Whether the disk holds `pattern` in `len` bytes at `offset`, as the
    /// guest sees it: read through a read-only NBD export of the node, which
    /// is taken down again after.
    pub fn holds(&self, offset: u64, len: u64, pattern: u8) -> bool {
        let sock = self._dir.path().join("read.nbd");
        if !sock.exists() {
            self.qmp(
                "nbd-server-start",
                json!({"addr": {"type": "unix", "data": {"path": sock}}}),
            );
        }
        let id = "test-read";
        self.qmp(
            "block-export-add",
            json!({"type": "nbd", "id": id, "node-name": NODE, "name": id, "writable": false}),
        );
        let out = Command::new("qemu-io")
            .args(["-r", "-f", "raw", "-c"])
            .arg(format!("read -P {pattern} {offset} {len}"))
            .arg(format!("nbd+unix:///{id}?socket={}", sock.display()))
            .output()
            .unwrap();
        self.with_monitor(|m| {
            m.run("block-export-del", json!({"id": id})).unwrap();
            m.wait_event("BLOCK_EXPORT_DELETED", |d| d["id"] == id);
        });
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("read"),
            "qemu-io: {text}"
        );
        !text.contains("Pattern verification failed")
    }

    /// `query-status`'s status: running, paused, restore-vm, …
    pub fn status(&self) -> String {
        self.qmp("query-status", json!({}))["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The internal snapshots QEMU sees on the disk: (tag, VM state size, VM clock ns).
    pub fn snapshots(&self) -> Vec<(String, u64, u64)> {
        let nodes = self.qmp("query-named-block-nodes", json!({"flat": true}));
        let node = nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node-name"] == NODE)
            .unwrap();
        node["image"]["snapshots"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let n = |k: &str| s[k].as_u64().unwrap_or(0);
                (
                    s["name"].as_str().unwrap().to_string(),
                    n("vm-state-size"),
                    n("vm-clock-sec") * 1_000_000_000 + n("vm-clock-nsec"),
                )
            })
            .collect()
    }

    /// The jobs QEMU has: (id, status).
    pub fn jobs(&self) -> Vec<(String, String)> {
        let jobs = self.qmp("query-jobs", json!({}));
        jobs.as_array()
            .unwrap()
            .iter()
            .map(|j| {
                let s = |k: &str| j[k].as_str().unwrap_or("").to_string();
                (s("id"), s("status"))
            })
            .collect()
    }

    /// A monitor of the test's own, held open (to wait for events).
    pub fn monitor(&self) -> Monitor {
        Monitor::connect(&self.watch)
    }

    /// Quits QEMU cleanly (the image is closed and flushed), and waits. When
    /// the monitor cannot take `quit` (QEMU closed it: a broken pipe in CI
    /// once), SIGTERM asks QEMU for the same clean shutdown.
    pub fn quit(mut self) {
        if self.with_monitor(|m| m.run("quit", json!({}))).is_err() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "QEMU did not quit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A QMP connection of the test's.
pub struct Monitor {
    rd: BufReader<UnixStream>,
    wr: UnixStream,
    /// Events that came while a command waited for its answer.
    events: Vec<Value>,
}

impl Monitor {
    pub fn connect(path: &Path) -> Monitor {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut m = Monitor {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
            events: Vec::new(),
        };
        m.next();
        m.run("qmp_capabilities", json!({})).unwrap();
        m
    }

    fn next(&mut self) -> Value {
        let mut line = String::new();
        assert!(self.rd.read_line(&mut line).unwrap() > 0, "QMP closed");
        serde_json::from_str(&line).unwrap()
    }

    /// Runs a command: its return value, or QEMU's error text.
    pub fn run(&mut self, cmd: &str, args: Value) -> Result<Value, String> {
        writeln!(self.wr, "{}", json!({"execute": cmd, "arguments": args}))
            .map_err(|e| format!("the monitor is closed: {e}"))?;
        loop {
            let v = self.next();
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(e["desc"].as_str().unwrap_or("").to_string());
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Waits for an event `name` whose data passes `matches`; returns the
    /// whole event (its `data`, and its `timestamp` as QEMU gave it).
    pub fn wait_event(&mut self, name: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let hit = |v: &Value| v["event"] == name && matches(&v["data"]);
        if let Some(i) = self.events.iter().position(hit) {
            return self.events.remove(i);
        }
        loop {
            let v = self.next();
            if hit(&v) {
                return v;
            }
        }
    }

    /// Forgets the events received so far.
    pub fn clear_events(&mut self) {
        self.events.clear();
    }
}

/// When QEMU says an event happened, in microseconds.
pub fn event_micros(v: &Value) -> u64 {
    let t = &v["timestamp"];
    t["seconds"].as_u64().unwrap_or(0) * 1_000_000 + t["microseconds"].as_u64().unwrap_or(0)
}

impl Monitor {
    /// How long the guest was paused by the command that just ran: QEMU's
    /// STOP to RESUME events, in milliseconds.
    pub fn paused_ms(&mut self) -> f64 {
        let stop = event_micros(&self.wait_event("STOP", |_| true));
        let resume = event_micros(&self.wait_event("RESUME", |_| true));
        resume.saturating_sub(stop) as f64 / 1000.0
    }
}
