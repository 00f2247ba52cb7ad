//! `memory://NAME` destinations: object stores a process registered under a
//! name, on a host of its own. Only snap's fault harness registers any: it
//! runs several simulated machines' pushes and prunes in one process, each
//! opening `memory://<machine>` onto one shared recording store, with its
//! own clocks and identity, and requests made one at a time so that it can
//! order every machine's operations. Anything else opening `memory://` gets
//! a usage error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;
use object_store::multipart::MultipartStore;
use tokio::runtime::Runtime;

use super::bucket::Bucket;
use crate::host::Host;

/// What a name opens.
#[derive(Clone)]
pub struct Registered {
    pub store: Arc<dyn ObjectStore>,
    pub parts: Arc<dyn MultipartStore>,
    pub host: Arc<dyn Host>,
    /// Requests in flight at once (1 for the harness).
    pub concurrency: usize,
}

static REGISTRY: Mutex<BTreeMap<String, Registered>> = Mutex::new(BTreeMap::new());

/// Makes `memory://name` open onto `what` (replacing an earlier one).
pub fn register(name: &str, what: Registered) {
    REGISTRY
        .lock()
        .expect("memory registry")
        .insert(name.to_string(), what);
}

/// Forgets `memory://name`.
pub fn unregister(name: &str) {
    REGISTRY.lock().expect("memory registry").remove(name);
}

/// The bucket `memory://name` opens, and the host it is opened on.
pub(crate) fn open(name: &str, rt: &Arc<Runtime>) -> Option<(Bucket, Arc<dyn Host>)> {
    let r = REGISTRY
        .lock()
        .expect("memory registry")
        .get(name)
        .cloned()?;
    let url = format!("memory://{name}");
    Some((
        Bucket::over(url, r.store, r.parts, rt, r.concurrency),
        r.host,
    ))
}
