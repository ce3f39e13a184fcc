//! The manager's documents as a servant reads them: see `checks::peer_list`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::peer_list(data));
