//! A blocking `Read` over an object's body, for the synchronous tools.
//!
//! A task on the runtime pulls the body and hands chunks over a bounded
//! channel, so the download runs ahead of (and in parallel with) whatever
//! reads it — decryption, decompression, tar — by at most a few chunks.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// Chunks in flight between the download and the reader.
const AHEAD: usize = 16;

pub struct StreamReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    done: bool,
}

impl StreamReader {
    /// A reader over a stream of chunks whose errors are already I/O errors.
    pub fn from_io(rt: &Arc<Runtime>, mut body: BoxStream<'static, io::Result<Bytes>>) -> Self {
        let (tx, rx) = mpsc::channel(AHEAD);
        rt.spawn(async move {
            while let Some(item) = body.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        StreamReader {
            rx,
            current: Bytes::new(),
            done: false,
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while !self.current.has_remaining() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                None => self.done = true,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
