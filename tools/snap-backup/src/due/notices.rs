//! Telling the notify command about each job, and remembering, for the
//! quiet events (`media-missing`, `low-disk`), which day each was last told,
//! so a drive away all week is one notification a day, not one an hour.
//!
//! The memory is `notified.json` in the store: it only thins notifications
//! out, never decides what is due (that comes from the records). Lost or
//! unreadable, it costs one notification more.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;

use snap_cli::Reporter;
use snap_cli::notify::{self, Event, Notice};
use snap_shared::error::Exit;
use snap_shared::store::Store;

use super::job::{Outcome, Status};
use crate::cli::TOOL;
use crate::tools::exit_of;

const FILE: &str = "notified.json";

pub struct Notices<'a> {
    hook: Option<&'a str>,
    path: PathBuf,
    told: BTreeMap<String, NaiveDate>,
    today: NaiveDate,
    report: &'a Reporter,
}

impl<'a> Notices<'a> {
    pub fn new(
        hook: Option<&'a str>,
        store: &Store,
        today: NaiveDate,
        report: &'a Reporter,
    ) -> Self {
        let path = store.root.join(FILE);
        let told = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Notices {
            hook,
            path,
            told,
            today,
            report,
        }
    }

    /// Tells the hook how a job ended: success, failure, or media-missing
    /// (once a day per destination); a job that found nothing to do is not told.
    pub fn job(&mut self, o: &Outcome) {
        let event = match o.status {
            Status::Done => Event::Success,
            Status::Unchanged => return,
            Status::Partial | Status::Failed => Event::Failure,
            Status::MediaMissing => {
                let key = format!("media-missing {}", o.what.dest().unwrap_or_default());
                if !self.first_today(&key) {
                    return;
                }
                Event::MediaMissing
            }
        };
        let mut vars = vec![
            ("SNAP_JOB", o.what.kind().to_string()),
            ("SNAP_BYTES", o.bytes.to_string()),
            ("SNAP_COUNT", o.made.len().to_string()),
        ];
        if let Some(set) = o.what.set() {
            vars.push(("SNAP_SET", set.to_string()));
        }
        if let Some(dest) = o.what.dest() {
            vars.push(("SNAP_DEST", dest.to_string()));
        }
        self.tell(event, &o.line(), exit_of(o.exit), vars);
    }

    /// Tells of a place past its warning threshold, once a day per place.
    pub fn low_disk(&mut self, place: &str, message: &str, free: u64) {
        if !self.first_today(&format!("low-disk {place}")) {
            return;
        }
        let vars = vec![
            ("SNAP_JOB", "space".to_string()),
            ("SNAP_DEST", place.to_string()),
            ("SNAP_FREE_BYTES", free.to_string()),
        ];
        self.tell(Event::LowDisk, message, Exit::Ok, vars);
    }

    fn tell(&self, event: Event, message: &str, exit: Exit, vars: Vec<(&'static str, String)>) {
        if let Some(cmd) = self.hook {
            let notice = Notice {
                tool: TOOL,
                event,
                message,
                exit,
                vars,
            };
            notify::run(cmd, &notice, self.report);
        }
    }

    /// True (and remembered) the first time today `key` is asked for.
    fn first_today(&mut self, key: &str) -> bool {
        if self.told.get(key) == Some(&self.today) {
            return false;
        }
        self.told.insert(key.to_string(), self.today);
        let text = serde_json::to_vec(&self.told).unwrap_or_default();
        let write = |f: &mut std::fs::File| std::io::Write::write_all(f, &text);
        if let Err(e) = snap_shared::fsutil::write_atomic(&self.path, 0o600, true, write) {
            self.report.warn(&format!("{}: {e}", self.path.display()));
        }
        true
    }
}
