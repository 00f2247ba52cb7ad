//! What each internal snapshot of a qcow2 image holds alone: the clusters
//! only it refers to (refcount 1), its VM state among them, and its L1
//! table. That is what deleting it gives back, and the "stored" size `list`
//! and `show` print beside VM SIZE (qemu-img tells neither).
//!
//! Read from the file: the header, each snapshot's L1 table, the L2 tables
//! it points to, and the refcounts of what they point to. A running VM's
//! QEMU may hold refcount updates in its cache, so for a held image the
//! figure is as of its last flush. None when the image has what this does
//! not read: an external data file, or a header it does not know.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// L1 and L2 entries: the host offset bits.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// An L2 entry of a compressed cluster.
const COMPRESSED: u64 = 1 << 62;
/// Incompatible features this reads past: dirty, corrupt, compression type.
const READABLE_FEATURES: u64 = 0b1011;
/// The extended-L2 feature: 16-byte L2 entries.
const EXTENDED_L2: u64 = 1 << 4;

/// Bytes each snapshot holds alone, by snapshot ID.
pub fn owned(path: &Path) -> Option<HashMap<String, u64>> {
    let file = File::open(path).ok()?;
    let img = Image::open(&file)?;
    let mut out = HashMap::new();
    let mut at = img.snapshots_offset;
    for _ in 0..img.nb_snapshots.min(65536) {
        let e = img.read(at, 40)?;
        let l1_offset = be64(&e, 0);
        let l1_size = be32(&e, 8) as u64;
        let id_len = u16::from_be_bytes([e[12], e[13]]) as u64;
        let name_len = u16::from_be_bytes([e[14], e[15]]) as u64;
        let extra_len = be32(&e, 36) as u64;
        let id_at = at.checked_add(40 + extra_len)?;
        let id = String::from_utf8(img.read(id_at, id_len as usize)?).ok()?;
        out.insert(id, img.owned_by(l1_offset, l1_size)?);
        at = id_at
            .checked_add(id_len + name_len)?
            .checked_next_multiple_of(8)?;
    }
    Some(out)
}

struct Image<'a> {
    file: &'a File,
    cluster_bits: u32,
    refcount_bits: u32,
    refcount_table: Vec<u64>,
    l2_entry: u64,
    nb_snapshots: u32,
    snapshots_offset: u64,
    /// Refcount blocks read so far, by offset.
    blocks: std::cell::RefCell<HashMap<u64, Vec<u8>>>,
}

