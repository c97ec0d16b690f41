//! The OCI image model, and the places images live.
//!
//! # Brief overview
//!
//! As in go-containerregistry, what an image *is* is kept apart from *where it lives*:
//!
//! - **The model** (`model` items, re-exported here): a [`Digest`], a
//!   [`Platform`] (both from [`crate::types`]), and pure builders for the three JSON documents of an image:
//!   [`image_config`] (our runtime config, an `oci-spec` `Config`, applied on top of a base's
//!   with Dockerfile `FROM` semantics), [`image_manifest`] (config + layer descriptors), and [`index_entries`] (one
//!   tagged descriptor per tag). Documents use the `oci-spec` types and are written as
//!   [`to_canonical_json`] bytes, whose sha256 is their digest: the same image gives the same
//!   bytes on any machine.
//! - **Sinks** write images somewhere: [`LayoutWriter`] builds an OCI image layout directory
//!   beside its target and swaps it into place atomically when finished; [`write_oci_archive`]
//!   and [`write_docker_archive`] turn a finished layout into a deterministic tarball
//!   (`oci-archive:` for skopeo, `docker load` / `podman load`).
//! - **Sources** read images from somewhere: [`Layout`] opens a layout directory and
//!   [`Layout::resolve`]s a tag (and platform) to a verified [`ResolvedImage`], used for
//!   `oci:PATH[:TAG]` bases; [`open_oci_archive`] and [`open_docker_archive`] unpack archives
//!   into layouts; [`inspect`] describes a layout's images for `cargo image inspect`.
//!   [`ResolvedImage`] is the one model of an image read from anywhere (a layout, an unpacked
//!   archive, the store, a registry pull): where its blobs are, and where it came from (tag,
//!   index, registry reference); see the `resolved` module.
//!
//! In the pipeline, the executor builds layer blobs (the `layer` module) straight into
//! [`LayoutWriter::blobs_dir`], imports base layers with [`LayoutWriter::import_blob`], writes
//! the config and manifest with [`LayoutWriter::write_json`], then [`LayoutWriter::finish`]es
//! with the [`index_entries`]:
//!
//! ```no_run
//! # use std::collections::BTreeMap;
//! # use std::path::Path;
//! # use cargo_oci_image::oci::*;
//! # use oci_spec::image::{Config, Descriptor, MediaType};
//! /// Writes an image of `ours` (layers already in `writer.blobs_dir()`) on top of a base
//! /// image from a local layout.
//! fn write_image(
//!     writer: LayoutWriter,
//!     runtime: &Config,
//!     ours: &[(String, String, Descriptor)], // (layer name, diff_id, blob descriptor)
//!     tags: &[String],
//! ) -> Result<(), Error> {
//!     let platform = Platform::linux_amd64();
//!     let base = Layout::open(Path::new("base-layout"))?.resolve(Some("1.0"), &platform)?;
//!     for layer in base.layers() {
//!         let digest = layer.digest().to_string();
//!         writer.import_blob(&base.blob_path(&digest)?, &digest)?;
//!     }
//!     let names: Vec<String> = ours.iter().map(|l| l.0.clone()).collect();
//!     let diff_ids: Vec<String> = ours.iter().map(|l| l.1.clone()).collect();
//!     let layers: Vec<Descriptor> = ours.iter().map(|l| l.2.clone()).collect();
//!     let config = image_config(&platform, Some(&base.config), runtime.clone(), &diff_ids, &names, 0);
//!     let config = writer.write_json(MediaType::ImageConfig, &config)?;
//!     let manifest = image_manifest(config, Some(&base.manifest), &layers, &BTreeMap::new());
//!     let manifest = writer.write_json(MediaType::ImageManifest, &manifest)?;
//!     writer.finish(index_entries(&manifest, Some(&platform), tags))?;
//!     Ok(())
//! }
//! ```

use std::path::{Path, PathBuf};

mod archive;
pub mod bounded;
mod canonical;
mod docker_archive;
mod inspect;
mod layer_check;
mod layout;
mod layout_reader;
mod model;
mod referrers;
mod resolved;
mod temp_output;

#[cfg(test)]
mod tests;

