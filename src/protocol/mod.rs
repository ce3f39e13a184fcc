//! The words genp2p programs say to each other: commands to the connection manager and
//! the peer document it answers with ([`manager`]), the lines servants send one another
//! ([`peer`]), and the overlay's lines between neighbours ([`overlay`]).
//!
//! The original sent bare strings (`needs peer list`) and MSXML documents over Winsock.
//! We keep the article's literal command and its `<peers>` document, and add only what a
//! real network needs: a version on every list so a servant can tell a fresh list from a
//! stale one, small `<join>`/`<leave>` documents so a change costs bytes in proportion to
//! the change rather than to the whole network, and, on every chat line, its author's id,
//! run and sequence number (so a receiver drops duplicates and notices gaps) and its
//! author's signature (so nobody can speak for another). Every message is one line of
//! UTF-8 (see `lines`), keys and signatures are hex, and `telnet` and `nc` remain usable
//! clients.
//!
//! docs/PROTOCOL.md is the specification; these modules are its implementation, and the
//! tests in them pin the two together.

pub mod manager;
pub mod overlay;
pub mod peer;

use std::fmt;

pub use manager::*;
pub use peer::*;

/// Longest line a connection manager accepts from a client.
pub const MANAGER_LINE_LIMIT: usize = 4 * 1024;
/// Longest line a servant accepts from the manager: a whole peer document of a large network.
pub const PEER_DOC_LINE_LIMIT: usize = 16 * 1024 * 1024;
/// Longest chat text a servant sends, in bytes.
pub const TEXT_LIMIT: usize = 8 * 1024;
/// Longest line a servant accepts from a peer: a chat text, its header and signature
/// (at most 240 bytes with the longest name and numbers) and a link's tag (33 bytes).
pub const CHAT_LINE_LIMIT: usize = TEXT_LIMIT + 512;
/// Longest servant name and id, in bytes.
pub const NAME_LIMIT: usize = 32;

/// Why a line could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(msg.into()))
}

/// Names travel inside space-separated lines and XML text, so they are short and hold no
/// white space, no control characters and none of `<>&"'`; nor U+FFFE or U+FFFF, the
/// only characters besides controls that XML 1.0 cannot hold at all (one such name in the
/// manager's `<peers>` would make the whole list unreadable for every servant); nor the
/// bidirectional controls, which would turn a line around where the name is shown.
pub fn check_token(what: &str, value: &str) -> Result<(), ProtocolError> {
    if value.is_empty() {
        return err(format!("{what} is empty"));
    }
    if value.len() > NAME_LIMIT {
        return err(format!(
            "{what} {value:?} is longer than {NAME_LIMIT} bytes"
        ));
    }
    // Names and ids are nearly always ASCII: check bytes, and fall back to characters
    // only when there is something else.
    let plain = |b: &u8| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'&' | b'"' | b'\'');
    if value.bytes().all(|b| plain(&b)) {
        return Ok(());
    }
    if let Some(c) = value.chars().find(|&c| {
        c.is_whitespace()
            || c.is_control()
            || crate::escape::needs_escape(c)
            || matches!(c, '<' | '>' | '&' | '"' | '\'' | '\u{fffe}' | '\u{ffff}')
    }) {
        return err(format!("{what} {value:?} contains {c:?}"));
    }
    Ok(())
}

/// A servant id: the fingerprint of its key, exactly [`ID_LEN`](crate::identity::ID_LEN)
/// lowercase hex digits.
pub fn check_id(what: &str, value: &str) -> Result<(), ProtocolError> {
    let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if value.len() == crate::identity::ID_LEN && value.bytes().all(|b| hex(&b)) {
        return Ok(());
    }
    let shown: String = value.chars().take(40).collect();
    err(format!(
        "{what} {:?} is not an id ({} lowercase hex digits)",
        crate::escape::Shown(&shown),
        crate::identity::ID_LEN
    ))
}

/// A decimal field in its one spelling (see `encoding`), named in the error.
pub fn number(what: &str, value: &str) -> Result<u64, ProtocolError> {
    crate::encoding::parse_u64(value).map_err(|e| {
        let shown: String = value.chars().take(24).collect();
        ProtocolError(format!("{what} {:?}: {e}", crate::escape::Shown(&shown)))
    })
}

/// `N` bytes as a hex field, named in the error.
pub fn hex_field<const N: usize>(what: &str, value: &str) -> Result<[u8; N], ProtocolError> {
    crate::encoding::parse_hex::<N>(value).map_err(|e| ProtocolError(format!("{what}: {e}")))
}
