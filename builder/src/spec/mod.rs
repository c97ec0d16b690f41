//! The image spec: `image.toml` read into raw serde types, validated into an [`ImageSpec`].
//!
//! TODO(spec helper): brief overview, the load function, raw types, errors.

mod model;

pub use model::*;
