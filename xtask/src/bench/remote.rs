//! The SFTP and rclone rows of `cargo xtask bench --suites push`: the same
//! 1 GiB archive pushed by snap-push and by the anchors, in one run:
//!
//! - to Debian's sshd on loopback (started here with its own keys), by
//!   `snap-push` (sftp://), `scp`, `sftp` (a batch `put`) and `rclone copy`
//!   to an on-the-fly `:sftp` remote of the same server;
//! - through rclone remotes, by `snap-push` (rclone:) and `rclone copy`: a
//!   `local` remote on the same disk, and a `webdav` remote served by
//!   `rclone serve webdav` (restarted on an empty folder for each push);
//! - the resume share over SFTP: a push killed at half its parts, rerun.
//!
//! snap-push flushes each part over SFTP (fsync@openssh.com) and hashes
//! every byte it sends; scp, sftp and rclone do neither, so "scp+sync" (scp,
//! then `sync -f` of the folder on the server) is measured as well, and
//! the same-work anchors "scp+sha256+sync" and "rclone+sha256", which run
//! `openssl dgst -sha256` of the archive (SHA-NI, as fast as snap's hash)
//! alongside: on two cores shared by client and server, the hash's CPU is
//! taken from the transfer.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::kit::fresh_dir;
use super::kit::{Table, measure, quiet};
use super::pushing::snap_push;
use crate::sh::Result;

/// sshd on a free loopback port with keys made here.
pub(crate) struct Sshd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port())
}

