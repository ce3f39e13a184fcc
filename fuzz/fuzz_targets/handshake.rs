//! Lines a stranger may send to either side of the servant handshake, and chat lines
//! after it: see `checks::handshake`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::handshake(data));
