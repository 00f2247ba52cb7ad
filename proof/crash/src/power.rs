//! Power loss: what a run leaves on disk when the power goes, not only the
//! process.
//!
//! A kill keeps everything that reached the page cache; a power cut keeps
//! only what was made durable. While a run is traced, [`Recorder`] copies
//! what each flush makes durable, at the moment the flush is asked for (the
//! process is stopped, so the copy is what the flush will write): the bytes
//! and metadata of a file for `fsync`/`fdatasync` of it, the entries of a
//! folder for `fsync` of it, every folder and file under the world for
//! `syncfs` and `sync`. Files and folders are known by identity (device,
//! inode, birth time), so an inode number the run frees and reuses is a new
//! file, not the old one.
//!
//! From the state before the run (durable as a whole) and those copies,
//! [`lay`] builds the two states a power cut at that point can leave:
//! - [`Loss::Strict`]: every folder holds the entries of its own last flush
//!   (names made, renamed or removed since are undone, each folder on its
//!   own, as on a filesystem without a journal), every file the bytes of its
//!   last flush; a file never flushed is empty;
//! - [`Loss::NamesKept`]: the names as the kill left them (a journal
//!   committed them), every file with the bytes of its last flush: the
//!   empty file under a new name after a rename that no fsync preceded.
//!
//! Writes through `O_SYNC`/`O_DSYNC` descriptors are durable as they
//! return; the recorder does not model them and fails the point if one
//! writes under the world, rather than judge a state no disk could hold.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::trace::{Stop, Verdict};

/// A file or folder, as the filesystem knows it through renames.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Id {
    dev: u64,
    ino: u64,
    /// Birth time in ns (0 where the filesystem keeps none): tells a reused inode number.
    born: i128,
}

impl Id {
    fn of(m: &fs::Metadata) -> Id {
        let born = m
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Id {
            dev: m.dev(),
            ino: m.ino(),
            born,
        }
    }
}

/// What a state keeps of an entry's inode: mode, owner, mtime.
#[derive(Clone, Debug)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: std::time::SystemTime,
}

impl Meta {
    fn of(m: &fs::Metadata) -> Meta {
        Meta {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.modified().unwrap_or(std::time::UNIX_EPOCH),
        }
    }
}

#[derive(Clone, Debug)]
enum Kind {
    Dir,
    File,
    Link(PathBuf),
    Fifo,
    /// Sockets and devices: a state keeps them out (no scenario makes one).
    Other,
}

#[derive(Clone, Debug)]
struct Entry {
    id: Id,
    kind: Kind,
    meta: Meta,
}

type Listing = BTreeMap<OsString, Entry>;

/// Where a file's durable bytes are kept, and its metadata when they were.
#[derive(Clone, Debug)]
struct Bytes {
    from: PathBuf,
    meta: Meta,
}

/// Folders' entries and files' bytes, by identity, and the top folder.
#[derive(Default)]
pub struct Image {
    root: Option<Id>,
    dirs: HashMap<Id, Listing>,
    files: HashMap<Id, Bytes>,
}

fn err(p: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", p.display())
}

fn entry(path: &Path) -> Result<Entry, String> {
    let m = fs::symlink_metadata(path).map_err(err(path))?;
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Link(fs::read_link(path).map_err(err(path))?)
    } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
        Kind::Fifo
    } else {
        Kind::Other
    };
    Ok(Entry {
        id: Id::of(&m),
        kind,
        meta: Meta::of(&m),
    })
}

fn listing(dir: &Path) -> Result<Listing, String> {
    let mut out = Listing::new();
    for e in fs::read_dir(dir).map_err(err(dir))? {
        let e = e.map_err(err(dir))?;
        out.insert(e.file_name(), entry(&e.path())?);
    }
    Ok(out)
}

