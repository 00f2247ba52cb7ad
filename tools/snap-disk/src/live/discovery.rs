//! Finding what QEMU holds: the block node of an image (through format and
//! filter nodes, by the file it opens) and its dirty bitmaps, and the names
//! snap-disk gives inside QEMU.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where the QEMU that holds a disk listens, from the flags or the config.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Its QMP monitor socket.
    pub qmp: PathBuf,
    /// The block node to snapshot [default: the format node over the image file].
    pub node: Option<String>,
    /// The unix socket of an NBD server the QEMU already runs (it runs at most one).
    pub nbd_server: Option<PathBuf>,
    /// The guest agent's socket, for `--freeze`.
    pub agent: Option<PathBuf>,
}

/// How consistent a snapshot is, as its record says.
pub const POINT_IN_TIME: &str = "point-in-time";

pub const APPLICATION: &str = "application";

/// Every name this tool gives inside QEMU starts so; a later run finds what a killed one left.
pub const OURS: &str = "snap-disk-";

/// The name of the dirty bitmap a snapshot starts, on the disk's node.
pub fn bitmap_name(disk: &str, snap: &str) -> String {
    format!("{OURS}{disk}/{snap}")
}

pub(crate) fn bitmap_prefix(disk: &str) -> String {
    format!("{OURS}{disk}/")
}

/// One dirty bitmap on a node, as `query-named-block-nodes` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    pub name: String,
    pub granularity: u64,
    pub recording: bool,
    pub persistent: bool,
    /// Marked in use in the image: the QEMU that had it died, so it may have missed writes.
    pub inconsistent: bool,
}

/// The block node a snapshot reads.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub format: String,
    pub virtual_size: u64,
    pub bitmaps: Vec<Bitmap>,
    /// A qcow2 of compat 1.1 or later, the only images that keep a dirty
    /// bitmap in them (a v2 one, compat 0.10, refuses a persistent bitmap).
    pub keeps_bitmaps: bool,
}

/// Drivers that sit above a format node and are never the disk itself.
pub(crate) const FILTERS: &[&str] = &[
    "copy-before-write",
    "throttle",
    "copy-on-read",
    "preallocate",
    "compress",
    "blkdebug",
    "blklogwrites",
    "blkverify",
    "snapshot-access",
];

/// Drivers that are the file under a format node.
pub(crate) const PROTOCOLS: &[&str] = &["file", "host_device", "host_cdrom"];

pub(crate) fn parse_node(v: &Value) -> Option<Node> {
    let bitmaps = v
        .get("dirty-bitmaps")
        .and_then(Value::as_array)
        .map(|bs| bs.iter().filter_map(parse_bitmap).collect())
        .unwrap_or_default();
    let format = v.get("drv")?.as_str()?.to_string();
    let compat = v["image"]["format-specific"]["data"]["compat"].as_str();
    Some(Node {
        name: v.get("node-name")?.as_str()?.to_string(),
        keeps_bitmaps: format == "qcow2" && compat != Some("0.10"),
        format,
        virtual_size: v.get("image")?.get("virtual-size")?.as_u64()?,
        bitmaps,
    })
}

pub(crate) fn parse_bitmap(v: &Value) -> Option<Bitmap> {
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    Some(Bitmap {
        name: v.get("name")?.as_str()?.to_string(),
        granularity: v.get("granularity")?.as_u64()?,
        recording: flag("recording"),
        persistent: flag("persistent"),
        inconsistent: flag("inconsistent"),
    })
}

/// Whether `filename`, as QEMU names a node's file, is `image`.
pub(crate) fn same_file(filename: &str, image: &Path, qemu_cwd: Option<&Path>) -> bool {
    let p = Path::new(filename);
    let p = match (p.is_relative(), qemu_cwd) {
        (true, Some(cwd)) => cwd.join(p),
        _ => p.to_path_buf(),
    };
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(&p), fs::metadata(image)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The node to snapshot: `wanted`, or the format node whose file is `image`.
pub fn find_node(
    nodes: &[Value],
    image: &Path,
    wanted: Option<&str>,
    qemu_cwd: Option<&Path>,
) -> std::result::Result<Node, String> {
    if let Some(w) = wanted {
        return nodes
            .iter()
            .find(|n| n.get("node-name").and_then(Value::as_str) == Some(w))
            .and_then(parse_node)
            .ok_or_else(|| format!("QEMU has no block node named {w}"));
    }
    let on_image: Vec<&Value> = nodes
        .iter()
        .filter(|n| {
            n.get("file")
                .and_then(Value::as_str)
                .is_some_and(|f| same_file(f, image, qemu_cwd))
        })
        .filter(|n| {
            let drv = n.get("drv").and_then(Value::as_str).unwrap_or("");
            !FILTERS.contains(&drv)
        })
        .collect();
    let is_protocol =
        |n: &&Value| PROTOCOLS.contains(&n.get("drv").and_then(Value::as_str).unwrap_or(""));
    let formats: Vec<&Value> = on_image
        .iter()
        .copied()
        .filter(|n| !is_protocol(n))
        .collect();
    let pick = match (formats.len(), on_image.len()) {
        (1, _) => formats[0],
        (0, 1) => on_image[0],
        (0, 0) => return Err("QEMU has no block node on this image".into()),
        _ => return Err("QEMU has several block nodes on this image; give --node".into()),
    };
    parse_node(pick).ok_or_else(|| "QEMU described the block node without its size".into())
}
