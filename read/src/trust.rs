//! Whose archives a reader believes: every archive a run reads data from
//! (the one named, and each base of its chain) must have a record signed by
//! a key in the allowed signers.
//!
//! age encrypts to public recipients, so whoever can write to a destination
//! can make an archive that decrypts, matches its `.sha256` and its record,
//! and restores. What tells this machine's archives apart is the signature
//! beside each record, `ID.json.sig`, made by snap-pack with a key only the
//! backing-up machine holds (snap_shared::sign). A record with no signature,
//! or one signed by a key not in the list, is refused (77, as an unknown
//! host key is) unless `--allow-unsigned`, which old archives, made before
//! records were signed, need. A signature that does not match its record is
//! damage (65) whatever the flag: the record changed after it was signed.
//!
//! Only the record is checked here; the record holds the sha256 of the
//! archive, the index and the `.sha256`, and the readers check those. A
//! blocks disk snapshot's record is checked the same way ([`Trust::check_record`]);
//! it names its map's sha256, and each block is named by its own.

use snap_cli::Reporter;
use snap_shared::config::Signing;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::sign::{AllowedSigners, SIG_SUFFIX, Verdict, allowed_path};

use crate::loc::Loc;
use crate::source::Item;

/// The flag that reads what is not signed by an allowed key.
const FLAG: &str = "--allow-unsigned";

/// The allowed signers, and whether unsigned records are read anyway.
pub struct Trust {
    /// The config's signing section: the list, and this machine's key.
    signing: Option<Signing>,
    allowed: AllowedSigners,
    list: std::path::PathBuf,
    allow_unsigned: bool,
}

/// Who signed a record, as outcome records and notes name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// By an allowed key: its first principal.
    By(String),
    /// Read with `--allow-unsigned`: it has no signature (why, to warn).
    Unsigned(String),
    /// Read with `--allow-unsigned`: signed by a key not in the list.
    Foreign(String),
    /// Not a record of snap's (a snapshot tree, a foreign tar).
    NotSigned,
}

impl Signed {
    /// The value of an outcome record's `signed_by`.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Signed::By(p) => p.as_str().into(),
            Signed::Unsigned(_) => "unsigned".into(),
            Signed::Foreign(_) => "not allowed".into(),
            Signed::NotSigned => serde_json::Value::Null,
        }
    }
}

impl Signed {
    /// Says so when it was read only because of `--allow-unsigned`.
    pub fn warn(&self, name: &str, report: &Reporter) {
        if let Signed::Unsigned(why) | Signed::Foreign(why) = self {
            report.warn(&format!("{name}: {why}; read because of {FLAG}"));
        }
    }
}

impl Trust {
    /// The config's allowed signers (or the default list).
    pub fn load(signing: Option<&Signing>, allow_unsigned: bool) -> Result<Trust> {
        let list = allowed_path(signing);
        Ok(Trust {
            signing: signing.cloned(),
            allowed: AllowedSigners::load(&list)?,
            list,
            allow_unsigned,
        })
    }

    /// Believes no archive: for reading what has no record (foreign tars).
    pub fn nobody() -> Trust {
        Trust {
            signing: None,
            allowed: AllowedSigners::default(),
            list: std::path::PathBuf::new(),
            allow_unsigned: false,
        }
    }

    /// This machine's key, for records it writes (made on first use).
    pub fn signer(&self) -> Result<snap_shared::sign::Signer> {
        snap_shared::sign::machine_signer(self.signing.as_ref()).map(|(s, _)| s)
    }

    /// Checks the signature of an archive's record (anything else passes):
    /// whose it is, or why it is refused.
    pub fn check(&self, item: &Item) -> Result<Signed> {
        let Item::Archive { rec, json, raw } = item else {
            return Ok(Signed::NotSigned);
        };
        let host = rec.extra.get("host").and_then(|h| h.as_str());
        self.check_record(&format!("archive {}/{}", rec.set, rec.id), json, raw, host)
    }

    /// Checks the record RAW read at JSON (`what` names it, `host` is the
    /// machine it says made it, for the hint).
    pub fn check_record(
        &self,
        what: &str,
        json: &Loc,
        raw: &[u8],
        host: Option<&str>,
    ) -> Result<Signed> {
        let sig_name = format!("{}{SIG_SUFFIX}", json.name());
        let sig = json.sibling(&sig_name);
        let sig_bytes = match sig.read_all() {
            Ok(b) => Some(b),
            Err(e) if e.exit == Exit::NoInput => None,
            Err(e) => return Err(e),
        };
        let (refused, unsigned) = match sig_bytes.map(|b| self.allowed.verify(raw, &b)) {
            Some(Verdict::Allowed(p)) => return Ok(Signed::By(p)),
            Some(Verdict::Bad(why)) => {
                return Err(Error::data(
                    sig.show(),
                    format!("does not sign the record of {what}: {why}"),
                )
                .with_hint(
                    "the record changed after it was signed, or the signature is damaged; \
                     `snap-restore verify` at the machine that made it tells which",
                ));
            }
            None => (
                Error::new(
                    Exit::NoPerm,
                    what,
                    format!("its record is not signed ({sig_name} is not beside it)"),
                )
                .with_hint(format!(
                    "archives made before snap signed records have no signature; {FLAG} reads \
                     them, trusting whoever could write to {}",
                    json.folder()
                )),
                true,
            ),
            Some(Verdict::Unknown {
                fingerprint,
                public,
                ..
            }) => (
                Error::new(
                    Exit::NoPerm,
                    what,
                    format!(
                        "signed by {fingerprint}, a key not in {}",
                        self.list.display()
                    ),
                )
                .with_hint(format!(
                    "if it is the key of the machine that made it (`ssh-keygen -lf \
                     ~/.config/snap/signing_key.pub` there prints {fingerprint}), add this line \
                     to {}: snap@{} namespaces=\"{}\" {public}; or {FLAG}",
                    self.list.display(),
                    host.unwrap_or("HOST"),
                    snap_shared::sign::NAMESPACE,
                )),
                false,
            ),
        };
        match (self.allow_unsigned, unsigned) {
            (false, _) => Err(refused),
            (true, true) => Ok(Signed::Unsigned(refused.cause)),
            (true, false) => Ok(Signed::Foreign(refused.cause)),
        }
    }

    /// Checks every archive of a chain (bases first), warning once for
    /// each one read only because of `--allow-unsigned`. The signer of the
    /// last (the archive named).
    pub fn check_chain(&self, chain: &[Item], report: &Reporter) -> Result<Signed> {
        let mut last = Signed::NotSigned;
        for item in chain {
            last = self.check(item)?;
            last.warn(&item.name(), report);
        }
        Ok(last)
    }

    /// Checks ITEM, with its whole chain when it is an archive.
    pub fn check_named(&self, item: &Item, report: &Reporter) -> Result<Signed> {
        match item {
            Item::Archive { .. } => self.check_chain(&crate::chain::chain_of(item)?, report),
            _ => Ok(Signed::NotSigned),
        }
    }
}
