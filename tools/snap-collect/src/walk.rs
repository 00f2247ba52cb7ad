//! The walk: every entry of a set's sources, in index order, one at a time.
//!
//! A depth-first walk that sorts each directory by name yields paths in
//! component order, the order the index is kept in, so the collector merges
//! the walk with the previous snapshot's index in one pass and memory stays
//! flat (one sorted name list per open directory). The directories above the
//! sources (`home`, `home/me` for `/home/me/.config`) are yielded first, with
//! their real metadata, so a restore can recreate them.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ignore::gitignore::Gitignore;
use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Mode, OFlags, Stat, StatxFlags, openat, statat, statx,
};

use snap_shared::error::io_cause;

use crate::exclude::{self, IGNORE_FILE};
use crate::sources::{SetPlan, Source};

/// One entry to collect.
#[derive(Debug)]
pub struct Found {
    /// Path in the snapshot (and the index).
    pub rel: Vec<u8>,
    /// Path on the source filesystem, for messages and exclusion patterns.
    pub abs: PathBuf,
    /// `lstat` of the entry (`stat` for sources and the folders above them).
    pub stat: Stat,
    /// The open source folder that holds the entry: every system call on the
    /// entry is relative to it, so the kernel resolves one name, not a path.
    pub parent: Arc<OwnedFd>,
}

impl Found {
    /// The entry's own name (the last component of its path).
    pub fn name(&self) -> &OsStr {
        OsStr::from_bytes(last_component(&self.rel))
    }

    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

/// The last component of a `/`-separated path.
pub fn last_component(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&c| c == b'/') {
        Some(i) => &rel[i + 1..],
        None => rel,
    }
}

/// What the walk reports.
#[derive(Debug)]
pub enum Event {
    Entry(Found),
    /// Something the user should know that is not a failure (a file vanished).
    Warning(String),
    /// Something that could not be read: counted in the record's `errors`.
    Error(String),
}

struct Frame {
    fd: Arc<OwnedFd>,
    abs: PathBuf,
    rel: Vec<u8>,
    /// The folder's names as listed, sorted, with their inode numbers.
    names: Vec<(OsString, u64)>,
    next: usize,
    /// Names that were gone when their turn came (deleted, or renamed).
    vanished: Vec<(OsString, u64)>,
    /// When the folder was listed.
    listed_at: SystemTime,
    dev: u64,
    ignore: Option<Gitignore>,
}

pub struct Walker {
    sources: Vec<(Source, Gitignore)>,
    next_source: usize,
    current_source: usize,
    /// Folders above the sources already yielded.
    ancestors: Vec<Vec<u8>>,
    stack: Vec<Frame>,
    queue: VecDeque<Event>,
    one_file_system: bool,
    skip_dir: Option<PathBuf>,
}

/// How a source entry that could not be read is reported: one that vanished
/// since its folder was listed is a warning, anything else an error.
pub fn problem(path: &Path, err: &io::Error) -> Event {
    if err.kind() == io::ErrorKind::NotFound {
        Event::Warning(format!("{}: vanished during the walk", path.display()))
    } else {
        Event::Error(format!("{}: {}", path.display(), io_cause(err)))
    }
}

/// How far a filesystem's clock may lag ours: it stamps with a coarse clock,
/// up to a tick behind.
const CLOCK_LAG: Duration = Duration::from_millis(20);

/// Whether `name` in `dir` was made after `t` (give or take [`CLOCK_LAG`]),
/// by its birth time; false where the filesystem keeps none.
fn born_after(dir: &OwnedFd, name: &OsStr, t: SystemTime) -> bool {
    let Ok(st) = statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BTIME) else {
        return false;
    };
    if !StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::BTIME) {
        return false;
    }
    let born = Duration::new(st.stx_btime.tv_sec.max(0) as u64, st.stx_btime.tv_nsec);
    UNIX_EPOCH + born + CLOCK_LAG >= t
}

/// `parent/name`, or `name` at the top.
pub fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        v.extend_from_slice(parent);
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

fn open_dir_at(parent: &OwnedFd, name: &OsStr, follow: bool) -> io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    openat(parent, name, flags, Mode::empty()).map_err(io::Error::from)
}

/// The names in an open folder with their inode numbers, sorted bytewise
/// (component order).
fn list_dir(fd: &OwnedFd) -> io::Result<Vec<(OsString, u64)>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push((OsStr::from_bytes(name).to_os_string(), entry.ino()));
        }
    }
    names.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(names)
}

