//! A shared file's manifest: its size, its piece size, a BLAKE3 hash per piece and for the
//! whole file. The file's id is the hash of the manifest itself, so peers agree on what
//! "the same file" is without trusting each other: a manifest whose content does not hash
//! to the id asked for is refused, and every piece is checked against it before use.

use std::io::{self, Read};
use std::path::Path;

/// Pieces are 1 MiB: small enough to spread a file over several sources and to lose
/// little to a bad piece, large enough that a request costs little beside its data.
pub const PIECE_SIZE: u64 = 1 << 20;
/// The largest piece size accepted from a peer, and the most pieces.
pub const MAX_PIECE_SIZE: u64 = 16 << 20;
pub const MAX_PIECES: usize = 1 << 22;

pub type Hash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub size: u64,
    pub piece_size: u64,
    pub pieces: Vec<Hash>,
    pub file_hash: Hash,
}

pub fn hex(h: &Hash) -> String {
    crate::encoding::hex(h)
}

/// A hash in its one spelling: 64 lowercase hex digits.
pub fn parse_hex(s: &str) -> Option<Hash> {
    crate::encoding::parse_hex(s).ok()
}

pub fn hash_piece(data: &[u8]) -> Hash {
    *blake3::hash(data).as_bytes()
}

impl Manifest {
    /// Reads `path` once, hashing each piece and the whole file.
    pub fn of_file(path: &Path, name: &str, piece_size: u64) -> io::Result<Manifest> {
        // Not through a link put in its place: what is hashed is what would be served.
        let mut f = super::open_regular(path)?;
        let size = f.metadata()?.len();
        let mut whole = blake3::Hasher::new();
        let mut pieces = Vec::with_capacity(size.div_ceil(piece_size) as usize);
        let mut buf = vec![0u8; piece_size as usize];
        let mut left = size;
        while left > 0 {
            let n = left.min(piece_size) as usize;
            f.read_exact(&mut buf[..n])?;
            whole.update(&buf[..n]);
            pieces.push(hash_piece(&buf[..n]));
            left -= n as u64;
        }
        Ok(Manifest {
            name: name.to_owned(),
            size,
            piece_size,
            pieces,
            file_hash: *whole.finalize().as_bytes(),
        })
    }

    pub fn piece_count(&self) -> usize {
        self.pieces.len()
    }

    /// The length of piece `i` (the last one may be short).
    pub fn piece_len(&self, i: usize) -> u64 {
        let start = i as u64 * self.piece_size;
        self.piece_size.min(self.size.saturating_sub(start))
    }

    /// The file's id: the hash of everything in the manifest but the name (the same
    /// content is the same file under any name).
    pub fn id(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"genp2p-manifest 1\n");
        h.update(format!("{} {}\n", self.size, self.piece_size).as_bytes());
        h.update(&self.file_hash);
        for p in &self.pieces {
            h.update(p);
        }
        h.finalize().to_hex().to_string()
    }

    /// The answer to `MANIFEST ID`: a header line, one `PIECE` line per piece, `END`.
    pub fn to_lines(&self) -> String {
        let mut s = format!(
            "MANIFEST {} {} {} {} {}\n",
            self.id(),
            self.size,
            self.piece_size,
            hex(&self.file_hash),
            self.name
        );
        for p in &self.pieces {
            s.push_str("PIECE ");
            s.push_str(&hex(p));
            s.push('\n');
        }
        s.push_str("END\n");
        s
    }

    /// Reads the header line's fields (after `MANIFEST `); the pieces follow separately.
    pub fn parse_header(rest: &str) -> Result<(String, Manifest), String> {
        let mut w = rest.splitn(5, ' ');
        let (Some(id), Some(size), Some(piece_size), Some(file_hash), Some(name)) =
            (w.next(), w.next(), w.next(), w.next(), w.next())
        else {
            return Err("MANIFEST: expected 'MANIFEST ID SIZE PIECESIZE HASH NAME'".into());
        };
        let size = crate::encoding::parse_u64(size)
            .map_err(|e| format!("MANIFEST: bad size {:?}: {e}", crate::escape::Shown(size)))?;
        let piece_size = crate::encoding::parse_u64(piece_size).map_err(|e| {
            format!(
                "MANIFEST: bad piece size {:?}: {e}",
                crate::escape::Shown(piece_size)
            )
        })?;
        if piece_size == 0 || piece_size > MAX_PIECE_SIZE {
            return Err(format!("MANIFEST: piece size {piece_size} out of range"));
        }
        let count = size.div_ceil(piece_size);
        if count > MAX_PIECES as u64 {
            return Err(format!("MANIFEST: {count} pieces is too many"));
        }
        let file_hash = parse_hex(file_hash).ok_or("MANIFEST: bad file hash")?;
        if !super::valid_name(name) {
            return Err(format!("MANIFEST: unacceptable name {name:?}"));
        }
        Ok((
            id.to_owned(),
            Manifest {
                name: name.to_owned(),
                size,
                piece_size,
                pieces: Vec::with_capacity(count as usize),
                file_hash,
            },
        ))
    }

    /// How many `PIECE` lines the header announces.
    pub fn expected_pieces(&self) -> usize {
        self.size.div_ceil(self.piece_size) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_its_id_ignores_the_name() {
        let dir = std::env::temp_dir().join(format!("genp2p-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let m = Manifest::of_file(&path, "f.bin", 1000).unwrap();
        assert_eq!((m.piece_count(), m.piece_len(2), m.size), (3, 500, 2500));
        assert_eq!(m.pieces[1], hash_piece(&data[1000..2000]));
        assert_eq!(m.file_hash, *blake3::hash(&data).as_bytes());
        let lines = m.to_lines();
        let mut it = lines.lines();
        let (id, mut parsed) =
            Manifest::parse_header(it.next().unwrap().strip_prefix("MANIFEST ").unwrap()).unwrap();
        for l in it.take(parsed.expected_pieces()) {
            parsed
                .pieces
                .push(parse_hex(l.strip_prefix("PIECE ").unwrap()).unwrap());
        }
        assert_eq!(parsed, m);
        assert_eq!(id, m.id());
        let renamed = Manifest {
            name: "other".into(),
            ..m.clone()
        };
        assert_eq!(renamed.id(), m.id());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_file_has_no_pieces() {
        let m = Manifest {
            name: "e".into(),
            size: 0,
            piece_size: PIECE_SIZE,
            pieces: vec![],
            file_hash: hash_piece(b""),
        };
        assert_eq!(m.expected_pieces(), 0);
    }
}
