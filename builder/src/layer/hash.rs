//! SHA-256 while streaming: the digest and the byte count of a stream seen piece by piece.
//!
//! The layer writer keeps two, each on a stage of its own (see `pipeline`): one over the
//! uncompressed tar stream (the `diff_id`), one over the compressed bytes (the blob's `digest`
//! and size).

use sha2::{Digest, Sha256};

/// The SHA-256 and length of the bytes given to [`Self::update`].
#[derive(Default)]
pub(crate) struct StreamHash {
    hasher: Sha256,
    count: u64,
}

impl StreamHash {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.count += bytes.len() as u64;
    }

    /// The `sha256:<hex>` digest and the byte count.
    pub(crate) fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_counts() {
        let mut h = StreamHash::default();
        h.update(b"ab");
        h.update(b"c");
        let (digest, count) = h.finish();
        assert_eq!(count, 3);
        assert_eq!(
            digest,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
