//! `rclone:REMOTE:PATH` destinations, driven through rclone's remote
//! control API: one `rclone rcd` per run, on a loopback port with a
//! password made here, and its `operations/*` calls.
//!
//! Why not `rclone serve sftp`: with its directory cache off (which snap
//! needs, so that another machine's lock shows in the next listing) rclone's
//! VFS lists every folder above a path before each operation. A push made
//! 109 calls to a WebDAV server that way, each at least 10 ms (rclone's
//! pacer), and on OneDrive or Dropbox a call takes 100 ms or more. The rc
//! calls go to the provider without the VFS: a stat is one call, a listing
//! one per folder. Reads go through `--rc-serve`, which answers ranged GETs,
//! so a restore of one file reads only its frames.
//!
//! Files are uploaded by `operations/copyfile` from the local filesystem
//! (small ones from a private temporary file), under a hidden name, then
//! renamed into place by `operations/movefile`: the provider's own upload,
//! with rclone's retries and chunking, and nothing under the final name
//! until it is whole.
//!
//! `rcd` starts and stops the daemon; this module holds the operations.

mod rcd;

use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use snap_shared::error::{Error, Exit, Result};

use crate::names::hidden_key as hidden;

/// Calls in flight at once for the many-object operations.
const IN_FLIGHT: usize = 8;

/// One `rclone rcd`, serving one destination.
pub(crate) struct Rclone {
    /// The watchdog shell; dropping its stdin stops rclone.
    child: Mutex<Child>,
    stop: Mutex<Option<std::process::ChildStdin>>,
    said: Arc<Mutex<String>>,
    /// `http://127.0.0.1:PORT/`.
    base: String,
    user: String,
    pass: String,
    /// `REMOTE:PATH` as rclone names it.
    fs: String,
    url: String,
    client: reqwest::Client,
    rt: Arc<Runtime>,
    /// Where small files wait to be uploaded, private to this process.
    scratch: tempfile::TempDir,
}

impl std::fmt::Debug for Rclone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rclone({})", self.url)
    }
}

/// What an rc call answered, when it failed.
#[derive(Debug)]
struct Failed {
    status: u16,
    said: String,
}

impl Failed {
    /// rclone's answer to a failed call: its JSON's "error", else the text.
    fn from_answer(status: u16, text: &str) -> Failed {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        Failed {
            status,
            said: value["error"]
                .as_str()
                .map_or_else(|| text.trim().to_string(), str::to_string),
        }
    }

    /// The object or folder is not there.
    fn is_missing(&self) -> bool {
        self.status == 404
            || self.said.contains("not found")
            || self.said.contains("doesn't exist")
            || self.said.contains("no such file")
    }
}

