//! The sweep: a scenario's state laid once, its run counted, then killed at
//! each point in turn, checked, rerun and checked again.
//!
//! Every point starts from the same state at the same absolute path (records
//! hold absolute paths): the prepared folder is kept as `template/` and
//! copied to `work/` with `cp -a`, which keeps hard links and times.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::fault::{self, Fault};
use crate::power;
use crate::trace::{self, Traced};

/// A folder a scenario works in, and where the snap binaries are.
pub struct World {
    pub root: PathBuf,
    pub bin: PathBuf,
    /// Given to every tool (a server's address and keys).
    pub env: Vec<(String, String)>,
}

pub type Check = Result<(), String>;

impl World {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A snap tool with a clean environment: its state and config under the world.
    pub fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_STATE_HOME", self.path("home/state"))
            .env("XDG_CONFIG_HOME", self.path("home/config"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.root);
        c
    }

    /// Runs a command that must succeed; its output.
    pub fn ok(&self, cmd: &mut Command) -> Result<Output, String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{:?} exited {:?}: {}",
                cmd.get_program(),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out)
    }
}

/// One tool's representative run, and what must hold around it.
pub trait Scenario {
    fn name(&self) -> &'static str;
    /// Lays the state before the run (once, then copied for each point).
    fn prepare(&self, w: &World) -> Check;
    /// The run that is killed.
    fn run(&self, w: &World) -> Command;
    /// What must hold after a kill, before anything else runs.
    fn after_kill(&self, w: &World) -> Check;
    /// What must hold once the run, or the rerun after a kill, finished.
    fn after_run(&self, w: &World) -> Check;
    /// The run after a kill: the run itself, unless a scenario says
    /// otherwise, or nothing when the killed run had done its work already
    /// (a named snapshot it made is there: making it again is refused).
    fn rerun(&self, w: &World) -> Option<Command> {
        Some(self.run(w))
    }
    /// The folder that is a removable drive, for the unplugged-drive sweep.
    fn drive(&self) -> Option<&'static str> {
        None
    }
    /// State that is not in the folder (a bucket), laid before each point's run.
    fn before_each(&self, _w: &World, _point: u64) -> Check {
        Ok(())
    }
    /// Environment for every tool of the scenario (starts a server the first time).
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// What the sweep of one scenario found.
#[derive(Debug, Default)]
pub struct Report {
    pub name: &'static str,
    /// State-changing syscalls of the whole run.
    pub points: u64,
    /// The points killed at.
    pub swept: u64,
    /// Points the run finished before (it took another path this time).
    pub finished_early: u64,
    /// Power-loss states laid and checked (two per point).
    pub power_states: u64,
    /// Faulted runs that failed as they should.
    pub refused: u64,
    /// Each failure: the point, the syscall, what broke.
    pub failures: Vec<String>,
    /// Faulted runs that finished anyway, and what they were refused.
    pub tolerated: Vec<String>,
    pub by_syscall: std::collections::BTreeMap<&'static str, u64>,
}

/// A killed run that takes longer than this is a hang.
const TIMEOUT: Duration = Duration::from_secs(120);

