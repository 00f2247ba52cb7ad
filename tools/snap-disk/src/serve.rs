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
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use snap_shared::blockmap::{Dense, MapHeader, MapReader};
use snap_shared::blockstore::decode_block;
use snap_shared::crypt::Decrypt;
use snap_shared::disks::block_rel;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;
use snap_shared::hash::Sha256Digest;

use crate::nbd::*;

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
    stop_on_signal(&socket)?;
    report.note(&format!(
        "serving {disk}/{} ({}) read-only on {}",
        args.name,
        snap_shared::size::human_bytes(blocks.size()),
        socket.display()
    ));
    report.note(&format!(
        "boot from it through an overlay: qemu-img create -f qcow2 -b 'nbd+unix:///{disk}?socket={}' -F raw overlay.qcow2",
        socket.display()
    ));
    report.note("stop with Ctrl-C or SIGTERM");
    serve(Arc::new(blocks), listener, disk, args.keys.clone())?;
    Ok(Exit::Ok)
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

/// Serves `blocks` on `socket` until the process is stopped; a thread per client.
/// Each connection's thread reads the identities for itself (age's are not `Send`).
pub fn serve(
    blocks: Arc<Blocks>,
    listener: UnixListener,
    export: String,
    keys: crate::cli::Keys,
) -> Result<()> {
    keys.decrypt()?;
    for conn in listener.incoming() {
        let conn = conn.map_err(|e| Error::io_ctx("accepting an NBD client", e))?;
        let (blocks, export, keys) = (blocks.clone(), export.clone(), keys.clone());
        std::thread::spawn(move || {
            let Ok(dec) = keys.decrypt() else { return };
            if let Err(e) = Conn::new(conn, blocks, export, dec).and_then(|c| c.run()) {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    snap_cli::say(&format!("snap-disk: NBD client: {e}"));
                }
            }
        });
    }
    Ok(())
}

/// Binds the socket so that only this user can connect.
pub fn bind(socket: &Path) -> Result<UnixListener> {
    if socket.exists() {
        return Err(Error::new(
            Exit::CantCreate,
            socket.display().to_string(),
            "already exists",
        )
        .with_hint("another server may be running; remove the socket if not"));
    }
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let l = UnixListener::bind(socket);
    rustix::process::umask(old);
    l.map_err(|e| Error::io(socket, e).with_exit(Exit::CantCreate))
}

/// One client connection.
struct Conn {
    rd: BufReader<UnixStream>,
    wr: BufWriter<UnixStream>,
    blocks: Arc<Blocks>,
    export: String,
    dec: Decrypt,
    structured: bool,
    /// The id given to `base:allocation`, once negotiated.
    allocation: Option<u32>,
}

const TFLAGS: u16 = TFLAG_HAS_FLAGS | TFLAG_READ_ONLY | TFLAG_CAN_MULTI_CONN | 4; // 4: SEND_FLUSH
const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;
const CMD_WRITE: u16 = 1;
const CMD_FLUSH: u16 = 3;
const CMD_CACHE: u16 = 5;
const OPT_LIST: u32 = 3;
const REP_SERVER: u32 = 2;
/// The largest read served in one request.
const MAX_REQUEST: u32 = 32 << 20;

impl Conn {
    fn new(s: UnixStream, blocks: Arc<Blocks>, export: String, dec: Decrypt) -> io::Result<Conn> {
        Ok(Conn {
            rd: BufReader::new(s.try_clone()?),
            wr: BufWriter::with_capacity(1 << 20, s),
            blocks,
            export,
            dec,
            structured: false,
            allocation: None,
        })
    }

    fn run(mut self) -> io::Result<()> {
        self.wr.write_all(&NBDMAGIC.to_be_bytes())?;
        self.wr.write_all(&IHAVEOPT.to_be_bytes())?;
        self.wr
            .write_all(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes())?;
        self.wr.flush()?;
        let client_flags = self.rd.be_u32()?;
        let no_zeroes = client_flags & u32::from(FLAG_NO_ZEROES) != 0;
        if self.negotiate(no_zeroes)? {
            self.transmission()?;
        }
        Ok(())
    }

