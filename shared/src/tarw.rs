//! Writes a GNU tar stream from index entries.
//!
//! GNU format because it is what `tar` writes by default and every tar reads:
//! names and link targets longer than 100 bytes go in `././@LongLink` entries
//! (raw bytes, so non-UTF-8 names survive), and numbers too big for octal
//! fields (files over 8 GiB, large uids) use GNU's base-256 encoding, which the
//! `tar` crate's header setters do. A PAX header only for an entry with
//! extended attributes or ACLs, as GNU tar `--xattrs --acls` writes them
//! (it costs a block or two, and most files have none): `SCHILY.xattr.NAME`
//! with the value as it is, and the ACLs as `SCHILY.acl.access` and
//! `SCHILY.acl.default` in acl(5) text with names, which GNU tar and bsdtar
//! both apply (bsdtar leaves `SCHILY.xattr.system.posix_acl_*` aside). The
//! index already keeps nanosecond mtimes, so there is no other PAX record.
//! Headers come from the index, not from a fresh `stat`, so the archive says
//! exactly what the snapshot says.

use std::io::{self, Write};

use tar::{EntryType as TarType, Header};

use crate::index::{Entry, EntryType};
use crate::owners::Names;
use crate::pax::record;
use crate::xattrs::{ACL_ACCESS, ACL_DEFAULT};

const BLOCK: usize = 512;
/// Name and link-name fields of a ustar/GNU header.
const FIELD: usize = 100;

