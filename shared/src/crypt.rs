//! age encryption: the keys and passphrases snap-pack encrypts to and
//! snap-restore decrypts with. The files are plain age files, so `age -d`
//! opens them with no snap tool installed.
//!
//! Secrets come from files or the environment, never from argv (which every
//! user of the machine can read in /proc), and are held in `SecretString`s
//! that are zeroed on drop and never printed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::secrecy::SecretString;

use crate::error::{Error, Exit, Result};

/// The environment variable a passphrase may come from (like restic's RESTIC_PASSWORD).
pub const PASSPHRASE_ENV: &str = "SNAP_PASSPHRASE";

/// Whom an archive is encrypted to.
pub enum Encrypt {
    Recipients(Vec<Box<dyn age::Recipient + Send>>),
    Passphrase(SecretString),
}

/// How an archive may be decrypted: identities (private keys) and/or a passphrase.
#[derive(Default)]
pub struct Decrypt {
    pub identities: Vec<Box<dyn age::Identity>>,
    pub passphrase: Option<SecretString>,
}

/// Parses one recipient: an age X25519 key (`age1…`) or an ssh public key line.
pub fn parse_recipient(text: &str) -> std::result::Result<Box<dyn age::Recipient + Send>, String> {
    let text = text.trim();
    if text.starts_with("age1") {
        return age::x25519::Recipient::from_str(text)
            .map(|r| Box::new(r) as _)
            .map_err(|e| format!("not an age recipient: {e}"));
    }
    if text.starts_with("ssh-") {
        return age::ssh::Recipient::from_str(text)
            .map(|r| Box::new(r) as _)
            .map_err(|_| "not a supported ssh public key (ssh-ed25519 or ssh-rsa)".to_string());
    }
    Err("not a recipient: expected an age key (age1…) or an ssh public key (ssh-ed25519 …, ssh-rsa …)".into())
}

/// The recipients of `--recipient` flags and `--recipients-file` files, in that order.
pub fn recipients(
    flags: &[String],
    files: &[std::path::PathBuf],
) -> Result<Vec<Box<dyn age::Recipient + Send>>> {
    let mut out = Vec::new();
    for r in flags {
        out.push(parse_recipient(r).map_err(|e| Error::usage(format!("--recipient {r}"), e))?);
    }
    for f in files {
        out.extend(read_recipients_file(f)?);
    }
    Ok(out)
}

/// Reads a recipients file: one recipient a line, `#` comments and blank lines ignored.
pub fn read_recipients_file(path: &Path) -> Result<Vec<Box<dyn age::Recipient + Send>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let r = parse_recipient(line).map_err(|cause| {
            Error::usage(
                format!("recipients file {} line {}", path.display(), n + 1),
                cause,
            )
        })?;
        out.push(r);
    }
    if out.is_empty() {
        return Err(Error::usage(
            format!("recipients file {}", path.display()),
            "has no recipients",
        ));
    }
    Ok(out)
}

/// Reads an identity file: age secret keys (`AGE-SECRET-KEY-1…`, as `age-keygen`
/// writes them) or an unencrypted ssh private key.
pub fn read_identity_file(path: &Path) -> Result<Vec<Box<dyn age::Identity>>> {
    let ctx = || format!("identity file {}", path.display());
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if text.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----")
        || text.starts_with(b"-----BEGIN RSA PRIVATE KEY-----")
    {
        let name = Some(path.display().to_string());
        let key =
            age::ssh::Identity::from_buffer(&text[..], name).map_err(|e| Error::usage(ctx(), e))?;
        return match key {
            age::ssh::Identity::Unencrypted(_) => Ok(vec![Box::new(key)]),
            age::ssh::Identity::Encrypted(_) => Err(Error::usage(
                ctx(),
                "the ssh key is passphrase-protected",
            )
            .with_hint("use an age identity (age-keygen), or an ssh key without a passphrase")),
            age::ssh::Identity::Unsupported(k) => {
                Err(Error::usage(ctx(), format!("unsupported ssh key: {k:?}")))
            }
        };
    }
    let ids = age::IdentityFile::from_buffer(&text[..])
        .and_then(|f| f.into_identities().map_err(io::Error::other))
        .map_err(|e| Error::usage(ctx(), e))?;
    if ids.is_empty() {
        return Err(Error::usage(
            ctx(),
            "has no identities (expected AGE-SECRET-KEY-1… lines)",
        ));
    }
    Ok(ids)
}

/// The recipients matching an age identity file's keys: what to encrypt to so
/// that the same identity file decrypts (ssh keys are not supported here).
pub fn recipients_of_identity_file(path: &Path) -> Result<Vec<Box<dyn age::Recipient + Send>>> {
    let ctx = || format!("identity file {}", path.display());
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    age::IdentityFile::from_buffer(&text[..])
        .map_err(|e| Error::usage(ctx(), e))?
        .to_recipients()
        .map_err(|e| {
            Error::usage(ctx(), format!("{e}"))
                .with_hint("use an age identity (age-keygen) or a passphrase")
        })
}

/// The passphrase from `--passphrase-file` (its first line) or `$SNAP_PASSPHRASE`.
pub fn read_passphrase(file: Option<&Path>) -> Result<Option<SecretString>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(Error::usage(
                format!("passphrase file {}", path.display()),
                "is empty",
            ));
        }
        return Ok(Some(SecretString::from(line.to_string())));
    }
    Ok(std::env::var(PASSPHRASE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .map(SecretString::from))
}

/// Wraps `out` so that what is written to it is encrypted; `finish` ends the age stream.
pub fn encrypting_writer<W: Write>(
    enc: &Encrypt,
    out: W,
) -> io::Result<age::stream::StreamWriter<W>> {
    let encryptor = match enc {
        Encrypt::Recipients(rs) => {
            age::Encryptor::with_recipients(rs.iter().map(|r| r.as_ref() as &dyn age::Recipient))
                .map_err(io::Error::other)?
        }
        Encrypt::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
    };
    encryptor.wrap_output(out)
}

/// Starts decrypting an age stream; a wrong or missing key is a usage error naming `what`.
pub fn decrypting_reader<R: Read>(
    dec: &Decrypt,
    what: &str,
    input: R,
) -> Result<age::stream::StreamReader<R>> {
    let decryptor = age::Decryptor::new(input)
        .map_err(|e| Error::data(what.to_string(), format!("not a readable age file: {e}")))?;
    let scrypt = dec
        .passphrase
        .as_ref()
        .map(|p| age::scrypt::Identity::new(p.clone()));
    let mut ids: Vec<&dyn age::Identity> = dec.identities.iter().map(|i| i.as_ref()).collect();
    if let Some(s) = &scrypt {
        ids.push(s);
    }
    if ids.is_empty() {
        let need = if decryptor.is_scrypt() {
            "a passphrase (--passphrase-file or $SNAP_PASSPHRASE)"
        } else {
            "an identity (--identity FILE)"
        };
        return Err(
            Error::usage(what.to_string(), "is encrypted").with_hint(format!("give {need}"))
        );
    }
    decryptor.decrypt(ids.into_iter()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => Error::usage(
            what.to_string(),
            "none of the given keys or passphrases opens it",
        ),
        other => Error::new(Exit::Data, what.to_string(), other),
    })
}

/// True when the bytes start like an age file.
pub fn is_age(head: &[u8]) -> bool {
    head.starts_with(b"age-encryption.org/v1")
        || head.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}
