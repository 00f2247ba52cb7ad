//! `snap-disk serve DISK NAME`: a blocks snapshot as a read-only NBD export
//! on a unix socket, for instant recovery.
//!
//! A VM boots from the snapshot at once through a qcow2 overlay backed by
//! the export (`qemu-img create -f qcow2 -b nbd+unix:///DISK?socket=S -F raw
//! o.qcow2`), while `snap-disk restore` or `snap-restore` brings the real
//! image back. The snapshot is read from the store, or from a destination
//! (`--from`: a drive, a folder, a bucket), fetching each block only when a
//! client first reads it. Fetched blocks are kept in a cache folder, each
//! written under a temporary name and renamed, and checked against its
//! sha256 whenever it is read: a server killed at any moment leaves a cache
//! the next one uses as it is.
//!
//! The server speaks the fixed-newstyle handshake (NBD_OPT_GO and the old
//! NBD_OPT_EXPORT_NAME), structured replies, and the `base:allocation`
//! context, so that clients skip the snapshot's zero blocks. Writes are
//! refused: the export is read-only.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use snap_shared::blockmap::{Dense, MapHeader, MapReader};
use snap_shared::blockstore::decode_block;
use snap_shared::crypt::Decrypt;
use snap_shared::disks::block_rel;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;
use snap_shared::hash::Sha256Digest;

use crate::nbd::server::{Export, bind, serve};

/// Where the snapshot's files are: a folder laid out as a store or
/// destination (`disks/<disk>/…`), or a bucket.
pub enum Origin {
    Folder(PathBuf),
    Bucket(snap_dest::Dest),
}

impl Origin {
    fn read(&self, rel: &str) -> Result<Vec<u8>> {
        match self {
            Origin::Folder(root) => {
                let p = root.join(rel);
                std::fs::read(&p).map_err(|e| Error::io(&p, e))
            }
            Origin::Bucket(d) => Ok(d.get_bytes(rel)?.to_vec()),
        }
    }

    fn show(&self, rel: &str) -> String {
        match self {
            Origin::Folder(root) => root.join(rel).display().to_string(),
            Origin::Bucket(d) => d.show(rel),
        }
    }

    fn is_local(&self) -> bool {
        matches!(self, Origin::Folder(_))
    }
}

/// The snapshot's blocks, fetched on demand.
pub struct Blocks {
    origin: Origin,
    disk: String,
    header: MapHeader,
    map: Vec<Option<Sha256Digest>>,
    /// Fetched blocks as stored (compressed, maybe encrypted), for a bucket.
    cache: Option<PathBuf>,
    /// The last blocks decoded, since clients read a block in several requests.
    recent: Mutex<VecDeque<(Sha256Digest, Arc<Vec<u8>>)>>,
}

const RECENT: usize = 32;

impl Blocks {
    /// Reads the snapshot's map; `cache` holds fetched blocks for a bucket.
    pub fn open(origin: Origin, disk: &str, snap: &str, cache: Option<PathBuf>) -> Result<Blocks> {
        let rel = format!("disks/{disk}/{snap}.map.zst");
        let bytes = origin.read(&rel)?;
        let reader = MapReader::new(io::Cursor::new(bytes), origin.show(&rel))?;
        let header = reader.header;
        let mut map = Vec::with_capacity(header.block_count() as usize);
        for entry in Dense::new(reader) {
            map.push(entry?.1);
        }
        if let Some(c) = &cache {
            fsutil::create_private_dir(c).map_err(|e| Error::io(c, e))?;
            remove_dead_temps(c);
        }
        Ok(Blocks {
            origin,
            disk: disk.to_string(),
            header,
            map,
            cache,
            recent: Mutex::new(VecDeque::new()),
        })
    }

    pub fn size(&self) -> u64 {
        self.header.virtual_size
    }

    fn block(&self, d: &Sha256Digest, dec: &Decrypt) -> Result<Arc<Vec<u8>>> {
        if let Some((_, data)) = self.recent.lock().unwrap().iter().find(|(k, _)| k == d) {
            return Ok(data.clone());
        }
        let data = Arc::new(self.fetch(d, dec)?);
        let mut recent = self.recent.lock().unwrap();
        if recent.len() >= RECENT {
            recent.pop_front();
        }
        recent.push_back((*d, data.clone()));
        Ok(data)
    }

