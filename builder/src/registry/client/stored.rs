//! The store side of a pull: the record of a resolution (`reference + platform -> manifest`)
//! and an image read back out of the store, verified, without the network.
//!
//! A pull records under [`resolution_key`] which manifest (and index) a reference resolved to
//! and every blob of the image; the next pull with `if-not-present` or `never` reads that
//! record and the blobs back ([`load_stored`]), the manifest and config verified and the
//! layers checked by size. It relies on the [`Store`] only (and on [`ResolvedImage`], what it
//! gives back: the image, its blobs in the store).

use std::collections::BTreeMap;
use std::fs;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest, MediaType};

use crate::oci::{descriptor, Digest, Platform, ResolvedImage};
use crate::registry::Reference;
use crate::store::{BlobRef, BlobsRecord, NodeResult, Store};

/// The store key recording which manifest `reference` resolved to for `platform`:
/// blake3 hex of `ref:<normalised reference>|<platform>`.
pub(super) fn resolution_key(reference: &Reference, platform: &Platform) -> String {
    blake3::hash(format!("ref:{reference}|{platform}").as_bytes())
        .to_hex()
        .to_string()
}

/// What the store records under [`resolution_key`]: every blob of the image (`blobs`), and
/// which of them are its manifest and the index it was picked out of.
pub(super) fn resolution_record(
    reference: &Reference,
    platform: &Platform,
    index: Option<&BlobRef>,
    manifest: &BlobRef,
    blobs: Vec<BlobRef>,
) -> NodeResult {
    let mut data = BTreeMap::new();
    data.insert("reference", serde_json::json!(reference.to_string()));
    data.insert("platform", serde_json::json!(platform.to_string()));
    data.insert("manifest", serde_json::json!(manifest.digest));
    if let Some(index) = index {
        data.insert("index", serde_json::json!(index.digest));
    }
    NodeResult::Blobs(BlobsRecord {
        blobs,
        data: serde_json::to_value(data).unwrap_or_default(),
    })
}

/// Reads a verified blob of the store.
fn read_stored(store: &Store, digest: &str, size: u64) -> Option<Vec<u8>> {
    let parsed = Digest::parse(digest).ok()?;
    let bytes = fs::read(store.blob_path(&parsed)).ok()?;
    (bytes.len() as u64 == size && Digest::of(&bytes) == parsed).then_some(bytes)
}

/// The image whose manifest is `manifest` from the store, if its manifest, config and every
/// layer are there (manifest and config verified, layers by size) and it is for `platform`.
pub(super) fn load_stored(
    reference: &Reference,
    platform: &Platform,
    store: &Store,
    manifest: &BlobRef,
    index: Option<&BlobRef>,
) -> Option<ResolvedImage> {
    load_stored_checked(reference, store, manifest, index)
        .ok()
        .filter(|image| platform.matches(&Platform::of_config(&image.config)))
}

/// [`load_stored`] without the platform check, saying what is missing.
pub(super) fn load_stored_checked(
    reference: &Reference,
    store: &Store,
    manifest: &BlobRef,
    index: Option<&BlobRef>,
) -> Result<ResolvedImage, String> {
    let manifest_bytes = read_stored(store, &manifest.digest, manifest.size)
        .ok_or_else(|| format!("the manifest {} is not in the store", manifest.digest))?;
    let parsed: ImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("invalid image manifest: {e}"))?;
    let config = parsed.config();
    let config_bytes = read_stored(store, config.digest().as_ref(), config.size())
        .ok_or_else(|| format!("the config {} is not in the store", config.digest()))?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| format!("invalid image config: {e}"))?;
    for layer in parsed.layers() {
        let present = Digest::parse(layer.digest().as_ref())
            .ok()
            .and_then(|d| fs::metadata(store.blob_path(&d)).ok())
            .is_some_and(|m| m.len() == layer.size());
        if !present {
            return Err(format!("the layer {} is not in the store", layer.digest()));
        }
    }
    let to_desc = |b: &BlobRef| -> Result<Descriptor, String> {
        let digest = Digest::parse(&b.digest).map_err(|e| e.to_string())?;
        Ok(descriptor(
            MediaType::from(b.media_type.as_str()),
            &digest,
            b.size,
        ))
    };
    let mut image = ResolvedImage::new(
        store.root().to_path_buf(),
        to_desc(manifest)?,
        parsed,
        manifest_bytes,
        config,
        config_bytes,
    );
    image.index = index.map(to_desc).transpose()?;
    image.tag = reference.tag().map(str::to_string);
    image.reference = Some(reference.clone());
    Ok(image)
}
