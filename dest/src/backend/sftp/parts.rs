//! Large files to an SFTP server: written in parts into a hidden file,
//! each part flushed before the journal counts it, then renamed into place.

use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use openssh_sftp_client::error::{Error as SftpError, SftpErrorKind};
use openssh_sftp_client::file::File as RemoteFile;
use tokio::io::AsyncSeekExt;

use snap_shared::error::{Error, Exit, Result};

use super::session::{CHUNK, is_missing, private};
use super::{IN_FLIGHT, Remote};
use crate::names::hidden;

impl Remote {
    /// The hidden file a large upload to `rel` is written into.
    pub(crate) fn part_name(&self, rel: &str) -> String {
        hidden(Path::new(rel), "snap-part")
            .to_string_lossy()
            .into_owned()
    }

    /// Opens (making it, 0600) the part file of an upload: its size on the
    /// server, or `None` when it was started afresh because the server
    /// cannot write into an existing file.
    pub(crate) fn open_part(&self, part: &str, keep: bool) -> Result<(PartFile, Option<u64>)> {
        let path = self.path(part);
        self.block_on(async {
            let mut opts = self.s.sftp.options();
            opts.read(true).write(true).create(true);
            let (file, kept) = match keep {
                true => match self.s.create_in_folder(&path, &opts).await {
                    Ok(mut f) => {
                        let len = f.metadata().await?.len().unwrap_or(0);
                        (f, Some(len))
                    }
                    Err(e) if is_missing(&e) => return Err(e),
                    // Not writable in place: start over.
                    Err(_) => (self.s.create_truncated(&path).await?, None),
                },
                false => (self.s.create_truncated(&path).await?, None),
            };
            let mut file = file;
            private(&mut file).await?;
            Ok((PartFile { file }, kept))
        })
        .map_err(|e| self.error(part, e))
    }

    /// Writes the parts that arrive on `parts` (index, bytes) into the part
    /// file, each at `index * part_size`, with requests in flight across part
    /// boundaries (waiting for each part to drain cost a fifth of the
    /// throughput on loopback). Once every write of a part is acknowledged,
    /// the part is flushed (fsync@openssh.com, where the server has it) while
    /// the next parts are written, and only then handed to `done`, which
    /// journals it.
    pub(crate) fn send_parts(
        &self,
        part: &PartFile,
        part_size: u64,
        parts: tokio::sync::mpsc::Receiver<(usize, Bytes)>,
        throttle: Option<&crate::throttle::Throttle>,
        rel: &str,
        mut done: impl FnMut(usize, u64) -> Result<()>,
    ) -> Result<()> {
        let chunk = CHUNK as usize;
        let pieces =
            futures::stream::unfold(
                parts,
                |mut rx| async move { rx.recv().await.map(|p| (p, rx)) },
            )
            .flat_map(move |(idx, data): (usize, Bytes)| {
                let count = data.len().div_ceil(chunk).max(1);
                futures::stream::iter((0..count).map(move |k| (idx, data.clone(), k, count)))
            });
        let writes = pieces
            .map(|(idx, data, k, count)| {
                let mut file = part.file.clone();
                let piece =
                    data.slice((k * chunk).min(data.len())..((k + 1) * chunk).min(data.len()));
                let at = idx as u64 * part_size + (k * chunk) as u64;
                async move {
                    if !piece.is_empty() {
                        if let Some(t) = throttle {
                            t.wait(piece.len() as u64).await;
                        }
                        file.seek(std::io::SeekFrom::Start(at))
                            .await
                            .map_err(SftpError::from)?;
                        file.write_all_zero_copy(&mut [piece]).await?;
                    }
                    Ok::<_, SftpError>((idx, data.len() as u64, k + 1 == count))
                }
            })
            .buffered(IN_FLIGHT);
        let fsync = self.s.sftp.support_fsync();
        let flush = |idx: usize, len: u64| {
            let mut file = part.file.clone();
            async move {
                if fsync {
                    file.sync_all().await?;
                }
                Ok::<_, SftpError>((idx, len))
            }
        };
        // Errors leave the runtime before they are explained: explaining a
        // failed write asks the server for its free space.
        let sent = self.block_on(async {
            let mut writes = std::pin::pin!(writes);
            let mut flushes = futures::stream::FuturesOrdered::new();
            loop {
                tokio::select! {
                    w = writes.next() => match w {
                        Some(w) => {
                            let (idx, len, last) = w.map_err(Failed::Sftp)?;
                            if last {
                                flushes.push_back(flush(idx, len));
                            }
                        }
                        None => break,
                    },
                    Some(f) = flushes.next(), if !flushes.is_empty() => {
                        let (idx, len) = f.map_err(Failed::Sftp)?;
                        done(idx, len).map_err(Failed::Other)?;
                    }
                }
            }
            while let Some(f) = flushes.next().await {
                let (idx, len) = f.map_err(Failed::Sftp)?;
                done(idx, len).map_err(Failed::Other)?;
            }
            Ok(())
        });
        sent.map_err(|f| match f {
            Failed::Sftp(e) => self.write_error(rel, e),
            Failed::Other(e) => e,
        })
    }

    /// Closes the part file, sets its length, and renames it over `rel`.
    pub(crate) fn finish(
        &self,
        part: PartFile,
        part_rel: &str,
        size: u64,
        rel: &str,
    ) -> Result<()> {
        let (from, to) = (self.path(part_rel), self.path(rel));
        self.block_on(async {
            let mut file = part.file;
            file.set_len(size).await?;
            if self.s.sftp.support_fsync() {
                file.sync_all().await?;
            }
            file.close().await?;
            self.s.replace(&from, &to).await
        })
        .map_err(|e| self.write_error(rel, e))
    }

    /// Removes an upload's part file (its content did not hash right).
    pub(crate) fn discard_part(&self, part: PartFile, part_rel: &str) {
        let _ = self.block_on(part.file.close());
        let _ = self.delete(part_rel);
    }

    /// A failed write, said plainly when the server's disk is full (SFTP
    /// reports ENOSPC as a bare "Failure").
    fn write_error(&self, rel: &str, e: SftpError) -> Error {
        let full = matches!(&e, SftpError::SftpError(SftpErrorKind::Failure, _))
            && self.free_space().is_some_and(|(free, _)| free < (1 << 20));
        match full {
            true => Error::new(
                Exit::CantCreate,
                self.show(rel),
                "no space left on the server's disk",
            )
            .with_hint("free space there (snap-prune --dest), then run the push again: it resumes"),
            false => self.error(rel, e),
        }
    }
}

/// Why sending parts stopped: the server's answer, or the journal's.
enum Failed {
    Sftp(SftpError),
    Other(Error),
}

/// The open part file of an upload.
pub(crate) struct PartFile {
    file: RemoteFile,
}
