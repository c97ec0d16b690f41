//! cargo-image: a daemonless, declarative, reproducible OCI image builder for Rust projects.
//!
//! A TOML image spec (`image.toml`) is turned into an OCI image layout whose bytes depend only on
//! the spec and its inputs: the same sources give the same digests on any machine, checkout path,
//! umask, file order or mtime.
//!
//! # The pipeline
//! Data flows one way through these modules; each step only knows the one before it.
//!
//! 1. [`spec`]: read `image.toml` into raw serde types that mirror the TOML, then validate them into
//!    a resolved [`spec::ImageSpec`] (paths normalised, defaults applied). Bad input stops here with
//!    a message that points at the file, line, column and key.
//! 2. [`cargo`]: build the binaries the spec's `cargo` entries ask for, with host paths remapped
//!    out of them, and find the executables through cargo's JSON messages.
//! 3. [`plan`]: compile the spec into an immutable [`plan::LayerGraph`] (fetch base, build layer,
//!    assemble image, assemble index) where every node has a key: blake3 over its recipe, the
//!    content hashes of its host inputs and the format version. Host file hashes come from the
//!    [`store`]'s stat index, so a warm plan reads no file.
//! 4. [`layer`]: turn each layer of the spec into a sorted tree of entries (host trees, inline
//!    files, directories, symlinks, imported tarballs, cargo binaries) and stream it, in one pass,
//!    through the deterministic tar writer, the compressor and two sha256 hashers (diff_id and
//!    blob digest) into a blob file.
//! 5. [`store`]: the content-addressed store shared by every build and process: blobs by digest,
//!    node keys to results, the stat index, file locks. A layer whose key is there costs a
//!    lookup; outputs hard-link blobs out of it.
//! 6. [`oci`]: the image model (config, manifest, index, canonical JSON) and where images live:
//!    the OCI layout writer (built in a temporary directory, swapped into place on success) and
//!    reader (for `oci:` bases and `inspect`), and OCI / docker archives.
//! 7. [`build`]: the operation that runs these steps for one spec (independent layers in
//!    parallel on a rayon pool; with several `platforms`, steps 2-5 once per platform, in
//!    parallel, into one OCI image index, cargo binaries cross-compiled per platform's target
//!    triple) and reports progress as
//!    [`build::Event`]s. The library never prints; the `cargo-image` binary turns events into
//!    cargo-style status lines or JSON.
//!
//! Beside the pipeline, [`types`] is the leaf of value types (image references and their
//! grammar, digests, platforms, pull policies, compression, layer blobs): every module may
//! depend on it, and it depends on none of them.
//!
//! # Example
//! ```no_run
//! use cargo_oci_image::build::{build, BuildOptions};
//!
//! let out = build(
//!     std::path::Path::new("examples/hello/image.toml"),
//!     &BuildOptions::default(),
//!     &mut |event| eprintln!("{event:?}"),
//! )?;
//! println!("{} -> {}", out.manifest_digest, out.path.display());
//! # Ok::<(), cargo_oci_image::build::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod build;
pub mod cargo;
pub mod layer;
pub mod oci;
pub mod plan;
pub mod registry;
pub mod rootfs;
pub mod spec;
pub mod store;
pub mod tarball;
pub mod types;
