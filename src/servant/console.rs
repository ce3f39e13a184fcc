//! The servant's terminal: lines typed on standard input, and chat shown on standard output.
//!
//! In the article these were the form's `txtSend1` box (its `KeyPress` handler sent a line
//! when Enter was pressed) and `txtChat1` (received text was appended to it). Here the
//! `stdin` thread turns input lines into events for the core, and the `stdout` thread is
//! the only writer of standard output: every received message and command answer goes
//! through its channel, so lines never interleave, and it flushes only when it has nothing
//! more to print, so a burst costs one write rather than one per line.
//!
//! When both are a terminal, the line is edited in place (`screen`, over `editor` and
//! `keys`): the prompt stays at the bottom and the printer writes above it. Anywhere else
//! (a pipe, a file, `--no-input`) lines are read and written plainly, as they always were.

use std::io::{self, BufWriter, IsTerminal, Read, Write};

use crossbeam_channel::{Receiver, Sender};
use log::warn;

use crate::lines::{LineError, LineReader};
use crate::protocol::TEXT_LIMIT;
use crate::terminal;
use crate::transfer::STATUS;
use editor::Outcome;
use keys::Decoder;

mod editor;
mod keys;
mod screen;

pub use screen::Session as LineEditing;

/// Starts line editing when standard input and output are a terminal and input is read;
/// it lasts as long as the value returned (see `screen`).
pub fn line_editing(name: &str, no_input: bool) -> Option<LineEditing> {
    if no_input {
        return None;
    }
    screen::start(name)
}

/// What a typed line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Send this text to every peer.
    Say(String),
    Peers,
    Help,
    Quit,
    /// `/ban TARGET`, `/unban TARGET`, `/bans`.
    Ban(String),
    Unban(String),
    Bans,
    /// `/files`, `/get NAME`, `/downloads`.
    Files,
    Get(String),
    Downloads,
    /// `/shares`: what this servant offers, and how far its hashing has come.
    Shares,
    /// `/trust NAME`: accept the new key of a peer whose key changed.
    Trust(String),
    Unknown(String),
}

pub const HELP: &str = "\
Type a line and press Enter to send it to every servant on the network.
  /peers   who is on the network, and whether we reach them
  /help    this text
  /quit    leave the network (Ctrl-D and Ctrl-C do too)
  /ban HOST     refuse an address or host name (saved to the config file)
  /unban HOST   hear from it again
  /bans    the banned addresses and names
  /files   what every peer shares
  /get NAME     download a file from every peer that has it (resumes if interrupted)
  /downloads    progress of downloads
  /shares  what this servant shares, and how far hashing it has come
  /trust NAME   accept NAME's new key after a key-changed warning
  //text   send a line that starts with /
On a terminal: Tab completes commands and names, Up and Down recall lines.";

impl Input {
    pub fn parse(line: &str) -> Input {
        if let Some(rest) = line.strip_prefix("//") {
            return Input::Say(format!("/{rest}"));
        }
        match line.trim_end() {
            "/peers" => Input::Peers,
            "/help" => Input::Help,
            "/quit" | "/exit" => Input::Quit,
            "/bans" => Input::Bans,
            "/files" => Input::Files,
            "/downloads" => Input::Downloads,
            "/shares" => Input::Shares,
            cmd if cmd.starts_with("/get ") => Input::Get(cmd[5..].trim().to_owned()),
            cmd if cmd.starts_with("/ban ") => Input::Ban(cmd[5..].trim().to_owned()),
            cmd if cmd.starts_with("/trust ") => Input::Trust(cmd[7..].trim().to_owned()),
            cmd if cmd.starts_with("/unban ") => Input::Unban(cmd[7..].trim().to_owned()),
            cmd if cmd.starts_with('/') => Input::Unknown(cmd.to_owned()),
            _ => Input::Say(line.to_owned()),
        }
    }
}

