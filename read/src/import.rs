//! `import`: brings an archive snap did not make (a manual `tar -czf`, a
//! `wsl --export` tarball, an age-encrypted tar.zst) into the store, so it is
//! listed, verified, restored and pruned like the rest.
//!
//! The file is copied into `archives/<set>/` (hashed as it is copied), read
//! once to build its index (each file's sha256, the metadata of every entry),
//! and published like a packed archive: data, index, `.sha256`, record last.
//! The record says `"imported": true`: its tar is in its own order, not the
//! index's, so it restores from its headers and verifies through a lookup.
//! Building the index holds one entry per member in memory to sort them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::json;

use snap_cli::Reporter;
use snap_shared::archive::{self, ArchiveFiles, Compression};
use snap_shared::crypt::{Decrypt, Encrypt, encrypting_writer};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil::create_private_dir;
use snap_shared::id::{check_name, free_id, is_id};
use snap_shared::index::{Entry, EntryType, IndexWriter, cmp_paths};
use snap_shared::record::{ArchiveRecord, Extra, Record, SCHEMA};
use snap_shared::store::Store;

use crate::damage::corrupt;
use crate::members::{archive, finish, members};
use crate::members::{entry_of, member_error, sanitize};
use crate::stream;
use crate::target::{Refused, copy_hashed};

/// What to import: the tar, and the set, id and notes its record gets
/// (the user's words).
pub struct What<'a> {
    pub path: &'a Path,
    pub set: &'a str,
    pub id: Option<&'a str>,
    pub description: Option<&'a str>,
    pub tags: &'a [String],
}

/// How to import: the keys that open it, encrypt its index and sign its record.
pub struct How<'a> {
    pub dec: &'a Decrypt,
    /// For an encrypted archive: whom its index is encrypted to (it lists every name).
    pub index_encrypt: Option<&'a Encrypt>,
    /// Signs the record, as snap-pack signs its own: this machine vouches for
    /// what it read.
    pub signer: &'a snap_shared::sign::Signer,
}

