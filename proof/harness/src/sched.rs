//! The scheduler: one simulated machine runs at a time, and every
//! destination operation is a point where the seeded scheduler picks which
//! machine goes next. So a seed is one interleaving of all machines'
//! operations, the same on every run, and "the k-th operation" names one
//! instant of it, where a crash can be injected.
//!
//! A machine holds the baton while it runs its own code; at each operation
//! it gives the baton back and waits to be picked. Because only the holder
//! runs, when it gives the baton back every other live machine is waiting,
//! so the pick depends only on the seed. Simulated time advances a second a
//! step, with now and then a jump (10 minutes to a day and more) that the
//! machines not picked meanwhile live through as a pause: that is how locks
//! go stale and pushes get stopped across prunes.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};

/// Where a crash goes: before or after the operation of this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash {
    pub step: u64,
    pub after: bool,
}

/// A deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The time jumps a step may bring, in seconds: past a lock's refresh
/// bound, its staleness, and the day a prune waits for a silent push.
const JUMPS: [f64; 4] = [600.0, 2400.0, 7200.0, 90_000.0];

struct State {
    runner: Option<usize>,
    waiting: BTreeSet<usize>,
    live: BTreeSet<usize>,
    rng: Rng,
    step: u64,
    time: f64,
    crash: Option<Crash>,
    /// The machine whose current process the crash ended.
    crashed: Option<usize>,
    /// `step machine what`, for the report of a failing run.
    trace: Vec<String>,
    /// No more time jumps (the next runs, one machine at a time).
    calm: bool,
}

pub struct Sched {
    state: Mutex<State>,
    cv: Condvar,
    /// One in this many steps jumps in time.
    jump_every: u64,
}

/// What a granted operation must do.
pub struct Grant {
    pub step: u64,
    /// The process dies right after this operation lands.
    pub crash_after: bool,
}

impl Sched {
    pub fn new(seed: u64, machines: usize, crash: Option<Crash>, jump_every: u64) -> Sched {
        Sched {
            state: Mutex::new(State {
                runner: None,
                waiting: BTreeSet::new(),
                live: (0..machines).collect(),
                rng: Rng::new(seed),
                step: 0,
                time: 0.0,
                crash,
                crashed: None,
                trace: Vec::new(),
                calm: false,
            }),
            cv: Condvar::new(),
            jump_every: jump_every.max(1),
        }
    }

    /// Simulated seconds since the start.
    pub fn time(&self) -> f64 {
        self.state.lock().expect("sched").time
    }

    pub fn steps(&self) -> u64 {
        self.state.lock().expect("sched").step
    }

    pub fn trace(&self) -> Vec<String> {
        self.state.lock().expect("sched").trace.clone()
    }

    /// The first wait of a machine's thread, for its first turn.
    pub fn enter(&self, m: usize) {
        let mut st = self.state.lock().expect("sched");
        st.waiting.insert(m);
        self.pick(&mut st);
        while st.runner != Some(m) {
            st = self.cv.wait(st).expect("sched");
        }
    }

    /// A machine is done with its script.
    pub fn leave(&self, m: usize) {
        let mut st = self.state.lock().expect("sched");
        st.live.remove(&m);
        if st.runner == Some(m) {
            st.runner = None;
        }
        self.pick(&mut st);
    }

    /// Whether the current process of `m` was ended by the crash.
    pub fn is_crashed(&self, m: usize) -> bool {
        self.state.lock().expect("sched").crashed == Some(m)
    }

    /// A new process starts on `m` (after a crash, the next tool run).
    pub fn restart(&self, m: usize) {
        let mut st = self.state.lock().expect("sched");
        if st.crashed == Some(m) {
            st.crashed = None;
        }
    }

    /// Waits for `m`'s turn to do `what`; `None` when its process is dead
    /// (crashed before this operation, or at an earlier one).
    pub fn op(&self, m: usize, what: &str) -> Option<Grant> {
        let mut st = self.state.lock().expect("sched");
        if st.crashed == Some(m) {
            return None;
        }
        st.runner = None;
        st.waiting.insert(m);
        self.pick(&mut st);
        while st.runner != Some(m) {
            st = self.cv.wait(st).expect("sched");
        }
        st.step += 1;
        st.time += 1.0;
        if !st.calm && st.rng.below(self.jump_every) == 0 {
            let j = JUMPS[st.rng.below(JUMPS.len() as u64) as usize];
            st.time += j;
        }
        let step = st.step;
        let line = format!("{step} m{m} t={} {what}", st.time);
        st.trace.push(line);
        match st.crash {
            Some(c) if c.step == step && !c.after => {
                st.crashed = Some(m);
                st.trace.push(format!("{step} m{m} crashed before it"));
                None
            }
            Some(c) if c.step == step => Some(Grant {
                step,
                crash_after: true,
            }),
            _ => Some(Grant {
                step,
                crash_after: false,
            }),
        }
    }

    /// The operation of a grant with `crash_after` landed: the process is dead.
    pub fn crash_now(&self, m: usize) {
        let mut st = self.state.lock().expect("sched");
        st.crashed = Some(m);
        let step = st.step;
        st.trace.push(format!("{step} m{m} crashed after it"));
    }

    /// Moves simulated time on.
    pub fn advance(&self, secs: f64) {
        self.state.lock().expect("sched").time += secs;
    }

    /// From now on only `m` runs (on the caller's thread), with no crash
    /// and no time jumps: the next runs after the scripted ones.
    pub fn solo(&self, m: usize) {
        let mut st = self.state.lock().expect("sched");
        st.live = [m].into();
        st.waiting.clear();
        st.runner = Some(m);
        st.crash = None;
        st.crashed = None;
        st.calm = true;
    }

    /// Gives the baton to a waiting machine once every live one waits.
    fn pick(&self, st: &mut State) {
        if st.runner.is_some() || st.waiting.is_empty() || st.waiting.len() < st.live.len() {
            return;
        }
        let all: Vec<usize> = st.waiting.iter().copied().collect();
        let m = all[st.rng.below(all.len() as u64) as usize];
        st.waiting.remove(&m);
        st.runner = Some(m);
        self.cv.notify_all();
    }
}
