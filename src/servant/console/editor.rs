//! The line being typed, as a value: its characters, the cursor, this run's history,
//! completion, and how it fits in a terminal row.
//!
//! Kept apart from the terminal (see `screen`) so that every edit is a plain function of
//! a key, tested without a terminal. A line is drawn on one row: when it is wider than the
//! window it scrolls sideways around the cursor, so redrawing it never has to know how
//! many rows an earlier drawing wrapped onto.

use std::collections::VecDeque;

use super::keys::Key;

/// Lines kept for Up and Down.
pub const HISTORY: usize = 500;

/// The commands Tab completes (with a space after those that take an argument).
pub const COMMANDS: &[&str] = &[
    "/peers",
    "/help",
    "/quit",
    "/ban ",
    "/unban ",
    "/bans",
    "/files",
    "/get ",
    "/downloads",
    "/shares",
    "/trust ",
];

/// What a key asks of whoever owns the line.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The line changed, or the cursor moved (or nothing happened): redraw it.
    Edited,
    /// Enter: the line typed, to send; the editor starts a fresh one.
    Submit(String),
    /// Tab found several candidates: shown above the line.
    Candidates(Vec<String>),
    /// Ctrl-C.
    Interrupt,
    /// Ctrl-D on an empty line: end of input.
    End,
}

/// The line, the cursor in it (in characters), and the history.
pub struct Editor {
    line: Vec<char>,
    cursor: usize,
    /// Longest line in bytes (the protocol's limit on a chat text).
    limit: usize,
    history: VecDeque<String>,
    /// Up and Down: which history line is shown (`history.len()`: the line being typed),
    /// and the line being typed, kept while browsing.
    browsing: usize,
    draft: Vec<char>,
}

impl Editor {
    pub fn new(limit: usize) -> Editor {
        Editor {
            line: Vec::new(),
            cursor: 0,
            limit,
            history: VecDeque::new(),
            browsing: 0,
            draft: Vec::new(),
        }
    }

    pub fn text(&self) -> String {
        self.line.iter().collect()
    }

    #[cfg(test)]
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Applies `key`; `names(prefix)` lists the peer names Tab may complete.
    pub fn key(&mut self, key: Key, names: &dyn Fn(&str) -> Vec<String>) -> Outcome {
        let n = self.line.len();
        match key {
            Key::Char(c) => self.insert(&[c]),
            Key::Enter => return Outcome::Submit(self.submit()),
            Key::Tab => return self.complete(names),
            Key::Left | Key::Ctrl('b') => self.cursor = self.cursor.saturating_sub(1),
            Key::Right | Key::Ctrl('f') => self.cursor = (self.cursor + 1).min(n),
            Key::Home | Key::Ctrl('a') => self.cursor = 0,
            Key::End | Key::Ctrl('e') => self.cursor = n,
            Key::Backspace | Key::Ctrl('h') if self.cursor > 0 => {
                self.cursor -= 1;
                self.line.remove(self.cursor);
            }
            Key::Ctrl('d') if n == 0 => return Outcome::End,
            Key::Delete | Key::Ctrl('d') if self.cursor < n => {
                self.line.remove(self.cursor);
            }
            Key::Ctrl('u') => {
                self.line.drain(..self.cursor);
                self.cursor = 0;
            }
            Key::Ctrl('k') => self.line.truncate(self.cursor),
            Key::Ctrl('w') => {
                let mut start = self.cursor;
                while start > 0 && self.line[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.line[start - 1] != ' ' {
                    start -= 1;
                }
                self.line.drain(start..self.cursor);
                self.cursor = start;
            }
            Key::Up | Key::Ctrl('p') => self.browse(-1),
            Key::Down | Key::Ctrl('n') => self.browse(1),
            Key::Ctrl('c') => return Outcome::Interrupt,
            _ => {}
        }
        Outcome::Edited
    }

    /// Inserts `chars` at the cursor, as far as the limit allows.
    fn insert(&mut self, chars: &[char]) {
        let mut bytes: usize = self.line.iter().map(|c| c.len_utf8()).sum();
        for &c in chars {
            bytes += c.len_utf8();
            if bytes > self.limit {
                break;
            }
            self.line.insert(self.cursor, c);
            self.cursor += 1;
        }
    }

    fn submit(&mut self) -> String {
        let text: String = self.line.drain(..).collect();
        self.cursor = 0;
        self.draft.clear();
        if !text.is_empty() && self.history.back() != Some(&text) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(text.clone());
        }
        self.browsing = self.history.len();
        text
    }

