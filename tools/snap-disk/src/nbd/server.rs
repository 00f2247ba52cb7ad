//! The NBD server `snap-disk serve` runs: a read-only export on a unix
//! socket, with the fixed-newstyle handshake (NBD_OPT_GO and the old
//! NBD_OPT_EXPORT_NAME), structured replies, and the `base:allocation`
//! context, so that clients skip zero blocks. Writes are refused. What is
//! served is any [`Export`]; a thread serves each client.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};

use super::wire::*;

/// What a server exports: a disk of `size()` bytes read in blocks.
pub trait Export: Send + Sync {
    fn size(&self) -> u64;
    fn block_size(&self) -> u64;
    /// Fills `buf` from `offset`, decrypting with `dec` where blocks are encrypted.
    fn read(&self, dec: &Decrypt, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Whether the block holding `offset` is all zeros (a hole).
    fn is_zero_at(&self, offset: u64) -> bool;
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
    blocks: Arc<dyn Export>,
    export: String,
    dec: Decrypt,
    structured: bool,
    /// The id given to `base:allocation`, once negotiated.
    allocation: Option<u32>,
}

/// What every export offers: read-only, flush, several connections at once.
const TFLAGS: u16 = TFLAG_HAS_FLAGS | TFLAG_READ_ONLY | TFLAG_SEND_FLUSH | TFLAG_CAN_MULTI_CONN;

/// The largest read served in one request.
const MAX_REQUEST: u32 = 32 << 20;

impl Conn {
    fn new(
        s: UnixStream,
        blocks: Arc<dyn Export>,
        export: String,
        dec: Decrypt,
    ) -> io::Result<Conn> {
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
        let bs = self.blocks.block_size();
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

/// Keys for a connection: each thread reads the identities for itself
/// (age's are not `Send`).
pub type Keys = Arc<dyn Fn() -> Result<Decrypt> + Send + Sync>;

/// Serves `export` as `name` on `listener` until the process is stopped; a
/// thread per client, each with the keys `keys` gives it.
pub fn serve(
    export: Arc<dyn Export>,
    listener: UnixListener,
    name: String,
    keys: Keys,
) -> Result<()> {
    keys()?;
    for conn in listener.incoming() {
        let conn = conn.map_err(|e| Error::io_ctx("accepting an NBD client", e))?;
        let (export, name, keys) = (export.clone(), name.clone(), keys.clone());
        std::thread::spawn(move || {
            let Ok(dec) = keys() else { return };
            if let Err(e) = Conn::new(conn, export, name, dec).and_then(|c| c.run()) {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    snap_cli::say(&format!("snap-disk: NBD client: {e}"));
                }
            }
        });
    }
    Ok(())
}