/// Imports `what.path` into `store` as an archive of `what.set`.
pub fn import(store: &Store, what: &What, how: &How, report: &Reporter) -> Result<ArchiveRecord> {
    let (path, set, id, dec) = (what.path, what.set, what.id, how.dec);
    check_name(set).map_err(|e| Error::usage(format!("--set {set}"), e))?;
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::usage(path.display().to_string(), "is not a file"));
    }
    let dir = store.archive_dir(set);
    create_private_dir(&dir).map_err(|e| Error::io(&dir, e).with_exit(Exit::CantCreate))?;
    let _lock = snap_shared::lock::StoreLock::acquire(&dir.join(".lock"), crate::TOOL)?;
    let id = match id {
        Some(id) if is_id(id) => id.to_string(),
        Some(id) => {
            return Err(Error::usage(
                format!("--id {id}"),
                "is not an id (YYYY-MM-DDTHHMMSSZ)",
            ));
        }
        None => {
            let at: DateTime<Utc> = meta.modified().map_err(|e| Error::io(path, e))?.into();
            free_id(at, |id| ArchiveFiles::new(&dir, id).record().exists())
        }
    };
    let files = ArchiveFiles::new(&dir, &id);
    if files.record().exists() {
        return Err(Error::new(
            Exit::CantCreate,
            format!("archive {set}/{id}"),
            "exists already",
        )
        .with_hint("choose another --id"));
    }
    let opened = stream::open(&crate::loc::Loc::Path(path.to_path_buf()), dec)?;
    let (compression, encrypted) = (opened.compression, opened.encrypted);
    drop(opened);
    let compression = Compression::parse(compression).expect("stream names a known compression");
    let data = files.data(compression, encrypted);
    if encrypted && how.index_encrypt.is_none() {
        return Err(Error::usage(path.display().to_string(), "is encrypted, and its index would list every name in the clear")
            .with_hint("give the age --identity file or --passphrase-file that opens it; the index is encrypted to the same"));
    }
    let index = files.index(encrypted);
    let temps = [
        archive::part_name(&data),
        archive::part_name(&index),
        archive::part_name(&files.sums()),
        archive::part_name(&files.record()),
        archive::part_name(&files.sig()),
    ];
    let result = (|| {
        let (sha, bytes) = copy_in(path, &temps[0])?;
        let Scanned {
            entries,
            bytes: file_bytes,
            left_out,
            attributes_left_out,
        } = read_entries(&temps[0], dec, report)?;
        let index_sha = write_index(&temps[1], &entries, how.index_encrypt.filter(|_| encrypted))?;
        let sums = archive::sums_text(&[(sha, &data), (index_sha, &index)]);
        write_small(&temps[2], sums.as_bytes())?;
        let files_count = entries.iter().filter(|e| e.kind != EntryType::Dir).count() as u64;
        let packed = entries.iter().filter(|e| e.kind == EntryType::File).count() as u64;
        let mut extra = Extra::new();
        extra.insert("imported".into(), json!(true));
        extra.insert("imported_from".into(), json!(path.display().to_string()));
        extra.insert("host".into(), json!(snap_shared::hostname()));
        extra.insert("files".into(), json!(files_count));
        extra.insert("packed_files".into(), json!(packed));
        extra.insert("packed_bytes".into(), json!(file_bytes));
        extra.insert("snapshot_bytes".into(), json!(file_bytes));
        extra.insert("chain".into(), json!(1));
        if let Some(d) = what.description {
            extra.insert("description".into(), json!(d));
        }
        if !what.tags.is_empty() {
            extra.insert("tags".into(), json!(what.tags));
        }
        if left_out > 0 {
            extra.insert("left_out".into(), json!(left_out));
        }
        if attributes_left_out > 0 {
            extra.insert("attributes_left_out".into(), json!(attributes_left_out));
        }
        extra.insert("index_sha256".into(), json!(index_sha.to_hex()));
        let record = ArchiveRecord {
            schema: SCHEMA.into(),
            set: set.to_string(),
            id: id.clone(),
            source: id.clone(),
            path: data.display().to_string(),
            bytes,
            sha256: sha.to_hex(),
            compression: compression.name().into(),
            encryption: encrypted.then(|| "age".to_string()),
            base: None,
            index: index.display().to_string(),
            extra,
        };
        let mut text = serde_json::to_string(&Record::Archive(record.clone()))
            .map_err(|e| Error::internal("record", e))?;
        text.push('\n');
        write_small(&temps[3], text.as_bytes())?;
        write_small(&temps[4], how.signer.sign(text.as_bytes())?.as_bytes())?;
        archive::publish(
            &dir,
            &[
                (&temps[0], &data),
                (&temps[1], &index),
                (&temps[2], &files.sums()),
                (&temps[4], &files.sig()),
                (&temps[3], &files.record()),
            ],
        )?;
        Ok(record)
    })();
    if result.is_err() {
        for t in &temps {
            let _ = fs::remove_file(t);
        }
    }
    result
}

fn create(tmp: &Path) -> Result<File> {
    let _ = fs::remove_file(tmp);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| Error::io(tmp, e).with_exit(Exit::CantCreate))
}

/// Copies the archive's bytes, hashing them.
fn copy_in(src: &Path, tmp: &Path) -> Result<(snap_shared::hash::Sha256Digest, u64)> {
    let size = fs::metadata(src).map_err(|e| Error::io(src, e))?.len();
    let mut input = File::open(src).map_err(|e| Error::io(src, e))?;
    let mut out = create(tmp)?;
    let mut buf = vec![0; 1 << 20];
    let sha = copy_hashed(&mut input, &mut out, size, &mut buf)
        .map_err(|e| Error::io(tmp, e).with_exit(Exit::Io))?;
    out.sync_all().map_err(|e| Error::io(tmp, e))?;
    Ok((sha, size))
}

