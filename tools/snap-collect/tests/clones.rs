//! A store on a filesystem that shares extents (XFS with reflink, on a
//! loop file; root only, as CI runs): a big file changed by 1% costs the
//! store about the change, and both snapshots read back right.

use std::fs;
use std::path::Path;
use std::process::Command;

use snap_testkit::{World, code, stderr};

/// An XFS filesystem on a loop file, unmounted however the test ends.
struct Xfs(std::path::PathBuf);

impl Xfs {
    fn mount(image: &Path, at: &Path) -> Xfs {
        let run = |c: &mut Command| {
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("truncate").args(["-s", "700M"]).arg(image));
        run(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(image));
        fs::create_dir_all(at).unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(at));
        Xfs(at.to_path_buf())
    }

    fn used(&self) -> u64 {
        Command::new("sync").status().unwrap();
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(&self.0)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn collect(w: &World) {
    let out = w
        .tool("snap-collect")
        .args([
            "--store",
            "store",
            "--min-free",
            "0",
            "--name",
            "d",
            "src",
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// 1% of a 256 MiB file rewritten in 10 places: the second snapshot grows
/// the store by about 2.5 MiB, not 256, and both verify.
#[test]
fn a_changed_big_file_costs_the_change_on_xfs() {
    let w = World::new();
    let xfs = Xfs::mount(&w.path("xfs.img"), &w.path("store"));
    let mut data = vec![0u8; 256 << 20];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    fs::write(w.path("src/db.bin"), &data).unwrap();
    collect(&w);
    let before = xfs.used();
    for i in 0..10 {
        let at = i * (25 << 20);
        for b in &mut data[at..at + (256 << 10)] {
            *b = b.wrapping_add(1);
        }
    }
    fs::write(w.path("src/db.bin"), &data).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    collect(&w);
    let grown = xfs.used() - before;
    assert!(grown < 8 << 20, "the store grew {} MiB", grown >> 20);
    let out = w
        .tool("snap-restore")
        .args(["--store", "store", "verify", "-q"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let snaps: Vec<_> = fs::read_dir(w.path("store/sets/d"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(snaps.len(), 2);
}
