//! Talking to a running QEMU: its QMP monitor, and the guest agent inside the VM.
//!
//! Both speak JSON objects over a unix socket: `{"execute": CMD, "arguments":
//! …}` answered by `{"return": …}` or `{"error": {"class", "desc"}}`. QMP also
//! sends a greeting and asynchronous events, which are kept for `wait_event`.
//! Every read has a timeout, so a QEMU that stops answering fails the
//! snapshot instead of hanging it.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What went wrong with one command.
#[derive(Debug)]
pub enum QmpError {
    /// The socket failed or said something that is not QMP.
    Io(io::Error),
    /// QEMU refused the command.
    Refused { class: String, desc: String },
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpError::Io(e) => write!(f, "{e}"),
            QmpError::Refused { desc, .. } => write!(f, "{desc}"),
        }
    }
}

impl From<io::Error> for QmpError {
    fn from(e: io::Error) -> Self {
        QmpError::Io(e)
    }
}

pub type QResult<T> = std::result::Result<T, QmpError>;

/// A JSON-object-per-message channel on a unix socket.
struct Channel {
    rd: BufReader<UnixStream>,
    wr: UnixStream,
}

impl Channel {
    fn connect(path: &Path, timeout: Duration) -> io::Result<Channel> {
        let sock = UnixStream::connect(path)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        Ok(Channel {
            rd: BufReader::new(sock.try_clone()?),
            wr: sock,
        })
    }

    fn send(&mut self, msg: &Value) -> io::Result<()> {
        let mut line = serde_json::to_vec(msg)?;
        line.push(b'\n');
        self.wr.write_all(&line)
    }

    /// The next JSON object (QEMU writes one per line).
    fn recv(&mut self) -> io::Result<Value> {
        loop {
            let mut line = String::new();
            if self.rd.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the socket was closed",
                ));
            }
            // The guest agent answers guest-sync-delimited with 0xFF first.
            let text = line.trim_matches(|c: char| c.is_whitespace() || c == '\u{FFFD}');
            if text.is_empty() {
                continue;
            }
            return serde_json::from_str(text)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not JSON: {e}")));
        }
    }
}

/// The answer to one command: its return value, or QEMU's refusal.
fn outcome(v: &Value) -> Option<QResult<Value>> {
    if let Some(r) = v.get("return") {
        return Some(Ok(r.clone()));
    }
    let e = v.get("error")?;
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Some(Err(QmpError::Refused {
        class: s("class"),
        desc: s("desc"),
    }))
}

/// A QMP monitor connection.
pub struct Qmp {
    ch: Channel,
    events: VecDeque<Value>,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation.
    pub fn connect(path: &Path) -> QResult<Qmp> {
        let mut ch = Channel::connect(path, READ_TIMEOUT)?;
        let greeting = ch.recv()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a QMP monitor (no greeting)",
            )));
        }
        let mut q = Qmp {
            ch,
            events: VecDeque::new(),
        };
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    /// The pid of the process at the other end (QEMU), if the kernel tells it.
    pub fn peer_pid(&self) -> Option<i32> {
        let cred = rustix::net::sockopt::socket_peercred(&self.ch.wr).ok()?;
        Some(cred.pid.as_raw_nonzero().get())
    }

    /// Runs one command and returns its `return` value.
    pub fn execute(&mut self, cmd: &str, args: Value) -> QResult<Value> {
        let msg = match args.as_object().is_some_and(|o| o.is_empty()) {
            true => json!({ "execute": cmd }),
            false => json!({ "execute": cmd, "arguments": args }),
        };
        self.ch.send(&msg)?;
        loop {
            let v = self.ch.recv()?;
            if v.get("event").is_some() {
                if self.events.len() < MAX_KEPT_EVENTS {
                    self.events.push_back(v);
                }
                continue;
            }
            if let Some(out) = outcome(&v) {
                return out;
            }
        }
    }

    /// Waits until an event named `name` whose data passes `matches` arrives.
    pub fn wait_event(
        &mut self,
        name: &str,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> QResult<Value> {
        let hit = |v: &Value| {
            v.get("event").and_then(Value::as_str) == Some(name)
                && matches(v.get("data").unwrap_or(&Value::Null))
        };
        if let Some(i) = self.events.iter().position(hit) {
            return Ok(self.events.remove(i).unwrap());
        }
        let until = Instant::now() + timeout;
        let timed_out = || {
            QmpError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no {name} event in {} s", timeout.as_secs()),
            ))
        };
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            // A read waits no longer than the event may take.
            self.ch.wr.set_read_timeout(Some(left.min(READ_TIMEOUT)))?;
            let got = self.ch.recv();
            self.ch.wr.set_read_timeout(Some(READ_TIMEOUT))?;
            let v = match got {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out());
                }
                other => other?,
            };
            if hit(&v) {
                return Ok(v);
            }
            if v.get("event").is_some() && self.events.len() < MAX_KEPT_EVENTS {
                self.events.push_back(v);
            }
        }
    }

    /// Takes every event named `name` received so far, oldest first.
    pub fn take_events(&mut self, name: &str) -> Vec<Value> {
        let (hit, rest) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|v| v.get("event").and_then(Value::as_str) == Some(name));
        self.events = rest;
        hit.into()
    }
}

/// How long one answer from QEMU may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Events kept for a later `wait_event` or `take_events`; a QEMU that floods
/// its monitor does not fill the memory.
const MAX_KEPT_EVENTS: usize = 4096;

/// When QEMU says an event happened: its `timestamp`, in microseconds.
pub fn event_micros(v: &Value) -> Option<u64> {
    let t = v.get("timestamp")?;
    Some(t.get("seconds")?.as_u64()? * 1_000_000 + t.get("microseconds")?.as_u64()?)
}

/// A qemu-guest-agent connection (virtio-serial in the guest, a unix socket on the host).
pub struct Agent {
    ch: Channel,
}

impl Agent {
    /// Connects and synchronizes: a stale answer left from an earlier client is skipped.
    pub fn connect(path: &Path, timeout: Duration) -> QResult<Agent> {
        let mut a = Agent {
            ch: Channel::connect(path, timeout)?,
        };
        let id = u64::from(std::process::id()) << 20 | u64::from(rand_u16());
        a.ch.send(&json!({"execute": "guest-sync", "arguments": {"id": id}}))?;
        loop {
            let v = a.ch.recv()?;
            if v.get("return").and_then(Value::as_u64) == Some(id) {
                return Ok(a);
            }
        }
    }

    /// Runs one guest-agent command.
    pub fn execute(&mut self, cmd: &str) -> QResult<Value> {
        self.ch.send(&json!({ "execute": cmd }))?;
        loop {
            if let Some(out) = outcome(&self.ch.recv()?) {
                return out;
            }
        }
    }
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() >> 8) as u16
}
