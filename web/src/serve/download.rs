//! Downloads from the file browser: one file through `cat`, and a folder
//! as a tar.zst made on the fly from the index (GNU tar headers, as
//! snap-pack writes them), each file checked against its sha256 on the way.
//! What goes out is held one chunk behind: a check fails before the last
//! bytes leave, so a damaged file or folder never arrives whole.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use snap_cli::Reporter;
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::index::{Entry, EntryType};
use snap_shared::tarw::{Members, TarWriter};

use super::browse::{Asked, asked};
use super::http::{Shared, refuse};
use super::places::place;
use snap_read::source::Item;

/// `/file/SET/ID/PATH`: the file's bytes, checked against its sha256 as
/// they go out; a mismatch ends the body with an error, so the client sees
/// a broken download, never a whole wrong file.
pub(super) async fn file(
    State(s): State<Arc<Shared>>,
    Path((set, id, path)): Path<(String, String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Asked {
        path,
        from,
        archive,
    } = match asked(&path, &q) {
        Ok(a) if a.path.is_empty() => {
            return refuse(StatusCode::BAD_REQUEST, "give the file's path\n");
        }
        Ok(a) => a,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let file_name = path.rsplit('/').next().unwrap_or("file").to_string();
    let shared = s.clone();
    stream(file_name, "application/octet-stream", move |out| {
        let it = place(&shared, from.as_deref())?.item(&set, &id, archive)?;
        let quiet = Reporter::new(snap_read::TOOL, true, false);
        snap_read::cat::cat_item(
            &it,
            &path,
            (&Decrypt::default(), &shared.trust, &quiet),
            out,
        )
    })
    .await
}

/// `/tarball/SET/ID`: the whole snapshot as a tar.zst.
pub(super) async fn whole(
    state: State<Arc<Shared>>,
    Path((set, id)): Path<(String, String)>,
    q: Query<BTreeMap<String, String>>,
) -> Response {
    folder(state, Path((set, id, String::new())), q).await
}

/// `/tarball/SET/ID/PATH`: the folder as a tar.zst made on the fly, its
/// members named from the folder itself (`docs/…` for `home/me/docs`).
pub(super) async fn folder(
    State(s): State<Arc<Shared>>,
    Path((set, id, path)): Path<(String, String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Asked {
        path: dir,
        from,
        archive,
    } = match asked(&path, &q) {
        Ok(a) => a,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let stem = match dir.rsplit('/').next().filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => format!("{set}-{id}"),
    };
    let shared = s.clone();
    stream(format!("{stem}.tar.zst"), "application/zstd", move |out| {
        let it = place(&shared, from.as_deref())?.item(&set, &id, archive)?;
        let name = format!("{set}/{id}");
        let zst = zstd::stream::Encoder::new(out, 3).map_err(|e| Error::io_ctx("zstd", e))?;
        let tw = TarWriter::new(Zst(zst));
        let zst = write_folder(&it, &name, &dir, &shared, tw)?;
        zst.0
            .finish()
            .map(drop)
            .map_err(|e| Error::io_ctx("the download", e))
    })
    .await
}

/// Writes the entries of `dir` (all with `""`) as tar members named from
/// the folder's own name; returns the stream to finish.
fn write_folder<'a>(
    it: &Item,
    name: &str,
    dir: &str,
    shared: &Shared,
    mut tw: TarWriter<Zst<'a>>,
) -> Result<Zst<'a>> {
    let index = it
        .index()
        .ok_or_else(|| Error::new(Exit::NoInput, name, "has no index to list"))?;
    let base = dir.rfind('/').map_or(0, |i| i + 1);
    let prefix = format!("{dir}/");
    let inside =
        |p: &[u8]| dir.is_empty() || p == dir.as_bytes() || p.starts_with(prefix.as_bytes());
    let tree = match it {
        Item::Snapshot { .. } => {
            let data = it.data();
            let path = data
                .path()
                .expect("a snapshot's tree is local")
                .to_path_buf();
            Some(snap_shared::fsutil::open_root(&path).map_err(|e| Error::io(&path, e))?)
        }
        _ => None,
    };
    let quiet = Reporter::new(snap_read::TOOL, true, false);
    let io = |e: std::io::Error| Error::io_ctx("the download", e);
    let mut found = dir.is_empty();
    // An archive's chain, found and trusted at its first file.
    let mut files: Option<snap_read::cat::Files> = None;
    let mut r = snap_read::indexes::open_index(&index, &Decrypt::default())?;
    while let Some(e) = r.next().transpose()? {
        if !inside(&e.path) {
            continue;
        }
        found = true;
        let mut m: Entry = e.clone();
        m.path = e.path[base..].to_vec();
        // A hard link to a name outside the folder goes in as the file.
        if e.kind == EntryType::Hardlink {
            match e.link.as_deref().filter(|l| inside(l)) {
                Some(l) => m.link = Some(l[base..].to_vec()),
                None => m.kind = EntryType::File,
            }
        }
        tw.header(&m).map_err(io)?;
        if m.kind != EntryType::File {
            continue;
        }
        let shown = String::from_utf8_lossy(&e.path).into_owned();
        let mut data = TarData { tw: &mut tw };
        match &tree {
            Some(root) => {
                let fd = snap_shared::fsutil::open_beneath(
                    root,
                    &e.path,
                    rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                )
                .map_err(|err| Error::io_ctx(&shown, err))?;
                copy_checked(&mut std::fs::File::from(fd), &e, &mut data, &shown)?;
            }
            None => {
                let files = match &files {
                    Some(f) => f,
                    None => files.insert(snap_read::cat::Files::open(it, &shared.trust, &quiet)?),
                };
                files.write(&e, &Decrypt::default(), &mut data)?
            }
        }
        tw.end_data(m.size).map_err(io)?;
    }
    if !found {
        return Err(Error::new(
            Exit::NoInput,
            format!("{name}:{dir}"),
            "no such folder in it",
        ));
    }
    tw.finish().map_err(io)
}

/// A file of the tree into the tar, checked against its sha256.
fn copy_checked(
    src: &mut dyn std::io::Read,
    e: &Entry,
    out: &mut dyn Write,
    shown: &str,
) -> Result<()> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = e.size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = src
            .read(&mut buf[..want])
            .map_err(|err| Error::io_ctx(shown, err))?;
        if n == 0 {
            return Err(Error::data(shown, "the stored file ends early"));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|err| Error::io_ctx("the download", err))?;
        left -= n as u64;
    }
    let got = snap_shared::hash::Sha256Digest::from_hasher(hasher);
    match e.sha256 {
        Some(want) if want != got => Err(Error::data(
            shown,
            format!("content does not match its sha256 (got {got}, the index says {want})"),
        )),
        _ => Ok(()),
    }
}

