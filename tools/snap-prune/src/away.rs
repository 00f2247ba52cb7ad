//! `retention.keep_archives: "until-pushed"`: the store drops an archive's
//! data once every configured destination holds it, so that the store holds
//! trees and the destinations hold archives.
//!
//! "Holds it" is judged at each destination, never from what this machine
//! remembers pushing: the set's folder lists the record, the index and the
//! data file at the size the record gives, and the record there has the
//! same sha256 (so another machine's archive under the same name does not
//! count). When `schedule.verify` runs, the store's verify log must also
//! show the archive read back whole at that destination (by its name or its
//! URL). A destination that is not there (a drive at home) holds nothing
//! this run: the data stays until the next.
//!
//! The archive stays listed: its record, index, sums and signature remain,
//! so `list`, `diff`, `show` and the next incremental's comparison (block
//! digests live in the index) work as before. The [`Away`] marker is written
//! and synced before the data file goes, so a crash leaves either the data
//! or the marker; a marker beside leftover data is finished by the next run.
//! A pinned archive keeps its data.
//!
//! An archive whose data went away and that no destination holds any more
//! (their own retention removed it) exists nowhere: the store prune removes
//! its record too, as broken ([`mark_gone`]), but only when every destination
//! could be read.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use snap_cli::Reporter;
use snap_dest::{Dest, DestSpec, Reach, Runtime};
use snap_shared::archive::{self, ArchiveFiles, Away};
use snap_shared::error::{Error, Result};
use snap_shared::record::ArchiveRecord;
use snap_shared::retention::listing::Entry;
use snap_shared::size::human_bytes;
use snap_shared::store::Store;
use snap_shared::verified::{self, Verified};

use crate::target::Target;

/// What a store prune needs to judge whether an archive's data may go.
pub struct Handover {
    specs: Vec<DestSpec>,
    rt: Arc<Runtime>,
    /// Whether each destination must have verified the archive.
    verify: bool,
    verified: BTreeMap<(String, String, String), Verified>,
    /// Each destination as opened (or why it could not be), on first use.
    places: RefCell<HashMap<String, std::result::Result<Place, String>>>,
}

/// One opened destination and the listings of its set folders read so far.
struct Place {
    dest: Dest,
    /// Per set, the keys there with sizes (or why they could not be listed).
    listed: HashMap<String, std::result::Result<HashMap<String, u64>, String>>,
}

impl Handover {
    /// The handover to `specs` (every configured destination); None when
    /// there are none, since then nothing can hold an archive.
    pub fn new(specs: Vec<DestSpec>, verify: bool, store: &Store) -> Result<Option<Handover>> {
        if specs.is_empty() {
            return Ok(None);
        }
        Ok(Some(Handover {
            specs,
            rt: snap_dest::runtime()?,
            verify,
            verified: verified::latest(store),
            places: RefCell::new(HashMap::new()),
        }))
    }

    /// `Ok(names)` of the destinations when every one holds the archive
    /// `rec` whole; `Err(why)` names the first that does not, or that could
    /// not be asked (absent, or answering with an error).
    pub fn held(&self, rec: &ArchiveRecord) -> Result<std::result::Result<Vec<String>, String>> {
        let mut names = Vec::new();
        for spec in &self.specs {
            if let Err(why) = self.held_at(spec, rec)? {
                return Ok(Err(why));
            }
            names.push(spec.name.clone());
        }
        Ok(Ok(names))
    }

    /// The listing of `set` at `spec` (read once a run) handed to `f` with
    /// the destination; `Err(why)` when the destination cannot be opened.
    fn listing<R>(
        &self,
        spec: &DestSpec,
        set: &str,
        f: impl FnOnce(&Dest, &HashMap<String, u64>) -> R,
    ) -> Result<std::result::Result<R, String>> {
        let mut places = self.places.borrow_mut();
        let place = places.entry(spec.name.clone()).or_insert_with(|| {
            Dest::open(spec, &self.rt, &Reach::default(), false)
                .map(|dest| Place {
                    dest,
                    listed: HashMap::new(),
                })
                .map_err(|e| format!("destination {} cannot be read: {}", spec.name, e.cause))
        });
        let place = match place {
            Ok(p) => p,
            Err(why) => return Ok(Err(why.clone())),
        };
        // A destination that answers with an error holds nothing this run,
        // as one that is not there: the data stays, and the prune goes on.
        let listed = place.listed.entry(set.to_string()).or_insert_with(|| {
            place
                .dest
                .list(set)
                .map(|keys| keys.into_iter().collect())
                .map_err(|e| format!("destination {} cannot be listed: {e}", spec.name))
        });
        match listed {
            Ok(keys) => Ok(Ok(f(&place.dest, keys))),
            Err(why) => Ok(Err(why.clone())),
        }
    }

