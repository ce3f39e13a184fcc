//! Round trips of the servant ↔ servant lines (`peer.rs`): chat lines keep their text
//! exactly, handshake lines read back as written, and tags split off. Kept in a file of
//! their own so the protocol file reads as the protocol.

use super::*;

const ID: &str = "3fa9c0d2e81b7a5c44d1";

#[test]
fn chat_lines_round_trip_and_text_is_kept_exactly() {
    let m = ChatMessage {
        origin: ID.into(),
        incarnation: 1765043412345,
        seq: 42,
        name: "bob".into(),
        sig: [0xa5; 64],
        batch: None,
        text: "  two  spaces, <tags> & ünïcödé  ".into(),
    };
    let batched = ChatMessage {
        batch: Some(Batch {
            index: 5,
            path: vec![[1; 16], [2; 16], [3; 16]],
        }),
        ..m.clone()
    };
    let line = PeerLine::Msg(batched.clone()).to_line();
    assert_eq!(
        PeerLine::parse(line.trim_end_matches('\n')),
        Some(Ok(PeerLine::Msg(batched)))
    );
    let line = PeerLine::Msg(m.clone()).to_line();
    let bare = line.trim_end_matches('\n');
    assert_eq!(PeerLine::parse(bare), Some(Ok(PeerLine::Msg(m.clone()))));
    let r = MsgRef::parse(bare).unwrap().unwrap();
    let signed: Vec<u8> = r.signed_parts().concat();
    assert_eq!(
        signed,
        ChatMessage::signed_bytes(&m.origin, m.incarnation, m.seq, &m.name, &m.text)
    );
    assert_eq!(
        String::from_utf8(signed).unwrap(),
        format!("genp2p-msg-2 {ID} 1765043412345 42 bob   two  spaces, <tags> & ünïcödé  ")
    );
    // An empty text still has its space; without it the line is refused.
    let empty = msg_line(ID, 1, 1, "a", &[1; 64], None, "");
    assert!(empty.ends_with(" \n"));
    assert!(MsgRef::parse(empty.trim_end()).unwrap().is_err());
    assert!(MsgRef::parse(&empty[..empty.len() - 1]).unwrap().is_ok());
    assert_eq!(PeerLine::parse("hello there"), None);
    let sig = "01".repeat(64);
    for bad in [
        format!("MSG {ID} 1 0 b {sig} zero"),
        format!("MSG {ID} 1 007 b {sig} leading zero"),
        format!("MSG {ID} 1 +7 b {sig} plus"),
        format!("MSG {ID} 1 18446744073709551616 b {sig} too big"),
        format!("MSG {ID} 01 7 b {sig} incarnation"),
        format!("MSG {} 1 7 b {sig} upper", ID.to_uppercase()),
        format!("MSG {ID} 1 7 b {} short signature", &sig[2..]),
        format!("MSG {ID} 1 7 b\u{202e} {sig} bidi name"),
        format!(
            "MSG {ID} 1 7 b {sig}/8/{} index past the tree",
            "00".repeat(48)
        ),
        format!("MSG {ID} 1 7 b {sig}/0/ empty path"),
        format!(
            "MSG {ID} 1 7 b {sig}/0/{} path not whole hashes",
            "00".repeat(17)
        ),
        format!("MSG {ID} 1 7 b {sig}/0/{} too deep", "00".repeat(16 * 7)),
        format!("MSG {ID} 1 7 b {sig}/01/{} index", "00".repeat(16)),
    ] {
        assert!(matches!(PeerLine::parse(&bad), Some(Err(_))), "{bad}");
    }
}

#[test]
fn handshake_lines_round_trip() {
    let h = Hello {
        id: ID.into(),
        name: "carol".into(),
        incarnation: 9,
        key: [1; 32],
        eph: [2; 32],
    };
    for l in [
        PeerLine::Hello(h.clone()),
        PeerLine::Link(h.clone(), 4000),
        PeerLine::Pull(h),
        PeerLine::Welcome(Welcome {
            id: ID.into(),
            key: [3; 32],
            eph: [4; 32],
            sig: [5; 64],
            net: None,
        }),
        PeerLine::Welcome(Welcome {
            id: ID.into(),
            key: [3; 32],
            eph: [4; 32],
            sig: [5; 64],
            net: Some([6; 16]),
        }),
        PeerLine::Proof(Proof {
            sig: [7; 64],
            net: Some([8; 16]),
        }),
        PeerLine::Proof(Proof {
            sig: [7; 64],
            net: None,
        }),
        PeerLine::Ready { last: 17 },
        PeerLine::Said {
            incarnation: 1_700_000_000_000,
            seq: 9,
        },
        PeerLine::Seen {
            origin: ID.into(),
            incarnation: 3,
            seq: 0,
        },
        PeerLine::Since { ms: 100 },
        PeerLine::End,
        PeerLine::Ping,
    ] {
        let line = l.to_line();
        assert_eq!(
            PeerLine::parse(line.trim_end_matches('\n')),
            Some(Ok(l)),
            "{line}"
        );
    }
    let old = PeerLine::parse(&format!("HELLO 1 {ID} carol"))
        .unwrap()
        .unwrap_err();
    assert!(
        old.0.contains("protocol version \"1\" is not spoken here"),
        "{old}"
    );
    assert!(PeerLine::parse("READY 01").unwrap().is_err());
    assert!(PeerLine::parse("SINCE +5").unwrap().is_err());
}

#[test]
fn tags_split_off() {
    let t = "0123456789abcdef0123456789abcdef";
    let line = format!("{t} PING");
    let (tag, rest) = split_tag(&line).unwrap();
    assert_eq!(hex(&tag), t);
    assert_eq!(rest, "PING");
    assert_eq!(split_tag("PING"), None);
    assert_eq!(split_tag(&format!("{}PING", t)), None);
    assert_eq!(split_tag(&format!("{} PING", t.to_uppercase())), None);
}
