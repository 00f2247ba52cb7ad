//! A `snap-restore serve` for the suites that time the page (timeline,
//! diff): started on a free port, stopped when dropped.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::kit::bin;
use crate::sh::Result;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A `snap-restore serve` of the bench, stopped when dropped.
pub(crate) struct Served {
    child: std::process::Child,
    port: u16,
}

impl Served {
    pub(crate) fn start(store: &Path, cfg: Option<&Path>) -> Result<Served> {
        let port = snap_testkit::free_port();
        let mut cmd = Command::new(bin("snap-restore"));
        cmd.arg("--store").arg(store);
        if let Some(c) = cfg {
            cmd.arg("-c").arg(c);
        }
        let child = cmd
            .args(["-q", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env("SNAP_SERVE_TOKEN", TOKEN)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut served = Served { child, port };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t0.elapsed().as_secs() > 20 {
                let _ = served.child.kill();
                return Err("snap-restore serve did not start".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(served)
    }

    /// Milliseconds of one GET of `path` (200 or an error), and the body.
    pub(crate) fn get(&self, path: &str) -> Result<(f64, Vec<u8>)> {
        use std::io::{Read, Write};
        let t = Instant::now();
        let port = self.port;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: snap_token={TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).map_err(|e| e.to_string())?;
        if !body.starts_with(b"HTTP/1.1 200") {
            let head = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(format!("serve answered GET {path} with {head}"));
        }
        Ok((t.elapsed().as_secs_f64() * 1000.0, body))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
