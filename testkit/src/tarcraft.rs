//! Hand-made tar archives, block by block, for the odd archives other
//! projects' test suites hold (an old tar's folder with a size, repeated
//! long-name headers, PAX records without `=`…): no writer here would make
//! them, so tests spell them out.

/// One header's fields; the rest of the block is zeros.
#[derive(Clone)]
pub struct Head<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    pub size: u64,
    pub mode: u32,
    pub mtime: u64,
    pub link: &'a [u8],
    /// `ustar\0` `00` (POSIX), else GNU's `ustar  \0`.
    pub posix: bool,
    /// The size field as written, instead of `size` in octal.
    pub size_field: Option<&'a [u8]>,
    /// Owner and group, by id and by name.
    pub uid: u32,
    pub gid: u32,
    pub user: &'a [u8],
    pub group: &'a [u8],
}

impl<'a> Head<'a> {
    /// A regular file of `size` bytes, mode 0644, in GNU's format.
    pub fn file(name: &'a [u8], size: u64) -> Head<'a> {
        Head {
            name,
            kind: b'0',
            size,
            mode: 0o644,
            mtime: 1_700_000_000,
            link: b"",
            posix: false,
            size_field: None,
            uid: 0,
            gid: 0,
            user: b"root",
            group: b"root",
        }
    }

    pub fn owner(mut self, uid: u32, user: &'a [u8], gid: u32, group: &'a [u8]) -> Head<'a> {
        (self.uid, self.user, self.gid, self.group) = (uid, user, gid, group);
        self
    }

    pub fn kind(mut self, kind: u8) -> Head<'a> {
        self.kind = kind;
        self
    }

    pub fn link(mut self, link: &'a [u8]) -> Head<'a> {
        self.link = link;
        self
    }

    pub fn posix(mut self) -> Head<'a> {
        self.posix = true;
        self
    }

    pub fn size_field(mut self, field: &'a [u8]) -> Head<'a> {
        self.size_field = Some(field);
        self
    }

    /// The 512-byte block, with its checksum.
    pub fn block(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..self.name.len()].copy_from_slice(self.name);
        h[100..108].copy_from_slice(format!("{:07o}\0", self.mode).as_bytes());
        h[108..116].copy_from_slice(format!("{:07o}\0", self.uid).as_bytes());
        h[116..124].copy_from_slice(format!("{:07o}\0", self.gid).as_bytes());
        match self.size_field {
            Some(f) => h[124..124 + f.len()].copy_from_slice(f),
            None => h[124..136].copy_from_slice(format!("{:011o}\0", self.size).as_bytes()),
        }
        h[136..148].copy_from_slice(format!("{:011o}\0", self.mtime).as_bytes());
        h[156] = self.kind;
        h[157..157 + self.link.len()].copy_from_slice(self.link);
        h[257..265].copy_from_slice(match self.posix {
            true => b"ustar\x0000",
            false => b"ustar  \0",
        });
        h[265..265 + self.user.len()].copy_from_slice(self.user);
        h[297..297 + self.group.len()].copy_from_slice(self.group);
        checksum(&mut h);
        h
    }
}

/// Gives a header block its checksum (after an edit).
pub fn checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

pub use snap_shared::pax::record;

/// An archive being written.
#[derive(Default)]
pub struct Tar {
    pub bytes: Vec<u8>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    /// A header and `data` after it, padded to a block.
    pub fn member(mut self, head: Head<'_>, data: &[u8]) -> Tar {
        self.bytes.extend_from_slice(&head.block());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.resize(self.bytes.len() + pad, 0);
        self
    }

    /// A block as it is (a header edited by hand).
    pub fn block(mut self, block: &[u8; 512]) -> Tar {
        self.bytes.extend_from_slice(block);
        self
    }

    /// A regular file holding `data`.
    pub fn file(self, name: &[u8], data: &[u8]) -> Tar {
        self.member(Head::file(name, data.len() as u64), data)
    }

    /// A PAX extended header (`x`, or `g` for a global one) of `records`
    /// (already made with [`record`], or malformed on purpose).
    pub fn pax(self, kind: u8, records: &[u8]) -> Tar {
        let head = Head::file(b"PaxHeaders/x", records.len() as u64)
            .kind(kind)
            .posix();
        self.member(head, records)
    }

    /// A GNU long name (`L`) or long link (`K`) header holding `data`.
    pub fn long(self, kind: u8, data: &[u8]) -> Tar {
        self.member(
            Head::file(b"././@LongLink", data.len() as u64).kind(kind),
            data,
        )
    }

    /// The two end-of-archive blocks.
    pub fn end(mut self) -> Vec<u8> {
        self.bytes.resize(self.bytes.len() + 1024, 0);
        self.bytes
    }
}
