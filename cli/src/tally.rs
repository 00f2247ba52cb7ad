//! The progress line's words: what is done of what, how fast, and how long
//! is left, as restic shows it. Only the words: the `Reporter` owns the
//! terminal, and its spinner shows the elapsed time before them.
//!
//! `data: 45% 1234/2741 files, 84.1 MiB/186 MiB, 52.3 MiB/s, ETA 0:02`
//!
//! The percentage and the ETA come from the bytes when their total is known,
//! else from the items. The rate is the run's average so far: a backup's
//! speed swings from file to file, and an average's ETA does not jump. An
//! estimated total (snap-collect's, from the previous snapshot) is shown
//! with `~`, and dropped once the run passes it.

use std::time::Duration;

use snap_shared::size::human_bytes;

/// One progress reading.
#[derive(Debug, Clone, Copy)]
pub struct Tally<'a> {
    /// What runs: a set, an archive, a destination.
    pub label: &'a str,
    /// Items done, their total when known, and their name ("files", "blocks").
    pub items: Option<(u64, Option<u64>, &'static str)>,
    /// Bytes done and their total when known.
    pub bytes: Option<(u64, Option<u64>)>,
    /// The totals are an estimate (a previous run's), not a count.
    pub estimate: bool,
}

impl<'a> Tally<'a> {
    /// Items only (the blocks of a disk push).
    pub fn items(label: &'a str, done: u64, total: Option<u64>, name: &'static str) -> Self {
        Tally {
            label,
            items: Some((done, total, name)),
            bytes: None,
            estimate: false,
        }
    }

    /// Bytes only (an upload, an image).
    pub fn bytes(label: &'a str, done: u64, total: Option<u64>) -> Self {
        Tally {
            label,
            items: None,
            bytes: Some((done, total)),
            estimate: false,
        }
    }

    /// Files and their bytes.
    pub fn files(label: &'a str, files: (u64, Option<u64>), bytes: (u64, Option<u64>)) -> Self {
        Tally {
            label,
            items: Some((files.0, files.1, "files")),
            bytes: Some(bytes),
            estimate: false,
        }
    }

    /// The same, its totals an estimate.
    pub fn estimated(self) -> Self {
        Tally {
            estimate: true,
            ..self
        }
    }

    /// The line, `elapsed` into the run.
    pub fn render(&self, elapsed: Duration) -> String {
        let mut parts = Vec::new();
        let approx = if self.estimate { "~" } else { "" };
        // A total the run has passed was a poor estimate: say nothing of it.
        let live = |(done, total): (u64, Option<u64>)| total.filter(|t| done <= *t);
        if let Some((done, total, name)) = self.items {
            parts.push(match live((done, total)) {
                Some(t) => format!("{done}/{approx}{t} {name}"),
                None => format!("{done} {name}"),
            });
        }
        if let Some((done, total)) = self.bytes {
            parts.push(match live((done, total)) {
                Some(t) => format!("{}/{approx}{}", human_bytes(done), human_bytes(t)),
                None => human_bytes(done),
            });
        }
        let secs = elapsed.as_secs_f64();
        // Under a second the rate is noise. Bytes are the better measure
        // of work; items stand in where no bytes are counted.
        let timed = secs >= 1.0;
        let byte_rate = self.bytes.filter(|(d, _)| timed && *d > 0);
        let item_rate = self.items.filter(|(d, _, _)| timed && *d > 0);
        match (byte_rate, item_rate) {
            (Some((d, _)), _) => parts.push(format!("{}/s", human_bytes((d as f64 / secs) as u64))),
            (None, Some((d, _, name))) => parts.push(format!("{:.0} {name}/s", d as f64 / secs)),
            (None, None) => {}
        }
        // The share done: of the bytes when their total is known, else of the items.
        let of = |(d, t): (u64, Option<u64>)| live((d, t)).filter(|t| *t > 0).map(|t| (d, t));
        let share = self
            .bytes
            .and_then(of)
            .or_else(|| self.items.and_then(|(d, t, _)| of((d, t))));
        let pct = share.map(|(d, t)| d as f64 * 100.0 / t as f64);
        // At the average so far, the rest takes elapsed * rest / done.
        let eta = share
            .filter(|(d, _)| timed && *d > 0)
            .map(|(d, t)| Duration::from_secs_f64(secs * (t - d) as f64 / d as f64));
        let mut line = format!("{}: ", self.label);
        if let Some(p) = pct {
            line.push_str(&format!("{approx}{}% ", p.floor() as u64));
        }
        line.push_str(&parts.join(", "));
        if let Some(eta) = eta {
            line.push_str(&format!(", ETA {approx}{}", clock(eta)));
        }
        line
    }
}

/// `m:ss`, or `h:mm:ss` from an hour.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// Files and bytes with totals: percent of the bytes, both counts, the
    /// average rate, and the time the rest takes at it.
    #[test]
    fn known_totals_give_percent_rate_and_eta() {
        let t = Tally::files("data", (1234, Some(2741)), (50 * MIB, Some(200 * MIB)));
        assert_eq!(
            t.render(at(10)),
            "data: 25% 1234/2741 files, 50.0 MiB/200 MiB, 5.00 MiB/s, ETA 0:30"
        );
    }

    /// Before a second has passed there is no rate, so no ETA either.
    #[test]
    fn no_rate_in_the_first_second() {
        let t = Tally::bytes("a -> b", 3 * MIB, Some(4 * MIB));
        assert_eq!(
            t.render(Duration::from_millis(400)),
            "a -> b: 75% 3.00 MiB/4.00 MiB"
        );
    }

    /// Without totals: counts and a rate, nothing made up.
    #[test]
    fn unknown_totals_give_counts_and_rate() {
        let t = Tally::files("data", (10, None), (2 * MIB, None));
        assert_eq!(t.render(at(2)), "data: 10 files, 2.00 MiB, 1.00 MiB/s");
    }

    /// Items alone (blocks) measure percent, rate and ETA in items.
    #[test]
    fn items_alone() {
        let t = Tally::items("t9", 30, Some(120), "blocks");
        assert_eq!(
            t.render(at(3)),
            "t9: 25% 30/120 blocks, 10 blocks/s, ETA 0:09"
        );
    }

    /// An estimate is marked `~`; once passed, its totals are dropped.
    #[test]
    fn estimates_are_marked_and_dropped_when_passed() {
        let t = Tally::files("home", (50, Some(100)), (MIB, Some(4 * MIB))).estimated();
        assert_eq!(
            t.render(at(1)),
            "home: ~25% 50/~100 files, 1.00 MiB/~4.00 MiB, 1.00 MiB/s, ETA ~0:03"
        );
        let past = Tally::files("home", (150, Some(100)), (5 * MIB, Some(4 * MIB))).estimated();
        assert_eq!(past.render(at(5)), "home: 150 files, 5.00 MiB, 1.00 MiB/s");
    }

    /// Files with no bytes (empty files): the percentage falls back to files.
    #[test]
    fn empty_files_count_by_files() {
        let t = Tally::files("e", (5, Some(10)), (0, Some(0)));
        assert_eq!(
            t.render(at(1)),
            "e: 50% 5/10 files, 0 B/0 B, 5 files/s, ETA 0:01"
        );
    }

    /// Long runs read in hours.
    #[test]
    fn clock_reads_hours() {
        assert_eq!(clock(at(59)), "0:59");
        assert_eq!(clock(at(3725)), "1:02:05");
    }
}
