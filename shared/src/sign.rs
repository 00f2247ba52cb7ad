//! Signatures over records, in the format of `ssh-keygen -Y sign` (SSHSIG),
//! so that a record, which names the sha256 of its archive, index and
//! sidecars, can be checked with no snap tool:
//!
//! ```sh
//! ssh-keygen -Y verify -f allowed_signers -I snap@laptop -n snap-record \
//!     -s ID.json.sig < ID.json
//! ```
//!
//! age encrypts to public recipients, so whoever can write to a bucket can
//! forge an archive that decrypts and verifies; a signature by a key only
//! the backing-up machine holds is what tells its archives apart. The
//! allowed signers are listed in OpenSSH's `allowed_signers` format (man
//! ssh-keygen, "ALLOWED SIGNERS"): `PRINCIPALS [OPTIONS] KEYTYPE KEY`.
//!
//! This module signs, verifies and reads the list; which records are
//! signed, and what a reader refuses, the tools decide.

use std::io::Write;
use std::path::{Path, PathBuf};

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::config::{Signing, default_config_path, expand_tilde};
use crate::error::{Error, Exit, Result};

/// The namespace of snap's record signatures (a signature made for another
/// purpose, e.g. a git commit's, never passes for one).
pub const NAMESPACE: &str = "snap-record";

/// The suffix of a record's signature, beside it: `ID.json.sig`.
pub const SIG_SUFFIX: &str = ".sig";

/// Where this user's signing key and allowed signers live when the config
/// names none: beside the default config, `~/.config/snap/` (or
/// `$XDG_CONFIG_HOME/snap/`), whichever config file a run reads.
pub fn default_dir() -> PathBuf {
    crate::fsutil::parent_of(&default_config_path()).to_path_buf()
}

/// The signing key: the config's `signing.key`, else `signing_key` in [`default_dir`].
pub fn key_path(signing: Option<&Signing>) -> PathBuf {
    match signing.and_then(|s| s.key.as_deref()) {
        Some(k) => expand_tilde(k),
        None => default_dir().join("signing_key"),
    }
}

/// The allowed signers: the config's `signing.allowed_signers`, else
/// `allowed_signers` in [`default_dir`].
pub fn allowed_path(signing: Option<&Signing>) -> PathBuf {
    match signing.and_then(|s| s.allowed_signers.as_deref()) {
        Some(k) => expand_tilde(k),
        None => default_dir().join("allowed_signers"),
    }
}

/// What [`machine_signer`] did on first use.
pub struct Made {
    pub key: PathBuf,
    pub allowed: PathBuf,
    pub line: String,
}

impl Made {
    /// What to tell the user, once: `what` the key signs ("archives").
    pub fn describe(&self, what: &str) -> String {
        format!(
            "made this machine's signing key {}; its {what} are signed with it. Its line, added to {}, goes into the allowed_signers of every machine that restores them: {}",
            self.key.display(),
            self.allowed.display(),
            self.line
        )
    }
}

/// The key this machine signs records with, made on first use where the
/// config says (or by default) when no file is there: Ed25519, no
/// passphrase, 0600, as `ssh-keygen -t ed25519 -N ''` makes one. Its line is
/// added to the allowed signers, so that this machine reads its own
/// archives with no set-up; the caller says where it was made. Two runs
/// making it at once agree on one key: the second finds the first's.
pub fn machine_signer(signing: Option<&Signing>) -> Result<(Signer, Option<Made>)> {
    let path = key_path(signing);
    if !path.is_absolute() {
        // `~` with no $HOME (a service started without one), or a relative
        // name: a key made there would be lost, or another one each run.
        return Err(Error::new(
            Exit::Config,
            format!("signing key {}", path.display()),
            "is not an absolute path (is $HOME set?)",
        )
        .with_hint("name it in the config: \"signing\": {\"key\": \"/etc/snap/signing_key\"}"));
    }
    if path.exists() {
        return Signer::load(&path).map(|s| (s, None));
    }
    let principal = format!("snap@{}", crate::hostname());
    let signer = match Signer::generate(&path, &principal) {
        Ok(s) => s,
        // Another run made it first: its key is the one.
        Err(_) if path.exists() => return Signer::load(&path).map(|s| (s, None)),
        Err(e) => {
            return Err(e.with_hint(format!(
                "records are signed with a key of this machine's; name one that can be read with \"signing\": {{\"key\": FILE}} in the config (made by ssh-keygen -t ed25519 -N '' -f FILE), not {}",
                path.display()
            )));
        }
    };
    let allowed = allowed_path(signing);
    let line = format!("{principal} namespaces=\"{NAMESPACE}\" {}", signer.public());
    append_line(&allowed, &line)?;
    Ok((
        signer,
        Some(Made {
            key: path,
            allowed,
            line,
        }),
    ))
}

