//! One archive to one destination, in the order that keeps a destination honest.
//!
//! The data file goes first (resumable, in parts), then the index and the
//! `sha256sum` file, and the `.json` record last: a destination lists an
//! archive by its record, so until the record lands the archive is not
//! there, whatever else an interrupted run left. Each object is sent only
//! when the destination lacks it or holds something else; every byte sent is
//! hashed and compared with the sha256 the archive promises, and the
//! destination's size is checked after each object. `--verify` reads every
//! object back and hashes it; a mismatch removes the object (exit 65).

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::{Value, json};

use snap_cli::{Reporter, Tally};
use snap_dest::upload::{Source, Tuning};
use snap_dest::{Dest, Meta};
use snap_shared::archive::{self, ArchiveFiles, Away};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::hash::Sha256Digest;
use snap_shared::record::{PushedRecord, Record};
use snap_shared::size::{Floor, human_bytes};

use crate::input::Local;

/// How to push.
pub struct Options<'a> {
    pub tuning: Tuning,
    pub verify: bool,
    pub dry_run: bool,
    /// Free space a folder destination must keep (after the push).
    pub floor: Floor,
    /// Records this run published or found at the destination. While its
    /// lock is held nothing removes them, so a base among them needs no
    /// second look (a chain pushed oldest first costs no HEAD per archive).
    pub seen: &'a RefCell<HashSet<String>>,
    /// The keys of each set's folder at the destination, listed once a run
    /// (one request instead of a HEAD per object of every archive): an
    /// object not in the listing is sent without asking; one in it is still
    /// checked. Nothing this run relies on can vanish while its lock is held.
    pub listed: &'a RefCell<std::collections::HashMap<String, HashSet<String>>>,
    /// Bytes this run has sent, counted as each object lands, so that an
    /// archive that fails after its data went still counts what was sent.
    pub sent: &'a std::cell::Cell<u64>,
}

/// What pushing one archive to one destination did.
pub struct Outcome {
    /// `None` for a dry run.
    pub record: Option<PushedRecord>,
    /// Bytes sent (or, for a dry run, that would be sent).
    pub sent: u64,
    /// Bytes already at the destination.
    pub skipped: u64,
}

impl Outcome {
    /// What a dry run would send, and what is there already.
    fn planned(sent: u64, skipped: u64) -> Outcome {
        Outcome {
            record: None,
            sent,
            skipped,
        }
    }
}

/// ` (WORDS)` about `bytes`, or nothing when there are none.
fn aside(bytes: u64, words: impl FnOnce(String) -> String) -> String {
    match bytes {
        0 => String::new(),
        n => format!(" ({})", words(human_bytes(n))),
    }
}

/// One of an archive's four files, local and remote.
struct Object {
    local: std::path::PathBuf,
    key: String,
    size: u64,
    /// What its bytes must hash to, when known before reading it.
    sha256: Option<Sha256Digest>,
    /// The archive's data file (sent in resumable parts); the others are small.
    is_data: bool,
}

