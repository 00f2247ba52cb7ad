//! A libvirtd of the test's own, for snap-disk's libvirt tests: Debian's
//! libvirtd in system mode (QEMU runs as libvirt-qemu, as on users'
//! machines), in a private mount namespace where /etc/libvirt,
//! /run/libvirt, /var/lib/libvirt and /var/log/libvirt are folders of the
//! test's, with its socket in a folder of the test's too (no TCP). One runs
//! at a time on the machine (a lock file): tests that use one wait for each
//! other. Its domains are TCG, no KVM, with no guest OS; the "guest" writes
//! to its disk through a QMP monitor of the test's own (`qemu-io` in HMP).
//! QEMU's capabilities, which libvirtd probes once in seconds, are cached in
//! a folder the runs share.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::vm::Monitor;

/// Where the runs share the lock and libvirtd's capabilities cache.
const SHARED: &str = "/var/tmp";

/// A running libvirtd, stopped (with its domains destroyed) when dropped.
pub struct Libvirtd {
    dir: tempfile::TempDir,
    child: Child,
    /// virsh's `-c` for it.
    pub uri: String,
    _lock: fs::File,
}

/// A domain of the test's libvirtd.
pub struct Domain<'a> {
    pub d: &'a Libvirtd,
    pub name: String,
    pub image: PathBuf,
    /// The test's own QMP monitor of the domain's QEMU.
    pub qmp: PathBuf,
    mon: Mutex<Option<Monitor>>,
}

