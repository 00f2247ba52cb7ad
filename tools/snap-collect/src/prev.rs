//! The previous snapshot's index, read on its own thread (decompressing and
//! parsing is CPU work the walk should not wait for) and looked up in step
//! with the walk: both are in index order, so one forward pass suffices.

use std::cmp::Ordering;
use std::path::Path;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, bounded};

use snap_shared::error::Result;
use snap_shared::index::{Entry, IndexReader, cmp_paths};

const BATCH: usize = 1024;

pub struct Previous {
    batches: Receiver<Result<Vec<Entry>>>,
    batch: std::vec::IntoIter<Entry>,
    current: Option<Entry>,
    done: bool,
    _reader: JoinHandle<()>,
}

impl Previous {
    pub fn open(index: &Path) -> Result<Previous> {
        let mut reader = IndexReader::open(index)?;
        let (tx, rx) = bounded(8);
        let handle = std::thread::spawn(move || {
            loop {
                let mut batch = Vec::with_capacity(BATCH);
                let mut end = false;
                while batch.len() < BATCH {
                    match reader.next_entry() {
                        Ok(Some(e)) => batch.push(e),
                        Ok(None) => {
                            end = true;
                            break;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                if (!batch.is_empty() && tx.send(Ok(batch)).is_err()) || end {
                    return;
                }
            }
        });
        let mut prev = Previous {
            batches: rx,
            batch: Vec::new().into_iter(),
            current: None,
            done: false,
            _reader: handle,
        };
        prev.advance()?;
        Ok(prev)
    }

    fn advance(&mut self) -> Result<()> {
        loop {
            if let Some(e) = self.batch.next() {
                self.current = Some(e);
                return Ok(());
            }
            if self.done {
                self.current = None;
                return Ok(());
            }
            match self.batches.recv() {
                Ok(batch) => self.batch = batch?.into_iter(),
                Err(_) => self.done = true,
            }
        }
    }

    /// The previous entry at `path`, if there was one.
    pub fn find(&mut self, path: &[u8]) -> Result<Option<&Entry>> {
        while let Some(cur) = &self.current {
            match cmp_paths(&cur.path, path) {
                Ordering::Less => self.advance()?,
                Ordering::Equal => return Ok(self.current.as_ref()),
                Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }
}
