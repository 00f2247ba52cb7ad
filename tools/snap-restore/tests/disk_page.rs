//! Disk snapshots from `snap-restore serve`'s page: restore in place after
//! a dry run, refused while a qemu-storage-daemon holds the image; restore
//! to a new file; serve over NBD and stop. The oracle is the image's sha256
//! at the snapshot and `qemu-img compare` through the NBD export.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};
use snap_testkit::serve::{Server, disk_snapshot};

const MIB: usize = 1 << 20;

fn sha(p: &Path) -> String {
    Sha256::digest(fs::read(p).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" content=\"").unwrap() + 21;
    page[at..at + 32].to_string()
}

/// POSTs a form; returns the status, the headers and the body.
fn post(srv: &Server, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('/', "%2F")))
        .collect();
    srv.ask("POST", path, None, true, &body.join("&"))
}

/// Starts an action and waits for its job to end; its last state and lines.
fn run_job(srv: &Server, fields: &[(&str, &str)]) -> (String, usize) {
    let (status, head, body) = post(srv, "/disk/start", fields);
    assert_eq!(status, 303, "{head}{body}");
    let at = head.find("/restore/job?id=").expect(&head) + 16;
    let id: usize = head[at..].lines().next().unwrap().trim().parse().unwrap();
    let (_, _, events) = srv.ask("GET", &format!("/restore/events?id={id}"), None, true, "");
    let last = events.lines().rfind(|l| l.starts_with("data:")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&last[5..]).unwrap();
    (v["state"].as_str().unwrap().to_string(), id)
}

/// The first progress event of a job whose events go on (a server).
fn first_event(srv: &Server, id: &str) -> serde_json::Value {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    write!(
        s,
        "GET /restore/events?id={id} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nCookie: snap_token={}\r\n\r\n",
        srv.port,
        snap_testkit::serve::TOKEN
    )
    .unwrap();
    for line in std::io::BufReader::new(s).lines() {
        let line = line.unwrap();
        if let Some(data) = line.strip_prefix("data:") {
            return serde_json::from_str(data.trim()).unwrap();
        }
    }
    serde_json::Value::Null
}

/// In place, the dry run first (the blocks it would rewrite), refused with
/// nothing changed while a qemu-storage-daemon holds the image, then done:
/// the image is the snapshot again (sha256), with its undo snapshot; and to
/// a new file, whose bytes are the snapshot's.
#[test]
fn a_disk_restores_from_the_page_after_a_dry_run() {
    let t = tempfile::tempdir().unwrap();
    let img = disk_snapshot(t.path(), 11, 8 * MIB);
    let img_s = img.display().to_string();
    let at_snapshot = sha(&img);
    let mut bytes = fs::read(&img).unwrap();
    for b in &mut bytes[3 * MIB..5 * MIB] {
        *b ^= 0xff;
    }
    fs::write(&img, &bytes).unwrap();
    let changed = sha(&img);
    let srv = Server::start(t.path(), &["--allow-changes"]);
    let page = srv.page();
    assert!(page.contains("/disk?name=disks/vm/s"), "a link on the card");
    let token = csrf(&page);
    let (status, _, form) = srv.ask("GET", "/disk?name=disks/vm/s", None, true, "");
    assert_eq!(status, 200, "{form}");
    let fields = [
        ("csrf", token.as_str()),
        ("name", "disks/vm/s"),
        ("mode", "inplace"),
    ];
    let (status, _, dry) = post(&srv, "/disk/preview", &fields);
    assert_eq!(status, 200, "{dry}");
    assert!(dry.contains("would rewrite 2 of 8 blocks"), "{dry}");
    assert_eq!(sha(&img), changed, "the dry run changed nothing");
    // Held by a qemu-storage-daemon: refused, in the dry run and the restore.
    let mut daemon = Command::new("qemu-storage-daemon")
        .arg("--blockdev")
        .arg(format!("driver=file,node-name=f,filename={img_s}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let holds = || {
        fs::read_dir(format!("/proc/{}/fd", daemon.id()))
            .map(|d| {
                d.flatten()
                    .any(|e| fs::read_link(e.path()).is_ok_and(|p| p == img))
            })
            .unwrap_or(false)
    };
    let t0 = std::time::Instant::now();
    while !holds() && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, _, refused) = post(&srv, "/disk/preview", &fields);
    let (state, _) = run_job(&srv, &fields);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(status, 409, "{refused}");
    assert!(refused.contains("in use by qemu-storage"), "{refused}");
    assert!(
        state.starts_with("failed") && state.contains("exit 75"),
        "{state}"
    );
    assert_eq!(sha(&img), changed, "nothing changed while held");
    let (state, _) = run_job(&srv, &fields);
    assert!(state.starts_with("restored vm/s into "), "{state}");
    assert!(
        state.contains("the image as it was is snapshot before-restore-"),
        "{state}"
    );
    assert_eq!(sha(&img), at_snapshot, "the image is the snapshot again");
    // To a new file.
    let copy = t.path().join("copy.raw").display().to_string();
    let fields = [
        ("csrf", token.as_str()),
        ("name", "disks/vm/s"),
        ("mode", "newfile"),
        ("to", &copy),
    ];
    let (state, _) = run_job(&srv, &fields);
    assert!(state.starts_with("restored"), "{state}");
    assert_eq!(sha(Path::new(&copy)), at_snapshot);
    let (status, _, again) = post(&srv, "/disk/preview", &fields);
    assert_eq!(status, 400, "never over a file: {again}");
}

/// Served over NBD from the page: `qemu-img compare` through the export
/// says it is the snapshot; stopping it from the page removes the socket.
#[test]
fn a_disk_snapshot_serves_over_nbd_until_stopped() {
    let t = tempfile::tempdir().unwrap();
    let img = disk_snapshot(t.path(), 12, 4 * MIB);
    let img_s = img.display().to_string();
    let srv = Server::start(t.path(), &["--allow-changes"]);
    let token = csrf(&srv.page());
    let fields = [
        ("csrf", token.as_str()),
        ("name", "disks/vm/s"),
        ("mode", "serve"),
    ];
    let (status, head, _) = post(&srv, "/disk/start", &fields);
    assert_eq!(status, 303, "{head}");
    let at = head.find("/restore/job?id=").unwrap() + 16;
    let id = head[at..].lines().next().unwrap().trim().to_string();
    let job = format!("/restore/job?id={id}");
    let mut socket = None;
    for _ in 0..100 {
        let v = first_event(&srv, &id);
        let lines = v["lines"].to_string();
        if let Some(at) = lines.find("read-only on ") {
            socket = Some(lines[at + 13..].split('"').next().unwrap().to_string());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let socket = socket.expect("the job says where it serves");
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw", &img_s])
        .arg(format!("nbd+unix:///vm?socket={socket}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (_, _, page) = srv.ask("GET", &job, None, true, "");
    assert!(page.contains("Stop serving"), "{page}");
    let (status, _, _) = post(&srv, "/disk/stop", &[("csrf", token.as_str()), ("id", &id)]);
    assert_eq!(status, 303);
    let t0 = std::time::Instant::now();
    while Path::new(&socket).exists() && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!Path::new(&socket).exists(), "the socket is gone");
}
