//! When a servant leaves, the others stop trying to reach it: their sender thread for it
//! (`send-NAME`) ends, as the article's "discontinue attempting to communicate with the
//! servant who left". Checked from outside, in /proc/PID/task/*/comm.

mod common;

use common::*;

/// The name Linux shows for a thread called `send-NAME` (at most 15 bytes).
fn sender_thread(name: &str) -> String {
    format!("send-{name}").chars().take(15).collect()
}

fn has_thread(s: &Servant, thread: &str) -> bool {
    s.proc.thread_names().iter().any(|t| t == thread)
}

#[test]
fn sender_threads_for_leavers_end() {
    let dir = TestDir::new("leavers");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let mut s = start_mesh(&dir, m.port, &["stayer", "quitter", "crasher"]);
    let stayer = &s[0];
    for leaver in ["quitter", "crasher"] {
        let t = sender_thread(leaver);
        wait_for(&format!("stayer to run a thread {t}"), || {
            has_thread(stayer, &t).then_some(())
        });
    }
    // Send something so the senders are connected, not idle in their first connect.
    s[0].proc.send("before anyone leaves");
    s[1].wait_heard("stayer", "before anyone leaves");
    s[2].wait_heard("stayer", "before anyone leaves");

    // One leaves politely, one is killed.
    s[1].proc.send("/quit");
    assert_eq!(s[1].proc.wait_exit().code(), Some(0), "{}", dump());
    s[2].proc.kill();

    let stayer = &s[0];
    for leaver in ["quitter", "crasher"] {
        stayer.proc.wait_log(&format!("peer left: {leaver} at "));
        let t = sender_thread(leaver);
        wait_for(&format!("stayer's thread {t} to end"), || {
            (!has_thread(stayer, &t)).then_some(())
        });
    }
    // The stayer's other threads are still there (the check above reads real names).
    let names = stayer.proc.thread_names();
    assert!(
        names.iter().any(|n| n == "listen") && names.iter().any(|n| n == "manager-link"),
        "{names:?}\n{}",
        dump()
    );
}

#[test]
fn a_truncated_long_name_is_still_found() {
    // Names up to 32 bytes are allowed; Linux keeps 15 bytes of a thread's name.
    let dir = TestDir::new("leavers-long");
    let m = start_manager(&dir, MANAGER_DEFAULTS);
    let long = "a-rather-long-servant-name";
    let mut s = start_mesh(&dir, m.port, &["stayer", long]);
    let t = sender_thread(long);
    assert_eq!(t, "send-a-rather-l");
    wait_for(&format!("stayer to run a thread {t}"), || {
        has_thread(&s[0], &t).then_some(())
    });
    s[1].proc.signal("TERM");
    assert_eq!(s[1].proc.wait_exit().code(), Some(0), "{}", dump());
    s[0].proc.wait_log(&format!("peer left: {long} at "));
    wait_for(&format!("stayer's thread {t} to end"), || {
        (!has_thread(&s[0], &t)).then_some(())
    });
}