/// Adds `line` at the end of the file at `path` (made 0644 if missing), on
/// a line of its own, durably.
fn append_line(path: &Path, line: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .read(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut text = String::new();
    if len > 0 {
        use std::io::{Read, Seek, SeekFrom};
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1))
            .and_then(|_| f.read_exact(&mut last))
            .map_err(|e| Error::io(path, e))?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line);
    text.push('\n');
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// A private key that signs records.
pub struct Signer {
    key: PrivateKey,
}

impl Signer {
    /// Reads an OpenSSH private key (`ssh-keygen -t ed25519 -N ''`). One
    /// protected by a passphrase is refused: backups run from cron, where
    /// no one types it.
    pub fn load(path: &Path) -> Result<Signer> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let key = PrivateKey::from_openssh(&text).map_err(|e| {
            Error::new(
                Exit::Config,
                path.display().to_string(),
                format!("not an OpenSSH private key: {e}"),
            )
        })?;
        if key.is_encrypted() {
            return Err(Error::new(
                Exit::Config,
                path.display().to_string(),
                "the signing key has a passphrase, and backups run unattended",
            )
            .with_hint("make one without: ssh-keygen -t ed25519 -N '' -f FILE"));
        }
        Ok(Signer { key })
    }

    /// A new Ed25519 key, written to `path` (0600) and `path.pub`.
    pub fn generate(path: &Path, comment: &str) -> Result<Signer> {
        let mut key =
            PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
                .map_err(|e| Error::internal("a new signing key", e))?;
        key.set_comment(comment);
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| Error::internal("a new signing key", e))?;
        // The key is created, never replaced (a run making it at the same
        // time keeps its own); its `.pub` follows it.
        let write = |p: &Path, bytes: &[u8], mode: u32, replace: bool| {
            crate::fsutil::write_atomic(p, mode, replace, |f| f.write_all(bytes))
                .map_err(|e| Error::io(p, e))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        write(path, private.as_bytes(), 0o600, false)?;
        let public = format!("{}\n", public_line(key.public_key()));
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        write(Path::new(&pub_path), public.as_bytes(), 0o644, true)?;
        Ok(Signer { key })
    }

    /// The signature of `data`, as `ssh-keygen -Y sign` writes it (PEM).
    pub fn sign(&self, data: &[u8]) -> Result<String> {
        let sig = SshSig::sign(&self.key, NAMESPACE, HashAlg::Sha512, data)
            .map_err(|e| Error::internal("signing a record", e))?;
        sig.to_pem(LineEnding::LF)
            .map_err(|e| Error::internal("signing a record", e))
    }

    /// The public key, as an `authorized_keys` line (type, key, comment).
    pub fn public(&self) -> String {
        public_line(self.key.public_key())
    }

    /// Its SHA256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }
}

fn public_line(key: &PublicKey) -> String {
    key.to_openssh().unwrap_or_default()
}

/// One line of an allowed-signers list.
#[derive(Debug, Clone)]
struct Allowed {
    principals: Vec<String>,
    /// `namespaces="…"`: the namespaces this key may sign in (all when none).
    namespaces: Option<Vec<String>>,
    key: PublicKey,
}

/// The keys whose signatures a reader accepts.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    entries: Vec<Allowed>,
}

/// What checking a signature found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Good, by a key the list allows: its first principal.
    Allowed(String),
    /// Good, but by a key the list does not have (or not for this
    /// namespace): its fingerprint and comment, to name it.
    Unknown {
        fingerprint: String,
        comment: String,
        /// The key, as an `authorized_keys` line, to add once checked.
        public: String,
    },
    /// Not a signature of these bytes (they changed since, or it is not
    /// one at all): why.
    Bad(String),
}

