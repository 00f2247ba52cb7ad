//! Bucket destinations: S3 and S3-compatible services, GCS and Azure,
//! through `object_store` (and the fault harness's in-memory stores, which
//! are buckets too). Each operation is one request or a batch of
//! concurrent ones, retried by object_store with exponential backoff.

use std::io::Read;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, GetOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig,
};
use tokio::runtime::Runtime;

use snap_shared::error::{Error, Exit, Result};

use super::meta::Meta;
use crate::location::Service;
use crate::settings::DestSpec;

/// Small objects fetched at once from a bucket (records, when planning a prune).
const CONCURRENT_GETS: usize = 16;

/// The metadata key holding an object's sha256 (S3 `x-amz-meta-sha256`, GCS and Azure likewise).
pub const SHA256_META: &str = "sha256";

/// How to reach a bucket: retries of transient errors (with exponential backoff).
#[derive(Debug, Clone)]
pub struct Reach {
    pub retries: usize,
    pub retry_timeout: Duration,
}

impl Default for Reach {
    fn default() -> Reach {
        Reach {
            retries: 10,
            retry_timeout: Duration::from_secs(180),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Bucket {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) parts: Arc<dyn MultipartStore>,
    pub(crate) prefix: String,
    pub(crate) rt: Arc<Runtime>,
    /// Requests of one batch (gets, puts) in flight at once.
    pub(crate) concurrency: usize,
    /// The destination's URL, for messages.
    url: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({})", self.prefix)
    }
}

impl Bucket {
    /// A bucket over any object store (a test's in-memory one, the fault
    /// harness's recording one), with at most `concurrency` requests in flight.
    pub(crate) fn over(
        url: String,
        store: Arc<dyn ObjectStore>,
        parts: Arc<dyn MultipartStore>,
        rt: &Arc<Runtime>,
        concurrency: usize,
    ) -> Bucket {
        Bucket {
            store,
            parts,
            prefix: String::new(),
            rt: rt.clone(),
            concurrency: concurrency.max(1),
            url,
        }
    }

    pub(crate) fn rel_key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    pub(crate) fn key(&self, rel: &str) -> ObjPath {
        ObjPath::from(self.rel_key(rel))
    }

    /// One PUT of a whole object with its sha256 as metadata, in `mode`
    /// (plain, create-only, or only over the version given).
    pub(crate) fn put(
        &self,
        rel: &str,
        data: Bytes,
        sha256: &str,
        mode: PutMode,
    ) -> object_store::Result<object_store::PutResult> {
        let opts = PutOptions {
            mode,
            attributes: sha_attributes(sha256),
            ..Default::default()
        };
        self.rt.block_on(
            self.store
                .put_opts(&self.key(rel), PutPayload::from(data), opts),
        )
    }

    /// How messages name a key: `URL/key`.
    fn show(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url.trim_end_matches('/'))
    }

    /// An object_store error as one line with a sysexits code.
    pub(crate) fn error(&self, rel: &str, e: object_store::Error) -> Error {
        error_for(&self.show(rel), e)
    }

