//! The servant-to-servant handshake: both ends prove the key behind their id, over fresh
//! keys, and agree on a secret that tags every line of the connection.
//!
//! The 2004 design took a peer's word for who it was. Here the opener (the servant whose
//! sender connects, or a puller) and the listener run a signed Diffie-Hellman exchange in
//! the manner of SIGMA (the design behind IKE and TLS 1.3's handshake):
//!
//! ```text
//! opener:   HELLO 2 ID NAME INC KEY EPH_o
//! listener: WELCOME ID KEY EPH_l SIG_l(T) [NET_l(T)]
//! opener:   PROOF SIG_o(T) [NET_o(T)]
//! listener: READY LAST
//! ```
//!
//! where `EPH_o`, `EPH_l` are X25519 keys made for this connection only and
//! `T = BLAKE3(HELLO line, EPH_l's side: KEY, EPH_l)`. Each side signs `T`, which holds
//! both identities and both fresh keys: a recorded handshake replayed to a servant meets
//! a new `EPH_l` and its old `PROOF` no longer verifies; a recorded `WELCOME` replayed to
//! an opener misses its new `EPH_o`. The connection's secret is derived from the X25519
//! result and `T`, so only the two ends know it, and each line the opener writes after
//! `READY` carries a 16-byte keyed BLAKE3 tag of it ([`Tags`]): an injected or altered
//! line is refused at the cost of a hash, not a signature check.
//!
//! An overlay's neighbour link opens with `LINK` in place of `HELLO` and carries lines
//! both ways: the listener's lines are tagged with a second key derived beside the first
//! (`Link::back`), so neither end can be sent its own lines back as the other's.
//!
//! With a network key (`<networkkey>`), each side adds a proof of holding it over `T`.
//!
//! This module does no I/O: it turns received lines into lines to send, so it can be
//! tested and fuzzed on its own; `servant::sender`, `servant::listener` and
//! `servant::hub` and `servant::puller` move the lines.

use std::fmt;

use ed25519_compact::x25519;

use crate::identity::{random_bytes, Identity, NetworkKey, PeerKey};
use crate::protocol::{Hello, PeerLine, Proof, Welcome};

const TRANSCRIPT: &str = "genp2p 2 link transcript";
const SESSION: &str = "genp2p 2 link tags";
const SESSION_BACK: &str = "genp2p 2 link tags, listener to opener";
const SIGNED_WELCOME: &[u8] = b"genp2p-welcome-2 ";
const SIGNED_PROOF: &[u8] = b"genp2p-proof-2 ";
/// What a block's tag covers starts with this, so a block is never taken for a line.
const BLOCK_TAGGED: &[u8] = b"BLOCK\n";

/// What kind of connection the opener asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `HELLO`: a sending connection; the opener writes its chat on it.
    Send,
    /// `PULL`: a relay connection; the listener writes the chat it relays on it.
    Pull,
    /// `LINK`: a neighbour link of the overlay; both ends write on it, each direction
    /// tagged with a key of its own. With the port the opener listens on (0: none).
    Link(u16),
}

