//! Value types: the small, pure values every step of the pipeline names images and blobs with.
//!
//! # Brief overview
//!
//! - [`Reference`] and its grammar ([`mod@reference`]): `[registry/]repository[:tag][@digest]`,
//!   normalised as `docker pull` does, and the rules of names, tags and path components that the
//!   spec checks `name`, `registry` and `tags` against.
//! - [`Digest`]: a `sha256:<hex>` content digest, the name of every blob.
//! - [`Platform`]: an `os/architecture` pair with an optional variant.
//! - [`PullPolicy`]: when to contact a registry for a base image.
//! - [`Compression`]: how a layer blob is compressed, and its media type.
//! - [`SbomFormat`]: the formats of the SBOM attached to each image, and their media types.
//! - [`LayerBlob`]: a finished layer blob (digest, diff_id, size, media type).
//! - [`WHITEOUT_PREFIX`], [`OPAQUE_WHITEOUT`]: the names of OCI whiteout files.
//!
//! # Dependencies
//!
//! This is the leaf of the crate: it depends on no other module of it (only on `oci-spec`,
//! `serde`, `schemars`, `sha2`, `hex`), and every other module may depend on it. That is what
//! lets the spec front end name a platform or a base image reference without knowing the
//! registry client, and the store describe a layer blob without knowing the layer writer.
//!
//! It is called `types` rather than after one concept because it holds several small ones, each
//! in a file named after it; what they share is that they are values (compared, hashed,
//! printed, parsed), with no I/O beyond hashing a reader.

pub mod reference;

mod compression;
mod digest;
mod layer_blob;
mod platform;
mod pull_policy;
mod sbom_format;
mod whiteout;

pub use compression::Compression;
pub use digest::Digest;
pub use layer_blob::LayerBlob;
pub use platform::Platform;
pub use pull_policy::PullPolicy;
pub use reference::{InvalidReference, Reference};
pub use sbom_format::SbomFormat;
pub use whiteout::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

/// Why a digest or a platform was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid digest `{digest}`: {reason}")]
    InvalidDigest {
        digest: String,
        reason: &'static str,
    },

    #[error("invalid platform `{platform}`: expected `os/arch` or `os/arch/variant`, e.g. `linux/amd64` or `linux/arm/v7`")]
    InvalidPlatform { platform: String },
}
