//! The terminal while a line is being typed: the prompt and the line at the bottom, and
//! everything else printed above them.
//!
//! Only when standard input and output are both a terminal (and input is read at all):
//! then the terminal is in raw mode, the `stdin` thread edits the line key by key, and the
//! `stdout` thread (and the log, when standard error is that terminal too) print through
//! here. Each of them takes the one lock, erases the prompt's row (and the progress bar's,
//! if one is shown above it), writes, and draws them again with the cursor where it was,
//! so a line arriving mid-word never splits what is being typed. The lock is the lock on
//! the terminal itself: it is held while writing, and nothing holding it logs.
//!
//! The state is process-wide, as the terminal is: the panic hook and the log need to find
//! it from any thread. The terminal's settings are put back when the `Session` returned
//! by `start` is dropped (every way out of `servant::run`, SIGTERM and Ctrl-C included, as
//! both end the core loop), and by the panic hook, which also turns line editing off for
//! the rest of the run: plain lines, as without a terminal.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::editor::{Editor, Outcome};
use super::keys::Key;
use crate::protocol::TEXT_LIMIT;
use crate::terminal;
use crate::transfer::STATUS;

static SCREEN: OnceLock<Screen> = OnceLock::new();

pub struct Screen {
    /// Line editing is on: set by `start`, cleared by the session's end, a panic, or a
    /// failed write. Outside the lock, so a panic hook never waits for it.
    on: AtomicBool,
    state: Mutex<State>,
}

struct State {
    /// The prompt and the line are drawn (not after Ctrl-C or Ctrl-D).
    prompt_shown: bool,
    /// `name> `, coloured or not, and how many columns it takes.
    prompt: String,
    prompt_cols: usize,
    editor: Editor,
    /// A download's progress bar, shown on the row above the prompt.
    status: Option<String>,
    /// What the last drawing left on screen, to erase it.
    drawn: Option<Drawn>,
    colour: bool,
}

#[derive(Clone, Copy)]
struct Drawn {
    /// The cursor's column, the window's width then, and the rows above the cursor's row.
    col: usize,
    width: usize,
    status_cols: Option<usize>,
}

/// Line editing for as long as it lives; dropping it erases the prompt and restores the
/// terminal.
pub struct Session {
    _raw: terminal::RawMode,
}

/// Starts line editing if standard input and output are a terminal; `None` otherwise (or
/// when the terminal refuses raw mode), and the console works on plain lines.
pub fn start(name: &str) -> Option<Session> {
    if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
        return None;
    }
    let raw = match terminal::raw_mode() {
        Ok(raw) => raw,
        Err(e) => {
            log::warn!(
                "standard input: cannot turn off the terminal's echo: {e}; reading plain lines"
            );
            return None;
        }
    };
    let colour = std::env::var_os("NO_COLOR").is_none();
    let shown = crate::escape::shown(name);
    let prompt = if colour {
        format!("{}> ", paint(&shown))
    } else {
        format!("{shown}> ")
    };
    let state = State {
        prompt_shown: true,
        prompt,
        prompt_cols: shown.chars().count() + 2,
        editor: Editor::new(TEXT_LIMIT),
        status: None,
        drawn: None,
        colour,
    };
    let screen = SCREEN.get_or_init(|| Screen {
        on: AtomicBool::new(false),
        state: Mutex::new(state),
    });
    install_panic_hook();
    screen.on.store(true, Ordering::SeqCst);
    if io::stderr().is_terminal() {
        crate::cli::route_log(Some(log_above));
    }
    watch_resizes();
    screen.write(|_, _| Ok(()));
    Some(Session { _raw: raw })
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(screen) = active() {
            crate::cli::route_log(None);
            let mut st = screen.lock();
            let mut out = Vec::new();
            erase(&st, &mut out);
            st.drawn = None;
            screen.on.store(false, Ordering::SeqCst);
            let _ = io::stdout()
                .lock()
                .write_all(&out)
                .and_then(|_| io::stdout().flush());
        }
        // `_raw` restores the terminal's settings next.
    }
}

