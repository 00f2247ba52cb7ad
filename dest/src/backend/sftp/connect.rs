//! Connecting to an SFTP destination: the ssh command line, starting ssh
//! and the SFTP session over its pipes, finding the folder, and saying in
//! one line why a connection failed.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssh_sftp_client::{Sftp, SftpOptions};
use tokio::io::AsyncReadExt;

use snap_shared::error::{Error, Exit, Result};

use super::session::{Session, is_missing};
use crate::location::Location;
use crate::said::last_line;
use crate::settings::DestSpec;

/// How long connecting (ssh's login and the SFTP hello) may take.
const CONNECT: Duration = Duration::from_secs(120);

/// The ssh command line that serves SFTP for a destination, and the
/// folder on the server.
pub(super) fn command(spec: &DestSpec) -> Result<(Vec<String>, String)> {
    let Location::Sftp {
        user,
        host,
        port,
        path,
    } = &spec.location
    else {
        return Err(Error::internal(
            format!("destination {}", spec.name),
            format!("{} is not an SFTP destination", spec.location.url()),
        ));
    };
    spec.only_option("ssh_command")?;
    let mut argv = spec.command_words("ssh_command", "SNAP_SSH_COMMAND", "ssh")?;
    // Options given first win in ssh: a user's own command line may
    // loosen these on purpose; nothing else can.
    for o in [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "ConnectTimeout=30",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=4",
    ] {
        argv.extend(["-o".to_string(), o.to_string()]);
    }
    if let Some(p) = port {
        argv.extend(["-p".to_string(), p.to_string()]);
    }
    if let Some(u) = user {
        argv.extend(["-l".to_string(), u.clone()]);
    }
    argv.extend(["-s", "--", host, "sftp"].map(String::from));
    Ok((argv, path.clone()))
}

/// Starts ssh and the SFTP session over its pipes; a failure says why in
/// one line (a host key: 77; a login refused: 77; a server that cannot be
/// reached: 75, absent).
pub(super) async fn start(
    argv: &[String],
    stderr: &Arc<Mutex<String>>,
    ctx: &str,
) -> Result<(Sftp, tokio::process::Child)> {
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::new(
                Exit::Unavailable,
                ctx,
                format!("cannot run {}: {e}", argv[0]),
            )
            .with_hint("install openssh-client, or set ssh_command in the destination's options")
        })?;
    let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
    let collector = child.stderr.take().map(|mut err| {
        let stderr = stderr.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut kept = stderr.lock().unwrap_or_else(|p| p.into_inner());
                crate::said::keep(&mut kept, &buf[..n]);
            }
        })
    });
    let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
        return Err(Error::internal(ctx, "the child's pipes are missing"));
    };
    let options = SftpOptions::new().max_pending_requests(std::num::NonZeroU16::new(1024).unwrap());
    let opened = tokio::time::timeout(CONNECT, Sftp::new(stdin, stdout, options)).await;
    match opened {
        Ok(Ok(sftp)) => Ok((sftp, child)),
        failed => {
            // Let the child finish saying why before reading what it said.
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            let _ = child.start_kill();
            if let Some(c) = collector {
                let _ = tokio::time::timeout(Duration::from_secs(2), c).await;
            }
            let said = stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let why = match failed {
                Err(_) => format!("no SFTP answer in {} s", CONNECT.as_secs()),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => unreachable!("handled above"),
            };
            Err(connect_error(ctx, &said, &why))
        }
    }
}

