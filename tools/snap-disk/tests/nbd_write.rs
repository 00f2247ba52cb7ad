//! snap-disk's NBD client writes through QEMU's block layer (a writable
//! export of qemu-storage-daemon): what an in-place restore of an image in
//! any format QEMU writes stands on.

use std::process::Command;

use snap_disk::nbd::Client;
use snap_testkit::qemu::Qsd;

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (cargo xtask test installs qemu-utils)")
}

/// A write, a write of zeroes (a hole) and a flush land where QEMU reads
/// them: the client reads them back, `qemu-img compare` finds the image
/// equal to a raw file written the same way, and `qemu-img check` is clean.
#[test]
fn writes_zeroes_and_flushes_land_in_the_image() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("d.qcow2");
    let img_s = img.to_str().unwrap();
    assert!(
        qemu_img(&["create", "-q", "-f", "qcow2", img_s, "16M"])
            .status
            .success()
    );
    let data = snap_testkit::noise(4, 1 << 20);
    let mut want = vec![0u8; 16 << 20];
    want[4 << 20..5 << 20].copy_from_slice(&data);
    want[4 << 20..(4 << 20) + (64 << 10)].fill(0);

    let qsd = Qsd::start(&img, "qcow2");
    let mut c = Client::connect(&qsd.nbd, "guest", &[]).unwrap();
    c.write(4 << 20, &data).unwrap();
    c.write_zeroes(4 << 20, 64 << 10, false).unwrap();
    c.flush().unwrap();
    let mut back = vec![0u8; 1 << 20];
    c.read(4 << 20, &mut back).unwrap();
    assert!(back == want[4 << 20..5 << 20], "read back different");
    let err = c.write(16 << 20, b"x").unwrap_err();
    assert!(err.to_string().contains("past the export's end"), "{err}");
    drop(c);
    qsd.stop();

    let raw = t.path().join("want.raw");
    std::fs::write(&raw, &want).unwrap();
    let out = qemu_img(&[
        "compare",
        "-f",
        "qcow2",
        "-F",
        "raw",
        img_s,
        raw.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(qemu_img(&["check", "-q", img_s]).status.success());
}