/// The screen, while line editing is on.
pub fn active() -> Option<&'static Screen> {
    SCREEN.get().filter(|s| s.on.load(Ordering::SeqCst))
}

impl Screen {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Erases what is drawn, lets `f` write above it, and draws it again. A terminal
    /// that cannot be written any more ends line editing. False when it is off.
    fn write(&self, f: impl FnOnce(&mut State, &mut Vec<u8>) -> io::Result<()>) -> bool {
        let mut st = self.lock();
        if !self.on.load(Ordering::SeqCst) {
            return false;
        }
        let mut out = Vec::with_capacity(256);
        erase(&st, &mut out);
        let result = f(&mut st, &mut out).and_then(|_| {
            draw(&mut st, &mut out);
            let mut stdout = io::stdout().lock();
            stdout.write_all(&out)?;
            stdout.flush()
        });
        if result.is_err() {
            self.on.store(false, Ordering::SeqCst);
        }
        result.is_ok()
    }

    /// Prints lines from the `stdout` thread above the prompt; a line that starts with
    /// `STATUS` replaces the progress bar (an empty one removes it).
    pub fn print(&self, lines: &[String]) -> bool {
        self.write(|st, out| {
            for line in lines {
                match line.strip_prefix(STATUS) {
                    Some(bar) => st.status = (!bar.is_empty()).then(|| bar.to_owned()),
                    None => {
                        if st.colour {
                            out.extend_from_slice(coloured(line).as_bytes());
                        } else {
                            out.extend_from_slice(line.as_bytes());
                        }
                        out.push(b'\n');
                    }
                }
            }
            Ok(())
        })
    }

    /// Applies a key from the `stdin` thread to the line and draws the result; `None`
    /// when line editing is off.
    pub fn key(&self, key: Key, names: &dyn Fn(&str) -> Vec<String>) -> Option<Outcome> {
        // The names are looked up before the lock is taken: whoever holds theirs may log,
        // and the log takes this one.
        let found = match key {
            Key::Tab => {
                let word = self.lock().editor.word();
                if word.is_empty() || word.starts_with('/') {
                    Vec::new()
                } else {
                    names(&word)
                }
            }
            _ => Vec::new(),
        };
        let names = |_: &str| found.clone();
        let mut outcome = None;
        let on = self.write(|st, out| {
            if !st.prompt_shown {
                return Ok(());
            }
            let done = st.editor.key(key, &names);
            match &done {
                // The line stays on screen as it was typed, as a terminal's own echo
                // would leave it.
                Outcome::Submit(text) => {
                    out.extend_from_slice(st.prompt.as_bytes());
                    out.extend_from_slice(text.as_bytes());
                    out.push(b'\n');
                }
                Outcome::Candidates(names) => {
                    out.extend_from_slice(names.join("  ").as_bytes());
                    out.push(b'\n');
                }
                Outcome::Interrupt => {
                    let (shown, _) = st.editor.view(st.prompt_cols, width());
                    out.extend_from_slice(st.prompt.as_bytes());
                    out.extend_from_slice(shown.as_bytes());
                    out.extend_from_slice(b"^C\n");
                    st.prompt_shown = false;
                }
                Outcome::End => st.prompt_shown = false,
                Outcome::Edited => {}
            }
            outcome = Some(done);
            Ok(())
        });
        if !on {
            return None;
        }
        Some(outcome.unwrap_or(Outcome::Edited))
    }

    /// Draws again for a new window width.
    fn redraw(&self) {
        self.write(|_, _| Ok(()));
    }
}

fn width() -> usize {
    terminal::width().unwrap_or(80)
}