    /// Whether `spec` holds the archive `rec` whole (see the module doc).
    fn held_at(
        &self,
        spec: &DestSpec,
        rec: &ArchiveRecord,
    ) -> Result<std::result::Result<(), String>> {
        let key = |name: &str| format!("{}/{name}", rec.set);
        let json = key(&format!("{}.json", rec.id));
        let data = key(&file_name(&rec.path));
        let index = key(&file_name(&rec.index));
        let listed = self.listing(spec, &rec.set, |dest, keys| {
            let not = |what: &str| Err(format!("{}: {what}", dest.show(&data)));
            match keys.get(&data) {
                None => return not("not there"),
                Some(&n) if n != rec.bytes => {
                    return not(&format!("{n} bytes, the record says {}", rec.bytes));
                }
                Some(_) => {}
            }
            if !keys.contains_key(&index) || !keys.contains_key(&json) {
                return not("its record or index is not beside it");
            }
            Ok((dest.get_bytes(&json), dest.show(&json)))
        })?;
        let (read, shown) = match listed {
            Ok(Ok(read)) => read,
            Ok(Err(why)) | Err(why) => return Ok(Err(why)),
        };
        let theirs: ArchiveRecord = match read {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                Err(e) => return Ok(Err(format!("{shown}: {e}"))),
            },
            Err(e) if e.exit == snap_shared::error::Exit::NoInput => {
                return Ok(Err(format!("{shown}: gone")));
            }
            Err(e) => return Ok(Err(format!("{shown}: {e}"))),
        };
        if theirs.sha256 != rec.sha256 {
            return Ok(Err(format!(
                "{shown} is another archive (sha256 {})",
                theirs.sha256
            )));
        }
        if self.verify && !self.verified_at(spec, rec) {
            return Ok(Err(format!(
                "not yet verified at {} (schedule.verify)",
                spec.name
            )));
        }
        Ok(Ok(()))
    }

    /// Whether no destination holds the data of the archive `rec` any more
    /// (each was read, and none lists its data file at its size): the
    /// archive, whose data the store dropped, exists nowhere. False when a
    /// destination could not be read: nothing is proved then.
    pub fn nowhere(&self, rec: &ArchiveRecord) -> Result<bool> {
        let data = format!("{}/{}", rec.set, file_name(&rec.path));
        for spec in &self.specs {
            let held = self.listing(spec, &rec.set, |_, keys| {
                keys.get(&data) == Some(&rec.bytes)
            })?;
            if held != Ok(false) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the verify log has the archive read back whole at `spec`.
    fn verified_at(&self, spec: &DestSpec, rec: &ArchiveRecord) -> bool {
        let what = format!("{}/{}", rec.set, rec.id);
        [spec.name.clone(), spec.location.url()]
            .into_iter()
            .any(|place| {
                self.verified
                    .get(&(place, "archive".to_string(), what.clone()))
                    .is_some_and(|v| v.ok)
            })
    }
}

/// Drops the data of the archive `rec` in the folder `dir`: the marker
/// first (synced), then the data file. The bytes it freed.
pub fn drop_data(dir: &Path, rec: &ArchiveRecord, at: Vec<String>) -> Result<u64> {
    let files = ArchiveFiles::new(dir, &rec.id);
    let data = archive::beside(&files.record(), &rec.path);
    let size = std::fs::metadata(&data)
        .map_err(|e| Error::io(&data, e))?
        .len();
    Away {
        since: chrono::Utc::now(),
        at,
    }
    .write(&files)?;
    std::fs::remove_file(&data).map_err(|e| Error::io(&data, e))?;
    snap_shared::fsutil::fsync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(size)
}

/// What a marker left beside its data (a crash between the two) still
/// holds; the data goes now. The bytes freed.
pub fn finish(dir: &Path, rec: &ArchiveRecord) -> Result<u64> {
    let data = archive::beside(&ArchiveFiles::new(dir, &rec.id).record(), &rec.path);
    match std::fs::metadata(&data) {
        Ok(m) => {
            std::fs::remove_file(&data).map_err(|e| Error::io(&data, e))?;
            snap_shared::fsutil::fsync_dir(dir).map_err(|e| Error::io(dir, e))?;
            Ok(m.len())
        }
        Err(_) => Ok(0),
    }
}

/// The handover and the store's archive folder, when `target` is the
/// store's archives and the config hands them over.
fn store_archives<'a>(
    handover: Option<&'a Handover>,
    target: &'a Target,
) -> Option<(&'a Handover, &'a Path)> {
    match (handover, target) {
        (
            Some(h),
            Target::Archives {
                dest,
                store: Some(_),
            },
        ) => dest.folder().map(|root| (h, root)),
        _ => None,
    }
}