/// File data into the tar stream.
struct TarData<'a, 'b> {
    tw: &'a mut TarWriter<Zst<'b>>,
}

impl Write for TarData<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tw.data(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The zstd stream the tar goes into.
struct Zst<'a>(zstd::stream::Encoder<'static, &'a mut ChannelWriter>);

impl Write for Zst<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Members for Zst<'_> {}

/// Runs `make` on a blocking thread, writing into a [`ChannelWriter`], and
/// answers with what it writes as `file_name`: an error before the first
/// chunk is the error's page; after it, the download is cut short.
async fn stream(
    file_name: String,
    content_type: &'static str,
    make: impl FnOnce(&mut ChannelWriter) -> Result<()> + Send + 'static,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(8);
    let worker = tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            held: None,
        };
        let done = make(&mut out)
            .and_then(|()| out.release().map_err(|e| Error::io_ctx("the download", e)));
        if let Err(e) = &done {
            let _ = tx.blocking_send(Err(std::io::Error::other(format!(
                "{}: {}",
                e.context, e.cause
            ))));
        }
        done
    });
    match rx.recv().await {
        Some(Ok(first)) => {
            let disposition = format!(
                "attachment; filename=\"{}\"",
                file_name.replace(['"', '\\', '\r', '\n'], "_")
            );
            (
                [
                    (header::CONTENT_TYPE, content_type.to_string()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body_of(first, rx),
            )
                .into_response()
        }
        Some(Err(_)) | None => match worker.await {
            Ok(Err(e)) => super::http::failed(e),
            // Nothing to send (an empty file) and nothing wrong.
            Ok(Ok(())) => ([(header::CONTENT_TYPE, content_type)], Vec::new()).into_response(),
            Err(e) => super::http::failed(Error::internal("server", e)),
        },
    }
}

/// Bytes sent to the response body in chunks, one chunk
/// behind: `cat` checks the sha256 after the last byte, so the last chunk
/// is held until it has, and a file that does not match never arrives whole.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    held: Option<Vec<u8>>,
}

impl ChannelWriter {
    fn send(&self, chunk: Vec<u8>) -> std::io::Result<()> {
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }

    /// The file matched: the held chunk goes out.
    fn release(&mut self) -> std::io::Result<()> {
        match self.held.take() {
            Some(h) => self.send(h),
            None => Ok(()),
        }
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(h) = self.held.replace(buf.to_vec()) {
            self.send(h)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Chunk = std::io::Result<Vec<u8>>;

/// `first`, then what comes down the channel, as a response body.
fn body_of(first: Vec<u8>, rx: tokio::sync::mpsc::Receiver<Chunk>) -> Body {
    use futures::StreamExt;
    let rest =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Body::from_stream(
        futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer keeps the last chunk until released: a file whose check
    /// fails after its last byte never has all its bytes sent.
    #[test]
    fn the_last_chunk_waits_for_the_check() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let mut w = ChannelWriter { tx, held: None };
        for chunk in [b"one", b"two", b"end"] {
            w.write_all(chunk).unwrap();
        }
        let sent = |rx: &mut tokio::sync::mpsc::Receiver<Chunk>| {
            let mut got = Vec::new();
            while let Ok(c) = rx.try_recv() {
                got.extend(c.unwrap());
            }
            got
        };
        assert_eq!(sent(&mut rx), b"onetwo");
        w.release().unwrap();
        assert_eq!(sent(&mut rx), b"end");
    }
}
