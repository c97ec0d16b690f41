//! The OCI image layout source: read an image out of a layout directory, verifying every blob.
//!
//! Used for `from = "oci:PATH[:TAG]"` bases and by `cargo image inspect`. [`Layout::open`]
//! checks `oci-layout` and reads `index.json`; [`Layout::resolve`] picks an image by its
//! `org.opencontainers.image.ref.name` (following an image index to the wanted platform) and
//! reads its manifest and config, each checked against the sha256 and size its descriptor
//! gives. Layer blobs stay on disk: [`ResolvedImage::blob_path`] says where,
//! [`ResolvedImage::verify_blob`] streams one through sha256. Docker media types (v2 schema 2
//! manifests, manifest lists, `rootfs.diff.tar.gzip` layers) are read as well as OCI ones.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::de::DeserializeOwned;

use super::model::{
    layer_compression, ref_name, Digest, Platform, DOCKER_CONFIG, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
};
use super::resolved::{blob_path, check_size, verify_blob, ResolvedImage};
use super::{bounded, Error};

/// How deep image indexes may nest (an index entry pointing at an index pointing at ...).
const MAX_INDEX_DEPTH: usize = 4;

/// What a descriptor points at, by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker v2 schema 2).
    Image,
    /// An image index (OCI) or manifest list (Docker).
    Index,
    /// Anything else (artifacts, unknown types).
    Other,
}

impl ManifestKind {
    /// The kind of the document a descriptor with `media_type` points at.
    pub fn of(media_type: &MediaType) -> Self {
        match media_type {
            MediaType::ImageManifest => Self::Image,
            MediaType::ImageIndex => Self::Index,
            MediaType::Other(m) if m == DOCKER_MANIFEST => Self::Image,
            MediaType::Other(m) if m == DOCKER_MANIFEST_LIST => Self::Index,
            _ => Self::Other,
        }
    }
}

/// An OCI image layout directory opened for reading.
#[derive(Debug, Clone)]
pub struct Layout {
    path: PathBuf,
    index: ImageIndex,
}

