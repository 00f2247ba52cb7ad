//! QMP jobs as snap-disk runs them: started under an id of ours, waited
//! for by their `JOB_STATUS_CHANGE` events (QEMU is asked after each quiet
//! spell whether the job is still there), their error read, dismissed; and
//! the jobs a killed run left, finished and named by the next.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use snap_shared::error::Result;

use super::Vm;
use crate::live::{OURS, qmp_err};
use crate::qmp::QmpError;

/// Every job id of ours starts so; the next run finds what a killed one left.
const JOB_PREFIX: &str = "snap-disk-snapshot-";

/// How long a job may go without an event before QEMU is asked whether it
/// still runs: a save of many GiB of RAM takes minutes, and says nothing.
const QUIET: Duration = Duration::from_secs(20);

/// The longest a job may take at all.
const JOB_LIMIT: Duration = Duration::from_secs(3600);

/// How a job ended.
pub(super) struct Ended {
    pub(super) error: Option<String>,
    pub(super) took: Duration,
}

impl Vm {
    /// Starts a job, waits for its end, reads its error and dismisses it.
    pub(super) fn job(&mut self, cmd: &str, id: &str, args: Value) -> Result<Ended> {
        let started = Instant::now();
        self.m.run(cmd, args)?;
        let ended = self.wait_concluded(id, started)?;
        self.m.run("job-dismiss", json!({ "id": id }))?;
        Ok(ended)
    }

    /// Waits for the job's `concluded`, asking QEMU after each quiet spell
    /// whether the job is still there.
    fn wait_concluded(&mut self, id: &str, started: Instant) -> Result<Ended> {
        let concluded = |d: &Value| d["id"] == id && d["status"] == "concluded";
        loop {
            match self.m.q.wait_event("JOB_STATUS_CHANGE", concluded, QUIET) {
                Ok(_) => break,
                Err(QmpError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(qmp_err(&self.m.socket, "JOB_STATUS_CHANGE", e)),
            }
            match self.job_state(id)? {
                Some((status, _)) if status == "concluded" => break,
                Some(_) if started.elapsed() < JOB_LIMIT => continue,
                Some((status, _)) => {
                    return Err(self.refused(
                        "query-jobs",
                        &format!("job {id} is still {status} after {} s", JOB_LIMIT.as_secs()),
                    ));
                }
                None => return Err(self.refused("query-jobs", &format!("job {id} vanished"))),
            }
        }
        let took = started.elapsed();
        let error = self.job_state(id)?.and_then(|(_, e)| e);
        Ok(Ended { error, took })
    }

    /// A job's status and error, if QEMU has it.
    fn job_state(&mut self, id: &str) -> Result<Option<(String, Option<String>)>> {
        let jobs = self.m.run("query-jobs", json!({}))?;
        Ok(jobs
            .as_array()
            .into_iter()
            .flatten()
            .find(|j| j["id"] == id)
            .map(|j| {
                let status = j["status"].as_str().unwrap_or("").to_string();
                let error = j["error"].as_str().map(str::to_string);
                (status, error)
            }))
    }

    /// Waits for and dismisses the jobs of ours a killed run left.
    pub(super) fn finish_leftover_jobs(&mut self) -> Result<Vec<String>> {
        let jobs = self.m.run("query-jobs", json!({}))?;
        let ours: Vec<(String, String)> = jobs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| {
                let id = j["id"].as_str()?;
                let kind = j["type"].as_str().unwrap_or("job");
                id.starts_with(JOB_PREFIX)
                    .then(|| (id.to_string(), kind.to_string()))
            })
            .collect();
        let mut out = Vec::new();
        for (id, kind) in ours {
            // Its `concluded` event may have come before this connection.
            let ended = match self.job_state(&id)? {
                Some((status, error)) if status == "concluded" => Ended {
                    error,
                    took: Duration::ZERO,
                },
                _ => self.wait_concluded(&id, Instant::now())?,
            };
            self.m.run("job-dismiss", json!({ "id": id }))?;
            out.push(match ended.error {
                None => format!("{kind} job {id} left by an interrupted run had finished"),
                Some(e) => format!("{kind} job {id} left by an interrupted run had failed: {e}"),
            });
        }
        Ok(out)
    }
}

/// A job id of this run: ours by its prefix, unique by the pid.
pub(super) fn job_id(what: &str) -> String {
    debug_assert!(JOB_PREFIX.starts_with(OURS));
    format!("{JOB_PREFIX}{what}-{}", std::process::id())
}
