//! The connection manager on its own, spoken to as telnet would: the article's
//! `needs peer list` and its `<peers>` document, and the ways it refuses to start.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;

/// Registers a raw client with a fresh key as a listed servant and returns it, with the
/// list that answered and its id.
fn register(manager_port: u16, port: u16, name: &str) -> (Raw, Vec<PeerInfo>, String) {
    let mut c = Raw::connect(manager_port);
    let me = new_identity();
    let line = register_with(&mut c, &me, port, name);
    match parse_peers(&line, "peers") {
        Ok(p) => (c, p, me.id.clone()),
        Err(e) => fail(&e),
    }
}

#[test]
fn needs_peer_list_answers_one_line_with_me_true_only_for_the_asker() {
    let dir = TestDir::new("peer-list");
    let m = start_manager(&dir, "<timeout>30</timeout>");
    let (mut alice, first, ida) = register(m.port, 40001, "alice");
    assert_eq!(
        first.len(),
        1,
        "alice's own list holds only her: {first:?}\n{}",
        dump()
    );
    assert!(first[0].me);
    let (_bob, _, _) = register(m.port, 40002, "bob");

    // A fresh client, as telnet would, types the article's command.
    let mut asker = Raw::connect(m.port);
    asker.send("needs peer list");
    let line = asker.expect_line("the peer list");
    assert!(
        line.starts_with("<peers") && line.ends_with("</peers>"),
        "one line holding the whole document: {line:?}\n{}",
        dump()
    );
    assert_eq!(
        asker.read_line(Duration::from_millis(300)),
        Got::Nothing,
        "the answer is a single line\n{}",
        dump()
    );
    let peers = parse_peers(&line, "peers").unwrap_or_else(|e| fail(&e));
    assert_eq!(peers.len(), 3, "alice, bob and the asker: {peers:?}");
    let me: Vec<&PeerInfo> = peers.iter().filter(|p| p.me).collect();
    assert_eq!(me.len(), 1, "exactly one <me>TRUE</me>: {line}");
    assert_eq!(me[0].name, None, "the asker never gave a name: {line}");
    let alice_entry = peers.iter().find(|p| p.name.as_deref() == Some("alice"));
    let alice_entry = alice_entry.unwrap_or_else(|| fail(&format!("no alice in {line}")));
    assert_eq!(
        (
            alice_entry.ip.as_str(),
            alice_entry.port,
            alice_entry.id.as_deref(),
            alice_entry.me
        ),
        ("127.0.0.1", 40001, Some(ida.as_str()), false)
    );
    let mut offsets: Vec<u32> = peers.iter().map(|p| p.offset).collect();
    offsets.sort();
    assert_eq!(
        offsets,
        vec![1, 2, 3],
        "each client has its own slot: {line}"
    );

    // Alice, asking on her own connection, is TRUE in her copy and bob is FALSE.
    alice.send("needs peer list");
    let line = alice.expect_line_where("alice's list", |l| l.starts_with("<peers"));
    let peers = parse_peers(&line, "peers").unwrap_or_else(|e| fail(&e));
    let trues: Vec<Option<&str>> = peers
        .iter()
        .filter(|p| p.me)
        .map(|p| p.name.as_deref())
        .collect();
    assert_eq!(trues, vec![Some("alice")], "{line}");
    assert!(
        peers
            .iter()
            .any(|p| p.name.as_deref() == Some("bob") && !p.me),
        "{line}"
    );
}

#[test]
fn busy_port_is_one_error_line_naming_the_address() {
    let dir = TestDir::new("busy-port");
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind a port to make it busy");
    let port = busy.local_addr().expect("local address").port();
    let mut p = spawn_manager(&dir, "manager", port, "<bind>127.0.0.1</bind>");
    let status = p.wait_exit();
    assert!(!status.success(), "a busy port must fail\n{}", dump());
    let err = p.stderr();
    assert_eq!(err.len(), 1, "a single error line\n{}", dump());
    assert!(
        err[0].contains(&format!("127.0.0.1:{port}")),
        "the line names the address\n{}",
        dump()
    );
    assert!(err[0].contains("ERROR"), "{}", dump());
    drop(busy);
}

#[test]
fn missing_config_file_is_one_error_line() {
    assert_missing_config_is_one_error_line("manager", MANAGER_BIN, "no-such-manager.xml");
}

