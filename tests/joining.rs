//! Joining the network: slots (the article's offset) and assigned ports counting from
//! `<firstport>`, a servant whose assigned port is taken, and `<listen>0</listen>`.

mod common;

use std::net::TcpListener;

use common::*;

/// The `<me>TRUE</me>` entry a fresh client gets: its slot and assigned port.
fn my_entry(c: &mut Raw) -> PeerInfo {
    c.send("needs peer list");
    let line = c.expect_line("the peer list");
    let peers = parse_peers(&line, "peers").unwrap_or_else(|e| fail(&e));
    let me: Vec<PeerInfo> = peers.into_iter().filter(|p| p.me).collect();
    match me.as_slice() {
        [one] => one.clone(),
        _ => fail(&format!("expected one <me>TRUE</me> in {line}")),
    }
}

#[test]
fn slots_and_ports_count_from_firstport() {
    let dir = TestDir::new("firstport");
    let first = free_port();
    // Leave room to count up without wrapping past 65535.
    let first = first.min(65000);
    let m = start_manager(&dir, &format!("<firstport>{first}</firstport>"));

    let mut c1 = Raw::connect(m.port);
    let e1 = my_entry(&mut c1);
    let mut c2 = Raw::connect(m.port);
    let e2 = my_entry(&mut c2);
    let mut c3 = Raw::connect(m.port);
    let e3 = my_entry(&mut c3);
    let got: Vec<(u32, u16)> = [&e1, &e2, &e3].iter().map(|e| (e.offset, e.port)).collect();
    assert_eq!(
        got,
        vec![(1, first), (2, first + 1), (3, first + 2)],
        "slots from 1, ports from <firstport>\n{}",
        dump()
    );

    // The article reuses the lowest free slot, while ports keep counting.
    c1.shutdown();
    drop(c1);
    let e4 = wait_for("slot 1 to be free again", || {
        let mut c = Raw::connect(m.port);
        let e = my_entry(&mut c);
        (e.offset == 1).then_some((c, e))
    });
    assert!(
        e4.1.port > first + 2,
        "a new client gets a new port, not a reused one: {:?}\n{}",
        e4.1,
        dump()
    );
}

#[test]
fn servant_whose_assigned_port_is_busy_joins_on_another() {
    let dir = TestDir::new("busy-assigned");
    // The first port the manager hands out is held here, so the servant cannot have it.
    let busy = TcpListener::bind("0.0.0.0:0").expect("bind a port to make it busy");
    let first = busy.local_addr().expect("local address").port();
    let m = start_manager(&dir, &format!("<firstport>{first}</firstport>"));

    let cfg = servant_config("alice", m.port, None, "");
    let alice = Servant::joined(spawn_servant(&dir, "alice", &cfg, &[], "info"), "alice");
    alice
        .proc
        .wait_log(&format!("assigned port {first} is busy here"));
    assert_ne!(alice.port, first, "{}", dump());
    wait_listed(m.port, &["alice"]);
    let entry = listed(m.port);
    assert_eq!(
        entry[0].port,
        alice.port,
        "the manager lists the port alice really listens on\n{}",
        dump()
    );

    // And it is the right port: another servant reaches alice there.
    let mut bob = start_servant(&dir, "bob", m.port, "");
    bob.wait_knows(&["alice"]);
    bob.proc.send("to the one on a stand-in port");
    alice.wait_heard("bob", "to the one on a stand-in port");
    drop(busy);
}

#[test]
fn listen_zero_is_listed_with_the_port_it_got() {
    let dir = TestDir::new("listen-zero");
    let first = free_port().min(65000);
    let m = start_manager(&dir, &format!("<firstport>{first}</firstport>"));
    let mut alice = start_servant(&dir, "alice", m.port, "");
    assert_ne!(alice.port, 0, "{}", dump());
    wait_listed(m.port, &["alice"]);
    let entry = &listed(m.port)[0];
    assert_eq!(
        (entry.port, entry.ip.as_str(), entry.offset),
        (alice.port, "127.0.0.1", 1),
        "listed with the port it listens on, in slot 1\n{}",
        dump()
    );
    // Something really listens there: a line typed into it is shown.
    let mut telnet = Raw::connect(alice.port);
    telnet.send("knock knock");
    let want = format!("<127.0.0.1:{}> knock knock", telnet.local_port());
    alice.proc.wait_stdout(&want, |l| l == want);
    alice.proc.close_stdin();
    assert!(alice.proc.wait_exit().success(), "{}", dump());
}