    pub(crate) fn head(&self, rel: &str) -> Result<Option<Meta>> {
        let opts = GetOptions {
            head: true,
            ..Default::default()
        };
        match self.rt.block_on(self.store.get_opts(&self.key(rel), opts)) {
            Ok(r) => Ok(Some(Meta {
                size: r.meta.size,
                sha256: r
                    .attributes
                    .get(&Attribute::Metadata(SHA256_META.into()))
                    .map(|v| v.to_string()),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    pub(crate) fn get(&self, rel: &str) -> Result<Bytes> {
        self.rt
            .block_on(async { self.store.get(&self.key(rel)).await?.bytes().await })
            .map_err(|e| self.error(rel, e))
    }

    /// A reader of an object, streamed: the body arrives while it is read.
    pub(crate) fn reader(&self, rel: &str) -> Result<Box<dyn Read + Send>> {
        let result = self
            .rt
            .block_on(self.store.get(&self.key(rel)))
            .map_err(|e| self.error(rel, e))?;
        let body = result.into_stream().map(|chunk| {
            chunk.map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::ConnectionAborted, first_line(&e))
            })
        });
        Ok(Box::new(crate::stream::StreamReader::from_io(
            &self.rt,
            body.boxed(),
        )))
    }

    /// Ranged GETs, concurrently, each retried like any request. A range
    /// past the end is an error, not a short answer.
    pub(crate) fn read_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let key = self.key(rel);
        let gets = ranges.iter().map(|r| {
            let (store, key, r) = (self.store.clone(), key.clone(), r.clone());
            async move { store.get_range(&key, r).await }
        });
        let results: Vec<_> = self.rt.block_on(
            futures::stream::iter(gets)
                .buffered(self.concurrency)
                .collect(),
        );
        results
            .into_iter()
            .zip(ranges)
            .map(|(got, r)| {
                let got = got.map_err(|e| self.error(rel, e))?;
                match got.len() as u64 == r.end - r.start {
                    true => Ok(got),
                    false => Err(Error::new(
                        Exit::Data,
                        self.show(rel),
                        format!("asked for bytes {}..{}, got {}", r.start, r.end, got.len()),
                    )),
                }
            })
            .collect()
    }

    /// The last `n` bytes in one request (Azure takes no suffix ranges: the
    /// size first, then the range).
    pub(crate) fn read_tail(&self, rel: &str, n: u64) -> Result<(Bytes, u64)> {
        let opts = GetOptions {
            range: Some(object_store::GetRange::Suffix(n)),
            ..Default::default()
        };
        let key = self.key(rel);
        let got = self.rt.block_on(async {
            let got = self.store.get_opts(&key, opts).await?;
            let size = got.meta.size;
            Ok((got.bytes().await?, size))
        });
        match got {
            Err(object_store::Error::NotSupported { .. }) => {
                let size = self
                    .head(rel)?
                    .ok_or_else(|| Error::new(Exit::NoInput, self.show(rel), "not found"))?
                    .size;
                let from = size.saturating_sub(n);
                let range = from..size;
                let got = self.read_ranges(rel, std::slice::from_ref(&range))?;
                Ok((got.into_iter().next().unwrap_or_default(), size))
            }
            other => other.map_err(|e| self.error(rel, e)),
        }
    }

    pub(crate) fn put_small(&self, rel: &str, data: Bytes, sha256: &str) -> Result<()> {
        self.put(rel, data, sha256, PutMode::Overwrite)
            .map(|_| ())
            .map_err(|e| self.error(rel, e))
    }

    pub(crate) fn delete(&self, rel: &str) -> Result<()> {
        match self.rt.block_on(self.store.delete(&self.key(rel))) {
            Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => Err(self.error(rel, e)),
            _ => Ok(()),
        }
    }

    /// Bulk removal: S3 DeleteObjects, Azure batches, GCS concurrent deletes.
    pub(crate) fn delete_many(&self, rels: &[String]) -> Result<()> {
        let keys: Vec<object_store::Result<ObjPath>> =
            rels.iter().map(|r| Ok(self.key(r))).collect();
        let results: Vec<_> = self.rt.block_on(
            self.store
                .delete_stream(futures::stream::iter(keys).boxed())
                .collect(),
        );
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(rels.get(i).map_or("", String::as_str), e)),
            }
        }
        Ok(())
    }

    pub(crate) fn get_many(&self, rels: &[String]) -> Vec<Result<Bytes>> {
        let fetches = rels.iter().map(|rel| {
            let store = self.store.clone();
            let key = self.key(rel);
            async move { store.get(&key).await?.bytes().await }
        });
        let results: Vec<_> = self.rt.block_on(
            futures::stream::iter(fetches)
                .buffered(self.concurrency)
                .collect(),
        );
        results
            .into_iter()
            .zip(rels)
            .map(|(r, rel)| r.map_err(|e| self.error(rel, e)))
            .collect()
    }

    pub(crate) fn put_many(&self, items: Vec<(String, Bytes, String)>) -> Result<()> {
        let puts = items.into_iter().map(|(rel, data, sha)| {
            let store = self.store.clone();
            let key = self.key(&rel);
            let opts = PutOptions {
                attributes: sha_attributes(&sha),
                ..Default::default()
            };
            async move {
                let r = store.put_opts(&key, PutPayload::from(data), opts).await;
                (rel, r)
            }
        });
        let results: Vec<_> = self.rt.block_on(
            futures::stream::iter(puts)
                .buffer_unordered(self.concurrency)
                .collect(),
        );
        for (rel, r) in results {
            r.map_err(|e| self.error(&rel, e))?;
        }
        Ok(())
    }

    pub(crate) fn list(&self, sub: &str) -> Result<Vec<(String, u64, SystemTime)>> {
        let start = match sub {
            "" => self.prefix.clone(),
            _ => self.rel_key(sub),
        };
        let prefix = (!start.is_empty()).then(|| ObjPath::from(start));
        let metas: Vec<_> = self.rt.block_on(self.store.list(prefix.as_ref()).collect());
        let mut out = Vec::with_capacity(metas.len());
        for meta in metas {
            let meta = meta.map_err(|e| self.error(sub, e))?;
            let key = meta.location.to_string();
            let rel = match self.prefix.as_str() {
                "" => key,
                p => key
                    .strip_prefix(p)
                    .unwrap_or(&key)
                    .trim_start_matches('/')
                    .to_string(),
            };
            out.push((rel, meta.size, SystemTime::from(meta.last_modified)));
        }
        Ok(out)
    }
}

