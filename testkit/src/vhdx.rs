//! A writer of small VHDX files (MS-VHDX v1), dynamic or differencing, for
//! the tests of snap-disk's VHDX reading. qemu-img cannot make a
//! differencing VHDX (nor read one), and Hyper-V is not here; a dynamic file
//! from this writer is checked against qemu-img, which validates the parts
//! both kinds share (headers, region tables, metadata, BAT).
//!
//! Layout: headers at 64 and 128 KiB, region tables at 192 and 256 KiB, a
//! 1 MiB log at 1 MiB (unused: LogGuid zero), metadata at 2 MiB, the BAT at
//! 3 MiB, then 1 MiB payload blocks and sector bitmaps. Block size 1 MiB,
//! 512-byte logical sectors, so a chunk is 4096 blocks.

use std::path::Path;

const MIB: u64 = 1 << 20;
const KIB: usize = 1 << 10;
const SECTOR: u64 = 512;
const CHUNK_RATIO: u64 = (1 << 23) * SECTOR / MIB;

/// What one block of the new file holds.
pub enum Block {
    /// The whole block (1 MiB).
    Full(Vec<u8>),
    /// Only these sectors (index within the block, 512 bytes each); the
    /// rest reads from the parent.
    Partial(Vec<(u64, Vec<u8>)>),
}

/// The parent of a differencing file: its path as written in the locator
/// (relative to the child), and its DataWriteGuid (`XXXXXXXX-XXXX-…`).
pub struct Parent<'a> {
    pub relative_path: &'a str,
    pub data_write_guid: &'a str,
}

