//! What the cryptography of one chat line costs on this machine, for `make bench`: one
//! JSON line on standard output (appended to bench/out/results.jsonl by bench/run.sh).
//!
//! - `sign_us`: an Ed25519 signature of a line's signed bytes, made whole;
//! - `presign_us` / `sign_online_us`: the same signature in the typist's two halves (see
//!   `identity::Presigned`): begun before the line is known, finished when it is typed;
//! - `verify_us`: checking one signature (what a relay's puller does per line signed alone);
//! - `tag_us` / `tag_check_us`: a link's tag of one line, made and checked (per line per
//!   peer on the author's own connections);
//! - `batch64_sign_us_per_line` / `batch64_verify_us_per_line`: a run of 64 lines signed
//!   together, per line: the leaves, the tree and one signature; and checked by a reader
//!   who checks the root once and each line's path.
//!
//! Each figure is the median of 7 timings of a loop (bounded: a few thousand operations).

use std::time::Instant;

use genp2p::batch;
use genp2p::handshake::{Answered, Mode, Opening};
use genp2p::identity::Identity;
use genp2p::protocol::{msg_head, msg_line, ChatMessage, MsgRef, PeerLine};
use genp2p::servant::authors::Authors;

/// Median over 7 runs of the mean time of `f` over `iters` calls, in µs.
fn time_us(iters: u32, mut f: impl FnMut(u32)) -> f64 {
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for i in 0..iters {
                f(i);
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(iters)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[3]
}

fn main() {
    let me = Identity::ephemeral().expect("a key");
    let text = "an ordinary line of chat, about as long as people type";
    let head = msg_head(&me.id, me.incarnation, 42, "alice");
    let signed = ChatMessage::signed_bytes(&me.id, me.incarnation, 42, "alice", text);
    let parts = ChatMessage::signed_parts(&head, text);
    let sig = me.sign(&signed);
    let line = msg_line(&me.id, me.incarnation, 42, "alice", &sig, None, text);
    let bare = line.trim_end();

    let sign_us = time_us(500, |_| {
        std::hint::black_box(me.sign(&signed));
    });
    let presign_us = time_us(500, |_| {
        std::hint::black_box(me.presign());
    });
    let mut pres: Vec<_> = (0..7 * 500).map(|_| me.presign()).collect();
    let sign_online_us = time_us(500, |_| {
        let p = pres.pop().expect("enough begun signatures");
        std::hint::black_box(p.sign(&parts));
    });
    let verify_us = time_us(300, |_| {
        assert!(me.key.verifies(&signed, &sig));
    });

    // A link's tags, from a real handshake between two keys.
    let other = Identity::ephemeral().expect("a key");
    let (opening, hello) = Opening::new(&me, "alice", Mode::Send).expect("a handshake");
    let Some(Ok(PeerLine::Hello(h))) = PeerLine::parse(hello.trim_end()) else {
        panic!("our own HELLO does not parse");
    };
    let (answered, welcome) = Answered::new(&other, &hello, &h, None).expect("an answer");
    let Some(Ok(PeerLine::Welcome(w))) = PeerLine::parse(welcome.trim_end()) else {
        panic!("our own WELCOME does not parse");
    };
    let (link, proof) = opening.finish(&me, &w, None, None).expect("a link");
    let Some(Ok(PeerLine::Proof(p))) = PeerLine::parse(proof.trim_end()) else {
        panic!("our own PROOF does not parse");
    };
    let theirs = answered.finish(&p, None).expect("a link");
    let tag = link.tags.tag(bare.as_bytes());
    let tag_us = time_us(20_000, |_| {
        std::hint::black_box(link.tags.prefix(bare.as_bytes()));
    });
    let tag_check_us = time_us(20_000, |_| {
        assert!(theirs.tags.checks(&tag, bare.as_bytes()));
    });

    // 64 lines signed together, and checked by a reader.
    let texts: Vec<String> = (0..64).map(|i| format!("{text} {i}")).collect();
    let heads: Vec<String> = (0..64)
        .map(|i| msg_head(&me.id, me.incarnation, 100 + i, "alice"))
        .collect();
    let batch_sign = time_us(20, |_| {
        let leaves: Vec<batch::Node> = (0..64)
            .map(|i| batch::leaf(&ChatMessage::signed_parts(&heads[i], &texts[i])))
            .collect();
        let (depth, root, paths) = batch::build(&leaves);
        std::hint::black_box((me.sign(&batch::signed_root(depth, &root)), paths));
    }) / 64.0;
    let leaves: Vec<batch::Node> = (0..64)
        .map(|i| batch::leaf(&ChatMessage::signed_parts(&heads[i], &texts[i])))
        .collect();
    let (depth, root, paths) = batch::build(&leaves);
    let root_sig = me.sign(&batch::signed_root(depth, &root));
    let lines: Vec<String> = (0..64)
        .map(|i| {
            msg_line(
                &me.id,
                me.incarnation,
                100 + i as u64,
                "alice",
                &root_sig,
                Some((i as u64, &paths[i])),
                &texts[i],
            )
            .trim_end()
            .to_owned()
        })
        .collect();
    let batch_verify = time_us(20, |_| {
        let authors = Authors::default();
        authors.learn(me.key);
        for l in &lines {
            let m = MsgRef::parse(l).expect("a MSG").expect("valid");
            assert!(authors.verify(&m).is_ok());
        }
    }) / 64.0;
    println!(
        "{{\"test\":\"crypto\",\"sign_us\":{sign_us:.2},\"presign_us\":{presign_us:.2},\"sign_online_us\":{sign_online_us:.2},\"verify_us\":{verify_us:.2},\"tag_us\":{tag_us:.3},\"tag_check_us\":{tag_check_us:.3},\"batch64_sign_us_per_line\":{batch_sign:.2},\"batch64_verify_us_per_line\":{batch_verify:.2},\"line_bytes\":{},\"batch_line_bytes\":{}}}",
        bare.len(),
        lines[63].len()
    );
}
