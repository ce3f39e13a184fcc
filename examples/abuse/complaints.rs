//! `abuse --only complaints`: three newcomers at three addresses, each listed, complain
//! about a servant three times. Judged by the manager: none of the complaints is to
//! count, and the servant is not condemned as unreachable.

use crate::harness::{connect_from, usage, Ctx, Row, UNPROBED};
use genp2p::identity::Identity;
use genp2p::protocol::ManagerMessage;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::thread;
use std::time::Duration;

pub fn complaints(ctx: &Ctx) -> Row {
    let (m, mport) = ctx.manager("");
    let (alice, _) = ctx.servant("alice", mport, "");
    let (_bob, _) = ctx.servant("bob", mport, "");
    let alice_id = alice
        .wait_err("joined as alice (", Duration::from_secs(1))
        .and_then(|l| {
            l.split("joined as alice (")
                .nth(1)
                .map(|r| r[..20].to_owned())
        })
        .expect("alice's id");
    thread::sleep(Duration::from_millis(500));
    let before = usage(m.pid());
    let mut held = Vec::new();
    for k in 0..3u8 {
        let from = Ipv4Addr::new(127, 0, 5, 10 + k);
        let l = TcpListener::bind((from, 0)).expect("bind");
        let port = l.local_addr().unwrap().port();
        let me = Identity::ephemeral().expect("a key");
        let mut s = connect_from(from, mport, None).expect("connect to the manager");
        let listening = format!("listening {port} {} fake{k} {}", me.id, me.key.hex());
        let _ = s.write_all(format!("{listening}\n").as_bytes());
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        if let Ok(ManagerMessage::Challenge { nonce }) = ManagerMessage::parse(line.trim_end()) {
            let sig = me.sign(&genp2p::protocol::listen_proof(&nonce, &listening));
            let _ = s.write_all(format!("prove {}\n", genp2p::encoding::hex(&sig)).as_bytes());
        }
        for _ in 0..3 {
            let _ = s.write_all(format!("complain {alice_id}\n").as_bytes());
        }
        held.push((s, l));
    }
    thread::sleep(Duration::from_secs(2));
    let during = usage(m.pid());
    let counted = m.count_err("complaint about alice") - m.count_err("not counted");
    let condemned = m.count_err("alice (slot 1) is unreachable");
    drop(held);
    thread::sleep(Duration::from_secs(1));
    let after = usage(m.pid());
    Row {
        attack: "complaints by newcomers",
        size: "3 listed newcomers at 3 addresses, 3 complaints each".into(),
        seen: UNPROBED,
        usage: [before, during, after],
        ok: counted == 0 && condemned == 0,
        outcome: format!(
            "{} of 9 counted; alice condemned: {}",
            counted,
            if condemned > 0 { "yes" } else { "no" }
        ),
    }
}
