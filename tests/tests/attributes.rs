//! Everything a file carries (issue 33): extended attributes in every
//! namespace, POSIX ACLs, file capabilities and owners by name, judged by
//! `rsync -aHAX`, `getfattr`, `getfacl` and `getcap`, tools no one here wrote.
//! These tests run as root (CI does): `trusted.*` and capabilities need it.

use std::fs;
use std::path::Path;
use std::process::Command;

use snap_e2e::{World, code, records, rsync_changes, stderr};

/// Runs a command that must succeed (setfattr, setfacl, setcap…); its stdout.
fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} (cargo xtask test installs attr, acl, libcap2-bin): {e}",
                args[0]
            )
        });
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tree with user, trusted and binary-valued xattrs, an access ACL and a
/// default ACL, a file with a capability, a hard-linked pair with an xattr,
/// and a file owned by another user.
fn tree(w: &World) {
    let p = |rel: &str| w.path(rel).display().to_string();
    w.write("src/doc.txt", "a document\n");
    sh(&[
        "setfattr",
        "-n",
        "user.origin",
        "-v",
        "mail",
        &p("src/doc.txt"),
    ]);
    sh(&[
        "setfattr",
        "-n",
        "user.bin",
        "-v",
        "0x00ff0a00",
        &p("src/doc.txt"),
    ]);
    sh(&[
        "setfattr",
        "-n",
        "trusted.note",
        "-v",
        "root only",
        &p("src/doc.txt"),
    ]);
    w.write("src/shared/journal", "entries\n");
    sh(&["setfacl", "-m", "u:nobody:rw", &p("src/shared/journal")]);
    sh(&["setfacl", "-d", "-m", "g:adm:rx", &p("src/shared")]);
    w.write("src/bin/ping", "not really ping\n");
    sh(&["/usr/sbin/setcap", "cap_net_raw+ep", &p("src/bin/ping")]);
    w.write("src/pair/one", "linked\n");
    fs::hard_link(w.path("src/pair/one"), w.path("src/pair/two")).unwrap();
    sh(&[
        "setfattr",
        "-n",
        "user.pair",
        "-v",
        "both",
        &p("src/pair/one"),
    ]);
    w.write("src/theirs", "owned by nobody\n");
    sh(&["chown", "nobody:nogroup", &p("src/theirs")]);
    for f in [
        "src/doc.txt",
        "src/shared/journal",
        "src/bin/ping",
        "src/pair/one",
        "src/theirs",
    ] {
        snap_e2e::set_mtime(&w.path(f), 1_600_000_000);
    }
}

/// The store's tree of a snapshot record, where the source `src/` is.
fn in_store(w: &World, rec: &serde_json::Value) -> std::path::PathBuf {
    Path::new(rec["path"].as_str().unwrap()).join(w.inside("src"))
}

/// Collect keeps every attribute on the store's copy, as rsync -aHAX,
/// getfacl and getcap judge it, and in the index (names and base64 values,
/// owner names beside the ids).
#[test]
fn collect_keeps_every_attribute() {
    let w = World::new();
    tree(&w);
    let rec = w.collect_ok(&[]);
    let copy = in_store(&w, &rec);
    assert_eq!(rsync_changes(&w.path("src"), &copy), "");
    let src = w.path("src").display().to_string();
    let dst = copy.display().to_string();
    let acl = |d: &str| sh(&["getfacl", "-R", "-p", "--absolute-names", d]).replace(d, "X");
    assert_eq!(acl(&src), acl(&dst));
    let caps = |d: &str| sh(&["/usr/sbin/getcap", "-r", d]).replace(d, "X");
    assert_eq!(caps(&src), caps(&dst));
    assert!(
        caps(&dst).contains("X/bin/ping cap_net_raw=ep"),
        "{}",
        caps(&dst)
    );

    let index = Path::new(rec["index"].as_str().unwrap());
    let text =
        String::from_utf8(zstd::decode_all(fs::File::open(index).unwrap()).unwrap()).unwrap();
    let entry = |name: &str| -> serde_json::Value {
        let want = format!("{}/{name}", w.inside("src"));
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["path"] == want.as_str())
            .unwrap_or_else(|| panic!("{want} not in the index"))
    };
    let doc = entry("doc.txt");
    assert_eq!(doc["xattrs"]["user.origin"], "bWFpbA==");
    assert_eq!(doc["xattrs"]["user.bin"], "AP8KAA==");
    assert_eq!(doc["xattrs"]["trusted.note"], "cm9vdCBvbmx5");
    assert_eq!(
        (&doc["user"], &doc["group"]),
        (&"root".into(), &"root".into())
    );
    assert!(entry("shared")["xattrs"]["system.posix_acl_default"].is_string());
    assert!(entry("shared/journal")["xattrs"]["system.posix_acl_access"].is_string());
    assert!(entry("bin/ping")["xattrs"]["security.capability"].is_string());
    assert_eq!(entry("theirs")["user"], "nobody");
}

/// A change of an attribute alone is a change: the file is copied, not
/// linked, the older snapshot keeps its value, and `diff` names what
/// changed (`U` with "xattrs" or "acl"); an unchanged tree is linked whole.
#[test]
fn an_attribute_change_alone_is_a_change() {
    let w = World::new();
    tree(&w);
    let first = w.collect_ok(&[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let same = w.collect_ok(&[]);
    assert_eq!(same["new_files"], 0, "{same}");
    let doc = w.path("src/doc.txt").display().to_string();
    sh(&["setfattr", "-n", "user.origin", "-v", "post", &doc]);
    let journal = w.path("src/shared/journal").display().to_string();
    sh(&["setfacl", "-m", "u:daemon:r", &journal]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let changed = w.collect_ok(&[]);
    assert_eq!(changed["new_files"], 2, "{changed}");
    let value = |rec: &serde_json::Value| {
        let f = in_store(&w, rec).join("doc.txt").display().to_string();
        sh(&["getfattr", "--only-values", "-n", "user.origin", &f])
    };
    assert_eq!(value(&first), "mail");
    assert_eq!(value(&changed), "post");
    assert_eq!(rsync_changes(&w.path("src"), &in_store(&w, &changed)), "");
    let out = w.restore(&[
        "diff",
        &format!("s/{}", same["id"].as_str().unwrap()),
        &format!("s/{}", changed["id"].as_str().unwrap()),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    let src = w.inside("src");
    assert!(
        said.contains(&format!("U    {src}/doc.txt  (xattrs user.origin)\n")),
        "{said}"
    );
    assert!(
        said.contains(&format!("U    {src}/shared/journal  (acl access)\n")),
        "{said}"
    );
    let json = w.restore(&[
        "diff",
        "--json",
        &format!("s/{}", same["id"].as_str().unwrap()),
        &format!("s/{}", changed["id"].as_str().unwrap()),
    ]);
    let lines = records(&json);
    assert!(
        lines
            .iter()
            .any(|l| l["attributes"] == serde_json::json!(["xattrs user.origin"])),
        "{lines:?}"
    );
}