    fn browse(&mut self, step: isize) {
        let to = self.browsing as isize + step;
        if to < 0 || to > self.history.len() as isize {
            return;
        }
        if self.browsing == self.history.len() {
            self.draft = self.line.clone();
        }
        self.browsing = to as usize;
        self.line = match self.history.get(self.browsing) {
            Some(line) => line.chars().collect(),
            None => std::mem::take(&mut self.draft),
        };
        self.cursor = self.line.len();
    }

    /// The word before the cursor (what Tab would complete).
    pub fn word(&self) -> String {
        let start = self.word_start();
        self.line[start..self.cursor].iter().collect()
    }

    fn word_start(&self) -> usize {
        self.line[..self.cursor]
            .iter()
            .rposition(|c| *c == ' ')
            .map_or(0, |i| i + 1)
    }

    /// Tab: completes the word before the cursor, a command when it is the first word and
    /// starts with `/`, else a peer name. Several candidates: their common beginning is
    /// completed and they are returned to be shown.
    fn complete(&mut self, names: &dyn Fn(&str) -> Vec<String>) -> Outcome {
        let start = self.word_start();
        let word = self.word();
        let mut found: Vec<String> = if start == 0 && word.starts_with('/') {
            COMMANDS
                .iter()
                .filter(|c| c.starts_with(&word))
                .map(|c| (*c).to_owned())
                .collect()
        } else if word.is_empty() {
            Vec::new()
        } else {
            names(&word)
                .into_iter()
                .filter(|n| n.starts_with(&word) && !n.contains(char::is_whitespace))
                .collect()
        };
        found.sort();
        found.dedup();
        let common = match found.as_slice() {
            [] => return Outcome::Edited,
            [only] if start == 0 && only.ends_with(' ') => only.clone(),
            [only] if start == 0 && only.starts_with('/') => only.clone(),
            [only] => format!("{only} "),
            [first, rest @ ..] => {
                let mut common = first.as_str();
                for other in rest {
                    let same = common
                        .char_indices()
                        .zip(other.chars())
                        .find(|((_, a), b)| a != b)
                        .map_or(common.len().min(other.len()), |((i, _), _)| i);
                    common = &common[..same];
                }
                common.to_owned()
            }
        };
        let extra: Vec<char> = common.chars().skip(word.chars().count()).collect();
        self.insert(&extra);
        if found.len() > 1 {
            return Outcome::Candidates(found);
        }
        Outcome::Edited
    }

