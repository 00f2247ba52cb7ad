//! Restoring any tar from its own headers: each member translated to an
//! index entry (members.rs), checked, and written.

use snap_shared::error::Result;
use snap_shared::index::EntryType;

use super::restorer::Restorer;
use crate::damage::corrupt;
use crate::loc::Loc;
use crate::members::show;
use crate::members::{archive, finish, members};
use crate::members::{entry_of, member_error, sanitize};
use crate::stream;
use crate::target::{Meta, Refused};

impl<'a> Restorer<'a> {
    /// Restores any tar from its headers, with the same path safety. A member
    /// that cannot be restored is named and makes the run end 65; a damaged
    /// or cut archive ends it at once.
    pub fn restore_tar(&mut self, path: &Loc) -> Result<()> {
        let opened = stream::open(path, self.dec)?;
        let mut archive = archive(opened.tar);
        let mut dirs = Vec::new();
        let mut stripped = false;
        let mut empty = true;
        for member in members(&mut archive).map_err(|e| corrupt(path, e))? {
            self.stop_if_fatal()?;
            let mut m = member.map_err(|e| corrupt(path, e))?;
            empty = false;
            let rel = match sanitize(&m.path, &mut stripped) {
                Ok(Some(rel)) => rel,
                Ok(None) => continue,
                Err(why) => {
                    self.refused(&m.path.clone(), Refused::Escape(why));
                    continue;
                }
            };
            if !self.select.wants(&rel) && !self.select.leads_to(&rel) {
                continue;
            }
            self.select.mark(&rel, &mut self.matched);
            let e = match entry_of(&m, rel.clone(), &mut stripped) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(refused) => {
                    if self.select.wants(&rel) {
                        self.refused(&rel, refused);
                    }
                    continue;
                }
            };
            let policy = self.target.policy();
            let (xattrs, problems) = crate::attrs::of_member(&m, &mut self.owners, policy);
            let attrs = crate::attrs::Attrs::Tar(std::sync::Arc::new(xattrs));
            let meta = Meta {
                mtime_ns: m.mtime_ns,
                ..self.meta_with(&e, attrs)
            };
            if self.select.wants(&rel) {
                for p in problems {
                    self.refused(&rel, Refused::Attribute(p));
                }
                if let Some(t) = m.unknown_type {
                    self.report.warn(&format!(
                        "{}: unknown tar type {:?}, restored as a regular file (as GNU tar does)",
                        show(&rel),
                        t as char
                    ));
                }
                for w in &m.warnings {
                    self.report.warn(&format!("{}: {w}", show(&rel)));
                }
            }
            match e.kind {
                EntryType::Dir => match self.target.dir(&rel) {
                    Ok(_) => {
                        self.count_settled();
                        dirs.push((rel, meta));
                    }
                    Err(r) => {
                        self.count_settled();
                        self.refused(&rel, r);
                    }
                },
                EntryType::File if self.select.wants(&rel) => {
                    let r = self
                        .target
                        .file(&rel, &meta, e.size, None, &mut m, &mut self.buf);
                    if let Err(Refused::Source(err)) = r {
                        return Err(corrupt(path, member_error(&rel, err)));
                    }
                    self.count_staging(&rel, r, e.size);
                    self.progress();
                }
                EntryType::File => {}
                _ => {
                    let made = self.make_other(&e, &meta);
                    self.count_settled();
                    if let (Some(r), true) = (made, self.select.wants(&rel)) {
                        self.count(&rel, r, 0);
                    }
                }
            }
        }
        let end = finish(archive);
        if empty && end.is_ok() {
            self.report.note(&format!(
                "{}: an empty archive (it begins with its end-of-archive blocks, as GNU tar reads it); nothing to restore",
                path.show()
            ));
        }
        if stripped {
            self.report
                .note("removed leading `/` from member names (like GNU tar)");
        }
        self.dir_metadata(dirs);
        self.stop_if_fatal()?;
        end.map_err(|e| corrupt(path, e))?;
        self.check_selection()
    }
}
