//! One signature for a run of chat lines: the lines' hashes in a Merkle tree, the root
//! signed once, and each line carrying the signature and its path to the root.
//!
//! An Ed25519 signature costs 19 µs here, so a servant signing each line of a burst on
//! its own could send no more than about 50,000 lines a second, and a relay checking
//! each on its own no more than 13,000. When lines are typed faster than they can be
//! sent one by one (a paste, a script), the typist signs them together: up to 64 lines
//! are the leaves of a binary tree, the root is signed, and each line's `SIG` field is
//! `SIG/I/PATH` (see docs/PROTOCOL.md 4.5): the root's signature, the line's leaf index,
//! and the sibling hashes from its leaf up. Every line stays checkable on its own (a
//! relay may pass on only some of them, a new puller may be caught up with the last
//! few); a receiver that has checked one line of a run remembers the root and checks
//! the others by hashing alone.
//!
//! Leaves and inner nodes are BLAKE3 hashes under two different fixed keys, so a leaf
//! cannot be taken for a node, and are 16 bytes: only the author builds a tree, so what
//! an attacker would need is a second preimage, 2^128 hashes away.

/// Leaves in one tree at most (a tree of depth 6).
pub const MAX_LEAVES: usize = 64;
/// The deepest tree a reader accepts.
pub const MAX_DEPTH: usize = 6;

const LEAF: &str = "genp2p 2 batch leaf";
const NODE: &str = "genp2p 2 batch node";
/// What the author signs for a tree starts with this.
pub const SIGNED_ROOT_PREFIX: &[u8] = b"genp2p-batch-2 ";

pub type Node = [u8; 16];

fn keys() -> &'static ([u8; 32], [u8; 32]) {
    static KEYS: std::sync::OnceLock<([u8; 32], [u8; 32])> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| (blake3::derive_key(LEAF, b""), blake3::derive_key(NODE, b"")))
}

fn truncate(h: blake3::Hash) -> Node {
    let mut n = [0u8; 16];
    n.copy_from_slice(&h.as_bytes()[..16]);
    n
}

/// The leaf of a line: the hash of what its author signs for it (its parts concatenated).
pub fn leaf(parts: &[&[u8]]) -> Node {
    let mut h = blake3::Hasher::new_keyed(&keys().0);
    for p in parts {
        h.update(p);
    }
    truncate(h.finalize())
}

fn node(left: &Node, right: &Node) -> Node {
    let mut h = blake3::Hasher::new_keyed(&keys().1);
    h.update(left);
    h.update(right);
    truncate(h.finalize())
}

/// What the author signs for a tree of `depth` levels with root `root`.
pub fn signed_root(depth: usize, root: &Node) -> Vec<u8> {
    let mut m = SIGNED_ROOT_PREFIX.to_vec();
    m.push(b'0' + depth as u8);
    m.push(b' ');
    m.extend_from_slice(root);
    m
}

/// The tree over `leaves` (1 to `MAX_LEAVES`, padded with copies of the last to a power
/// of two): its depth, its root, and each leaf's path (sibling hashes, leaf level first).
pub fn build(leaves: &[Node]) -> (usize, Node, Vec<Vec<Node>>) {
    let n = leaves.len().clamp(1, MAX_LEAVES);
    let depth = n.next_power_of_two().trailing_zeros() as usize;
    let mut level: Vec<Node> = (0..1 << depth).map(|i| leaves[i.min(n - 1)]).collect();
    let mut paths = vec![Vec::with_capacity(depth); n];
    while level.len() > 1 {
        for (i, path) in paths.iter_mut().enumerate() {
            let at = i >> path.len();
            path.push(level[at ^ 1]);
        }
        level = level.chunks(2).map(|p| node(&p[0], &p[1])).collect();
    }
    (depth, level[0], paths)
}

/// The root that `leaf` at `index` with `path` leads to; `None` when the index does not
/// fit the path's depth.
pub fn root(leaf: Node, index: u64, path: &[Node]) -> Option<Node> {
    if path.len() > MAX_DEPTH || index >> path.len() != 0 {
        return None;
    }
    let mut at = leaf;
    for (level, sibling) in path.iter().enumerate() {
        at = if index >> level & 1 == 0 {
            node(&at, sibling)
        } else {
            node(sibling, &at)
        };
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_leads_to_the_root_and_nothing_else_does() {
        for n in [1, 2, 3, 5, 8, 33, 64] {
            let leaves: Vec<Node> = (0..n).map(|i: u32| leaf(&[&i.to_le_bytes()])).collect();
            let (depth, r, paths) = build(&leaves);
            assert_eq!(1 << depth, n.next_power_of_two());
            for (i, (l, p)) in leaves.iter().zip(&paths).enumerate() {
                assert_eq!(p.len(), depth);
                assert_eq!(root(*l, i as u64, p), Some(r), "leaf {i} of {n}");
                let other = leaf(&[b"another line"]);
                assert_ne!(root(other, i as u64, p), Some(r));
                // (Unless its sibling is the same leaf: the padding copies the last one.)
                if n > 1 && p[0] != *l {
                    assert_ne!(root(*l, (i as u64) ^ 1, p), Some(r), "a wrong index fails");
                }
            }
        }
        assert_eq!(root([0; 16], 2, &[[0; 16]]), None, "index beyond the path");
        // A leaf is never read as an inner node: the two hash under different keys.
        let (a, b) = (leaf(&[b"a"]), leaf(&[b"b"]));
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b);
        assert_ne!(leaf(&[&joined]), node(&a, &b));
    }
}
