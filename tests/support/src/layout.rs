//! Reading what a build wrote: an OCI layout's `index.json`, its blobs by digest, the first
//! layer of its image.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The manifest digest of the first entry in a layout's `index.json`.
pub fn manifest_digest(layout: &Path) -> String {
    let index = read_json(&layout.join("index.json"));
    index["manifests"][0]["digest"]
        .as_str()
        .expect("index.json has a manifest digest")
        .to_string()
}

/// The path of blob `digest` (`sha256:<hex>`) in `layout` (or in a store: the same shape).
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// Reads a blob of a layout by digest as JSON.
pub fn blob_json(layout: &Path, digest: &str) -> Value {
    read_json(&blob_path(layout, digest))
}

/// The digest of the first layer of the image a layout's first `index.json` entry names, and
/// the path of its blob in `blobs`: the layout itself, or a store holding the same blobs.
pub fn first_layer_blob(layout: &Path, blobs: &Path) -> (String, PathBuf) {
    let manifest = blob_json(layout, &manifest_digest(layout));
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .expect("a first layer")
        .to_string();
    let path = blob_path(blobs, &digest);
    (digest, path)
}

/// The CycloneDX SBOMs of a layout's images ([`referrers`] of `application/vnd.cyclonedx+json`).
pub fn sbom_referrers(layout: &Path) -> Vec<(String, PathBuf)> {
    referrers(layout, "application/vnd.cyclonedx+json")
}

/// The SPDX SBOMs of a layout's images ([`referrers`] of `application/spdx+json`).
pub fn spdx_referrers(layout: &Path) -> Vec<(String, PathBuf)> {
    referrers(layout, "application/spdx+json")
}

/// The artifact manifests of `artifact_type` listed in a layout's `index.json`, each checked
/// to be an OCI 1.1 artifact manifest (that `artifactType`, the empty config): its subject's
/// digest and the path of its one layer's blob.
pub fn referrers(layout: &Path, artifact_type: &str) -> Vec<(String, PathBuf)> {
    let index = read_json(&layout.join("index.json"));
    index["manifests"]
        .as_array()
        .expect("index.json lists manifests")
        .iter()
        .filter(|e| e["artifactType"] == artifact_type)
        .map(|e| {
            let manifest = blob_json(layout, e["digest"].as_str().unwrap());
            assert_eq!(manifest["artifactType"], artifact_type);
            assert_eq!(
                manifest["config"]["mediaType"],
                "application/vnd.oci.empty.v1+json"
            );
            assert_eq!(manifest["layers"][0]["mediaType"], artifact_type);
            let subject = manifest["subject"]["digest"].as_str().unwrap().to_string();
            let layer = manifest["layers"][0]["digest"].as_str().unwrap();
            (subject, blob_path(layout, layer))
        })
        .collect()
}
