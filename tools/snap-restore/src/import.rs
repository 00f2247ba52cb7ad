//! `snap-restore import`: a tar taken into the store as an archive (the
//! work is snap-read's `import`), its record on stdout.

use snap_read::import::{How, What, import};
use snap_read::source::Source;
use snap_shared::crypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::Record;

use crate::cli::{At, decryption};

/// `snap-restore import`: the tar into the store as an archive, its
/// `archive` record on stdout; members or attributes left out of the index
/// make it exit 65 after the record.
pub fn command(at: &At, asked: &What, stdout: impl std::io::Write) -> Result<Exit> {
    let (source, g, trust, report) = (at.source, at.g, at.trust, at.report);
    let Source::Store(store) = source else {
        return Err(Error::usage(
            "import",
            "imports go into a store, not a folder of archives",
        )
        .with_hint("drop --from, or point it at a store"));
    };
    let dec = decryption(g)?;
    let index_encrypt = match (&dec.passphrase, g.identities.first()) {
        (Some(p), _) => Some(crypt::Encrypt::Passphrase(p.clone())),
        (None, Some(f)) => Some(crypt::Encrypt::Recipients(
            crypt::recipients_of_identity_file(f)?,
        )),
        (None, None) => None,
    };
    let how = How {
        dec: &dec,
        index_encrypt: index_encrypt.as_ref(),
        signer: &trust.signer()?,
    };
    let record = import(store, asked, &how, report)?;
    if let Err(e) =
        snap_shared::catalog::Catalog::open(store).and_then(|(c, _)| c.put_archive(&record))
    {
        snap_shared::catalog::Catalog::invalidate(store);
        report.warn(&format!(
            "{e}; the archive is imported, and the catalog will be rebuilt from the records"
        ));
    }
    report.note(&format!(
        "imported {} as {}/{} ({} files)",
        asked.path.display(),
        record.set,
        record.id,
        record
            .extra
            .get("files")
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    ));
    let count = |key: &str| record.extra.get(key).and_then(|v| v.as_u64());
    let (left_out, attrs) = (count("left_out"), count("attributes_left_out"));
    RecordWriter::new(stdout).write(&Record::Archive(record))?;
    match (left_out, attrs) {
        (Some(n), _) => Err(Error::data(
            asked.path.display().to_string(),
            format!(
                "{n} member(s) left out of the index (named above); a restore of it names them again"
            ),
        )),
        (None, Some(n)) => Err(Error::data(
            asked.path.display().to_string(),
            format!(
                "{n} attribute(s) of members left out of the index (named above); a restore of it names them again"
            ),
        )),
        (None, None) => Ok(Exit::Ok),
    }
}