impl Walker {
    /// A walk over a set's sources; `skip_dir` (the store) is never entered.
    pub fn new(plan: &SetPlan, skip_dir: Option<PathBuf>) -> snap_shared::Result<Walker> {
        let mut sources = Vec::new();
        let mut ordered = plan.sources.clone();
        ordered.sort_by(|a, b| snap_shared::index::cmp_paths(&a.rel, &b.rel));
        for src in &ordered {
            let matcher = exclude::source_matcher(&src.abs, &plan.patterns)?;
            sources.push((src.clone(), matcher));
        }
        Ok(Walker {
            sources,
            next_source: 0,
            current_source: 0,
            ancestors: Vec::new(),
            stack: Vec::new(),
            queue: VecDeque::new(),
            one_file_system: plan.one_file_system,
            skip_dir,
        })
    }

    /// Queues a source: the folders above it not yet yielded, then itself.
    /// Sources are canonical, so following links on the way down is safe.
    fn start_source(&mut self, idx: usize) {
        self.current_source = idx;
        let src = self.sources[idx].0.clone();
        let mut fd = match openat(
            CWD,
            "/",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Arc::new(fd),
            Err(e) => return self.fail(Path::new("/"), e.into()),
        };
        if src.rel.is_empty() {
            return self.push_frame(fd, PathBuf::from("/"), Vec::new());
        }
        let parts: Vec<&[u8]> = src.rel.split(|&c| c == b'/').collect();
        let mut rel = Vec::new();
        let mut abs = PathBuf::from("/");
        for (depth, part) in parts.iter().enumerate() {
            let name = OsStr::from_bytes(part);
            rel = join_rel(&rel, part);
            abs.push(name);
            let is_source = depth + 1 == parts.len();
            let stat = match statat(&*fd, name, AtFlags::empty()) {
                Ok(st) => st,
                Err(e) => return self.fail(&abs, e.into()),
            };
            let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
            let seen = !is_source && self.ancestors.get(depth) == Some(&rel);
            if !seen {
                if !is_source {
                    self.ancestors.truncate(depth);
                    self.ancestors.push(rel.clone());
                }
                self.queue.push_back(Event::Entry(Found {
                    rel: rel.clone(),
                    abs: abs.clone(),
                    stat,
                    parent: fd.clone(),
                }));
            }
            if !is_dir {
                return;
            }
            fd = match open_dir_at(&fd, name, true) {
                Ok(d) => Arc::new(d),
                Err(e) => return self.fail(&abs, e),
            };
        }
        self.push_frame(fd, abs, rel);
    }

    /// Lists an open folder and makes it the current one.
    fn push_frame(&mut self, fd: Arc<OwnedFd>, abs: PathBuf, rel: Vec<u8>) {
        let listed_at = SystemTime::now();
        let listing = list_dir(&fd).and_then(|names| {
            let dev = rustix::fs::fstat(&*fd)?.st_dev;
            Ok((names, dev))
        });
        let (names, dev) = match listing {
            Ok(l) => l,
            Err(e) => return self.fail(&abs, e),
        };
        let mut ignore = None;
        if names.iter().any(|(n, _)| n == IGNORE_FILE) {
            let (gi, warning) = exclude::read_ignore_file(&abs);
            ignore = gi;
            if let Some(w) = warning {
                self.queue.push_back(Event::Warning(w));
            }
        }
        self.stack.push(Frame {
            fd,
            abs,
            rel,
            names,
            next: 0,
            vanished: Vec::new(),
            listed_at,
            dev,
            ignore,
        });
    }

    fn fail(&mut self, path: &Path, err: io::Error) {
        self.queue.push_back(problem(path, &err));
    }

    fn excluded(&self, abs: &Path, is_dir: bool) -> bool {
        let files = self.stack.iter().rev().filter_map(|f| f.ignore.as_ref());
        exclude::is_excluded(abs, is_dir, files, &self.sources[self.current_source].1)
    }

    /// Takes the next name of the current folder; false when there is no folder.
    fn step(&mut self) -> bool {
        let Some(frame) = self.stack.last_mut() else {
            return false;
        };
        if frame.next == frame.names.len() {
            let done = self.stack.pop().expect("a frame is open");
            self.renamed_away(&done);
            return true;
        }
        let (name, ino) = frame.names[frame.next].clone();
        frame.next += 1;
        let abs = frame.abs.join(&name);
        let rel = join_rel(&frame.rel, name.as_bytes());
        let parent = frame.fd.clone();
        let parent_dev = frame.dev;
        let stat = match statat(&*parent, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => {
                self.gone(name, ino, &abs, e.into());
                return true;
            }
        };
        let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
        if self.excluded(&abs, is_dir) {
            return true;
        }
        if is_dir && self.skip_dir.as_deref() == Some(abs.as_path()) {
            self.queue.push_back(Event::Warning(format!(
                "{}: the store itself is not collected",
                abs.display()
            )));
            return true;
        }
        let descend = is_dir && !(self.one_file_system && stat.st_dev != parent_dev);
        self.queue.push_back(Event::Entry(Found {
            rel: rel.clone(),
            abs: abs.clone(),
            stat,
            parent: parent.clone(),
        }));
        if descend {
            match open_dir_at(&parent, &name, false) {
                Ok(fd) => self.push_frame(Arc::new(fd), abs, rel),
                Err(e) => self.gone(name, ino, &abs, e),
            }
        }
        true
    }

