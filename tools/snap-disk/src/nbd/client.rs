//! The NBD client that reads a VM's disk through QEMU's NBD server.
//!
//! No pure-Rust NBD client on crates.io speaks what QEMU's backup exports
//! need (structured replies and metadata contexts: `base:allocation` for
//! holes, `qemu:dirty-bitmap:NAME` for changed blocks); libnbd's Rust
//! bindings are not published there and Debian 12's libnbd predates them. So
//! this is the subset of the protocol (proto.md, fixed newstyle) a reader
//! needs: one request in flight at a time, over a unix socket.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::wire::*;

/// A connection to one export.
pub struct Client {
    rd: BufReader<UnixStream>,
    wr: BufWriter<UnixStream>,
    size: u64,
    flags: u16,
    contexts: HashMap<String, u32>,
    cookie: u64,
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Client {
    /// Connects to `export` on the server at `socket`, asking for the
    /// metadata contexts `meta`; a context the server lacks is an error.
    pub fn connect(socket: &Path, export: &str, meta: &[String]) -> io::Result<Client> {
        let sock = UnixStream::connect(socket)?;
        // A server that stops answering must not hang a snapshot forever.
        sock.set_read_timeout(Some(Duration::from_secs(300)))?;
        let mut c = Client {
            rd: BufReader::with_capacity(1 << 20, sock.try_clone()?),
            wr: BufWriter::new(sock),
            size: 0,
            flags: 0,
            contexts: HashMap::new(),
            cookie: 0,
        };
        c.handshake(export, meta)?;
        Ok(c)
    }

    /// The export's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the server allows several connections to one export to be used together.
    pub fn multi_conn(&self) -> bool {
        self.flags & TFLAG_CAN_MULTI_CONN != 0
    }

    fn handshake(&mut self, export: &str, meta: &[String]) -> io::Result<()> {
        if self.rd.be_u64()? != NBDMAGIC || self.rd.be_u64()? != IHAVEOPT {
            return Err(bad("not an NBD server (or an old-style one)"));
        }
        let server_flags = self.rd.be_u16()?;
        if server_flags & FLAG_FIXED_NEWSTYLE == 0 {
            return Err(bad("the NBD server does not speak fixed newstyle"));
        }
        let client_flags = u32::from(FLAG_FIXED_NEWSTYLE | (server_flags & FLAG_NO_ZEROES));
        self.wr.write_all(&client_flags.to_be_bytes())?;
        self.option(OPT_STRUCTURED_REPLY, &[])?;
        self.expect_ack(OPT_STRUCTURED_REPLY, "structured replies")?;
        if !meta.is_empty() {
            self.set_meta(export, meta)?;
        }
        self.go(export)
    }

    fn option(&mut self, opt: u32, data: &[u8]) -> io::Result<()> {
        self.wr.write_all(&IHAVEOPT.to_be_bytes())?;
        self.wr.write_all(&opt.to_be_bytes())?;
        self.wr.write_all(&(data.len() as u32).to_be_bytes())?;
        self.wr.write_all(data)?;
        self.wr.flush()
    }

    /// One option reply: its type and data.
    fn reply(&mut self, opt: u32) -> io::Result<(u32, Vec<u8>)> {
        if self.rd.be_u64()? != OPT_REPLY_MAGIC {
            return Err(bad("bad option reply magic"));
        }
        if self.rd.be_u32()? != opt {
            return Err(bad("an option reply for another option"));
        }
        let kind = self.rd.be_u32()?;
        let len = self.rd.be_u32()? as usize;
        if len > 1 << 20 {
            return Err(bad("an option reply over 1 MiB"));
        }
        let mut data = vec![0; len];
        self.rd.read_exact(&mut data)?;
        if kind & (1 << 31) != 0 {
            let msg = String::from_utf8_lossy(&data);
            return Err(bad(format!(
                "the NBD server refused: {}",
                rep_error(kind, &msg)
            )));
        }
        Ok((kind, data))
    }

    fn expect_ack(&mut self, opt: u32, what: &str) -> io::Result<()> {
        match self.reply(opt)? {
            (REP_ACK, _) => Ok(()),
            (k, _) => Err(bad(format!("unexpected reply {k} to {what}"))),
        }
    }

    fn set_meta(&mut self, export: &str, meta: &[String]) -> io::Result<()> {
        let mut data = Vec::new();
        put_str32(&mut data, export);
        data.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        for m in meta {
            put_str32(&mut data, m);
        }
        self.option(OPT_SET_META_CONTEXT, &data)?;
        loop {
            match self.reply(OPT_SET_META_CONTEXT)? {
                (REP_ACK, _) => break,
                (REP_META_CONTEXT, d) if d.len() >= 4 => {
                    let id = u32::from_be_bytes(d[..4].try_into().unwrap());
                    let name = String::from_utf8_lossy(&d[4..]).into_owned();
                    self.contexts.insert(name, id);
                }
                (k, _) => return Err(bad(format!("unexpected reply {k} to meta contexts"))),
            }
        }
        match meta.iter().find(|m| !self.contexts.contains_key(*m)) {
            Some(m) => Err(bad(format!("the export has no metadata context {m}"))),
            None => Ok(()),
        }
    }

    fn go(&mut self, export: &str) -> io::Result<()> {
        let mut data = Vec::new();
        put_str32(&mut data, export);
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&INFO_EXPORT.to_be_bytes());
        self.option(OPT_GO, &data)?;
        let mut got_size = false;
        loop {
            match self.reply(OPT_GO)? {
                (REP_ACK, _) => break,
                (REP_INFO, d) if d.len() >= 12 && d[..2] == INFO_EXPORT.to_be_bytes() => {
                    self.size = u64::from_be_bytes(d[2..10].try_into().unwrap());
                    self.flags = u16::from_be_bytes(d[10..12].try_into().unwrap());
                    got_size = true;
                }
                (REP_INFO, _) => {}
                (k, _) => return Err(bad(format!("unexpected reply {k} to NBD_OPT_GO"))),
            }
        }
        match got_size {
            true => Ok(()),
            false => Err(bad("the NBD server did not tell the export's size")),
        }
    }