impl Image {
    /// Every folder and file under `root`; `keep` says where a file's bytes
    /// are kept (or `None`: the image holds names only).
    fn scan(root: &Path, keep: &mut dyn FnMut(&Path) -> Kept) -> Result<Image, String> {
        let top = entry(root)?;
        let mut image = Image {
            root: Some(top.id),
            ..Image::default()
        };
        let mut stack = vec![(root.to_path_buf(), top.id)];
        while let Some((dir, id)) = stack.pop() {
            let list = listing(&dir)?;
            for (name, e) in &list {
                let path = dir.join(name);
                match e.kind {
                    Kind::Dir => stack.push((path, e.id)),
                    Kind::File if !image.files.contains_key(&e.id) => {
                        if let Some(from) = keep(&path)? {
                            let meta = e.meta.clone();
                            image.files.insert(e.id, Bytes { from, meta });
                        }
                    }
                    _ => {}
                }
            }
            image.dirs.insert(id, list);
        }
        Ok(image)
    }

    /// The state before a run: `work`, whose bytes stay as they are in
    /// `template` (`cp -a` keeps sizes and mtimes), but for files laid since
    /// (a scenario's state for this point), which are copied to `copies`.
    pub fn before(work: &Path, template: &Path, copies: &Path) -> Result<Image, String> {
        let mut copies = Copies::new(copies)?;
        Image::scan(work, &mut |path| {
            let kept = template.join(path.strip_prefix(work).unwrap());
            match same_file(&kept, path) {
                true => Ok(Some(kept)),
                false => copies.keep(path).map(Some),
            }
        })
    }

    /// Only the folders' entries of `root`, as a kill left them.
    fn names(root: &Path) -> Result<Image, String> {
        Image::scan(root, &mut |_| Ok(None))
    }
}

/// Whether `kept` is a copy of `file` as `cp -a` made it: same size and mtime.
fn same_file(kept: &Path, file: &Path) -> bool {
    match (fs::symlink_metadata(kept), fs::symlink_metadata(file)) {
        (Ok(a), Ok(b)) => {
            a.is_file() && a.len() == b.len() && a.modified().ok() == b.modified().ok()
        }
        _ => false,
    }
}

/// Where [`Image::scan`] keeps a file's bytes, if it keeps them.
type Kept = Result<Option<PathBuf>, String>;

/// Copies of flushed bytes, numbered in a folder of their own (made empty).
struct Copies {
    dir: PathBuf,
    n: u64,
}

impl Copies {
    fn new(dir: &Path) -> Result<Copies, String> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).map_err(err(dir))?;
        Ok(Copies {
            dir: dir.to_path_buf(),
            n: 0,
        })
    }

    fn keep(&mut self, file: &Path) -> Result<PathBuf, String> {
        self.n += 1;
        let to = self.dir.join(self.n.to_string());
        fs::copy(file, &to).map_err(err(file))?;
        Ok(to)
    }
}

/// Follows a traced run and keeps what each of its flushes made durable.
pub struct Recorder {
    root: PathBuf,
    copies: Copies,
    /// The durable image: the state before the run, with every flush laid over it.
    durable: Image,
    /// The first thing that could not be recorded: the point fails with it.
    pub error: Option<String>,
}

const O_DSYNC: u32 = 0o10000;

impl Recorder {
    /// A recorder for a run on `root`, whose state before the run is
    /// `before`; copies of flushed bytes go to `copies` (made empty).
    pub fn new(root: &Path, before: Image, copies: &Path) -> Result<Recorder, String> {
        Ok(Recorder {
            root: root.to_path_buf(),
            copies: Copies::new(copies)?,
            durable: before,
            error: None,
        })
    }

    /// Called at every point of the run, before its syscall runs (which it always lets run).
    pub fn observe(&mut self, stop: &Stop) -> Verdict {
        if self.error.is_none() {
            self.record(stop);
        }
        None
    }

    fn record(&mut self, stop: &Stop) {
        let fd = stop.args[0] as i32;
        let done = match stop.syscall {
            "fsync" | "fdatasync" => self.flush_fd(stop.pid, fd),
            "syncfs" | "sync" => self.flush_all(),
            "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" => {
                self.refuse_sync_write(stop.pid, fd)
            }
            _ => Ok(()),
        };
        if let Err(e) = done {
            self.error = Some(format!("{}: {e}", stop.syscall));
        }
    }

    /// The path of a traced process's descriptor, when it is under the world.
    fn under_root(&self, pid: i32, fd: i32) -> Option<PathBuf> {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
        target.starts_with(&self.root).then_some(target)
    }