    /// The option phase; true when the client went on to transmission.
    fn negotiate(&mut self, no_zeroes: bool) -> io::Result<bool> {
        loop {
            if self.rd.be_u64()? != IHAVEOPT {
                return Ok(false);
            }
            let opt = self.rd.be_u32()?;
            let len = self.rd.be_u32()?;
            if len > 64 << 10 {
                return Ok(false);
            }
            let mut data = vec![0; len as usize];
            self.rd.read_exact(&mut data)?;
            match opt {
                OPT_EXPORT_NAME => {
                    self.wr.write_all(&self.blocks.size().to_be_bytes())?;
                    self.wr.write_all(&TFLAGS.to_be_bytes())?;
                    if !no_zeroes {
                        self.wr.write_all(&[0; 124])?;
                    }
                    self.wr.flush()?;
                    return Ok(true);
                }
                OPT_GO | OPT_INFO => {
                    if !self.name_ok(&data) {
                        self.reply(opt, REP_ERR_UNKNOWN, b"no such export")?;
                        continue;
                    }
                    let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                    info.extend_from_slice(&self.blocks.size().to_be_bytes());
                    info.extend_from_slice(&TFLAGS.to_be_bytes());
                    self.reply(opt, REP_INFO, &info)?;
                    self.reply(opt, REP_ACK, &[])?;
                    if opt == OPT_GO {
                        return Ok(true);
                    }
                }
                OPT_STRUCTURED_REPLY => {
                    self.structured = true;
                    self.reply(opt, REP_ACK, &[])?;
                }
                OPT_SET_META_CONTEXT | OPT_LIST_META_CONTEXT => self.meta(opt, &data)?,
                OPT_LIST => {
                    let mut d = (self.export.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(self.export.as_bytes());
                    self.reply(opt, REP_SERVER, &d)?;
                    self.reply(opt, REP_ACK, &[])?;
                }
                OPT_ABORT => {
                    self.reply(opt, REP_ACK, &[])?;
                    return Ok(false);
                }
                _ => self.reply(opt, REP_ERR_UNSUP, &[])?,
            }
        }
    }

    /// Any name, or ours, is our one export (clients often ask for "").
    fn name_ok(&self, data: &[u8]) -> bool {
        let Some(len) = data.get(..4) else {
            return false;
        };
        let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
        let name = data.get(4..4 + len).unwrap_or_default();
        name.is_empty() || name == self.export.as_bytes()
    }

    fn meta(&mut self, opt: u32, data: &[u8]) -> io::Result<()> {
        if !self.structured && opt == OPT_SET_META_CONTEXT {
            return self.reply(opt, REP_ERR_INVALID, b"structured replies first");
        }
        let queries = parse_queries(data).unwrap_or_default();
        let wants = queries.is_empty() && opt == OPT_LIST_META_CONTEXT
            || queries.iter().any(|q| q == ALLOCATION || q == "base:");
        if wants {
            let mut d = 1u32.to_be_bytes().to_vec();
            d.extend_from_slice(ALLOCATION.as_bytes());
            self.reply(opt, REP_META_CONTEXT, &d)?;
            if opt == OPT_SET_META_CONTEXT {
                self.allocation = Some(1);
            }
        }
        self.reply(opt, REP_ACK, &[])
    }

    fn reply(&mut self, opt: u32, kind: u32, data: &[u8]) -> io::Result<()> {
        self.wr.write_all(&OPT_REPLY_MAGIC.to_be_bytes())?;
        self.wr.write_all(&opt.to_be_bytes())?;
        self.wr.write_all(&kind.to_be_bytes())?;
        self.wr.write_all(&(data.len() as u32).to_be_bytes())?;
        self.wr.write_all(data)?;
        self.wr.flush()
    }

    fn transmission(&mut self) -> io::Result<()> {
        loop {
            if self.rd.be_u32()? != REQUEST_MAGIC {
                return Ok(());
            }
            let _flags = self.rd.be_u16()?;
            let cmd = self.rd.be_u16()?;
            let cookie = self.rd.be_u64()?;
            let offset = self.rd.be_u64()?;
            let len = self.rd.be_u32()?;
            let in_range = offset
                .checked_add(u64::from(len))
                .is_some_and(|e| e <= self.blocks.size());
            match cmd {
                CMD_DISC => return Ok(()),
                CMD_READ if !in_range || len > MAX_REQUEST => self.error(cookie, EINVAL)?,
                CMD_READ => self.read(cookie, offset, len)?,
                CMD_WRITE => {
                    io::copy(&mut (&mut self.rd).take(u64::from(len)), &mut io::sink())?;
                    self.error(cookie, EPERM)?;
                }
                CMD_FLUSH | CMD_CACHE => self.done(cookie)?,
                CMD_BLOCK_STATUS if in_range && self.allocation.is_some() => {
                    self.block_status(cookie, offset, len)?
                }
                _ => self.error(cookie, EINVAL)?,
            }
        }
    }

    fn read(&mut self, cookie: u64, offset: u64, len: u32) -> io::Result<()> {
        let mut buf = vec![0; len as usize];
        if let Err(e) = self.blocks.read(&self.dec, offset, &mut buf) {
            snap_cli::say(&format!("snap-disk: {e}"));
            return self.error(cookie, EIO);
        }
        match self.structured {
            true => {
                self.chunk_head(REPLY_FLAG_DONE, REPLY_OFFSET_DATA, cookie, 8 + len)?;
                self.wr.write_all(&offset.to_be_bytes())?;
            }
            false => self.simple(cookie, 0)?,
        }
        self.wr.write_all(&buf)?;
        self.wr.flush()
    }

    fn block_status(&mut self, cookie: u64, offset: u64, len: u32) -> io::Result<()> {
        let bs = self.blocks.header.block_size;
        let end = offset + u64::from(len);
        let mut descs: Vec<(u32, u32)> = Vec::new();
        let mut at = offset;
        while at < end && descs.len() < 1024 {
            let next = ((at / bs + 1) * bs).min(end);
            let flags = match self.blocks.is_zero_at(at) {
                true => STATE_HOLE | STATE_ZERO,
                false => 0,
            };
            let n = (next - at) as u32;
            match descs.last_mut() {
                Some(l) if l.1 == flags && l.0.checked_add(n).is_some() => l.0 += n,
                _ => descs.push((n, flags)),
            }
            at = next;
        }
        let id = self.allocation.unwrap_or(1);
        self.chunk_head(
            REPLY_FLAG_DONE,
            REPLY_BLOCK_STATUS,
            cookie,
            4 + 8 * descs.len() as u32,
        )?;
        self.wr.write_all(&id.to_be_bytes())?;
        for (n, f) in descs {
            self.wr.write_all(&n.to_be_bytes())?;
            self.wr.write_all(&f.to_be_bytes())?;
        }
        self.wr.flush()
    }

    fn done(&mut self, cookie: u64) -> io::Result<()> {
        match self.structured {
            true => self.chunk_head(REPLY_FLAG_DONE, REPLY_NONE, cookie, 0)?,
            false => self.simple(cookie, 0)?,
        }
        self.wr.flush()
    }

    fn error(&mut self, cookie: u64, errno: u32) -> io::Result<()> {
        match self.structured {
            true => {
                self.chunk_head(REPLY_FLAG_DONE, REPLY_ERROR, cookie, 6)?;
                self.wr.write_all(&errno.to_be_bytes())?;
                self.wr.write_all(&0u16.to_be_bytes())?;
            }
            false => self.simple(cookie, errno)?,
        }
        self.wr.flush()
    }

    fn simple(&mut self, cookie: u64, errno: u32) -> io::Result<()> {
        self.wr.write_all(&SIMPLE_REPLY_MAGIC.to_be_bytes())?;
        self.wr.write_all(&errno.to_be_bytes())?;
        self.wr.write_all(&cookie.to_be_bytes())
    }

    fn chunk_head(&mut self, flags: u16, kind: u16, cookie: u64, len: u32) -> io::Result<()> {
        self.wr.write_all(&STRUCTURED_REPLY_MAGIC.to_be_bytes())?;
        self.wr.write_all(&flags.to_be_bytes())?;
        self.wr.write_all(&kind.to_be_bytes())?;
        self.wr.write_all(&cookie.to_be_bytes())?;
        self.wr.write_all(&len.to_be_bytes())
    }
}

/// The queries of a meta context option: export name, then counted strings.
fn parse_queries(data: &[u8]) -> Option<Vec<String>> {
    let take_u32 = |d: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
    };
    let name_len = take_u32(data, 0)? as usize;
    let mut at = 4 + name_len;
    let n = take_u32(data, at)?;
    at += 4;
    let mut out = Vec::new();
    for _ in 0..n.min(64) {
        let l = take_u32(data, at)? as usize;
        at += 4;
        out.push(String::from_utf8_lossy(data.get(at..at + l)?).into_owned());
        at += l;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
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
        let keys = crate::cli::Keys { identities: vec![] };
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