impl<'a> Image<'a> {
    fn open(file: &'a File) -> Option<Image<'a>> {
        let mut h = [0u8; 104];
        file.read_exact_at(&mut h, 0).ok()?;
        if &h[..4] != b"QFI\xfb" {
            return None;
        }
        let version = be32(&h, 4);
        let (incompatible, refcount_order) = match version {
            2 => (0, 4),
            3 => (be64(&h, 72), be32(&h, 96)),
            _ => return None,
        };
        if incompatible & !(READABLE_FEATURES | EXTENDED_L2) != 0 || refcount_order > 6 {
            return None;
        }
        let cluster_bits = be32(&h, 20);
        if !(9..=21).contains(&cluster_bits) {
            return None;
        }
        let table_clusters = be32(&h, 56) as usize;
        let table_len = table_clusters.checked_mul(1 << cluster_bits)?;
        if table_len > 64 << 20 {
            return None;
        }
        let mut table = vec![0u8; table_len];
        file.read_exact_at(&mut table, be64(&h, 48)).ok()?;
        Some(Image {
            file,
            cluster_bits,
            refcount_bits: 1 << refcount_order,
            refcount_table: table.chunks_exact(8).map(|c| be64(c, 0)).collect(),
            l2_entry: if incompatible & EXTENDED_L2 != 0 {
                16
            } else {
                8
            },
            nb_snapshots: be32(&h, 60),
            snapshots_offset: be64(&h, 64),
            blocks: Default::default(),
        })
    }

    fn cluster(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn read(&self, at: u64, len: usize) -> Option<Vec<u8>> {
        if len > 64 << 20 {
            return None;
        }
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, at).ok()?;
        Some(buf)
    }

    /// The refcount of the host cluster at `offset`.
    fn refcount(&self, offset: u64) -> Option<u64> {
        let index = offset >> self.cluster_bits;
        let per_block = self.cluster() * 8 / self.refcount_bits as u64;
        let block = *self.refcount_table.get((index / per_block) as usize)? & OFFSET_MASK;
        if block == 0 {
            return Some(0);
        }
        let mut cache = self.blocks.borrow_mut();
        let bytes = match cache.entry(block) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.read(block, self.cluster() as usize)?)
            }
        };
        let bit = (index % per_block) * self.refcount_bits as u64;
        let value = match self.refcount_bits {
            64 => be64(bytes, (bit / 8) as usize),
            32 => be32(bytes, (bit / 8) as usize) as u64,
            16 => u16::from_be_bytes([bytes[(bit / 8) as usize], bytes[(bit / 8) as usize + 1]])
                as u64,
            n => {
                let byte = bytes[(bit / 8) as usize] as u64;
                (byte >> (8 - n as u64 - bit % 8)) & ((1 << n) - 1)
            }
        };
        Some(value)
    }

    /// Bytes the snapshot whose L1 table is at `l1_offset` holds alone.
    fn owned_by(&self, l1_offset: u64, l1_size: u64) -> Option<u64> {
        let l1 = self.read(l1_offset, (l1_size * 8) as usize)?;
        // Its L1 table is its own.
        let mut bytes = (l1_size * 8).next_multiple_of(self.cluster());
        let entries = self.cluster() / self.l2_entry;
        for l2_offset in l1.chunks_exact(8).map(|c| be64(c, 0) & OFFSET_MASK) {
            if l2_offset == 0 {
                continue;
            }
            if self.refcount(l2_offset)? == 1 {
                bytes += self.cluster();
            }
            let l2 = self.read(l2_offset, self.cluster() as usize)?;
            for i in 0..entries as usize {
                let entry = be64(&l2, i * self.l2_entry as usize);
                bytes += self.data_owned(entry)?;
            }
        }
        Some(bytes)
    }

    /// What one L2 entry's data adds when this snapshot alone refers to it.
    fn data_owned(&self, entry: u64) -> Option<u64> {
        if entry & COMPRESSED != 0 {
            // Bits below x: the host offset; above: the 512-byte sectors, less one.
            let x = 62 - (self.cluster_bits - 8);
            let offset = entry & ((1 << x) - 1);
            let sectors = ((entry & ((1 << 62) - 1)) >> x) + 1;
            return Some(match self.refcount(offset)? {
                1 => sectors * 512,
                _ => 0,
            });
        }
        let offset = entry & OFFSET_MASK;
        Some(match offset != 0 && self.refcount(offset)? == 1 {
            true => self.cluster(),
            false => 0,
        })
    }
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::image::run_ok as qemu;

    /// A snapshot holds alone what was overwritten after it: deleting it
    /// gives back about that much (qemu-img check's allocated clusters agree).
    #[test]
    fn owned_is_what_was_overwritten_since() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("o.qcow2");
        let s = p.to_str().unwrap();
        qemu(&["qemu-img", "create", "-q", "-f", "qcow2", s, "64M"]);
        qemu(&["qemu-io", "-c", "write -P 1 0 8M", s]);
        qemu(&["qemu-img", "snapshot", "-c", "a", s]);
        qemu(&["qemu-io", "-c", "write -P 2 0 3M", s]);
        qemu(&["qemu-img", "snapshot", "-c", "b", s]);
        let o = owned(&p).unwrap();
        let mib = 1 << 20;
        // a alone has the 3 MiB that were overwritten, plus its L1 table.
        assert!((3 * mib..3 * mib + (256 << 10)).contains(&o["1"]), "{o:?}");
        // b shares everything with the active image: only its L1 is its own.
        assert!(o["2"] < 256 << 10, "{o:?}");
    }
}
