//! An in-place restore of an image in a format QEMU writes (qcow2, vdi,
//! vmdk, vhdx, vpc) through QEMU's own block layer, so that the image stays
//! the same file with the same identity, and only the blocks that differ
//! are written.
//!
//! A qemu-storage-daemon of snap-disk's own opens the image writable and
//! exports it over NBD. The blocks that differ from the snapshot's map are
//! found by reading through the export (ranges the format reports as zeros
//! are not read); every block to be written is fetched and checked first;
//! then only those are written, and blocks of zeros become zeroes the format
//! may keep as holes. The daemon is stopped cleanly (SIGTERM), which is when
//! QEMU finishes its metadata.
//!
//! What each format's header does (QEMU 7.2 and later, measured by writing
//! through QEMU and comparing the file's bytes):
//! - VDI: the image and modification UUIDs (0x188, 0x198) stay; only the
//!   allocated-block count and the block map change. VirtualBox keys its
//!   media registry by the UUID, and sees the same disk.
//! - VMDK: QEMU gives the descriptor a new `CID` on its first write (as
//!   VMware does on any change); the CID the image had is written back once
//!   the daemon has stopped, so the VM's configuration still matches.
//! - VHDX: the headers' `DataWriteGuid` and sequence number change, as the
//!   VHDX specification requires of any write of data; the virtual disk's
//!   identity (`Page83Data` in the metadata region) stays.
//! - qcow2 and vpc: no identity in the header.
//!
//! A restore killed at any moment is finished by running it again: the
//! comparison reads the image as it is, and writes are idempotent.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde_json::json;

use snap_shared::blockdiff::{Diff, Fetch, check_blocks};
use snap_shared::blockmap::{Dense, MapHeader, MapReader};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::hash::Sha256Digest;

use crate::daemon::{Daemon, NODE};
use crate::live::monitor::Monitor;
use crate::nbd::{self, Client};

const EXPORT: &str = "snap-disk-restore";