impl Layout {
    /// Opens the layout at `path`: `oci-layout` must declare version 1.x, `index.json` must be
    /// an image index.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let marker = path.join("oci-layout");
        let bytes = match bounded::read_json_file(&marker, "oci-layout file") {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotALayout {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(Error::ReadLayout {
                    path: marker,
                    source,
                })
            }
        };
        #[derive(serde::Deserialize)]
        struct Marker {
            #[serde(rename = "imageLayoutVersion")]
            image_layout_version: String,
        }
        let marker_doc: Marker = parse_json(&marker, "oci-layout", &bytes)?;
        if !marker_doc.image_layout_version.starts_with("1.") {
            return Err(Error::LayoutVersion {
                path: path.to_path_buf(),
                version: marker_doc.image_layout_version,
            });
        }
        let index_path = path.join("index.json");
        let bytes = bounded::read_json_file(&index_path, "image index").map_err(|source| {
            Error::ReadLayout {
                path: index_path.clone(),
                source,
            }
        })?;
        let index: ImageIndex = parse_json(&index_path, "image index", &bytes)?;
        Ok(Self {
            path: path.to_path_buf(),
            index,
        })
    }

    /// The layout directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    /// Every `org.opencontainers.image.ref.name` in `index.json`, sorted, without duplicates.
    pub fn tags(&self) -> Vec<String> {
        let tags: BTreeSet<&str> = self.index.manifests().iter().filter_map(ref_name).collect();
        tags.into_iter().map(str::to_string).collect()
    }

    /// The path of blob `digest` (`sha256:<hex>`) in this layout.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, Error> {
        blob_path(&self.path, digest)
    }

    /// Checks that blob `digest` exists, is `size` bytes, and hashes to `digest` (streamed).
    pub fn verify_blob(&self, digest: &str, size: u64) -> Result<(), Error> {
        verify_blob(&self.path, digest, size)
    }

    /// Reads the blob `descriptor` points at, verified against its digest and size.
    pub fn read_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, Error> {
        let digest = descriptor.digest().to_string();
        let path = self.blob_path(&digest)?;
        let read_err = |source| Error::ReadBlob {
            path: path.clone(),
            digest: digest.clone(),
            source,
        };
        if descriptor.size() > bounded::MAX_JSON_BYTES {
            return Err(read_err(
                bounded::Error::TooLarge {
                    what: "image document (index, manifest or config)",
                    limit: bounded::MAX_JSON_BYTES,
                }
                .into(),
            ));
        }
        let file = bounded::open_regular(&path).map_err(read_err)?;
        let actual = file.metadata().map_err(read_err)?.len();
        check_size(&path, &digest, descriptor.size(), actual)?;
        // Exactly the descriptor's size, and one byte more to see a file that grew.
        let mut bytes = Vec::with_capacity(actual as usize);
        file.take(descriptor.size() + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        check_size(&path, &digest, descriptor.size(), bytes.len() as u64)?;
        let actual = Digest::of(&bytes);
        if actual.to_string() != digest {
            return Err(Error::BlobDigest {
                path,
                digest,
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// The `index.json` entry for `tag`, or the only image of the layout when `tag` is `None`.
    /// A tag matches a `ref.name` equal to it, or else (for layouts written with full
    /// references, as buildkit does) a unique `ref.name` ending in `:tag`.
    pub fn find(&self, tag: Option<&str>) -> Result<&Descriptor, Error> {
        let manifests = self.index.manifests();
        let Some(tag) = tag else {
            // Artifacts attached to an image (an SBOM) are not images, nor are cosign's
            // signature and attestation images.
            let images: Vec<&Descriptor> = manifests
                .iter()
                .filter(|d| d.artifact_type().is_none() && !is_cosign_signatures(d))
                .collect();
            let digests: BTreeSet<&str> = images.iter().map(|d| d.digest().as_ref()).collect();
            return match digests.len() {
                0 => Err(Error::EmptyLayout {
                    layout: self.path.clone(),
                }),
                1 => Ok(images[0]),
                _ => Err(Error::AmbiguousImage {
                    layout: self.path.clone(),
                    available: self.available_tags(),
                }),
            };
        };
        if let Some(found) = manifests.iter().find(|d| ref_name(d) == Some(tag)) {
            return Ok(found);
        }
        let suffix = format!(":{tag}");
        let by_suffix: Vec<&Descriptor> = manifests
            .iter()
            .filter(|d| ref_name(d).is_some_and(|r| r.ends_with(&suffix)))
            .collect();
        let digests: BTreeSet<&str> = by_suffix.iter().map(|d| d.digest().as_ref()).collect();
        match (by_suffix.first(), digests.len()) {
            (Some(found), 1) => Ok(found),
            _ => Err(Error::TagNotFound {
                layout: self.path.clone(),
                tag: tag.to_string(),
                available: self.available_tags(),
            }),
        }
    }

    fn available_tags(&self) -> String {
        let tags = self.tags();
        if tags.is_empty() {
            "none (no entry of index.json has an `org.opencontainers.image.ref.name`)".into()
        } else {
            tags.join(", ")
        }
    }

    /// Resolves `tag` (see [`find`](Self::find)) to one image for `platform`: an image index
    /// is followed to the manifest of that platform; a plain manifest must declare it in its
    /// config. The manifest and config are read and verified; layer media types must be ones
    /// we can unpack.
    pub fn resolve(&self, tag: Option<&str>, platform: &Platform) -> Result<ResolvedImage, Error> {
        let entry = self.find(tag)?;
        let mut index_descriptor = None;
        let mut current = entry.clone();
        for _ in 0..=MAX_INDEX_DEPTH {
            match ManifestKind::of(current.media_type()) {
                ManifestKind::Image => {
                    let mut image = self.load_image(&current, tag)?;
                    image.index = index_descriptor;
                    let found = Platform::of_config(&image.config);
                    if !platform.matches(&found) {
                        return Err(Error::PlatformMismatch {
                            layout: self.path.clone(),
                            digest: current.digest().to_string(),
                            wanted: platform.to_string(),
                            found: found.to_string(),
                        });
                    }
                    for layer in image.manifest.layers() {
                        if layer_compression(layer.media_type()).is_none() {
                            return Err(Error::UnsupportedMediaType {
                                layout: self.path.clone(),
                                digest: layer.digest().to_string(),
                                media_type: layer.media_type().to_string(),
                                expected: "a tar layer (plain, gzip or zstd; OCI or Docker)",
                            });
                        }
                    }
                    return Ok(image);
                }
                ManifestKind::Index => {
                    let index = self.read_index(&current)?;
                    let child = index.manifests().iter().find(|d| {
                        ManifestKind::of(d.media_type()) != ManifestKind::Other
                            && d.platform()
                                .as_ref()
                                .is_some_and(|p| platform.matches(&Platform::from_oci(p)))
                    });
                    let Some(child) = child else {
                        let available: Vec<String> = index
                            .manifests()
                            .iter()
                            .filter_map(|d| d.platform().as_ref())
                            .map(|p| Platform::from_oci(p).to_string())
                            .collect();
                        return Err(Error::PlatformNotFound {
                            layout: self.path.clone(),
                            digest: current.digest().to_string(),
                            platform: platform.to_string(),
                            available: if available.is_empty() {
                                "none".into()
                            } else {
                                available.join(", ")
                            },
                        });
                    };
                    index_descriptor.get_or_insert_with(|| current.clone());
                    current = child.clone();
                }
                ManifestKind::Other => {
                    return Err(Error::UnsupportedMediaType {
                        layout: self.path.clone(),
                        digest: current.digest().to_string(),
                        media_type: current.media_type().to_string(),
                        expected: "an image manifest or image index",
                    })
                }
            }
        }
        Err(Error::IndexTooDeep {
            layout: self.path.clone(),
            digest: entry.digest().to_string(),
        })
    }

    /// Reads and verifies the image index `descriptor` points at.
    pub fn read_index(&self, descriptor: &Descriptor) -> Result<ImageIndex, Error> {
        let bytes = self.read_blob(descriptor)?;
        let path = self.blob_path(descriptor.digest().as_ref())?;
        parse_json(&path, "image index", &bytes)
    }

    /// Reads and verifies the image manifest `descriptor` points at and its config, without
    /// checking platform or layer media types. `tag` is recorded in the result.
    pub fn load_image(
        &self,
        descriptor: &Descriptor,
        tag: Option<&str>,
    ) -> Result<ResolvedImage, Error> {
        let manifest_bytes = self.read_blob(descriptor)?;
        let path = self.blob_path(descriptor.digest().as_ref())?;
        let manifest: ImageManifest = parse_json(&path, "image manifest", &manifest_bytes)?;
        let config_descriptor = manifest.config();
        let config_ok = match config_descriptor.media_type() {
            MediaType::ImageConfig => true,
            MediaType::Other(m) => m == DOCKER_CONFIG,
            _ => false,
        };
        if !config_ok {
            return Err(Error::UnsupportedMediaType {
                layout: self.path.clone(),
                digest: config_descriptor.digest().to_string(),
                media_type: config_descriptor.media_type().to_string(),
                expected: "an image config",
            });
        }
        let config_bytes = self.read_blob(config_descriptor)?;
        let config_path = self.blob_path(config_descriptor.digest().as_ref())?;
        let config: ImageConfiguration = parse_json(&config_path, "image config", &config_bytes)?;
        let mut image = ResolvedImage::new(
            self.path.clone(),
            descriptor.clone(),
            manifest,
            manifest_bytes,
            config,
            config_bytes,
        );
        image.tag = tag.map(str::to_string);
        Ok(image)
    }
}

fn parse_json<T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
    bytes: &[u8],
) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::ParseJson {
        path: path.to_path_buf(),
        what,
        source,
    })
}

/// The `index.json` annotation cosign's layouts (`cosign save`) mark their entries with.
pub const COSIGN_KIND: &str = "kind";
/// [`COSIGN_KIND`] of the signed image, when it is an image manifest.
pub const COSIGN_IMAGE: &str = "dev.cosignproject.cosign/image";
/// [`COSIGN_KIND`] of the signed image, when it is an image index.
pub const COSIGN_IMAGE_INDEX: &str = "dev.cosignproject.cosign/imageIndex";
/// [`COSIGN_KIND`] of the image holding the signatures.
pub const COSIGN_SIGS: &str = "dev.cosignproject.cosign/sigs";
/// [`COSIGN_KIND`] of the image holding the attestations.
pub const COSIGN_ATTS: &str = "dev.cosignproject.cosign/atts";

/// The [`COSIGN_KIND`] annotation of an `index.json` entry.
pub fn cosign_kind(entry: &Descriptor) -> Option<&str> {
    entry
        .annotations()
        .as_ref()
        .and_then(|a| a.get(COSIGN_KIND))
        .map(String::as_str)
}

/// Whether an `index.json` entry holds cosign signatures or attestations (not an image).
pub fn is_cosign_signatures(entry: &Descriptor) -> bool {
    matches!(cosign_kind(entry), Some(COSIGN_SIGS | COSIGN_ATTS))
}
