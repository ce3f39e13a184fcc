//! What goes into the overlay's state machine and what comes out of it: the messages
//! neighbours exchange, the inputs a driver hands in (a message arrived, a link closed, a
//! timer fired, the user typed a line) and the actions it gets back (send this to that
//! neighbour, show this line, set a timer).
//!
//! The vocabulary is HyParView's (membership: join, forward join, neighbour, disconnect,
//! shuffle) and Plumtree's (broadcast: gossip, i-have, graft, prune), plus one line of our
//! own, `Summary`, that lets two servants who meet after a network split swap what the
//! other missed. It names no socket, clock or key: the servant's threads and the
//! simulator both drive the same state, and the wire encoding lives with the servant.

use std::fmt::Debug;

/// The types a network puts into the overlay: how a peer is named and reached, how an
/// author is named, and what a line is. A servant uses its contacts (id and address), its
/// ids and its signed chat lines; the simulator uses numbers and nothing.
pub trait Types: Clone + Debug {
    /// A neighbour or a known servant: what can be dialled. Ordered, so the state's maps
    /// iterate the same way every run (the simulator replays from a seed).
    type Peer: Clone + Ord + Debug;
    /// The author of a line (a servant's id).
    type Author: Clone + Ord + Debug;
    /// A line as it travels, signature included; the overlay never looks inside.
    type Line: Clone + Debug;
}

/// Milliseconds on the driver's clock (a servant: since it started; the simulator: since
/// the simulation began). Time only ever comes in as an argument.
pub type Millis = u64;

/// What makes a line unique: its author, the author's incarnation (a restarted servant
/// counts again from 1 under a higher one) and its number. Lines of one author are shown
/// in this order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineId<A> {
    pub author: A,
    pub incarnation: u64,
    pub seq: u64,
}

/// One message between two servants of the overlay.
#[derive(Debug, Clone)]
pub enum Message<K: Types> {
    /// A newcomer asks its contact to be taken in (HyParView JOIN).
    Join,
    /// The contact spreads word of a newcomer: a random walk of `ttl` more steps.
    ForwardJoin { peer: K::Peer, ttl: u8 },
    /// Asks to become active neighbours; `high` when the asker has none (it must be
    /// accepted then), or when it restores a link lost to a time-out.
    Neighbor { high: bool },
    /// The answer to `Neighbor`.
    NeighborReply { accepted: bool },
    /// The link is dropped; `alive`: the sender stays up and may be asked again.
    Disconnect { alive: bool },
    /// A sample of known servants on a random walk; the last one answers `origin`.
    Shuffle {
        origin: K::Peer,
        ttl: u8,
        peers: Vec<K::Peer>,
    },
    /// The answer to `Shuffle`: as many known servants back.
    ShuffleReply { peers: Vec<K::Peer> },
    /// A whole line, `hops` from its author (Plumtree's eager push).
    Gossip {
        id: LineId<K::Author>,
        hops: u16,
        line: K::Line,
    },
    /// Ids of lines the sender has (Plumtree's lazy push), each with its hops.
    IHave(Vec<(LineId<K::Author>, u16)>),
    /// Send me these lines, and send me whole lines from now on.
    Graft(Vec<LineId<K::Author>>),
    /// Send me only ids from now on: your lines reach me by another way.
    Prune,
    /// On a new link: how long the sender has been in the overlay, and the last line it
    /// showed of each author (author, incarnation, number), so the other side can offer
    /// what it missed: later lines of those authors, and lines of other authors from the
    /// time it was already there (a newcomer is offered no history).
    Summary {
        member_for: Millis,
        last: Vec<(K::Author, u64, u64)>,
    },
}

impl<K: Types> Message<K> {
    /// The message's name, as logs and counters call it.
    /// Every kind's name, in the order of `kind_index`.
    pub const KINDS: [&'static str; 12] = [
        "join",
        "forward-join",
        "neighbor",
        "neighbor-reply",
        "disconnect",
        "shuffle",
        "shuffle-reply",
        "gossip",
        "ihave",
        "graft",
        "prune",
        "summary",
    ];

    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    /// The message's place in `KINDS` (for counting kinds without hashing names).
    pub fn kind_index(&self) -> usize {
        match self {
            Message::Join => 0,
            Message::ForwardJoin { .. } => 1,
            Message::Neighbor { .. } => 2,
            Message::NeighborReply { .. } => 3,
            Message::Disconnect { .. } => 4,
            Message::Shuffle { .. } => 5,
            Message::ShuffleReply { .. } => 6,
            Message::Gossip { .. } => 7,
            Message::IHave(_) => 8,
            Message::Graft(_) => 9,
            Message::Prune => 10,
            Message::Summary { .. } => 11,
        }
    }
}

/// A timer the state asked for; the driver hands it back when it fires. Timers are never
/// cancelled: the state checks on firing whether it still matters.
#[derive(Debug, Clone)]
pub enum Timer<K: Types> {
    /// Time to offer a shuffle to a random neighbour.
    Shuffle,
    /// Time to fill empty places in the active set from the passive set.
    Refill,
    /// Time to send the queued i-have announcements.
    Announce,
    /// A line announced but not received: time to graft it from an announcer.
    Graft(LineId<K::Author>),
    /// An author's lines have a gap: time to give up waiting and report the missing ones.
    Gap(K::Author),
}

/// What a driver hands to the state.
#[derive(Debug, Clone)]
pub enum Input<K: Types> {
    /// Join the overlay through `contact` (from the manager's sample or `<bootstrap>`).
    Join(K::Peer),
    /// Servants worth knowing (a manager's sample): kept in the passive set.
    Learn(Vec<K::Peer>),
    /// A message from a neighbour or from a servant that dialled us.
    Received(K::Peer, Message<K>),
    /// A `Gossip` from this neighbour of a line already shown here, known by its id
    /// alone: the driver read no further (a copy needs no signature check), and the state
    /// only learns that the link it came on is not needed for whole lines.
    Copy(K::Peer, LineId<K::Author>),
    /// The link to this peer closed or fell silent past the time-out.
    LinkDown(K::Peer),
    /// This peer could not be reached at all.
    Unreachable(K::Peer),
    Timer(Timer<K>),
    /// The user typed a line: it has its id and signature already.
    Broadcast(LineId<K::Author>, K::Line),
    /// We leave: tell the neighbours.
    Leave,
}

/// What the state asks its driver to do.
#[derive(Debug, Clone)]
pub enum Action<K: Types> {
    /// Send on the link to this peer, dialling it first if there is none.
    Send(K::Peer, Message<K>),
    /// Close the link to this peer (after what was sent to it).
    Close(K::Peer),
    /// Show a line to the user: every line once, each author's in order.
    Show {
        id: LineId<K::Author>,
        line: K::Line,
        hops: u16,
    },
    /// These numbers of this author never came; they will not be shown.
    Lost {
        author: K::Author,
        incarnation: u64,
        first: u64,
        last: u64,
    },
    /// Hand this timer back after `after` milliseconds.
    SetTimer { after: Millis, timer: Timer<K> },
    /// The active set gained this neighbour.
    NeighborUp(K::Peer),
    /// The active set lost this neighbour.
    NeighborDown(K::Peer),
    /// No neighbour and nobody left to ask: the driver should find a contact (the
    /// manager's sample or `<bootstrap>`) and join again.
    Isolated,
}