/// Why a handshake failed; each names what the other side got wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// A key is not a valid Ed25519 or X25519 key.
    BadKey(String),
    /// The key's fingerprint is not the id claimed with it.
    WrongKeyForId { claimed: String, proved: String },
    /// The listener is not the servant the opener meant to reach.
    NotTheListed { expected: String, found: String },
    /// A `WELCOME` or `PROOF` whose signature does not verify.
    BadSignature(&'static str),
    /// This network has a key and the other side proved none, or another.
    NetworkKey(&'static str),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::BadKey(e) => f.write_str(e),
            HandshakeError::WrongKeyForId { claimed, proved } => {
                write!(f, "claims id {claimed} with a key whose id is {proved}")
            }
            HandshakeError::NotTheListed { expected, found } => write!(
                f,
                "is the servant with id {found}, not the listed {expected}"
            ),
            HandshakeError::BadSignature(what) => {
                write!(f, "the signature of its {what} does not verify")
            }
            HandshakeError::NetworkKey(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// The secret that tags the lines of one connection, in the opener's direction.
#[derive(Clone)]
pub struct Tags([u8; 32]);

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tags(..)")
    }
}

impl Tags {
    /// The tag of `line` (without its line end).
    pub fn tag(&self, line: &[u8]) -> [u8; 16] {
        let mut out = [0u8; 16];
        out.copy_from_slice(&blake3::keyed_hash(&self.0, line).as_bytes()[..16]);
        out
    }

    /// `TAG ` for `line` (without its line end), as written before it.
    pub fn prefix(&self, line: &[u8]) -> [u8; 33] {
        let tag = self.tag(line);
        let mut out = [b' '; 33];
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in tag.iter().enumerate() {
            out[2 * i] = DIGITS[(b >> 4) as usize];
            out[2 * i + 1] = DIGITS[(b & 15) as usize];
        }
        out
    }

    /// `line` (with its `\n`) as written on the wire: its tag, a space, the line.
    pub fn tagged(&self, line: &str) -> Vec<u8> {
        let body = line.trim_end_matches('\n').as_bytes();
        [&self.prefix(body)[..], line.as_bytes()].concat()
    }

    /// The tag of a block of lines: `lines` is their bytes, each with its `\n`.
    pub fn block(&self, lines: &[u8]) -> [u8; 16] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(BLOCK_TAGGED);
        h.update(lines);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out
    }

    /// Whether `tag` is the tag of the block `lines` (constant time).
    pub fn checks_block(&self, tag: &[u8; 16], lines: &[u8]) -> bool {
        constant_time_eq::constant_time_eq_16(tag, &self.block(lines))
    }

    /// Whether `tag` is `line`'s tag (constant time).
    pub fn checks(&self, tag: &[u8; 16], line: &[u8]) -> bool {
        constant_time_eq::constant_time_eq_16(tag, &self.tag(line))
    }
}

/// The other end of a finished handshake.
#[derive(Debug, Clone)]
pub struct Link {
    pub peer: PeerKey,
    pub peer_id: String,
    /// The opener's name and run, as its `HELLO` said (on the opener's side: its own).
    pub name: String,
    pub incarnation: u64,
    /// What tags the opener's lines.
    pub tags: Tags,
    /// What tags the listener's lines on a `LINK`: another key than the opener's, so a
    /// line of one end sent back to it is not taken for the other end's.
    pub back: Tags,
}

fn transcript(hello_line: &str, listener_key: &[u8; 32], listener_eph: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(TRANSCRIPT);
    h.update(hello_line.trim_end_matches('\n').as_bytes());
    h.update(b"\n");
    h.update(listener_key);
    h.update(listener_eph);
    *h.finalize().as_bytes()
}

fn signed(label: &[u8], t: &[u8; 32]) -> Vec<u8> {
    [label, t.as_slice()].concat()
}

/// The connection's tag keys: the opener's direction, and the listener's.
fn session(shared: &[u8; 32], t: &[u8; 32]) -> (Tags, Tags) {
    let key = |context: &str| {
        let mut h = blake3::Hasher::new_derive_key(context);
        h.update(shared);
        h.update(t);
        Tags(*h.finalize().as_bytes())
    };
    (key(SESSION), key(SESSION_BACK))
}

/// A fresh X25519 key pair for one connection.
fn ephemeral() -> Result<(x25519::SecretKey, [u8; 32]), HandshakeError> {
    let seed: [u8; 32] = random_bytes().map_err(|e| HandshakeError::BadKey(e.to_string()))?;
    let sk = x25519::SecretKey::new(seed);
    let pk = sk
        .recover_public_key()
        .map_err(|_| HandshakeError::BadKey("no ephemeral key could be made".into()))?;
    Ok((sk, *pk))
}

fn shared_secret(sk: &x25519::SecretKey, their: &[u8; 32]) -> Result<[u8; 32], HandshakeError> {
    x25519::PublicKey::new(*their)
        .dh(sk)
        .map(|d| *d)
        .map_err(|_| HandshakeError::BadKey("its ephemeral key is not a usable X25519 key".into()))
}