    fn flush_fd(&mut self, pid: i32, fd: i32) -> Result<(), String> {
        if self.under_root(pid, fd).is_none() {
            return Ok(());
        }
        let link = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
        let m = fs::metadata(&link).map_err(err(&link))?;
        if m.is_dir() {
            self.durable.dirs.insert(Id::of(&m), listing(&link)?);
        } else if m.is_file() && m.nlink() > 0 {
            let from = self.copies.keep(&link)?;
            let meta = Meta::of(&m);
            self.durable.files.insert(Id::of(&m), Bytes { from, meta });
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), String> {
        let copies = &mut self.copies;
        let now = Image::scan(&self.root, &mut |path| copies.keep(path).map(Some))?;
        self.durable.dirs.extend(now.dirs);
        self.durable.files.extend(now.files);
        Ok(())
    }

    fn refuse_sync_write(&mut self, pid: i32, fd: i32) -> Result<(), String> {
        let Some(path) = self.under_root(pid, fd) else {
            return Ok(());
        };
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap_or(0);
        match flags & O_DSYNC {
            0 => Ok(()),
            _ => Err(format!(
                "{} is written with O_SYNC/O_DSYNC, which this model does not follow",
                path.display()
            )),
        }
    }
}

/// The two states a power cut can leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    Strict,
    NamesKept,
}

impl Loss {
    pub const ALL: [Loss; 2] = [Loss::NamesKept, Loss::Strict];

    pub fn name(self) -> &'static str {
        match self {
            Loss::Strict => "unflushed names and bytes lost",
            Loss::NamesKept => "names kept, unflushed bytes lost",
        }
    }
}

/// Lays at `to` what a power cut leaves: `killed` is the folder as the kill
/// left it (its names, for [`Loss::NamesKept`]).
pub fn lay(rec: &Recorder, loss: Loss, killed: &Path, to: &Path) -> Result<(), String> {
    let names;
    let (root, dirs) = match loss {
        Loss::Strict => (rec.durable.root, &rec.durable.dirs),
        Loss::NamesKept => {
            names = Image::names(killed)?;
            (names.root, &names.dirs)
        }
    };
    let root = root.ok_or("no top folder")?;
    let mut layer = Layer {
        dirs,
        files: &rec.durable.files,
        laid: HashMap::new(),
        above: Vec::new(),
    };
    fs::create_dir_all(to).map_err(err(to))?;
    layer.fill(root, to)
}

/// Lays folders and files from an image's parts.
struct Layer<'a> {
    dirs: &'a HashMap<Id, Listing>,
    files: &'a HashMap<Id, Bytes>,
    /// Files laid already, so a second name is a hard link.
    laid: HashMap<Id, PathBuf>,
    /// The folders being filled: a folder under itself is left out.
    above: Vec<Id>,
}

impl Layer<'_> {
    fn fill(&mut self, dir: Id, path: &Path) -> Result<(), String> {
        self.above.push(dir);
        let empty = Listing::new();
        let list = self.dirs.get(&dir).unwrap_or(&empty);
        for (name, e) in list {
            let p = path.join(name);
            match &e.kind {
                Kind::Dir if self.above.contains(&e.id) => {}
                Kind::Dir => {
                    fs::create_dir(&p).map_err(err(&p))?;
                    self.fill(e.id, &p)?;
                    set_meta(&p, &e.meta, false)?;
                }
                Kind::File => self.file(e, &p)?,
                Kind::Link(target) => std::os::unix::fs::symlink(target, &p).map_err(err(&p))?,
                Kind::Fifo => {
                    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
                        .map_err(|e| e.to_string())?;
                    // SAFETY: a valid C string; mkfifo reads nothing else.
                    if unsafe { libc::mkfifo(c.as_ptr(), e.meta.mode) } != 0 {
                        return Err(err(&p)(std::io::Error::last_os_error()));
                    }
                }
                Kind::Other => {}
            }
        }
        self.above.pop();
        Ok(())
    }

    fn file(&mut self, e: &Entry, p: &Path) -> Result<(), String> {
        if let Some(first) = self.laid.get(&e.id) {
            return fs::hard_link(first, p).map_err(err(p));
        }
        let meta = match self.files.get(&e.id) {
            Some(b) => {
                fs::copy(&b.from, p).map_err(err(&b.from))?;
                &b.meta
            }
            None => {
                fs::File::create(p).map_err(err(p))?;
                &e.meta
            }
        };
        set_meta(p, meta, true)?;
        self.laid.insert(e.id, p.to_path_buf());
        Ok(())
    }
}

