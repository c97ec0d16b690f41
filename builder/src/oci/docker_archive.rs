//! Docker archives: the `docker save` tarball that `docker load` and `podman load` read
//! (`docker-archive:FILE`), written from an OCI layout as a sink and converted back into an OCI
//! layout as a base image source.
//!
//! # Brief overview
//!
//! - **Sink**: [`write_docker_archive`] writes the classic `docker save` layout, the one every
//!   loader has read since Docker 1.10 (Docker, podman, containers/image, crane):
//!
//!   ```text
//!   <config hex>.json        the image config, byte for byte as in the layout
//!   <layer id>/              one directory per layer, bottom first by chain:
//!   <layer id>/VERSION         "1.0"
//!   <layer id>/json            legacy v1 metadata ({"id", "parent"}, plus the config's
//!                              runtime fields on the top layer)
//!   <layer id>/layer.tar       the layer, uncompressed
//!   manifest.json            [{"Config", "RepoTags", "Layers"}]
//!   repositories             {"<repo>": {"<tag>": "<top layer id>"}} (only with tags)
//!   ```
//!
//!   The layer id is the hex of the layer's chain id (`sha256` of the parent chain id and the
//!   diff_id, as `containers/image` names them); loaders assign their own ids. Layers are
//!   written uncompressed, whatever their compression in the layout: that is what `docker
//!   save` and `skopeo copy ... docker-archive:` write, so every loader reads it, including
//!   those that cannot decompress zstd; and an uncompressed layer's sha256 is its diff_id, which
//!   is checked against the config while the layer is copied (the config, and so the image id,
//!   stay exactly as built). The newer Docker 25 form (an OCI layout inside the tarball) is not
//!   written: older `docker load` and podman releases still in use read only the classic one,
//!   and newer ones read both. The bytes are deterministic like the OCI archive's (sorted
//!   entries, one mtime, owner `0:0`, canonical JSON), written atomically beside `dest`.
//! - **Source**: [`open_docker_archive`] extracts a Docker archive (classic, Docker 25+ or
//!   skopeo-made; symlinked layers included) with the same safety rules as
//!   [`super::open_oci_archive`], then writes an OCI layout next to the extracted files: the
//!   config copied as it is (its sha256 is checked against its name when the name is a digest),
//!   each layer used as it is, uncompressed or gzip or zstd by its magic bytes, with the
//!   matching OCI media type, and its diff_id checked against the config. Each image of
//!   `manifest.json` gets one `index.json` entry per `RepoTags` item, the item as its
//!   `org.opencontainers.image.ref.name` (so `hello:latest` and just `latest` both resolve);
//!   an archive's only image without `RepoTags` is tagged `latest`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::BufReader;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageConfiguration, MediaType};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::archive::{
    archive_writer, dir_header, extract, open_decompressed, prepare_scratch, sniff,
    write_atomically, FILE_MODE,
};
use super::layout::OCI_LAYOUT_FILE;
use super::layout_reader::{Layout, ManifestKind};
use super::model::{
    descriptor, image_index, image_manifest, index_entries, layer_compression, Digest, Platform,
};
use super::resolved::ResolvedImage;
use super::{to_canonical_json, Error};
use crate::tarball::{self, CopyError, Format};
use crate::types::Compression;

/// One image of `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The fields of the image config copied into the top layer's legacy `json`, as `docker save`
/// and `containers/image` do.
const LEGACY_CONFIG_FIELDS: [&str; 7] = [
    "architecture",
    "config",
    "container",
    "container_config",
    "created",
    "docker_version",
    "os",
];

/// Writes the image tagged `tag_in_layout` in the OCI layout at `layout_dir` (the only image
/// when `None`) as a Docker archive at `dest`, named by `repo_tags` (`name:tag` each, e.g.
/// `hello:latest` or `ghcr.io/acme/hello:1.0`; may be empty), every entry dated `mtime`. See
/// the module docs for the format.
///
/// The tag may name an image index only if it holds a single image (a Docker archive has no
/// platform choice). Layer blobs are decompressed as they are copied and must match the
/// config's diff_ids; a failure leaves a previous `dest` as it was.
pub fn write_docker_archive(
    layout_dir: &Path,
    tag_in_layout: Option<&str>,
    repo_tags: &[String],
    dest: &Path,
    mtime: u64,
) -> Result<(), Error> {
    write_docker_archive_for(layout_dir, tag_in_layout, None, repo_tags, dest, mtime).map(|_| ())
}