pub(crate) fn sha_attributes(sha256: &str) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata(SHA256_META.into()),
        sha256.to_string().into(),
    );
    attributes
}

/// One line for an object_store error: its first line, with an exit code by kind.
pub(crate) fn error_for(context: &str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let exit = match &e {
        E::NotFound { .. } => Exit::NoInput,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Exit::NoPerm,
        E::AlreadyExists { .. } | E::Precondition { .. } => Exit::CantCreate,
        E::NotSupported { .. } | E::NotImplemented { .. } => Exit::Software,
        _ => Exit::Unavailable,
    };
    Error::new(exit, context.to_string(), first_line(&e))
}

/// Applies `key = value` settings to a builder; a key the service does not know is an error.
fn configure<B, K: std::str::FromStr>(
    mut builder: B,
    pairs: &[(String, String)],
    unknown: impl Fn(&str) -> Error,
    set: impl Fn(B, K, &str) -> B,
) -> Result<B> {
    for (k, v) in pairs {
        let key: K = k.parse().map_err(|_| unknown(k))?;
        builder = set(builder, key, v);
    }
    Ok(builder)
}

fn retry(reach: &Reach) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: reach.retries,
        retry_timeout: reach.retry_timeout,
    }
}

pub(crate) fn open_bucket(
    spec: &DestSpec,
    service: Service,
    bucket: &str,
    prefix: &str,
    rt: &Arc<Runtime>,
    reach: &Reach,
) -> Result<Bucket> {
    let ctx = |what: String| format!("destination {}: {what}", spec.name);
    let unknown = |k: &str| {
        Error::config(ctx(format!("option {k}")), "unknown for this service")
            .with_hint("see docs/destinations.md for the settings of each service")
    };
    let built = |e: object_store::Error| Error::config(ctx("settings".into()), first_line(&e));
    // Timeouts first, so that the config's options can change them; the
    // environment (AWS_*, GOOGLE_*, AZURE_*) is read by from_env.
    let mut pairs: Vec<(String, String)> = vec![
        ("connect_timeout".into(), "30s".into()),
        ("timeout".into(), "600s".into()),
    ];
    pairs.extend(spec.options.iter().cloned());
    let (store, parts): (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) = match service {
        Service::S3 => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let b = configure(b, &pairs, unknown, |b, k: AmazonS3ConfigKey, v| {
                b.with_config(k, v)
            })?;
            let s = Arc::new(b.with_retry(retry(reach)).build().map_err(built)?);
            (s.clone(), s)
        }
        Service::Gcs => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
            let b = configure(b, &pairs, unknown, |b, k: GoogleConfigKey, v| {
                b.with_config(k, v)
            })?;
            let s = Arc::new(b.with_retry(retry(reach)).build().map_err(built)?);
            (s.clone(), s)
        }
        Service::Azure => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let b = MicrosoftAzureBuilder::from_env().with_container_name(bucket);
            let b = configure(b, &pairs, unknown, |b, k: AzureConfigKey, v| {
                b.with_config(k, v)
            })?;
            let s = Arc::new(b.with_retry(retry(reach)).build().map_err(built)?);
            (s.clone(), s)
        }
    };
    Ok(Bucket {
        store,
        parts,
        prefix: prefix.to_string(),
        rt: rt.clone(),
        concurrency: CONCURRENT_GETS,
        url: spec.location.url(),
    })
}

/// An object_store error's first line (some go on with the HTTP body).
pub(crate) fn first_line(e: &object_store::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}
