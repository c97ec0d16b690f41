//! cargo-image: a daemonless, declarative, reproducible OCI image builder for Rust projects.
//!
//! TODO: overview
#![forbid(unsafe_code)]

pub mod cargo;
pub mod layer;
pub mod oci;
pub mod spec;
pub mod store;
