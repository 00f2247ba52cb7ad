//! The `rclone rcd` a destination is served by: started on a loopback port
//! with a password made here, under a watchdog that stops it when this
//! process dies, and stopped when the destination is dropped.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::runtime::Runtime;

use snap_shared::error::{Error, Exit, Result};

use super::Rclone;
use crate::settings::DestSpec;

/// How long rclone may take to start serving.
const START: Duration = Duration::from_secs(60);

/// Runs rclone (`"$@"`) until this process closes the shell's stdin, which
/// the kernel does when the process dies, kill -9 included: unlike `rclone
/// serve sftp --stdio`, `rclone rcd` reads no stdin, and would otherwise
/// outlive a killed push and finish its upload alone. The shell exits with
/// rclone's status when rclone stops by itself.
const WATCHDOG: &str = "exec 3<&0
\"$@\" </dev/null 3<&- &
c=$!
(read -r _ <&3; kill \"$c\" 2>/dev/null) &
wait \"$c\"";

impl Drop for Rclone {
    fn drop(&mut self) {
        drop(self.stop.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.wait();
    }
}

impl Rclone {
    /// Starts `rclone rcd` and checks that the remote can be listed. An
    /// unknown remote or option is exit 78; an unreachable provider 75.
    pub(crate) fn connect(spec: &DestSpec, target: &str, rt: &Arc<Runtime>) -> Result<Rclone> {
        let ctx = format!("destination {}", spec.name);
        spec.only_option("rclone_command")?;
        let base = spec.command_words("rclone_command", "SNAP_RCLONE_COMMAND", "rclone")?;
        let token = snap_shared::hash::random_token;
        let (user, pass) = (token()?, token()?);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", WATCHDOG, "snap-rclone"])
            .args(&base)
            .args(["rcd", "--rc-addr", "127.0.0.1:0", "--rc-serve"])
            // Given by the environment, so that `ps` does not show them.
            .env("RCLONE_RC_USER", &user)
            .env("RCLONE_RC_PASS", &pass)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            Error::new(
                Exit::Unavailable,
                &ctx,
                format!("cannot run {}: {e}", base[0]),
            )
            .with_hint("install rclone, or set rclone_command in the destination's options")
        })?;
        let stop = child.stdin.take();
        let said = Arc::new(Mutex::new(String::new()));
        let port = wait_for_port(&mut child, &said, &ctx)?;
        let scratch = tempfile::Builder::new()
            .prefix("snap-rclone-")
            .tempdir()
            .map_err(|e| Error::io(&std::env::temp_dir(), e))?;
        let rclone = Rclone {
            child: Mutex::new(child),
            stop: Mutex::new(stop),
            said,
            base: format!("http://127.0.0.1:{port}/"),
            user,
            pass,
            fs: target.to_string(),
            url: spec.location.url(),
            client: reqwest::Client::new(),
            rt: rt.clone(),
            scratch,
        };
        rclone.check_remote(&ctx)?;
        Ok(rclone)
    }

    /// Lists the root: the first call that reaches the provider, so a bad
    /// remote or an unreachable provider says so here, once.
    fn check_remote(&self, ctx: &str) -> Result<()> {
        match self.call("operations/list", json!({"fs": self.fs, "remote": ""})) {
            Ok(_) => Ok(()),
            Err(f) if f.is_missing() => Ok(()),
            Err(f) if f.said.contains("didn't find section in config file") => Err(Error::config(
                ctx.to_string(),
                format!("rclone has no such remote: {}", f.said),
            )
            .with_hint("run `rclone config` to make it, or check RCLONE_CONFIG")),
            Err(f) if f.status == 500 && f.said.contains("couldn't find backend") => {
                Err(Error::config(ctx.to_string(), f.said))
            }
            Err(f) => Err(Error::new(
                Exit::TempFail,
                ctx.to_string(),
                format!("cannot reach it: {}", f.said),
            )
            .with_hint("check the provider and `rclone lsd REMOTE:`, then run again")),
        }
    }
}

/// Reads rclone's stderr until it says where it serves; then keeps reading
/// it (the last lines are kept for messages) so rclone never blocks on it.
fn wait_for_port(child: &mut Child, said: &Arc<Mutex<String>>, ctx: &str) -> Result<u16> {
    let Some(mut err) = child.stderr.take() else {
        return Err(Error::internal(ctx, "rclone's stderr is missing"));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let kept = said.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut sent = false;
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut text = kept.lock().unwrap_or_else(|p| p.into_inner());
            crate::said::keep(&mut text, &buf[..n]);
            if !sent && let Some(port) = served_port(&text) {
                let _ = tx.send(port);
                sent = true;
            }
        }
    });
    let start = Instant::now();
    loop {
        if let Ok(port) = rx.recv_timeout(Duration::from_millis(50)) {
            return Ok(port);
        }
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(50));
            let text = said.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return Err(start_error(ctx, &text, status));
        }
        if start.elapsed() > START {
            let _ = child.kill();
            return Err(Error::new(
                Exit::Unavailable,
                ctx,
                format!("rclone did not start serving in {} s", START.as_secs()),
            ));
        }
    }
}

/// The port in rclone's "Serving remote control on http://127.0.0.1:PORT/".
fn served_port(text: &str) -> Option<u16> {
    let at = text.find("Serving remote control on http://127.0.0.1:")?;
    let rest = &text[at + "Serving remote control on http://127.0.0.1:".len()..];
    rest.split('/').next()?.parse().ok()
}

/// Why rclone stopped before serving: an unknown flag in rclone_command is
/// a config error (78), a missing program or anything else 69 with its
/// last line.
fn start_error(ctx: &str, said: &str, status: std::process::ExitStatus) -> Error {
    let last = crate::said::last_line(said).map_or_else(|| status.to_string(), str::to_string);
    // The watchdog shell's answer when the program is not there.
    if status.code() == Some(127) {
        return Error::new(Exit::Unavailable, ctx, format!("cannot run rclone: {last}"))
            .with_hint("install rclone, or set rclone_command in the destination's options");
    }
    if said.contains("unknown flag") || said.contains("unknown shorthand flag") {
        return Error::config(format!("{ctx}: option rclone_command"), last)
            .with_hint("see `rclone help flags`");
    }
    Error::new(Exit::Unavailable, ctx, format!("rclone stopped: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The port is read from rclone's notice, whatever comes before it.
    #[test]
    fn port_from_rclone_notice() {
        let said = "2026/12/03 00:26:41 INFO  : Using --user u --pass XXXX as authenticated user\n\
                    2026/12/03 00:26:41 NOTICE: Serving remote control on http://127.0.0.1:41657/\n";
        assert_eq!(served_port(said), Some(41657));
        assert_eq!(served_port("NOTICE: starting"), None);
    }
}