/// A GUID in VHDX's byte order (the first three fields little-endian).
pub fn guid(s: &str) -> [u8; 16] {
    let hex: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut g = [0u8; 16];
    g[..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
    g[4..6].copy_from_slice(&[b[5], b[4]]);
    g[6..8].copy_from_slice(&[b[7], b[6]]);
    g[8..].copy_from_slice(&b[8..]);
    g
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Writes a VHDX of `size` bytes holding `blocks` (index, contents); a
/// differencing file when `parent` is given. `data_write_guid` is the new
/// file's (a child's parent_linkage names its parent's).
pub fn write(
    path: &Path,
    size: u64,
    blocks: &[(u64, Block)],
    parent: Option<&Parent<'_>>,
    data_write_guid: &str,
) {
    let nblocks = size.div_ceil(MIB);
    let chunks = nblocks.div_ceil(CHUNK_RATIO);
    let bat_entries = match parent {
        Some(_) => chunks * (CHUNK_RATIO + 1),
        None => nblocks + (nblocks - 1) / CHUNK_RATIO,
    };
    let mut file = vec![0u8; 4 * MIB as usize];
    put(&mut file, 0, b"vhdxfile");
    put(&mut file, 8, &utf16("snap-testkit"));
    for (at, seq) in [(64 * KIB, 1u64), (128 * KIB, 2)] {
        let h = &mut file[at..at + 4 * KIB];
        put(h, 0, b"head");
        put(h, 8, &seq.to_le_bytes());
        put(h, 16, &guid("11111111-2222-3333-4444-555555555555"));
        put(h, 32, &guid(data_write_guid));
        put(h, 66, &1u16.to_le_bytes());
        put(h, 68, &(MIB as u32).to_le_bytes());
        put(h, 72, &MIB.to_le_bytes());
        let crc = crc32c::crc32c(h);
        put(h, 4, &crc.to_le_bytes());
    }
    for at in [192 * KIB, 256 * KIB] {
        let r = &mut file[at..at + 64 * KIB];
        put(r, 0, b"regi");
        put(r, 8, &2u32.to_le_bytes());
        let regions = [
            ("2DC27766-F623-4200-9D64-115E9BFD4A08", 3 * MIB),
            ("8B7CA206-4790-4B9A-B8FE-575F050F886E", 2 * MIB),
        ];
        for (i, (g, off)) in regions.iter().enumerate() {
            let e = 16 + 32 * i;
            put(r, e, &guid(g));
            put(r, e + 16, &off.to_le_bytes());
            put(r, e + 24, &(MIB as u32).to_le_bytes());
            put(r, e + 28, &1u32.to_le_bytes());
        }
        let crc = crc32c::crc32c(r);
        put(r, 4, &crc.to_le_bytes());
    }
    write_metadata(&mut file[2 * MIB as usize..3 * MIB as usize], size, parent);
    // Payload blocks, then the sector bitmaps of a differencing file.
    let mut bat = vec![0u64; bat_entries as usize];
    let mut bitmaps: Vec<Vec<u8>> = vec![vec![0u8; MIB as usize]; chunks as usize];
    for (index, block) in blocks {
        let at = file.len() as u64;
        file.resize(file.len() + MIB as usize, 0);
        let payload = &mut file[at as usize..(at + MIB) as usize];
        let chunk = (index / CHUNK_RATIO) as usize;
        let first_sector = (index % CHUNK_RATIO) * (MIB / SECTOR);
        let state = match block {
            Block::Full(data) => {
                payload[..data.len()].copy_from_slice(data);
                6
            }
            Block::Partial(sectors) => {
                for (s, data) in sectors {
                    put(payload, (s * SECTOR) as usize, data);
                    let bit = first_sector + s;
                    bitmaps[chunk][(bit / 8) as usize] |= 1 << (bit % 8);
                }
                7
            }
        };
        bat[(index + index / CHUNK_RATIO) as usize] = state | ((at / MIB) << 20);
    }
    if parent.is_some() {
        for (c, bm) in bitmaps.iter().enumerate() {
            let at = file.len() as u64;
            file.extend_from_slice(bm);
            let entry = c as u64 * (CHUNK_RATIO + 1) + CHUNK_RATIO;
            bat[entry as usize] = 6 | ((at / MIB) << 20);
        }
    }
    for (i, e) in bat.iter().enumerate() {
        put(&mut file, 3 * MIB as usize + 8 * i, &e.to_le_bytes());
    }
    std::fs::write(path, file).unwrap();
}

fn write_metadata(m: &mut [u8], size: u64, parent: Option<&Parent<'_>>) {
    let mut items: Vec<(&str, u32, Vec<u8>)> = vec![
        ("CAA16737-FA36-4D43-B3B6-33F0AA44E76B", 4, {
            let mut v = (MIB as u32).to_le_bytes().to_vec();
            v.extend_from_slice(&(if parent.is_some() { 2u32 } else { 0 }).to_le_bytes());
            v
        }),
        (
            "2FA54224-CD1B-4876-B211-5DBED83BF4B8",
            6,
            size.to_le_bytes().to_vec(),
        ),
        (
            "BECA12AB-B2E6-4523-93EF-C309E000C746",
            6,
            guid("AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE").to_vec(),
        ),
        (
            "8141BF1D-A96F-4709-BA47-F233A8FAAB5F",
            6,
            512u32.to_le_bytes().to_vec(),
        ),
        (
            "CDA348C7-445D-4471-9CC9-E9885251C556",
            6,
            4096u32.to_le_bytes().to_vec(),
        ),
    ];
    if let Some(p) = parent {
        items.push(("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C", 4, locator(p)));
    }
    put(m, 0, b"metadata");
    put(m, 10, &(items.len() as u16).to_le_bytes());
    let mut at = 64 * KIB;
    for (i, (g, flags, data)) in items.iter().enumerate() {
        let e = 32 + 32 * i;
        put(m, e, &guid(g));
        put(m, e + 16, &(at as u32).to_le_bytes());
        put(m, e + 20, &(data.len() as u32).to_le_bytes());
        put(m, e + 24, &flags.to_le_bytes());
        put(m, at, data);
        at += data.len().next_multiple_of(8);
    }
}

/// The parent locator item: its type, then key/value pairs in UTF-16.
fn locator(p: &Parent<'_>) -> Vec<u8> {
    let pairs = [
        (
            "parent_linkage",
            format!("{{{}}}", p.data_write_guid.to_uppercase()),
        ),
        ("relative_path", p.relative_path.replace('/', "\\")),
    ];
    let mut out = guid("B04AEFB7-D19E-4A81-B789-25B8E9445913").to_vec();
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(pairs.len() as u16).to_le_bytes());
    let mut strings = Vec::new();
    let base = 20 + 12 * pairs.len();
    for (k, v) in &pairs {
        let (k, v) = (utf16(k), utf16(v));
        let ko = base + strings.len();
        strings.extend_from_slice(&k);
        let vo = base + strings.len();
        strings.extend_from_slice(&v);
        out.extend_from_slice(&(ko as u32).to_le_bytes());
        out.extend_from_slice(&(vo as u32).to_le_bytes());
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(&strings);
    out
}
