//! Line editing, seen on a terminal: a servant runs with a pseudo-terminal as its standard
//! input, output and error, the test types into the terminal's other end and reads back
//! what the servant drew, through a small terminal model that applies the few control
//! sequences the editor writes.
//!
//! A line that arrives while one is half typed must appear on a row of its own, with the
//! half line drawn again intact below it and the cursor where it was; the line, once
//! finished, reaches the other servant whole; Up recalls it; Tab completes a command and
//! a peer's name; Ctrl-C leaves, and the terminal's settings are as they were.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::*;

/// Rows and columns of the test terminal.
const COLS: usize = 80;

/// Both ends of a pseudo-terminal.
struct Pty {
    master: File,
    slave: OwnedFd,
}

fn open_pty() -> Pty {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: COLS as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: both out-pointers are valid; a null name and termios take the defaults.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two open descriptors that nothing else owns.
    unsafe {
        Pty {
            master: File::from_raw_fd(master),
            slave: OwnedFd::from_raw_fd(slave),
        }
    }
}

/// The terminal's settings that line editing changes: input and local modes.
fn modes(fd: &OwnedFd) -> (libc::tcflag_t, libc::tcflag_t) {
    // SAFETY: all zeroes is a valid termios, and tcgetattr writes one into it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open terminal; `t` is valid and writable.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    (t.c_iflag, t.c_lflag)
}

/// The screen drawn by the bytes written so far: rows of text and the cursor.
#[derive(Debug)]
struct Screen {
    rows: Vec<String>,
    cursor: (usize, usize),
}

/// Applies what the editor writes: text, CR, LF, and `ESC [` with A (up), C (right),
/// J (clear to the end of the screen), K (clear the row) and m (colours, ignored).
fn render(bytes: &[u8]) -> Screen {
    let text = String::from_utf8_lossy(bytes);
    let mut rows: Vec<Vec<char>> = vec![Vec::new()];
    let (mut r, mut c) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\r' => c = 0,
            '\n' => r += 1,
            '\x1b' => {
                if chars.peek() != Some(&'[') {
                    continue;
                }
                chars.next();
                let mut param = String::new();
                let mut last = ' ';
                for p in chars.by_ref() {
                    if p.is_ascii_digit() || p == ';' {
                        param.push(p);
                    } else {
                        last = p;
                        break;
                    }
                }
                let n: usize = param.split(';').next().unwrap_or("").parse().unwrap_or(1);
                let n = n.max(1);
                match last {
                    'A' => r = r.saturating_sub(n),
                    'C' => c = (c + n).min(COLS - 1),
                    'J' => {
                        rows.truncate(r + 1);
                        if rows.len() > r {
                            rows[r].truncate(c);
                        }
                    }
                    'K' if rows.len() > r => rows[r].clear(),
                    _ => {}
                }
            }
            ch if (ch as u32) < 0x20 => {}
            ch => {
                if c >= COLS {
                    r += 1;
                    c = 0;
                }
                while rows.len() <= r {
                    rows.push(Vec::new());
                }
                let row = &mut rows[r];
                while row.len() < c {
                    row.push(' ');
                }
                if c < row.len() {
                    row[c] = ch;
                } else {
                    row.push(ch);
                }
                c += 1;
            }
        }
        while rows.len() <= r {
            rows.push(Vec::new());
        }
    }
    Screen {
        rows: rows
            .into_iter()
            .map(|row| row.into_iter().collect::<String>().trim_end().to_owned())
            .collect(),
        cursor: (r, c),
    }
}

