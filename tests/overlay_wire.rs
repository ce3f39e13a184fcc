//! The overlay's lines (docs/PROTOCOL.md, 4.10): every message in its documented
//! spelling and back, hostile fields refused with errors that name them, lists past
//! their bounds refused, and the overlay's state machine speaking only through them.

use genp2p::identity::Identity;
use genp2p::overlay::event::{LineId, Message};
use genp2p::overlay::params::bounds;
use genp2p::protocol::overlay::{
    parse, to_line, Contact, OverlayMessage, Signed, Wire, OVERLAY_LINE_LIMIT,
};
use genp2p::protocol::{msg_line, ChatMessage, MsgRef, PeerLine};

const A: &str = "15cb6fc94d098f860455";
const B: &str = "0123456789abcdef0123";

fn contact(id: &str, addr: &str) -> Contact {
    Contact {
        id: id.to_string(),
        addr: addr.parse().unwrap(),
    }
}

/// A line by a servant whose key the line carries (its id is the key's fingerprint).
fn chat(seq: u64) -> std::sync::Arc<Signed> {
    static AUTHOR: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    let me = AUTHOR.get_or_init(|| Identity::ephemeral().unwrap());
    let line = msg_line(
        &me.id,
        7,
        seq,
        "alice",
        &[0xab; 64],
        None,
        "hello there, bob",
    );
    let chat: ChatMessage = MsgRef::parse(line.trim_end())
        .unwrap()
        .unwrap()
        .to_owned()
        .unwrap();
    std::sync::Arc::new(Signed { key: me.key, chat })
}

fn round_trip(msg: OverlayMessage) -> String {
    let line = to_line(&msg);
    assert!(
        line.ends_with('\n') && !line[..line.len() - 1].contains('\n'),
        "{line:?}"
    );
    let back = parse(line.trim_end())
        .expect("an overlay line")
        .expect("parses");
    assert_eq!(format!("{back:?}"), format!("{msg:?}"), "{line}");
    line
}

#[test]
fn every_message_round_trips_in_the_documented_spelling() {
    let a = contact(A, "127.0.0.2:2224");
    let b = contact(B, "[::1]:2225");
    assert_eq!(round_trip(Message::Join), "JOIN\n");
    assert_eq!(round_trip(Message::Prune), "PRUNE\n");
    assert_eq!(
        round_trip(Message::ForwardJoin {
            peer: a.clone(),
            ttl: 6
        }),
        format!("FORWARDJOIN 6 {A}@127.0.0.2:2224\n")
    );
    assert_eq!(
        round_trip(Message::Neighbor { high: true }),
        "NEIGHBOR HIGH\n"
    );
    assert_eq!(
        round_trip(Message::Neighbor { high: false }),
        "NEIGHBOR LOW\n"
    );
    assert_eq!(
        round_trip(Message::NeighborReply { accepted: true }),
        "NEIGHBOR-REPLY ACCEPTED\n"
    );
    assert_eq!(
        round_trip(Message::NeighborReply { accepted: false }),
        "NEIGHBOR-REPLY DECLINED\n"
    );
    assert_eq!(
        round_trip(Message::Disconnect { alive: true }),
        "DISCONNECT ALIVE\n"
    );
    assert_eq!(
        round_trip(Message::Disconnect { alive: false }),
        "DISCONNECT LEAVING\n"
    );
    assert_eq!(
        round_trip(Message::Shuffle {
            origin: a.clone(),
            ttl: 3,
            peers: vec![b.clone(), a.clone()]
        }),
        format!("SHUFFLE 3 {A}@127.0.0.2:2224 {B}@[::1]:2225 {A}@127.0.0.2:2224\n")
    );
    assert_eq!(
        round_trip(Message::ShuffleReply { peers: vec![] }),
        "SHUFFLE-REPLY\n"
    );
    let signed = chat(3);
    let gossip = round_trip(Message::Gossip {
        id: LineId {
            author: signed.chat.origin.clone(),
            incarnation: 7,
            seq: 3,
        },
        hops: 2,
        line: signed.clone(),
    });
    assert_eq!(
        gossip,
        format!(
            "GOSSIP 2 {} {}",
            signed.key.hex(),
            PeerLine::Msg(signed.chat.clone()).to_line()
        )
    );
    let id = LineId {
        author: A.to_string(),
        incarnation: 7,
        seq: 3,
    };
    assert_eq!(
        round_trip(Message::IHave(vec![(id.clone(), 4)])),
        format!("IHAVE {A}/7/3/4\n")
    );
    assert_eq!(
        round_trip(Message::Graft(vec![id.clone(), id])),
        format!("GRAFT {A}/7/3 {A}/7/3\n")
    );
    assert_eq!(round_trip(Message::Graft(vec![])), "GRAFT\n");
    assert_eq!(
        round_trip(Message::Summary {
            member_for: 60_000,
            last: vec![(B.to_string(), 1, 0)]
        }),
        format!("SUMMARY 60000 {B}/1/0\n")
    );
}