fn file_name(recorded: &str) -> String {
    Path::new(recorded)
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// For a store archive the rules keep: drops its data when every
/// destination holds it (with `dry_run`, says it would). The places and the
/// bytes freed, when it went (or would go).
pub(crate) fn hand_over(
    handover: Option<&Handover>,
    target: &Target,
    (set, entry): (&str, &Entry),
    dry_run: bool,
    report: &Reporter,
) -> Result<Option<(Vec<String>, u64)>> {
    let Some((h, root)) = store_archives(handover, target) else {
        return Ok(None);
    };
    if entry.pinned || entry.broken.is_some() || entry.unreadable.is_some() {
        return Ok(None);
    }
    let dir = root.join(set);
    let files = ArchiveFiles::new(&dir, &entry.id);
    let rec = archive::read_record(&files.record())?;
    let name = format!("{set}/{}", entry.id);
    if entry.objects.iter().any(|o| o.ends_with(archive::AWAY)) {
        if !dry_run {
            let freed = finish(&dir, &rec)?;
            if freed > 0 {
                report.note(&format!(
                    "  away    {name}  finished dropping its data: frees {}",
                    human_bytes(freed)
                ));
            }
        }
        return Ok(None);
    }
    let at = match h.held(&rec)? {
        Ok(at) => at,
        Err(why) => {
            report.detail(|| format!("  {name}: its data stays in the store: {why}"));
            return Ok(None);
        }
    };
    let freed = match dry_run {
        true => rec.bytes,
        false => drop_data(&dir, &rec, at.clone())?,
    };
    let verb = if dry_run { "would free" } else { "frees" };
    report.note(&format!(
        "  away    {name}  its data is at {}: {verb} {}",
        at.join(", "),
        human_bytes(freed)
    ));
    Ok(Some((at, freed)))
}

/// Marks as broken the store's archives whose data the store dropped and
/// that no destination holds any more: the rules cannot keep what exists
/// nowhere, and a listing must not offer it.
pub(crate) fn mark_gone(
    handover: Option<&Handover>,
    target: &Target,
    groups: &mut [snap_shared::retention::listing::Group],
) -> Result<()> {
    let Some((h, root)) = store_archives(handover, target) else {
        return Ok(());
    };
    for g in groups.iter_mut() {
        for e in g.entries.iter_mut().filter(|e| e.broken.is_none()) {
            if !e.objects.iter().any(|o| o.ends_with(archive::AWAY)) {
                continue;
            }
            let files = ArchiveFiles::new(root.join(&g.set), &e.id);
            let Ok(rec) = archive::read_record(&files.record()) else {
                continue;
            };
            if h.nowhere(&rec)? {
                e.broken = Some(
                    "its data was dropped here once the destinations held it, and no destination holds it any more".into(),
                );
            }
        }
    }
    Ok(())
}