    /// Reports an entry of the current folder that could not be read,
    /// remembering it when it was gone ([`Walker::renamed_away`] looks again).
    fn gone(&mut self, name: OsString, ino: u64, abs: &Path, err: io::Error) {
        if err.kind() == io::ErrorKind::NotFound
            && let Some(frame) = self.stack.last_mut()
        {
            frame.vanished.push((name, ino));
        }
        self.fail(abs, err);
    }

    /// After a folder's walk, names each entry that vanished because it was
    /// renamed inside the folder: the new name was not listed, so the entry
    /// is in the snapshot under neither name. A deleted entry is only the
    /// warning already given (as restic treats it). The filesystem may give
    /// a deleted entry's inode number to a new one at once (ext4 does), so a
    /// new name made after the listing is not taken for a rename.
    fn renamed_away(&mut self, frame: &Frame) {
        if frame.vanished.is_empty() {
            return;
        }
        let Ok(now) = list_dir(&frame.fd) else {
            return;
        };
        let listed = |n: &OsString| {
            frame
                .names
                .binary_search_by(|(m, _)| m.as_bytes().cmp(n.as_bytes()))
                .is_ok()
        };
        for (new, ino) in now.iter().filter(|(n, _)| !listed(n)) {
            let mut olds = frame.vanished.iter().filter(|(_, i)| i == ino).peekable();
            // Only a name that took a vanished one's inode costs a statx.
            if olds.peek().is_none() || born_after(&frame.fd, new, frame.listed_at) {
                continue;
            }
            for (old, _) in olds {
                self.queue.push_back(Event::Error(format!(
                    "{}: renamed to {} during the walk: in this snapshot under neither name (run again)",
                    frame.abs.join(old).display(),
                    new.to_string_lossy()
                )));
            }
        }
    }
}

