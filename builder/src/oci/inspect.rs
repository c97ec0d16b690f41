//! What `cargo image inspect` reports about the images of a layout, as data.
//!
//! [`inspect`] reads a layout through [`Layout`] (so every manifest and config it reports is
//! verified) and returns one [`Inspection`] per image: per index entry, or per platform when an
//! entry is an image index. Nothing is printed here; the CLI turns these into a table or JSON.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::image::Descriptor;
use serde::Serialize;

use super::layout_reader::{Layout, ManifestKind};
use super::model::{ref_name, Platform};
use super::referrers::Referrer;
use super::resolved::ResolvedImage;
use super::Error;

/// The annotation buildkit puts on attestation manifests inside an image index.
const DOCKER_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// One image of a layout, described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// The `org.opencontainers.image.ref.name`s of the index entry (in index order).
    pub tags: Vec<String>,
    /// The image index the tags point at, when this image is one platform of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    /// The size of that image index in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_size: Option<u64>,
    /// The image manifest.
    pub manifest: BlobInfo,
    /// Digest of the image config.
    pub config_digest: String,
    pub platform: Platform,
    pub created: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` entries, as in the config.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Sorted.
    pub exposed_ports: Vec<String>,
    /// Sorted.
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Bottom layer first.
    pub layers: Vec<LayerInfo>,
    /// The artifacts in the layout that refer to the image (its SBOM), in index order.
    pub referrers: Vec<Referrer>,
}

/// Digest, media type and size of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobInfo {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// One layer of an inspected image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerInfo {
    pub digest: String,
    pub media_type: String,
    /// Size of the (compressed) blob.
    pub size: u64,
    /// The uncompressed digest, from the config's `rootfs.diff_ids`.
    pub diff_id: Option<String>,
    /// `created_by` of the history entry that made the layer.
    pub created_by: Option<String>,
}

/// Describes the images of the layout at `layout`: the one `tag` names, or every image of the
/// layout when `tag` is `None`. Entries of `index.json` that point at the same manifest are
/// reported once, with all their tags.
pub fn inspect(layout: &Path, tag: Option<&str>) -> Result<Vec<Inspection>, Error> {
    let layout = Layout::open(layout)?;
    let wanted = match tag {
        Some(tag) => Some(layout.find(Some(tag))?.digest().to_string()),
        None => None,
    };
    // Group index entries by digest, in index order.
    let mut groups: Vec<(&Descriptor, Vec<String>)> = Vec::new();
    for entry in layout.index().manifests() {
        // Artifacts are listed with the images they refer to; cosign's signature images are
        // not images of the layout.
        if entry.artifact_type().is_some() || super::is_cosign_signatures(entry) {
            continue;
        }
        let digest = entry.digest().to_string();
        if wanted.as_ref().is_some_and(|w| *w != digest) {
            continue;
        }
        let group = match groups
            .iter()
            .position(|(d, _)| d.digest() == entry.digest())
        {
            Some(i) => &mut groups[i].1,
            None => {
                groups.push((entry, Vec::new()));
                &mut groups.last_mut().expect("just pushed").1
            }
        };
        if let Some(name) = ref_name(entry) {
            if !group.iter().any(|t| t == name) {
                group.push(name.to_string());
            }
        }
    }
    let mut out = Vec::new();
    for (entry, tags) in groups {
        collect(&layout, entry, &tags, None, 0, &mut out)?;
    }
    for image in &mut out {
        image.referrers = layout
            .referrers(&image.manifest.digest)?
            .into_iter()
            .map(|(r, _)| r)
            .collect();
    }
    Ok(out)
}

fn collect(
    layout: &Layout,
    descriptor: &Descriptor,
    tags: &[String],
    index: Option<(&str, u64)>,
    depth: usize,
    out: &mut Vec<Inspection>,
) -> Result<(), Error> {
    match ManifestKind::of(descriptor.media_type()) {
        ManifestKind::Image => {
            let image = layout.load_image(descriptor, tags.first().map(String::as_str))?;
            out.push(describe(&image, tags, index));
            Ok(())
        }
        ManifestKind::Index if depth < 4 => {
            let index = layout.read_index(descriptor)?;
            let digest = descriptor.digest().to_string();
            for child in index.manifests() {
                let attestation = child
                    .annotations()
                    .as_ref()
                    .is_some_and(|a| a.contains_key(DOCKER_REFERENCE_TYPE));
                if !attestation {
                    collect(
                        layout,
                        child,
                        tags,
                        Some((&digest, descriptor.size())),
                        depth + 1,
                        out,
                    )?;
                }
            }
            Ok(())
        }
        ManifestKind::Index => Err(Error::IndexTooDeep {
            layout: layout.path().to_path_buf(),
            digest: descriptor.digest().to_string(),
        }),
        ManifestKind::Other => Err(Error::UnsupportedMediaType {
            layout: layout.path().to_path_buf(),
            digest: descriptor.digest().to_string(),
            media_type: descriptor.media_type().to_string(),
            expected: "an image manifest or image index",
        }),
    }
}

fn describe(image: &ResolvedImage, tags: &[String], index: Option<(&str, u64)>) -> Inspection {
    let config = image.config.config().clone().unwrap_or_default();
    let sorted = |v: Option<Vec<String>>| {
        let mut v = v.unwrap_or_default();
        v.sort();
        v
    };
    let diff_ids = image.config.rootfs().diff_ids();
    // History entries that made a layer; ours are last, so align from the end when a base
    // image's history is incomplete.
    let history: Vec<Option<String>> = image
        .config
        .history()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|h| h.empty_layer() != Some(true))
        .map(|h| h.created_by().clone())
        .collect();
    let layers = image.layers();
    let from_end = |items_len: usize, i: usize| (items_len + i).checked_sub(layers.len());
    let layers = layers
        .iter()
        .enumerate()
        .map(|(i, layer)| LayerInfo {
            digest: layer.digest().to_string(),
            media_type: layer.media_type().to_string(),
            size: layer.size(),
            diff_id: from_end(diff_ids.len(), i).and_then(|j| diff_ids.get(j).cloned()),
            created_by: from_end(history.len(), i).and_then(|j| history.get(j).cloned().flatten()),
        })
        .collect();
    Inspection {
        tags: tags.to_vec(),
        index_digest: index.map(|(d, _)| d.to_string()),
        index_size: index.map(|(_, size)| size),
        manifest: BlobInfo {
            digest: image.digest(),
            media_type: image.descriptor.media_type().to_string(),
            size: image.descriptor.size(),
        },
        config_digest: image.manifest.config().digest().to_string(),
        platform: Platform::of_config(&image.config),
        created: image.config.created().clone(),
        entrypoint: config.entrypoint().clone(),
        cmd: config.cmd().clone(),
        env: config.env().clone().unwrap_or_default(),
        workdir: config.working_dir().clone(),
        user: config.user().clone(),
        labels: config
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        exposed_ports: sorted(config.exposed_ports().clone()),
        volumes: sorted(config.volumes().clone()),
        stop_signal: config.stop_signal().clone(),
        annotations: image
            .manifest
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        layers,
        referrers: Vec::new(),
    }
}