    /// The block's bytes, checked: from the cache, else the origin (then kept).
    fn fetch(&self, d: &Sha256Digest, dec: &Decrypt) -> Result<Vec<u8>> {
        let bs = self.header.block_size;
        let kept = self.cache.as_ref().map(|c| c.join(d.to_hex()));
        if let Some(k) = kept.as_ref().filter(|k| k.exists()) {
            let raw = std::fs::read(k).map_err(|e| Error::io(k, e))?;
            // A damaged cached block is fetched again, never served.
            match decode_block(&raw, d, dec, bs, &k.display().to_string()) {
                Ok(data) => return Ok(data),
                Err(_) => std::fs::remove_file(k).map_err(|e| Error::io(k, e))?,
            }
        }
        let rel = format!("disks/{}/blocks/{}", self.disk, block_rel(d));
        let raw = self.origin.read(&rel)?;
        let data = decode_block(&raw, d, dec, bs, &self.origin.show(&rel))?;
        if let Some(k) = kept.filter(|_| !self.origin.is_local()) {
            match fsutil::write_atomic(&k, 0o600, false, |f| f.write_all(&raw)) {
                // Another client's thread fetched the same block first.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                r => r.map_err(|e| Error::io(&k, e))?,
            }
        }
        Ok(data)
    }

    /// `buf.len()` bytes at `offset`.
    pub fn read(&self, dec: &Decrypt, offset: u64, buf: &mut [u8]) -> Result<()> {
        let bs = self.header.block_size;
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let index = at / bs;
            let within = (at % bs) as usize;
            let n = (bs as usize - within).min(buf.len() - done);
            match self.map.get(index as usize).copied().flatten() {
                Some(d) => {
                    let data = self.block(&d, dec)?;
                    let end = (within + n).min(data.len());
                    let got = end.saturating_sub(within);
                    buf[done..done + got].copy_from_slice(&data[within..end]);
                    buf[done + got..done + n].fill(0);
                }
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// Whether the block holding `offset` is all zeros (not in the map).
    fn is_zero_at(&self, offset: u64) -> bool {
        let i = (offset / self.header.block_size) as usize;
        self.map.get(i).copied().flatten().is_none()
    }
}

impl Export for Blocks {
    fn size(&self) -> u64 {
        Blocks::size(self)
    }

    fn block_size(&self) -> u64 {
        self.header.block_size
    }

    fn read(&self, dec: &Decrypt, offset: u64, buf: &mut [u8]) -> Result<()> {
        Blocks::read(self, dec, offset, buf)
    }

    fn is_zero_at(&self, offset: u64) -> bool {
        Blocks::is_zero_at(self, offset)
    }
}

/// Removes the temporary files of servers that died writing into the cache
/// (`.NAME.tmp.PID` whose PID is gone); another live server's are left alone.
fn remove_dead_temps(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp."))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// `snap-disk serve`: opens the snapshot, binds the socket, says how to
/// boot from it, and serves until SIGINT or SIGTERM.
pub fn run(
    ctx: &crate::disk::Context,
    args: &crate::cli::ServeArgs,
    report: &snap_cli::Reporter,
) -> Result<Exit> {
    let ready = prepare(ctx, args)?;
    stop_on_signal(&ready.socket)?;
    for line in ready.says() {
        report.note(&line);
    }
    report.note("stop with Ctrl-C or SIGTERM");
    let keys = args.keys.clone();
    ready.serve(Arc::new(move || keys.decrypt()))?;
    Ok(Exit::Ok)
}

/// A server ready to run: the snapshot's blocks and the socket it listens on.
pub struct Ready {
    blocks: Arc<Blocks>,
    listener: std::os::unix::net::UnixListener,
    disk: String,
    name: String,
    pub socket: PathBuf,
}

impl Ready {
    /// What it serves, and how to boot from it.
    pub fn says(&self) -> [String; 2] {
        [
            format!(
                "serving {}/{} ({}) read-only on {}",
                self.disk,
                self.name,
                snap_shared::size::human_bytes(self.blocks.size()),
                self.socket.display()
            ),
            format!(
                "boot from it through an overlay: qemu-img create -f qcow2 -b 'nbd+unix:///{}?socket={}' -F raw overlay.qcow2",
                self.disk,
                self.socket.display()
            ),
        ]
    }

    /// Another handle on the listening socket: shutting it down
    /// (`shutdown(2)`) ends [`Ready::serve`] (a server inside another program).
    pub fn stopper(&self) -> Result<std::os::unix::net::UnixListener> {
        self.listener
            .try_clone()
            .map_err(|e| Error::io(&self.socket, e))
    }

    /// Serves until the socket is shut down; clients already connected
    /// finish on their own threads.
    pub fn serve(self, keys: crate::nbd::server::Keys) -> Result<()> {
        serve(self.blocks, self.listener, self.disk, keys)
    }
}

/// Finds the snapshot, opens its blocks and binds the socket.
pub fn prepare(ctx: &crate::disk::Context, args: &crate::cli::ServeArgs) -> Result<Ready> {
    let (origin, disk) = match &args.from {
        None => {
            let d = ctx.existing(&args.disk)?;
            (Origin::Folder(ctx.store.root.clone()), d.dir.name.clone())
        }
        Some(from) => {
            snap_shared::id::check_name(&args.disk)
                .map_err(|e| Error::usage(format!("disk {:?}", args.disk), e))?;
            let origin = match snap_dest::open_for_reading(from, ctx.config.as_ref())? {
                snap_dest::ReadRoot::Folder(p) => Origin::Folder(p),
                snap_dest::ReadRoot::Bucket(d) => Origin::Bucket(d),
            };
            (origin, args.disk.clone())
        }
    };
    snap_shared::id::check_name(&args.name)
        .map_err(|e| Error::usage(format!("snapshot name {:?}", args.name), e))?;
    let rel = format!("disks/{disk}/{}.json", args.name);
    let rec: snap_shared::record::DiskSnapshotRecord = serde_json::from_slice(&origin.read(&rel)?)
        .map_err(|e| Error::data(origin.show(&rel), e))?;
    if rec.method != "blocks" {
        return Err(Error::usage(
            origin.show(&rel),
            format!(
                "is a {} snapshot; serve exports blocks snapshots",
                rec.method
            ),
        ));
    }
    let cache = match origin.is_local() {
        true => None,
        false => Some(args.cache.clone().unwrap_or_else(|| default_cache(&disk))),
    };
    let blocks = Blocks::open(origin, &disk, &args.name, cache)?;
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| default_socket(&disk, &args.name));
    let listener = bind(&socket)?;
    Ok(Ready {
        blocks: Arc::new(blocks),
        listener,
        disk,
        name: args.name.clone(),
        socket,
    })
}

fn default_socket(disk: &str, snap: &str) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("snap-disk-{disk}-{snap}.nbd"))
}