/// Servants whose overlay messages travel only as lines: what a state says is
/// written, read back, and handed to the other side.
struct Net {
    contacts: Vec<Contact>,
    nodes: Vec<genp2p::overlay::Overlay<Wire>>,
    rng: genp2p::overlay::Rng,
    wire: std::collections::VecDeque<(usize, Contact, String)>,
    shown: Vec<Vec<String>>,
}

impl Net {
    fn step(&mut self, at: usize, input: genp2p::overlay::Input<Wire>) {
        use genp2p::overlay::Action;
        let mut out = Vec::new();
        self.nodes[at].handle(1_000, input, &mut self.rng, &mut out);
        for a in out {
            match a {
                Action::Send(to, msg) => {
                    let to = self.contacts.iter().position(|c| *c == to).unwrap();
                    self.wire
                        .push_back((to, self.contacts[at].clone(), to_line(&msg)));
                }
                Action::Show { line, .. } => self.shown[at].push(line.chat.text.clone()),
                _ => {}
            }
        }
    }

    fn deliver(&mut self) {
        let mut n = 0;
        while let Some((to, from, line)) = self.wire.pop_front() {
            let msg = parse(line.trim_end()).unwrap().unwrap();
            self.step(to, genp2p::overlay::Input::Received(from, msg));
            n += 1;
            assert!(n < 1_000, "the servants keep talking");
        }
    }
}

#[test]
fn the_state_machine_speaks_through_these_lines() {
    use genp2p::overlay::{Input, Overlay, Params, Rng};
    let contacts: Vec<Contact> = [A, B, "fedcba9876543210fedc"]
        .iter()
        .enumerate()
        .map(|(i, id)| contact(id, &format!("127.0.0.{}:2224", i + 1)))
        .collect();
    let nodes = contacts
        .iter()
        .map(|c| Overlay::new(c.clone(), Params::default()))
        .collect();
    let mut net = Net {
        contacts,
        nodes,
        rng: Rng::seeded(3),
        wire: Default::default(),
        shown: vec![Vec::new(); 3],
    };
    let first = net.contacts[0].clone();
    net.step(1, Input::Join(first.clone()));
    net.step(2, Input::Join(first));
    net.deliver();
    assert_eq!(
        net.nodes[0].active().len(),
        2,
        "{:?}",
        net.nodes[0].active()
    );
    let line = chat(1);
    let id = LineId {
        author: line.chat.origin.clone(),
        incarnation: line.chat.incarnation,
        seq: line.chat.seq,
    };
    net.step(0, Input::Broadcast(id, line));
    net.deliver();
    assert_eq!(net.shown, vec![vec![String::from("hello there, bob")]; 3]);
}

