//! Checking a base image's layer blobs against what its manifest and config say, in one pass
//! over the bytes, before anything of the base is reused.
//!
//! A base's descriptors are untrusted: a layer whose `size` or `mediaType` lies, or a config
//! whose `rootfs.diff_ids` do not match the layers, would be copied into our output, which other
//! tools then reject. [`read_layer`] streams a layer blob (a regular file, exactly its
//! descriptor's size) through a [`LayerFacts`] collector, which hashes it, tells its
//! compression by its magic bytes and decompresses it (both with the tar toolkit's
//! [`Format`] and [`WriteDecoder`]) and hashes the tar inside (the diff_id),
//! while the bytes are also written wherever the caller wants them (into the store). The facts
//! are then checked against the descriptor and the diff_id with [`check_layer`]; the store
//! records them so a warm build checks a recorded fact instead of reading the layer again.

use std::io::{self, Read, Write};
use std::path::Path;

use oci_spec::image::Descriptor;
use sha2::{Digest as _, Sha256};

use super::model::layer_compression;
use super::{bounded, Digest, Error};
use crate::tarball::{self, Format, WriteDecoder};
use crate::types::Compression;

/// The size of a tar header block: the uncompressed layer must start with one (or be empty).
const TAR_BLOCK: usize = tarball::BLOCK as usize;

/// What a layer blob's bytes are, found by reading them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFacts {
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// The compression its magic bytes show.
    pub compression: Compression,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
}

/// Reads the layer blob at `path`, which `descriptor` describes: a regular file, at most the
/// descriptor's size plus one byte, every byte also written to `copy`. Returns what the bytes
/// are; [`check_layer`] compares that with the descriptor.
pub fn read_layer(
    path: &Path,
    descriptor: &Descriptor,
    copy: &mut dyn Write,
) -> Result<LayerFacts, Error> {
    let digest = descriptor.digest().to_string();
    let read_err = |source| Error::ReadBlob {
        path: path.to_path_buf(),
        digest: digest.clone(),
        source,
    };
    let file = bounded::open_regular(path).map_err(read_err)?;
    let mut reader = file.take(descriptor.size().saturating_add(1));
    let mut collector = Collector::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        copy.write_all(&buf[..n]).map_err(read_err)?;
        // A decoding error is kept for later: a wrong size or digest is the better message.
        collector.update(&buf[..n]);
    }
    collector.finish().map_err(|source| Error::DecompressLayer {
        path: path.to_path_buf(),
        digest: digest.clone(),
        source,
    })
}

/// Checks the facts of a layer blob against its `descriptor` and the image config's `diff_id`
/// for it. `path` is the blob, named in errors.
pub fn check_layer(
    path: &Path,
    descriptor: &Descriptor,
    diff_id: &str,
    facts: &LayerFacts,
) -> Result<(), Error> {
    let digest = descriptor.digest().to_string();
    if facts.size != descriptor.size() {
        return Err(Error::BlobSize {
            path: path.to_path_buf(),
            digest,
            expected: descriptor.size(),
            actual: facts.size,
        });
    }
    if facts.digest != digest {
        return Err(Error::BlobDigest {
            path: path.to_path_buf(),
            digest,
            actual: facts.digest.clone(),
        });
    }
    if layer_compression(descriptor.media_type()) != Some(facts.compression) {
        return Err(Error::LayerMediaType {
            path: path.to_path_buf(),
            digest,
            media_type: descriptor.media_type().to_string(),
            found: compression_name(facts.compression),
        });
    }
    if facts.diff_id != diff_id {
        return Err(Error::DiffIdMismatch {
            path: path.to_path_buf(),
            digest,
            expected: diff_id.to_string(),
            actual: facts.diff_id.clone(),
        });
    }
    Ok(())
}

fn compression_name(compression: Compression) -> &'static str {
    match compression {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::None => "a plain tar",
    }
}

/// Hashes what is written to it, and keeps the first tar block.
struct TarHasher {
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
}

impl Write for TarHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        if self.head.len() < TAR_BLOCK {
            let take = (TAR_BLOCK - self.head.len()).min(buf.len());
            self.head.extend_from_slice(&buf[..take]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TarHasher {
    /// The diff_id, once the uncompressed bytes are known to be a tar: empty, or a first
    /// block that is all zeros (an empty archive) or a header with a valid checksum.
    fn finish(self) -> io::Result<String> {
        if self.size > 0 && !tarball::is_tar_start(&self.head) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "its content is not a tar archive (the first 512 bytes are no tar header)",
            ));
        }
        Ok(Digest::from_hasher(self.hasher).to_string())
    }
}

/// The decoder of a layer, chosen by its magic bytes once the first four are seen.
enum Decoder {
    /// Fewer than four bytes seen so far.
    Sniffing(Vec<u8>),
    Decoding(WriteDecoder<TarHasher>),
    /// Decoding failed; the error is reported at the end.
    Failed(io::Error),
}