/// Brings `image` (of `format`) back to the map at `map`, writing only what
/// differs; `begin` runs once every block to write is checked, before the
/// first write (it marks the restore under way). `now`, the map of a
/// snapshot just taken of the image (the undo), says what it holds without
/// reading it again. The bytes written.
#[allow(clippy::too_many_arguments)]
pub fn restore(
    image: &Path,
    format: &str,
    map: &Path,
    now: Option<&Path>,
    fetch: &Fetch,
    begin: &dyn Fn() -> Result<()>,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<u64> {
    // What differs, found before QEMU opens the image when the undo's map
    // or the file itself (read directly, on every core) can say.
    let early = match now {
        Some(now) => Some(snap_shared::blockdiff::compare_maps(now, map)?.1),
        None => match crate::layout::direct_extents(image, format)? {
            Some(extents) => {
                let diffs = crate::layout::compare(image, &extents, map, progress)?;
                // The file was read whole and matches: QEMU is not needed.
                if diffs.is_empty() {
                    return Ok(0);
                }
                Some(diffs)
            }
            None => None,
        },
    };
    let cid = match format {
        "vmdk" => vmdk_cid(image)?,
        _ => None,
    };
    let Exported {
        daemon,
        mon,
        mut client,
        reader,
    } = export(image, format, map, true)?;
    let header = reader.header;
    let nbd_err = |e| nbd_error(image, e);
    let diffs = match early {
        Some(diffs) => diffs,
        None => {
            compare(&mut client, Dense::new(reader), &header, progress).map_err(|e| match e {
                Compared::Io(e) => nbd_err(e),
                Compared::Map(e) => e,
            })?
        }
    };
    check_blocks(&diffs, fetch)?;
    if !diffs.is_empty() {
        begin()?;
    }
    let mut written = 0;
    for (n, d) in diffs.iter().enumerate() {
        let offset = d.index * header.block_size;
        let len = header.len_of(d.index);
        match d.want {
            Some(digest) => client.write(offset, &fetch(&digest)?).map_err(nbd_err)?,
            None => client.write_zeroes(offset, len, false).map_err(nbd_err)?,
        }
        written += len;
        progress(
            "writing",
            (n as u64 + 1) * header.block_size,
            diffs.len() as u64 * header.block_size,
        );
    }
    client.flush().map_err(nbd_err)?;
    drop(client);
    drop(mon);
    daemon.stop()?;
    if let Some((at, was)) = cid {
        put_back_cid(image, at, &was)?;
    }
    Ok(written)
}

/// The blocks where `image` (of a format QEMU reads) differs from the map,
/// read from the file itself where it can say, else through a read-only
/// export of QEMU's: nothing is written (a dry run).
pub fn differences(
    image: &Path,
    format: &str,
    map: &Path,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<Vec<Diff>> {
    if let Some(extents) = crate::layout::direct_extents(image, format)? {
        return crate::layout::compare(image, &extents, map, progress);
    }
    let Exported {
        daemon,
        mon,
        mut client,
        reader,
    } = export(image, format, map, false)?;
    let header = reader.header;
    let diffs =
        compare(&mut client, Dense::new(reader), &header, progress).map_err(|e| match e {
            Compared::Io(e) => nbd_error(image, e),
            Compared::Map(e) => e,
        })?;
    drop(client);
    drop(mon);
    daemon.stop()?;
    Ok(diffs)
}

/// The image exported over NBD by a qemu-storage-daemon of snap-disk's
/// own (writable or not), a client connected to it, and the snapshot's map,
/// whose size the export must have.
struct Exported {
    daemon: Daemon,
    mon: Monitor,
    client: Client,
    reader: MapReader<std::fs::File>,
}

fn export(image: &Path, format: &str, map: &Path, writable: bool) -> Result<Exported> {
    let daemon = match writable {
        true => Daemon::start(image, format)?,
        false => Daemon::start_read_only(image, format)?,
    };
    let dir = snap_shared::fsutil::parent_of(&daemon.qmp).to_path_buf();
    let socket = dir.join("image.nbd");
    let mut mon = Monitor::connect(&daemon.qmp)?;
    mon.run(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": socket}}}),
    )?;
    mon.run(
        "block-export-add",
        json!({"type": "nbd", "id": EXPORT, "node-name": NODE, "name": EXPORT, "writable": writable}),
    )?;
    let client = Client::connect(&socket, EXPORT, &[nbd::ALLOCATION.to_string()])
        .map_err(|e| nbd_error(image, e))?;
    let reader = MapReader::open(map)?;
    if client.size() != reader.header.virtual_size {
        return Err(crate::layout::resized(
            image,
            client.size(),
            reader.header.virtual_size,
        ));
    }
    Ok(Exported {
        daemon,
        mon,
        client,
        reader,
    })
}

fn nbd_error(image: &Path, e: std::io::Error) -> Error {
    Error::new(Exit::Io, format!("{} through QEMU", image.display()), e)
}

/// Why a comparison stopped: the export, or the map.
enum Compared {
    Io(std::io::Error),
    Map(Error),
}

/// The blocks where the export differs from the map.
fn compare(
    client: &mut Client,
    dense: Dense<impl std::io::Read>,
    header: &MapHeader,
    progress: &dyn Fn(&str, u64, u64),
) -> std::result::Result<Vec<Diff>, Compared> {
    let zeros = client
        .all_extents(nbd::ALLOCATION)
        .map_err(Compared::Io)?
        .into_iter()
        .filter(|e| e.flags & nbd::STATE_ZERO != 0)
        .map(|e| e.offset..e.offset + e.len)
        .collect::<Vec<_>>();
    // Blocks come in order, and so do the extents: one cursor walks both.
    let mut at = 0;
    let mut reads_zero = |start: u64, end: u64| {
        while zeros.get(at).is_some_and(|z| z.end <= start) {
            at += 1;
        }
        zeros
            .get(at)
            .is_some_and(|z| z.start <= start && end <= z.end)
    };
    let mut diffs = Vec::new();
    let mut buf = vec![0u8; header.block_size as usize];
    for next in dense {
        let (index, want) = next.map_err(Compared::Map)?;
        let start = index * header.block_size;
        let len = header.len_of(index);
        let same = if reads_zero(start, start + len) {
            want.is_none()
        } else {
            let data = &mut buf[..len as usize];
            client.read(start, data).map_err(Compared::Io)?;
            match want {
                None => data.iter().all(|&b| b == 0),
                Some(d) => Sha256Digest::of(data) == d,
            }
        };
        if !same {
            diffs.push(Diff { index, want });
        }
        progress("comparing", start + len, header.virtual_size);
    }
    Ok(diffs)
}

/// Where a VMDK's descriptor says `CID=` (the offset of its value in the
/// file) and the value: one to eight hex digits (QEMU and VMware print it
/// without leading zeros). None when the first 64 KiB hold no descriptor.
fn vmdk_cid(image: &Path) -> Result<Option<(u64, String)>> {
    let f = std::fs::File::open(image).map_err(|e| Error::io(image, e))?;
    let mut head = vec![0u8; 64 << 10];
    let n = f.read_at(&mut head, 0).map_err(|e| Error::io(image, e))?;
    let head = &head[..n];
    let Some(at) = head.windows(5).position(|w| w == b"\nCID=") else {
        return Ok(None);
    };
    let value: Vec<u8> = head[at + 5..]
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
        .copied()
        .collect();
    if value.is_empty() || value.len() > 8 {
        return Ok(None);
    }
    Ok(Some((
        (at + 5) as u64,
        String::from_utf8_lossy(&value).into_owned(),
    )))
}

/// Where the descriptor's text may run to: the end of a sparse file's
/// descriptor region (its header's descriptorOffset and descriptorSize, in
/// sectors), else (a descriptor file) anywhere.
fn descriptor_end(f: &std::fs::File) -> std::io::Result<u64> {
    let mut h = [0u8; 44];
    if f.read_at(&mut h, 0)? == 44 && &h[..4] == b"KDMV" {
        let le = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
        return Ok((le(28) + le(36)) * 512);
    }
    Ok(u64::MAX)
}

/// Writes the CID the image had back over the one QEMU gave it, synced.
/// The two may differ in length (no leading zeros): the rest of the
/// descriptor's text moves with it, within the descriptor's room (its NUL
/// padding, in a sparse file).
fn put_back_cid(image: &Path, at: u64, was: &str) -> Result<()> {
    let now = match vmdk_cid(image)? {
        Some((now_at, now)) if now_at == at && now != was => now,
        _ => return Ok(()),
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| Error::io(image, e))?;
    let io = |e| Error::io(image, e);
    let end = descriptor_end(&f).map_err(io)?;
    let mut rest = vec![0u8; 64 << 10];
    let n = f.read_at(&mut rest, at).map_err(io)?;
    let rest = &rest[..n];
    // The text after the value, to the first NUL (or the end of the file).
    let text_end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let tail = &rest[now.len()..text_end];
    let mut new = was.as_bytes().to_vec();
    new.extend_from_slice(tail);
    // A descriptor file is text to its end: it is cut or grows.
    if end == u64::MAX && text_end == rest.len() && n < (64 << 10) {
        f.write_all_at(&new, at)
            .and_then(|()| f.set_len(at + new.len() as u64))
            .and_then(|()| f.sync_all())
            .map_err(io)?;
        return Ok(());
    }
    // In a sparse file's descriptor region, a shorter text leaves NULs.
    new.resize(new.len().max(text_end), 0);
    let room = match rest.len() > text_end {
        true => rest[text_end..].iter().take_while(|&&b| b == 0).count() + text_end,
        false => usize::MAX,
    };
    if new.len() > room || at + new.len() as u64 > end {
        return Err(Error::new(
            Exit::Io,
            image.display().to_string(),
            format!("no room in the descriptor to put its CID {was} back (QEMU wrote {now})"),
        )
        .with_hint(format!(
            "edit the descriptor's CID= line back to {was} by hand"
        )));
    }
    f.write_all_at(&new, at)
        .and_then(|()| f.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse VMDK's first sectors: the header (descriptor at sector 1,
    /// 2 sectors long) and the descriptor text, NUL-padded.
    fn sparse(text: &str) -> Vec<u8> {
        let mut b = vec![0u8; 3 * 512 + 512];
        b[..4].copy_from_slice(b"KDMV");
        b[28..36].copy_from_slice(&1u64.to_le_bytes());
        b[36..44].copy_from_slice(&2u64.to_le_bytes());
        b[512..512 + text.len()].copy_from_slice(text.as_bytes());
        // Not descriptor: what follows the region.
        b[3 * 512..].fill(0xee);
        b
    }

    /// A CID QEMU wrote shorter or longer (no leading zeros) is put back,
    /// and the rest of the descriptor moves with it, within its region.
    #[test]
    fn a_cid_of_another_length_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("d.vmdk");
        for (was, now) in [
            ("35c45322", "ed7dc14"),
            ("ed7dc14", "35c45322"),
            ("1", "abcdef12"),
        ] {
            let text = |cid: &str| {
                format!("# Disk DescriptorFile\nversion=1\nCID={cid}\nparentCID=ffffffff\n")
            };
            std::fs::write(&img, sparse(&text(now))).unwrap();
            let (at, got) = vmdk_cid(&img).unwrap().unwrap();
            assert_eq!(got, now);
            put_back_cid(&img, at, was).unwrap();
            let bytes = std::fs::read(&img).unwrap();
            assert_eq!(bytes, sparse(&text(was)), "{was} over {now}");
        }
        // A descriptor file (text only) is cut or grows.
        let text = "version=1\nCID=fffe\nparentCID=ffffffff\n";
        std::fs::write(&img, text).unwrap();
        let (at, _) = vmdk_cid(&img).unwrap().unwrap();
        put_back_cid(&img, at, "12").unwrap();
        assert_eq!(
            std::fs::read_to_string(&img).unwrap(),
            "version=1\nCID=12\nparentCID=ffffffff\n"
        );
    }
}