/// [`write_docker_archive`] of the image for `platform` when the tag names an image index with
/// several (`None`: the index must hold a single image). An index without an image for
/// `platform` is an error that lists the platforms it has. Returns the config digest of the
/// image written: the image id `docker load` and `podman load` give it.
pub fn write_docker_archive_for(
    layout_dir: &Path,
    tag_in_layout: Option<&str>,
    platform: Option<&Platform>,
    repo_tags: &[String],
    dest: &Path,
    mtime: u64,
) -> Result<Digest, Error> {
    let repos = repositories(repo_tags)?;
    let layout = Layout::open(layout_dir)?;
    let image = single_image(&layout, tag_in_layout, platform)?;
    let diff_ids = image.config.rootfs().diff_ids();
    if diff_ids.len() != image.layers().len() {
        return Err(Error::LayerCount {
            layout: layout_dir.to_path_buf(),
            digest: image.digest(),
            layers: image.layers().len(),
            diff_ids: diff_ids.len(),
        });
    }

    // Layers: chain ids name their directories.
    struct Layer<'a> {
        id: String,
        descriptor: &'a Descriptor,
        diff_id: Digest,
        compression: Compression,
    }
    let mut layers = Vec::new();
    let mut chain: Option<Digest> = None;
    for (descriptor, diff_id) in image.layers().iter().zip(diff_ids) {
        let compression = layer_compression(descriptor.media_type()).ok_or_else(|| {
            Error::UnsupportedMediaType {
                layout: layout_dir.to_path_buf(),
                digest: descriptor.digest().to_string(),
                media_type: descriptor.media_type().to_string(),
                expected: "a tar layer (plain, gzip or zstd; OCI or Docker)",
            }
        })?;
        let diff_id = Digest::parse(diff_id)?;
        let next = match &chain {
            None => diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        layers.push(Layer {
            id: next.hex().to_string(),
            descriptor,
            diff_id,
            compression,
        });
        chain = Some(next);
    }

    // Documents.
    let config_digest = Digest::parse(image.manifest.config().digest().as_ref())?;
    let config_name = format!("{}.json", config_digest.hex());
    let manifest = vec![ManifestEntry {
        config: config_name.clone(),
        repo_tags: (!repo_tags.is_empty()).then(|| repo_tags.to_vec()),
        layers: layers
            .iter()
            .map(|l| format!("{}/layer.tar", l.id))
            .collect(),
    }];
    let manifest_json = to_canonical_json(&manifest)?;
    let config_path = image.blob_path(&config_digest.to_string())?;
    let config_value: serde_json::Value =
        serde_json::from_slice(&image.config_bytes).map_err(|source| Error::ParseJson {
            path: config_path,
            what: "image config",
            source,
        })?;
    let mut legacy_json = Vec::new();
    let mut parent: Option<&str> = None;
    for (i, layer) in layers.iter().enumerate() {
        let mut doc = serde_json::Map::new();
        doc.insert("id".into(), layer.id.clone().into());
        if let Some(parent) = parent {
            doc.insert("parent".into(), parent.into());
        }
        if i + 1 == layers.len() {
            for field in LEGACY_CONFIG_FIELDS {
                if let Some(value) = config_value.get(field) {
                    doc.insert(field.into(), value.clone());
                }
            }
        }
        legacy_json.push(to_canonical_json(&doc)?);
        parent = Some(&layer.id);
    }
    let repositories_json = match (&repos, layers.last()) {
        (repos, Some(top)) if !repos.is_empty() => {
            let doc: BTreeMap<&str, BTreeMap<&str, &str>> = repos
                .iter()
                .map(|(repo, tags)| {
                    let tags = tags.iter().map(|t| (t.as_str(), top.id.as_str())).collect();
                    (repo.as_str(), tags)
                })
                .collect();
            Some(to_canonical_json(&doc)?)
        }
        _ => None,
    };

    // Entries, sorted by path components (a directory before its content).
    enum Content<'a> {
        Dir,
        Bytes(&'a [u8]),
        Layer(usize),
    }
    let mut entries: Vec<(Vec<String>, Content)> = vec![
        (vec![config_name], Content::Bytes(&image.config_bytes)),
        (vec!["manifest.json".into()], Content::Bytes(&manifest_json)),
    ];
    if let Some(json) = &repositories_json {
        entries.push((vec!["repositories".into()], Content::Bytes(json)));
    }
    for (i, layer) in layers.iter().enumerate() {
        let file = |name: &str| vec![layer.id.clone(), name.to_string()];
        entries.push((vec![layer.id.clone()], Content::Dir));
        entries.push((file("VERSION"), Content::Bytes(b"1.0")));
        entries.push((file("json"), Content::Bytes(&legacy_json[i])));
        entries.push((file("layer.tar"), Content::Layer(i)));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    write_atomically(dest, |out| {
        let write_err = |source| Error::WriteArchive {
            path: dest.to_path_buf(),
            source,
        };
        let mut tar = archive_writer(out, mtime);
        for (name, content) in &entries {
            let name = name.join("/");
            match content {
                Content::Dir => tar.header(&dir_header(&name)).map_err(write_err)?,
                Content::Bytes(bytes) => tar.bytes(&name, FILE_MODE, bytes).map_err(write_err)?,
                Content::Layer(i) => {
                    let layer = &layers[*i];
                    let digest = layer.descriptor.digest().to_string();
                    let path = image.blob_path(&digest)?;
                    let read_err = |source| Error::ReadBlob {
                        path: path.clone(),
                        digest: digest.clone(),
                        source,
                    };
                    let file = BufReader::new(File::open(&path).map_err(read_err)?);
                    let format = match layer.compression {
                        Compression::None => Format::Plain,
                        Compression::Gzip => Format::Gzip,
                        Compression::Zstd => Format::Zstd,
                    };
                    let mut content = tarball::decoder(format, file).map_err(read_err)?;
                    let mut hasher = Sha256::new();
                    tar.file_streamed(&name, FILE_MODE, &mut content, &mut |b| hasher.update(b))
                        .map_err(|e| match e {
                            CopyError::Read(source) => Error::DecompressLayer {
                                path: path.clone(),
                                digest: digest.clone(),
                                source,
                            },
                            CopyError::Write(source) => write_err(source),
                        })?;
                    let actual = Digest::from_hasher(hasher);
                    if actual != layer.diff_id {
                        return Err(Error::DiffIdMismatch {
                            path: path.clone(),
                            digest,
                            expected: layer.diff_id.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                }
            }
        }
        tar.finish().map_err(write_err)?;
        Ok(())
    })?;
    Ok(config_digest)
}

/// `repo_tags` grouped by repository, each checked to be `name:tag`.
fn repositories(repo_tags: &[String]) -> Result<BTreeMap<String, BTreeSet<String>>, Error> {
    let mut repos: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for repo_tag in repo_tags {
        let invalid = |reason: &'static str| Error::InvalidRepoTag {
            repo_tag: repo_tag.clone(),
            reason,
        };
        if repo_tag.contains('@') {
            return Err(invalid("a digest cannot name an image in a Docker archive"));
        }
        if repo_tag
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid("it holds whitespace"));
        }
        let last_slash = repo_tag.rfind('/').map_or(0, |i| i + 1);
        let Some(colon) = repo_tag[last_slash..].rfind(':').map(|i| last_slash + i) else {
            return Err(invalid(
                "it has no tag; write it as `name:tag`, e.g. `hello:latest`",
            ));
        };
        let (repo, tag) = (&repo_tag[..colon], &repo_tag[colon + 1..]);
        if repo.is_empty() || tag.is_empty() {
            return Err(invalid("expected `name:tag`, e.g. `hello:latest`"));
        }
        repos
            .entry(repo.to_string())
            .or_default()
            .insert(tag.to_string());
    }
    Ok(repos)
}

/// The image `tag` names in `layout`: an image manifest, or the only image of an image index.
fn single_image(
    layout: &Layout,
    tag: Option<&str>,
    platform: Option<&Platform>,
) -> Result<ResolvedImage, Error> {
    let entry = layout.find(tag)?;
    match ManifestKind::of(entry.media_type()) {
        ManifestKind::Image => layout.load_image(entry, tag),
        ManifestKind::Index => {
            let index = layout.read_index(entry)?;
            let images: Vec<&Descriptor> = index
                .manifests()
                .iter()
                .filter(|d| ManifestKind::of(d.media_type()) == ManifestKind::Image)
                .collect();
            let chosen: Vec<&Descriptor> = match platform {
                Some(platform) => images
                    .iter()
                    .copied()
                    .filter(|d| {
                        d.platform()
                            .as_ref()
                            .is_some_and(|p| Platform::from_oci(p).runs_on(platform))
                    })
                    .take(1)
                    .collect(),
                None => images.clone(),
            };
            match chosen.as_slice() {
                [only] => {
                    let mut image = layout.load_image(only, tag)?;
                    image.index = Some(entry.clone());
                    Ok(image)
                }
                _ => Err(Error::SeveralPlatforms {
                    layout: layout.path().to_path_buf(),
                    digest: entry.digest().to_string(),
                    wanted: platform.map(Platform::to_string),
                    available: images
                        .iter()
                        .map(|d| {
                            d.platform().as_ref().map_or_else(
                                || "unknown platform".to_string(),
                                |p| Platform::from_oci(p).to_string(),
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        }
        ManifestKind::Other => Err(Error::UnsupportedMediaType {
            layout: layout.path().to_path_buf(),
            digest: entry.digest().to_string(),
            media_type: entry.media_type().to_string(),
            expected: "an image manifest or image index",
        }),
    }
}

/// The directory of `scratch` the archive is extracted into (removed when the layout is
/// written).
const EXTRACT_DIR: &str = ".docker-archive";

/// Converts the Docker archive at `path` into an OCI layout in `scratch` (created if missing;
/// it must be empty if it exists) and opens it. Layers are reused as they are (no
/// recompression); see the module docs for the checks and the tags. The caller owns
/// `scratch` and removes it when done.
pub fn open_docker_archive(path: &Path, scratch: &Path) -> Result<Layout, Error> {
    prepare_scratch(scratch)?;
    let extract_root = scratch.join(EXTRACT_DIR);
    let extracted = extract(path, &extract_root)?;
    let archive_err = |entry: &str, reason: String| Error::ArchiveEntry {
        archive: path.to_path_buf(),
        entry: entry.to_string(),
        reason,
    };
    let Some((_, manifest_path)) = extracted.file("manifest.json")? else {
        return Err(Error::NotAnArchive {
            archive: path.to_path_buf(),
            kind: "a Docker archive",
            missing: "manifest.json",
        });
    };
    // JSON members are read at most `bounded::MAX_JSON_BYTES`, like every image document.
    let read_entry = |entry: &str, file: &Path| {
        super::bounded::read_json_file(file, "Docker archive document").map_err(|source| {
            Error::ExtractEntry {
                archive: path.to_path_buf(),
                entry: entry.to_string(),
                path: file.to_path_buf(),
                source,
            }
        })
    };
    let parse_err = |entry: &str, what: &'static str| {
        let entry = entry.to_string();
        move |source| Error::ArchiveJson {
            archive: path.to_path_buf(),
            entry,
            what,
            source,
        }
    };
    let manifest_bytes = read_entry("manifest.json", &manifest_path)?;
    let images: Vec<ManifestEntry> = serde_json::from_slice(&manifest_bytes)
        .map_err(parse_err("manifest.json", "Docker archive manifest"))?;
    if images.is_empty() {
        return Err(archive_err(
            "manifest.json",
            "it lists no image".to_string(),
        ));
    }

    let blobs = scratch.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|source| Error::CreateDir {
        path: blobs.clone(),
        source,
    })?;
    // Adds an extracted file as a blob (hard link, else copy).
    let add_blob = |entry: &str, file: &Path, digest: &Digest| -> Result<(), Error> {
        let dest = blobs.join(digest.hex());
        if dest.exists() {
            return Ok(());
        }
        if fs::hard_link(file, &dest).is_err() {
            fs::copy(file, &dest).map_err(|source| Error::ExtractEntry {
                archive: path.to_path_buf(),
                entry: entry.to_string(),
                path: dest.clone(),
                source,
            })?;
        }
        Ok(())
    };
    let write_json_blob = |bytes: &[u8]| -> Result<Digest, Error> {
        let digest = Digest::of(bytes);
        let dest = blobs.join(digest.hex());
        fs::write(&dest, bytes).map_err(|source| Error::WriteBlob { path: dest, source })?;
        Ok(digest)
    };

    let sole = images.len() == 1;
    let mut index = Vec::new();
    for image in &images {
        // The config: as it is, checked against its name when the name is a digest.
        let Some((config_name, config_path)) = extracted.file(&image.config)? else {
            return Err(archive_err(
                &image.config,
                "manifest.json names it as an image config, but the archive has no such file"
                    .to_string(),
            ));
        };
        let config_bytes = read_entry(&config_name, &config_path)?;
        let config_digest = Digest::of(&config_bytes);
        if let Some(named) = digest_in_name(&config_name) {
            if named != config_digest {
                return Err(Error::ArchiveDigest {
                    archive: path.to_path_buf(),
                    entry: config_name,
                    what: "image config",
                    expected: named.to_string(),
                    actual: config_digest.to_string(),
                });
            }
        }
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(parse_err(&config_name, "image config"))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != image.layers.len() {
            return Err(archive_err(
                &config_name,
                format!(
                    "the config lists {} diff_ids, but manifest.json lists {} layers for it",
                    diff_ids.len(),
                    image.layers.len()
                ),
            ));
        }
        add_blob(&config_name, &config_path, &config_digest)?;

        // Layers: as they are, typed by their magic bytes, diff_ids checked.
        let mut layers = Vec::new();
        for (layer, diff_id) in image.layers.iter().zip(diff_ids) {
            let Some((layer_name, layer_path)) = extracted.file(layer)? else {
                return Err(archive_err(
                    layer,
                    "manifest.json names it as a layer, but the archive has no such file"
                        .to_string(),
                ));
            };
            let read_err = |source| Error::ExtractEntry {
                archive: path.to_path_buf(),
                entry: layer_name.clone(),
                path: layer_path.clone(),
                source,
            };
            let media_type = match sniff(&layer_path).map_err(read_err)? {
                Format::Gzip => MediaType::ImageLayerGzip,
                Format::Zstd => MediaType::ImageLayerZstd,
                Format::Plain => MediaType::ImageLayer,
            };
            let (blob_digest, size) = Digest::of_file(&layer_path).map_err(read_err)?;
            let actual_diff_id = if media_type == MediaType::ImageLayer {
                blob_digest.clone()
            } else {
                let reader = open_decompressed(&layer_path).map_err(read_err)?;
                Digest::of_reader(reader).map_err(read_err)?.0
            };
            if actual_diff_id.to_string() != *diff_id {
                return Err(Error::ArchiveDigest {
                    archive: path.to_path_buf(),
                    entry: layer_name,
                    what: "layer (uncompressed, against the config's diff_id)",
                    expected: diff_id.clone(),
                    actual: actual_diff_id.to_string(),
                });
            }
            add_blob(&layer_name, &layer_path, &blob_digest)?;
            layers.push(descriptor(media_type, &blob_digest, size));
        }

        let config_descriptor = descriptor(
            MediaType::ImageConfig,
            &config_digest,
            config_bytes.len() as u64,
        );
        let manifest = image_manifest(config_descriptor, None, &layers, &BTreeMap::new());
        let manifest_bytes = to_canonical_json(&manifest)?;
        let manifest_digest = write_json_blob(&manifest_bytes)?;
        let manifest_descriptor = descriptor(
            MediaType::ImageManifest,
            &manifest_digest,
            manifest_bytes.len() as u64,
        );
        let mut tags = image.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() && sole {
            tags.push("latest".into());
        }
        index.extend(index_entries(
            &manifest_descriptor,
            Some(&Platform::of_config(&config)),
            &tags,
        ));
    }

    let index_bytes = to_canonical_json(&image_index(index))?;
    let write = |name: &str, bytes: &[u8]| {
        let file = scratch.join(name);
        fs::write(&file, bytes).map_err(|source| Error::WriteFile { path: file, source })
    };
    write("index.json", &index_bytes)?;
    write("oci-layout", OCI_LAYOUT_FILE)?;
    // The blobs are hard links (or copies) of the extracted files: those can go. Failing to
    // remove them is not failing to open the archive (the caller removes `scratch` anyway).
    let _ = fs::remove_dir_all(&extract_root);
    Layout::open(scratch)
}

/// The digest a file name carries: `<hex>.json`, `<hex>` or `blobs/sha256/<hex>`.
fn digest_in_name(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let hex = base.strip_suffix(".json").unwrap_or(base);
    Digest::from_hex(hex).ok()
}
