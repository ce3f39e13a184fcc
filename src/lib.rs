//! genp2p: the "Generic P2P" architecture on blocking sockets and threads.
//!
//! A light **connection manager** tells peers where each other are; **servants** listen,
//! chat with every other servant directly and refuse the hosts they have banned. The
//! design follows a 2004 VB6 tutorial (its parts and ours are mapped in
//! docs/VB6-MAPPING.md); the wire format is in docs/PROTOCOL.md.
//!
//! The modules are the roles of that design:
//! - [`config`]: the manager's `<manager>` file and the servant's `config.xml`;
//! - [`lines`] and [`protocol`]: what travels on the wire;
//! - [`registry`], [`outbox`] and [`manager`]: the connection manager;
//! - [`servant`]: the peer (its link to the manager, its listener, one sender per peer,
//!   and the chat console);
//! - [`overlay`]: beyond a handful of servants, a few neighbours each and every line
//!   passed on along a tree (HyParView and Plumtree), as a state machine without I/O
//!   that the simulator behind `make sim` runs for 100,000 servants;
//! - [`cli`]: what both binaries share (flags, logging, signals);
//! - [`terminal`]: raw mode and the window size for the servant's line editor.

// Unsafe code is denied everywhere but `terminal`, the calls into the terminal driver
// behind line editing.
#![deny(unsafe_code)]

pub mod batch;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dial;
pub mod encoding;
pub mod escape;
pub mod files;
pub mod handshake;
pub mod identity;
pub mod limits;
pub mod lines;
pub mod manager;
pub mod outbox;
pub mod overlay;
pub mod protocol;
pub mod registry;
pub mod relay;
pub mod servant;
pub mod terminal;
pub mod transfer;
