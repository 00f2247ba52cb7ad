//! The shared destination: object_store's `InMemory`, seen by each machine
//! through its own view that takes a scheduler turn before every operation,
//! stamps objects with simulated time, dies at the injected crash, and has
//! the invariants checked after every operation that changed something.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartId, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::sched::Sched;

/// Checks the destination after a change (the store, the simulated time);
/// returns what is wrong.
pub type Checker = Box<dyn Fn(&InMemory, f64) -> Vec<String> + Send + Sync>;

/// What every view shares.
pub struct Shared {
    pub inner: Arc<InMemory>,
    pub sched: Arc<Sched>,
    /// Simulated modified time of each object, seconds since the start.
    pub times: Mutex<HashMap<Path, f64>>,
    pub epoch: DateTime<Utc>,
    pub check: Checker,
    pub violations: Mutex<Vec<String>>,
    /// Locks broken by another machine, and records put after.
    pub fences: Mutex<crate::fences::Fences>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    pub fn at(&self, secs: f64) -> DateTime<Utc> {
        self.epoch + chrono::Duration::milliseconds((secs * 1000.0) as i64)
    }
}

/// One machine's view.
pub struct View {
    pub shared: Arc<Shared>,
    pub machine: usize,
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "View(m{})", self.machine)
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sim(m{})", self.machine)
    }
}

fn dead() -> object_store::Error {
    object_store::Error::Generic {
        store: "sim",
        source: "the process was killed (injected crash)".into(),
    }
}

impl View {
    /// Takes a turn for `what`; `Err` when the process is dead.
    fn turn(&self, what: String) -> Result<crate::sched::Grant> {
        self.shared.sched.op(self.machine, &what).ok_or_else(dead)
    }

    /// After the operation of `g` ran: stamps, checks, and dies if it must.
    fn after<T>(&self, g: crate::sched::Grant, changed: &[&Path], r: Result<T>) -> Result<T> {
        let now = self.shared.sched.time();
        if r.is_ok() && !changed.is_empty() {
            let mut times = self.shared.times.lock().expect("times");
            for p in changed {
                times.insert((*p).clone(), now);
            }
        }
        if !changed.is_empty() {
            let found = (self.shared.check)(&self.shared.inner, now);
            if !found.is_empty() {
                let mut v = self.shared.violations.lock().expect("violations");
                for f in found {
                    v.push(format!("after step {}: {f}", g.step));
                }
            }
        }
        if g.crash_after {
            self.shared.sched.crash_now(self.machine);
            return Err(dead());
        }
        r
    }

    fn stamp(&self, mut meta: ObjectMeta) -> ObjectMeta {
        let times = self.shared.times.lock().expect("times");
        if let Some(t) = times.get(&meta.location) {
            meta.last_modified = self.shared.at(*t);
        }
        meta
    }
}

#[async_trait]
impl ObjectStore for View {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let g = self.turn(format!("put {location} {:?}", opts.mode))?;
        let create = matches!(opts.mode, object_store::PutMode::Create);
        let r = self.shared.inner.put_opts(location, payload, opts).await;
        if r.is_ok() && create {
            let mut fences = self.shared.fences.lock().expect("fences");
            fences.created(self.machine, location.as_ref());
        }
        self.after(g, &[location], r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        // snap sends parts through MultipartStore; this path is not taken.
        self.shared.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let g = self.turn(format!("get {location}"))?;
        let r = self.shared.inner.get_opts(location, options).await;
        let r = r.map(|mut got| {
            got.meta = self.stamp(got.meta);
            got
        });
        self.after(g, &[], r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let shared = self.shared.clone();
        let machine = self.machine;
        locations
            .then(move |location| {
                let view = View {
                    shared: shared.clone(),
                    machine,
                };
                async move {
                    let location = location?;
                    let g = view.turn(format!("delete {location}"))?;
                    view.shared
                        .fences
                        .lock()
                        .expect("fences")
                        .removed(view.machine, location.as_ref());
                    let r = view
                        .shared
                        .inner
                        .delete_stream(futures::stream::iter([Ok(location.clone())]).boxed())
                        .next()
                        .await
                        .unwrap_or(Ok(location.clone()));
                    view.shared.times.lock().expect("times").remove(&location);
                    view.after(g, &[&location], r)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let what = format!("list {}", prefix.map(|p| p.to_string()).unwrap_or_default());
        let g = match self.turn(what) {
            Ok(g) => g,
            Err(e) => return futures::stream::iter([Err(e)]).boxed(),
        };
        let metas: Vec<Result<ObjectMeta>> =
            futures::executor::block_on(self.shared.inner.list(prefix).collect());
        let metas: Vec<Result<ObjectMeta>> = metas
            .into_iter()
            .map(|m| m.map(|m| self.stamp(m)))
            .collect();
        match self.after(g, &[], Ok(())) {
            Ok(()) => futures::stream::iter(metas).boxed(),
            Err(e) => futures::stream::iter([Err(e)]).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let g = self.turn(format!("list/ {prefix:?}"))?;
        let r = self.shared.inner.list_with_delimiter(prefix).await;
        self.after(g, &[], r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let g = self.turn(format!("copy {from} {to}"))?;
        let r = self.shared.inner.copy_opts(from, to, options).await;
        self.after(g, &[to], r)
    }
}

#[async_trait]
impl MultipartStore for View {
    async fn create_multipart(&self, path: &Path) -> Result<MultipartId> {
        let g = self.turn(format!("create-multipart {path}"))?;
        let r = self.shared.inner.create_multipart(path).await;
        self.after(g, &[], r)
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> Result<PartId> {
        let g = self.turn(format!("put-part {path} #{part_idx}"))?;
        let r = self.shared.inner.put_part(path, id, part_idx, data).await;
        self.after(g, &[], r)
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<PutResult> {
        let g = self.turn(format!("complete-multipart {path}"))?;
        let r = self.shared.inner.complete_multipart(path, id, parts).await;
        self.after(g, &[path], r)
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> Result<()> {
        let g = self.turn(format!("abort-multipart {path}"))?;
        let r = self.shared.inner.abort_multipart(path, id).await;
        self.after(g, &[], r)
    }
}

/// Every object of the store with its bytes (the checker's view, no turn taken).
pub fn snapshot(store: &InMemory) -> Vec<(String, Bytes)> {
    let metas: Vec<Result<ObjectMeta>> = futures::executor::block_on(store.list(None).collect());
    let mut out = Vec::new();
    for m in metas.into_iter().flatten() {
        let got = futures::executor::block_on(async {
            store
                .get_opts(&m.location, GetOptions::default())
                .await?
                .bytes()
                .await
        });
        if let Ok(b) = got {
            out.push((m.location.to_string(), b));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
