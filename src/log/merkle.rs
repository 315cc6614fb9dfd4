//! RFC 9162 Merkle tree hashing and proofs.
//!
//! Generation works over stored *perfect* subtrees only (a subtree of 2^level leaves
//! starting at a multiple of 2^level): once complete their hashes never change, so the
//! store keeps them and every root or proof needs O(log n) of them, with nothing held in
//! memory. Verification is ct-merkle's, a separate implementation, so what a lawyer runs
//! does not merely agree with itself.

use super::LogError;
use ring::digest;
use std::io;

pub type Hash = [u8; 32];

/// Where perfect-subtree hashes come from (sled on the server, memory in tests).
pub trait NodeSource {
    fn node(&self, level: u8, index: u64) -> io::Result<Hash>;
}

/// SHA-256(0x00 || data): the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    to_hash(ctx.finish())
}

/// SHA-256(0x01 || left || right): the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    to_hash(ctx.finish())
}

fn to_hash(d: digest::Digest) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A tree held in memory, built leaf by leaf with the server's own append rule: how a
/// reviewer rebuilds a log from a replica's journal, to prove against it.
#[derive(Default)]
pub struct MemoryTree {
    /// Perfect-subtree hashes by level, then position.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn append(&mut self, leaf: Hash) {
        let nodes = nodes_completed_by(self.size(), leaf, |level, i| self.node(level, i))
            .expect("the left siblings of a new node are all complete");
        for (level, _, hash) in nodes {
            let level = usize::from(level);
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
        }
    }
}

impl NodeSource for MemoryTree {
    fn node(&self, level: u8, index: u64) -> io::Result<Hash> {
        self.levels
            .get(usize::from(level))
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
}

/// The perfect nodes that become complete when leaf `index` is appended, bottom up,
/// starting with the leaf itself. `get` reads nodes already stored.
pub fn nodes_completed_by<E>(
    index: u64,
    leaf: Hash,
    mut get: impl FnMut(u8, u64) -> Result<Hash, E>,
) -> Result<Vec<(u8, u64, Hash)>, E> {
    let mut out = vec![(0u8, index, leaf)];
    let (mut level, mut position, mut hash) = (0u8, index, leaf);
    // While this node is a right child, its parent is now complete.
    while position % 2 == 1 {
        let left = get(level, position - 1)?;
        hash = node_hash(&left, &hash);
        level += 1;
        position /= 2;
        out.push((level, position, hash));
    }
    Ok(out)
}

/// MTH(D[start:end]) for a range produced by RFC 9162's recursive split.
pub fn subtree_hash(src: &impl NodeSource, start: u64, end: u64) -> io::Result<Hash> {
    let size = end - start;
    if size.is_power_of_two() && start % size == 0 {
        return src.node(size.trailing_zeros() as u8, start / size);
    }
    let k = largest_power_of_two_below(size);
    Ok(node_hash(&subtree_hash(src, start, start + k)?, &subtree_hash(src, start + k, end)?))
}

/// The root of the first `size` leaves (SHA-256 of nothing for an empty tree).
pub fn root(src: &impl NodeSource, size: u64) -> io::Result<Hash> {
    if size == 0 {
        return Ok(to_hash(digest::digest(&digest::SHA256, b"")));
    }
    subtree_hash(src, 0, size)
}

/// PATH(index, D[size]): the audit path for one leaf, from the leaf up.
pub fn inclusion_proof(src: &impl NodeSource, index: u64, size: u64) -> io::Result<Vec<Hash>> {
    if index >= size {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "leaf index beyond tree size"));
    }
    let mut proof = Vec::new();
    path(src, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path(
    src: &impl NodeSource,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> io::Result<()> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(subtree_hash(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(subtree_hash(src, start, start + k)?);
    }
    Ok(())
}

/// PROOF(old, D[new]): proves the first `old` leaves are a prefix of the first `new`.
pub fn consistency_proof(src: &impl NodeSource, old: u64, new: u64) -> io::Result<Vec<Hash>> {
    if old == 0 || old > new {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no consistency proof for these sizes",
        ));
    }
    let mut proof = Vec::new();
    subproof(src, old, 0, new, true, &mut proof)?;
    Ok(proof)
}