/// `qemu-img ARGS PATH [LAST]`, which must succeed.
fn qemu_img(args: &[&str], path: &Path, last: &str) {
    let mut c = Command::new("qemu-img");
    c.args(args).arg(path);
    if !last.is_empty() {
        c.arg(last);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The libvirt-qemu user's uid, which runs QEMU.
fn qemu_uid() -> u32 {
    let out = Command::new("id")
        .args(["-u", "libvirt-qemu"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no libvirt-qemu user: cargo xtask test installs libvirt-daemon-system"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl Libvirtd {
    pub fn start() -> Libvirtd {
        let lock = fs::File::create(format!("{SHARED}/snap-test-libvirtd.lock")).unwrap();
        lock.lock().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("snap-libvirt-")
            .tempdir_in(SHARED)
            .unwrap();
        let p = |s: &str| dir.path().join(s);
        for d in ["etc", "run", "lib", "log", "sock", "img", "qmp"] {
            fs::create_dir(p(d)).unwrap();
        }
        let cache = PathBuf::from(format!("{SHARED}/snap-test-libvirt-cache"));
        fs::create_dir_all(&cache).unwrap();
        for d in [dir.path(), &p("img")] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::chown(p("qmp"), Some(qemu_uid()), None).unwrap();
        fs::write(
            p("etc/libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{}\"\nunix_sock_rw_perms = \"0700\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n",
                p("sock").display()
            ),
        )
        .unwrap();
        // QEMU's output to files: no virtlogd to talk to.
        fs::write(p("etc/qemu.conf"), "stdio_handler = \"file\"\n").unwrap();
        let script = format!(
            "set -e\n\
             for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do mkdir -p $d; done\n\
             mount --bind {etc} /etc/libvirt\n\
             mount --bind {run} /run/libvirt\n\
             mount --bind {lib} /var/lib/libvirt\n\
             mount --bind {log} /var/log/libvirt\n\
             mount --bind {cache} /var/cache/libvirt\n\
             exec libvirtd --pid-file {run}/libvirtd.pid",
            etc = p("etc").display(),
            run = p("run").display(),
            lib = p("lib").display(),
            log = p("log").display(),
            cache = cache.display(),
        );
        let err = fs::File::create(p("libvirtd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("unshare (util-linux)");
        let uri = format!(
            "qemu+unix:///system?socket={}",
            p("sock/libvirt-sock").display()
        );
        let mut d = Libvirtd {
            dir,
            child,
            uri,
            _lock: lock,
        };
        let t0 = Instant::now();
        loop {
            if d.virsh(&["version"]).status.success() {
                break;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("libvirtd ended ({status}): {}", d.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "libvirtd did not answer in 120 s: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// The folder of its sockets (libvirt-sock is its read-write one).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("libvirtd.log")).unwrap_or_default()
    }

    /// virsh against this libvirtd.
    pub fn virsh(&self, args: &[&str]) -> Output {
        Command::new("virsh")
            .args(["-q", "-c", &self.uri])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("virsh (cargo xtask test installs libvirt-clients)")
    }

    /// virsh, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.virsh(args);
        assert!(
            out.status.success(),
            "virsh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new qcow2 image QEMU (as libvirt-qemu) can reach.
    pub fn image(&self, name: &str, size: u64) -> PathBuf {
        let path = self.dir.path().join("img").join(name);
        qemu_img(&["create", "-q", "-f", "qcow2"], &path, &size.to_string());
        path
    }

    /// A qcow2 image QEMU (as libvirt-qemu) can reach, converted from a raw file.
    pub fn import(&self, name: &str, raw: &Path) -> PathBuf {
        let path = self.dir.path().join("img").join(name);
        let raw = raw.to_str().unwrap();
        qemu_img(&["convert", "-f", "raw", "-O", "qcow2", raw], &path, "");
        path
    }

    /// Defines and starts a TCG domain (q35, 64 MiB, no guest OS) whose
    /// virtio disk vda is `image`.
    pub fn domain(&self, name: &str, image: &Path) -> Domain<'_> {
        let qmp = self.dir.path().join("qmp").join(format!("{name}.qmp"));
        let xml = format!(
            "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n\
             <name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\n\
             <os><type arch='x86_64' machine='q35'>hvm</type></os>\n\
             <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\n\
             <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='{}'/><target dev='vda' bus='virtio'/></disk>\n\
             <controller type='usb' model='none'/><memballoon model='none'/></devices>\n\
             <qemu:commandline><qemu:arg value='-qmp'/>\
             <qemu:arg value='unix:{},server=on,wait=off'/></qemu:commandline>\n\
             </domain>\n",
            image.display(),
            qmp.display()
        );
        let file = self.dir.path().join(format!("{name}.xml"));
        fs::write(&file, xml).unwrap();
        self.ok(&["define", file.to_str().unwrap()]);
        self.ok(&["start", name]);
        Domain {
            d: self,
            name: name.to_string(),
            image: image.to_path_buf(),
            qmp,
            mon: Mutex::new(None),
        }
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("virsh")
            .args(["-q", "-c", &self.uri, "list", "--name"])
            .output()
        {
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                let name = name.trim();
                if !name.is_empty() {
                    let _ = self.virsh(&["destroy", name]);
                }
            }
        }
        crate::qemu::send_signal(self.child.id(), "TERM");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Domain<'_> {
    /// `running`, `shut off`, ….
    pub fn state(&self) -> String {
        self.d.ok(&["domstate", &self.name]).trim().to_string()
    }

    /// Runs one HMP command line on the test's monitor.
    pub fn hmp(&self, line: &str) -> String {
        let mut guard = self.mon.lock().unwrap();
        let t0 = Instant::now();
        while !self.qmp.exists() {
            assert!(t0.elapsed() < Duration::from_secs(30), "no test monitor");
            std::thread::sleep(Duration::from_millis(50));
        }
        let m = guard.get_or_insert_with(|| Monitor::connect(&self.qmp));
        let out = m
            .run("human-monitor-command", json!({"command-line": line}))
            .unwrap_or_else(|e| panic!("HMP {line}: {e}"));
        out.as_str().unwrap_or("").to_string()
    }

    /// Forgets the test's monitor connection (the domain was restarted).
    pub fn reconnect(&self) {
        *self.mon.lock().unwrap() = None;
    }

    /// Writes `len` bytes of `pattern` at `offset` of vda, as the guest would.
    pub fn write(&self, offset: u64, len: u64, pattern: u8) {
        self.hmp(&format!(
            "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P {pattern} {offset} {len}\""
        ));
    }

    /// Whether the image holds `pattern` at `offset` (read with -U, as the domain runs).
    pub fn holds(&self, offset: u64, len: u64, pattern: u8) -> bool {
        let out = Command::new("qemu-io")
            .args(["-U", "-r", "-f", "qcow2", "-c"])
            .arg(format!("read -P {pattern} {offset} {len}"))
            .arg(&self.image)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("read"),
            "qemu-io: {text}"
        );
        !text.contains("Pattern verification failed")
    }
}
