//! Layers: from a [`LayerSpec`](crate::spec::LayerSpec) to a deterministic, compressed tar blob.
//!
//! TODO(layer helper): module docs — the brief overview and an example.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::spec::{CargoSource, LayerSpec};

/// How a layer blob is compressed. The choice (and the encoder behind it) is part of the
/// format version, because it decides the blob's bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar+gzip` (the default; every tool reads it).
    #[default]
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd` (smaller and faster; newer runtimes).
    Zstd,
    /// `application/vnd.oci.image.layer.v1.tar` (uncompressed).
    None,
}

/// What the tree builder needs besides the spec: where host paths are, and where cargo put the
/// binaries the spec asks for.
#[derive(Debug, Clone)]
pub struct SourceContext<'a> {
    /// The build context directory (absolute, canonical). Host sources never resolve outside it.
    pub context: &'a Path,
    /// The built binary for each cargo source of the spec.
    pub cargo_outputs: &'a HashMap<CargoSource, PathBuf>,
}

/// Settings that decide a layer's bytes (besides its tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    pub compression: Compression,
    /// mtime of every entry (seconds since the epoch).
    pub mtime: u64,
    /// Compressor threads; never changes the output bytes.
    pub threads: usize,
}

/// A finished layer blob.
#[derive(Debug, Clone, PartialEq, Eq)]
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