fn subproof(
    src: &impl NodeSource,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> io::Result<()> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(subtree_hash(src, start, end)?);
        }
        return Ok(());
    }
    let k = largest_power_of_two_below(n);
    if m <= k {
        subproof(src, m, start, start + k, complete, out)?;
        out.push(subtree_hash(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(subtree_hash(src, start, start + k)?);
    }
    Ok(())
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn largest_power_of_two_below(n: u64) -> u64 {
    1 << (n - 1).ilog2()
}

type Sha256 = sha2::Sha256;

/// No real log comes near this; bigger sizes from a forged checkpoint or proof are
/// refused before the tree arithmetic sees them (it overflows past 2^63).
pub const MAX_TREE_SIZE: u64 = 1 << 62;
/// A proof for any tree up to `MAX_TREE_SIZE` has at most this many hashes.
const MAX_PROOF_HASHES: usize = 2 * 62;

fn check_bounds(sizes: &[u64], proof: &[Hash]) -> Result<(), LogError> {
    if sizes.iter().any(|&s| s > MAX_TREE_SIZE) || proof.len() > MAX_PROOF_HASHES {
        return Err(LogError::Proof("the tree size or proof is larger than any real log".into()));
    }
    Ok(())
}

fn root_hash(root: &Hash, size: u64) -> ct_merkle::RootHash<Sha256> {
    ct_merkle::RootHash::new((*root).into(), size)
}

/// Checks that `leaf_data` is leaf `index` of the tree of `size` leaves with `root`.
pub fn verify_inclusion(
    leaf_data: &[u8],
    index: u64,
    size: u64,
    root: &Hash,
    proof: &[Hash],
) -> Result<(), LogError> {
    check_bounds(&[index, size], proof)?;
    if index >= size {
        return Err(LogError::Proof("the leaf index is outside the tree".into()));
    }
    let proof = ct_merkle::InclusionProof::<Sha256>::from_digests(
        proof.iter().map(|h| (*h).into()).collect::<Vec<_>>().iter(),
    );
    root_hash(root, size)
        .verify_inclusion(&leaf_data, index, &proof)
        .map_err(|e| LogError::Proof(format!("inclusion proof does not verify: {e:?}")))
}

/// Checks that the tree of `old_size` leaves with `old_root` is a prefix of the tree of
/// `new_size` leaves with `new_root`.
pub fn verify_consistency(
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), LogError> {
    check_bounds(&[old_size, new_size], proof)?;
    if old_size > new_size {
        return Err(LogError::Proof("the earlier tree is larger than the later one".into()));
    }
    if old_size == new_size {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(LogError::Proof("same size, different roots: the log was rewritten".into()))
        };
    }
    let proof = ct_merkle::ConsistencyProof::<Sha256>::from_digests(
        proof.iter().map(|h| (*h).into()).collect::<Vec<_>>().iter(),
    );
    root_hash(new_root, new_size)
        .verify_consistency(&root_hash(old_root, old_size), &proof)
        .map_err(|e| LogError::Proof(format!("consistency proof does not verify: {e:?}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A log kept in memory, built with the same append path as the server's.
    #[derive(Default)]
    pub struct MemoryLog {
        nodes: HashMap<(u8, u64), Hash>,
        pub size: u64,
    }

    impl NodeSource for MemoryLog {
        fn node(&self, level: u8, index: u64) -> io::Result<Hash> {
            self.nodes.get(&(level, index)).copied().ok_or_else(|| io::ErrorKind::NotFound.into())
        }
    }

    impl MemoryLog {
        pub fn append(&mut self, data: &[u8]) {
            let nodes =
                nodes_completed_by(self.size, leaf_hash(data), |l, i| self.node(l, i)).unwrap();
            for (level, index, hash) in nodes {
                self.nodes.insert((level, index), hash);
            }
            self.size += 1;
        }
    }

    fn leaves(n: u64) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
    }

    #[test]
    fn every_proof_for_every_size_up_to_200_verifies_and_altered_ones_fail() {
        let data = leaves(200);
        let mut log = MemoryLog::default();
        let mut roots = vec![root(&log, 0).unwrap()];
        for d in &data {
            log.append(d);
            roots.push(root(&log, log.size).unwrap());
        }
        for size in 1..=200u64 {
            let r = &roots[size as usize];
            for index in (0..size).step_by(7).chain([size - 1]) {
                let proof = inclusion_proof(&log, index, size).unwrap();
                verify_inclusion(&data[index as usize], index, size, r, &proof).unwrap();
                assert!(verify_inclusion(b"forged", index, size, r, &proof).is_err());
                if let Some(first) = proof.first() {
                    let mut altered = proof.clone();
                    altered[0] = node_hash(first, first);
                    assert!(
                        verify_inclusion(&data[index as usize], index, size, r, &altered).is_err()
                    );
                }
            }
            for old in (1..=size).step_by(5).chain([size]) {
                let proof = consistency_proof(&log, old, size).unwrap();
                verify_consistency(old, &roots[old as usize], size, r, &proof).unwrap();
                if old < size {
                    let wrong_old = roots[old as usize - 1];
                    assert!(verify_consistency(old, &wrong_old, size, r, &proof).is_err());
                    let mut altered = proof.clone();
                    altered[0][0] ^= 1;
                    assert!(
                        verify_consistency(old, &roots[old as usize], size, r, &altered).is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn a_forked_log_is_not_consistent_with_the_original() {
        let mut a = MemoryLog::default();
        let mut b = MemoryLog::default();
        for i in 0..10u8 {
            a.append(&[i]);
            b.append(&[if i == 4 { 99 } else { i }]);
        }
        let proof = consistency_proof(&b, 3, 10).unwrap();
        // b's first 3 leaves equal a's, but b rewrote leaf 4.
        let a7 = root(&a, 7).unwrap();
        let proof7 = consistency_proof(&b, 7, 10).unwrap();
        assert!(verify_consistency(7, &a7, 10, &root(&b, 10).unwrap(), &proof7).is_err());
        verify_consistency(3, &root(&a, 3).unwrap(), 10, &root(&b, 10).unwrap(), &proof).unwrap();
    }

    #[test]
    fn forged_huge_sizes_are_refused_not_panicked_on() {
        let root = [7u8; 32];
        let proof = vec![[1u8; 32]; 3];
        for (index, size) in [(0, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 62, 1 << 63), (5, 5)] {
            assert!(verify_inclusion(b"x", index, size, &root, &proof).is_err());
        }
        for (old, new) in [(1, u64::MAX), (u64::MAX - 1, u64::MAX), (9, 3), (1 << 62, 1 << 63)] {
            assert!(verify_consistency(old, &root, new, &root, &proof).is_err());
        }
        assert!(verify_inclusion(b"x", 0, 2, &root, &vec![[0u8; 32]; 200]).is_err());
    }

    /// The RFC 6962 reference leaves the transparency-dev vectors are built on.
    const REFERENCE_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    fn vectors(kind: &str) -> Vec<(String, serde_json::Value)> {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/merkle").join(kind);
        let mut out = Vec::new();
        for dir in std::fs::read_dir(root).unwrap().flatten() {
            for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
                let v = serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
                out.push((file.path().display().to_string(), v));
            }
        }
        out
    }

    fn b64_hash(v: &serde_json::Value) -> Option<Hash> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(v.as_str()?).ok()?;
        bytes.try_into().ok()
    }

    fn b64_proof(v: &serde_json::Value) -> Option<Vec<Hash>> {
        match v {
            serde_json::Value::Null => Some(Vec::new()),
            serde_json::Value::Array(items) => items.iter().map(b64_hash).collect(),
            _ => None,
        }
    }

    #[test]
    fn transparency_dev_inclusion_vectors() {
        let data: Vec<Vec<u8>> = REFERENCE_LEAVES.iter().map(|h| hex::decode(h).unwrap()).collect();
        let mut log = MemoryLog::default();
        for d in &data {
            log.append(d);
        }
        let all = vectors("inclusion");
        assert!(all.len() >= 100, "vectors missing: {}", all.len());
        for (name, v) in all {
            let want_err = v["wantErr"].as_bool().unwrap();
            let index =
                v.get("leafIdx").or_else(|| v.get("leafIndex")).and_then(serde_json::Value::as_u64);
            let size = v["treeSize"].as_u64();
            let leaf =
                b64_hash(&v["leafHash"]).and_then(|h| data.iter().find(|d| leaf_hash(d) == h));
            let (root_hash, proof) = (b64_hash(&v["root"]), b64_proof(&v["proof"]));
            let verified = match (index, size, leaf, root_hash, &proof) {
                (Some(i), Some(n), Some(leaf), Some(r), Some(p)) => {
                    verify_inclusion(leaf, i, n, &r, p).is_ok()
                }
                _ => false,
            };
            assert_eq!(verified, !want_err, "{name}");
            if !want_err {
                // Our generation produces exactly the published proof and root.
                let (i, n) = (index.unwrap(), size.unwrap());
                assert_eq!(inclusion_proof(&log, i, n).unwrap(), proof.unwrap(), "{name}");
                assert_eq!(root(&log, n).unwrap(), root_hash.unwrap(), "{name}");
            }
        }
    }

    #[test]
    fn transparency_dev_consistency_vectors() {
        let mut log = MemoryLog::default();
        for h in REFERENCE_LEAVES {
            log.append(&hex::decode(h).unwrap());
        }
        let all = vectors("consistency");
        assert!(all.len() >= 100, "vectors missing: {}", all.len());
        for (name, v) in all {
            let want_err = v["wantErr"].as_bool().unwrap();
            let (s1, s2) = (v["size1"].as_u64(), v["size2"].as_u64());
            let (r1, r2, proof) =
                (b64_hash(&v["root1"]), b64_hash(&v["root2"]), b64_proof(&v["proof"]));
            let verified = match (s1, s2, r1, r2, &proof) {
                (Some(s1), Some(s2), Some(r1), Some(r2), Some(p)) => {
                    verify_consistency(s1, &r1, s2, &r2, p).is_ok()
                }
                _ => false,
            };
            assert_eq!(verified, !want_err, "{name}");
            if !want_err && s1 != s2 {
                let (s1, s2) = (s1.unwrap(), s2.unwrap());
                assert_eq!(consistency_proof(&log, s1, s2).unwrap(), proof.unwrap(), "{name}");
                assert_eq!(root(&log, s1).unwrap(), r1.unwrap(), "{name}");
                assert_eq!(root(&log, s2).unwrap(), r2.unwrap(), "{name}");
            }
        }
    }
}