/// Collects the [`LayerFacts`] of the bytes given to [`update`](Self::update).
struct Collector {
    hasher: Sha256,
    size: u64,
    decoder: Decoder,
}

impl Collector {
    fn new() -> Self {
        Self {
            hasher: Sha256::new(),
            size: 0,
            decoder: Decoder::Sniffing(Vec::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        if let Decoder::Sniffing(seen) = &mut self.decoder {
            seen.extend_from_slice(bytes);
            if seen.len() < tarball::MAGIC_LEN {
                return;
            }
            let seen = std::mem::take(seen);
            self.decoder = start(&seen);
            return;
        }
        self.feed(bytes);
    }

    fn feed(&mut self, bytes: &[u8]) {
        if let Decoder::Decoding(d) = &mut self.decoder {
            if let Err(e) = d.write_all(bytes) {
                self.decoder = Decoder::Failed(e);
            }
        }
    }

    fn finish(self) -> io::Result<LayerFacts> {
        let decoder = match self.decoder {
            Decoder::Sniffing(seen) => start(&seen),
            other => other,
        };
        let (compression, diff_id) = match decoder {
            Decoder::Decoding(d) => {
                let compression = match d.format() {
                    Format::Plain => Compression::None,
                    Format::Gzip => Compression::Gzip,
                    Format::Zstd => Compression::Zstd,
                };
                (compression, d.finish()?.finish()?)
            }
            Decoder::Failed(e) => return Err(e),
            Decoder::Sniffing(_) => unreachable!("started above"),
        };
        Ok(LayerFacts {
            digest: Digest::from_hasher(self.hasher).to_string(),
            size: self.size,
            compression,
            diff_id,
        })
    }
}

/// The decoder for a blob starting with `head`, already fed with it.
fn start(head: &[u8]) -> Decoder {
    let sink = TarHasher {
        hasher: Sha256::new(),
        size: 0,
        head: Vec::with_capacity(TAR_BLOCK),
    };
    let started = WriteDecoder::new(Format::sniff(head), sink).and_then(|mut d| {
        d.write_all(head)?;
        Ok(d)
    });
    match started {
        Ok(d) => Decoder::Decoding(d),
        Err(e) => Decoder::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{DescriptorBuilder, MediaType};

    /// A tar with one file, as bytes.
    fn tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "a", &b"abc"[..]).unwrap();
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn facts_of(blob: &[u8]) -> io::Result<LayerFacts> {
        let mut c = Collector::new();
        // In small pieces, as a reader may hand them over.
        for piece in blob.chunks(3) {
            c.update(piece);
        }
        c.finish()
    }

    fn descriptor(media_type: MediaType, blob: &[u8]) -> Descriptor {
        DescriptorBuilder::default()
            .media_type(media_type)
            .digest(
                Digest::of(blob)
                    .to_string()
                    .parse::<oci_spec::image::Digest>()
                    .unwrap(),
            )
            .size(blob.len() as u64)
            .build()
            .unwrap()
    }

    #[test]
    fn plain_gzip_and_zstd_layers_give_the_tar_digest_as_diff_id() {
        let tar = tar();
        let diff_id = Digest::of(&tar).to_string();
        let zstd = zstd::encode_all(&tar[..], 3).unwrap();
        for (blob, compression) in [
            (tar.clone(), Compression::None),
            (gzip(&tar), Compression::Gzip),
            (zstd, Compression::Zstd),
        ] {
            let facts = facts_of(&blob).unwrap();
            assert_eq!(facts.compression, compression);
            assert_eq!(facts.diff_id, diff_id);
            assert_eq!(facts.digest, Digest::of(&blob).to_string());
            assert_eq!(facts.size, blob.len() as u64);
        }
    }

    #[test]
    fn a_layer_that_is_no_tar_is_refused() {
        let e = facts_of(&gzip(b"not a tar at all")).unwrap_err();
        assert!(e.to_string().contains("not a tar"), "{e}");
        assert!(facts_of(&[0x1f, 0x8b, 0, 1, 2, 3]).is_err());
        assert_eq!(facts_of(&[]).unwrap().compression, Compression::None);
    }

    #[test]
    fn a_media_type_that_lies_about_the_compression_is_refused() {
        let blob = gzip(&tar());
        let facts = facts_of(&blob).unwrap();
        let path = Path::new("blob");
        let gz = descriptor(MediaType::ImageLayerGzip, &blob);
        check_layer(path, &gz, &facts.diff_id, &facts).unwrap();
        let zst = descriptor(MediaType::ImageLayerZstd, &blob);
        let e = check_layer(path, &zst, &facts.diff_id, &facts).unwrap_err();
        assert!(
            matches!(e, Error::LayerMediaType { found: "gzip", .. }),
            "{e}"
        );
        let wrong = format!("sha256:{}", "0".repeat(64));
        let e = check_layer(path, &gz, &wrong, &facts).unwrap_err();
        assert!(matches!(e, Error::DiffIdMismatch { .. }), "{e}");
    }
}