/// A tar stream's output that may cut the stream where a member starts
/// (into independent compressed frames); most outputs do nothing there.
pub trait Members: Write {
    fn member_starts(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Members for Vec<u8> {}

pub struct TarWriter<W: Members> {
    out: W,
    /// Bytes of tar stream written (the uncompressed size).
    written: u64,
    /// Names of the users and groups ACLs name.
    names: Names,
}

/// The tar type of an index entry.
fn tar_type(kind: EntryType) -> TarType {
    match kind {
        EntryType::File => TarType::Regular,
        EntryType::Dir => TarType::Directory,
        EntryType::Symlink => TarType::Symlink,
        EntryType::Hardlink => TarType::Link,
        EntryType::Fifo => TarType::Fifo,
        EntryType::Char => TarType::Char,
        EntryType::Block => TarType::Block,
    }
}

impl<W: Members> TarWriter<W> {
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter {
            out,
            written: 0,
            names: Names::default(),
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Pads the data written since the last header to a whole block.
    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rest = (len % BLOCK as u64) as usize;
        if rest != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rest])?;
        }
        Ok(())
    }

    /// A GNU long-name (`L`) or long-link (`K`) entry carrying `name` whole.
    fn long_entry(&mut self, kind: TarType, name: &[u8]) -> io::Result<()> {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(name.len() as u64 + 1);
        h.set_entry_type(kind);
        h.set_cksum();
        self.put(h.as_bytes())?;
        self.put(name)?;
        self.put(&[0])?;
        self.pad(name.len() as u64 + 1)
    }

    /// The PAX records of an entry's attributes (none when it has none).
    fn attribute_records(&mut self, entry: &Entry) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        for (name, value) in &entry.xattrs {
            let key = match name.as_str() {
                ACL_ACCESS => "SCHILY.acl.access",
                ACL_DEFAULT => "SCHILY.acl.default",
                _ => {
                    out.extend(record(&format!("SCHILY.xattr.{name}"), value));
                    continue;
                }
            };
            let names = &mut self.names;
            let text = crate::acl::to_text(value, &mut |who, id| match who {
                crate::acl::Who::User => names.user(id),
                crate::acl::Who::Group => names.group(id),
            })
            .map_err(|why| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: its {name} in the index: {why}",
                        String::from_utf8_lossy(&entry.path)
                    ),
                )
            })?;
            out.extend(record(key, text.as_bytes()));
        }
        Ok(out)
    }

    /// Writes the header of `entry`; a regular file's `size` bytes must follow
    /// through [`TarWriter::data`] and then [`TarWriter::end_data`].
    pub fn header(&mut self, entry: &Entry) -> io::Result<()> {
        self.out.member_starts()?;
        if !entry.xattrs.is_empty() {
            let records = self.attribute_records(entry)?;
            let mut h = Header::new_ustar();
            h.as_ustar_mut().expect("ustar").name[..14].copy_from_slice(b"././@PaxHeader");
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(records.len() as u64);
            h.set_entry_type(TarType::XHeader);
            h.set_cksum();
            self.put(h.as_bytes())?;
            self.put(&records)?;
            self.pad(records.len() as u64)?;
        }
        let mut name = entry.path.clone();
        if entry.kind == EntryType::Dir {
            name.push(b'/');
        }
        let link = match entry.kind {
            EntryType::Symlink => entry.target.as_deref(),
            EntryType::Hardlink => entry.link.as_deref(),
            _ => None,
        };
        if let Some(link) = link.filter(|l| l.len() > FIELD) {
            self.long_entry(TarType::GNULongLink, link)?;
        }
        if name.len() > FIELD {
            self.long_entry(TarType::GNULongName, &name)?;
        }
        let mut h = Header::new_gnu();
        let fields = h.as_old_mut();
        let n = name.len().min(FIELD);
        fields.name[..n].copy_from_slice(&name[..n]);
        if let Some(link) = link {
            let n = link.len().min(FIELD);
            fields.linkname[..n].copy_from_slice(&link[..n]);
        }
        h.set_mode(entry.mode);
        h.set_uid(entry.uid.into());
        h.set_gid(entry.gid.into());
        // Owner names, as GNU tar writes them (and maps them back by name when
        // it extracts as root). A name longer than the 32-byte field is left
        // out of the header only: the index keeps it.
        if let Some(user) = &entry.user {
            let _ = h.set_username(user);
        }
        if let Some(group) = &entry.group {
            let _ = h.set_groupname(group);
        }
        // Whole seconds in the header; the index keeps the nanoseconds.
        h.set_mtime(entry.mtime.div_euclid(1_000_000_000).max(0) as u64);
        h.set_size(if entry.kind == EntryType::File {
            entry.size
        } else {
            0
        });
        h.set_entry_type(tar_type(entry.kind));
        if let (EntryType::Char | EntryType::Block, Some(rdev)) = (entry.kind, entry.rdev) {
            h.set_device_major(rustix::fs::major(rdev))?;
            h.set_device_minor(rustix::fs::minor(rdev))?;
        }
        h.set_cksum();
        self.put(h.as_bytes())
    }

    /// Writes file data (part of the `size` announced by the header).
    pub fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.put(bytes)
    }

    /// Ends a file's data of `size` bytes with the padding to a whole block.
    pub fn end_data(&mut self, size: u64) -> io::Result<()> {
        self.pad(size)
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.put(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8], kind: EntryType) -> Entry {
        Entry {
            mode: 0o640,
            mtime: 1_700_000_000_123_456_789,
            uid: 1000,
            gid: 1000,
            ..Entry::new(path.to_vec(), kind)
        }
    }

    /// What the tar reader sees of an entry: path, type, link name, size.
    type Seen = (Vec<u8>, TarType, Option<Vec<u8>>, u64);

    fn write(entries: &[(Entry, &[u8])]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        for (e, data) in entries {
            w.header(e).unwrap();
            w.data(data).unwrap();
            w.end_data(data.len() as u64).unwrap();
        }
        w.finish().unwrap()
    }

    /// Long and non-UTF-8 names, long symlink targets and hard links read back
    /// byte for byte through the tar crate's reader (as GNU tar reads them).
    #[test]
    fn long_and_odd_names_read_back() {
        let long = [b"d/".as_slice(), &[b'x'; 150], b"\xff\xfe"].concat();
        let mut file = entry(&long, EntryType::File);
        file.size = 3;
        let mut sym = entry(b"s", EntryType::Symlink);
        sym.target = Some([b"../".as_slice(), &[b'y'; 200]].concat());
        let mut hard = entry(b"t", EntryType::Hardlink);
        hard.link = Some(long.clone());
        let bytes = write(&[
            (entry(b"d", EntryType::Dir), b""),
            (file, b"abc"),
            (sym.clone(), b""),
            (hard, b""),
        ]);
        assert_eq!(bytes.len() % 512, 0);
        let mut archive = tar::Archive::new(&bytes[..]);
        let got: Vec<Seen> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name_bytes().map(|l| l.into_owned());
                (
                    e.path_bytes().into_owned(),
                    e.header().entry_type(),
                    link,
                    e.size(),
                )
            })
            .collect();
        assert_eq!(got[0], (b"d/".to_vec(), TarType::Directory, None, 0));
        assert_eq!(got[1], (long.clone(), TarType::Regular, None, 3));
        assert_eq!(got[2], (b"s".to_vec(), TarType::Symlink, sym.target, 0));
        assert_eq!(got[3], (b"t".to_vec(), TarType::Link, Some(long), 0));
    }

    /// Mode, owner (ids and names) and mtime (whole seconds) go into the header.
    #[test]
    fn header_carries_metadata() {
        let mut f = entry(b"f", EntryType::File);
        f.user = Some("payne".into());
        f.group = Some("staff".into());
        let bytes = write(&[(f, b"")]);
        let h = Header::from_byte_slice(&bytes[..512]);
        assert_eq!(h.mode().unwrap(), 0o640);
        assert_eq!(h.uid().unwrap(), 1000);
        assert_eq!(h.username().unwrap(), Some("payne"));
        assert_eq!(h.groupname().unwrap(), Some("staff"));
        assert_eq!(h.mtime().unwrap(), 1_700_000_000);
    }
}