/// The key behind a claimed id, checked.
fn proved_key(claimed: &str, key: &[u8; 32]) -> Result<PeerKey, HandshakeError> {
    let key = PeerKey::from_bytes(*key).map_err(HandshakeError::BadKey)?;
    if key.id() != claimed {
        return Err(HandshakeError::WrongKeyForId {
            claimed: claimed.to_owned(),
            proved: key.id(),
        });
    }
    Ok(key)
}

/// Checks a network proof (when this side has a network key).
fn check_net(
    net: Option<&NetworkKey>,
    proof: Option<&[u8; 16]>,
    purpose: &str,
    t: &[u8; 32],
) -> Result<(), HandshakeError> {
    match (net, proof) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(HandshakeError::NetworkKey(
            "proves no network key, and this network has one",
        )),
        (Some(k), Some(p)) if k.checks(p, purpose, t) => Ok(()),
        (Some(_), Some(_)) => Err(HandshakeError::NetworkKey(
            "proves another network key than this network's",
        )),
    }
}

/// The opener's side, between its `HELLO` and the listener's `WELCOME`.
pub struct Opening {
    hello_line: String,
    hello: Hello,
    eph: x25519::SecretKey,
}

impl Opening {
    /// Starts a handshake as `me` called `name`; returns the state and the first line.
    pub fn new(me: &Identity, name: &str, mode: Mode) -> Result<(Opening, String), HandshakeError> {
        let (eph, eph_pub) = ephemeral()?;
        let hello = Hello {
            id: me.id.clone(),
            name: name.to_owned(),
            incarnation: me.incarnation,
            key: *me.key.bytes(),
            eph: eph_pub,
        };
        let line = match mode {
            Mode::Send => PeerLine::Hello(hello.clone()),
            Mode::Pull => PeerLine::Pull(hello.clone()),
            Mode::Link(port) => PeerLine::Link(hello.clone(), port),
        }
        .to_line();
        Ok((
            Opening {
                hello_line: line.clone(),
                hello,
                eph,
            },
            line,
        ))
    }

    /// Checks the listener's `WELCOME` (against `expect`, the key the opener meant to
    /// reach, when it knows it) and returns the link and the `PROOF` line.
    pub fn finish(
        self,
        me: &Identity,
        welcome: &Welcome,
        expect: Option<&PeerKey>,
        net: Option<&NetworkKey>,
    ) -> Result<(Link, String), HandshakeError> {
        let peer = proved_key(&welcome.id, &welcome.key)?;
        if let Some(want) = expect {
            if *want != peer {
                return Err(HandshakeError::NotTheListed {
                    expected: want.id(),
                    found: peer.id(),
                });
            }
        }
        let t = transcript(&self.hello_line, &welcome.key, &welcome.eph);
        if !peer.verifies(&signed(SIGNED_WELCOME, &t), &welcome.sig) {
            return Err(HandshakeError::BadSignature("WELCOME"));
        }
        check_net(net, welcome.net.as_ref(), "welcome", &t)?;
        let (tags, back) = session(&shared_secret(&self.eph, &welcome.eph)?, &t);
        let proof = PeerLine::Proof(Proof {
            sig: me.sign(&signed(SIGNED_PROOF, &t)),
            net: net.map(|k| k.prove("proof", &t)),
        })
        .to_line();
        Ok((
            Link {
                peer_id: peer.id(),
                peer,
                name: self.hello.name,
                incarnation: self.hello.incarnation,
                tags,
                back,
            },
            proof,
        ))
    }
}

/// The listener's side, between its `WELCOME` and the opener's `PROOF`.
pub struct Answered {
    t: [u8; 32],
    link: Link,
}