fn wait_for(port: u16, what: &str) -> Result {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("{what} did not start"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl Sshd {
    pub(crate) fn start(dir: &Path) -> Result<Sshd> {
        fresh_dir(dir)?;
        for key in ["host_key", "client_key"] {
            quiet(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(dir.join(key)),
            )?;
        }
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .map_err(|e| e.to_string())?;
        let port = free_port()?;
        let host = fs::read_to_string(dir.join("host_key.pub")).map_err(|e| e.to_string())?;
        let host: Vec<&str> = host.split_whitespace().take(2).collect();
        let write =
            |name: &str, text: String| fs::write(dir.join(name), text).map_err(|e| e.to_string());
        write(
            "known_hosts",
            format!("[127.0.0.1]:{port} {} {}\n", host[0], host[1]),
        )?;
        write(
            "sshd_config",
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n\
                 Subsystem sftp /usr/lib/openssh/sftp-server\nLogLevel ERROR\n",
                d = dir.display()
            ),
        )?;
        let _ = fs::create_dir_all("/run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("/usr/sbin/sshd: {e}"))?;
        wait_for(port, "sshd")?;
        Ok(Sshd {
            child,
            port,
            dir: dir.to_path_buf(),
        })
    }

    /// The ssh options every client here uses (this server's key, no user config).
    fn ssh_options(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.dir.join("client_key").display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!(
                "UserKnownHostsFile={}",
                self.dir.join("known_hosts").display()
            ),
        ]
    }

    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![(
            "SNAP_SSH_COMMAND".into(),
            format!("ssh {}", self.ssh_options().join(" ")),
        )]
    }

    fn url(&self, folder: &Path) -> String {
        format!("sftp://127.0.0.1:{}{}", self.port, folder.display())
    }

    fn rclone_remote(&self, folder: &Path) -> String {
        format!(
            ":sftp,host=127.0.0.1,port={},key_file='{}',known_hosts_file='{}':{}",
            self.port,
            self.dir.join("client_key").display(),
            self.dir.join("known_hosts").display(),
            folder.display()
        )
    }

    fn ssh(&self, remote_cmd: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_options())
            .args(["-p", &self.port.to_string(), "127.0.0.1", remote_cmd]);
        c
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rclone serve webdav` of an empty folder, for one push.
struct Webdav {
    child: Child,
    port: u16,
}

impl Webdav {
    fn start(root: &Path) -> Result<Webdav> {
        fresh_dir(root)?;
        let port = free_port()?;
        let child = Command::new("rclone")
            .args(["serve", "webdav", "--addr", &format!("127.0.0.1:{port}")])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("rclone serve webdav: {e}"))?;
        wait_for(port, "rclone serve webdav")?;
        Ok(Webdav { child, port })
    }
}

impl Drop for Webdav {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One round of the SFTP and rclone rows (tools in an order that turns with `run`).
/// `openssl dgst -sha256` of `data`, started now: the hash every snap push
/// does, for the same-work anchors.
fn sha256_alongside(data: &Path) -> Result<Child> {
    Command::new("openssl")
        .args(["dgst", "-sha256"])
        .arg(data)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("openssl: {e}"))
}

/// Waits for a helper started alongside; it must succeed.
fn finish(mut child: Child, what: &str) -> Result {
    match child.wait() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what}: {s}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

pub(crate) fn measure_round(
    run: usize,
    base: &Path,
    json: &Path,
    data: &Path,
    table: &mut Table,
    add: &dyn Fn(&mut Table, &str, &str, f64, f64),
) -> Result {
    let sshd = Sshd::start(&base.join("push-sshd"))?;
    let dest = base.join("push-sftp-dest");
    let state = base.join("push-state");
    let tools = [
        "snap",
        "scp",
        "scp+sync",
        "scp+sha256+sync",
        "sftp",
        "rclone",
    ];
    for k in 0..tools.len() {
        let tool = tools[(k + run) % tools.len()];
        fresh_dir(&dest)?;
        fresh_dir(&state)?;
        quiet(&mut Command::new("sync"))?;
        let opts = sshd.ssh_options();
        let port = sshd.port.to_string();
        let target = format!("127.0.0.1:{}/", dest.display());
        let scp = || {
            let mut c = Command::new("scp");
            c.arg("-q")
                .args(&opts)
                .args(["-P", &port])
                .arg(data)
                .arg(&target);
            c
        };
        let (wall, rss) = match tool {
            "snap" => measure(&mut snap_push(json, &sshd.url(&dest), &state, &sshd.env()))?,
            "scp" => measure(&mut scp())?,
            "scp+sync" | "scp+sha256+sync" => {
                let start = Instant::now();
                let hash = (tool == "scp+sha256+sync")
                    .then(|| sha256_alongside(data))
                    .transpose()?;
                quiet(&mut scp())?;
                quiet(&mut sshd.ssh(&format!("sync -f '{}'", dest.display())))?;
                if let Some(h) = hash {
                    finish(h, "openssl")?;
                }
                (start.elapsed().as_secs_f64(), 0.0)
            }
            "sftp" => {
                let batch = base.join("push-sftp-batch");
                fs::write(
                    &batch,
                    format!("put '{}' '{}/'\n", data.display(), dest.display()),
                )
                .map_err(|e| e.to_string())?;
                measure(
                    Command::new("sftp")
                        .args(&opts)
                        .args(["-P", &port, "-b"])
                        .arg(&batch)
                        .arg("127.0.0.1"),
                )?
            }
            _ => measure(
                Command::new("rclone")
                    .arg("copy")
                    .arg(data)
                    .arg(sshd.rclone_remote(&dest)),
            )?,
        };
        add(table, "push-sftp", tool, wall, rss);
    }
    drop(sshd);

    let config = base.join("push-rclone.conf");
    let local = base.join("push-rclone-dest");
    let dav_root = base.join("push-dav-root");
    let rows = [
        ("local", "snap"),
        ("local", "rclone"),
        ("local", "rclone+sha256"),
        ("webdav", "snap"),
        ("webdav", "rclone"),
        ("webdav", "rclone+sha256"),
    ];
    for k in 0..rows.len() {
        let (remote, tool) = rows[(k + run) % rows.len()];
        fresh_dir(&local)?;
        fresh_dir(&state)?;
        quiet(&mut Command::new("sync"))?;
        let dav = match remote {
            "webdav" => Some(Webdav::start(&dav_root)?),
            _ => None,
        };
        let mut conf = "[loc]\ntype = local\n".to_string();
        if let Some(d) = &dav {
            conf.push_str(&format!(
                "\n[dav]\ntype = webdav\nurl = http://127.0.0.1:{}\nvendor = other\n",
                d.port
            ));
        }
        fs::write(&config, conf).map_err(|e| e.to_string())?;
        let env = vec![("RCLONE_CONFIG".to_string(), config.display().to_string())];
        let target = match remote {
            "local" => format!("loc:{}", local.display()),
            _ => "dav:bench".to_string(),
        };
        let (wall, rss) = match tool {
            "snap" => measure(&mut snap_push(
                json,
                &format!("rclone:{target}"),
                &state,
                &env,
            ))?,
            "rclone" => measure(
                Command::new("rclone")
                    .envs(env.iter().cloned())
                    .arg("copy")
                    .arg(data)
                    .arg(&target),
            )?,
            _ => {
                let start = Instant::now();
                let hash = sha256_alongside(data)?;
                quiet(
                    Command::new("rclone")
                        .envs(env.iter().cloned())
                        .arg("copy")
                        .arg(data)
                        .arg(&target),
                )?;
                finish(hash, "openssl")?;
                (start.elapsed().as_secs_f64(), 0.0)
            }
        };
        add(table, &format!("push-rclone-{remote}"), tool, wall, rss);
        drop(dav);
    }
    super::kit::discard(&local)?;
    super::kit::discard(&dav_root)?;
    super::kit::discard(&dest)?;
    Ok(())
}

/// The resume share over SFTP: (rerun's share of the archive, share there at the kill).
pub(crate) fn sftp_resume(base: &Path, json: &Path, size: u64) -> Result<(f64, f64)> {
    let sshd = Sshd::start(&base.join("push-sshd"))?;
    let dest = base.join("push-sftp-dest");
    let state = base.join("push-state");
    fresh_dir(&dest)?;
    fresh_dir(&state)?;
    let got = super::pushing::resume_share(json, &sshd.url(&dest), &state, &sshd.env(), size);
    super::kit::discard(&dest)?;
    got
}
