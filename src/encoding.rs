//! How bytes and numbers are written inside lines: lowercase hexadecimal and canonical
//! decimal numbers, one spelling each.
//!
//! Keys, nonces, signatures, tags and hashes travel as hex so a capture stays readable
//! and `telnet` stays usable; numbers travel as plain decimals. Both are parsed in one
//! form only (`007`, `+7` and `0A` are refused), because a field that has two spellings
//! has two meanings for two implementations, and a signed line must mean one thing.

use std::fmt;

/// Why a field is not a canonical number or hex string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldError {
    /// Not digits only, or a leading zero, or empty.
    NotDecimal,
    /// Digits only, but above the largest value the field takes.
    OutOfRange,
    /// Not lowercase hex, or an odd number of digits.
    NotHex,
    /// Hex of the wrong length: `expected` bytes, found `found` hex digits.
    HexLength { expected: usize, found: usize },
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldError::NotDecimal => f.write_str("not a decimal number"),
            FieldError::OutOfRange => f.write_str("out of range"),
            FieldError::NotHex => f.write_str("not lowercase hexadecimal"),
            FieldError::HexLength { expected, found } => {
                write!(f, "{found} hex digits where {} were expected", expected * 2)
            }
        }
    }
}

impl std::error::Error for FieldError {}

/// A decimal number in its one spelling: ASCII digits, no sign, no leading zero (but `0`
/// itself), at most `u64::MAX`.
pub fn parse_u64(s: &str) -> Result<u64, FieldError> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return Err(FieldError::NotDecimal);
    }
    s.parse().map_err(|_| FieldError::OutOfRange)
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends `bytes` as lowercase hex to `out`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Exactly `N` bytes written as `2N` lowercase hex digits.
pub fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], FieldError> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        if b.iter().all(|&c| nibble(c).is_some()) {
            return Err(FieldError::HexLength {
                expected: N,
                found: b.len(),
            });
        }
        return Err(FieldError::NotHex);
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        let (Some(hi), Some(lo)) = (nibble(b[2 * i]), nibble(b[2 * i + 1])) else {
            return Err(FieldError::NotHex);
        };
        *byte = hi << 4 | lo;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_one_spelling() {
        assert_eq!(parse_u64("0"), Ok(0));
        assert_eq!(parse_u64("7"), Ok(7));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
        for bad in ["", "007", "+7", "-1", " 7", "7 ", "0x7", "٣"] {
            assert_eq!(parse_u64(bad), Err(FieldError::NotDecimal), "{bad:?}");
        }
        assert_eq!(
            parse_u64("18446744073709551616"),
            Err(FieldError::OutOfRange)
        );
        assert_eq!(
            parse_u64("100000000000000000000000"),
            Err(FieldError::OutOfRange)
        );
    }

    #[test]
    fn hex_is_lowercase_and_exact() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(parse_hex::<3>("00ab10"), Ok([0, 0xab, 0x10]));
        assert_eq!(parse_hex::<3>("00AB10"), Err(FieldError::NotHex));
        assert_eq!(parse_hex::<1>("+a"), Err(FieldError::NotHex));
        assert_eq!(
            parse_hex::<3>("00ab"),
            Err(FieldError::HexLength {
                expected: 3,
                found: 4
            })
        );
        assert_eq!(parse_hex::<2>("zzzz"), Err(FieldError::NotHex));
        assert_eq!(parse_hex::<2>("ééé"), Err(FieldError::NotHex));
    }
}
