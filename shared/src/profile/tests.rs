use super::*;
use serde_json::json;

fn map(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// What belongs to the machine stays: store, signing, credentials, drive
/// UUIDs and folder paths, sockets; sources under home become `~`.
#[test]
fn machine_keys_never_travel() {
    let config = map(json!({
        "store": "/srv/snap",
        "signing": {"key": "/home/me/.ssh/id"},
        "backup_sets": [{"name": "config", "sources": ["/home/me/.config", "/etc"], "exclusions": ["*.log"]}],
        "destinations": [
            {"name": "usb", "uuid": "2F3A-11C4", "path": "backups"},
            {"name": "nas", "path": "/mnt/nas"},
            {"name": "b2", "url": "s3://AKID:SECRET@bucket/snap", "priority": 2,
             "options": {"endpoint": "https://e", "access_key_id": "AKID", "secret_access_key": "S", "region": "x"}}
        ],
        "disks": [{"image": "/home/me/vm.qcow2", "qmp": "/run/vm.sock", "schedule": "daily"}],
        "schedule": {"incremental": "hourly"},
        "notify": "ntfy:me"
    }));
    let shared = shareable(&config, Some(Path::new("/home/me")));
    let text = serde_json::to_string(&shared).unwrap();
    for gone in [
        "/srv/snap",
        "id\"",
        "2F3A",
        "/mnt/nas",
        "AKID",
        "SECRET",
        "\"S\"",
        "/run/vm.sock",
        "signing",
        "store",
    ] {
        assert!(!text.contains(gone), "{gone} travelled: {text}");
    }
    assert_eq!(
        shared["backup_sets"][0]["sources"],
        json!(["~/.config", "/etc"])
    );
    assert_eq!(
        shared["disks"][0],
        json!({"image": "~/vm.qcow2", "schedule": "daily"})
    );
    assert_eq!(
        shared["destinations"],
        json!([{"name": "usb"}, {"name": "nas"},
               {"name": "b2", "url": "s3://bucket/snap", "priority": 2,
                "options": {"endpoint": "https://e", "region": "x"}}])
    );
    assert_eq!(shared["notify"], "ntfy:me");
}

fn stored(config: Value, machines: Value) -> String {
    serde_json::to_string_pretty(&json!({
        "schema": SCHEMA, "name": "home",
        "published": {"host": "laptop", "at": "2026-12-06T10:00:00Z", "tool": "snap-push 0.1.0"},
        "config": config, "machines": machines
    }))
    .unwrap()
}

/// A host's own block lies over the shared keys.
#[test]
fn a_host_takes_its_block_over_the_shared_keys() {
    let p = parse(
        &stored(
            json!({"notify": "a", "schedule": {"incremental": "hourly"}}),
            json!({"desktop": {"notify": "b"}}),
        ),
        "profile home",
    )
    .unwrap();
    assert_eq!(p.for_host("desktop")["notify"], "b");
    assert_eq!(p.for_host("laptop")["notify"], "a");
    assert_eq!(
        p.for_host("desktop")["schedule"],
        json!({"incremental": "hourly"})
    );
}

/// Bad input: text that is not JSON is 65 naming it; an unknown key is 78
/// with its line and column; a newer schema is refused with its version.
#[test]
fn bad_profiles_are_refused_with_their_exit() {
    let e = parse("{\"schema\": \"snap-prof", "profile home at usb").unwrap_err();
    assert_eq!(
        (e.exit, e.context.as_str()),
        (Exit::Data, "profile home at usb")
    );
    let text = stored(json!({"notify": "a", "stroe": "/x"}), json!({}));
    let e = parse(&text, "profile home").unwrap_err();
    assert_eq!(e.exit, Exit::Config);
    let line = text.lines().position(|l| l.contains("\"stroe\"")).unwrap() + 1;
    assert!(e.context.contains("config.stroe"), "{e}");
    assert!(e.cause.contains(&format!("(line {line} column ")), "{e}");
    let text = stored(json!({}), json!({}))
        .replace("\"name\": \"home\"", "\"name\": \"home\", \"colour\": 1");
    let e = parse(&text, "profile home").unwrap_err();
    assert_eq!(e.exit, Exit::Config);
    assert!(
        e.to_string().contains("colour") && e.to_string().contains("line"),
        "{e}"
    );
    let text = stored(json!({}), json!({})).replace(SCHEMA, "snap-profile/7");
    let e = parse(&text, "profile home").unwrap_err();
    assert_eq!(e.exit, Exit::Config);
    assert!(e.cause.contains("snap-profile/7"), "{e}");
}
