//! Reading and writing the JSON Lines pipe between tools.
//!
//! The reader names the line of a bad record (exit 65) and hands records of
//! kinds it does not know back as their original text, so a tool passes them
//! through unchanged. The writer flushes each record so a downstream tool sees
//! it at once, and treats a closed stdout (`| head`) as the end, not an error.

use std::io::{self, BufRead, Write};

use serde_json::Value;

use crate::error::{Error, Exit, Result};
use crate::record::{KNOWN_KINDS, Record, check_schema};

/// One line of input.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A record of a kind this version knows.
    Record(Box<Record>),
    /// A record of another kind, as it was read (without its newline).
    Other { kind: String, line: String },
}

/// Reads records, one per line; blank lines are skipped.
pub struct RecordReader<R> {
    input: R,
    name: String,
    line_no: u64,
    buf: String,
}

impl<R: BufRead> RecordReader<R> {
    /// `name` is what errors call the input, e.g. `stdin`.
    pub fn new(input: R, name: impl Into<String>) -> Self {
        RecordReader {
            input,
            name: name.into(),
            line_no: 0,
            buf: String::new(),
        }
    }

    fn parse(&self, line: &str) -> Result<Item> {
        let at = || format!("{} line {}", self.name, self.line_no);
        let value: Value = serde_json::from_str(line)
            .map_err(|e| Error::data(at(), format!("not a JSON record: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::data(at(), "a record must be a JSON object"))?;
        let schema = obj
            .get("schema")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::data(at(), "record has no \"schema\" string"))?;
        check_schema(schema).map_err(|e| Error::data(at(), e))?;
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::data(at(), "record has no \"kind\" string"))?;
        if !KNOWN_KINDS.contains(&kind) {
            return Ok(Item::Other {
                kind: kind.to_string(),
                line: line.to_string(),
            });
        }
        let record = serde_json::from_value(value.clone())
            .map_err(|e| Error::data(at(), format!("bad {kind} record: {e}")))?;
        Ok(Item::Record(Box::new(record)))
    }
}

impl<R: BufRead> Iterator for RecordReader<R> {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line_no += 1;
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    let at = format!("{} line {}", self.name, self.line_no);
                    let exit = if e.kind() == io::ErrorKind::InvalidData {
                        Exit::Data
                    } else {
                        Exit::Io
                    };
                    return Some(Err(Error::io_ctx(at, e).with_exit(exit)));
                }
            }
            let line = self.buf.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            return Some(self.parse(line));
        }
    }
}

/// Reads every record of `input` before anything is acted on (a bad line
/// anywhere is the error, with nothing done): the records `pick` takes become
/// `T`; every other line (other kinds, unknown kinds) goes through `pass`.
pub fn read_picking<T>(
    input: impl BufRead,
    name: &str,
    mut pick: impl FnMut(Box<Record>) -> std::result::Result<T, Box<Record>>,
    mut pass: impl FnMut(Item) -> T,
) -> Result<Vec<T>> {
    RecordReader::new(input, name)
        .map(|item| {
            Ok(match item? {
                Item::Record(rec) => pick(rec).unwrap_or_else(|other| pass(Item::Record(other))),
                other => pass(other),
            })
        })
        .collect()
}

/// Writes records, one per line, flushing each.
pub struct RecordWriter<W> {
    out: W,
    closed: bool,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W) -> Self {
        RecordWriter { out, closed: false }
    }

    /// What it wrote to (records kept in memory, for a caller of a tool's library).
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Writes one record. A reader that went away ends the output quietly.
    pub fn write(&mut self, record: &Record) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::internal("serializing a record", e))?;
        self.write_line(&line)
    }

    /// Writes a line verbatim: how unknown records pass through.
    pub fn write_line(&mut self, line: &str) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let res = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .and_then(|()| self.out.flush());
        match res {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Error::io_ctx("stdout", e).with_exit(Exit::Io)),
        }
    }

    /// True once the reader has gone away.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: &str = r#"{"schema":"snap/1","kind":"snapshot","set":"d","id":"2026-11-22T101500Z","host":"h","created":"2026-11-22T10:15:00Z","store":"/s","path":"/s/sets/d/x","index":"/s/sets/d/x.index.zst","parent":null,"sources":["/d"],"files":1,"bytes":2,"new_files":1,"new_bytes":2,"errors":0}"#;

    fn read_all(input: &str) -> Vec<Result<Item>> {
        RecordReader::new(input.as_bytes(), "stdin").collect()
    }

    /// Known kinds parse; unknown kinds come back as their original line.
    #[test]
    fn known_and_unknown_kinds() {
        let other = r#"{"schema":"snap/1","kind":"telemetry","x":1}"#;
        let items = read_all(&format!("{SNAP}\n\n{other}\n"));
        assert_eq!(items.len(), 2);
        match &items[0] {
            Ok(Item::Record(rec)) => match rec.as_ref() {
                Record::Snapshot(s) => assert_eq!(s.set, "d"),
                other => panic!("not a snapshot: {other:?}"),
            },
            other => panic!("not a record: {other:?}"),
        }
        assert_eq!(
            items[1].as_ref().unwrap(),
            &Item::Other {
                kind: "telemetry".into(),
                line: other.into()
            }
        );
    }

    /// A malformed line is a data error that names its line number.
    #[test]
    fn bad_line_is_named() {
        let items = read_all(&format!("{SNAP}\n{{not json\n"));
        let err = items[1].as_ref().unwrap_err();
        assert_eq!(err.exit, Exit::Data);
        assert!(err.context == "stdin line 2", "{err}");
    }

    /// Another schema major version is refused with exit 65.
    #[test]
    fn other_schema_major_is_refused() {
        let items = read_all(r#"{"schema":"snap/2","kind":"snapshot"}"#);
        let err = items[0].as_ref().unwrap_err();
        assert_eq!(err.exit, Exit::Data);
        assert!(err.cause.contains("major version 2"), "{err}");
    }

    /// A known kind missing a required field is a data error, not a pass-through.
    #[test]
    fn known_kind_with_missing_field_is_refused() {
        let items = read_all(r#"{"schema":"snap/1","kind":"archive","set":"d"}"#);
        let err = items[0].as_ref().unwrap_err();
        assert!(
            err.cause.starts_with("bad archive record: missing field"),
            "{err}"
        );
    }

    /// The writer emits one line per record and its output reads back.
    #[test]
    fn writer_output_reads_back() {
        let Item::Record(rec) = read_all(SNAP).remove(0).unwrap() else {
            panic!("not a record")
        };
        let mut out = Vec::new();
        let mut w = RecordWriter::new(&mut out);
        w.write(rec.as_ref()).unwrap();
        w.write_line(r#"{"schema":"snap/1","kind":"x"}"#).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2);
        let back = read_all(&text);
        assert_eq!(back[0].as_ref().unwrap(), &Item::Record(rec));
    }

    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A closed stdout ends the output without an error.
    #[test]
    fn closed_pipe_is_not_an_error() {
        let mut w = RecordWriter::new(ClosedPipe);
        assert!(w.write_line("{}").is_ok());
        assert!(w.is_closed());
    }
}
