//! Bytes from a socket, framed by LineReader and parsed by both sides: see
//! `checks::lines`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::lines(data));