pub use archive::{
    check_archive_output, open_oci_archive, prepare_archive_output, write_oci_archive,
};
pub use canonical::to_canonical_json;
pub use docker_archive::{open_docker_archive, write_docker_archive, write_docker_archive_for};
pub use inspect::{inspect, BlobInfo, Inspection, LayerInfo};
pub use layer_check::{check_layer, read_layer, LayerFacts};
pub use layout::{LayoutWriter, OCI_LAYOUT_FILE};
pub use layout_reader::{
    cosign_kind, is_cosign_signatures, Layout, ManifestKind, COSIGN_ATTS, COSIGN_IMAGE,
    COSIGN_IMAGE_INDEX, COSIGN_KIND, COSIGN_SIGS,
};
pub use model::{
    descriptor, epoch_of_rfc3339, history_created_by, image_config, image_index, image_manifest,
    index_entries, layer_compression, layer_descriptor, platform_index, ref_name, rfc3339, Digest,
    Platform, DOCKER_CONFIG, DOCKER_FOREIGN_LAYER_GZIP, DOCKER_LAYER_GZIP, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, SCHEMA_VERSION,
};
pub use referrers::{sbom, Referrer};
pub use resolved::ResolvedImage;
pub use temp_output::{
    remove_leftovers, remove_scratch_leftovers, scratch_dir, temp_prefix, RemovedLeftovers,
    Scratch, TempDirBeside, RANDOM_LEN, SCRATCH_PREFIXES,
};

