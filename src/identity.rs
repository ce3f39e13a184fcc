//! Who a servant is: an Ed25519 key pair kept in a file beside its configuration, the id
//! derived from the public key, and the incarnation that numbers its runs.
//!
//! In the article (and in genp2p before keys) a servant was whoever it said it was: its
//! id was a random string it claimed in `HELLO`, so anyone could claim it. Now the id is
//! the fingerprint of a public key, the first 10 bytes of its BLAKE3 hash as 20 hex
//! digits, and every claim of an id is proved with the key: a signature over fresh
//! nonces in each handshake, and a signature on every chat line. An id is therefore
//! self-certifying: whoever shows a key whose fingerprint is the id, and a signature
//! that key made, is that servant, whatever the manager or a relay says.
//!
//! The key file (`alice.key` beside `alice.xml`, mode 0600, like ssh's private keys):
//!
//! ```text
//! # genp2p servant key: the secret behind id 3fa9c0d2e81b7a5c44d1. Keep it private.
//! secret 6a1f…(64 hex digits: the 32-byte Ed25519 seed)
//! incarnation 1765043412345
//! ```
//!
//! The incarnation numbers the servant's runs so that its sequence numbers, which start
//! again at 1 on every run, never repeat under the same id: every start takes the larger
//! of the last incarnation plus one and the time in milliseconds since 1970, writes it
//! back (atomically), and signs it into every line. A clock set back (a small host
//! without a real-time clock) still gives a larger number than the last run's.
//!
//! The file is locked while the servant runs, so two servants started on the same key
//! file (one config copied, say) do not become one id with two voices: the second is
//! refused with a clear error.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_compact as ed;

use crate::encoding::{hex, parse_hex};
use crate::files::{open_to_others, write_atomically, Access};

/// Bytes of the public key's BLAKE3 hash that make the id (20 hex digits).
pub const ID_BYTES: usize = 10;
/// Hex digits in an id.
pub const ID_LEN: usize = 2 * ID_BYTES;

/// Why a servant's key cannot be used.
#[derive(Debug)]
pub enum IdentityError {
    /// The key file exists but cannot be read.
    Read { path: PathBuf, source: io::Error },
    /// The key file is readable by others than its owner.
    TooOpen { path: PathBuf, mode: u32 },
    /// The key file says something wrong, on `line`.
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A new key or incarnation could not be written.
    Write { path: PathBuf, source: io::Error },
    /// Another running servant holds this key file.
    InUse { path: PathBuf },
    /// The operating system gave no random bytes.
    Random(String),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Read { path, source } => {
                write!(f, "{}: cannot read the key file: {source}", path.display())
            }
            IdentityError::TooOpen { path, mode } => write!(
                f,
                "{}: permissions {mode:04o} are too open: a key file must be readable by its owner only (chmod 600 {})",
                path.display(),
                path.display()
            ),
            IdentityError::Malformed {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            IdentityError::Write { path, source } => {
                write!(f, "{}: cannot write the key file: {source}", path.display())
            }
            IdentityError::InUse { path } => write!(
                f,
                "{}: this key file is in use by another running servant; give each servant a config (and key) of its own",
                path.display()
            ),
            IdentityError::Random(e) => write!(f, "no random bytes from the operating system: {e}"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// `N` fresh random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| IdentityError::Random(e.to_string()))?;
    Ok(b)
}

/// A fresh random number, for what must differ between runs but guards no secret (the
/// manager's epoch, a random generator's seed). Falls back to the clock and process id
/// only if the operating system gives no random bytes.
pub fn random_u64() -> u64 {
    match random_bytes::<8>() {
        Ok(b) => u64::from_be_bytes(b),
        Err(_) => {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ (u64::from(std::process::id()) << 40)
        }
    }
}

/// A fresh random token of 16 hex digits (the manager's epoch).
pub fn random_token() -> String {
    format!("{:016x}", random_u64())
}

/// The id of a public key: the first [`ID_BYTES`] of its BLAKE3 hash, in hex.
pub fn fingerprint(key: &[u8; 32]) -> String {
    hex(&blake3::hash(key).as_bytes()[..ID_BYTES])
}

/// A servant's public key, checked to be a valid Ed25519 point of large order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerKey([u8; 32]);

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({})", self.hex())
    }
}

