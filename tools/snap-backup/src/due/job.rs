//! One job of a `--due` run and how it ended: its summary line on stderr,
//! its `job` record on stdout, and its notification.

use std::time::Instant;

use serde_json::{Value, json};

use snap_shared::record::SCHEMA;

/// What a job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A disk, and snap-disk create's arguments for it (an image, or a libvirt domain).
    Disk {
        disk: String,
        args: Vec<String>,
    },
    Collect {
        set: String,
    },
    Pack {
        set: String,
        full: bool,
    },
    Push {
        dest: String,
    },
    Prune {
        dest: Option<String>,
    },
    /// Archives at a destination, or (`dest` None) the store's own.
    Verify {
        dest: Option<String>,
        names: Vec<String>,
    },
}

impl What {
    /// The job's kind, as in the record: disk, collect, pack, push, prune, verify.
    pub fn kind(&self) -> &'static str {
        match self {
            What::Disk { .. } => "disk",
            What::Collect { .. } => "collect",
            What::Pack { .. } => "pack",
            What::Push { .. } => "push",
            What::Prune { .. } => "prune",
            What::Verify { .. } => "verify",
        }
    }

    /// `collect data`, `push usb`, `prune the store`.
    pub fn label(&self) -> String {
        match self {
            What::Disk { disk, .. } => format!("disk {disk}"),
            What::Collect { set } => format!("collect {set}"),
            What::Pack { set, full } => {
                format!(
                    "pack {set} ({})",
                    if *full { "full" } else { "incremental" }
                )
            }
            What::Push { dest } => format!("push {dest}"),
            What::Prune { dest: Some(d) } => format!("prune {d}"),
            What::Prune { dest: None } => "prune the store".into(),
            What::Verify { dest, names } => format!(
                "verify {} ({} archives)",
                dest.as_deref().unwrap_or("the store"),
                names.len()
            ),
        }
    }

    pub fn set(&self) -> Option<&str> {
        match self {
            What::Collect { set } | What::Pack { set, .. } => Some(set),
            What::Disk { disk, .. } => Some(disk),
            _ => None,
        }
    }

    pub fn dest(&self) -> Option<&str> {
        match self {
            What::Push { dest } => Some(dest),
            What::Prune { dest } | What::Verify { dest, .. } => dest.as_deref(),
            _ => None,
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It made, sent, removed or read something.
    Done,
    /// It ran and there was nothing to do.
    Unchanged,
    /// Done, with errors (exit 1).
    Partial,
    /// The destination is not there (exit 75 from a push): quiet, tried again next run.
    MediaMissing,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Unchanged => "unchanged",
            Status::Partial => "partial",
            Status::MediaMissing => "media-missing",
            Status::Failed => "failed",
        }
    }
}

/// A finished job.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub what: What,
    pub why: String,
    pub exit: i32,
    pub status: Status,
    /// What it made, sent or removed (`SET/ID`, objects), for the record.
    pub made: Vec<String>,
    pub bytes: u64,
    pub seconds: f64,
}

impl Outcome {
    /// Reads a job's records into an outcome.
    pub fn of(what: What, why: String, exit: i32, records: &[Value], started: Instant) -> Outcome {
        let mut made = Vec::new();
        let mut bytes = 0;
        for r in records {
            let name = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            match r["kind"].as_str() {
                Some("snapshot") | Some("archive") => {
                    made.push(format!("{}/{}", name("set"), name("id")));
                    bytes += r["bytes"].as_u64().unwrap_or(0);
                }
                Some("disk-snapshot") => {
                    made.push(format!("disks/{}/{}", name("disk"), name("name")))
                }
                // An archive the destination had already is not news.
                Some("pushed") if r["skipped"] != true => {
                    made.push(name("object"));
                    bytes += r["sent"].as_u64().unwrap_or(0);
                }
                // Removed, or (keep_archives) its data dropped from the store.
                Some("pruned") if r["action"] == "remove" || r.get("data_away").is_some() => {
                    made.push(format!("{}/{}", name("target"), name("id")));
                }
                Some("verified") => made.push(name("what")),
                _ => {}
            }
        }
        let status = match exit {
            0 if made.is_empty() => Status::Unchanged,
            0 => Status::Done,
            1 => Status::Partial,
            75 if matches!(what, What::Push { .. }) => Status::MediaMissing,
            _ => Status::Failed,
        };
        Outcome {
            what,
            why,
            exit,
            status,
            made,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// `collect data: done (1 made; daily, last 2025-04-01 00:10)`.
    pub fn line(&self) -> String {
        let what = match self.status {
            Status::Done | Status::Partial => format!(
                "{} ({} {})",
                self.status.name(),
                self.made.len(),
                match &self.what {
                    What::Push { .. } => "sent",
                    What::Prune { .. } => "removed",
                    What::Verify { .. } => "read back",
                    _ => "made",
                }
            ),
            Status::Failed => format!("failed (exit {})", self.exit),
            s => s.name().to_string(),
        };
        format!("{}: {what}; {}", self.what.label(), self.why)
    }

    /// The `job` record.
    pub fn record(&self) -> Value {
        json!({
            "schema": SCHEMA,
            "kind": "job",
            "job": self.what.kind(),
            "set": self.what.set(),
            "dest": self.what.dest(),
            "status": self.status.name(),
            "exit": self.exit,
            "why": self.why,
            "made": self.made,
            "bytes": self.bytes,
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
        })
    }
}
