//! The connection manager dies and a new one starts on the same port: servants keep
//! chatting with the peers they know meanwhile, and rejoin the new manager by themselves.
//! A config that names a second manager moves to it when the first is gone.

mod common;

use common::*;

#[test]
fn servants_rejoin_a_restarted_manager() {
    let dir = TestDir::new("restart");
    let mut m1 = start_manager(&dir, MANAGER_DEFAULTS);
    let port = m1.port;
    let mut s = start_mesh(&dir, port, &["alice", "bob"]);
    wait_listed(port, &["alice", "bob"]);

    m1.proc.kill();
    for srv in &s {
        srv.proc.wait_log("lost the connection manager");
    }
    // No manager: the servants still reach each other.
    s[0].proc.send("while the manager is down");
    s[1].wait_heard("alice", "while the manager is down");
    s[1].proc.send("still here too");
    s[0].wait_heard("bob", "still here too");

    // A new manager on the same port: both come back to its list on their own.
    let m2 = start_manager_on(&dir, port, MANAGER_DEFAULTS);
    assert_eq!(m2.port, port, "{}", dump());
    wait_listed(port, &["alice", "bob"]);
    for srv in &s {
        srv.proc.wait_log("the connection manager restarted");
    }
    let entries = listed(port);
    for srv in &s {
        let e = entries
            .iter()
            .find(|e| e.name.as_deref() == Some(srv.name.as_str()))
            .unwrap_or_else(|| fail(&format!("{} is not listed: {entries:?}", srv.name)));
        assert_eq!(
            (e.port, e.id.as_deref()),
            (srv.port, Some(srv.id.as_str())),
            "rejoined with the same port and id\n{}",
            dump()
        );
    }

    // The network works as before: a newcomer is known to both, and all chat.
    let carol = start_servant(&dir, "carol", port, "");
    s.push(carol);
    wait_mesh(&s);
    s[2].proc.send("hello after the restart");
    s[0].wait_heard("carol", "hello after the restart");
    s[1].wait_heard("carol", "hello after the restart");
    s[0].proc.send("alice after the restart");
    s[1].wait_heard("alice", "alice after the restart");
    s[2].wait_heard("alice", "alice after the restart");
    // Nobody was shown anything twice across the restart.
    assert_eq!(
        s[1].heard_from("alice"),
        vec!["while the manager is down", "alice after the restart"],
        "{}",
        dump()
    );
    // The old peers were never dropped: no "peer left" between alice and bob.
    assert_eq!(s[0].proc.count_log("peer left: bob"), 0, "{}", dump());
    assert_eq!(s[1].proc.count_log("peer left: alice"), 0, "{}", dump());
}

#[test]
fn servants_move_to_the_next_manager_their_config_names() {
    let dir = TestDir::new("failover");
    let mut first = start_labelled_manager(&dir, "manager-a", 0, MANAGER_DEFAULTS);
    let second = start_labelled_manager(&dir, "manager-b", 0, MANAGER_DEFAULTS);
    let (a, b) = (first.port, second.port);
    let also_b = format!("<connectionmgr port=\"{b}\">127.0.0.1</connectionmgr>");
    // Bob beats at another pace (0.5 s, a third of the managers' time-out, against 0.3 s),
    // so the two look back at different moments, and one hears of the other's move back.
    let bob = servant_config("bob", a, Some(0), &also_b)
        .replace("<heartbeat>0.3</heartbeat>", "<heartbeat>1</heartbeat>");
    let mut s = vec![
        start_servant(&dir, "alice", a, &also_b),
        Servant::joined(spawn_servant(&dir, "bob", &bob, &[], "info"), "bob"),
    ];
    wait_mesh(&s);
    wait_listed(a, &["alice", "bob"]);
    // Tried in order: the first manager answered, so nobody registered with the second.
    assert!(listed_names(b).is_empty(), "{}", dump());

    first.proc.kill();
    for srv in &s {
        srv.proc.wait_log(&format!(
            "registered with the connection manager at 127.0.0.1:{b}"
        ));
    }
    wait_listed(b, &["alice", "bob"]);
    s[0].proc.send("after the move");
    s[1].wait_heard("alice", "after the move");

    // The second manager's list is whole: a newcomer whose first manager is down meets both.
    s.push(start_servant(&dir, "carol", a, &also_b));
    wait_mesh(&s);
    s[2].proc.send("hello from carol");
    s[0].wait_heard("carol", "hello from carol");
    s[1].wait_heard("carol", "hello from carol");

    // The first manager returns after the grace period of the move has ended (5 s with
    // these settings): everyone goes back to it, and nobody stays split off or is dropped,
    // though the second manager tells the others of each one that moves back as it leaves.
    std::thread::sleep(std::time::Duration::from_millis(5500));
    let _back = start_labelled_manager(&dir, "manager-a-again", a, MANAGER_DEFAULTS);
    for srv in &s {
        srv.proc.wait_log(&format!(
            "registered with the connection manager at 127.0.0.1:{a}, named earlier in the config, which answers again; left the one at 127.0.0.1:{b}"
        ));
    }
    wait_listed(a, &["alice", "bob", "carol"]);
    wait_for("the second manager to list nobody", || {
        listed_names(b).is_empty().then_some(())
    });
    s[1].proc.send("hello carol");
    s[2].wait_heard("bob", "hello carol");
    for srv in &s {
        assert_eq!(srv.proc.count_log("peer left:"), 0, "{}", dump());
        assert_eq!(srv.proc.count_log("is no longer listed"), 0, "{}", dump());
    }
    // Nobody was shown anything twice across the moves.
    assert_eq!(
        s[1].heard_from("alice"),
        vec!["after the move"],
        "{}",
        dump()
    );
}

#[test]
fn a_manager_that_accepts_but_refuses_is_passed_over_for_the_next() {
    let dir = TestDir::new("full-first");
    // The first manager takes one connection, and a raw client holds it: it accepts every
    // newcomer's connection and answers only `<error>manager full ...</error>`.
    let full = start_labelled_manager(
        &dir,
        "manager-full",
        0,
        &format!("{MANAGER_DEFAULTS}<maxconnections>1</maxconnections>"),
    );
    let mut holder = Raw::connect(full.port);
    holder.send("needs peer list");
    holder.expect_line_where("the holder's list", |l| l.starts_with("<peers"));
    let open = start_labelled_manager(&dir, "manager-open", 0, MANAGER_DEFAULTS);
    let also_open = format!(
        "<connectionmgr port=\"{}\">127.0.0.1</connectionmgr>",
        open.port
    );
    let s = vec![
        start_servant(&dir, "alice", full.port, &also_open),
        start_servant(&dir, "bob", full.port, &also_open),
    ];
    wait_mesh(&s);
    wait_listed(open.port, &["alice", "bob"]);
    full.proc.wait_log("full: 1 connections");
}
