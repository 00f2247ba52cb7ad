//! Whose lock another machine removed, and the records a process put after
//! that: a process whose lock is gone must publish nothing. It may put a
//! record and take it back (the check after the create-only write), but no
//! record it put after its lock was broken may be left when it ends. The
//! pruner breaks live locks of the pushers (`snap-prune --break-lock`) in
//! the middle of their uploads, so this is tried in every run.

use std::collections::{HashMap, HashSet};

/// What the shared destination saw of locks and records.
#[derive(Debug, Default)]
pub struct Fences {
    /// Lock key → the machine that made it.
    owner: HashMap<String, usize>,
    /// Machine → the lock its current process made last.
    held: HashMap<usize, String>,
    /// Locks another machine removed.
    broken: HashSet<String>,
    /// (machine, record key) put while that machine's lock was broken.
    suspects: Vec<(usize, String)>,
}

const LOCKS: &str = ".snap/locks/";

fn is_record(key: &str) -> bool {
    key.ends_with(".json") && !key.starts_with(".snap/")
}

impl Fences {
    /// `machine` created `key` (create-only).
    pub fn created(&mut self, machine: usize, key: &str) {
        if key.starts_with(LOCKS) {
            self.owner.insert(key.to_string(), machine);
            self.held.insert(machine, key.to_string());
        } else if is_record(key)
            && self
                .held
                .get(&machine)
                .is_some_and(|l| self.broken.contains(l))
        {
            self.suspects.push((machine, key.to_string()));
        }
    }

    /// `machine` removes `key`.
    pub fn removed(&mut self, machine: usize, key: &str) {
        if self.owner.get(key).is_some_and(|&o| o != machine) {
            self.broken.insert(key.to_string());
        }
    }

    /// A process of `machine` ended: what it left that it must not have
    /// (`exists` answers for a key now).
    pub fn ended(&mut self, machine: usize, exists: impl Fn(&str) -> bool) -> Vec<String> {
        self.held.remove(&machine);
        let (mine, others) = std::mem::take(&mut self.suspects)
            .into_iter()
            .partition(|(m, _)| *m == machine);
        self.suspects = others;
        mine.into_iter()
            .filter(|(_, key)| exists(key))
            .map(|(m, key)| {
                format!("m{m} left record {key}, put after another machine removed its lock")
            })
            .collect()
    }
}
