//! The overlay: how servants beyond a handful reach each other without every servant
//! linking to every other.
//!
//! The article's servant sends each line to every servant it knows; that needs a link
//! (two threads) per peer. Here each servant keeps a few neighbours (HyParView, in
//! `membership`) and passes each line on over a spanning tree of those links (Plumtree,
//! in `broadcast`; each author's lines in order, in `order`), so its threads stay bounded
//! whatever the size of the network. Lines can be passed on safely because each carries
//! its author's signature: a forwarder can drop a line, not alter or invent one.
//!
//! The servant drives it from one thread (`servant::neighbors`) once the network has
//! outgrown `<fullmesh>`; below that, the servant links to every other as the article does.
//!
//! The logic is a state machine with no I/O (`state`), so the same code runs in the
//! servant and in `sim`, a discrete-event simulator that runs 100,000 servants in one
//! process. `event` is the vocabulary, `params` the numbers, `rng` the seeded chance.

pub mod broadcast;
pub mod event;
pub mod membership;
pub mod order;
pub mod params;
pub mod rng;
pub mod sim;
pub mod state;

pub use event::{Action, Input, LineId, Message, Millis, Timer, Types};
pub use params::Params;
pub use rng::Rng;
pub use state::Overlay;