impl Rclone {
    fn show(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url.trim_end_matches('/'))
    }

    /// An rc call, answered with its JSON.
    fn call(&self, method: &str, body: Value) -> std::result::Result<Value, Failed> {
        self.rt.block_on(self.call_async(method, body))
    }

    async fn call_async(&self, method: &str, body: Value) -> std::result::Result<Value, Failed> {
        let sent = self
            .client
            .post(format!("{}{method}", self.base))
            .basic_auth(&self.user, Some(&self.pass))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        let answer = match sent {
            Ok(a) => a,
            Err(e) => return Err(self.gone(&e.to_string())),
        };
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        match status {
            200 => Ok(serde_json::from_str(&text).unwrap_or(Value::Null)),
            _ => Err(Failed::from_answer(status, &text)),
        }
    }

    /// rclone stopped answering: what it said last.
    fn gone(&self, why: &str) -> Failed {
        let said = self.said.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let last = crate::said::last_line(&said);
        Failed {
            status: 0,
            said: format!("rclone stopped answering: {}", last.unwrap_or(why)),
        }
    }

    /// A failed call as one line: missing is 66; anything else is the
    /// provider's or rclone's failure, 69, with rclone's words.
    fn error(&self, rel: &str, f: Failed) -> Error {
        let exit = match f.is_missing() {
            true => Exit::NoInput,
            false => Exit::Unavailable,
        };
        Error::new(exit, self.show(rel), f.said)
    }

    /// Size of the object at `rel`, if there is one.
    pub(crate) fn head(&self, rel: &str) -> Result<Option<u64>> {
        match self.call("operations/stat", json!({"fs": self.fs, "remote": rel})) {
            Ok(v) => Ok(v["item"]
                .as_object()
                .filter(|i| i.get("IsDir") != Some(&Value::Bool(true)))
                .map(|i| i.get("Size").and_then(Value::as_u64).unwrap_or(0))),
            Err(f) if f.is_missing() => Ok(None),
            Err(f) => Err(self.error(rel, f)),
        }
    }

    /// The URL `--rc-serve` answers for `rel`.
    fn object_url(&self, rel: &str) -> String {
        let path: String = rel
            .split('/')
            .map(urlencoding)
            .collect::<Vec<_>>()
            .join("/");
        format!("{}[{}]/{path}", self.base, self.fs)
    }

    async fn fetch(
        &self,
        rel: &str,
        range: Option<String>,
    ) -> std::result::Result<reqwest::Response, Failed> {
        let mut req = self
            .client
            .get(self.object_url(rel))
            .basic_auth(&self.user, Some(&self.pass));
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        let answer = req.send().await.map_err(|e| self.gone(&e.to_string()))?;
        match answer.status().as_u16() {
            200 | 206 => Ok(answer),
            status => {
                let text = answer.text().await.unwrap_or_default();
                Err(Failed::from_answer(status, &text))
            }
        }
    }

    async fn fetch_bytes(
        &self,
        rel: &str,
        range: Option<String>,
    ) -> std::result::Result<(Bytes, Option<u64>), Failed> {
        let answer = self.fetch(rel, range).await?;
        let total = answer
            .headers()
            .get("Content-Range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|n| n.parse().ok());
        let body = answer
            .bytes()
            .await
            .map_err(|e| self.gone(&e.to_string()))?;
        Ok((body, total))
    }

    /// The whole of a small object.
    pub(crate) fn get(&self, rel: &str) -> Result<Bytes> {
        self.rt
            .block_on(self.fetch_bytes(rel, None))
            .map(|(b, _)| b)
            .map_err(|f| self.error(rel, f))
    }

    /// Several small objects, fetched concurrently; results in the order asked.
    pub(crate) fn get_many(&self, rels: &[String]) -> Vec<Result<Bytes>> {
        self.rt.block_on(
            futures::stream::iter(rels)
                .map(|rel| async move {
                    self.fetch_bytes(rel, None)
                        .await
                        .map(|(b, _)| b)
                        .map_err(|f| self.error(rel, f))
                })
                .buffered(IN_FLIGHT)
                .collect(),
        )
    }

    /// A streaming reader of the whole object.
    pub(crate) fn reader(&self, rel: &str) -> Result<Box<dyn Read + Send>> {
        let answer = self
            .rt
            .block_on(self.fetch(rel, None))
            .map_err(|f| self.error(rel, f))?;
        let body = answer
            .bytes_stream()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e))
            .boxed();
        Ok(Box::new(crate::stream::StreamReader::from_io(
            &self.rt, body,
        )))
    }

    /// The bytes of each range, fetched concurrently.
    pub(crate) fn read_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let fetched: std::result::Result<Vec<Bytes>, Failed> = self.rt.block_on(
            futures::stream::iter(ranges)
                .map(|r| async move {
                    if r.is_empty() {
                        return Ok(Bytes::new());
                    }
                    let asked = format!("bytes={}-{}", r.start, r.end - 1);
                    let (b, _) = self.fetch_bytes(rel, Some(asked)).await?;
                    match b.len() as u64 == r.end - r.start {
                        true => Ok(b),
                        false => Err(Failed {
                            status: 416,
                            said: format!(
                                "asked for bytes {}..{}, got {} bytes",
                                r.start,
                                r.end,
                                b.len()
                            ),
                        }),
                    }
                })
                .buffered(IN_FLIGHT)
                .try_collect(),
        );
        fetched.map_err(|f| self.error(rel, f))
    }

    /// The last `n` bytes (all of a shorter object) and the object's size.
    pub(crate) fn read_tail(&self, rel: &str, n: u64) -> Result<(Bytes, u64)> {
        if n == 0 {
            let size = self
                .head(rel)?
                .ok_or_else(|| Error::new(Exit::NoInput, self.show(rel), "not found"))?;
            return Ok((Bytes::new(), size));
        }
        let (b, total) = self
            .rt
            .block_on(self.fetch_bytes(rel, Some(format!("bytes=-{n}"))))
            .map_err(|f| self.error(rel, f))?;
        let size = total.unwrap_or(b.len() as u64);
        Ok((b, size))
    }

    /// Writes `data` to `rel`, replacing what is there: uploaded under a
    /// hidden name, then renamed.
    pub(crate) fn put(&self, rel: &str, data: &Bytes) -> Result<()> {
        let local = self.scratch.path().join(crate::names::unique());
        write_private(&local, data)?;
        let tmp = hidden(rel, &format!("tmp-{}", crate::names::unique()));
        let sent = self.copy_small(&local, &tmp);
        let _ = std::fs::remove_file(&local);
        sent?;
        self.rename_over(&tmp, rel)
    }

    /// Writes `rel` only if nothing is there: `Ok(false)` then. rclone has
    /// no create-only upload: this looks, then writes, which
    /// docs/destinations.md says of rclone remotes shared by machines.
    pub(crate) fn put_new(&self, rel: &str, data: &Bytes) -> Result<bool> {
        match self.head(rel)? {
            Some(_) => Ok(false),
            None => self.put(rel, data).map(|()| true),
        }
    }

    /// Renews an object that is still there (written again with `data`),
    /// `Ok(false)` when it is gone: not every provider sets a modified time.
    pub(crate) fn refresh(&self, rel: &str, data: &Bytes) -> Result<bool> {
        match self.head(rel)? {
            Some(_) => self.put(rel, data).map(|()| true),
            None => Ok(false),
        }
    }

    /// Removes an object; one that is not there is no error.
    pub(crate) fn delete(&self, rel: &str) -> Result<()> {
        match self.call(
            "operations/deletefile",
            json!({"fs": self.fs, "remote": rel}),
        ) {
            Ok(_) => Ok(()),
            Err(f) if f.is_missing() => Ok(()),
            Err(f) => Err(self.error(rel, f)),
        }
    }

    /// Removes several objects, a few at a time.
    pub(crate) fn delete_many(&self, rels: &[String]) -> Result<()> {
        let results: Vec<Result<()>> = self.rt.block_on(
            futures::stream::iter(rels)
                .map(|rel| async move {
                    match self
                        .call_async(
                            "operations/deletefile",
                            json!({"fs": self.fs, "remote": rel}),
                        )
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(f) if f.is_missing() => Ok(()),
                        Err(f) => Err(self.error(rel, f)),
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect(),
        );
        results.into_iter().collect()
    }

    /// Every object under `sub` whose name has no hidden part below it:
    /// (path from the root, size, modified time).
    pub(crate) fn list(&self, sub: &str) -> Result<Vec<(String, u64, SystemTime)>> {
        let sub = sub.trim_matches('/');
        let answer = match self.call(
            "operations/list",
            json!({"fs": self.fs, "remote": sub, "opt": {"recurse": true, "filesOnly": true}}),
        ) {
            Ok(v) => v,
            Err(f) if f.is_missing() => return Ok(Vec::new()),
            Err(f) => return Err(self.error(sub, f)),
        };
        let mut out = Vec::new();
        for item in answer["list"].as_array().into_iter().flatten() {
            let Some(path) = item["Path"].as_str() else {
                continue;
            };
            let below = path
                .strip_prefix(sub)
                .unwrap_or(path)
                .trim_start_matches('/');
            if below.split('/').any(|c| c.starts_with('.')) {
                continue;
            }
            let modified = item["ModTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(SystemTime::UNIX_EPOCH, SystemTime::from);
            out.push((
                path.to_string(),
                item["Size"].as_u64().unwrap_or(0),
                modified,
            ));
        }
        Ok(out)
    }

    /// Uploads the local file at `local` to `rel` (at most `bwlimit` bytes
    /// a second), as an rc job that [`Copy::finish`] waits for and
    /// [`Copy::abort`] stops.
    pub(crate) fn copy_in(
        &self,
        local: &Path,
        rel: &str,
        bwlimit: Option<u64>,
    ) -> Result<Copy<'_>> {
        let rate = bwlimit.map_or("off".to_string(), |r| format!("{r}B"));
        self.call("core/bwlimit", json!({"rate": rate}))
            .map_err(|f| self.error(rel, f))?;
        let job = self
            .call("operations/copyfile", copy_args(&self.fs, local, rel, true))
            .map_err(|f| self.error(rel, f))?;
        let id = job["jobid"].as_u64().ok_or_else(|| {
            Error::internal(self.show(rel), format!("rclone gave no job id: {job}"))
        })?;
        Ok(Copy {
            rclone: self,
            id,
            rel: rel.to_string(),
        })
    }

    /// Uploads a small local file to a name no one else writes, and waits.
    fn copy_small(&self, local: &Path, rel: &str) -> Result<()> {
        let mut args = copy_args(&self.fs, local, rel, false);
        // The name is new: asking the provider for it first is a wasted call.
        args["_config"] = json!({"NoCheckDest": true});
        self.call("operations/copyfile", args)
            .map(|_| ())
            .map_err(|f| self.error(rel, f))
    }

    /// Renames `from` over `to`, on the provider.
    pub(crate) fn rename_over(&self, from: &str, to: &str) -> Result<()> {
        self.call(
            "operations/movefile",
            json!({"srcFs": self.fs, "srcRemote": from, "dstFs": self.fs, "dstRemote": to}),
        )
        .map(|_| ())
        .map_err(|f| self.error(to, f))
    }

    /// The hidden name a large upload to `rel` goes to first.
    pub(crate) fn part_name(&self, rel: &str) -> String {
        hidden(rel, "snap-part")
    }
}

/// A running upload of one large file.
pub(crate) struct Copy<'a> {
    rclone: &'a Rclone,
    id: u64,
    rel: String,
}