/// What building the index found.
struct Scanned {
    entries: Vec<Entry>,
    /// Bytes of the files.
    bytes: u64,
    /// Members that could not go into the index (each named on stderr).
    left_out: u64,
    /// Attributes of members that could not be kept (named on stderr).
    attributes_left_out: u64,
}

/// Reads every member of the tar into index entries, sorted.
fn read_entries(path: &Path, dec: &Decrypt, report: &Reporter) -> Result<Scanned> {
    let opened = stream::open(&crate::loc::Loc::Path(path.to_path_buf()), dec)?;
    let mut tar = archive(opened.tar);
    let mut out = Scanned {
        entries: Vec::new(),
        bytes: 0,
        left_out: 0,
        attributes_left_out: 0,
    };
    let mut owners = crate::owners::Owners::new(false);
    let mut stripped = false;
    let mut buf = vec![0; 1 << 20];
    for member in members(&mut tar).map_err(|e| corrupt(path, e))? {
        let mut member = member.map_err(|e| corrupt(path, e))?;
        let raw = member.path.clone();
        let mut leave_out = |why: &str| {
            out.left_out += 1;
            report.error(&format!(
                "{}: left out of the index: {why}",
                String::from_utf8_lossy(&raw)
            ));
        };
        let rel = match sanitize(&raw, &mut stripped) {
            Ok(Some(rel)) => rel,
            Ok(None) => continue,
            Err(why) => {
                leave_out(&why);
                continue;
            }
        };
        let mut e = match entry_of(&member, rel, &mut stripped) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            // An index entry of a hard link without its first name is
            // unreadable; leave it out, as restore refuses it.
            Err(Refused::Escape(_)) => {
                leave_out("its hard link leaves the archive");
                continue;
            }
            Err(Refused::Cannot(why)) => {
                leave_out(&format!("it {why}"));
                continue;
            }
            Err(_) => unreachable!("entry_of only refuses escapes and what cannot be made"),
        };
        let (xattrs, problems) = crate::attrs::of_member(&member, &mut owners, Default::default());
        e.xattrs = xattrs;
        for p in problems {
            out.attributes_left_out += 1;
            report.error(&format!("{}: {p}", String::from_utf8_lossy(&raw)));
        }
        if e.kind == EntryType::File {
            let size = e.size;
            e.sha256 = Some(
                copy_hashed(&mut member, &mut io::sink(), size, &mut buf)
                    .map_err(|err| corrupt(path, member_error(&e.path, err)))?,
            );
            out.bytes += size;
        }
        out.entries.push(e);
    }
    finish(tar).map_err(|e| corrupt(path, e))?;
    // A later member of the same name replaces an earlier one, as tar -x does.
    out.entries.reverse();
    out.entries.sort_by(|a, b| cmp_paths(&a.path, &b.path));
    out.entries
        .dedup_by(|later, earlier| later.path == earlier.path);
    Ok(out)
}

fn write_index(
    tmp: &Path,
    entries: &[Entry],
    encrypt: Option<&Encrypt>,
) -> Result<snap_shared::hash::Sha256Digest> {
    let io_err = |e| Error::io(tmp, e).with_exit(Exit::Io);
    let out = BufWriter::new(create(tmp)?);
    let file = match encrypt {
        Some(enc) => {
            let mut w =
                IndexWriter::new(encrypting_writer(enc, out).map_err(io_err)?).map_err(io_err)?;
            for e in entries {
                w.push(e)?;
            }
            w.finish().and_then(|s| s.finish()).map_err(io_err)?
        }
        None => {
            let mut w = IndexWriter::new(out).map_err(io_err)?;
            for e in entries {
                w.push(e)?;
            }
            w.finish().map_err(io_err)?
        }
    };
    let file = file.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    let bytes = fs::read(tmp).map_err(|e| Error::io(tmp, e))?;
    Ok(snap_shared::hash::Sha256Digest::of(&bytes))
}

fn write_small(tmp: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = create(tmp)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(tmp, e).with_exit(Exit::Io))
}