/// The article's `txtSend1_KeyPress`, as the `stdin` thread: sends each typed line to `tx`, then `on_end` at end of input.
///
/// Lines to send go to `say` on this thread (the typist, `dispatch`), with whether more input
/// is already buffered; commands go to `tx`.
///
/// On a terminal with line editing on (see `screen`), keys are read one at a time and the
/// line is edited in place; `names(prefix)` lists the peer names Tab completes.
pub fn read_input<T>(
    tx: Sender<T>,
    wrap: fn(Input) -> T,
    on_end: T,
    names: impl Fn(&str) -> Vec<String>,
    say: impl Fn(Vec<String>, bool),
) {
    if let Some(screen) = screen::active() {
        match read_keys(screen, &tx, wrap, &names, &say) {
            Keys::Ended => {
                let _ = tx.send(on_end);
                return;
            }
            Keys::Gone => return,
            // Line editing was turned off (a panic): plain lines from here on.
            Keys::Off => {}
        }
    }
    let stdin = io::stdin();
    let mut reader = LineReader::new(stdin.lock(), TEXT_LIMIT);
    let mut number = 0u64;
    // Lines to send that were read together (a paste, a script): sent, and signed, as one
    // run once no further line is already waiting, or a command comes.
    let mut run: Vec<String> = Vec::new();
    loop {
        number += 1;
        if !run.is_empty() && (!reader.has_line() || run.len() >= SAY_RUN) {
            say(std::mem::take(&mut run), reader.has_line());
        }
        match reader.read_line() {
            Ok(Some(line)) => {
                if line.is_empty() {
                    continue;
                }
                match Input::parse(&line) {
                    Input::Say(text) => run.push(text),
                    other => {
                        if !run.is_empty() {
                            say(std::mem::take(&mut run), true);
                        }
                        if tx.send(wrap(other)).is_err() {
                            return;
                        }
                    }
                }
            }
            Ok(None) => break,
            // A line that goes on and on is skipped, not taken for the end of input.
            Err(LineError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                warn!("standard input, line {number}: {e}; not sent");
            }
            Err(LineError::Io(e)) => {
                warn!("standard input: {e}");
                break;
            }
            Err(LineError::Idle) => continue,
            Err(e) => warn!("standard input, line {number}: {e}; not sent"),
        }
    }
    if !run.is_empty() {
        say(run, false);
    }
    let _ = tx.send(on_end);
}

/// How reading keys ended.
enum Keys {
    /// Ctrl-D on an empty line, or the end of standard input.
    Ended,
    /// The core is gone.
    Gone,
    /// Line editing is off.
    Off,
}

/// `read_input` with line editing: each Enter hands its line over as `read_input` does
/// with a line it read; the lines of one read (a paste) are sent as one run.
fn read_keys<T>(
    screen: &screen::Screen,
    tx: &Sender<T>,
    wrap: fn(Input) -> T,
    names: &dyn Fn(&str) -> Vec<String>,
    say: &dyn Fn(Vec<String>, bool),
) -> Keys {
    let mut decoder = Decoder::default();
    let mut bytes = [0u8; 1024];
    let mut stdin = io::stdin().lock();
    loop {
        let n = match stdin.read(&mut bytes) {
            Ok(0) => return Keys::Ended,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!("standard input: {e}");
                return Keys::Ended;
            }
        };
        let mut run: Vec<String> = Vec::new();
        for key in bytes[..n].iter().filter_map(|b| decoder.push(*b)) {
            let Some(outcome) = screen.key(key, names) else {
                return Keys::Off;
            };
            let line = match outcome {
                Outcome::Submit(line) if !line.is_empty() => line,
                Outcome::Interrupt => {
                    // Leaves as a SIGINT from the terminal does.
                    terminal::interrupt_self();
                    continue;
                }
                Outcome::End => {
                    if !run.is_empty() {
                        say(run, false);
                    }
                    return Keys::Ended;
                }
                _ => continue,
            };
            match Input::parse(&line) {
                Input::Say(text) => {
                    run.push(text);
                    if run.len() >= SAY_RUN {
                        say(std::mem::take(&mut run), true);
                    }
                }
                other => {
                    if !run.is_empty() {
                        say(std::mem::take(&mut run), true);
                    }
                    if tx.send(wrap(other)).is_err() {
                        return Keys::Gone;
                    }
                }
            }
        }
        if !run.is_empty() {
            say(run, false);
        }
    }
}

/// Lines read together that are sent as one run at most (as many as one signature covers).
const SAY_RUN: usize = crate::batch::MAX_LEAVES;

/// Standard output when it is not a terminal (a pipe, a file): every thread appends its
/// lines to one buffer, and whoever has nothing more to add writes it out in one go. A
/// receiving thread prints what it receives itself, with no hand-over to another thread,
/// and a burst costs one write, not one per line.
#[derive(Default)]
pub struct Pipe {
    state: std::sync::Mutex<PipeState>,
}

#[derive(Default)]
struct PipeState {
    bytes: Vec<u8>,
    /// Standard output failed (nobody reads it any more): lines are dropped.
    broken: bool,
}

/// Past this much waiting output a writer flushes before adding more.
const PIPE_BUFFER: usize = 1 << 20;

impl Pipe {
    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a line (without its end).
    pub fn push(&self, line: &str) {
        self.push_parts(&[line]);
    }

    /// Adds a line made of `parts` (without its end), copied straight into the buffer.
    pub fn push_parts(&self, parts: &[&str]) {
        let mut st = self.lock();
        if st.broken {
            return;
        }
        for part in parts {
            st.bytes.extend_from_slice(part.as_bytes());
        }
        st.bytes.push(b'\n');
        if st.bytes.len() >= PIPE_BUFFER {
            Self::write_out(&mut st);
        }
    }

