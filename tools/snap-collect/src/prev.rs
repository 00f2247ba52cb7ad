//! The previous snapshot's index, read on its own thread (decompressing and
//! parsing is CPU work the walk should not wait for) and looked up in step
//! with the walk: both are in index order, so one forward pass suffices.
//!
//! A previous index that is missing or corrupt must not stop a backup: from
//! the point it fails, lookups find nothing, so files are copied instead of
//! linked, and the failure is reported once as a warning.

use std::cmp::Ordering;
use std::path::Path;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, bounded};

use snap_shared::error::{Error, Result};
use snap_shared::index::{Entry, IndexReader, cmp_paths};

const BATCH: usize = 1024;

pub struct Previous {
    batches: Option<Receiver<Result<Vec<Entry>>>>,
    batch: std::vec::IntoIter<Entry>,
    current: Option<Entry>,
    failure: Option<Error>,
    _reader: Option<JoinHandle<()>>,
}

/// Reads the index in batches and sends them until the end or an error.
fn read_batches(mut reader: IndexReader, tx: crossbeam_channel::Sender<Result<Vec<Entry>>>) {
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            match reader.next_entry() {
                Ok(Some(e)) => batch.push(e),
                Ok(None) => {
                    let _ = tx.send(Ok(batch));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Ok(batch));
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if tx.send(Ok(batch)).is_err() {
            return;
        }
    }
}

impl Previous {
    /// Starts reading `index`. Never fails: an unreadable index is a warning
    /// waiting in [`Previous::take_failure`].
    pub fn open(index: &Path) -> Previous {
        let mut prev = Previous {
            batches: None,
            batch: Vec::new().into_iter(),
            current: None,
            failure: None,
            _reader: None,
        };
        match IndexReader::open(index) {
            Ok(reader) => {
                let (tx, rx) = bounded(8);
                prev._reader = Some(std::thread::spawn(move || read_batches(reader, tx)));
                prev.batches = Some(rx);
                prev.advance();
            }
            Err(e) => prev.failure = Some(e),
        }
        prev
    }

    fn advance(&mut self) {
        loop {
            if let Some(e) = self.batch.next() {
                self.current = Some(e);
                return;
            }
            self.current = None;
            let Some(rx) = &self.batches else {
                return;
            };
            match rx.recv() {
                Ok(Ok(batch)) => self.batch = batch.into_iter(),
                Ok(Err(e)) => {
                    self.failure = Some(e);
                    self.batches = None;
                }
                Err(_) => self.batches = None,
            }
        }
    }

    /// The previous entry at `path`, if there was one.
    pub fn find(&mut self, path: &[u8]) -> Option<&Entry> {
        while let Some(cur) = &self.current {
            match cmp_paths(&cur.path, path) {
                Ordering::Less => self.advance(),
                Ordering::Equal => return self.current.as_ref(),
                Ordering::Greater => return None,
            }
        }
        None
    }

    /// The error that ended the previous index early, once.
    pub fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }
}