fn default_cache(disk: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("snap/serve").join(disk)
}

/// On SIGINT, SIGTERM or SIGHUP the socket is removed and the process
/// exits 0: serving only reads, and the cache is written atomically.
fn stop_on_signal(socket: &Path) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::io_ctx("installing signal handlers", e))?;
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = std::fs::remove_file(&socket);
            std::process::exit(0);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::nbd::client::Client;
    use crate::nbd::server::Keys;
    use crate::nbd::wire::ALLOCATION;

    use super::*;

    /// Our client reads through our server what the map says, zeros included.
    #[test]
    fn client_reads_what_the_server_serves() {
        let t = tempfile::tempdir().unwrap();
        let block = vec![7u8; 64 << 10];
        let d = Sha256Digest::of(&block);
        let dir = t.path().join("disks/d/blocks");
        let store = snap_shared::blockstore::BlockStore::open(&dir, None).unwrap();
        store.put(&d, &block).unwrap();
        let header = MapHeader {
            block_size: 64 << 10,
            virtual_size: 200 << 10,
        };
        let mut w = snap_shared::blockmap::MapWriter::new(Vec::new(), header).unwrap();
        w.push(1, &d).unwrap();
        std::fs::write(t.path().join("disks/d/s.map.zst"), w.finish().unwrap()).unwrap();
        let blocks = Blocks::open(Origin::Folder(t.path().to_path_buf()), "d", "s", None).unwrap();
        let sock = t.path().join("s.sock");
        let listener = bind(&sock).unwrap();
        let keys: Keys = Arc::new(|| Ok(Decrypt::default()));
        std::thread::spawn(move || serve(Arc::new(blocks), listener, "d".into(), keys));
        let mut c = Client::connect(&sock, "d", &[ALLOCATION.to_string()]).unwrap();
        assert_eq!(c.size(), 200 << 10);
        let mut buf = vec![1u8; 100 << 10];
        c.read(30 << 10, &mut buf).unwrap();
        assert!(buf[..34 << 10].iter().all(|b| *b == 0));
        assert!(buf[34 << 10..98 << 10].iter().all(|b| *b == 7));
        assert!(buf[98 << 10..].iter().all(|b| *b == 0));
        let ext = c.all_extents(ALLOCATION).unwrap();
        assert_eq!(
            ext.iter()
                .map(|e| (e.len >> 10, e.flags))
                .collect::<Vec<_>>(),
            [(64, 3), (64, 0), (72, 3)]
        );
    }
}
