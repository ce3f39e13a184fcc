//! `abuse --only places`: 2,000 idle connections from 50 addresses held against a
//! servant with the default 512 places, reopened as they are evicted. Judged by whether
//! a listed newcomer and a person with telnet still get through at once, a genuine
//! user's lines still arrive, and the threads stay within the places.

use crate::harness::{
    alice_and_carol, connect_from, nice_this_thread, probe, settle, usage, Ctx, Row,
};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Holds `n` connections to `port` from `addrs` until `stop`, opening a new one for each
/// the servant closes. Returns how many it had to open again.
fn hold_idle(
    port: u16,
    n: usize,
    addrs: usize,
    stop: Arc<AtomicBool>,
    reopened: Arc<AtomicU64>,
) -> Vec<thread::JoinHandle<()>> {
    let per = n / addrs;
    (0..addrs)
        .map(|a| {
            let (stop, reopened) = (Arc::clone(&stop), Arc::clone(&reopened));
            thread::spawn(move || {
                nice_this_thread();
                let from = Ipv4Addr::new(127, 0, 3, 10 + a as u8);
                let mut held: Vec<Option<TcpStream>> = (0..per).map(|_| None).collect();
                let mut buf = [0u8; 64];
                let end = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    for slot in held.iter_mut() {
                        let closed = match slot {
                            None => true,
                            Some(s) => match s.read(&mut buf) {
                                Ok(0) => true,
                                Ok(_) => false,
                                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                            },
                        };
                        if closed {
                            if slot.is_some() {
                                reopened.fetch_add(1, Ordering::Relaxed);
                            }
                            *slot = connect_from(from, port, None).ok().inspect(|s| {
                                let _ = s.set_nonblocking(true);
                            });
                        }
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect()
}

pub fn places(ctx: &Ctx) -> Row {
    let (_m, mport, alice, aport, mut carol) = alice_and_carol(ctx);
    let before = usage(alice.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let reopened = Arc::new(AtomicU64::new(0));
    let holders = hold_idle(aport, 2000, 50, Arc::clone(&stop), Arc::clone(&reopened));
    thread::sleep(Duration::from_secs(3));
    // A listed servant joins while the crowd holds on, and speaks at once.
    let t = Instant::now();
    let (mut bob, _) = ctx.servant("bob", mport, "");
    bob.send("bob is here");
    let bob_ms = alice
        .shown("<bob> bob is here", Duration::from_secs(15))
        .map(|s| s.duration_since(t).as_secs_f64());
    // A person with telnet.
    let t = Instant::now();
    let typist = TcpStream::connect(("127.0.0.1", aport)).and_then(|mut s| {
        s.write_all(b"a person typing\n")?;
        let port = s.local_addr()?.port();
        Ok((s, port))
    });
    let typist_s = typist.as_ref().ok().and_then(|(_, port)| {
        alice
            .shown(
                &format!("<127.0.0.1:{port}> a person typing"),
                Duration::from_secs(15),
            )
            .map(|s| s.duration_since(t).as_secs_f64())
    });
    let (p50, p99, lost) = probe(&mut carol, &alice, "places", Duration::from_millis(20));
    let during = usage(alice.pid());
    stop.store(true, Ordering::Relaxed);
    let after = settle(holders, alice.pid());
    Row {
        attack: "idle connections (places)",
        size: format!(
            "2,000 held from 50 addresses; {} reopened after eviction",
            reopened.load(Ordering::Relaxed)
        ),
        seen: (p50, p99, lost),
        usage: [before, during, after],
        ok: lost == 0
            && bob_ms.is_some_and(|s| s <= 2.0)
            && typist_s.is_some_and(|s| s <= 5.0)
            && during.0 <= before.0 + 512 + 8
            && after.0 <= before.0 + 2,
        outcome: format!(
            "listed newcomer's first line shown after {}; telnet line after {}",
            bob_ms.map_or("never".into(), |s| format!("{s:.2} s")),
            typist_s.map_or("never".into(), |s| format!("{s:.2} s"))
        ),
    }
}
