//! Errors and exit codes shared by every tool.
//!
//! docs/design.md fixes the exit codes (sysexits) and the message shape
//! `tool: context: cause`, with an optional hint line. Library code builds an
//! [`Error`] carrying its [`Exit`] code; only a tool's `main` prints it, once.

use std::fmt;
use std::io;
use std::path::Path;

/// Process exit codes, as docs/design.md lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Exit {
    /// Everything done.
    Ok = 0,
    /// Done, with errors (some files unreadable); the record says how many.
    Partial = 1,
    /// Bad flags or operands.
    Usage = 64,
    /// Bad record, corrupt archive or index, failed verification.
    Data = 65,
    /// An input (source, config named on the command line) does not exist.
    NoInput = 66,
    /// A destination is unreachable.
    Unavailable = 69,
    /// A bug in snap.
    Software = 70,
    /// Cannot create output (including: not enough free space to start).
    CantCreate = 73,
    /// I/O error, including a disk that filled up mid-write.
    Io = 74,
    /// Try again later: the store is locked, the media is absent.
    TempFail = 75,
    /// Permission denied.
    NoPerm = 77,
    /// Bad configuration.
    Config = 78,
    /// Interrupted by a signal.
    Interrupted = 130,
}

impl Exit {
    /// The numeric code handed to `std::process::exit`.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit a code means, for a tool that reads another's exit status;
    /// None for a code no snap tool gives.
    pub fn from_code(code: i32) -> Option<Exit> {
        use Exit::*;
        [
            Ok,
            Partial,
            Usage,
            Data,
            NoInput,
            Unavailable,
            Software,
            CantCreate,
            Io,
            TempFail,
            NoPerm,
            Config,
            Interrupted,
        ]
        .into_iter()
        .find(|e| e.code() == code)
    }
}

/// One error, printed as `tool: context: cause` plus an optional `hint:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub exit: Exit,
    pub context: String,
    pub cause: String,
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(exit: Exit, context: impl Into<String>, cause: impl fmt::Display) -> Self {
        Error {
            exit,
            context: context.into(),
            cause: cause.to_string(),
            hint: None,
        }
    }

    /// An I/O error about `path`; the exit code follows the error kind.
    pub fn io(path: &Path, err: io::Error) -> Self {
        Self::new(io_exit(&err), path.display().to_string(), io_cause(&err))
    }

    /// An I/O error with a context of the caller's words.
    pub fn io_ctx(context: impl Into<String>, err: io::Error) -> Self {
        Self::new(io_exit(&err), context, io_cause(&err))
    }

    pub fn usage(context: impl Into<String>, cause: impl fmt::Display) -> Self {
        Self::new(Exit::Usage, context, cause)
    }

    pub fn data(context: impl Into<String>, cause: impl fmt::Display) -> Self {
        Self::new(Exit::Data, context, cause)
    }

    pub fn config(context: impl Into<String>, cause: impl fmt::Display) -> Self {
        Self::new(Exit::Config, context, cause)
    }

    pub fn internal(context: impl Into<String>, cause: impl fmt::Display) -> Self {
        Self::new(Exit::Software, context, cause)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_exit(mut self, exit: Exit) -> Self {
        self.exit = exit;
        self
    }

    /// Prefixes the context, e.g. `set data: ` before a path.
    pub fn within(mut self, outer: impl fmt::Display) -> Self {
        self.context = if self.context.is_empty() {
            outer.to_string()
        } else {
            format!("{outer}: {}", self.context)
        };
        self
    }

    /// The lines `main` prints on stderr, without a trailing newline.
    pub fn render(&self, tool: &str) -> String {
        let mut s = format!("{tool}: {self}");
        if let Some(hint) = &self.hint {
            s.push_str(&format!("\n{tool}: hint: {hint}"));
        }
        s
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.context.is_empty() {
            write!(f, "{}", self.cause)
        } else {
            write!(f, "{}: {}", self.context, self.cause)
        }
    }
}

impl std::error::Error for Error {}

/// The exit code an I/O error maps to.
pub fn io_exit(err: &io::Error) -> Exit {
    match err.kind() {
        io::ErrorKind::NotFound => Exit::NoInput,
        io::ErrorKind::PermissionDenied => Exit::NoPerm,
        io::ErrorKind::Interrupted => Exit::Interrupted,
        _ => Exit::Io,
    }
}

/// The OS message without Rust's ` (os error N)` suffix, which users don't need.
pub fn io_cause(err: &io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// True when the error means the disk is full (ENOSPC or EDQUOT).
pub fn is_disk_full(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error()
            || code == rustix::io::Errno::DQUOT.raw_os_error()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendered message is `tool: context: cause` and the hint gets its own line.
    #[test]
    fn render_has_tool_context_cause_and_hint() {
        let e = Error::new(Exit::TempFail, "store /s", "locked by pid 7").with_hint("wait");
        assert_eq!(
            e.render("snap-collect"),
            "snap-collect: store /s: locked by pid 7\nsnap-collect: hint: wait"
        );
        assert_eq!(e.exit.code(), 75);
    }

    /// I/O errors map to sysexits codes and lose Rust's "(os error N)" noise.
    #[test]
    fn io_errors_map_to_exit_codes() {
        let nf = Error::io(Path::new("/x"), io::Error::from_raw_os_error(2));
        assert_eq!(nf.exit, Exit::NoInput);
        assert_eq!(nf.to_string(), "/x: No such file or directory");
        let perm = Error::io(Path::new("/y"), io::Error::from_raw_os_error(13));
        assert_eq!(perm.exit, Exit::NoPerm);
        assert!(is_disk_full(&io::Error::from_raw_os_error(28)));
    }
}
