//! The harness for genp2p's integration tests: starts the real `connection-manager` and
//! `servant` binaries, collects what they print, and talks to them over raw sockets the
//! way `telnet` would.
//!
//! Every test gets its own temporary directory for its configuration files, lets the OS
//! choose every port (the manager's `<port>0</port>`, the servants' `<listen>0</listen>`),
//! and puts a time limit on every wait, so tests run in parallel and a hang is a failure
//! rather than a stuck suite. Children are killed by a `Drop` guard. When a test fails,
//! its message ends with `dump()`: the command line, exit status, standard output and
//! standard error of every child the test started.
//!
//! Children are recorded per test thread (libtest runs each test on a thread of its
//! own), so `dump()` shows exactly the processes of the failing test.

#![allow(dead_code)]

mod manager;
mod process;
mod raw;
mod servant;

// Each test file uses some of these; the rest would be reported unused in it.
#[allow(unused_imports)]
pub use manager::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use raw::*;
#[allow(unused_imports)]
pub use servant::*;
