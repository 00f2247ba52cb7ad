//! `cat` of a big file that incremental archives carry as runs of changed
//! blocks: the newest archive of the chain that holds it whole gives the
//! base, each later one's runs go over it in order (its size cuts or grows
//! it), in a temporary file; then it is written out, checked whole. From a
//! seekable archive only the frames that hold the whole version and each
//! run are read.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::FileExt;

use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Result};
use snap_shared::index::{Entry, run_member};

use crate::damage::corrupt;
use crate::seeking;
use crate::source::Item;

/// A link of the chain that carries the file: whole, or as runs.
struct Carrier {
    link: usize,
    entry: Entry,
}

/// Puts `fin` together and hands it to `write` (a reader of exactly its
/// size); None when the newest archive that carries it holds it whole (the
/// ordinary way applies).
pub(crate) fn assembled(
    chain: &[Item],
    fin: &Entry,
    dec: &Decrypt,
    shown: &str,
) -> Result<Option<std::fs::File>> {
    let mut carriers: Vec<Carrier> = Vec::new();
    for (link, item) in chain.iter().enumerate().rev() {
        let own = item.index().expect("archives have an index");
        let Some(entry) = crate::cat::find(&own, &fin.path, dec)? else {
            continue;
        };
        let whole = entry.tar_offset.is_some();
        if whole || entry.delta.is_some() {
            carriers.push(Carrier { link, entry });
        }
        if whole {
            break;
        }
    }
    if carriers.first().is_none_or(|c| c.entry.delta.is_none()) {
        return Ok(None);
    }
    let Some(base) = carriers.pop().filter(|c| c.entry.tar_offset.is_some()) else {
        let named = chain.last().map(Item::name).unwrap_or_default();
        return Err(Error::data(
            shown,
            format!("no archive of the chain of {named} holds it whole, under its runs"),
        ));
    };
    let mut tmp = tempfile::tempfile().map_err(|e| Error::io_ctx("a temporary file", e))?;
    let at = base.entry.tar_offset.expect("whole");
    member(
        &chain[base.link],
        &base.entry.path,
        at,
        base.entry.size,
        dec,
        &mut |m| std::io::copy(m, &mut tmp).map(|_| ()),
    )?;
    for c in carriers.iter().rev() {
        for run in c.entry.delta.as_deref().unwrap_or_default() {
            let name = run_member(&c.entry.path, run.offset);
            let mut bytes = Vec::new();
            member(
                &chain[c.link],
                &name,
                run.tar_offset,
                run.len,
                dec,
                &mut |m| m.read_to_end(&mut bytes).map(|_| ()),
            )?;
            tmp.write_all_at(&bytes, run.offset)
                .map_err(|e| Error::io_ctx("a temporary file", e))?;
        }
        tmp.set_len(c.entry.size)
            .map_err(|e| Error::io_ctx("a temporary file", e))?;
    }
    tmp.flush()
        .and_then(|()| tmp.rewind())
        .map_err(|e| Error::io_ctx("a temporary file", e))?;
    Ok(Some(tmp))
}

/// Reads the member `name` of an archive whose header starts at `at` (and
/// whose data is `len` bytes): by its frames when the archive is seekable,
/// else streamed up to it.
fn member(
    item: &Item,
    name: &[u8],
    at: u64,
    len: u64,
    dec: &Decrypt,
    read: &mut dyn FnMut(&mut dyn Read) -> std::io::Result<()>,
) -> Result<()> {
    let data = item.data();
    if let Some(s) = seeking::of_item(item, dec)? {
        // The header, a long name or PAX records, and the data.
        let end = (at + len + (64 << 10)).min(s.layout.tar_len());
        let frames = s.layout.covering(at..end).collect();
        let mut stream = s.frames(frames);
        stream.skip_to(at).map_err(|e| corrupt(&data, e))?;
        return seeking::with_member(&mut stream, name, |m| read(m))
            .and_then(|r| r)
            .map_err(|e| corrupt(&data, e));
    }
    let found = crate::cat::stream_to_member(&data, dec, &mut |p| p == name, &mut |m, _| {
        read(m).map_err(|e| corrupt(&data, e))
    })?;
    if found {
        return Ok(());
    }
    Err(Error::data(
        data.show(),
        format!("has no member {}", String::from_utf8_lossy(name)),
    ))
}
