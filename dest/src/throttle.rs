//! `--bwlimit`: one rate shared by every transfer of a run.
//!
//! Each transfer reserves its bytes on a single timeline (the time at which
//! the link is free again) and waits until its slot starts. The average rate
//! over any stretch longer than one chunk is the limit, whatever the number
//! of parallel parts; chunks are 1 MiB for folders and one part for buckets.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: f64,
    free_at: Mutex<Instant>,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_sec: bytes_per_sec.max(1) as f64,
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// The limit, in bytes a second.
    pub fn rate(&self) -> u64 {
        self.bytes_per_sec as u64
    }

    /// Reserves `bytes` and returns when the caller may send them.
    fn reserve(&self, bytes: u64) -> Instant {
        let mut free_at = self.free_at.lock().expect("throttle lock");
        let start = (*free_at).max(Instant::now());
        *free_at = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec);
        start
    }

    /// Blocks the thread until `bytes` may go.
    pub fn wait_blocking(&self, bytes: u64) {
        let start = self.reserve(bytes);
        let now = Instant::now();
        if start > now {
            std::thread::sleep(start - now);
        }
    }

    /// Waits (async) until `bytes` may go.
    pub async fn wait(&self, bytes: u64) {
        let start = self.reserve(bytes);
        tokio::time::sleep_until(start.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reservations queue one after another at the rate: the fourth MiB at 1 MiB/s starts 3 s on.
    #[test]
    fn reservations_follow_the_rate() {
        let t = Throttle::new(1 << 20);
        let first = t.reserve(1 << 20);
        t.reserve(1 << 20);
        t.reserve(1 << 20);
        let fourth = t.reserve(1 << 20);
        let gap = fourth - first;
        assert!(
            gap >= Duration::from_millis(2990) && gap <= Duration::from_millis(3100),
            "{gap:?}"
        );
    }
}
