//! One run of the scenario: three pushers and a pruner, each a simulated
//! machine (its own host, machine id, process ids, state folder), running
//! the real snap-push and snap-prune in this process against one shared
//! in-memory destination, for a number of rounds, in the interleaving a
//! seed gives, with at most one crash injected. Then the next runs, an
//! hour later: every pusher pushes its rounds again, a day passes, the
//! pruner prunes; they must all succeed and leave nothing that no record
//! needs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use object_store::memory::InMemory;

use snap_dest::host::{Host, Me, Timing};
use snap_dest::memory::{Registered, register, unregister};

use crate::sched::{Crash, Sched};
use crate::sim_store::{Shared, View};
use crate::world::Pusher;

/// A simulated machine: its clocks are the scheduler's, its processes are
/// the tool runs it makes, one at a time.
#[derive(Debug)]
struct SimHost {
    id: usize,
    shared: Arc<Shared>,
    /// The process running now (pid), if any.
    current: Mutex<Option<u32>>,
    next_pid: Mutex<u32>,
}

impl Host for SimHost {
    fn now(&self) -> DateTime<Utc> {
        self.shared.at(self.shared.sched.time())
    }

    fn mark(&self) -> f64 {
        self.shared.sched.time()
    }

    fn me(&self) -> Me {
        let pid = self.current.lock().expect("pid").unwrap_or(0);
        Me {
            host: format!("m{}", self.id),
            user: "sim".into(),
            machine: format!("machine-{}", self.id),
            boot: "boot-1".into(),
            pid,
            start: pid as u64,
        }
    }

    fn alive(&self, pid: u32, _start: u64) -> bool {
        *self.current.lock().expect("pid") == Some(pid) && !self.shared.sched.is_crashed(self.id)
    }

    fn timing(&self) -> Timing {
        Timing {
            stale_after: std::time::Duration::from_secs(1800),
        }
    }
}

impl SimHost {
    fn start_process(&self) {
        let mut next = self.next_pid.lock().expect("pid");
        *next += 1;
        *self.current.lock().expect("pid") = Some(*next);
    }

    fn end_process(&self) {
        *self.current.lock().expect("pid") = None;
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub steps: u64,
    pub violations: Vec<String>,
    pub trace: Vec<String>,
    /// Exit codes of the scripted runs, by machine.
    pub exits: Vec<Vec<i32>>,
}

/// The scenario's shape.
pub struct Shape<'a> {
    pub pushers: &'a [Pusher],
    pub rounds: usize,
    pub work: &'a Path,
    pub jump_every: u64,
}

