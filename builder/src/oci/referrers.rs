//! Referrers in a layout: artifact manifests (OCI 1.1, an `artifactType` and a `subject`)
//! listed in `index.json` beside the images they are about, such as the SBOM a build attaches
//! to each image. [`Layout::find`] never picks them as images; [`Layout::referrers`] lists the
//! ones of an image and [`sbom`] reads an image's SBOM (CycloneDX or SPDX).

use std::path::Path;

use oci_spec::image::{Descriptor, ImageManifest};
use serde::Serialize;

use super::layout_reader::{Layout, ManifestKind};
use super::model::Platform;
use super::Error;
use crate::types::SbomFormat;

/// An artifact that refers to an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Referrer {
    pub artifact_type: String,
    /// The artifact manifest's digest and size.
    pub digest: String,
    pub size: u64,
}

impl Layout {
    /// The artifact manifests of `index.json` whose `subject` is the manifest `subject`
    /// (a digest), in index order, with their manifests (read and verified).
    pub fn referrers(&self, subject: &str) -> Result<Vec<(Referrer, ImageManifest)>, Error> {
        let mut out = Vec::new();
        for entry in self.index().manifests() {
            let Some(artifact_type) = entry.artifact_type() else {
                continue;
            };
            if ManifestKind::of(entry.media_type()) != ManifestKind::Image {
                continue;
            }
            let manifest = self.read_manifest(entry)?;
            if manifest
                .subject()
                .as_ref()
                .is_some_and(|s| s.digest().as_ref() == subject)
            {
                let referrer = Referrer {
                    artifact_type: artifact_type.to_string(),
                    digest: entry.digest().to_string(),
                    size: entry.size(),
                };
                out.push((referrer, manifest));
            }
        }
        Ok(out)
    }

    fn read_manifest(&self, entry: &Descriptor) -> Result<ImageManifest, Error> {
        let bytes = self.read_blob(entry)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::ParseArtifact {
            layout: self.path().to_path_buf(),
            digest: entry.digest().to_string(),
            message: source.to_string(),
        })
    }
}

/// The SBOM in `format` of the image `tag` names in the layout at `layout` (its only image
/// when `None`): for an image index, the manifest of `platform` (which may be left out when
/// the index has one image). Without a `format`, the image's first SBOM in the layout's order,
/// which is the CycloneDX one when it has both.
pub fn sbom(
    layout: &Path,
    tag: Option<&str>,
    platform: Option<&Platform>,
    format: Option<SbomFormat>,
) -> Result<Vec<u8>, Error> {
    let layout = Layout::open(layout)?;
    let digest = match platform {
        Some(platform) => layout.resolve(tag, platform)?.digest(),
        None => {
            let entry = layout.find(tag)?;
            match ManifestKind::of(entry.media_type()) {
                ManifestKind::Index => {
                    let index = layout.read_index(entry)?;
                    let images: Vec<&Descriptor> = index
                        .manifests()
                        .iter()
                        .filter(|d| ManifestKind::of(d.media_type()) == ManifestKind::Image)
                        .collect();
                    match images.as_slice() {
                        [one] => one.digest().to_string(),
                        _ => {
                            return Err(Error::SbomPlatform {
                                layout: layout.path().to_path_buf(),
                                available: images
                                    .iter()
                                    .filter_map(|d| d.platform().as_ref())
                                    .map(|p| Platform::from_oci(p).to_string())
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            })
                        }
                    }
                }
                _ => entry.digest().to_string(),
            }
        }
    };
    let found = layout.referrers(&digest)?;
    let sboms: Vec<(SbomFormat, &ImageManifest)> = found
        .iter()
        .filter_map(|(r, m)| Some((SbomFormat::of_media_type(&r.artifact_type)?, m)))
        .collect();
    let chosen = match format {
        None => sboms.first(),
        Some(format) => sboms.iter().find(|(f, _)| *f == format),
    };
    let Some((_, manifest)) = chosen else {
        return Err(match (format, sboms.is_empty()) {
            (Some(format), false) => Error::NoSbomOfFormat {
                layout: layout.path().to_path_buf(),
                digest,
                format,
                found: sboms
                    .iter()
                    .map(|(f, _)| match f {
                        SbomFormat::Spdx => format!("an {f} one"),
                        _ => format!("a {f} one"),
                    })
                    .collect::<Vec<_>>()
                    .join(" and "),
            },
            _ => Error::NoSbom {
                layout: layout.path().to_path_buf(),
                digest,
            },
        });
    };
    let Some(blob) = manifest.layers().first() else {
        return Err(Error::NoSbom {
            layout: layout.path().to_path_buf(),
            digest,
        });
    };
    layout.read_blob(blob)
}