impl AllowedSigners {
    /// Reads the list at `path`; a file that is not there is an empty list.
    pub fn load(path: &Path) -> Result<AllowedSigners> {
        match std::fs::read_to_string(path) {
            Ok(text) => AllowedSigners::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AllowedSigners::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Parses `allowed_signers` lines; `what` names the file in errors.
    /// Lines marked `cert-authority` are refused (snap signs with plain keys).
    pub fn parse(text: &str, what: &str) -> Result<AllowedSigners> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| {
                Error::new(Exit::Config, format!("{what} line {}", n + 1), why)
                    .with_hint("each line is: PRINCIPALS [namespaces=\"snap-record\"] KEYTYPE KEY [COMMENT], as ssh-keygen -Y verify reads it")
            };
            let (principals, rest) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("no key after the principals".into()))?;
            let rest = rest.trim_start();
            // Options come before the key type when the next word is not one.
            let (options, key_text) = match rest.split_whitespace().next() {
                Some(w) if ssh_key::Algorithm::new(w).is_ok() => ("", rest),
                _ => split_options(rest).ok_or_else(|| bad("no key after the options".into()))?,
            };
            let mut namespaces = None;
            for opt in options_of(options) {
                match opt.split_once('=') {
                    Some((name, v)) if name.eq_ignore_ascii_case("namespaces") => {
                        let v = v.trim_matches('"');
                        namespaces = Some(v.split(',').map(|s| s.trim().to_string()).collect());
                    }
                    // Certificates and validity windows are not snap's: a
                    // line it would read differently from ssh-keygen is refused.
                    _ => {
                        return Err(bad(format!(
                            "option {opt:?} is not supported (only namespaces=)"
                        )));
                    }
                }
            }
            let key = PublicKey::from_openssh(key_text)
                .map_err(|e| bad(format!("not a public key: {e}")))?;
            entries.push(Allowed {
                principals: principals.split(',').map(str::to_string).collect(),
                namespaces,
                key,
            });
        }
        Ok(AllowedSigners { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks `sig_pem` (an `ssh-keygen -Y sign` signature) over `data`.
    pub fn verify(&self, data: &[u8], sig_pem: &[u8]) -> Verdict {
        let sig = match std::str::from_utf8(sig_pem)
            .map_err(|e| e.to_string())
            .and_then(|t| SshSig::from_pem(t).map_err(|e| e.to_string()))
        {
            Ok(sig) => sig,
            Err(why) => return Verdict::Bad(format!("not an SSH signature: {why}")),
        };
        if sig.namespace() != NAMESPACE {
            return Verdict::Bad(format!(
                "signed for {:?}, not for snap records ({NAMESPACE:?})",
                sig.namespace()
            ));
        }
        let key = PublicKey::from(sig.public_key().clone());
        if let Err(e) = key.verify(NAMESPACE, data, &sig) {
            return Verdict::Bad(format!("the signature does not match: {e}"));
        }
        let allowed = self.entries.iter().find(|a| {
            a.key.key_data() == key.key_data()
                && a.namespaces
                    .as_ref()
                    .is_none_or(|ns| ns.iter().any(|n| n == NAMESPACE))
        });
        match allowed {
            Some(a) => Verdict::Allowed(a.principals.first().cloned().unwrap_or_default()),
            None => Verdict::Unknown {
                fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
                comment: self
                    .entries
                    .iter()
                    .find(|a| a.key.key_data() == key.key_data())
                    .map(|a| a.key.comment().to_string())
                    .unwrap_or_default(),
                public: public_line(&key),
            },
        }
    }
}

/// `OPTIONS KEYTYPE KEY…` → (`OPTIONS`, `KEYTYPE KEY…`); options may hold
/// quoted values with spaces.
fn split_options(rest: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Some((&rest[..i], rest[i..].trim_start())),
            _ => {}
        }
    }
    None
}

