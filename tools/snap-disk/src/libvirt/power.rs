//! Stopping a domain for a restore and starting it again: `virsh shutdown`
//! (the guest's own clean shutdown, through ACPI or its agent), a wait, and
//! `virsh destroy` (pulling the plug) only when the user said `--force`.

use std::time::{Duration, Instant};

use snap_cli::Reporter;
use snap_shared::error::{Error, Exit, Result};

use super::Domain;

/// A domain this run shut down, to start again once the restore is done.
pub struct Stopped {
    dom: Domain,
    was_running: bool,
}

impl Stopped {
    /// Shuts the domain down when it runs and waits up to `timeout` for it
    /// to be off; then destroys it only with `force`, else fails (75) with
    /// the domain still running and nothing changed.
    pub fn shut_down(
        dom: &Domain,
        timeout: Duration,
        force: bool,
        report: &Reporter,
    ) -> Result<Stopped> {
        let stopped = Stopped {
            dom: dom.clone(),
            was_running: dom.is_active()?,
        };
        if !stopped.was_running {
            return Ok(stopped);
        }
        report.note(&format!(
            "domain {}: shutting down (up to {} s)",
            dom.name,
            timeout.as_secs()
        ));
        dom.run("shutdown", &[])?;
        let t0 = Instant::now();
        while dom.is_active()? {
            if t0.elapsed() >= timeout {
                if !force {
                    return Err(Error::new(
                        Exit::TempFail,
                        format!("domain {}", dom.name),
                        format!("did not shut down within {} s", timeout.as_secs()),
                    )
                    .with_hint(
                        "nothing was restored; give the guest longer (--timeout SECS), or \
                         --force to destroy it (pull the plug) after the timeout",
                    ));
                }
                report.warn(&format!(
                    "domain {} did not shut down within {} s: destroying it (--force)",
                    dom.name,
                    timeout.as_secs()
                ));
                dom.run("destroy", &[])?;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(stopped)
    }

    /// Starts the domain again, when this run shut it down.
    pub fn start_again(self, report: &Reporter) -> Result<()> {
        if self.was_running {
            self.dom.run("start", &[])?;
            report.note(&format!("domain {} started again", self.dom.name));
        }
        Ok(())
    }

    /// The domain stays off (the restore failed): says how to go on.
    pub fn left_off(&self) -> Option<String> {
        self.was_running.then(|| {
            format!(
                "domain {} stays shut off: finish the restore, then `virsh start {}`",
                self.dom.name, self.dom.name
            )
        })
    }
}