fn set_meta(p: &Path, m: &Meta, times: bool) -> Result<(), String> {
    std::os::unix::fs::chown(p, Some(m.uid), Some(m.gid)).map_err(err(p))?;
    fs::set_permissions(p, fs::Permissions::from_mode(m.mode)).map_err(err(p))?;
    if times {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(p)
            .or_else(|_| fs::File::open(p))
            .map_err(err(p))?;
        f.set_modified(m.mtime).map_err(err(p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::run_observed;
    use std::process::Command;
    use std::time::Duration;

    /// Runs `script` in a world laid from `template`, killed at `kill_at`;
    /// the two states a power cut leaves, as `name: content` lines.
    fn after_power_loss(setup: &str, script: &str, kill_at: Option<u64>) -> [String; 2] {
        let base = tempfile::tempdir().unwrap();
        let (template, work) = (base.path().join("template"), base.path().join("work"));
        fs::create_dir(&template).unwrap();
        let sh = |s: &str, at: &Path| {
            assert!(
                Command::new("sh")
                    .args(["-c", s])
                    .current_dir(at)
                    .status()
                    .unwrap()
                    .success()
            );
        };
        sh(setup, &template);
        sh(
            &format!("cp -a {}/. {}", template.display(), work.display()),
            base.path(),
        );
        let before = Image::before(&work, &template, &base.path().join("before")).unwrap();
        let mut rec = Recorder::new(&work, before, &base.path().join("copies")).unwrap();
        run_observed(
            Command::new("sh").args(["-c", script]).current_dir(&work),
            kill_at,
            Duration::from_secs(20),
            &mut |s| rec.observe(s),
        )
        .unwrap();
        assert_eq!(rec.error, None);
        let killed = base.path().join("killed");
        fs::rename(&work, &killed).unwrap();
        Loss::ALL.map(|loss| {
            let _ = fs::remove_dir_all(&work);
            lay(&rec, loss, &killed, &work).unwrap();
            let mut names: Vec<String> = fs::read_dir(&work)
                .unwrap()
                .map(|e| {
                    let p = e.unwrap().path();
                    let body = fs::read_to_string(&p).unwrap_or_else(|_| "<dir>".into());
                    format!(
                        "{}={}",
                        p.file_name().unwrap().to_string_lossy(),
                        body.trim()
                    )
                })
                .collect();
            names.sort();
            names.join(" ")
        })
    }

    /// Without a flush, a power cut undoes everything: new names, new bytes, removals.
    #[test]
    fn nothing_flushed_is_nothing_kept() {
        let [kept, strict] = after_power_loss(
            "echo old > a; echo gone > b",
            "echo new > a; echo c > c; rm b; mv c d",
            None,
        );
        assert_eq!(kept, "a=old d=");
        assert_eq!(strict, "a=old b=gone");
    }

    /// An fsync of the file keeps its bytes; of the folder, its names.
    #[test]
    fn flushes_keep_what_they_cover() {
        let script = "echo new > t; sync t; mv t a; echo x > b; sync -f b; sync .";
        // `sync FILE` is fsync of the file; `sync .` of the folder; `sync -f` is syncfs.
        let [kept, strict] = after_power_loss("echo old > a", script, None);
        assert_eq!(kept, "a=new b=x");
        assert_eq!(strict, "a=new b=x");
        // Killed before the folder's fsync, the 5th point: write, fsync,
        // renameat2 (mv tries RENAME_NOREPLACE first), renameat, fsync.
        let script = "echo new > t; sync t; mv t a; sync .";
        let [kept, strict] = after_power_loss("echo old > a", script, Some(5));
        assert_eq!(kept, "a=new");
        assert_eq!(strict, "a=old");
    }

    /// A file renamed over another without an fsync first is empty if the name survives.
    #[test]
    fn rename_without_fsync_leaves_an_empty_file() {
        let [kept, strict] = after_power_loss("echo old > a", "echo new > t; mv t a; sync .", None);
        assert_eq!(kept, "a=");
        assert_eq!(strict, "a=");
    }
}