#[test]
fn console_lists_registered_servants() {
    // The article's manager form showed its peers; ours prints them when Enter is pressed.
    let dir = TestDir::new("manager-console");
    let mut m = start_manager(&dir, "<timeout>30</timeout>");
    let (_a, _, _) = register(m.port, 40011, "alice");
    m.proc.send("peers");
    m.proc.wait_stdout("1 servant(s)", |l| {
        l.starts_with("1 servant(s) on the network")
    });
    let line = m.proc.wait_stdout("alice's row", |l| {
        l.contains("alice") && l.contains("40011")
    });
    assert!(line.contains("127.0.0.1"), "{line}\n{}", dump());
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_the_rest_are_served() {
    hog_is_dropped("needs peer list");
}

#[test]
fn a_client_flooding_sample_requests_unread_is_dropped_and_the_rest_are_served() {
    hog_is_dropped("needs sample 64");
}

/// A listed client asks `command` over and over and never reads the answers. What
/// waits for it is bounded: once its outbox is full it is dropped (and the others are
/// told it left), while everyone else keeps getting answers.
fn hog_is_dropped(command: &'static str) {
    let dir = TestDir::new("manager-hog");
    // Nothing listens on the ports these clients give: no reachability probes.
    let m = start_manager(&dir, "<timeout>30</timeout><probe>false</probe>");
    let mut others: Vec<Raw> = (0..20)
        .map(|i| register(m.port, 41000 + i, &format!("s{i}")).0)
        .collect();
    let (hog, _, idhog) = register(m.port, 42000, "hog");
    // Every answer names 20 or 21 servants (about 2.5 KB): 20,000 of them are far more
    // than the manager holds for one client.
    let writer = {
        let mut stream = hog.stream.try_clone().expect("clone the hog's socket");
        std::thread::spawn(move || {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
            let batch = format!("{command}\n").repeat(1000);
            for _ in 0..20 {
                if std::io::Write::write_all(&mut stream, batch.as_bytes()).is_err() {
                    break;
                }
            }
        })
    };
    m.proc
        .wait_log("peer left: hog 127.0.0.1:42000 (slot 21): not reading its answers");
    let _ = writer.join();
    // The others are told, and still answered at once.
    let leave = others[0].expect_line_where("the hog's <leave>", |l| {
        l.starts_with("<leave") && l.contains("<name>hog</name>")
    });
    assert!(leave.contains(&format!("<id>{idhog}</id>")), "{leave}");
    others[1].send("needs peer list");
    let list = others[1].expect_line_where("the list", |l| l.starts_with("<peers"));
    let peers = parse_peers(&list, "peers").unwrap_or_else(|e| fail(&e));
    assert_eq!(peers.len(), 20, "the hog is gone from the list: {list}");
    drop(hog);
}

#[test]
fn needs_sample_answers_a_random_few_of_the_listed_never_the_asker() {
    let dir = TestDir::new("sample");
    let m = start_manager(&dir, "<timeout>30</timeout>");
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for i in 0..6u16 {
        let (c, _, id) = register(m.port, 40101 + i, &format!("s{i}"));
        clients.push(c);
        ids.push(id);
    }
    let sample = |c: &mut Raw, count: &str| -> (Vec<PeerInfo>, String) {
        c.send(&format!("needs sample {count}"));
        let line = c.expect_line_where("a sample", |l| {
            l.starts_with("<sample") || l.starts_with("<error")
        });
        (parse_peers(&line, "sample").unwrap_or_default(), line)
    };
    // A listed servant asking: others only, each once, from the listed.
    let asker = &mut clients[0];
    let (peers, line) = sample(asker, "3");
    assert_eq!(peers.len(), 3, "{line}\n{}", dump());
    assert!(
        line.contains("total=\"6\""),
        "the sample says how many are listed: {line}"
    );
    let mut got: Vec<String> = peers
        .iter()
        .map(|p| p.id.clone().unwrap_or_default())
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 3, "distinct servants: {line}");
    assert!(
        got.iter().all(|id| ids[1..].contains(id)),
        "listed others only: {line}"
    );
    assert!(peers.iter().all(|p| !p.me), "{line}");
    let (peers, line) = sample(asker, "64");
    assert_eq!(
        peers.len(),
        5,
        "all the others when fewer are listed: {line}"
    );
    // Random: asking for one, again and again, does not always give the same servant.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let (peers, line) = sample(asker, "1");
        assert_eq!(peers.len(), 1, "{line}");
        seen.insert(peers[0].id.clone());
    }
    assert!(seen.len() >= 2, "20 samples of one all named {seen:?}");
    // Out of range, or not a number: one error line, and the connection still serves.
    for bad in ["0", "65", "x", "1 2"] {
        let (_, line) = sample(asker, bad);
        assert!(
            line.starts_with("<error>") && line.contains("needs sample"),
            "{bad}: {line}"
        );
    }
    // Anyone, as with telnet, may ask too: a fresh client is not listed, so it gets
    // the listed servants.
    let mut telnet = Raw::connect(m.port);
    let (peers, line) = sample(&mut telnet, "10");
    assert_eq!(peers.len(), 6, "{line}");
}