impl PeerKey {
    /// A key from its 64 hex digits; `Err` says what is wrong with it.
    pub fn from_hex(s: &str) -> Result<PeerKey, String> {
        let bytes = parse_hex::<32>(s).map_err(|e| format!("bad key: {e}"))?;
        PeerKey::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Result<PeerKey, String> {
        ed::PublicKey::new(bytes)
            .validate()
            .map_err(|_| "bad key: not a valid Ed25519 public key".to_owned())?;
        Ok(PeerKey(bytes))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// The servant id this key proves.
    pub fn id(&self) -> String {
        fingerprint(&self.0)
    }

    /// Whether `sig` is this key's signature of `msg`.
    pub fn verifies(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.verifies_parts(&[msg], sig)
    }

    /// Whether `sig` is this key's signature of the concatenation of `parts` (checked
    /// without copying them together).
    pub fn verifies_parts(&self, parts: &[&[u8]], sig: &[u8; 64]) -> bool {
        let pk = ed::PublicKey::new(self.0);
        let Ok(mut st) = pk.verify_incremental(&ed::Signature::new(*sig)) else {
            return false;
        };
        for p in parts {
            st.absorb(p);
        }
        st.verify().is_ok()
    }
}

/// A servant's own key pair, id and incarnation.
pub struct Identity {
    keys: ed::KeyPair,
    pub key: PeerKey,
    pub id: String,
    /// This run's number (see the module docs).
    pub incarnation: u64,
    /// The key file, if the key has one.
    pub path: Option<PathBuf>,
    /// Held open and locked for as long as the servant runs.
    _lock: Option<File>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({}, incarnation {})", self.id, self.incarnation)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Identity {
    fn from_seed(seed: [u8; 32], incarnation: u64, path: Option<PathBuf>) -> Identity {
        let keys = ed::KeyPair::from_seed(ed::Seed::new(seed));
        let key = PeerKey(*keys.pk);
        Identity {
            id: key.id(),
            keys,
            key,
            incarnation,
            path,
            _lock: None,
        }
    }

    /// A key for this run only (a servant started without a configuration file).
    pub fn ephemeral() -> Result<Identity, IdentityError> {
        Ok(Identity::from_seed(random_bytes()?, now_ms(), None))
    }

    /// Reads the key at `path`, or creates it there when there is no file yet, and starts a
    /// new incarnation (written back to the file). Locks the file for this process.
    ///
    /// The file is replaced by a rename when the incarnation is written, so the lock is
    /// taken on the old file before reading it and on the new one after writing it; a
    /// lock taken on a file that a rename has since replaced is worth nothing, so each is
    /// checked to still be the file at `path`.
    pub fn load_or_create(path: &Path) -> Result<Identity, IdentityError> {
        let read_error = |source| IdentityError::Read {
            path: path.to_owned(),
            source,
        };
        // The old file, locked and read (None: there is none yet).
        let old = match File::open(path) {
            Ok(f) => {
                let meta = f.metadata().map_err(read_error)?;
                check_secret(path, &meta)?;
                lock_current(path, &f)?;
                let mut text = String::new();
                io::Read::read_to_string(&mut &f, &mut text).map_err(read_error)?;
                Some((f, parse_key_file(path, &text)?))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(read_error(source)),
        };
        let (seed, last) = match &old {
            Some((_, (seed, last))) => (*seed, Some(*last)),
            None => (random_bytes()?, None),
        };
        let incarnation = last.map_or(0, |l| l.saturating_add(1)).max(now_ms());
        let mut me = Identity::from_seed(seed, incarnation, Some(path.to_owned()));
        let text = me.file_text(&seed);
        write_atomically(path, text.as_bytes(), Access::Private).map_err(|source| {
            IdentityError::Write {
                path: path.to_owned(),
                source,
            }
        })?;
        let new = File::open(path).map_err(read_error)?;
        lock_current(path, &new)?;
        // Two first starts at once each wrote a key of their own: only one is in the file.
        let mut written = String::new();
        io::Read::read_to_string(&mut &new, &mut written).map_err(read_error)?;
        if written != text {
            return Err(IdentityError::InUse {
                path: path.to_owned(),
            });
        }
        drop(old);
        me._lock = Some(new);
        Ok(me)
    }

    /// The key at `path` as it is, without a new incarnation or a lock (to show it while
    /// the servant runs); created as by `load_or_create` when there is none yet.
    pub fn read_only(path: &Path) -> Result<Identity, IdentityError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Identity::load_or_create(path),
            Err(source) => {
                return Err(IdentityError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let text = read_secret(path, &meta)?;
        let (seed, last) = parse_key_file(path, &text)?;
        Ok(Identity::from_seed(seed, last, Some(path.to_owned())))
    }

    fn file_text(&self, seed: &[u8; 32]) -> String {
        format!(
            "# genp2p servant key: the secret behind id {}. Keep it private.\nsecret {}\nincarnation {}\n",
            self.id,
            hex(seed),
            self.incarnation
        )
    }

    /// This servant's signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        *self.keys.sk.sign(msg, None)
    }

    /// The costly half of a signature, made before the message is known (see
    /// [`Presigned`]).
    pub fn presign(&self) -> Presigned {
        Presigned(self.keys.sk.sign_incremental(ed::Noise::generate()))
    }
}

/// A signature begun before its message is known, for the one signature on each chat
/// line: the typist signs at the moment a line is sent, and the fixed-base scalar
/// multiplication that is most of an Ed25519 signature (about 15 of its 19 µs here)
/// does not depend on the message when the nonce is random, so it is done beforehand.
/// This is ed25519-compact's own streaming signer: the nonce comes from fresh OS
/// randomness (with the `random` feature) mixed with the secret, and the signature is
/// an ordinary Ed25519 signature that any verifier accepts.
///
/// A nonce used for two messages would give the key away, so a `Presigned` is not
/// `Clone` and [`Presigned::sign`] consumes it: each is used for one message, once.
pub struct Presigned(ed::SigningState);

impl Presigned {
    /// The signature of the concatenation of `parts`.
    pub fn sign(self, parts: &[&[u8]]) -> [u8; 64] {
        let mut st = self.0;
        for p in parts {
            st.absorb(p);
        }
        *st.sign()
    }
}

/// A network's shared secret (`<networkkey>`): only servants that prove they hold it
/// are listed by the manager and accepted by servants. 32 bytes, in a file of 64 hex
/// digits (`servant --new-network-key FILE` writes one), mode 0600 like a key file.
#[derive(Clone)]
pub struct NetworkKey([u8; 32]);

impl fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkKey(..)")
    }
}

impl NetworkKey {
    /// Reads the network key file at `path`.
    pub fn load(path: &Path) -> Result<NetworkKey, IdentityError> {
        let meta = std::fs::metadata(path).map_err(|source| IdentityError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = read_secret(path, &meta)?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        parse_hex::<32>(line)
            .map(NetworkKey)
            .map_err(|e| IdentityError::Malformed {
                path: path.to_owned(),
                line: 1 + text.lines().position(|l| l.trim() == line).unwrap_or(0),
                message: format!("a network key is 64 lowercase hex digits: {e}"),
            })
    }

    /// Writes a fresh network key to `path` (mode 0600); refuses to replace a file.
    pub fn create(path: &Path) -> Result<(), IdentityError> {
        if path.exists() {
            return Err(IdentityError::Write {
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::AlreadyExists, "a file is already there"),
            });
        }
        let key: [u8; 32] = random_bytes()?;
        let text = format!(
            "# genp2p network key: give this file (mode 0600) to every servant and manager of the network\n{}\n",
            hex(&key)
        );
        write_atomically(path, text.as_bytes(), Access::Private).map_err(|source| {
            IdentityError::Write {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// The 16-byte proof of holding this key, for `purpose` over `transcript`.
    pub fn prove(&self, purpose: &str, transcript: &[u8]) -> [u8; 16] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(purpose.as_bytes());
        h.update(b"\n");
        h.update(transcript);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out
    }

    /// Whether `proof` is the proof for `purpose` over `transcript` (constant time).
    pub fn checks(&self, proof: &[u8; 16], purpose: &str, transcript: &[u8]) -> bool {
        constant_time_eq::constant_time_eq_16(proof, &self.prove(purpose, transcript))
    }
}

/// A secret's file must be a regular file that only its owner may read.
fn check_secret(path: &Path, meta: &std::fs::Metadata) -> Result<(), IdentityError> {
    if !meta.is_file() {
        return Err(IdentityError::Read {
            path: path.to_owned(),
            source: io::Error::other("not a regular file"),
        });
    }
    match open_to_others(meta) {
        Some(mode) => Err(IdentityError::TooOpen {
            path: path.to_owned(),
            mode,
        }),
        None => Ok(()),
    }
}

/// The text of a secret's file, once `check_secret` passes.
fn read_secret(path: &Path, meta: &std::fs::Metadata) -> Result<String, IdentityError> {
    check_secret(path, meta)?;
    std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Locks `file` (opened from `path`) for this process, and checks that it is still the file
/// at `path`.
fn lock_current(path: &Path, file: &File) -> Result<(), IdentityError> {
    use std::os::unix::fs::MetadataExt;
    let in_use = || IdentityError::InUse {
        path: path.to_owned(),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(in_use()),
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(IdentityError::Read {
                path: path.to_owned(),
                source,
            })
        }
    }
    let (locked, now) = (file.metadata(), std::fs::metadata(path));
    match (locked, now) {
        (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino() => Ok(()),
        _ => Err(in_use()),
    }
}

/// The seed and last incarnation in a key file's text.
fn parse_key_file(path: &Path, text: &str) -> Result<([u8; 32], u64), IdentityError> {
    let bad = |line: usize, message: String| IdentityError::Malformed {
        path: path.to_owned(),
        line,
        message,
    };
    let (mut seed, mut incarnation) = (None, None);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(' ') {
            Some(("secret", v)) if seed.is_none() => {
                seed = Some(parse_hex::<32>(v.trim()).map_err(|e| {
                    bad(
                        n,
                        format!("the secret must be 64 lowercase hex digits: {e}"),
                    )
                })?)
            }
            Some(("incarnation", v)) if incarnation.is_none() => {
                incarnation = Some(crate::encoding::parse_u64(v.trim()).map_err(|e| {
                    bad(n, format!("the incarnation must be a decimal number: {e}"))
                })?)
            }
            _ => {
                let shown: String = line.chars().take(40).collect();
                return Err(bad(
                    n,
                    format!(
                        "unexpected line {:?} (a key file holds 'secret HEX' and 'incarnation N')",
                        crate::escape::Shown(&shown)
                    ),
                ));
            }
        }
    }
    match (seed, incarnation) {
        (Some(s), Some(i)) => Ok((s, i)),
        (None, _) => Err(bad(1, "no 'secret' line: not a genp2p key file".into())),
        (_, None) => Err(bad(1, "no 'incarnation' line".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fingerprints_and_signatures_verify() {
        let me = Identity::ephemeral().unwrap();
        assert_eq!(me.id.len(), ID_LEN);
        assert_eq!(me.id, me.key.id());
        let sig = me.sign(b"hello");
        assert!(me.key.verifies(b"hello", &sig));
        let (a, b) = (
            me.presign().sign(&[b"hel", b"lo"]),
            me.presign().sign(&[b"hello"]),
        );
        assert!(me.key.verifies(b"hello", &a) && me.key.verifies(b"hello", &b));
        assert_ne!(a, b, "a fresh nonce for each");
        assert!(!me.key.verifies(b"hellO", &sig));
        let other = Identity::ephemeral().unwrap();
        assert!(!other.key.verifies(b"hello", &sig));
        assert_eq!(PeerKey::from_hex(&me.key.hex()), Ok(me.key));
        assert!(PeerKey::from_hex(&"00".repeat(32)).is_err(), "small order");
        assert!(PeerKey::from_hex("abc").is_err());
    }

    #[test]
    fn the_key_file_persists_the_id_and_counts_incarnations() {
        let dir = std::env::temp_dir().join(format!("genp2p-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.key");
        let first = Identity::load_or_create(&path).unwrap();
        assert!(matches!(
            Identity::load_or_create(&path),
            Err(IdentityError::InUse { .. })
        ));
        let (id, inc) = (first.id.clone(), first.incarnation);
        drop(first);
        let second = Identity::load_or_create(&path).unwrap();
        assert_eq!(second.id, id);
        assert!(second.incarnation > inc);
        drop(second);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("incarnation ", "incarnation 9")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Identity::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("permissions 0644 are too open"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let far = Identity::load_or_create(&path).unwrap();
        assert!(
            far.incarnation > 9_000_000_000_000,
            "a larger last incarnation is kept"
        );
        drop(far);
        std::fs::write(&path, "secret 12\nincarnation 1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Identity::load_or_create(&path).unwrap_err().to_string();
        assert!(e.ends_with("a.key:1: the secret must be 64 lowercase hex digits: 2 hex digits where 64 were expected"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
