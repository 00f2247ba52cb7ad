//! The restorer: what a restore writes into, how far it came, and how each
//! entry's outcome is counted and named. Its ways of reading live beside it:
//! `from_index` (snapshots and snap archives) and `from_tar` (any tar).

use snap_cli::Reporter;
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::index::Entry;

use crate::damage::is_damage;
use crate::indexes::Select;
use crate::members::show;
use crate::outcome::Tally;
use crate::target::{Meta, Outcome, Refused, Target};
use crate::writers::Writers;

impl<'a> Restorer<'a> {
    pub fn new(
        target: Target,
        select: &'a Select,
        dec: &'a Decrypt,
        report: &'a Reporter,
    ) -> Restorer<'a> {
        Restorer {
            target,
            select,
            dec,
            report,
            tally: Tally::default(),
            buf: vec![0; 1 << 20],
            writers: None,
            matched: vec![false; select.count()],
            fatal: None,
            written: Written::default(),
            watch: None,
            label: String::new(),
            total: None,
            failed: Default::default(),
            owners: crate::owners::Owners::new(false),
            deltas: super::deltas::Deltas::default(),
        }
    }

    /// The metadata an index entry gives: ids by the owner's names here,
    /// exactly its attributes.
    pub(crate) fn meta_of(&mut self, e: &Entry) -> Meta {
        let attrs = crate::attrs::Attrs::Exactly(std::sync::Arc::new(e.xattrs.clone()));
        self.meta_with(e, attrs)
    }

    /// An entry's metadata with the attributes given.
    pub(crate) fn meta_with(&mut self, e: &Entry, attrs: crate::attrs::Attrs) -> Meta {
        let (uid, gid) = self
            .owners
            .ids(e.uid, e.gid, e.user.as_deref(), e.group.as_deref());
        Meta {
            mode: e.mode,
            uid,
            gid,
            mtime_ns: e.mtime as i128,
            attrs,
        }
    }

    /// Ends the run when the target can take no more (once, for the first such error).
    pub(crate) fn stop_if_fatal(&mut self) -> Result<()> {
        match self.fatal.take() {
            Some(e) => {
                if let Some(w) = self.writers.take() {
                    w.finish();
                }
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Counts a file the target refused to stage, then whatever its last flush settled.
    pub(crate) fn count_staging(
        &mut self,
        path: &[u8],
        staged: std::result::Result<(), Refused>,
        bytes: u64,
    ) {
        match staged {
            Ok(()) => self.written.add(bytes),
            Err(refused) => self.refused(path, refused),
        }
        self.count_settled();
    }

    /// Counts the files the target has named (or failed to) since the last call.
    pub(crate) fn count_settled(&mut self) {
        for s in self.target.settled() {
            self.count(&s.path, s.result, s.bytes);
        }
    }

    /// Names every staged file now (each made durable first), and counts them.
    pub fn settle(&mut self) {
        self.target.flush();
        self.count_settled();
    }

    /// Removes what the restored folders held that the snapshot lacks
    /// (`--delete`), only after a restore without errors: a restore that
    /// failed part way deletes nothing. Returns how many were removed.
    pub fn delete(&mut self, extra: &[Vec<u8>]) -> u64 {
        if self.tally.errors > 0 {
            if !extra.is_empty() {
                self.report.warn(&format!(
                    "nothing deleted ({} paths the snapshot lacks): the restore had errors",
                    extra.len()
                ));
            }
            return 0;
        }
        let mut n = 0;
        for rel in extra {
            match self.target.remove(rel) {
                Ok(()) => {
                    n += 1;
                    self.report.detail(|| format!("deleted {}", show(rel)));
                }
                Err(refused) => self.refused(rel, refused),
            }
        }
        n
    }

    /// Counts an entry's outcome, naming refused ones on stderr.
    pub(crate) fn count(
        &mut self,
        path: &[u8],
        result: std::result::Result<Outcome, Refused>,
        bytes: u64,
    ) {
        match result {
            Ok(Outcome::Written) => {
                self.tally.files += 1;
                self.tally.bytes += bytes;
                self.report.detail(|| format!("restored {}", show(path)));
            }
            Ok(Outcome::AlreadyThere) => {
                self.tally.files += 1;
                self.tally.already += 1;
            }
            Ok(Outcome::Repaired) => {
                self.tally.files += 1;
                self.tally.already += 1;
                self.tally.repaired += 1;
                self.report.note(&format!(
                    "{}: the content was right; mode, owner and mtime set again",
                    show(path)
                ));
            }
            Err(refused) => self.refused(path, refused),
        }
    }

    pub(crate) fn refused(&mut self, path: &[u8], refused: Refused) {
        self.tally.errors += 1;
        self.failed.insert(path.to_vec());
        if let Refused::Io(e) = &refused
            && ends_the_run(e)
        {
            if self.fatal.is_none() {
                let at = self.target.real(path);
                let cause = snap_shared::error::io_cause(e);
                self.fatal = Some(Error::new(Exit::Io, at.display().to_string(), cause).with_hint(
                    "make room at the target (or mount it again), then run the same restore: files already restored are kept",
                ));
            }
            return;
        }
        let why = match refused {
            Refused::Exists if self.target.overwrites() => {
                "something is there that --overwrite does not replace (a folder where a file belongs?)".to_string()
            }
            Refused::Exists => {
                "already exists with other content (give --overwrite to replace it)".to_string()
            }
            Refused::Mismatch { got } => {
                self.tally.bad_data += 1;
                format!(
                    "content does not match its sha256 (got {got}); kept as {}.snap-damaged",
                    show(path)
                )
            }
            Refused::Escape(why) => {
                self.tally.bad_data += 1;
                format!("refused: {why}")
            }
            Refused::Cannot(why) => {
                self.tally.bad_data += 1;
                format!("not restored: it {why}")
            }
            Refused::Source(e) if is_damage(&e) => {
                self.tally.bad_data += 1;
                snap_shared::error::io_cause(&e)
            }
            Refused::Source(e) | Refused::Io(e) => snap_shared::error::io_cause(&e),
            Refused::Attribute(why) => why,
        };
        self.report.error(&format!("{}: {why}", show(path)));
    }

    /// Counts what the writer threads finished; with `all`, waits for every one.
    pub(crate) fn drain_writers(&mut self, all: bool) {
        let done = match (all, &self.writers) {
            (true, Some(_)) => self.writers.take().expect("checked").finish(),
            (false, Some(w)) => w.finished(),
            (_, None) => return,
        };
        for d in done {
            self.count(&d.path, d.result, d.bytes);
        }
    }

    pub(crate) fn progress(&self) {
        let (n, b) = (self.written.files, self.written.bytes);
        if let Some(w) = &self.watch {
            use std::sync::atomic::Ordering::Relaxed;
            w.files.store(n, Relaxed);
            w.bytes.store(b, Relaxed);
        }
        let label = &self.label;
        self.report
            .tally(|| snap_cli::Tally::files(label, (n, None), (b, self.total)));
    }

    pub(crate) fn check_selection(&mut self) -> Result<()> {
        let missing: Vec<String> = self.select.unmatched(&self.matched).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::new(Exit::NoInput, format!("--path {}", missing.join(", ")), "matches nothing in the snapshot")
            .with_hint("paths are inside the snapshot, e.g. home/me/docs for /home/me/docs; see `snap-restore show`"))
    }
}

/// Writer threads: two keep both cores busy while this thread decompresses.
pub(crate) const WRITERS: usize = 2;

pub struct Restorer<'a> {
    pub target: Target,
    pub select: &'a Select,
    pub dec: &'a Decrypt,
    pub report: &'a Reporter,
    pub tally: Tally,
    pub(crate) buf: Vec<u8>,
    /// Writer threads for small files, while an archive is being read.
    pub(crate) writers: Option<Writers>,
    /// Which `--path` prefixes matched something.
    pub(crate) matched: Vec<bool>,
    /// An error of the target that ends the run (a full or gone disk):
    /// every further file would fail the same way.
    pub(crate) fatal: Option<Error>,
    /// Files written so far, named or still staged: what progress shows.
    pub(crate) written: Written,
    /// The same counts for someone watching from another thread (`serve`).
    pub watch: Option<std::sync::Arc<Watch>>,
    /// What the progress line names, and the bytes it expects (known for a
    /// whole snapshot or archive, not for some --path of one).
    pub label: String,
    pub total: Option<u64>,
    /// Files named as not restored, so none is named twice.
    pub(crate) failed: std::collections::HashSet<Vec<u8>>,
    /// Owners by name, or by number (`--numeric-owner`).
    pub owners: crate::owners::Owners,
    /// Big files put together from the runs of changed blocks of a chain.
    pub(crate) deltas: super::deltas::Deltas,
}

/// Files and bytes written so far, readable from another thread while a restore runs.
#[derive(Debug, Default)]
pub struct Watch {
    pub files: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
}

/// Files and bytes written so far, for the progress line.
#[derive(Default)]
pub(crate) struct Written {
    pub(crate) files: u64,
    pub(crate) bytes: u64,
}

impl Written {
    pub(crate) fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// Whether a write error at the target means no further file can be
/// written: a full disk or quota, a read-only or failing one.
pub(crate) fn ends_the_run(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    let code = e.raw_os_error();
    snap_shared::error::is_disk_full(e)
        || code == Some(Errno::ROFS.raw_os_error())
        || code == Some(Errno::IO.raw_os_error())
}

/// The cores this process may use.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
