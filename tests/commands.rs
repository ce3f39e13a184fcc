//! The servant's console commands (`/peers`, `/help`, `/quit`, unknown commands, `//text`)
//! and the ways it leaves: `/quit`, SIGINT, SIGTERM and the end of standard input each
//! exit 0 and say `bye`, so the manager drops the servant at once; `--no-input` runs on
//! with standard input closed until a signal.

mod common;

use std::time::Duration;

use common::*;

/// A manager whose time-out is far longer than any wait here: a servant that disappears
/// from its list went because it said `bye` or closed its connection, not by silence.
const PATIENT: &str = "<timeout>30</timeout>";

#[test]
fn peers_help_unknown_and_slash_slash() {
    let dir = TestDir::new("commands");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob", "carol"]);
    let alice = &mut s[0];

    alice.proc.send("/peers");
    alice.proc.wait_stdout("the /peers heading", |l| {
        l == "2 peer(s); manager connected"
    });
    for other in ["bob", "carol"] {
        alice.proc.wait_stdout(&format!("{other} in /peers"), |l| {
            l.trim_start().starts_with(other) && l.contains("127.0.0.1:")
        });
    }
    alice.proc.wait_stdout("itself in /peers", |l| {
        l.trim_start().starts_with("alice")
            && l.ends_with(&format!("(this servant) id {}", alice.id))
    });

    alice.proc.send("/help");
    alice
        .proc
        .wait_stdout("/help text", |l| l.trim_start().starts_with("/quit"));
    alice
        .proc
        .wait_stdout("/help text", |l| l.trim_start().starts_with("//text"));

    alice.proc.send("/frobnicate now");
    alice.proc.wait_stdout("the unknown-command answer", |l| {
        l == "unknown command /frobnicate now; /help lists the commands"
    });

    alice.proc.send("//etc/hosts is a path");
    alice.proc.send("done");
    for other in &s[1..] {
        other.wait_heard("alice", "done");
        assert_eq!(
            other.heard_from("alice"),
            vec!["/etc/hosts is a path".to_owned(), "done".to_owned()],
            "{}: commands stay local; //text sends /text\n{}",
            other.name,
            dump()
        );
    }
}

/// How alice is made to leave.
enum Leave {
    /// Through standard input: ordered after the line typed before it, which must
    /// still be delivered.
    Input(&'static str),
    CloseInput,
    /// A signal, which may overtake a line still unread on standard input.
    Signal(&'static str),
}

/// Starts alice and bob, makes alice leave, and checks she exits 0, the manager drops
/// her at once and bob hears of it.
fn leaves_cleanly(test: &str, leave: Leave) {
    let dir = TestDir::new(test);
    let m = start_manager(&dir, PATIENT);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob"]);
    wait_listed(m.port, &["alice", "bob"]);
    s[0].proc.send("last words");
    match leave {
        // Something typed just before leaving still arrives.
        Leave::Input(line) => s[0].proc.send(line),
        Leave::CloseInput => s[0].proc.close_stdin(),
        Leave::Signal(sig) => {
            s[1].wait_heard("alice", "last words");
            s[0].proc.signal(sig);
        }
    }
    let status = s[0].proc.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status\n{}", dump());
    wait_listed(m.port, &["bob"]);
    m.proc.wait_log("peer left: alice");
    s[1].proc.wait_log("peer left: alice at ");
    s[1].wait_heard("alice", "last words");
    // Gone for good: it does not come back.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(listed_names(m.port), vec!["bob".to_owned()], "{}", dump());
    assert_eq!(m.proc.count_log("peer joined: alice"), 1, "{}", dump());
}

#[test]
fn quit_exits_0_and_leaves_at_once() {
    leaves_cleanly("quit", Leave::Input("/quit"));
}

#[test]
fn sigint_exits_0_and_leaves_at_once() {
    leaves_cleanly("sigint", Leave::Signal("INT"));
}

#[test]
fn sigterm_exits_0_and_leaves_at_once() {
    leaves_cleanly("sigterm", Leave::Signal("TERM"));
}

#[test]
fn end_of_input_exits_0_and_leaves_at_once() {
    leaves_cleanly("eof", Leave::CloseInput);
}

#[test]
fn no_input_runs_with_stdin_closed_until_sigterm() {
    let dir = TestDir::new("no-input");
    let m = start_manager(&dir, PATIENT);
    let bob = start_servant(&dir, "bob", m.port, "");
    let cfg = servant_config("quiet", m.port, Some(0), "");
    let mut quiet = Servant::joined(
        spawn_servant(&dir, "quiet", &cfg, &["--no-input"], "info"),
        "quiet",
    );
    quiet.proc.close_stdin();
    bob.wait_knows(&["quiet"]);
    // Still there a while after its input closed, and still hearing the others.
    let mut bob = bob;
    bob.proc.send("are you there?");
    quiet.wait_heard("bob", "are you there?");
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        quiet.proc.is_running(),
        "--no-input ignores standard input\n{}",
        dump()
    );
    assert_eq!(listed_names(m.port), vec!["bob", "quiet"], "{}", dump());

    quiet.proc.signal("TERM");
    assert_eq!(quiet.proc.wait_exit().code(), Some(0), "{}", dump());
    wait_listed(m.port, &["bob"]);
}
