//! Chat between three servants: every line typed into one appears exactly once on each
//! other, as `<name> text`, with the text exactly as typed and in the order typed; the
//! writer does not print its own lines.

mod common;

use common::*;

/// Texts that must survive the trip byte for byte.
const TEXTS: &[&str] = &[
    "hello",
    "  two  leading and inner  spaces",
    "trailing spaces   ",
    "<b>bold</b> & <i>&amp;</i> \"quoted\" 'single'",
    "ünïcödé ✓ 日本語 🦀",
    "MSG looks like a protocol word",
    "tab\there",
    "a",
];

#[test]
fn each_line_reaches_every_other_servant_exactly_once() {
    let dir = TestDir::new("chat-three");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob", "carol"]);

    for w in s.iter_mut() {
        let name = w.name.clone();
        for t in TEXTS {
            w.proc.send(t);
        }
        // A last line marks the end: messages from one writer arrive in order, so once it
        // is shown, everything before it has been too.
        w.proc.send(&format!("end of {name}"));
    }
    for r in &s {
        for w in &s {
            if r.name != w.name {
                r.wait_heard(&w.name, &format!("end of {}", w.name));
            }
        }
    }
    for r in &s {
        for w in &s {
            let heard = r.heard_from(&w.name);
            if r.name == w.name {
                assert!(
                    heard.is_empty(),
                    "{} printed its own lines: {heard:?}\n{}",
                    r.name,
                    dump()
                );
                continue;
            }
            let mut want: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
            want.push(format!("end of {}", w.name));
            assert_eq!(
                heard,
                want,
                "{} heard from {} (exactly once each, as typed, in order)\n{}",
                r.name,
                w.name,
                dump()
            );
        }
    }
    // Nothing else was printed: every stdout line is one of the others' messages.
    for r in &s {
        let total: usize = s
            .iter()
            .filter(|w| w.name != r.name)
            .map(|w| r.heard_from(&w.name).len())
            .sum();
        assert_eq!(
            r.proc.stdout().len(),
            total,
            "{}: stray output\n{}",
            r.name,
            dump()
        );
    }
}

#[test]
fn a_burst_of_200_lines_keeps_its_order() {
    let dir = TestDir::new("chat-burst");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob", "carol"]);
    let burst: String = (1..=200)
        .map(|i| format!("line {i:03} of the burst\n"))
        .collect();
    // One write: the servant reads them as fast as it can.
    s[0].proc.send_bytes(burst.as_bytes());
    let want: Vec<String> = (1..=200)
        .map(|i| format!("line {i:03} of the burst"))
        .collect();
    for r in &s[1..] {
        r.wait_heard("alice", "line 200 of the burst");
        assert_eq!(
            r.heard_from("alice"),
            want,
            "{} shows the burst once, in order\n{}",
            r.name,
            dump()
        );
    }
    assert!(s[0].proc.stdout().is_empty(), "{}", dump());
}

#[test]
fn lines_typed_at_once_by_everyone_each_arrive_once() {
    // All three write at the same time: each receiver shows each writer's lines in that
    // writer's order, and nothing twice.
    let dir = TestDir::new("chat-crossfire");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob", "carol"]);
    for srv in s.iter_mut() {
        let name = srv.name.clone();
        let lines: String = (1..=50).map(|i| format!("{name} says {i}\n")).collect();
        srv.proc.send_bytes(lines.as_bytes());
    }
    for r in &s {
        for w in &s {
            if r.name == w.name {
                continue;
            }
            r.wait_heard(&w.name, &format!("{} says 50", w.name));
            let want: Vec<String> = (1..=50).map(|i| format!("{} says {i}", w.name)).collect();
            assert_eq!(
                r.heard_from(&w.name),
                want,
                "{} from {}\n{}",
                r.name,
                w.name,
                dump()
            );
        }
    }
}

#[test]
fn lines_written_directly_and_lines_queued_keep_one_order() {
    // A line typed alone is written to each peer's socket by the typist itself; lines that
    // arrive together, or meet a peer whose socket is full, go through that peer's sender
    // thread. Mixed, with one receiver stopped long enough for its socket to fill, every
    // line still arrives once and in order.
    let dir = TestDir::new("chat-direct-and-queued");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["alice", "bob", "carol"]);
    let pad = "x".repeat(4000);
    let mut want = Vec::new();
    let mut n = 0;
    let mut line = |long: bool| {
        n += 1;
        let text = if long {
            format!("line {n:04} {pad}")
        } else {
            format!("line {n:04}")
        };
        want.push(text.clone());
        text
    };
    for round in 0..3 {
        for _ in 0..5 {
            let one = line(false);
            s[0].proc.send(&one);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let block: String = (0..100).map(|_| line(false) + "\n").collect();
        s[0].proc.send_bytes(block.as_bytes());
        if round == 1 {
            // carol stops reading. Lines of 4 KB typed one by one are written straight to
            // her socket until it is full; the rest wait in her queue, while bob keeps
            // getting every line straight away.
            s[2].proc.signal("STOP");
            for _ in 0..600 {
                let long = line(true);
                s[0].proc.send(&long);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            for _ in 0..5 {
                let one = line(false);
                s[0].proc.send(&one);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            s[2].proc.signal("CONT");
        }
    }
    let last = want.last().unwrap().clone();
    for r in &s[1..] {
        r.wait_heard("alice", &last);
        let heard = r.heard_from("alice");
        assert!(
            heard == want,
            "{} heard {} lines from alice, want {} once each in order; first difference at {:?}\n{}",
            r.name,
            heard.len(),
            want.len(),
            heard.iter().zip(&want).position(|(a, b)| a != b),
            dump()
        );
    }
}

/// A peer that takes nothing (its port accepts connections but never answers `HELLO`)
/// holds at most `<queue>` of our lines: past it the oldest are dropped and logged, and
/// the servants that read still hear every line.
#[test]
fn a_peer_that_takes_nothing_holds_at_most_queue_lines() {
    let dir = TestDir::new("chat-queue-bound");
    let m = start_manager(&dir, "<timeout>60</timeout><probe>false</probe>");
    // Never accepted: the kernel completes each connection, and nobody reads it.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut ghost = Raw::connect(m.port);
    register_with(
        &mut ghost,
        &new_identity(),
        mute.local_addr().unwrap().port(),
        "ghost",
    );
    let mut alice = start_servant(&dir, "alice", m.port, "<queue>8</queue>");
    let bob = start_servant(&dir, "bob", m.port, "");
    alice.wait_knows(&["bob"]);
    alice.proc.wait_log("peer joined: ghost");
    for i in 0..40 {
        alice.proc.send(&format!("line {i}"));
    }
    bob.wait_heard("alice", "line 39");
    assert_eq!(bob.heard_from("alice").len(), 40, "{}", dump());
    alice.proc.wait_log("ghost is not taking messages; dropped");
    alice.proc.send("/peers");
    let row = alice.proc.wait_stdout("ghost's /peers row", |l| {
        l.contains("ghost") && l.contains("queued")
    });
    let queued: usize = row
        .split(", ")
        .find_map(|p| {
            p.strip_suffix(" queued")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no count in {row:?}"));
    assert!(queued <= 9, "{queued} queued for ghost: {row}\n{}", dump());
    drop(ghost);
}