#[test]
fn a_client_that_needs_no_changes_is_not_told_of_joins_and_samples_instead() {
    let dir = TestDir::new("manager-quiet");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let (me, other) = (new_identity(), new_identity());
    let mut quiet = Raw::connect(m.port);
    register_with(&mut quiet, &me, 2300, "quiet");
    let mut told = Raw::connect(m.port);
    register_with(&mut told, &other, 2301, "told");
    // Before: told of the next join, as every listed servant is.
    let first = new_identity();
    let mut c1 = Raw::connect(m.port);
    register_with(&mut c1, &first, 2302, "first");
    quiet.expect_line_where("the <join> of first", |l| {
        l.starts_with("<join ") && l.contains("<name>first</name>")
    });
    quiet.send("needs no changes");
    let ans = quiet.expect_line("the answer to needs no changes");
    assert!(ans.starts_with("<unchanged version="), "{ans}");
    let second = new_identity();
    let mut c2 = Raw::connect(m.port);
    register_with(&mut c2, &second, 2303, "second");
    told.expect_line_where("the <join> of second", |l| {
        l.starts_with("<join ") && l.contains("<name>second</name>")
    });
    match quiet.read_line(Duration::from_millis(500)) {
        Got::Nothing => {}
        other => panic!("a quiet client was pushed {other:?}\n{}", dump()),
    }
    quiet.send("needs sample 8");
    let sample = quiet.expect_line("a sample");
    assert!(
        sample.starts_with("<sample ") && sample.contains("second"),
        "{sample}"
    );
    // `needs changes`: the whole list, then the pushes again.
    quiet.send("needs changes");
    let list = quiet.expect_line("the list answering needs changes");
    assert!(
        list.starts_with("<peers ") && list.contains("second"),
        "{list}"
    );
    let third = new_identity();
    let mut c3 = Raw::connect(m.port);
    register_with(&mut c3, &third, 2304, "third");
    quiet.expect_line_where("the <join> of third", |l| {
        l.starts_with("<join ") && l.contains("<name>third</name>")
    });
}

#[test]
fn a_flood_of_needs_changes_from_one_client_leaves_the_others_served() {
    let dir = TestDir::new("manager-quiet-flood");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let (me, other) = (new_identity(), new_identity());
    let mut flooder = Raw::connect(m.port);
    register_with(&mut flooder, &me, 2310, "flooder");
    let mut told = Raw::connect(m.port);
    register_with(&mut told, &other, 2311, "told");
    // Unlisted, listed, quiet or not: each answered, nothing else changed.
    let mut stranger = Raw::connect(m.port);
    stranger.send("needs no changes");
    let ans = stranger.expect_line("the stranger's answer");
    assert!(ans.starts_with("<unchanged version="), "{ans}");
    for i in 0..500 {
        flooder.send(if i % 2 == 0 {
            "needs no changes"
        } else {
            "needs changes"
        });
    }
    for i in 0..500 {
        // (`told`'s join may come first, pushed before the first `needs no changes`.)
        let l = flooder.expect_line_where("an answer to the flood", |l| !l.starts_with("<join "));
        let want = if i % 2 == 0 { "<unchanged " } else { "<peers " };
        assert!(l.starts_with(want), "answer {i}: {l}");
    }
    let late = new_identity();
    let mut c = Raw::connect(m.port);
    register_with(&mut c, &late, 2312, "late");
    told.expect_line_where("the <join> of late", |l| {
        l.starts_with("<join ") && l.contains("<name>late</name>")
    });
    assert_eq!(
        listed_names(m.port),
        ["flooder", "late", "told"],
        "{}",
        dump()
    );
}