/// The comma-separated options, quotes kept inside values.
fn options_of(options: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in options.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs `script` with sh in `dir`; whether it exited 0, and its stderr.
    fn sh(dir: &Path, script: &str) -> (bool, String) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn keygen(dir: &Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let out = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &format!("{name}@test"),
                "-f",
            ])
            .arg(&path)
            .output()
            .expect("ssh-keygen (cargo xtask test installs openssh-client)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// A record signed here verifies here and with `ssh-keygen -Y verify`;
    /// changed by one byte, it does not; a key not in the list is named by
    /// its fingerprint; a signature for another namespace is refused.
    #[test]
    fn signs_as_ssh_keygen_verifies() {
        let t = tempfile::tempdir().unwrap();
        let key = keygen(t.path(), "laptop");
        let signer = Signer::load(&key).unwrap();
        let record = b"{\"kind\":\"archive\",\"sha256\":\"00\"}\n";
        let sig = signer.sign(record).unwrap();
        std::fs::write(t.path().join("r.json"), record).unwrap();
        std::fs::write(t.path().join("r.json.sig"), &sig).unwrap();
        let list = format!(
            "snap@laptop namespaces=\"{NAMESPACE}\" {}\n",
            signer.public()
        );
        std::fs::write(t.path().join("allowed"), &list).unwrap();
        let allowed = AllowedSigners::load(&t.path().join("allowed")).unwrap();
        assert_eq!(
            allowed.verify(record, sig.as_bytes()),
            Verdict::Allowed("snap@laptop".into())
        );
        let (ok, err) = sh(
            t.path(),
            &format!(
                "ssh-keygen -Y verify -f allowed -I snap@laptop -n {NAMESPACE} -s r.json.sig < r.json"
            ),
        );
        assert!(ok, "{err}");

        let mut changed = record.to_vec();
        changed[10] ^= 1;
        assert!(matches!(
            allowed.verify(&changed, sig.as_bytes()),
            Verdict::Bad(_)
        ));
        let other = Signer::load(&keygen(t.path(), "forger")).unwrap();
        let forged = other.sign(record).unwrap();
        assert_eq!(
            allowed.verify(record, forged.as_bytes()),
            Verdict::Unknown {
                fingerprint: other.fingerprint(),
                comment: String::new(),
                public: other.public().rsplit_once(' ').unwrap().0.to_string(),
            }
        );
        assert!(matches!(allowed.verify(record, b"junk"), Verdict::Bad(_)));
        // A git-style signature of the same bytes is not a record's.
        std::fs::remove_file(t.path().join("r.json.sig")).unwrap();
        let (ok, err) = sh(t.path(), "ssh-keygen -Y sign -f laptop -n git r.json");
        assert!(ok, "{err}");
        let git = std::fs::read(t.path().join("r.json.sig")).unwrap();
        assert!(matches!(allowed.verify(record, &git), Verdict::Bad(_)));
    }

    /// `ssh-keygen -Y sign -n snap-record` signs a record snap accepts; a
    /// generated key is 0600 with its `.pub`; a key with a passphrase is
    /// refused; list lines with options and comments parse, bad ones are named.
    #[test]
    fn reads_what_ssh_keygen_writes() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let key = keygen(t.path(), "nas");
        std::fs::write(t.path().join("r.json"), b"{}").unwrap();
        let (ok, err) = sh(
            t.path(),
            &format!("ssh-keygen -Y sign -f nas -n {NAMESPACE} r.json"),
        );
        assert!(ok, "{err}");
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let list = format!("# the NAS\nnas@home,backup@home cert-authority-not {public}");
        assert!(AllowedSigners::parse(&list, "allowed").is_err());
        let list = format!("# the NAS\nnas@home,backup@home {public}");
        let allowed = AllowedSigners::parse(&list, "allowed").unwrap();
        let sig = std::fs::read(t.path().join("r.json.sig")).unwrap();
        assert_eq!(
            allowed.verify(b"{}", &sig),
            Verdict::Allowed("nas@home".into())
        );
        let only_git = format!("nas@home namespaces=\"git\" {public}");
        let allowed = AllowedSigners::parse(&only_git, "allowed").unwrap();
        assert!(matches!(
            allowed.verify(b"{}", &sig),
            Verdict::Unknown { .. }
        ));
        let line = format!("x cert-authority {public}");
        let err = AllowedSigners::parse(&line, "allowed").unwrap_err();
        assert_eq!(err.exit, Exit::Config);
        assert!(err.to_string().contains("allowed line 1"), "{err}");

        let made = t.path().join("made/signing_key");
        let signer = Signer::generate(&made, "snap@here").unwrap();
        let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pub_text = std::fs::read_to_string(t.path().join("made/signing_key.pub")).unwrap();
        assert_eq!(pub_text.trim(), signer.public());
        assert!(signer.public().ends_with(" snap@here"));
        assert_eq!(Signer::load(&made).unwrap().public(), signer.public());

        // A key named where it would be lost (no $HOME, a relative name) is refused.
        let relative = Signing {
            key: Some("keys/signing_key".into()),
            allowed_signers: None,
        };
        let err = machine_signer(Some(&relative)).err().expect("refused");
        assert_eq!(err.exit, Exit::Config);
        assert!(err.to_string().contains("not an absolute path"), "{err}");
        // One named in the config is made there on first use, its line added
        // to the named list; the second call finds it.
        let named = Signing {
            key: Some(t.path().join("named/key").display().to_string()),
            allowed_signers: Some(t.path().join("named/allowed").display().to_string()),
        };
        let (first, made) = machine_signer(Some(&named)).unwrap();
        let made = made.expect("made on first use");
        let list = std::fs::read_to_string(t.path().join("named/allowed")).unwrap();
        assert_eq!(list, format!("{}\n", made.line));
        assert!(list.contains(&first.public().rsplit_once(' ').unwrap().0.to_string()));
        let (second, again) = machine_signer(Some(&named)).unwrap();
        assert!(again.is_none());
        assert_eq!(second.public(), first.public());
        let signed = AllowedSigners::load(&t.path().join("named/allowed")).unwrap();
        let sig = second.sign(b"x").unwrap();
        assert!(matches!(
            signed.verify(b"x", sig.as_bytes()),
            Verdict::Allowed(_)
        ));

        let locked = t.path().join("locked");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
            .arg(&locked)
            .output()
            .unwrap();
        assert!(out.status.success());
        let err = Signer::load(&locked).err().expect("refused");
        assert_eq!(err.exit, Exit::Config);
        assert!(err.to_string().contains("passphrase"), "{err}");
    }
}
