//! `abuse --only origins`: memory against authors that do not exist. A million `MSG`
//! lines under random origins over one authenticated link, then 20,000 fresh keys each
//! with a handshake and a line. Judged by a genuine user's delay and the attacked
//! servant's RSS, which is to stay within what it bounds (strangers, pinned names).

use crate::harness::{alice_and_carol, nice_this_thread, probe, settle, usage, Ctx, Row};
use genp2p::handshake::{Link, Mode, Opening};
use genp2p::identity::Identity;
use genp2p::protocol::{msg_line, ChatMessage, PeerLine};
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The opener's handshake over `s`, as `me` named `name`.
fn open_link(s: &mut TcpStream, me: &Identity, name: &str) -> io::Result<Link> {
    let (opening, hello) =
        Opening::new(me, name, Mode::Send).map_err(|e| io::Error::other(e.to_string()))?;
    s.write_all(hello.as_bytes())?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let Some(Ok(PeerLine::Welcome(w))) = PeerLine::parse(line.trim_end()) else {
        return Err(io::Error::other(format!("expected WELCOME, got {line:?}")));
    };
    let (link, proof) = opening
        .finish(me, &w, None, None)
        .map_err(|e| io::Error::other(e.to_string()))?;
    s.write_all(proof.as_bytes())?;
    line.clear();
    r.read_line(&mut line)?;
    Ok(link)
}

fn tagged(link: &Link, line: &str) -> String {
    format!(
        "{} {line}\n",
        genp2p::encoding::hex(&link.tags.tag(line.as_bytes()))
    )
}

pub fn origins(ctx: &Ctx) -> Vec<Row> {
    let (_m, _, alice, aport, mut carol) = alice_and_carol(ctx);
    let before = usage(alice.pid());
    // 1,000,000 lines under random origins, on one authenticated link.
    let me = Identity::ephemeral().expect("a key");
    let mut s = TcpStream::connect(("127.0.0.1", aport)).expect("connect to alice");
    let link = open_link(&mut s, &me, "mallory").expect("a link");
    let flood = thread::spawn(move || {
        nice_this_thread();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = String::with_capacity(1 << 20);
        let end = Instant::now() + Duration::from_secs(120);
        let mut sent = 0u64;
        while sent < 1_000_000 && Instant::now() < end {
            for _ in 0..2000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let origin = format!("{:020x}", (seed as u128) << 16 | (seed >> 48) as u128);
                let line = msg_line(
                    &origin[..20],
                    1,
                    1,
                    "mallory",
                    &[0u8; 64],
                    None,
                    "random origin",
                );
                buf.push_str(&tagged(&link, line.trim_end()));
            }
            if s.write_all(buf.as_bytes()).is_err() {
                break;
            }
            buf.clear();
            sent += 2000;
        }
        sent
    });
    let (p50, p99, lost) = probe(&mut carol, &alice, "origins", Duration::from_millis(50));
    let during = usage(alice.pid());
    let sent = flood.join().unwrap_or(0);
    thread::sleep(Duration::from_secs(3));
    let after = usage(alice.pid());
    let first = Row {
        attack: "random origins (memory)",
        size: format!("{sent} MSG lines, each under a new origin"),
        seen: (p50, p99, lost),
        usage: [before, during, after],
        outcome: "every one dropped: no key is known for its author; nothing kept".into(),
        ok: lost == 0 && p99 <= 10.0 && after.1 <= before.1 * 1.10,
    };
    // 20,000 fresh keys, each proving itself in a handshake and saying one line.
    let before = after;
    let made = Arc::new(AtomicU64::new(0));
    let keys: Vec<_> = (0..2)
        .map(|t| {
            let made = Arc::clone(&made);
            thread::spawn(move || {
                nice_this_thread();
                let end = Instant::now() + Duration::from_secs(120);
                for k in 0..10_000 {
                    if Instant::now() > end {
                        break;
                    }
                    let Ok(me) = Identity::ephemeral() else {
                        continue;
                    };
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", aport)) else {
                        continue;
                    };
                    let name = format!("k{t}x{k}");
                    let Ok(link) = open_link(&mut s, &me, &name) else {
                        continue;
                    };
                    let sig = me.sign(&ChatMessage::signed_bytes(
                        &me.id,
                        me.incarnation,
                        1,
                        &name,
                        "hi",
                    ));
                    let line = msg_line(&me.id, me.incarnation, 1, &name, &sig, None, "hi");
                    let _ = s.write_all(tagged(&link, line.trim_end()).as_bytes());
                    made.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let (p50, p99, lost) = probe(&mut carol, &alice, "keys", Duration::from_millis(50));
    let during = usage(alice.pid());
    let after = settle(keys, alice.pid());
    vec![
        first,
        Row {
            attack: "fresh keys (memory)",
            size: format!(
                "{} handshakes, each a new key and one line",
                made.load(Ordering::Relaxed)
            ),
            seen: (p50, p99, lost),
            usage: [before, during, after],
            ok: lost == 0,
            outcome: format!(
                "shown; at most {} unlisted authors remembered, {} names pinned",
                genp2p::servant::seen::STRANGERS,
                genp2p::servant::known::MAX_PINS
            ),
        },
    ]
}
