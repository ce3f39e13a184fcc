//! Text from the network, made safe to show: control characters and bidirectional
//! controls become visible escapes.
//!
//! A chat line is written to a terminal, to a file (`servant > chat.log`), to a pipe and
//! to the log. Any of them may later reach a terminal (`cat chat.log`), where `ESC [2J`
//! clears the screen, `ESC ]0;…BEL` rewrites the window title and U+202E (RIGHT-TO-LEFT
//! OVERRIDE) turns the rest of a line around, so that what a reader sees is not what was
//! sent. So everything a peer (or a `telnet` user, or the manager's peer document)
//! supplies goes through [`Shown`] before it is written anywhere, and nothing else does:
//! the servant's own output (`/help` with its line breaks) and what the user typed are
//! written as they are.
//!
//! Escaped: the C0 controls but TAB, DEL, the C1 controls (as `\x1b`, `\x7f`, `\x85`), and
//! every character of Unicode's Bidi_Control property (U+061C, U+200E, U+200F,
//! U+202A–U+202E, U+2066–U+2069, as `\u{202e}`). A backslash is left as it is: text that
//! spells `\x1b` shows the same as an escaped ESC, which misleads nobody's terminal.

use std::fmt;

/// Whether `c` is shown as an escape.
pub fn needs_escape(c: char) -> bool {
    let n = c as u32;
    (n < 0x20 && c != '\t')
        || (0x7f..=0x9f).contains(&n)
        || matches!(n, 0x061c | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069)
}

/// True when some character of `s` needs an escape. Checks bytes first: only bytes below
/// 0x20, DEL, and the lead bytes of C1 (0xc2), U+061C (0xd8) and U+2000–U+2FFF (0xe2) can
/// start one, so plain text (ASCII or not) costs one pass over its bytes.
pub fn is_unsafe(s: &str) -> bool {
    let suspect = |b: &u8| (*b < 0x20 && *b != b'\t') || matches!(*b, 0x7f | 0xc2 | 0xd8 | 0xe2);
    s.as_bytes().iter().any(suspect) && s.chars().any(needs_escape)
}

/// Displays untrusted text with its dangerous characters escaped (see the module docs).
#[derive(Clone, Copy)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !is_unsafe(self.0) {
            return f.write_str(self.0);
        }
        let mut rest = self.0;
        while let Some((i, c)) = rest.char_indices().find(|&(_, c)| needs_escape(c)) {
            f.write_str(&rest[..i])?;
            if (c as u32) < 0x100 {
                write!(f, "\\x{:02x}", c as u32)?;
            } else {
                write!(f, "\\u{{{:x}}}", c as u32)?;
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `s` escaped, borrowed when nothing needed escaping (the common case).
pub fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    if is_unsafe(s) {
        std::borrow::Cow::Owned(Shown(s).to_string())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_become_visible_and_plain_text_stays() {
        assert_eq!(shown("\u{1b}[2J"), "\\x1b[2J");
        assert_eq!(shown("\u{1b}]0;owned\u{7}"), "\\x1b]0;owned\\x07");
        assert_eq!(shown("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(shown("a\u{85}b\u{7f}c\r"), "a\\x85b\\x7fc\\x0d");
        assert_eq!(
            shown("\u{2066}x\u{2069}\u{200f}\u{61c}"),
            "\\u{2066}x\\u{2069}\\u{200f}\\u{61c}"
        );
        for plain in [
            "",
            "tab\tkept",
            "ünïcödé — “quotes” ₂ €",
            "日本語",
            "\\x1b typed",
        ] {
            assert_eq!(shown(plain), plain);
            assert!(matches!(shown(plain), std::borrow::Cow::Borrowed(_)));
        }
        // Neighbours of the escaped ranges are left alone.
        assert_eq!(
            shown("\u{a0}\u{2029}\u{202f}\u{2065}\u{206a}"),
            "\u{a0}\u{2029}\u{202f}\u{2065}\u{206a}"
        );
    }
}
