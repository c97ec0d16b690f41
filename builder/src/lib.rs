//! cargo-image: a daemonless, declarative, reproducible OCI image builder for Rust projects.
//!
//! A TOML image spec (`image.toml`) is turned into an OCI image layout whose bytes depend only on
//! the spec and its inputs: the same sources give the same digests on any machine, checkout path,
//! umask, file order or mtime.
//!
//! # The pipeline
//! A build is five steps, each consuming only what the one before produced ([`build`] runs
//! them; its module docs say how):
//!
//! ```text
//! image.toml ──spec──> ImageSpec ──options──> Context ──plan──> Plan ──execute──> results ──emit──> layout / archive / push
//! ```
//!
//! 1. **Spec** ([`spec`]): `image.toml` (or `[package.metadata.image]`) read into raw serde
//!    types that mirror the TOML, validated into a resolved [`spec::ImageSpec`] (paths
//!    normalised, defaults applied, cargo workspaces found through [`cargo`]'s metadata). Bad
//!    input stops here with a message that points at the file, line, column and key.
//! 2. **Options**: the spec and the command line resolved once (tags, epoch, platforms, each
//!    platform's rust target, output and store paths).
//! 3. **Plan**: the cargo builds ([`cargo`], binaries found through cargo's JSON messages, host
//!    paths remapped out of them) and the base images ([`oci`] layouts and archives, or
//!    [`registry`] pulls into the store, a tag taken from the digest [`lock`] pins it to) and
//!    the Debian packages of `debian` entries ([`debian`]: resolved, or taken from the lock,
//!    their verified `.deb` files put into the store) are the inputs of the plan; then every needed stage of
//!    every platform is compiled into one immutable [`plan::LayerGraph`] (fetch base, build
//!    layer, assemble image, assemble index) whose every node has a key: blake3 over its recipe,
//!    the content hashes of its host inputs and the format version. Host file hashes come from
//!    the [`store`]'s stat index, so a warm plan reads no file; a cold build leaves the key of
//!    a layer of many new files to be computed while it is written, so that each file is read
//!    once. `cargo image plan` stops here.
//! 4. **Execute**: the graph's nodes run in dependency order on `--jobs` threads. A node whose
//!    key the [`store`] holds costs a lookup; a layer it lacks is looked up in the remote layer
//!    caches (`--cache-from`: records in a [`registry`] repository, its blob downloaded only
//!    when its bytes are needed), else built by [`layer`] (a sorted
//!    tree of entries streamed in one pass through the deterministic tar writer, the compressor
//!    and two sha256 hashers into a store blob) under its key's lock. Layers that copy out of
//!    another stage read that stage's merged filesystem through [`rootfs`].
//! 5. **Emit**: the image model of [`oci`] (config, manifest, index, canonical JSON) written as
//!    an OCI layout (built beside the output, swapped into place on success, blobs hard-linked
//!    out of the store), an OCI or Docker archive, or pushed by [`registry`]. Each platform's
//!    image gets its [`sbom`] (a CycloneDX or SPDX document of the crates in its cargo binaries,
//!    its base and its files) and its [`provenance`] (a SLSA v1 statement of the spec, commit,
//!    `Cargo.lock`, bases and toolchain) attached as OCI 1.1 referrers in the layout. With a
//!    key, [`sign`] signs the image and attests those referrers the way cosign does, in the
//!    layout and, when pushing, in the registry.
//!
//! Progress leaves the library as [`build::Event`]s; the library never prints. The
//! `cargo-image` binary (`cli`, not part of the library's API) turns events into cargo-style
//! status lines or JSON, and errors into miette reports.
//!
//! # Which module depends on which
//! Dependencies run one way; a module uses only the modules listed after it (`<-` reads "is
//! used by"):
//!
//! ```text
//! types, tarball,         leaves: value types (references and their grammar, digests,
//! git_index               platforms, pull policy, compression, SBOM formats), the tar
//!                         toolkit, and git's index read as a stat cache (blob ids of
//!                         clean checked-out files, for the remote cache's alias keys)
//!   <- lock               image.lock: pinned bases and packages      (types)
//!   <- oci                image model, layouts, archives             (types, tarball)
//!   <- store              blobs, node keys, stat index, locks        (oci, types)
//!   <- registry           pull and push                              (oci, store, types)
//!   <- debian             Debian packages: resolve, verify, fetch    (registry, store, tarball, types)
//!   <- cargo              cargo builds and metadata                  (types)
//!   <- sbom               CycloneDX/SPDX SBOMs, artifact manifests   (cargo, oci, types)
//!   <- provenance         SLSA v1 provenance statements              (oci)
//!   <- sign               cosign signatures and attestations         (oci, registry)
//!   <- spec               the front end: raw -> validate -> model    (cargo, types)
//!   <- layer              layer trees and blobs                      (debian, spec, tarball, types)
//!   <- rootfs             stage filesystems                          (layer, oci, spec, tarball)
//!   <- plan               the layer graph and its keys               (cargo, layer, spec, types)
//!   <- build              the operation: options, plan, execute, emit (all of the above)
//! ```
//!
//! Only tests cross this order, and only from outside: `builder/tests` drives [`build`] and
//! checks its archives and registry traffic with peer tools.

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
pub mod debian;
pub mod git_index;
pub mod layer;
pub mod lock;
pub mod oci;
pub mod plan;
pub mod provenance;
pub mod registry;
pub mod rootfs;
pub mod sbom;
pub mod sign;
pub mod spec;
pub mod store;
pub mod tarball;
pub mod types;