fn lay(from: &Path, to: &Path) -> Check {
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The points to kill at: all of `1..=n`, or `sample` of them spread evenly.
pub fn points(n: u64, sample: Option<u64>) -> Vec<u64> {
    match sample {
        Some(s) if s < n => (0..s).map(|i| 1 + i * (n - 1) / (s.max(2) - 1)).collect(),
        _ => (1..=n).collect(),
    }
}

/// A scenario's world, laid once and kept as a template, and its whole run counted.
struct Laid {
    w: World,
    base: PathBuf,
    template: PathBuf,
}

/// Prepares `s` in `scratch` and counts its whole run (which must succeed).
fn set_up(
    s: &dyn Scenario,
    scratch: &Path,
    bin: &Path,
    report: &mut Report,
) -> Result<Laid, String> {
    let base = scratch.join(s.name());
    let _ = std::fs::remove_dir_all(&base);
    let w = World {
        root: base.join("work"),
        bin: bin.to_path_buf(),
        env: s.env(),
    };
    let template = base.join("template");
    std::fs::create_dir_all(&w.root)
        .map_err(|e| e.to_string())
        .and_then(|()| s.prepare(&w))
        .and_then(|()| std::fs::rename(&w.root, &template).map_err(|e| e.to_string()))
        .map_err(|e| format!("prepare: {e}"))?;
    let t = lay(&template, &w.root)
        .and_then(|()| s.before_each(&w, 0))
        .and_then(|()| traced(s, &w, None, &mut |_| None))
        .map_err(|e| format!("the whole run: {e}"))?;
    report.points = t.points;
    report.by_syscall = t.by_syscall;
    Ok(Laid { w, base, template })
}

/// Lays the scenario, counts its run, then checks each point `ks` gives
/// for that count with `one`; a point that fails is reported with its error.
fn drive(
    s: &dyn Scenario,
    scratch: &Path,
    bin: &Path,
    ks: impl Fn(u64) -> Vec<u64>,
    mut one: impl FnMut(&Laid, u64, &mut Report) -> Check,
) -> Report {
    let mut report = Report {
        name: s.name(),
        ..Report::default()
    };
    let laid = match set_up(s, scratch, bin, &mut report) {
        Ok(l) => l,
        Err(e) => {
            report.failures.push(e);
            return report;
        }
    };
    for k in ks(report.points) {
        report.swept += 1;
        if let Err(e) = one(&laid, k, &mut report) {
            report.failures.push(format!("point {k}: {e}"));
        }
    }
    let _ = std::fs::remove_dir_all(&laid.base);
    report
}

/// Sweeps one scenario in `scratch`, with the binaries in `bin`.
pub fn sweep(s: &dyn Scenario, scratch: &Path, bin: &Path, sample: Option<u64>) -> Report {
    drive(
        s,
        scratch,
        bin,
        |n| points(n, sample),
        |l, k, r| one_point(s, &l.w, &l.template, k, r),
    )
}

/// Runs the scenario's run under the tracer, its stderr to `stderr`.
fn trace_run(
    s: &dyn Scenario,
    w: &World,
    kill_at: Option<u64>,
    stderr: Stdio,
    observe: &mut dyn FnMut(&trace::Stop) -> trace::Verdict,
) -> Result<Traced, String> {
    let mut cmd = s.run(w);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    trace::run_observed(&mut cmd, kill_at, TIMEOUT, observe).map_err(|e| format!("trace: {e}"))
}

/// Runs the scenario traced, `observe` seeing each point; `Ok` only when it
/// was killed as asked, or finished and its result checks out.
fn traced(
    s: &dyn Scenario,
    w: &World,
    kill_at: Option<u64>,
    observe: &mut dyn FnMut(&trace::Stop) -> trace::Verdict,
) -> Result<Traced, String> {
    let t = trace_run(s, w, kill_at, Stdio::null(), observe)?;
    match (&t.status, kill_at) {
        (Some(st), _) if !st.success() => {
            let again = s.run(w).output().map_err(|e| e.to_string())?;
            Err(format!(
                "exited {:?} (a rerun says: {})",
                st.code(),
                String::from_utf8_lossy(&again.stderr).trim()
            ))
        }
        (Some(_), _) => s.after_run(w).map(|()| t),
        (None, None) => Err("was killed with no kill asked for (timeout)".into()),
        (None, Some(_)) => Ok(t),
    }
}

fn one_point(s: &dyn Scenario, w: &World, template: &Path, k: u64, r: &mut Report) -> Check {
    lay(template, &w.root)?;
    s.before_each(w, k)?;
    let t = traced(s, w, Some(k), &mut |_| None)?;
    if t.status.is_some() {
        r.finished_early += 1;
        return Ok(());
    }
    let at = t.last.unwrap_or("?");
    s.after_kill(w)
        .map_err(|e| format!("killed before {at}: {e}"))?;
    recovers(s, w).map_err(|e| format!("killed before {at}: {e}"))
}

/// The rerun after a crash succeeds and its result checks out.
fn recovers(s: &dyn Scenario, w: &World) -> Check {
    if let Some(mut again) = s.rerun(w) {
        w.ok(&mut again).map_err(|e| format!("the rerun: {e}"))?;
    }
    s.after_run(w).map_err(|e| format!("after the rerun: {e}"))
}

/// Sweeps one scenario for power loss: at each point (and once after the
/// run finished), the two states a power cut leaves are laid, checked,
/// and rerun. After a finished run, what it made must be there without a
/// rerun: an exit 0 means it is on disk.
pub fn sweep_power(s: &dyn Scenario, scratch: &Path, bin: &Path, sample: Option<u64>) -> Report {
    let and_the_end = |n| {
        let mut ks = points(n, sample);
        ks.push(n + 1);
        ks
    };
    drive(s, scratch, bin, and_the_end, |l, k, r| {
        power_point(s, l, k, r)
    })
}

fn power_point(s: &dyn Scenario, laid: &Laid, k: u64, r: &mut Report) -> Check {
    let w = &laid.w;
    lay(&laid.template, &w.root)?;
    s.before_each(w, k)?;
    let before = power::Image::before(&w.root, &laid.template, &laid.base.join("before"))?;
    let mut rec = power::Recorder::new(&w.root, before, &laid.base.join("copies"))?;
    let t = traced(s, w, Some(k), &mut |stop| rec.observe(stop))?;
    if let Some(e) = rec.error.take() {
        return Err(format!("recording: {e}"));
    }
    let finished = t.status.is_some();
    if finished && k <= r.points {
        r.finished_early += 1;
    }
    let at = match finished {
        true => "after the run".to_string(),
        false => format!("before {}", t.last.unwrap_or("?")),
    };
    let killed = laid.base.join("killed");
    let _ = std::fs::remove_dir_all(&killed);
    std::fs::rename(&w.root, &killed).map_err(|e| e.to_string())?;
    for loss in power::Loss::ALL {
        let _ = std::fs::remove_dir_all(&w.root);
        power::lay(&rec, loss, &killed, &w.root)?;
        r.power_states += 1;
        let checked = match finished {
            true => s.after_run(w),
            false => s.after_kill(w).and_then(|()| recovers(s, w)),
        };
        checked.map_err(|e| format!("power cut {at} ({}): {e}", loss.name()))?;
    }
    Ok(())
}

/// Sweeps one scenario for a fault of its surroundings: for each point k,
/// the run meets `fault` from k on. It must fail with one line that names
/// the error and an exit code docs/design.md gives it, or finish with a result
/// that checks out; either way nothing published changes, and once the
/// fault is gone (space freed, drive back) the rerun finishes the work.
/// A scenario without a drive is not swept for an unplugged one.
pub fn sweep_fault(
    s: &dyn Scenario,
    scratch: &Path,
    bin: &Path,
    sample: Option<u64>,
    fault: Fault,
) -> Option<Report> {
    let under = match fault {
        Fault::Full => "",
        Fault::Unplugged => s.drive()?,
    };
    Some(drive(
        s,
        scratch,
        bin,
        |n| points(n, sample),
        |l, k, r| fault_point(s, l, k, fault, under, r),
    ))
}

fn fault_point(
    s: &dyn Scenario,
    laid: &Laid,
    k: u64,
    fault: Fault,
    under: &str,
    r: &mut Report,
) -> Check {
    let w = &laid.w;
    lay(&laid.template, &w.root)?;
    s.before_each(w, k)?;
    let mut inject = fault::Injector::new(fault, k, &w.path(under));
    let stderr_at = laid.base.join("stderr");
    let stderr = std::fs::File::create(&stderr_at).map_err(|e| e.to_string())?;
    let t = trace_run(s, w, None, stderr.into(), &mut |stop| inject.observe(stop))?;
    let said = std::fs::read_to_string(&stderr_at).unwrap_or_default();
    let status = t.status.ok_or("timed out")?;
    if t.failed == 0 {
        r.finished_early += 1;
    }
    if status.success() {
        // The refused syscalls were not needed (a flush of a lock, say): the result must be whole.
        let past = format!("exit 0 past {}", inject.refused.join(", "));
        if t.failed > 0 {
            r.tolerated.push(format!("point {k}: {past}"));
        }
        // A lock left at a destination makes other machines wait: it must be named.
        let lock_left = inject.refused.iter().any(|c| c.contains(".snap/locks/"));
        if lock_left && !said.contains("lock not removed") {
            return Err(format!(
                "{past} without naming the lock left: {:?}",
                said.trim()
            ));
        }
        return s.after_run(w).map_err(|e| format!("{past}, yet: {e}"));
    }
    r.refused += 1;
    let code = status.code().unwrap_or(-1);
    let lines: Vec<&str> = said.lines().collect();
    if !fault.exit_codes().contains(&code) || !said.contains(fault.words()) || lines.len() > 2 {
        return Err(format!(
            "exit {code} with {:?}: want exit {:?} and one line naming \"{}\"",
            said.trim(),
            fault.exit_codes(),
            fault.words()
        ));
    }
    s.after_kill(w)?;
    recovers(s, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample spreads over the run, first and last point included.
    #[test]
    fn samples_spread() {
        assert_eq!(points(5, None), vec![1, 2, 3, 4, 5]);
        assert_eq!(points(100, Some(3)), vec![1, 50, 100]);
        assert_eq!(points(3, Some(10)), vec![1, 2, 3]);
        assert_eq!(points(10, Some(1)), vec![1]);
    }
}
