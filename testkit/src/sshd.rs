//! An OpenSSH server on a free loopback port, for the SFTP destination's
//! tests: its own host key, a user key made for the test, and a
//! known_hosts file that trusts the host key; stopped (with every session)
//! when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd; panics naming the installer if it is missing.
    pub fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = crate::net::free_port();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let mut fields = host_pub.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n\
                 Subsystem sftp {sftp}\nLogLevel ERROR\n",
                dir = d.display(),
                sftp = sftp_server().display(),
            ),
        )
        .unwrap();
        // sshd wants its privilege separation folder.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut sshd = Sshd {
            child: None,
            port,
            dir,
        };
        sshd.run();
        sshd
    }

    fn run(&mut self) {
        let config = self.dir.path().join("sshd_config");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("/usr/sbin/sshd: {e}; run `cargo xtask test`, which installs openssh-server")
            });
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "sshd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// The folder holding the keys and config (not the destination).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `sftp://127.0.0.1:PORT{path}` (`path` absolute, or `/~/…`).
    pub fn url(&self, path: &str) -> String {
        format!("sftp://127.0.0.1:{}{path}", self.port)
    }

    /// The ssh command line that reaches this server with the test's key and
    /// known_hosts, and no one's ~/.ssh/config.
    pub fn ssh_command(&self) -> String {
        self.ssh_command_with(&self.dir.path().join("known_hosts"))
    }

    /// The same, trusting the host keys in `known_hosts` instead.
    pub fn ssh_command_with(&self, known_hosts: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null",
            self.dir.path().join("client_key").display(),
            known_hosts.display()
        )
    }

    /// `SNAP_SSH_COMMAND` for the tools.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("SNAP_SSH_COMMAND".to_string(), self.ssh_command())]
    }

    /// Kills sshd and every session it serves (kill -9), as a server that
    /// loses power; `restart` brings it back on the same port and keys.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            for pid in descendants(child.id()) {
                kill9(pid);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("ssh-keygen: {e}; run `cargo xtask test`, which installs it"));
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Debian's sftp-server (the real one, with fsync and hardlink).
fn sftp_server() -> PathBuf {
    [
        "/usr/lib/openssh/sftp-server",
        "/usr/libexec/openssh/sftp-server",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("sftp-server: run `cargo xtask test`, which installs openssh-server")
}

/// Every process below `pid`, deepest first (sshd's sessions call setsid,
/// so a process group would not reach them).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // The parent is the 2nd field after the command in parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, after)| after.split_whitespace().nth(1))
                .and_then(|x| x.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p {
                frontier.push(child);
                out.push(child);
            }
        }
    }
    out.reverse();
    out
}

fn kill9(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}