impl Copy<'_> {
    /// Waits for the job: `Ok` once the provider has the whole file and
    /// rclone has compared its checksums.
    pub(crate) fn finish(self) -> Result<()> {
        loop {
            let status = self
                .rclone
                .call("job/status", json!({"jobid": self.id}))
                .map_err(|f| self.rclone.error(&self.rel, f))?;
            if status["finished"].as_bool() == Some(true) {
                return match status["success"].as_bool() {
                    Some(true) => Ok(()),
                    _ => Err(Error::new(
                        Exit::Unavailable,
                        self.rclone.show(&self.rel),
                        format!(
                            "rclone's upload failed: {}",
                            status["error"].as_str().unwrap_or("no reason given")
                        ),
                    )
                    .with_hint("check the remote with `rclone about REMOTE:`, then run again")),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the upload (the file did not hash right, or reading it failed).
    pub(crate) fn abort(self) {
        let _ = self.rclone.call("job/stop", json!({"jobid": self.id}));
    }
}

fn copy_args(fs: &str, local: &Path, rel: &str, run_async: bool) -> Value {
    let src = local.display().to_string();
    json!({
        "srcFs": "/",
        "srcRemote": src.trim_start_matches('/'),
        "dstFs": fs,
        "dstRemote": rel,
        "_async": run_async,
    })
}

/// A path component for a URL: everything but unreserved bytes escaped.
fn urlencoding(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(data).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rclone's error JSON gives the message; a bare answer gives its text;
    /// what is missing is told apart from what failed.
    #[test]
    fn failures_read_from_answers() {
        let f = Failed::from_answer(404, r#"{"error": "object not found", "status": 404}"#);
        assert_eq!(f.said, "object not found");
        assert!(f.is_missing());
        let f = Failed::from_answer(500, "upstream timed out\n");
        assert_eq!(f.said, "upstream timed out");
        assert!(!f.is_missing());
    }

    /// Names in URLs keep their bytes: spaces, colons, non-ASCII escaped.
    #[test]
    fn url_components_escaped() {
        assert_eq!(urlencoding("a b:c"), "a%20b%3Ac");
        assert_eq!(urlencoding("é"), "%C3%A9");
    }
}
