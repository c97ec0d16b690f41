//! [`LayerBlob`]: what a finished layer blob is (digest, diff_id, size, media type), shared by
//! the layer writer that makes it, the store that records it and the OCI model that describes
//! it in a manifest.

/// A finished layer blob.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerBlob {
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// The OCI media type (from the compression).
    pub media_type: String,
}