    fn request(&mut self, cmd: u16, flags: u16, offset: u64, len: u32) -> io::Result<u64> {
        self.cookie += 1;
        let mut b = [0u8; 28];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&flags.to_be_bytes());
        b[6..8].copy_from_slice(&cmd.to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&offset.to_be_bytes());
        b[24..28].copy_from_slice(&len.to_be_bytes());
        self.wr.write_all(&b)?;
        self.wr.flush()?;
        Ok(self.cookie)
    }

    /// Reads `buf.len()` bytes at `offset`; holes the server reports read as zeros.
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.size)
        {
            return Err(bad(format!("a read past the export's end ({})", self.size)));
        }
        for (i, chunk) in buf.chunks_mut(MAX_READ).enumerate() {
            self.read_chunk(offset + (i * MAX_READ) as u64, chunk)?;
        }
        Ok(())
    }

    fn read_chunk(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let cookie = self.request(CMD_READ, 0, offset, buf.len() as u32)?;
        let mut error = None;
        loop {
            let chunk = self.chunk(cookie)?;
            match chunk.kind {
                REPLY_OFFSET_DATA => {
                    let at = self.rd.be_u64()?;
                    let n = chunk
                        .len
                        .checked_sub(8)
                        .ok_or_else(|| bad("short data chunk"))?;
                    let start = at.checked_sub(offset).map(|s| s as usize);
                    match start.filter(|s| s + n as usize <= buf.len()) {
                        Some(s) => self.rd.read_exact(&mut buf[s..s + n as usize])?,
                        None => return Err(bad("a data chunk outside the read")),
                    }
                }
                REPLY_OFFSET_HOLE => {
                    let at = self.rd.be_u64()?;
                    let n = self.rd.be_u32()? as usize;
                    let start = at.checked_sub(offset).map(|s| s as usize);
                    match start.filter(|s| s + n <= buf.len()) {
                        Some(s) => buf[s..s + n].fill(0),
                        None => return Err(bad("a hole chunk outside the read")),
                    }
                }
                REPLY_NONE => {}
                REPLY_ERROR | REPLY_ERROR_OFFSET => error = Some(self.error_chunk(chunk.len)?),
                SIMPLE_OK => return Err(bad("a simple reply where a structured one was agreed")),
                k => {
                    self.skip(chunk.len)?;
                    return Err(bad(format!("unexpected reply chunk {k} to a read")));
                }
            }
            if chunk.done {
                return error.map_or(Ok(()), Err);
            }
        }
    }

    /// The extents of `context` from `offset`, at most `len` bytes; the
    /// server may answer for less (at least one extent).
    pub fn block_status(
        &mut self,
        context: &str,
        offset: u64,
        len: u64,
    ) -> io::Result<Vec<Extent>> {
        let id = *self
            .contexts
            .get(context)
            .ok_or_else(|| bad(format!("metadata context {context} was not negotiated")))?;
        let len = len.min(u64::from(u32::MAX) & !0xfffff) as u32;
        let cookie = self.request(CMD_BLOCK_STATUS, 0, offset, len)?;
        let mut out = Vec::new();
        let mut error = None;
        loop {
            let chunk = self.chunk(cookie)?;
            match chunk.kind {
                REPLY_BLOCK_STATUS if chunk.len >= 4 && (chunk.len - 4) % 8 == 0 => {
                    let ctx = self.rd.be_u32()?;
                    let mut at = offset;
                    for _ in 0..(chunk.len - 4) / 8 {
                        let n = u64::from(self.rd.be_u32()?);
                        let flags = self.rd.be_u32()?;
                        if ctx == id {
                            out.push(Extent {
                                offset: at,
                                len: n,
                                flags,
                            });
                        }
                        at += n;
                    }
                }
                REPLY_NONE => {}
                REPLY_ERROR | REPLY_ERROR_OFFSET => error = Some(self.error_chunk(chunk.len)?),
                k => {
                    self.skip(chunk.len)?;
                    return Err(bad(format!("unexpected reply chunk {k} to block status")));
                }
            }
            if chunk.done {
                break;
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        match out.iter().any(|e| e.len > 0) {
            true => Ok(out),
            false => Err(bad("an empty block status reply")),
        }
    }

    /// Every extent of `context` over the whole export, in order.
    pub fn all_extents(&mut self, context: &str) -> io::Result<Vec<Extent>> {
        let mut out: Vec<Extent> = Vec::new();
        let mut at = 0;
        while at < self.size {
            for e in self.block_status(context, at, self.size - at)? {
                let len = e.len.min(self.size - at);
                match out.last_mut() {
                    Some(l) if l.flags == e.flags => l.len += len,
                    _ => out.push(Extent {
                        offset: at,
                        len,
                        flags: e.flags,
                    }),
                }
                at += len;
                if at >= self.size {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn chunk(&mut self, cookie: u64) -> io::Result<Chunk> {
        match self.rd.be_u32()? {
            STRUCTURED_REPLY_MAGIC => {}
            // A server may answer a request that returns no data (a write,
            // a flush) with a simple reply even when structured ones were
            // agreed; one that carries data never does.
            SIMPLE_REPLY_MAGIC => {
                let err = self.rd.be_u32()?;
                if self.rd.be_u64()? != cookie {
                    return Err(bad("a reply to a request never sent"));
                }
                return match err {
                    0 => Ok(Chunk {
                        done: true,
                        kind: SIMPLE_OK,
                        len: 0,
                    }),
                    e => Err(io::Error::from_raw_os_error(e as i32)),
                };
            }
            _ => return Err(bad("bad reply magic")),
        }
        let flags = self.rd.be_u16()?;
        let kind = self.rd.be_u16()?;
        if self.rd.be_u64()? != cookie {
            return Err(bad("a reply to a request never sent"));
        }
        let len = self.rd.be_u32()?;
        Ok(Chunk {
            done: flags & REPLY_FLAG_DONE != 0,
            kind,
            len,
        })
    }

    /// Writes `data` at `offset` (the export must be writable).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.writable(offset, data.len() as u64)?;
        for (i, chunk) in data.chunks(MAX_READ).enumerate() {
            let at = offset + (i * MAX_READ) as u64;
            let cookie = self.request(CMD_WRITE, 0, at, chunk.len() as u32)?;
            self.wr.write_all(chunk)?;
            self.wr.flush()?;
            self.completion(cookie)?;
        }
        Ok(())
    }

    /// Makes `len` bytes at `offset` read as zeros: a hole where the format
    /// can punch one, unless `keep_allocated`; written zeros when the server
    /// cannot write zeroes by itself.
    pub fn write_zeroes(&mut self, offset: u64, len: u64, keep_allocated: bool) -> io::Result<()> {
        self.writable(offset, len)?;
        if self.flags & TFLAG_SEND_WRITE_ZEROES == 0 {
            let zeros = vec![0u8; len.min(MAX_READ as u64) as usize];
            let mut at = offset;
            while at < offset + len {
                let n = (offset + len - at).min(zeros.len() as u64) as usize;
                self.write(at, &zeros[..n])?;
                at += n as u64;
            }
            return Ok(());
        }
        let flags = if keep_allocated { CMD_FLAG_NO_HOLE } else { 0 };
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(MAX_READ as u64) as u32;
            let cookie = self.request(CMD_WRITE_ZEROES, flags, at, n)?;
            self.completion(cookie)?;
            at += u64::from(n);
        }
        Ok(())
    }

    /// Asks the server to make every write so far durable.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.flags & TFLAG_SEND_FLUSH == 0 {
            return Ok(());
        }
        let cookie = self.request(CMD_FLUSH, 0, 0, 0)?;
        self.completion(cookie)
    }

    /// Refuses a write to a read-only export or past its end.
    fn writable(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.flags & TFLAG_READ_ONLY != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the NBD export is read-only",
            ));
        }
        match offset.checked_add(len).is_some_and(|end| end <= self.size) {
            true => Ok(()),
            false => Err(bad(format!(
                "a write past the export's end ({})",
                self.size
            ))),
        }
    }

    /// Waits for the reply to a request that returns no data.
    fn completion(&mut self, cookie: u64) -> io::Result<()> {
        let mut error = None;
        loop {
            let chunk = self.chunk(cookie)?;
            match chunk.kind {
                REPLY_NONE | SIMPLE_OK => {}
                REPLY_ERROR | REPLY_ERROR_OFFSET => error = Some(self.error_chunk(chunk.len)?),
                k => {
                    self.skip(chunk.len)?;
                    return Err(bad(format!("unexpected reply chunk {k} to a write")));
                }
            }
            if chunk.done {
                return error.map_or(Ok(()), Err);
            }
        }
    }

    fn error_chunk(&mut self, len: u32) -> io::Result<io::Error> {
        let mut d = vec![0; len as usize];
        self.rd.read_exact(&mut d)?;
        if d.len() < 6 {
            return Err(bad("short error chunk"));
        }
        let errno = u32::from_be_bytes(d[..4].try_into().unwrap());
        let mlen = u16::from_be_bytes(d[4..6].try_into().unwrap()) as usize;
        let msg = String::from_utf8_lossy(d.get(6..6 + mlen).unwrap_or_default());
        let base = io::Error::from_raw_os_error(errno as i32);
        Ok(match msg.is_empty() {
            true => base,
            false => io::Error::new(base.kind(), format!("{base} ({msg})")),
        })
    }

    fn skip(&mut self, len: u32) -> io::Result<()> {
        io::copy(&mut (&mut self.rd).take(u64::from(len)), &mut io::sink()).map(|_| ())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // A polite goodbye; the server copes without it.
        let _ = self.request(CMD_DISC, 0, 0, 0);
    }
}

struct Chunk {
    done: bool,
    kind: u16,
    len: u32,
}

fn put_str32(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn rep_error(kind: u32, msg: &str) -> String {
    let name = match kind {
        REP_ERR_UNSUP => "unsupported option",
        REP_ERR_INVALID => "invalid request",
        REP_ERR_UNKNOWN => "no such export",
        _ => "error",
    };
    match msg.is_empty() {
        true => name.to_string(),
        false => format!("{name}: {msg}"),
    }
}

/// The kind [`Client`] gives a simple reply of success (no chunk has it).
const SIMPLE_OK: u16 = u16::MAX;

/// The largest read one request asks for (QEMU's server refuses more than 32 MiB).
const MAX_READ: usize = 16 << 20;
