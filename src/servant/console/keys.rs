//! Keys from the bytes a terminal sends in raw mode.
//!
//! A terminal sends a printable key as its UTF-8 bytes, a Ctrl key as one control byte,
//! and the arrows, Home, End and Delete as escape sequences whose spelling varies
//! (`ESC [ H`, `ESC O H`, `ESC [ 1 ~`, `ESC [ 7 ~` are all Home). The decoder takes one
//! byte at a time, as `read` returns them, so a sequence split across reads decodes the
//! same; it has no I/O, and is tested on byte strings.

/// A key the editor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Tab,
    Backspace,
    Delete,
    Left,
    Right,
    Up,
    Down,
    Home,
    End,
    /// Ctrl and a letter, as the lowercase letter (`Ctrl('a')`).
    Ctrl(char),
    /// A sequence or control byte the editor has no use for.
    Other,
}

/// Turns bytes into keys; keeps the part of a sequence or character seen so far.
#[derive(Default)]
pub struct Decoder {
    pending: Vec<u8>,
}

/// Longest escape sequence kept before it is given up as unknown.
const SEQUENCE_LIMIT: usize = 16;

impl Decoder {
    /// The key `byte` completes, if it completes one.
    pub fn push(&mut self, byte: u8) -> Option<Key> {
        if self.pending.is_empty() {
            return match byte {
                0x1b => {
                    self.pending.push(byte);
                    None
                }
                b'\r' | b'\n' => Some(Key::Enter),
                b'\t' => Some(Key::Tab),
                0x7f | 0x08 => Some(Key::Backspace),
                1..=26 => Some(Key::Ctrl(char::from(b'a' + byte - 1))),
                0..=0x1f => Some(Key::Other),
                0x20..=0x7e => Some(Key::Char(char::from(byte))),
                0xc2..=0xf4 => {
                    self.pending.push(byte);
                    None
                }
                _ => Some(Key::Other),
            };
        }
        self.pending.push(byte);
        if self.pending[0] == 0x1b {
            self.escape()
        } else {
            self.utf8()
        }
    }

    fn escape(&mut self) -> Option<Key> {
        let seq = &self.pending[1..];
        let key = match seq {
            [b'[' | b'O'] => return None,
            [b'[' | b'O', rest @ ..] => {
                let last = *rest.last().unwrap_or(&0);
                if !(0x40..=0x7e).contains(&last) {
                    if self.pending.len() >= SEQUENCE_LIMIT {
                        self.pending.clear();
                        return Some(Key::Other);
                    }
                    return None;
                }
                let params = &rest[..rest.len() - 1];
                // `ESC [ 1 ; 5 C` (Ctrl-Right and the like): the first parameter is what
                // counts here, the modifier is ignored.
                let first = params.split(|b| *b == b';').next().unwrap_or(&[]);
                match (last, first) {
                    (b'A', _) => Key::Up,
                    (b'B', _) => Key::Down,
                    (b'C', _) => Key::Right,
                    (b'D', _) => Key::Left,
                    (b'H', _) => Key::Home,
                    (b'F', _) => Key::End,
                    (b'~', b"1" | b"7") => Key::Home,
                    (b'~', b"4" | b"8") => Key::End,
                    (b'~', b"3") => Key::Delete,
                    _ => Key::Other,
                }
            }
            // ESC and anything else (Alt and a key, or a lone Escape): ignored.
            _ => Key::Other,
        };
        self.pending.clear();
        Some(key)
    }

    fn utf8(&mut self) -> Option<Key> {
        let want = match self.pending[0] {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        if self.pending.len() < want {
            if self.pending.last().is_some_and(|b| b & 0xc0 != 0x80) {
                self.pending.clear();
                return Some(Key::Other);
            }
            return None;
        }
        let key = std::str::from_utf8(&self.pending)
            .ok()
            .and_then(|s| s.chars().next())
            .map_or(Key::Other, Key::Char);
        self.pending.clear();
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> Vec<Key> {
        let mut d = Decoder::default();
        bytes.iter().filter_map(|b| d.push(*b)).collect()
    }

    #[test]
    fn plain_and_control() {
        assert_eq!(
            keys(b"a\r\t\x7f\x01\x05\x15\x17\x0b\x03\x04"),
            vec![
                Key::Char('a'),
                Key::Enter,
                Key::Tab,
                Key::Backspace,
                Key::Ctrl('a'),
                Key::Ctrl('e'),
                Key::Ctrl('u'),
                Key::Ctrl('w'),
                Key::Ctrl('k'),
                Key::Ctrl('c'),
                Key::Ctrl('d'),
            ]
        );
    }

    #[test]
    fn utf8_split_anywhere() {
        assert_eq!(
            keys("é€😀".as_bytes()),
            vec![Key::Char('é'), Key::Char('€'), Key::Char('😀')]
        );
        // A lead byte without its continuation is dropped, and what follows still decodes.
        assert_eq!(keys(b"\xc3a"), vec![Key::Other]);
    }

    #[test]
    fn sequences_in_their_spellings() {
        assert_eq!(
            keys(b"\x1b[A\x1b[B\x1b[C\x1b[D\x1bOH\x1bOF\x1b[H\x1b[F"),
            vec![
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::Home,
                Key::End,
                Key::Home,
                Key::End
            ]
        );
        assert_eq!(
            keys(b"\x1b[1~\x1b[7~\x1b[4~\x1b[8~\x1b[3~\x1b[1;5C\x1b[15~x"),
            vec![
                Key::Home,
                Key::Home,
                Key::End,
                Key::End,
                Key::Delete,
                Key::Right,
                Key::Other,
                Key::Char('x')
            ]
        );
        // Alt-b, and a runaway sequence, are given up without eating what follows.
        assert_eq!(keys(b"\x1bbq"), vec![Key::Other, Key::Char('q')]);
        let mut long = b"\x1b[".to_vec();
        long.extend([b'1'; 20]);
        assert_eq!(keys(&long).first(), Some(&Key::Other));
    }
}
