//! snap-prune with `retention.keep_archives: "until-pushed"`: the store
//! drops the data of archives its one destination (a drive) holds. Killed at
//! any point, every archive is still listed in the store and has its data
//! here or its `.away` marker (never neither); the drive's archives verify;
//! the rerun leaves every archive's data at the drive alone.

use std::fs;
use std::process::Command;

use crate::check::{all_verify, listed, names};
use crate::sweep::{Check, Scenario, World};
use crate::tools::{collect, newest_restores, pack_pairs, push, source};

pub struct Handover;

/// Where snap-restore lists the store, and the drive.
const STORE: [&str; 2] = ["--store", "store"];
const DRIVE: [&str; 2] = ["--from", "drive"];

/// Each archive of the store has its data or its marker (or both, a drop
/// cut short): `Err` names one that has neither. How many are away.
fn data_or_marker(w: &World) -> Result<usize, String> {
    let mut away = 0;
    for item in listed(w, &STORE)?.iter().filter(|i| i["kind"] == "archive") {
        let id = item["id"].as_str().unwrap_or_default();
        let dir = w.path("store/archives/s");
        let data = dir.join(format!("{id}.tar.zst")).exists();
        let marker = dir.join(format!("{id}.away")).exists();
        match (data, marker) {
            (false, false) => {
                return Err(format!("archive s/{id} has neither its data nor a marker"));
            }
            (false, true) => away += 1,
            _ => {}
        }
    }
    Ok(away)
}

impl Scenario for Handover {
    fn name(&self) -> &'static str {
        "snap-prune-handover"
    }

    fn prepare(&self, w: &World) -> Check {
        let e = |e: std::io::Error| e.to_string();
        fs::create_dir(w.path("drive")).map_err(e)?;
        // Relative paths: the state is copied for each point.
        let config = r#"{"store": "store", "destinations": [{"name": "drive", "path": "drive"}],
            "retention": {"local": 10, "keep_archives": "until-pushed"},
            "schedule": {"verify": "never"}}"#;
        fs::write(w.path("config.json"), config).map_err(e)?;
        for r in 0..4 {
            source(w, r)?;
            w.ok(&mut collect(w))?;
            w.ok(&mut pack_pairs(w))?;
            w.ok(&mut push(w))?;
        }
        let before = names(&listed(w, &STORE)?);
        fs::write(
            w.path("listed.json"),
            serde_json::to_string(&before).map_err(|e| e.to_string())?,
        )
        .map_err(e)
    }

    fn drive(&self) -> Option<&'static str> {
        Some("drive")
    }

    fn run(&self, w: &World) -> Command {
        let mut c = w.tool("snap-prune");
        c.args(["--config", "config.json", "-q"]);
        c
    }

    fn after_kill(&self, w: &World) -> Check {
        let before: Vec<String> = fs::read_to_string(w.path("listed.json"))
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))?;
        let now = names(&listed(w, &STORE)?);
        if now != before {
            return Err(format!("the store lists {now:?}, it listed {before:?}"));
        }
        data_or_marker(w)?;
        all_verify(w, &DRIVE)
    }

    fn after_run(&self, w: &World) -> Check {
        self.after_kill(w)?;
        let archives = listed(w, &STORE)?
            .iter()
            .filter(|i| i["kind"] == "archive")
            .count();
        let away = data_or_marker(w)?;
        if away != archives {
            return Err(format!("{away} of {archives} archives went away"));
        }
        newest_restores(w, &DRIVE)
    }
}