impl Answered {
    /// Answers `hello` (received as `hello_line`) as `me`; returns the state and the
    /// `WELCOME` line. Refuses a key that does not prove the claimed id.
    pub fn new(
        me: &Identity,
        hello_line: &str,
        hello: &Hello,
        net: Option<&NetworkKey>,
    ) -> Result<(Answered, String), HandshakeError> {
        let peer = proved_key(&hello.id, &hello.key)?;
        let (eph, eph_pub) = ephemeral()?;
        let t = transcript(hello_line, me.key.bytes(), &eph_pub);
        let (tags, back) = session(&shared_secret(&eph, &hello.eph)?, &t);
        let welcome = PeerLine::Welcome(Welcome {
            id: me.id.clone(),
            key: *me.key.bytes(),
            eph: eph_pub,
            sig: me.sign(&signed(SIGNED_WELCOME, &t)),
            net: net.map(|k| k.prove("welcome", &t)),
        })
        .to_line();
        Ok((
            Answered {
                t,
                link: Link {
                    peer_id: hello.id.clone(),
                    peer,
                    name: hello.name.clone(),
                    incarnation: hello.incarnation,
                    tags,
                    back,
                },
            },
            welcome,
        ))
    }

    /// Checks the opener's `PROOF`: the link is authenticated.
    pub fn finish(self, proof: &Proof, net: Option<&NetworkKey>) -> Result<Link, HandshakeError> {
        if !self
            .link
            .peer
            .verifies(&signed(SIGNED_PROOF, &self.t), &proof.sig)
        {
            return Err(HandshakeError::BadSignature("PROOF"));
        }
        check_net(net, proof.net.as_ref(), "proof", &self.t)?;
        Ok(self.link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_welcome(line: &str) -> Welcome {
        match PeerLine::parse(line.trim_end()) {
            Some(Ok(PeerLine::Welcome(w))) => w,
            other => panic!("{other:?}"),
        }
    }

    fn parse_proof(line: &str) -> Proof {
        match PeerLine::parse(line.trim_end()) {
            Some(Ok(PeerLine::Proof(p))) => p,
            other => panic!("{other:?}"),
        }
    }

    fn parse_hello(line: &str) -> Hello {
        match PeerLine::parse(line.trim_end()) {
            Some(Ok(PeerLine::Hello(h))) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn both_ends_agree_and_prove_their_keys() {
        let (a, b) = (
            Identity::ephemeral().unwrap(),
            Identity::ephemeral().unwrap(),
        );
        let (opening, hello) = Opening::new(&a, "alice", Mode::Send).unwrap();
        let (answered, welcome) = Answered::new(&b, &hello, &parse_hello(&hello), None).unwrap();
        let (la, proof) = opening
            .finish(&a, &parse_welcome(&welcome), Some(&b.key), None)
            .unwrap();
        let lb = answered.finish(&parse_proof(&proof), None).unwrap();
        assert_eq!(la.peer, b.key);
        assert_eq!(lb.peer, a.key);
        assert_eq!((lb.name.as_str(), lb.incarnation), ("alice", a.incarnation));
        let line = b"MSG something";
        assert!(lb.tags.checks(&la.tags.tag(line), line));
        assert!(!lb.tags.checks(&la.tags.tag(line), b"MSG somethinG"));
    }

    #[test]
    fn a_link_tags_each_direction_with_its_own_key() {
        let (a, b) = (
            Identity::ephemeral().unwrap(),
            Identity::ephemeral().unwrap(),
        );
        let (opening, hello) = Opening::new(&a, "alice", Mode::Link(4000)).unwrap();
        assert!(hello.starts_with("LINK 2 "), "{hello}");
        let h = match PeerLine::parse(hello.trim_end()) {
            Some(Ok(PeerLine::Link(h, 4000))) => h,
            other => panic!("{other:?}"),
        };
        let (answered, welcome) = Answered::new(&b, &hello, &h, None).unwrap();
        let (la, proof) = opening
            .finish(&a, &parse_welcome(&welcome), Some(&b.key), None)
            .unwrap();
        let lb = answered.finish(&parse_proof(&proof), None).unwrap();
        let line = b"PRUNE";
        // Each end checks the other's direction...
        assert!(lb.tags.checks(&la.tags.tag(line), line));
        assert!(la.back.checks(&lb.back.tag(line), line));
        // ...and a line of its own, sent back to it, fails.
        assert!(!la.back.checks(&la.tags.tag(line), line));
        assert!(!lb.tags.checks(&lb.back.tag(line), line));
    }

    #[test]
    fn replays_and_impostors_are_refused() {
        let (a, b, eve) = (
            Identity::ephemeral().unwrap(),
            Identity::ephemeral().unwrap(),
            Identity::ephemeral().unwrap(),
        );
        // A recorded handshake replayed to b: its new WELCOME makes the old PROOF useless.
        let (opening, hello) = Opening::new(&a, "alice", Mode::Send).unwrap();
        let (answered, welcome) = Answered::new(&b, &hello, &parse_hello(&hello), None).unwrap();
        let (_, proof) = opening
            .finish(&a, &parse_welcome(&welcome), None, None)
            .unwrap();
        answered.finish(&parse_proof(&proof), None).unwrap();
        let (replayed, _) = Answered::new(&b, &hello, &parse_hello(&hello), None).unwrap();
        assert_eq!(
            replayed.finish(&parse_proof(&proof), None).unwrap_err(),
            HandshakeError::BadSignature("PROOF")
        );
        // A recorded WELCOME replayed to a new opening.
        let (opening2, _) = Opening::new(&a, "alice", Mode::Send).unwrap();
        assert_eq!(
            opening2
                .finish(&a, &parse_welcome(&welcome), None, None)
                .unwrap_err(),
            HandshakeError::BadSignature("WELCOME")
        );
        // eve claims a's id with her own key.
        let mut forged = parse_hello(&hello);
        forged.key = *eve.key.bytes();
        assert!(matches!(
            Answered::new(&b, &hello, &forged, None),
            Err(HandshakeError::WrongKeyForId { .. })
        ));
        // eve answers in b's place: she is not the listed b.
        let (opening3, hello3) = Opening::new(&a, "alice", Mode::Send).unwrap();
        let (_, eves) = Answered::new(&eve, &hello3, &parse_hello(&hello3), None).unwrap();
        assert!(matches!(
            opening3.finish(&a, &parse_welcome(&eves), Some(&b.key), None),
            Err(HandshakeError::NotTheListed { .. })
        ));
    }

    #[test]
    fn a_network_key_must_be_proved_by_both() {
        let dir = std::env::temp_dir().join(format!("genp2p-netkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (p1, p2) = (dir.join("n1"), dir.join("n2"));
        NetworkKey::create(&p1).unwrap();
        NetworkKey::create(&p2).unwrap();
        assert!(NetworkKey::create(&p1).is_err(), "never replaces a key");
        let (k1, k2) = (
            NetworkKey::load(&p1).unwrap(),
            NetworkKey::load(&p2).unwrap(),
        );
        let (a, b) = (
            Identity::ephemeral().unwrap(),
            Identity::ephemeral().unwrap(),
        );
        for (ka, kb, ok) in [
            (Some(&k1), Some(&k1), true),
            (Some(&k1), Some(&k2), false),
            (None, Some(&k1), false),
            (Some(&k1), None, false),
        ] {
            let (opening, hello) = Opening::new(&a, "alice", Mode::Pull).unwrap();
            let (answered, welcome) =
                Answered::new(&b, &hello, &parse_hello_any(&hello), kb).unwrap();
            let opened = opening.finish(&a, &parse_welcome(&welcome), None, ka);
            let done = opened.and_then(|(_, proof)| answered.finish(&parse_proof(&proof), kb));
            assert_eq!(done.is_ok(), ok, "{:?} {:?}", ka.is_some(), kb.is_some());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn parse_hello_any(line: &str) -> Hello {
        match PeerLine::parse(line.trim_end()) {
            Some(Ok(PeerLine::Hello(h) | PeerLine::Pull(h))) => h,
            other => panic!("{other:?}"),
        }
    }
}