#[test]
fn lists_past_their_bounds_are_refused_and_say_so() {
    let ids: Vec<String> = (0..=bounds::IDS).map(|i| format!("{A}/1/{i}/1")).collect();
    let e = parse(&format!("IHAVE {}", ids.join(" ")))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.0, "IHAVE lists more than 256 entries");
    assert!(parse(&format!("IHAVE {}", ids[..bounds::IDS].join(" ")))
        .unwrap()
        .is_ok());
    let peers: Vec<String> = (0..=bounds::PEERS)
        .map(|i| format!("{A}@10.0.0.1:{}", 1000 + i))
        .collect();
    let e = parse(&format!("SHUFFLE-REPLY {}", peers.join(" ")))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.0, "SHUFFLE-REPLY lists more than 16 entries");
    // The longest lists fit the line limit.
    let long = format!("SUMMARY {} ", u64::MAX)
        + &vec![format!("{A}/{}/{}", u64::MAX, u64::MAX); bounds::AUTHORS].join(" ");
    assert!(long.len() < OVERLAY_LINE_LIMIT, "{}", long.len());
    let long = format!(
        "IHAVE {}",
        vec![format!("{A}/{}/{}/65535", u64::MAX, u64::MAX); bounds::IDS].join(" ")
    );
    assert!(long.len() < OVERLAY_LINE_LIMIT, "{}", long.len());
}

#[test]
fn hostile_fields_are_errors_that_name_the_field() {
    // A key that is a real servant's, carried with a line it did not write.
    let other = Identity::ephemeral().unwrap();
    let key_then = |rest: &str| format!("GOSSIP 1 {} {rest}", other.key.hex());
    let forged = PeerLine::Msg(chat(1).chat.clone())
        .to_line()
        .trim_end()
        .to_owned();
    let cases: [(&str, &str); 17] = [
        (
            "FORWARDJOIN 300 15cb6fc94d098f860455@1.2.3.4:5",
            "FORWARDJOIN: TTL 300 is too large",
        ),
        (
            "FORWARDJOIN 1 nobody@1.2.3.4:5",
            "FORWARDJOIN: CONTACT \"nobody\" is not an id",
        ),
        (
            "FORWARDJOIN 1 15cb6fc94d098f860455@1.2.3.4",
            "FORWARDJOIN: CONTACT \"1.2.3.4\": not an IP:PORT",
        ),
        ("NEIGHBOR MAYBE", "NEIGHBOR \"MAYBE\": expected HIGH or LOW"),
        ("JOIN now", "JOIN takes nothing after it"),
        (
            "IHAVE 15cb6fc94d098f860455/1/2",
            "IHAVE entry \"15cb6fc94d098f860455/1/2\" has fewer than 4 parts",
        ),
        (
            "IHAVE 15cb6fc94d098f860455/1/2/3/4",
            "has more than 4 parts",
        ),
        ("IHAVE 15cb6fc94d098f860455/01/2/3", "IHAVE: INC \"01\""),
        (
            "IHAVE 15cb6fc94d098f860455/1/2/70000",
            "IHAVE: HOPS 70000 is too large",
        ),
        (
            "GRAFT \u{1b}[2J/1/2",
            "GRAFT: ORIGIN \"\\x1b[2J\" is not an id",
        ),
        ("GOSSIP 1 PRUNE", "GOSSIP needs HOPS KEY MSG"),
        (
            &key_then("PRUNE x"),
            "GOSSIP: KEY must be followed by a MSG line",
        ),
        (
            &key_then(&format!("MSG {} 1 1 alice nosig hi", other.id)),
            "signature",
        ),
        (&format!("GOSSIP 1 0011 {}", &forged), "GOSSIP: KEY"),
        (&key_then(&forged), "GOSSIP: KEY is the key of"),
        ("SUMMARY", "SUMMARY needs MEMBER-FOR"),
        ("SHUFFLE 1", "SHUFFLE needs TTL ORIGIN"),
    ];
    for (line, want) in cases {
        let line: &str = line;
        let got = parse(line).expect("an overlay line").expect_err(line);
        assert!(
            got.0.contains(want),
            "{line:?}: {got:?} does not say {want:?}"
        );
        // Whatever came in, the error is printable on one line.
        assert!(!got.0.chars().any(char::is_control), "{got:?}");
    }
    assert!(parse("MSG 15cb6fc94d098f860455 1 1 alice x hi").is_none());
    assert!(parse("hello there").is_none());
}