/// Errors of the OCI model, the layout sink and the layout source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: the artifact manifest {digest} is not a valid OCI manifest: {message}", layout.display())]
    ParseArtifact {
        layout: PathBuf,
        digest: String,
        message: String,
    },
    #[error("{}: no SBOM refers to the image {digest}; build it with `sbom = true` (the default) in the spec", layout.display())]
    NoSbom { layout: PathBuf, digest: String },
    #[error("{}: no {format} SBOM refers to the image {digest} (it has {found}); ask for it with `sbom = \"{}\"` or `sbom = [\"cyclonedx\", \"spdx\"]` in the spec", layout.display(), format.name())]
    NoSbomOfFormat {
        layout: PathBuf,
        digest: String,
        format: crate::types::SbomFormat,
        /// The formats it has (`a CycloneDX one`).
        found: String,
    },
    #[error("{}: the image has several platforms ({available}); choose one with --platform", layout.display())]
    SbomPlatform { layout: PathBuf, available: String },
    #[error("failed to serialise {what} as JSON")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// An invalid digest or platform ([`crate::types`] checks them).
    #[error(transparent)]
    Value(#[from] crate::types::Error),

    #[error("cannot write an image layout to `{}`: the path has no final directory name; pick another `--output`", path.display())]
    InvalidOutput { path: PathBuf },

    #[error("failed to create directory `{}` for the image layout", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("refusing to replace `{}`: it {what}; only a layout cargo-image wrote or an empty directory is replaced, and nothing was changed: pick another `--output`, or move `{}` away yourself", path.display(), path.display())]
    RefuseReplace { path: PathBuf, what: String },

    #[error("failed to write blob `{}`", path.display())]
    WriteBlob {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to import blob {digest} from `{}`", src.display())]
    ImportBlob {
        src: PathBuf,
        digest: String,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to write `{}`", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to sync `{}` to disk", path.display())]
    Sync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to put the image layout in place at `{}`", path.display())]
    ReplaceOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{}` is not an OCI image layout: it has no `oci-layout` file", path.display())]
    NotALayout { path: PathBuf },

    #[error("failed to read `{}`", path.display())]
    ReadLayout {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the OCI image layout `{}` has version {version}; only 1.x layouts are supported", path.display())]
    LayoutVersion { path: PathBuf, version: String },

    #[error("`{}` is not a valid {what}", path.display())]
    ParseJson {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("the OCI image layout `{}` has no image tagged `{tag}`; available tags: {available}", layout.display())]
    TagNotFound {
        layout: PathBuf,
        tag: String,
        available: String,
    },

    #[error("the OCI image layout `{}` holds several images; name one with `:TAG` (available tags: {available})", layout.display())]
    AmbiguousImage { layout: PathBuf, available: String },

    #[error("the OCI image layout `{}` holds no image (its index.json lists no manifests)", layout.display())]
    EmptyLayout { layout: PathBuf },

    #[error("the image index {digest} in `{}` has no image for {platform}; it has: {available}", layout.display())]
    PlatformNotFound {
        layout: PathBuf,
        digest: String,
        platform: String,
        available: String,
    },

    #[error("the image {digest} in `{}` is for {found}, not {wanted}", layout.display())]
    PlatformMismatch {
        layout: PathBuf,
        digest: String,
        wanted: String,
        found: String,
    },

    #[error("blob {digest} in `{}` has media type `{media_type}`, expected {expected}", layout.display())]
    UnsupportedMediaType {
        layout: PathBuf,
        digest: String,
        media_type: String,
        expected: &'static str,
    },

    #[error("image indexes nest too deep under {digest} in `{}`", layout.display())]
    IndexTooDeep { layout: PathBuf, digest: String },

    #[error("failed to read blob {digest} (`{}`)", path.display())]
    ReadBlob {
        path: PathBuf,
        digest: String,
        #[source]
        source: std::io::Error,
    },

    #[error("blob {digest} (`{}`) is {actual} bytes, but its descriptor says {expected}: the layout is corrupt", path.display())]
    BlobSize {
        path: PathBuf,
        digest: String,
        expected: u64,
        actual: u64,
    },

    #[error("blob {digest} (`{}`) hashes to {actual}: the layout is corrupt", path.display())]
    BlobDigest {
        path: PathBuf,
        digest: String,
        actual: String,
    },

    #[error("layer {digest} (`{}`) is declared `{media_type}`, but its bytes are {found}: the image's manifest is wrong; fix the base (e.g. copy it again with skopeo)", path.display())]
    LayerMediaType {
        path: PathBuf,
        digest: String,
        media_type: String,
        found: &'static str,
    },

    #[error("refusing to write an archive to `{}`: it {what}; pick another `--output`", path.display())]
    RefuseArchiveOutput { path: PathBuf, what: &'static str },

    #[error("failed to write the archive `{}`", path.display())]
    WriteArchive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot archive the OCI image layout: `{}` {what}", path.display())]
    UnexpectedLayoutEntry { path: PathBuf, what: &'static str },

    #[error("the scratch directory `{}` for extracting an archive is not empty", path.display())]
    ScratchNotEmpty { path: PathBuf },

    #[error("failed to read the archive `{}`", archive.display())]
    ReadArchive {
        archive: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{}` is not {kind}: it has no `{missing}` entry", archive.display())]
    NotAnArchive {
        archive: PathBuf,
        kind: &'static str,
        missing: &'static str,
    },

    #[error("refusing entry `{entry}` of the archive `{}`: {reason}", archive.display())]
    ArchiveEntry {
        archive: PathBuf,
        entry: String,
        reason: String,
    },

    #[error("failed to extract entry `{entry}` of the archive `{}` to `{}`", archive.display(), path.display())]
    ExtractEntry {
        archive: PathBuf,
        entry: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("entry `{entry}` of the archive `{}` is not a valid {what}", archive.display())]
    ArchiveJson {
        archive: PathBuf,
        entry: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("entry `{entry}` of the archive `{}` is corrupt: the {what} should hash to {expected} but hashes to {actual}", archive.display())]
    ArchiveDigest {
        archive: PathBuf,
        entry: String,
        what: &'static str,
        expected: String,
        actual: String,
    },

    #[error("invalid image name `{repo_tag}` for a Docker archive: {reason}")]
    InvalidRepoTag {
        repo_tag: String,
        reason: &'static str,
    },

    #[error("the image {digest} in `{}` has {layers} layers but its config lists {diff_ids} diff_ids: the layout is corrupt", layout.display())]
    LayerCount {
        layout: PathBuf,
        digest: String,
        layers: usize,
        diff_ids: usize,
    },

    #[error("{}", several_platforms(layout, digest, wanted.as_deref(), available))]
    SeveralPlatforms {
        layout: PathBuf,
        digest: String,
        /// The platform asked for, if any.
        wanted: Option<String>,
        available: String,
    },

    #[error("failed to decompress layer {digest} (`{}`)", path.display())]
    DecompressLayer {
        path: PathBuf,
        digest: String,
        #[source]
        source: std::io::Error,
    },

    #[error("layer {digest} (`{}`) uncompresses to {actual}, but the image config's diff_id is {expected}: the layout is corrupt", path.display())]
    DiffIdMismatch {
        path: PathBuf,
        digest: String,
        expected: String,
        actual: String,
    },
}

/// The message of [`Error::SeveralPlatforms`].
fn several_platforms(layout: &Path, digest: &str, wanted: Option<&str>, available: &str) -> String {
    match wanted {
        Some(wanted) => format!(
            "the image index {digest} in `{}` has no image for {wanted} (it has {available}): build \
             for this platform too (`--platform {wanted}`)",
            layout.display()
        ),
        None => format!(
            "the image index {digest} in `{}` holds several images ({available}); a Docker archive \
             holds one: write an OCI archive instead",
            layout.display()
        ),
    }
}
