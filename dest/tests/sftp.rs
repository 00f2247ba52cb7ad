//! A destination over SFTP, against Debian's sshd started by the test: what
//! one session remembers about the server must not outlive what is there.

use bytes::Bytes;
use snap_dest::{Dest, DestSpec, Reach};

/// A folder this session made, then someone else removed, is made again
/// and the next write into it lands.
#[test]
fn a_folder_removed_behind_the_session_is_made_again() {
    let sshd = snap_testkit::Sshd::start();
    let root = tempfile::tempdir().unwrap();
    let mut spec = DestSpec::from_url(&sshd.url(root.path().to_str().unwrap())).unwrap();
    spec.options
        .push(("ssh_command".to_string(), sshd.ssh_command()));
    let dest = Dest::open(
        &spec,
        &snap_dest::runtime().unwrap(),
        &Reach::default(),
        false,
    )
    .unwrap();
    let data = Bytes::from_static(b"{}");
    dest.put_small("set/a.json", data.clone(), "").unwrap();
    std::fs::remove_dir_all(root.path().join("set")).unwrap();
    dest.put_small("set/b.json", data, "").unwrap();
    assert_eq!(
        std::fs::read(root.path().join("set/b.json")).unwrap(),
        b"{}"
    );
}