/// Goes back to the start of the last drawing and clears from there to the end of the
/// screen. After the window narrowed, a terminal that rewraps its rows has moved the
/// drawing onto more rows: the cursor's column says how many.
fn erase(st: &State, out: &mut Vec<u8>) {
    let Some(d) = st.drawn else { return };
    let now = width();
    let rewrapped = |cols: usize| if now < d.width { cols / now } else { 0 };
    let mut up = rewrapped(d.col);
    if let Some(cols) = d.status_cols {
        up += 1 + rewrapped(cols.saturating_sub(1));
    }
    out.push(b'\r');
    if up > 0 {
        out.extend_from_slice(format!("\x1b[{up}A").as_bytes());
    }
    out.extend_from_slice(b"\x1b[J");
}

/// Draws the progress bar and the prompt with the visible part of the line, and puts the
/// cursor where it is in the line.
fn draw(st: &mut State, out: &mut Vec<u8>) {
    let width = width();
    let status = st.status.as_deref().map(|bar| {
        // Kept within one row, so that erasing it is one row up.
        let cut: String = bar.chars().take(width.saturating_sub(1)).collect();
        let cols = cut.chars().count();
        (cut, cols)
    });
    if !st.prompt_shown {
        // Only the bar, on the last row, as without line editing.
        st.drawn = status.map(|(bar, cols)| {
            out.extend_from_slice(bar.as_bytes());
            Drawn {
                col: cols,
                width,
                status_cols: None,
            }
        });
        return;
    }
    let status_cols = status.map(|(bar, cols)| {
        out.extend_from_slice(bar.as_bytes());
        out.push(b'\n');
        cols
    });
    let (shown, col) = st.editor.view(st.prompt_cols, width);
    out.extend_from_slice(st.prompt.as_bytes());
    out.extend_from_slice(shown.as_bytes());
    out.push(b'\r');
    if col > 0 {
        out.extend_from_slice(format!("\x1b[{col}C").as_bytes());
    }
    st.drawn = Some(Drawn {
        col,
        width,
        status_cols,
    });
}

/// `name` in a colour of its own: one of six, picked by a hash of the name, so each name
/// keeps its colour from line to line and run to run.
fn paint(name: &str) -> String {
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("\x1b[1;{}m{name}\x1b[0m", 31 + hash % 6)
}

/// A `<name> text` line with its name painted; other lines as they are. The name was
/// escaped where it came in, so it holds no escape of its own.
fn coloured(line: &str) -> std::borrow::Cow<'_, str> {
    if let Some(rest) = line.strip_prefix('<') {
        if let Some((name, text)) = rest.split_once("> ") {
            return format!("<{}> {text}", paint(name)).into();
        }
    }
    line.into()
}

/// Where log records go while line editing is on and standard error is the same
/// terminal: above the prompt, like every other line.
fn log_above(record: &[u8]) -> io::Result<()> {
    let text = String::from_utf8_lossy(record);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    match active() {
        Some(screen)
            if screen.write(|_, out| {
                out.extend_from_slice(text.as_bytes());
                out.push(b'\n');
                Ok(())
            }) =>
        {
            Ok(())
        }
        _ => io::stderr().lock().write_all(record),
    }
}

/// A panic restores the terminal before the message is printed, and line editing stays
/// off: the rest of the run (if the process goes on) uses plain lines.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(screen) = SCREEN.get() {
                if screen.on.swap(false, Ordering::SeqCst) {
                    crate::cli::route_log(None);
                    terminal::restore();
                    let _ = io::stderr().write_all(b"\r\n");
                }
            }
            previous(info);
        }));
    });
}

/// A `winch` thread draws the prompt again when the window changes size.
fn watch_resizes() {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([libc::SIGWINCH]) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("winch".into())
        .spawn(move || {
            for _ in signals.forever() {
                match active() {
                    Some(screen) => screen.redraw(),
                    None => break,
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_colour() {
        assert_eq!(paint("bob"), paint("bob"));
        assert!(paint("bob").starts_with("\x1b[1;3"));
        assert_eq!(
            coloured("<bob> hi <there>"),
            format!("<{}> hi <there>", paint("bob"))
        );
        assert_eq!(coloured("3 peer(s)"), "3 peer(s)");
    }
}