    /// The part of the line shown after a prompt `prompt_cols` wide in a window `width`
    /// columns wide, and the cursor's column. One column a character; the last column is
    /// only ever the cursor's, so no character is written there to wrap the row.
    pub fn view(&self, prompt_cols: usize, width: usize) -> (String, usize) {
        let room = width.saturating_sub(prompt_cols + 1).max(1);
        if self.line.len() <= room {
            return (self.text(), prompt_cols + self.cursor);
        }
        // Scrolled: the cursor stays in view, at the right edge when it is past it.
        let start = self.cursor.saturating_sub(room);
        let end = (start + room).min(self.line.len());
        (
            self.line[start..end].iter().collect(),
            prompt_cols + self.cursor - start,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Vec<String> {
        Vec::new()
    }

    fn typed(e: &mut Editor, keys: &[Key]) {
        for k in keys {
            e.key(*k, &none);
        }
    }

    fn chars(s: &str) -> Vec<Key> {
        s.chars().map(Key::Char).collect()
    }

    #[test]
    fn moving_and_deleting() {
        let mut e = Editor::new(100);
        typed(&mut e, &chars("hello world"));
        typed(&mut e, &[Key::Left, Key::Left, Key::Backspace, Key::Delete]);
        assert_eq!((e.text(), e.cursor()), ("hello wod".into(), 8));
        typed(
            &mut e,
            &[Key::Home, Key::Char('>'), Key::End, Key::Char('!')],
        );
        assert_eq!(e.text(), ">hello wod!");
        typed(&mut e, &[Key::Ctrl('w')]);
        assert_eq!(e.text(), ">hello ");
        typed(&mut e, &[Key::Ctrl('a'), Key::Right, Key::Ctrl('k')]);
        assert_eq!(e.text(), ">");
        typed(
            &mut e,
            &[Key::Ctrl('e'), Key::Char('x'), Key::Left, Key::Ctrl('u')],
        );
        assert_eq!((e.text(), e.cursor()), ("x".into(), 0));
        // Ctrl-D deletes under the cursor on a line, and ends the input on an empty one.
        assert_eq!(e.key(Key::Ctrl('d'), &none), Outcome::Edited);
        assert_eq!(e.key(Key::Ctrl('d'), &none), Outcome::End);
        assert_eq!(e.key(Key::Ctrl('c'), &none), Outcome::Interrupt);
    }

    #[test]
    fn the_limit_holds() {
        let mut e = Editor::new(4);
        typed(&mut e, &chars("abé€"));
        assert_eq!(e.text(), "abé");
    }

    #[test]
    fn history_up_and_down() {
        let mut e = Editor::new(100);
        for line in ["one", "two", "two"] {
            typed(&mut e, &chars(line));
            assert_eq!(e.key(Key::Enter, &none), Outcome::Submit(line.into()));
        }
        typed(&mut e, &chars("dra"));
        typed(&mut e, &[Key::Up]);
        assert_eq!(e.text(), "two");
        typed(&mut e, &[Key::Up, Key::Up]);
        assert_eq!(e.text(), "one");
        typed(&mut e, &[Key::Down, Key::Down]);
        assert_eq!(e.text(), "dra");
        for i in 0..HISTORY + 10 {
            typed(&mut e, &chars(&i.to_string()));
            e.key(Key::Enter, &none);
        }
        assert_eq!(e.history.len(), HISTORY);
    }

    #[test]
    fn tab_completes_commands_and_names() {
        let names = |p: &str| {
            ["alice", "albert", "bob", "two words"]
                .iter()
                .filter(|n| n.starts_with(p))
                .map(|n| n.to_string())
                .collect()
        };
        let mut e = Editor::new(100);
        typed(&mut e, &chars("/pe"));
        assert_eq!(e.key(Key::Tab, &names), Outcome::Edited);
        assert_eq!(e.text(), "/peers");
        let mut e = Editor::new(100);
        typed(&mut e, &chars("/b"));
        assert_eq!(
            e.key(Key::Tab, &names),
            Outcome::Candidates(vec!["/ban ".into(), "/bans".into()])
        );
        assert_eq!(e.text(), "/ban");
        let mut e = Editor::new(100);
        typed(&mut e, &chars("/trust b"));
        assert_eq!(e.key(Key::Tab, &names), Outcome::Edited);
        assert_eq!(e.text(), "/trust bob ");
        let mut e = Editor::new(100);
        typed(&mut e, &chars("hi al"));
        assert_eq!(
            e.key(Key::Tab, &names),
            Outcome::Candidates(vec!["albert".into(), "alice".into()])
        );
        assert_eq!(e.text(), "hi al");
        typed(&mut e, &[Key::Char('i')]);
        e.key(Key::Tab, &names);
        assert_eq!(e.text(), "hi alice ");
        let mut e = Editor::new(100);
        typed(&mut e, &chars("tw"));
        assert_eq!(e.key(Key::Tab, &names), Outcome::Edited);
        assert_eq!(e.text(), "tw");
    }

    #[test]
    fn a_long_line_scrolls_within_the_row() {
        let mut e = Editor::new(1000);
        typed(&mut e, &chars(&"x".repeat(50)));
        typed(&mut e, &chars("END"));
        let (shown, col) = e.view(6, 30);
        assert_eq!(shown.chars().count(), 23);
        assert!(shown.ends_with("END"), "{shown}");
        assert_eq!(col, 29);
        typed(&mut e, &[Key::Home]);
        let (shown, col) = e.view(6, 30);
        assert_eq!((shown.chars().count(), col), (23, 6));
        // Short lines are shown whole.
        let mut e = Editor::new(1000);
        typed(&mut e, &chars("abc"));
        assert_eq!(e.view(6, 30), ("abc".into(), 9));
    }
}
