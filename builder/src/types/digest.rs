//! [`Digest`]: the sha256 content digest that names every blob, config and manifest.
//!
//! Parsing is strict (`sha256:` and 64 lower-case hex digits, nothing else), because a digest
//! becomes a file name under `blobs/sha256/` and a store key: a looser form could name a path
//! outside the store or two names for one blob.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use super::Error;

/// A sha256 content digest, `sha256:<64 lowercase hex>`: the name of every blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a finished sha256 hasher holds (for blobs hashed while streamed).
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// Digest and size of everything `reader` yields.
    pub fn of_reader(mut reader: impl Read) -> io::Result<(Self, u64)> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((Self::from_hasher(hasher), size))
    }

    /// Digest and size of the file at `path`, streamed.
    pub fn of_file(path: &Path) -> io::Result<(Self, u64)> {
        Self::of_reader(std::fs::File::open(path)?)
    }

    /// Parses `sha256:<64 lowercase hex>`; any other algorithm or form is an error.
    pub fn parse(digest: &str) -> Result<Self, Error> {
        let invalid = |reason: &'static str| Error::InvalidDigest {
            digest: digest.to_string(),
            reason,
        };
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| invalid("only sha256 digests (`sha256:<hex>`) are supported"))?;
        Self::from_hex(hex).map_err(|_| invalid("expected 64 lowercase hex digits after `sha256:`"))
    }

    /// A digest from its 64 lowercase hex digits (a blob's file name).
    pub fn from_hex(hex: &str) -> Result<Self, Error> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self {
                hex: hex.to_string(),
            })
        } else {
            Err(Error::InvalidDigest {
                digest: hex.to_string(),
                reason: "expected 64 lowercase hex digits",
            })
        }
    }

    /// The 64 hex digits: the blob's file name under `blobs/sha256/`.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The same digest as oci-spec's type, for descriptors.
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        // A sha256 digest of 64 lowercase hex digits is always valid for oci-spec.
        oci_spec::image::Digest::from_str(&self.to_string())
            .expect("a validated sha256 digest is a valid OCI digest")
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = Error;
    fn try_from(digest: &oci_spec::image::Digest) -> Result<Self, Error> {
        Self::parse(digest.as_ref())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_parse_and_validate() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert_eq!(d.to_oci().to_string(), d.to_string());
        for bad in [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "sha256:../../../../etc/passwd0000000000000000000000000000000000000000000",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad} accepted");
        }
        let (streamed, size) = Digest::of_reader(&b"hello"[..]).unwrap();
        assert_eq!((streamed, size), (Digest::of(b"hello"), 5));
    }
}
