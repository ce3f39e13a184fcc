//! The few calls into the terminal driver that the line editor needs, behind a safe API.
//!
//! Line editing reads keys one at a time without the terminal's own echo (raw mode,
//! termios), and keeps the line being typed within the window (its width, TIOCGWINSZ).
//! These are C calls on file descriptors 0 and 1, so this is the one module of the crate
//! that holds `unsafe` code; each block says why it is sound. The settings found before
//! raw mode are kept here, process-wide, so that whatever ends the editor (the guard's
//! drop at shutdown, or a panic hook) puts them back, and only once.

#![allow(unsafe_code)]

use std::io;
use std::sync::{Mutex, MutexGuard};

/// The terminal settings of standard input before raw mode; `None` when not in raw mode.
/// Written by `raw_mode` and `restore`, from whichever thread calls them.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

fn saved() -> MutexGuard<'static, Option<libc::termios>> {
    SAVED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Standard input in raw mode; dropping it restores the settings found before.
pub struct RawMode(());

/// Puts the terminal on standard input in raw mode: keys arrive one byte at a time
/// (VMIN 1), unechoed, with Ctrl-C, Ctrl-Z and Ctrl-S as ordinary bytes. Output is
/// left as it was (a `\n` still starts a new line at its first column).
pub fn raw_mode() -> io::Result<RawMode> {
    let mut saved = saved();
    if saved.is_some() {
        return Err(io::Error::other("already in raw mode"));
    }
    let old = get()?;
    let mut raw = old;
    raw.c_iflag &= !(libc::ICRNL | libc::INLCR | libc::IGNCR | libc::IXON | libc::ISTRIP);
    raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
    raw.c_cc[libc::VMIN] = 1;
    raw.c_cc[libc::VTIME] = 0;
    set(&raw)?;
    *saved = Some(old);
    Ok(RawMode(()))
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts back the settings found before raw mode, if it is on (the guard's drop, and the
/// panic hook, which cannot wait for the guard).
pub fn restore() {
    if let Some(old) = saved().take() {
        let _ = set(&old);
    }
}

fn get() -> io::Result<libc::termios> {
    // SAFETY: `termios` is a plain C struct for which all zeroes is a valid value.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable termios; fd 0 is only read.
    if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(t)
}

fn set(t: &libc::termios) -> io::Result<()> {
    // SAFETY: `t` points to a valid termios that outlives the call.
    if unsafe { libc::tcsetattr(0, libc::TCSADRAIN, t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The width of the terminal on standard output in columns, if it says.
pub fn width() -> Option<usize> {
    // SAFETY: `winsize` is a plain C struct for which all zeroes is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the valid, writable `ws`.
    let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

/// Sends SIGINT to this process: Ctrl-C typed in raw mode leaves by the same path as
/// the signal the terminal would have sent.
pub fn interrupt_self() {
    // SAFETY: kill(2) with our own pid and a valid signal number touches no memory.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGINT);
    }
}
