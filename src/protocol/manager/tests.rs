//! Round trips of the client ↔ manager lines (`manager.rs`): the peer document keeps the
//! article's shape, pushed changes and commands read back as written. Kept in a file of
//! their own so the protocol file reads as the protocol.

use super::*;

fn entry(offset: u32, me: bool) -> PeerEntry {
    PeerEntry {
        ip: "10.0.0.4".into(),
        port: 2224 + offset as u16,
        offset,
        me,
        name: Some(format!("n{offset}")),
        id: Some(format!("{offset:020x}")),
        key: Some(format!("{offset:064x}")),
        relay: None,
    }
}

#[test]
fn peer_document_keeps_the_articles_shape() {
    let list = PeerList {
        version: 7,
        epoch: "e1".into(),
        timeout_ms: 6000,
        peers: vec![entry(1, false), entry(2, true)],
    };
    let line = ManagerMessage::Peers(list.clone()).to_line();
    assert!(!line.contains('\n'));
    assert!(line.starts_with(
        "<peers version=\"7\" epoch=\"e1\" timeout=\"6000\"><peer><ip>10.0.0.4</ip><port>2225</port><offset>1</offset><me>FALSE</me>"
    ));
    let doc = Document::parse(&line).unwrap();
    let me_port = doc
        .descendants()
        .filter(|n| n.has_tag_name("peer"))
        .find(|p| child_text(*p, "me") == Some("TRUE"))
        .and_then(|p| child_text(p, "port"));
    assert_eq!(me_port, Some("2226"));
    assert_eq!(
        ManagerMessage::parse(&line),
        Ok(ManagerMessage::Peers(list))
    );
}

#[test]
fn deltas_round_trip() {
    for m in [
        ManagerMessage::Join {
            version: 3,
            peers: vec![entry(4, false)],
        },
        ManagerMessage::Leave {
            version: 4,
            peers: vec![entry(4, false)],
        },
        ManagerMessage::Unchanged { version: 9 },
        ManagerMessage::Error("unknown command \"x<y\"".into()),
        ManagerMessage::Peers(PeerList::default()),
        ManagerMessage::Pull(Some(PeerEntry {
            relay: Some(3),
            ..entry(5, false)
        })),
        ManagerMessage::Pull(None),
        ManagerMessage::Challenge { nonce: [9; 32] },
        ManagerMessage::Sample {
            version: 5,
            total: 7,
            peers: vec![entry(4, false)],
        },
        ManagerMessage::Sample {
            version: 5,
            total: 0,
            peers: vec![],
        },
    ] {
        assert_eq!(ManagerMessage::parse(&m.to_line()), Ok(m));
    }
}

#[test]
fn commands_parse_and_print() {
    let id = "3fa9c0d2e81b7a5c44d1";
    let key = "ab".repeat(32);
    let sig = [7u8; 64];
    for (line, cmd) in [
        (
            "needs peer list".to_owned(),
            ManagerCommand::NeedsPeerList { since: None },
        ),
        (
            "needs peer list since 12".to_owned(),
            ManagerCommand::NeedsPeerList { since: Some(12) },
        ),
        ("bye".to_owned(), ManagerCommand::Bye),
        ("needs changes".to_owned(), ManagerCommand::NeedsChanges),
        (
            "needs no changes".to_owned(),
            ManagerCommand::NeedsNoChanges,
        ),
        (
            "needs sample 8".to_owned(),
            ManagerCommand::NeedsSample { count: 8 },
        ),
        (
            format!("listening 2230 {id} alice {key}"),
            ManagerCommand::Listening {
                port: 2230,
                id: id.into(),
                name: "alice".into(),
                key: key.clone(),
            },
        ),
        (
            format!("prove {}", "07".repeat(64)),
            ManagerCommand::Prove { sig, net: None },
        ),
        (
            format!("prove {} {}", "07".repeat(64), "01".repeat(16)),
            ManagerCommand::Prove {
                sig,
                net: Some([1; 16]),
            },
        ),
        (
            format!("complain {id}"),
            ManagerCommand::Complain { id: id.into() },
        ),
    ] {
        assert_eq!(ManagerCommand::parse(&line), Ok(cmd.clone()));
        assert_eq!(cmd.to_line(), line);
    }
    assert_eq!(
        ManagerCommand::parse("needs peer list\r  "),
        Ok(ManagerCommand::NeedsPeerList { since: None })
    );
    for bad in [
        "listening 0".to_owned(),
        "listening 9".to_owned(),
        format!("listening 70000 {id} a {key}"),
        format!("listening 080 {id} a {key}"),
        format!("listening 5 {id} a"),
        format!("listening 5 {id} a {key} extra"),
        format!("listening 5 {id} <b> {key}"),
        format!("listening 5 ID{} a {key}", &id[2..]),
        format!("listening 5 {id} a {}", key.to_uppercase()),
        "needs peer list since 007".to_owned(),
        "complain ab12".to_owned(),
        "prove 12".to_owned(),
        "gimme".to_owned(),
    ] {
        assert!(ManagerCommand::parse(&bad).is_err(), "{bad:?}");
    }
}
