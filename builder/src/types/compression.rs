//! [`Compression`]: how a layer blob is compressed, and the OCI media type that says so.
//!
//! The spec chooses it (`compression = "zstd"`), the layer writer applies it, and the OCI
//! model reads it back from a base image's layer media types.

/// How a layer blob is compressed. The choice (and the encoder behind it) is part of the
/// format version, because it decides the blob's bytes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
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

impl Compression {
    /// The OCI media type of a layer blob compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}
