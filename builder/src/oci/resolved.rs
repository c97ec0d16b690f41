//! [`ResolvedImage`]: one image, wherever it came from, with its manifest and config verified.
//!
//! There is one model of an image the pipeline reads, not one per source. Every source gives a
//! `ResolvedImage`:
//!
//! - an OCI layout directory ([`Layout::resolve`](super::Layout::resolve)): `oci:PATH[:TAG]`
//!   bases and `cargo image inspect`;
//! - an `oci-archive:` or `docker-archive:` base, unpacked into a scratch directory that the
//!   image keeps alive ([`with_scratch`](ResolvedImage::with_scratch));
//! - a registry: `RegistryClient::pull` puts the image into the store and gives it back with
//!   the [`reference`](ResolvedImage::reference) it was pulled by (the pull's own facts, such as
//!   whether the network was used, are a separate report, not a second image type);
//! - the store: a base whose blobs a build copied in
//!   ([`with_blobs_in`](ResolvedImage::with_blobs_in)), or a stage's assembled image.
//!
//! What differs between sources is only where the blobs are: [`ResolvedImage::layout`] is the
//! directory holding `blobs/sha256/<hex>`, which a layout, an unpacked archive and the store
//! all have. Where the image came from is said by its [`tag`](ResolvedImage::tag),
//! [`index`](ResolvedImage::index) and [`reference`](ResolvedImage::reference); the reference is
//! what lets a push to the same registry mount the base's blobs instead of uploading them.
//!
//! The scratch directory of an unpacked archive is held behind an [`Arc`], so the image stays
//! cheap to clone and the directory lives as long as any copy of the image that still reads
//! from it; [`with_blobs_in`](ResolvedImage::with_blobs_in) lets go of it.
//!
//! This module depends on [`crate::types`] (the [`Reference`]) and on the rest of `oci` only.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};

use super::model::Digest;
use super::temp_output::TempDirBeside;
use super::{bounded, Error};
use crate::types::Reference;

/// One image: its manifest and config (verified, parsed and as raw bytes), where its blobs are
/// and where it came from.
///
/// Every source of images gives this one type: an OCI layout ([`Layout::resolve`]), an
/// unpacked `oci-archive:` or `docker-archive:` (which it keeps alive, see
/// [`with_scratch`](Self::with_scratch)), a registry pull (with the [`reference`](Self::reference)
/// it was pulled by) and the store. Only where the blobs are differs: [`layout`](Self::layout)
/// is the directory holding `blobs/sha256/<hex>`, which all of them have.
///
/// [`Layout::resolve`]: super::Layout::resolve
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The directory holding its blobs (`blobs/sha256/<hex>`): the OCI layout it was read
    /// from, the directory an archive was unpacked into, or the store (which has the same
    /// shape).
    pub layout: PathBuf,
    /// The registry reference it was pulled by (normalised), for a registry image.
    pub reference: Option<Reference>,
    /// The tag it was resolved by, if any.
    pub tag: Option<String>,
    /// The image index the tag named, when the manifest was picked out of one by platform.
    pub index: Option<Descriptor>,
    /// The manifest's descriptor (digest, size, media type).
    pub descriptor: Descriptor,
    pub manifest: ImageManifest,
    /// The manifest exactly as stored (its sha256 is the manifest digest).
    pub manifest_bytes: Vec<u8>,
    pub config: ImageConfiguration,
    /// The config exactly as stored.
    pub config_bytes: Vec<u8>,
    /// The scratch directory `layout` is in (an unpacked archive), removed when the last copy
    /// of the image holding it is dropped.
    scratch: Option<Arc<TempDirBeside>>,
}

impl ResolvedImage {
    /// An image whose manifest and config were read (and verified) by the caller and whose
    /// blobs are in `layout`; no reference, tag or index yet (set the fields).
    pub fn new(
        layout: PathBuf,
        descriptor: Descriptor,
        manifest: ImageManifest,
        manifest_bytes: Vec<u8>,
        config: ImageConfiguration,
        config_bytes: Vec<u8>,
    ) -> Self {
        Self {
            layout,
            reference: None,
            tag: None,
            index: None,
            descriptor,
            manifest,
            manifest_bytes,
            config,
            config_bytes,
            scratch: None,
        }
    }

    /// This image, keeping `scratch` (the directory its blobs were unpacked into) until the
    /// last copy of it is dropped.
    pub fn with_scratch(mut self, scratch: TempDirBeside) -> Self {
        self.scratch = Some(Arc::new(scratch));
        self
    }

    /// This image with its blobs read from `layout` from now on (which holds copies of them,
    /// e.g. the store); it no longer keeps the scratch directory it was unpacked into.
    pub fn with_blobs_in(mut self, layout: PathBuf) -> Self {
        self.layout = layout;
        self.scratch = None;
        self
    }

    /// The manifest digest.
    pub fn digest(&self) -> String {
        self.descriptor.digest().to_string()
    }

    /// The layer descriptors, bottom first.
    pub fn layers(&self) -> &[Descriptor] {
        self.manifest.layers()
    }

    /// The path of blob `digest` in the directory holding the image's blobs.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, Error> {
        blob_path(&self.layout, digest)
    }

    /// Checks that blob `digest` exists, is `size` bytes and hashes to `digest` (streamed).
    pub fn verify_blob(&self, digest: &str, size: u64) -> Result<(), Error> {
        verify_blob(&self.layout, digest, size)
    }
}

/// The path of blob `digest` under `layout` (`blobs/sha256/<hex>`).
pub(super) fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, Error> {
    let digest = Digest::parse(digest)?;
    Ok(layout.join("blobs").join("sha256").join(digest.hex()))
}

/// Checks that blob `digest` under `layout` exists, is `size` bytes and hashes to `digest`.
pub(super) fn verify_blob(layout: &Path, digest: &str, size: u64) -> Result<(), Error> {
    let path = blob_path(layout, digest)?;
    let read_err = |source| Error::ReadBlob {
        path: path.clone(),
        digest: digest.to_string(),
        source,
    };
    let file = bounded::open_regular(&path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    check_size(&path, digest, size, len)?;
    let (actual, len) = Digest::of_reader(file.take(size + 1)).map_err(read_err)?;
    check_size(&path, digest, size, len)?;
    if actual.to_string() != digest {
        return Err(Error::BlobDigest {
            path,
            digest: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// [`Error::BlobSize`] unless `actual` is `expected`.
pub(super) fn check_size(
    path: &Path,
    digest: &str,
    expected: u64,
    actual: u64,
) -> Result<(), Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::BlobSize {
            path: path.to_path_buf(),
            digest: digest.to_string(),
            expected,
            actual,
        })
    }
}