/// A servant on a pseudo-terminal; killed when dropped.
struct OnTerminal {
    child: Child,
    keys: File,
    output: Arc<Mutex<Vec<u8>>>,
    slave: OwnedFd,
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OnTerminal {
    fn start(dir: &TestDir, name: &str, manager_port: u16) -> OnTerminal {
        let cfg = dir.write(
            &format!("{name}.xml"),
            &servant_config(name, manager_port, Some(0), ""),
        );
        let pty = open_pty();
        let end = |pty: &Pty| Stdio::from(pty.slave.try_clone().expect("dup the terminal"));
        let child = Command::new(SERVANT_BIN)
            .arg("--config")
            .arg(cfg)
            .current_dir(&dir.path)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE")
            .stdin(end(&pty))
            .stdout(end(&pty))
            .stderr(end(&pty))
            .spawn()
            .expect("start the servant");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut master = pty.master.try_clone().expect("dup the terminal's master");
        let out = Arc::clone(&output);
        std::thread::Builder::new()
            .name(format!("pty-{name}"))
            .spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = master.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
            .expect("start the terminal reader");
        OnTerminal {
            child,
            keys: pty.master,
            output,
            slave: pty.slave,
        }
    }

    fn screen(&self) -> Screen {
        render(&self.output.lock().unwrap())
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.keys.write_all(keys).expect("type into the terminal");
    }

    /// Waits until the screen satisfies `pred`.
    fn wait_screen(&self, what: &str, pred: impl Fn(&Screen) -> bool) -> Screen {
        try_wait_for(WAIT, || {
            let s = self.screen();
            pred(&s).then_some(s)
        })
        .unwrap_or_else(|| {
            fail(&format!(
                "the terminal never showed {what}; it shows:\n{}\n{}",
                self.screen().rows.join("\n"),
                String::from_utf8_lossy(&self.output.lock().unwrap()).escape_debug()
            ))
        })
    }

    /// Waits until the last row, where the cursor is, reads `row`, the cursor at `col`.
    fn wait_prompt(&self, row: &str, col: usize) -> Screen {
        self.wait_screen(&format!("{row:?} with the cursor at {col}"), |s| {
            s.rows.last().map(String::as_str) == Some(row) && s.cursor == (s.rows.len() - 1, col)
        })
    }
}

#[test]
fn typing_is_kept_whole_while_lines_arrive() {
    let dir = TestDir::new("console-pty");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut bob = start_servant(&dir, "bob", m.port, "");
    let before = modes(&open_pty().slave);
    let mut alice = OnTerminal::start(&dir, "alice", m.port);
    alice.wait_screen("alice joining", |s| {
        s.rows.iter().any(|r| r.contains("joined as alice ("))
    });
    bob.wait_knows(&["alice"]);
    alice.wait_screen("alice knowing bob", |s| {
        s.rows.iter().any(|r| r.contains("peer joined: bob at "))
    });
    alice.wait_prompt("alice>", 7);

    // Half a line, then a line from bob: his on a row of its own above, ours intact below.
    alice.type_keys(b"hello wor");
    alice.wait_prompt("alice> hello wor", 16);
    alice.type_keys(b"\x1b[D\x1b[D");
    alice.wait_prompt("alice> hello wor", 14);
    bob.proc.send("ping from bob");
    let s = alice.wait_screen("bob's line", |s| {
        s.rows.iter().any(|r| r == "<bob> ping from bob")
    });
    let at = s
        .rows
        .iter()
        .position(|r| r == "<bob> ping from bob")
        .unwrap();
    assert_eq!(
        at,
        s.rows.len() - 2,
        "bob's line is right above the prompt: {s:?}"
    );
    alice.wait_prompt("alice> hello wor", 14);

    // Finished and sent whole; the line stays on screen as typed.
    alice.type_keys(b"\x05ld\r");
    bob.wait_heard("alice", "hello world");
    alice.wait_prompt("alice>", 7);
    assert!(alice
        .screen()
        .rows
        .iter()
        .any(|r| r == "alice> hello world"));

    // Up recalls it; Ctrl-U clears it.
    alice.type_keys(b"\x1b[A");
    alice.wait_prompt("alice> hello world", 18);
    alice.type_keys(b"\x15");
    alice.wait_prompt("alice>", 7);

    // Tab completes a command, and a peer's name.
    alice.type_keys(b"/pe\t");
    alice.wait_prompt("alice> /peers", 13);
    alice.type_keys(b"\r");
    alice.wait_screen("the answer to /peers", |s| {
        s.rows.iter().any(|r| r.contains("peer(s)"))
    });
    alice.type_keys(b"thanks bo\t");
    alice.wait_prompt("alice> thanks bob", 18);
    alice.type_keys(b"\r");
    bob.wait_heard("alice", "thanks bob ");

    // Ctrl-C leaves as SIGINT does, and the terminal is as it was.
    alice.type_keys(b"half\x03");
    let status = try_wait_for(WAIT, || alice.child.try_wait().ok().flatten())
        .unwrap_or_else(|| fail("Ctrl-C did not end the servant"));
    assert!(status.success(), "{status}");
    let s = alice.screen();
    assert!(s.rows.iter().any(|r| r == "alice> half^C"), "{s:?}");
    assert!(
        s.rows.iter().any(|r| r.contains("leaving: SIGINT")),
        "{s:?}"
    );
    assert_eq!(
        modes(&alice.slave),
        before,
        "the terminal's modes are restored"
    );
}

/// Starts a manager and a servant on a terminal, and waits for its prompt.
fn prompt_on_terminal(test: &str) -> (TestDir, Manager, OnTerminal) {
    let dir = TestDir::new(test);
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let alice = OnTerminal::start(&dir, "alice", m.port);
    alice.wait_screen("alice joining", |s| {
        s.rows.iter().any(|r| r.contains("joined as alice ("))
    });
    alice.wait_prompt("alice>", 7);
    (dir, m, alice)
}

fn wait_exit(alice: &mut OnTerminal, why: &str) -> std::process::ExitStatus {
    try_wait_for(WAIT, || alice.child.try_wait().ok().flatten())
        .unwrap_or_else(|| fail(&format!("{why} did not end the servant")))
}

#[test]
fn ctrl_d_on_an_empty_line_ends_the_input_and_restores_the_terminal() {
    let before = modes(&open_pty().slave);
    let (_dir, _m, mut alice) = prompt_on_terminal("console-ctrl-d");
    // On a line, Ctrl-D deletes under the cursor; on an empty one it ends the input.
    alice.type_keys(b"ab\x01\x04");
    alice.wait_prompt("alice> b", 7);
    alice.type_keys(b"\x04\x04");
    assert!(wait_exit(&mut alice, "Ctrl-D").success());
    let s = alice.screen();
    assert!(
        s.rows.iter().any(|r| r.contains("leaving: end of input")),
        "{s:?}"
    );
    assert_eq!(modes(&alice.slave), before);
}

#[test]
fn sigterm_restores_the_terminal() {
    let before = modes(&open_pty().slave);
    let (_dir, _m, mut alice) = prompt_on_terminal("console-sigterm");
    alice.type_keys(b"half a line");
    alice.wait_prompt("alice> half a line", 18);
    // SAFETY: kill(2) on the child's pid touches no memory.
    unsafe { libc::kill(alice.child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(wait_exit(&mut alice, "SIGTERM").success());
    let s = alice.screen();
    assert!(
        s.rows.iter().any(|r| r.contains("leaving: SIGTERM")),
        "{s:?}"
    );
    assert_eq!(modes(&alice.slave), before);
}

#[test]
fn a_long_line_scrolls_and_a_resize_draws_it_again_within_the_window() {
    let (_dir, _m, mut alice) = prompt_on_terminal("console-resize");
    let long: String = ('a'..='z').cycle().take(100).collect();
    alice.type_keys(long.as_bytes());
    // Wider than the window: the end of the line, on one row, the cursor in the last column.
    let tail = |cols: usize| format!("alice> {}", &long[long.len() - (cols - 8)..]);
    alice.wait_prompt(&tail(COLS), COLS - 1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 40,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one valid `winsize`; kill(2) touches no memory.
    unsafe {
        assert_eq!(
            libc::ioctl(alice.keys.as_raw_fd(), libc::TIOCSWINSZ, &size),
            0
        );
        libc::kill(alice.child.id() as libc::pid_t, libc::SIGWINCH);
    }
    alice.wait_prompt(&tail(40), 39);
}