/// Runs the scenario for `seed`, crashing at `crash`.
pub fn run(shape: &Shape, seed: u64, crash: Option<Crash>) -> Outcome {
    let machines = shape.pushers.len() + 1;
    let shared = Arc::new(Shared {
        inner: Arc::new(InMemory::new()),
        sched: Arc::new(Sched::new(seed, machines, crash, shape.jump_every)),
        times: Mutex::new(Default::default()),
        epoch: "2026-12-01T00:00:00Z".parse().expect("epoch"),
        check: Box::new(|store, _| crate::check::records(store)),
        violations: Mutex::new(Vec::new()),
        fences: Mutex::new(Default::default()),
    });
    let hosts: Vec<Arc<SimHost>> = (0..machines)
        .map(|id| {
            Arc::new(SimHost {
                id,
                shared: shared.clone(),
                current: Mutex::new(None),
                next_pid: Mutex::new(100),
            })
        })
        .collect();
    for (id, host) in hosts.iter().enumerate() {
        let view = Arc::new(View {
            shared: shared.clone(),
            machine: id,
        });
        register(
            &format!("m{id}"),
            Registered {
                store: view.clone(),
                parts: view,
                host: host.clone(),
                concurrency: 1,
            },
        );
    }
    let states: Vec<PathBuf> = (0..machines)
        .map(|id| shape.work.join(format!("state-{seed}-{id}")))
        .collect();
    let exits: Vec<Vec<i32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..machines)
            .map(|id| {
                let (host, sched, state) = (hosts[id].clone(), shared.sched.clone(), &states[id]);
                s.spawn(move || {
                    sched.enter(id);
                    let codes = script(shape, id, &host, &sched, state);
                    sched.leave(id);
                    codes
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut out = Outcome {
        steps: shared.sched.steps(),
        exits,
        ..Outcome::default()
    };
    out.violations
        .extend(shared.violations.lock().expect("violations").drain(..));
    out.violations
        .extend(next_runs(shape, &shared, &hosts, &states, seed));
    out.trace = shared.sched.trace();
    for id in 0..machines {
        unregister(&format!("m{id}"));
    }
    for s in &states {
        let _ = std::fs::remove_dir_all(s);
    }
    out
}

/// A machine's rounds: pushers push their round's archive and disk
/// snapshot (a second try if the first fails), the pruner prunes four times
/// a round.
fn script(shape: &Shape, id: usize, host: &SimHost, sched: &Sched, state: &Path) -> Vec<i32> {
    let mut codes = Vec::new();
    if id == shape.pushers.len() {
        // The pruner runs often (a cron job of its own), busy or not; every
        // third run with --break-lock, which removes the pushers' live locks
        // in the middle of their uploads.
        for k in 0..shape.rounds * 4 {
            codes.push(tool_run(id, host, sched, state, shape, None, k % 3 == 2));
        }
        return codes;
    }
    for round in 0..shape.rounds {
        for _attempt in 0..2 {
            let code = tool_run(id, host, sched, state, shape, Some(round), false);
            codes.push(code);
            if code == 0 {
                break;
            }
        }
    }
    codes
}

/// One tool run on machine `id`: a new process.
fn tool_run(
    id: usize,
    host: &SimHost,
    sched: &Sched,
    state: &Path,
    shape: &Shape,
    round: Option<usize>,
    break_locks: bool,
) -> i32 {
    sched.restart(id);
    host.start_process();
    let dest = format!("memory://m{id}");
    let state = state.display().to_string();
    let code = if id < shape.pushers.len() {
        let p = &shape.pushers[id];
        let mut args: Vec<String> = vec![
            "snap-push".into(),
            "-q".into(),
            "--parallel".into(),
            "1".into(),
        ];
        let rounds: Vec<usize> = match round {
            Some(r) => vec![r],
            None => (0..shape.rounds).collect(),
        };
        for r in rounds {
            for f in &p.rounds[r] {
                args.push("--file".into());
                args.push(f.display().to_string());
            }
        }
        args.extend([
            "--dest".into(),
            dest,
            "--state-dir".into(),
            state,
            "--store".into(),
            p.store.display().to_string(),
        ]);
        snap_push::main(args.into_iter().map(Into::into))
    } else {
        let mut args = vec![
            "snap-prune",
            "-q",
            "--dest",
            &dest,
            "--keep-last",
            "1",
            "--state-dir",
            &state,
        ];
        if break_locks {
            args.push("--break-lock");
        }
        snap_prune::main(args.iter().map(Into::into))
    };
    host.end_process();
    let now: std::collections::HashSet<String> = crate::sim_store::snapshot(&host.shared.inner)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let exists = |key: &str| now.contains(key);
    let left = host.shared.fences.lock().expect("fences").ended(id, exists);
    host.shared
        .violations
        .lock()
        .expect("violations")
        .extend(left);
    code
}

/// The next runs after the scripted ones, in order, with no crash: each
/// pusher again, then a day later the pruner. Every run must succeed and
/// leave every record whole and nothing else.
fn next_runs(
    shape: &Shape,
    shared: &Arc<Shared>,
    hosts: &[Arc<SimHost>],
    states: &[PathBuf],
    seed: u64,
) -> Vec<String> {
    let mut bad = Vec::new();
    let machines = hosts.len();
    // The next cron runs come an hour later: a lock a crash left is stale by
    // then (a killed prune blocks pushes for half an hour at most), and the
    // prune a day after that (it waits a day for a silent push's lock).
    shared.sched.advance(3600.0);
    for id in 0..machines {
        if id + 1 == machines {
            shared.sched.advance(90_000.0);
        }
        shared.sched.solo(id);
        let code = tool_run(
            id,
            &hosts[id],
            &shared.sched,
            &states[id],
            shape,
            None,
            false,
        );
        if code != 0 {
            bad.push(format!("seed {seed}: the next run of m{id} exited {code}"));
        }
    }
    bad.extend(shared.violations.lock().expect("violations").drain(..));
    bad.extend(crate::check::records(&shared.inner));
    bad.extend(crate::check::leaks(&shared.inner));
    bad
}