    /// Writes out what is waiting. The lock is held while writing: it is the lock on
    /// standard output itself, and it keeps lines whole and in order.
    pub fn flush(&self) {
        let mut st = self.lock();
        if !st.bytes.is_empty() {
            Self::write_out(&mut st);
        }
    }

    fn write_out(st: &mut PipeState) {
        let mut out = io::stdout().lock();
        if let Err(e) = out.write_all(&st.bytes).and_then(|_| out.flush()) {
            warn!("standard output: {e}; no longer printing received messages");
            st.broken = true;
        }
        st.bytes.clear();
    }
}

/// The article's `txtChat1`, as the `stdout` thread: prints each line; ends when every sender is gone, or when `stop`
/// disconnects, once what is already queued is printed. The receiving threads hold
/// senders for as long as the process listens, so shutdown ends the printer through `stop`.
pub fn print_lines(rx: Receiver<String>, stop: Receiver<()>, pipe: Option<std::sync::Arc<Pipe>>) {
    if let Some(pipe) = pipe {
        return print_to_pipe(rx, stop, &pipe);
    }
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    // Standard output is locked for each write of the buffer only: with line editing the
    // screen writes too (keys, the log).
    let mut out = BufWriter::with_capacity(64 * 1024, stdout);
    let mut broken = false;
    // The status line shown at the bottom of the terminal, if any.
    let mut status: Option<String> = None;
    while let Some(line) = next_line(&rx, &stop) {
        if broken {
            continue;
        }
        let mut batch = vec![line];
        if let Some(screen) = screen::active() {
            // Line editing: printed above the line being typed, a burst at a time.
            batch.extend(rx.try_iter().take(SCREEN_BATCH));
            if screen.print(&batch) {
                continue;
            }
        }
        let mut result = Ok(());
        for line in batch {
            result = result.and_then(|_| write_line(&mut out, terminal, &mut status, &line));
        }
        while result.is_ok() {
            match rx.try_recv() {
                Ok(more) => result = write_line(&mut out, terminal, &mut status, &more),
                Err(_) => break,
            }
        }
        if let Err(e) = result.and_then(|_| out.flush()) {
            // Nobody reads our output any more (a closed pipe): keep serving, stop printing.
            warn!("standard output: {e}; no longer printing received messages");
            broken = true;
        }
    }
    let _ = out.flush();
}

/// Lines printed above the edited line at most before it is drawn again.
const SCREEN_BATCH: usize = 256;

/// One line for standard output without line editing.
fn write_line(
    out: &mut impl Write,
    terminal: bool,
    status: &mut Option<String>,
    line: &str,
) -> io::Result<()> {
    if let Some(bar) = line.strip_prefix(STATUS) {
        // A status (a download's progress bar) stays on the last line of a terminal,
        // redrawn in place, until an ordinary line or an empty status replaces it.
        if terminal {
            out.write_all(b"\r\x1b[2K")?;
            out.write_all(bar.as_bytes())?;
            *status = (!bar.is_empty()).then(|| bar.to_owned());
            return Ok(());
        }
        if bar.is_empty() {
            return Ok(());
        }
        out.write_all(bar.as_bytes())?;
        return out.write_all(b"\n");
    }
    if terminal && status.is_some() {
        out.write_all(b"\r\x1b[2K")?;
    }
    // What came from the network was escaped where it came in (`escape`); the
    // servant's own lines (`/help`) are written as they are.
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    if let (true, Some(bar)) = (terminal, &status) {
        out.write_all(bar.as_bytes())?;
    }
    Ok(())
}

/// The next line to print; `None` when every sender is gone, or `stop` has disconnected
/// and nothing is left queued.
fn next_line(rx: &Receiver<String>, stop: &Receiver<()>) -> Option<String> {
    crossbeam_channel::select! {
        recv(rx) -> line => line.ok(),
        recv(stop) -> _ => rx.try_recv().ok(),
    }
}

/// `print_lines` when standard output is not a terminal: status lines become plain lines.
fn print_to_pipe(rx: Receiver<String>, stop: Receiver<()>, pipe: &Pipe) {
    while let Some(line) = next_line(&rx, &stop) {
        let mut next = Some(line);
        while let Some(line) = next.take() {
            match line.strip_prefix(STATUS) {
                Some("") => {}
                Some(status) => pipe.push(status),
                None => pipe.push(&line),
            }
            next = rx.try_recv().ok();
        }
        pipe.flush();
    }
    pipe.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_text() {
        assert_eq!(Input::parse("/peers"), Input::Peers);
        assert_eq!(Input::parse("/quit "), Input::Quit);
        assert_eq!(
            Input::parse("//etc is a path"),
            Input::Say("/etc is a path".into())
        );
        assert_eq!(Input::parse("  hi  "), Input::Say("  hi  ".into()));
        assert_eq!(Input::parse("/nope"), Input::Unknown("/nope".into()));
    }
}