/// Pushes `local` to `dest`.
pub fn push(local: &Local, dest: &Dest, opts: &Options, report: &Reporter) -> Result<Outcome> {
    let objects = objects_of(local)?;
    let json = objects.last().expect("an archive has a record");
    let listed = listed_among(dest, &objects, opts)?;
    if listed.contains(&json.key)
        && let Some(existing) = remote_record(dest, &json.key)?
    {
        return already_there(local, dest, &objects, &existing, opts, report);
    }
    let mut todo = Vec::new();
    let mut skipped = 0;
    let others: Vec<&Object> = objects
        .iter()
        .filter(|o| o.key != json.key && listed.contains(&o.key))
        .collect();
    todo.extend(
        objects
            .iter()
            .filter(|o| o.key != json.key && !listed.contains(&o.key)),
    );
    for (o, there) in others
        .iter()
        .zip(at_once(dest, &others, |o| holds(dest, o))?)
    {
        if there {
            skipped += o.size;
        } else {
            todo.push(*o);
        }
    }
    if let Some(e) = todo.iter().find_map(|o| data_away(local, dest, o)) {
        return Err(e);
    }
    todo.push(json);
    let needed: u64 = todo.iter().map(|o| o.size).sum();
    if opts.dry_run {
        report.note(&format!(
            "would send {} to {}: {} of {} objects, {}{}",
            local.name(),
            dest.name,
            todo.len(),
            objects.len(),
            human_bytes(needed),
            aside(skipped, |b| format!("{b} already there")),
        ));
        return Ok(Outcome::planned(needed, skipped));
    }
    check_space(dest, needed, opts.floor)?;
    let mut sent = 0;
    let mut resumed = 0;
    let rest: Vec<&Object> = todo.into_iter().filter(|o| o.key != json.key).collect();
    // At a bucket the small objects go at once (each sent, then checked
    // there), beside the data; elsewhere all go one after the other.
    let (small, rest): (Vec<&Object>, Vec<&Object>) = match dest.parallel() > 1 {
        true => rest
            .into_iter()
            .partition(|o| !o.is_data && o.size <= SMALL),
        false => (Vec::new(), rest),
    };
    let verify = opts.verify;
    // The lock is asked of the destination before the record is written;
    // that request goes with the last object's landing check.
    let mut confirmed = false;
    let small_sent = std::thread::scope(|s| -> Result<u64> {
        // A thread only when there is something to send beside the rest.
        let beside = (!small.is_empty()).then(|| {
            s.spawn(|| {
                at_once(dest, &small, |o| {
                    let n = send_small(dest, o)?;
                    check_landed(dest, o, verify).map(|()| n)
                })
            })
        });
        let mine = (|| -> Result<()> {
            for (i, o) in rest.iter().enumerate() {
                let last = i + 1 == rest.len();
                let s = send(local, dest, o, opts, report)?;
                opts.sent.set(opts.sent.get() + s.sent);
                sent += s.sent;
                resumed += s.resumed;
                match last {
                    true => {
                        dest.confirm_fence_with(|| check_landed(dest, o, verify))?;
                        confirmed = true;
                    }
                    false => check_landed(dest, o, verify)?,
                }
            }
            Ok(())
        })();
        let theirs = match beside {
            Some(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            None => Ok(Vec::new()),
        };
        mine?;
        Ok(theirs?.iter().sum())
    })?;
    opts.sent.set(opts.sent.get() + small_sent);
    sent += small_sent;
    let n = publish(local, dest, json, opts, confirmed)?;
    opts.sent.set(opts.sent.get() + n);
    sent += n;
    if opts.verify && skipped > 0 {
        for o in objects.iter().filter(|o| o.key != json.key) {
            check_landed(dest, o, true)?;
        }
    }
    report.detail(|| {
        format!(
            "{} -> {}: sent {}",
            local.name(),
            dest.name,
            human_bytes(sent)
        )
    });
    Ok(Outcome {
        record: Some(record(
            local,
            dest,
            &objects,
            opts.verify,
            sent,
            resumed,
            false,
        )),
        sent,
        skipped: skipped + resumed,
    })
}

/// The archive's files, checked to be here, with what their bytes must hash to.
fn objects_of(local: &Local) -> Result<Vec<Object>> {
    let files = local.files_in_order();
    let sums_text = std::fs::read_to_string(&files[2]).map_err(|e| {
        Error::io(&files[2], e).with_hint("an archive travels with its .sha256 file; pack it again")
    })?;
    let sums = archive::parse_sums(&sums_text)
        .map_err(|e| Error::data(files[2].display().to_string(), e))?;
    let expected = |p: &Path| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        sums.iter().find(|(_, n)| *n == name).map(|(d, _)| *d)
    };
    let away = Away::read(&ArchiveFiles::new(&local.dir, &local.rec.id));
    let mut out = Vec::new();
    for (i, path) in files.iter().enumerate() {
        // Data the store dropped (keep_archives) is known by its record:
        // a destination that holds it is checked against that.
        let size = match std::fs::metadata(path) {
            Err(_) if i == 0 && away.is_some() => local.rec.bytes,
            meta => meta.map_err(|e| Error::io(path, e))?.len(),
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let sha256 = match i {
            0 => Some(local.rec.sha256.parse().map_err(|e| {
                Error::data(format!("archive {}", local.name()), format!("sha256: {e}"))
            })?),
            1 => expected(path),
            _ => None,
        };
        if i == 0 && size != local.rec.bytes {
            return Err(Error::data(
                path.display().to_string(),
                format!("is {size} bytes, its record says {}", local.rec.bytes),
            ));
        }
        out.push(Object {
            local: path.clone(),
            key: format!("{}/{name}", local.rec.set),
            size,
            sha256,
            is_data: i == 0,
        });
    }
    Ok(out)
}

/// The record already at the destination under this archive's name, if any.
/// Which of the archive's objects are in the listing of its set's folder at
/// the destination (listed the first time this run pushes there).
fn listed_among(dest: &Dest, objects: &[Object], opts: &Options) -> Result<HashSet<String>> {
    let Some(first) = objects.first() else {
        return Ok(HashSet::new());
    };
    let folder = first
        .key
        .rsplit_once('/')
        .map_or("", |(f, _)| f)
        .to_string();
    if !opts.listed.borrow().contains_key(&folder) {
        let keys: HashSet<String> = dest.list(&folder)?.into_iter().map(|(k, _)| k).collect();
        opts.listed.borrow_mut().insert(folder.clone(), keys);
    }
    let listed = opts.listed.borrow();
    let keys = &listed[&folder];
    Ok(objects
        .iter()
        .filter(|o| keys.contains(&o.key))
        .map(|o| o.key.clone())
        .collect())
}

fn remote_record(dest: &Dest, key: &str) -> Result<Option<Value>> {
    // One request: a missing record is the usual case, and reads as NoInput.
    let bytes = match dest.get_bytes(key) {
        Ok(b) => b,
        Err(e) if e.exit == Exit::NoInput => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::data(dest.show(key), format!("not a JSON record: {e}")))
}

/// The archive's record is at the destination: the same archive (checked,
/// repaired if its data went missing) or another one (refused).
fn already_there(
    local: &Local,
    dest: &Dest,
    objects: &[Object],
    existing: &Value,
    opts: &Options,
    report: &Reporter,
) -> Result<Outcome> {
    if existing.get("sha256").and_then(Value::as_str) != Some(local.rec.sha256.as_str()) {
        let json = objects.last().expect("an archive has a record");
        return Err(another_archive(local, dest, &json.key, existing));
    }
    let total: u64 = objects.iter().map(|o| o.size).sum();
    let mut sent = 0;
    for o in &objects[..objects.len() - 1] {
        if !holds(dest, o)? {
            if opts.dry_run {
                sent += o.size;
                continue;
            }
            report.warn(&format!(
                "{}: missing or damaged at the destination; sending it again",
                dest.show(&o.key)
            ));
            sent += send(local, dest, o, opts, report)?.sent;
            check_landed(dest, o, opts.verify)?;
        } else if opts.verify && !opts.dry_run {
            check_landed(dest, o, true)?;
        }
    }
    if opts.dry_run {
        report.note(&format!(
            "{} is already at {}{}",
            local.name(),
            dest.name,
            aside(sent, |b| format!("would repair {b}")),
        ));
        return Ok(Outcome::planned(sent, total - sent));
    }
    let json = objects.last().expect("an archive has a record");
    opts.seen.borrow_mut().insert(json.key.clone());
    report.detail(|| format!("{} is already at {}", local.name(), dest.name));
    Ok(Outcome {
        record: Some(record(
            local,
            dest,
            objects,
            opts.verify,
            sent,
            0,
            sent == 0,
        )),
        sent,
        skipped: total - sent,
    })
}

/// A create-only write the destination refused although nothing is there
/// (a conflict answer with no object behind it): exit 75, nothing replaced.
pub(crate) fn refused_create(dest: &Dest, key: &str) -> Error {
    Error::new(
        Exit::TempFail,
        dest.show(key),
        "the destination refused to create it (a precondition failed) yet holds nothing there; nothing was replaced",
    )
    .with_hint("run the push again; if it repeats, the service's conditional writes are not to be trusted")
}

/// Refuses to replace another archive's record of the same name (exit 73).
fn another_archive(local: &Local, dest: &Dest, key: &str, theirs: &Value) -> Error {
    let sha = theirs.get("sha256").and_then(Value::as_str).unwrap_or("");
    Error::new(
        Exit::CantCreate,
        dest.show(key),
        format!(
            "holds another archive {} (sha256 {sha}); it is not replaced",
            local.name()
        ),
    )
    .with_hint("two machines may be pushing the same set name to one destination; give each its own prefix or set name")
}

/// Whether the destination already has this object whole: same size and,
/// where known, the same sha256 (bucket metadata, or the bytes of a small file).
fn holds(dest: &Dest, o: &Object) -> Result<bool> {
    let Some(Meta { size, sha256 }) = dest.head(&o.key)? else {
        return Ok(false);
    };
    if size != o.size {
        return Ok(false);
    }
    let want = match o.sha256 {
        Some(d) => d,
        None => local_digest(o)?,
    };
    if let Some(s) = sha256 {
        return Ok(s == want.to_hex());
    }
    // Large files are only ever published after their hash was checked; a
    // small one is cheaper to compare than to trust.
    if o.size > SMALL {
        return Ok(true);
    }
    Ok(Sha256Digest::of(&dest.get_bytes(&o.key)?) == want)
}

/// Objects up to this size are sent whole.
const SMALL: u64 = 4 << 20;

/// `each` of `objects`, at once at a destination that takes several requests
/// at a time (one thread each: an archive has at most five objects), else
/// one after the other; the answers in order, or the first error.
fn at_once<T: Send>(
    dest: &Dest,
    objects: &[&Object],
    each: impl Fn(&Object) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    if dest.parallel() <= 1 || objects.len() <= 1 {
        return objects.iter().map(|o| each(o)).collect();
    }
    std::thread::scope(|s| {
        let each = &each;
        let running: Vec<_> = objects.iter().map(|o| s.spawn(move || each(o))).collect();
        running
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn local_digest(o: &Object) -> Result<Sha256Digest> {
    let bytes = std::fs::read(&o.local).map_err(|e| Error::io(&o.local, e))?;
    Ok(Sha256Digest::of(&bytes))
}

/// Publishes the archive's `.json`, last: its base must be at the
/// destination (a chain is pushed oldest first), and the record is written
/// create-only while this push's lock is held, so neither another machine's
/// record of the same name nor a prune can slip in between.
fn publish(
    local: &Local,
    dest: &Dest,
    json: &Object,
    opts: &Options,
    confirmed: bool,
) -> Result<u64> {
    if let Some(base) = &local.rec.base {
        let key = format!("{}/{base}.json", local.rec.set);
        if !opts.seen.borrow().contains(&key) && dest.head(&key)?.is_none() {
            return Err(Error::new(
                Exit::NoInput,
                format!("archive {}", local.name()),
                format!("its base {base} is not at {}", dest.show(&key)),
            )
            .with_hint("push the chain oldest first: snap-push --all sends every archive the destination lacks"));
        }
    }
    let bytes = std::fs::read(&json.local).map_err(|e| Error::io(&json.local, e))?;
    let n = bytes.len() as u64;
    let sha = Sha256Digest::of(&bytes).to_hex();
    let verify = opts.verify;
    let landed = move || check_landed(dest, json, verify);
    if dest.publish_checked(&json.key, Bytes::from(bytes), &sha, confirmed, landed)? {
        opts.seen.borrow_mut().insert(json.key.clone());
        return Ok(n);
    }
    // Another push published this name since the check at the start.
    let Some(theirs) = remote_record(dest, &json.key)? else {
        return Err(refused_create(dest, &json.key));
    };
    if theirs.get("sha256").and_then(Value::as_str) != Some(local.rec.sha256.as_str()) {
        return Err(another_archive(local, dest, &json.key, &theirs));
    }
    check_landed(dest, json, opts.verify)?;
    opts.seen.borrow_mut().insert(json.key.clone());
    Ok(n)
}

/// Sends a small file whole, after checking its bytes against what they must hash to.
fn send_small(dest: &Dest, o: &Object) -> Result<u64> {
    let bytes = std::fs::read(&o.local).map_err(|e| Error::io(&o.local, e))?;
    let digest = Sha256Digest::of(&bytes);
    if let Some(want) = o.sha256
        && want != digest
    {
        return Err(Error::data(
            o.local.display().to_string(),
            format!("its sha256 is {digest}, not {want} as the .sha256 file says"),
        ));
    }
    let n = bytes.len() as u64;
    dest.put_small(&o.key, Bytes::from(bytes), &digest.to_hex())?;
    Ok(n)
}

/// Sends one object: the data file in resumable parts, with a progress
/// line; the others whole. Whether it landed is [`check_landed`]'s.
fn send(
    local: &Local,
    dest: &Dest,
    o: &Object,
    opts: &Options,
    report: &Reporter,
) -> Result<snap_dest::Sent> {
    if !o.is_data {
        let sent = send_small(dest, o)?;
        return Ok(snap_dest::Sent { sent, resumed: 0 });
    }
    if let Some(e) = data_away(local, dest, o) {
        return Err(e);
    }
    let src = Source {
        path: &o.local,
        size: o.size,
        sha256: o.sha256.expect("the data file's sha256 is in its record"),
    };
    let done = AtomicU64::new(0);
    let label = format!("{} -> {}", local.name(), dest.name);
    let progress = |n: u64| {
        let now = done.fetch_add(n, Ordering::Relaxed) + n;
        report.tally(|| Tally::bytes(&label, now, Some(o.size)));
    };
    let sent = dest.upload(&o.key, &src, &opts.tuning, &progress)?;
    if sent.resumed > 0 {
        report.note(&format!(
            "{label}: resumed; {} were already there",
            human_bytes(sent.resumed)
        ));
    }
    Ok(sent)
}

/// Why the data object `o` cannot be sent: the store dropped it
/// (`retention.keep_archives`) once its destinations held it.
fn data_away(local: &Local, dest: &Dest, o: &Object) -> Option<Error> {
    let away = Away::read(&ArchiveFiles::new(&local.dir, &local.rec.id))?;
    if !o.is_data || o.local.exists() {
        return None;
    }
    Some(
        Error::new(
            Exit::NoInput,
            format!("archive {} to {}", local.name(), dest.name),
            format!(
                "its data is no longer in the store: retention.keep_archives dropped it once {} held it",
                away.places()
            ),
        )
        .with_hint("a destination added since starts with a new full archive: snap-pack --full"),
    )
}

/// The destination holds the object at its size; with `verify`, its bytes hash right.
/// A mismatch removes the object.
fn check_landed(dest: &Dest, o: &Object, verify: bool) -> Result<()> {
    let size = dest.head(&o.key)?.map(|m| m.size);
    let mut problem = (size != Some(o.size))
        .then(|| format!("is {} bytes there, {} here", size.unwrap_or(0), o.size));
    if problem.is_none() && verify {
        let want = match o.sha256 {
            Some(d) => d,
            None => local_digest(o)?,
        };
        let got = read_back(dest, &o.key)?;
        if got != want {
            problem = Some(format!("reads back with sha256 {got}, not {want}"));
        }
    }
    match problem {
        None => Ok(()),
        Some(p) => {
            let _ = dest.delete(&o.key);
            Err(Error::data(dest.show(&o.key), format!("{p}; removed it"))
                .with_hint("run the push again; if it repeats, check the destination's hardware"))
        }
    }
}

/// The sha256 of an object as the destination gives it back. A folder's
/// cached pages are dropped first so the bytes come from the drive itself.
fn read_back(dest: &Dest, key: &str) -> Result<Sha256Digest> {
    if let Some(folder) = dest.folder() {
        drop_cache(&folder.join(key));
    }
    let mut reader = dest.reader(key)?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::io_ctx(dest.show(key), e))?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
    }
    Ok(Sha256Digest::from_hasher(hasher))
}

/// Asks the kernel to forget a file's clean cached pages (fsynced files only).
fn drop_cache(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        use std::os::fd::AsRawFd;
        // SAFETY: a hint on a descriptor we own; its failure changes nothing.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
}

/// The `pushed` record for an archive at a destination.
fn record(
    local: &Local,
    dest: &Dest,
    objects: &[Object],
    verified: bool,
    sent: u64,
    resumed: u64,
    skipped: bool,
) -> PushedRecord {
    let mut extra = snap_shared::record::Extra::new();
    extra.insert("set".into(), json!(local.rec.set));
    extra.insert("id".into(), json!(local.rec.id));
    extra.insert("name".into(), json!(dest.name));
    extra.insert(
        "objects".into(),
        json!(objects.iter().map(|o| &o.key).collect::<Vec<_>>()),
    );
    extra.insert("sent".into(), json!(sent));
    extra.insert("resumed".into(), json!(resumed));
    extra.insert("skipped".into(), json!(skipped));
    extra.insert(
        "checked".into(),
        json!(if verified { "sha256" } else { "size" }),
    );
    PushedRecord {
        schema: snap_shared::record::SCHEMA.into(),
        dest: dest.url.clone(),
        object: objects[0].key.clone(),
        bytes: local.rec.bytes,
        sha256: local.rec.sha256.clone(),
        verified,
        source: serde_json::to_value(Record::Archive(local.rec.clone())).unwrap_or(Value::Null),
        extra,
    }
}

/// Refuses a push that would leave a folder destination below its floor (exit 73).
pub(crate) fn check_space(dest: &Dest, needed: u64, floor: Floor) -> Result<()> {
    let Some((free, total)) = dest.free_space() else {
        return Ok(());
    };
    let keep = floor.bytes(total);
    if free >= needed.saturating_add(keep) {
        return Ok(());
    }
    Err(Error::new(
        Exit::CantCreate,
        format!("destination {}", dest.name),
        format!(
            "low on space: {} free, {} to send, {} to keep free",
            human_bytes(free),
            human_bytes(needed),
            human_bytes(keep)
        ),
    )
    .with_hint("prune old archives there (snap-prune) or use a bigger drive"))
}