impl Iterator for Walker {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            if self.step() {
                continue;
            }
            if self.next_source == self.sources.len() {
                return None;
            }
            self.next_source += 1;
            self.start_source(self.next_source - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Pattern;

    use std::fs;

    fn walk(plan: &SetPlan) -> (Vec<String>, Vec<String>) {
        let mut paths = Vec::new();
        let mut notes = Vec::new();
        for ev in Walker::new(plan, None).unwrap() {
            match ev {
                Event::Entry(f) => paths.push(String::from_utf8(f.rel).unwrap()),
                Event::Warning(w) | Event::Error(w) => notes.push(w),
            }
        }
        (paths, notes)
    }

    fn plan_for(root: &Path, srcs: &[&str], patterns: &[&str]) -> (SetPlan, String) {
        let root = fs::canonicalize(root).unwrap();
        let sources = srcs
            .iter()
            .map(|s| {
                let abs = root.join(s);
                let rel = abs.as_os_str().as_bytes()[1..].to_vec();
                Source { abs, rel }
            })
            .collect();
        let plan = SetPlan {
            name: "t".into(),
            named_sources: vec![],
            sources,
            patterns: patterns
                .iter()
                .map(|p| Pattern {
                    text: p.to_string(),
                    origin: "t".into(),
                })
                .collect(),
            one_file_system: false,
            tags: vec![],
        };
        (plan, root.to_string_lossy()[1..].to_string())
    }

    /// The walk yields ancestors, then each source's tree in component order.
    #[test]
    fn walk_is_in_index_order() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["src/a", "src/a.d", "other"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in ["src/a/x", "src/a.txt", "src/b", "other/f"] {
            fs::write(r.join(f), "x").unwrap();
        }
        let (plan, top) = plan_for(r, &["src", "other/f"], &[]);
        let (paths, notes) = walk(&plan);
        assert!(notes.is_empty(), "{notes:?}");
        let rel: Vec<String> = paths
            .iter()
            .filter_map(|p| p.strip_prefix(&format!("{top}/")).map(str::to_string))
            .collect();
        assert_eq!(
            rel,
            [
                "other",
                "other/f",
                "src",
                "src/a",
                "src/a/x",
                "src/a.d",
                "src/a.txt",
                "src/b"
            ]
        );
        let mut sorted = paths.clone();
        sorted.sort_by(|a, b| snap_shared::index::cmp_paths(a.as_bytes(), b.as_bytes()));
        assert_eq!(paths, sorted);
        assert_eq!(
            paths.iter().filter(|p| **p == top).count(),
            1,
            "ancestors once"
        );
    }

    /// Excluded entries and their subtrees are not walked; .snapignore applies.
    #[test]
    fn exclusions_prune_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("s/tmp/deep")).unwrap();
        fs::create_dir_all(r.join("s/keep")).unwrap();
        fs::write(r.join("s/tmp/deep/f"), "x").unwrap();
        fs::write(r.join("s/keep/a.log"), "x").unwrap();
        fs::write(r.join("s/keep/b"), "x").unwrap();
        fs::write(r.join("s/keep/.snapignore"), "b\n").unwrap();
        let (plan, top) = plan_for(r, &["s"], &["tmp/", "*.log"]);
        let (paths, _) = walk(&plan);
        let rel: Vec<&str> = paths
            .iter()
            .filter_map(|p| p.strip_prefix(&format!("{top}/s/")))
            .collect();
        assert_eq!(rel, ["keep", "keep/.snapignore"]);
    }

    /// Takes events until the entry whose path ends with `end` has come.
    fn walk_to(walker: &mut Walker, end: &[u8]) {
        loop {
            match walker.next() {
                Some(Event::Entry(f)) if f.rel.ends_with(end) => return,
                Some(_) => continue,
                None => panic!("{} never came", String::from_utf8_lossy(end)),
            }
        }
    }

    /// A walk of `s/` holding files a, b and c, just past `s/a`.
    fn walker_past_a(r: &Path) -> Walker {
        fs::create_dir_all(r.join("s")).unwrap();
        for f in ["a", "b", "c"] {
            fs::write(r.join("s").join(f), "x").unwrap();
        }
        let (plan, _) = plan_for(r, &["s"], &[]);
        let mut walker = Walker::new(&plan, None).unwrap();
        walk_to(&mut walker, b"s/a");
        walker
    }

    /// A folder renamed inside its parent after the parent was listed is named as an error (in neither name), not only a vanished warning.
    #[test]
    fn folder_renamed_during_the_walk_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("s/m/deep")).unwrap();
        fs::write(r.join("s/a"), "x").unwrap();
        fs::write(r.join("s/m/deep/f"), "x").unwrap();
        // Made well before the listing, as a renamed folder was.
        std::thread::sleep(CLOCK_LAG * 2);
        let (plan, _) = plan_for(r, &["s"], &[]);
        let mut walker = Walker::new(&plan, None).unwrap();
        walk_to(&mut walker, b"s/a");
        fs::rename(r.join("s/m"), r.join("s/0m")).unwrap();
        let rest: Vec<Event> = walker.collect();
        let errors: Vec<&String> = rest
            .iter()
            .filter_map(|e| match e {
                Event::Error(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(errors.len(), 1, "{rest:?}");
        assert!(
            errors[0].ends_with("/s/m: renamed to 0m during the walk: in this snapshot under neither name (run again)"),
            "{rest:?}"
        );
        assert!(
            !rest.iter().any(|e| matches!(e, Event::Entry(_))),
            "{rest:?}"
        );
    }

    /// A file deleted and another made in its folder during the walk is no rename, though the new one may get the deleted one's inode number (ext4 gives it at once).
    #[test]
    fn a_new_file_in_a_deleted_files_inode_is_no_rename() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let walker = walker_past_a(r);
        std::thread::sleep(CLOCK_LAG * 2);
        fs::remove_file(r.join("s/b")).unwrap();
        fs::write(r.join("s/0new"), "y").unwrap();
        let rest: Vec<Event> = walker.collect();
        assert!(
            !rest.iter().any(|e| matches!(e, Event::Error(_))),
            "{rest:?}"
        );
    }

    /// A file deleted after its folder was listed is a warning, not an error.
    #[test]
    fn vanished_file_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let walker = walker_past_a(r);
        fs::remove_file(r.join("s/b")).unwrap();
        let rest: Vec<Event> = walker.collect();
        assert!(
            matches!(&rest[0], Event::Warning(w) if w.ends_with("/s/b: vanished during the walk")),
            "{rest:?}"
        );
        assert!(
            matches!(&rest[1], Event::Entry(f) if f.rel.ends_with(b"s/c")),
            "{rest:?}"
        );
        assert_eq!(rest.len(), 2);
    }

    /// A directory that can't be listed is an error event; the walk goes on.
    #[test]
    fn unreadable_dir_is_an_error_event() {
        if rustix::process::geteuid().is_root() {
            return; // root reads everything
        }
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("s/locked")).unwrap();
        fs::write(r.join("s/z"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(r.join("s/locked"), fs::Permissions::from_mode(0o000)).unwrap();
        let (plan, _) = plan_for(r, &["s"], &[]);
        let (paths, notes) = walk(&plan);
        fs::set_permissions(r.join("s/locked"), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(paths.iter().any(|p| p.ends_with("s/z")));
        assert!(notes.iter().any(|n| n.contains("locked")));
    }
}