/// Why a connection failed, from what ssh said.
fn connect_error(ctx: &str, said: &str, why: &str) -> Error {
    let line = last_line(said).unwrap_or(why).to_string();
    let has = |s: &str| said.contains(s);
    if has("Host key verification failed")
        || has("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || has("host key is known")
    {
        let changed = has("HAS CHANGED");
        return Error::new(
            Exit::NoPerm,
            ctx,
            match changed {
                true => "the server's host key has changed since it was added to known_hosts; \
                         refusing to connect"
                    .to_string(),
                false => "the server's host key is not in known_hosts; refusing to connect \
                          (cron has no terminal to ask)"
                    .to_string(),
            },
        )
        .with_hint(match changed {
            true => "if the server was really reinstalled, check its new key's fingerprint and \
                     replace the old one (ssh-keygen -R HOST); otherwise someone may be in between"
                .to_string(),
            false => "check the key's fingerprint and add it once, by hand: ssh HOST \
                      (or ssh-keyscan HOST >> ~/.ssh/known_hosts)"
                .to_string(),
        });
    }
    if has("Permission denied") {
        return Error::new(Exit::NoPerm, ctx, format!("the login was refused ({line})"))
            .with_hint("set up a key for this user (ssh-copy-id), with the agent or an IdentityFile in ~/.ssh/config");
    }
    // A server that is off or away is absent, as an unplugged drive: a push
    // falls back to the next priority.
    Error::new(Exit::TempFail, ctx, format!("cannot reach it: {line}"))
        .with_hint("check that the server is up and reachable, then run again")
}

/// The `ssh … mkdir -p …` that creates `path` on the server of `loc`, with
/// its user and port, quoted for the shell (a folder under the login's home
/// is given relative to it: ssh starts there, and a quoted `~` would not expand).
fn mkdir_command(loc: &Location, path: &str) -> String {
    let Location::Sftp {
        user, host, port, ..
    } = loc
    else {
        return format!("ssh HOST mkdir -p {}", crate::quote::sh_quote(path));
    };
    let mut cmd = String::from("ssh");
    if let Some(p) = port {
        cmd.push_str(&format!(" -p {p}"));
    }
    let at = user.as_ref().map_or(String::new(), |u| format!("{u}@"));
    let login = crate::quote::sh_quote(&format!("{at}{host}"));
    cmd.push_str(&format!(
        " {login} mkdir -p -- {}",
        crate::quote::sh_quote(path)
    ));
    cmd
}
/// Finds the destination's folder on the server, as an absolute path.
pub(super) async fn find_root(
    s: &Session,
    path: &str,
    ctx: &str,
    spec: &DestSpec,
) -> Result<PathBuf> {
    let mut fs = s.sftp.fs();
    let asked = match path {
        "" => ".",
        p => p,
    };
    let missing = || {
        let shown = match path.starts_with('/') {
            true => path.to_string(),
            false => format!("~/{path}"),
        };
        Error::new(
            Exit::TempFail,
            ctx,
            format!("folder {shown} is not there on the server"),
        )
        .with_hint(format!(
            "mount the server's disk; to start using a new folder, create it: {}",
            mkdir_command(&spec.location, path)
        ))
    };
    let root = match fs.canonicalize(asked).await {
        Ok(p) => p,
        Err(e) if is_missing(&e) => return Err(missing()),
        Err(e) => return Err(s.error(ctx, e)),
    };
    match fs.metadata(&root).await {
        Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => Ok(root),
        Ok(_) => Err(Error::new(
            Exit::CantCreate,
            ctx,
            format!("{} on the server is not a folder", root.display()),
        )),
        Err(e) if is_missing(&e) => Err(missing()),
        Err(e) => Err(s.error(ctx, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, options: &[(&str, &str)]) -> DestSpec {
        let mut s = DestSpec::from_url(url).unwrap();
        s.options = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    /// ssh is asked for the sftp subsystem with host keys checked and no
    /// prompts; the user's command comes first, so its own -o options win.
    #[test]
    fn ssh_command_line() {
        let (argv, path) = command(&spec(
            "sftp://me@nas:2222/srv/b",
            &[("ssh_command", "ssh -F '/etc/my config'")],
        ))
        .unwrap();
        assert_eq!(path, "/srv/b");
        assert_eq!(&argv[..3], ["ssh", "-F", "/etc/my config"]);
        let joined = argv.join(" ");
        assert!(joined.contains("-o BatchMode=yes -o StrictHostKeyChecking=yes"));
        assert!(joined.ends_with("-p 2222 -l me -s -- nas sftp"), "{joined}");
    }

    /// An option these destinations do not take is a config error naming it.
    #[test]
    fn unknown_option_refused() {
        let e = command(&spec("sftp://nas/b", &[("region", "x")])).unwrap_err();
        assert_eq!(e.exit, Exit::Config);
        assert!(e.to_string().contains("option region"), "{e}");
    }

    /// What ssh says about host keys and logins becomes exit 77 with a hint.
    #[test]
    fn connect_errors_classified() {
        let e = connect_error(
            "d",
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\n",
            "eof",
        );
        assert_eq!(e.exit, Exit::NoPerm);
        assert!(e.to_string().contains("not in known_hosts"), "{e}");
        let e = connect_error(
            "d",
            "@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\nHost key verification failed.",
            "eof",
        );
        assert!(e.to_string().contains("has changed"), "{e}");
        let e = connect_error("d", "me@nas: Permission denied (publickey).", "eof");
        assert_eq!(e.exit, Exit::NoPerm);
        let e = connect_error(
            "d",
            "ssh: connect to host nas port 22: Connection refused",
            "eof",
        );
        assert_eq!(e.exit, Exit::TempFail);
        assert!(e.to_string().contains("Connection refused"), "{e}");
    }

    /// The "create it" hint keeps the port and the user, and quotes a folder
    /// with a space or a quote; a home folder is given relative to it.
    #[test]
    fn the_mkdir_hint_is_a_command_that_works() {
        let loc = |url: &str| Location::parse(url).unwrap();
        let Location::Sftp { path, .. } = loc("sftp://me@nas:2222/srv/with%20space") else {
            panic!("an sftp location")
        };
        assert_eq!(path, "/srv/with space");
        assert_eq!(
            mkdir_command(&loc("sftp://me@nas:2222/srv/with%20space"), &path),
            "ssh -p 2222 me@nas mkdir -p -- '/srv/with space'"
        );
        assert_eq!(
            mkdir_command(&loc("sftp://nas/~/it's"), "it's"),
            "ssh nas mkdir -p -- 'it'\\''s'"
        );
        assert_eq!(
            loc("sftp://nas/srv/with%20space").url(),
            "sftp://nas/srv/with%20space"
        );
        assert!(Location::parse("sftp://nas/srv/%2e%2e/etc").is_err());
    }
}
