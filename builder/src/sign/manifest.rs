//! The image that holds signatures, as cosign makes it: an OCI image manifest whose layers are
//! the signed payloads (a simple-signing payload with its signature in the
//! `dev.cosignproject.cosign/signature` annotation, or a DSSE envelope with a `predicateType`
//! annotation), on a config like go-containerregistry's empty image with those layers
//! appended. Canonical JSON, no time: the same layers give the same manifest digest.

use std::collections::{BTreeMap, HashMap};

use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use serde_json::json;

use super::Error;
use crate::oci::{self, to_canonical_json, Digest};

/// A payload layer of a signature image, with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigLayer {
    pub media_type: String,
    pub blob: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl SigLayer {
    /// The layer's descriptor: media type, digest, size and annotations.
    pub fn descriptor(&self) -> Descriptor {
        let mut desc = oci::descriptor(
            MediaType::Other(self.media_type.clone()),
            &Digest::of(&self.blob),
            self.blob.len() as u64,
        );
        desc.set_annotations(Some(
            self.annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ));
        desc
    }
}

/// A signature image's documents.
#[derive(Debug, Clone)]
pub struct SigImage {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl SigImage {
    /// The manifest's descriptor (media type, digest, size).
    pub fn descriptor(&self) -> Descriptor {
        oci::descriptor(
            MediaType::ImageManifest,
            &Digest::of(&self.manifest),
            self.manifest.len() as u64,
        )
    }
}

/// The manifest and config of a signature image of `layers` (in that order).
pub fn sig_image(layers: &[Descriptor]) -> Result<SigImage, Error> {
    let zero = "0001-01-01T00:00:00Z";
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest().to_string()).collect();
    let config = json!({
        "architecture": "",
        "config": {},
        "created": zero,
        "history": layers.iter().map(|_| json!({"created": zero})).collect::<Vec<_>>(),
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = to_canonical_json(&config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "config": oci::descriptor(
            MediaType::ImageConfig,
            &Digest::of(&config),
            config.len() as u64,
        ),
        "layers": layers,
    });
    let manifest = to_canonical_json(&manifest)?;
    Ok(SigImage { config, manifest })
}

/// Parses a signature image's manifest; the reason it is not one, otherwise.
pub fn parse(bytes: &[u8]) -> Result<ImageManifest, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("it is not an image manifest ({e})"))
}

/// A layer's annotation `key`.
pub fn annotation<'d>(desc: &'d Descriptor, key: &str) -> Option<&'d str> {
    desc.annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// `layers` followed by those of `added` that are not among them yet (same digest and same
/// annotations): signing twice adds nothing, another key's signatures stay.
pub fn merge(layers: &[Descriptor], added: &[Descriptor]) -> Vec<Descriptor> {
    let mut out = layers.to_vec();
    for desc in added {
        let known = out
            .iter()
            .any(|d| d.digest() == desc.digest() && d.annotations() == desc.annotations());
        if !known {
            out.push(desc.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(payload: &str, sig: &str) -> SigLayer {
        SigLayer {
            media_type: super::super::payload::SIMPLE_SIGNING.into(),
            blob: payload.as_bytes().to_vec(),
            annotations: BTreeMap::from([(
                super::super::payload::SIGNATURE_ANNOTATION.to_string(),
                sig.to_string(),
            )]),
        }
    }

    #[test]
    fn the_signature_image_is_deterministic_and_names_its_layers() {
        let layers = [layer("{}", "c2ln").descriptor()];
        let (a, b) = (sig_image(&layers).unwrap(), sig_image(&layers).unwrap());
        assert_eq!(a.manifest, b.manifest);
        let manifest = parse(&a.manifest).unwrap();
        assert_eq!(manifest.layers().len(), 1);
        assert_eq!(
            annotation(&manifest.layers()[0], "dev.cosignproject.cosign/signature"),
            Some("c2ln")
        );
        assert_eq!(
            manifest.config().digest().to_string(),
            Digest::of(&a.config).to_string()
        );
    }

    #[test]
    fn merging_keeps_other_signatures_and_adds_no_duplicate() {
        let ours = layer("{}", "b3Vy").descriptor();
        let theirs = layer("{}", "dGhlaXI=").descriptor();
        let merged = merge(std::slice::from_ref(&theirs), &[ours.clone(), ours.clone()]);
        assert_eq!(merged, vec![theirs, ours]);
    }
}
