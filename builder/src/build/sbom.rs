//! The SBOM emit step: for each platform's image, the documents of [`crate::sbom`] in each
//! format the spec's `sbom` asks for (CycloneDX, SPDX; their crates resolved by `cargo
//! metadata` for each cargo binary of the image, once for every format) and the artifact
//! manifests that attach them, written into the layout being emitted. The artifact
//! manifest is listed in `index.json` without a `ref.name`, so a tag still names only the
//! image, and tools that look for a tag never see it.
//!
//! A binary's resolved crates are kept in the store (a key record with no blobs), keyed by
//! what picks them besides the files (context, package, target triple, features) and checked
//! against the blake3 of those files (`Cargo.lock`, the local manifests): a warm build reads
//! a few small files instead of running `cargo metadata`, and writes the same bytes.
//!
//! It is an emit step, not a graph node: the SBOM is made of the image's manifest digest (its
//! subject) and of facts the plan already holds, and nothing in the image depends on it, so
//! `cargo image plan` and the build report the same nodes and keys whether or not `sbom` is
//! on. The image's bytes never change with it.

use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, MediaType};
use sha2::{Digest as _, Sha256};

use super::planner::PlannedPlatform;
use super::{store_err, BuildOptions, Error};
use crate::cargo::{CargoSource, Resolved};
use crate::oci::{self, LayoutWriter, ResolvedImage};
use crate::sbom;
use crate::spec::{self, Base, ImageSpec};
use crate::store::{self, BlobsRecord, NodeResult, Store};
use crate::types::SbomFormat;

const BASE_NAME: &str = "org.opencontainers.image.base.name";
const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// The Debian packages the image's own layers install (its `debian` entries), sorted.
fn debian_packages(p: &PlannedPlatform) -> Result<Vec<sbom::DebPackage>, Error> {
    let stage = p.cx.target_stage(&p.spec)?;
    let mut out: Vec<sbom::DebPackage> = stage
        .layers
        .iter()
        .flat_map(|l| &l.entries)
        .filter_map(|e| match &e.source {
            spec::Source::Debian(source) => p.debian.get(source),
            _ => None,
        })
        .flat_map(|packages| packages.iter())
        .map(|(package, _)| sbom::DebPackage {
            name: package.name.clone(),
            version: package.version.clone(),
            architecture: package.architecture.clone(),
            sha256: package.sha256.hex().to_string(),
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Writes the SBOMs of `image` (platform `p`), one per format the spec asks for, and their
/// artifact manifests into `writer`; returns the `index.json` entries of the artifact
/// manifests, in the spec's order of formats.
pub(super) fn attach(
    p: &PlannedPlatform,
    image: &ResolvedImage,
    opts: &BuildOptions,
    store: &Store,
    writer: &LayoutWriter,
) -> Result<Vec<Descriptor>, Error> {
    let formats = &p.spec.sbom;
    if formats.is_empty() {
        return Ok(Vec::new());
    }
    let mut sources: Vec<_> = p
        .cargo_outputs
        .keys()
        .map(|s| opts.cargo.overrides.apply(s))
        .collect();
    sources.sort();
    sources.dedup();
    let binaries = sources
        .into_iter()
        .map(|source| {
            let crates = crates(store, &source, &p.spec.context, &p.cx.store_root)?;
            Ok(sbom::Binary { source, crates })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let base = base_of(image);
    let with_sha1 = formats.contains(&SbomFormat::Spdx);
    let input = sbom::Input {
        name: p.spec.name.clone(),
        manifest_digest: image.digest(),
        platform: p.platform.to_string(),
        epoch: p.cx.epoch,
        base,
        binaries,
        files: files(&p.spec, p.cx.target_stage(&p.spec)?, with_sha1)?,
        debian: debian_packages(p)?,
    };
    formats
        .iter()
        .map(|&format| {
            let bytes = sbom::document(format, &input);
            attach_artifact(writer, format.media_type(), &bytes, image)
        })
        .collect()
}

/// What the store keeps of a binary's crates: the resolution and the blake3 of each of its
/// inputs when it was made.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptCrates {
    inputs: Vec<(PathBuf, String)>,
    resolved: Resolved,
}

/// The crates compiled into `source`'s binary: the resolution the store keeps for it when none
/// of that resolution's inputs (`Cargo.lock`, the local manifests: [`Resolved::inputs`]) has
/// changed since, else [`crate::cargo::crates`] (`cargo metadata`), which is then kept. The
/// key is what else decides the resolution: the context (which package is the binary's) and
/// the package, target triple and features asked for. A warm build thus reads a few small
/// files instead of running cargo.
fn crates(
    store: &Store,
    source: &CargoSource,
    context: &Path,
    store_root: &Path,
) -> Result<Resolved, Error> {
    let key = crates_key(source, context);
    if let Some(NodeResult::Blobs(record)) =
        store.get_key(&key).map_err(|e| store_err(store_root, e))?
    {
        if let Ok(kept) = serde_json::from_value::<KeptCrates>(record.data) {
            let unchanged = kept
                .inputs
                .iter()
                .all(|(path, hash)| content_hash(path).as_deref() == Some(hash.as_str()));
            if unchanged {
                return Ok(kept.resolved);
            }
        }
    }
    let resolved = crate::cargo::crates(source, context)?;
    // A resolution with an input that cannot be read now is not kept.
    let inputs: Option<Vec<(PathBuf, String)>> = resolved
        .inputs
        .iter()
        .map(|path| Some((path.clone(), content_hash(path)?)))
        .collect();
    if let Some(inputs) = inputs {
        let kept = KeptCrates {
            inputs,
            resolved: resolved.clone(),
        };
        let data = serde_json::to_value(&kept).expect("a resolution serialises");
        store
            .put_key(
                &key,
                &NodeResult::Blobs(BlobsRecord {
                    blobs: vec![],
                    data,
                }),
            )
            .map_err(|e| store_err(store_root, e))?;
    }
    Ok(resolved)
}

/// The store key of the crates of `source`'s binary built from `context`.
fn crates_key(source: &CargoSource, context: &Path) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"cargo-image sbom crates 1\0");
    h.update(context.as_os_str().as_encoded_bytes());
    let fields = format!(
        "\0{:?}\0{}\0{:?}\0{}\0{}",
        source.package,
        crate::cargo::rust_triple(&source.target),
        source.features,
        source.all_features,
        source.no_default_features
    );
    h.update(fields.as_bytes());
    h.finalize().to_hex().to_string()
}

/// The blake3 (hex) of the file at `path`; `None` when it cannot be read.
fn content_hash(path: &Path) -> Option<String> {
    store::hash_file(path).ok().map(hex::encode)
}

/// Writes `bytes` (of media type `artifact_type`) and the artifact manifest that attaches it
/// to `image` into `writer` (an SBOM, a provenance statement); returns the manifest's
/// `index.json` entry, with its `artifactType` and no `ref.name`.
pub(super) fn attach_artifact(
    writer: &LayoutWriter,
    artifact_type: &str,
    bytes: &[u8],
    image: &ResolvedImage,
) -> Result<Descriptor, Error> {
    let out = |e| Error::Output(Box::new(e));
    let (digest, size) = writer.write_blob(bytes).map_err(out)?;
    writer.write_blob(sbom::EMPTY_BLOB).map_err(out)?;
    let media_type = MediaType::Other(artifact_type.into());
    let layer = oci::descriptor(media_type.clone(), &digest, size);
    let manifest = sbom::artifact_manifest(artifact_type, layer, image.descriptor.clone());
    let mut entry = writer
        .write_json(MediaType::ImageManifest, &manifest)
        .map_err(out)?;
    entry.set_artifact_type(Some(media_type));
    Ok(entry)
}

/// The image's outside base from its manifest's annotations: its name and digest.
fn base_of(image: &ResolvedImage) -> Option<(String, String)> {
    let annotations = image.manifest.annotations().as_ref()?;
    let digest = annotations.get(BASE_DIGEST)?;
    let name = annotations.get(BASE_NAME).cloned().unwrap_or_default();
    Some((name, digest.clone()))
}

/// The tarballs and host paths the image's own layers (the target stage and the stages it is
/// built on) add, with the sha256 of each file (and its SHA-1 when `with_sha1`), sorted.
fn files(
    spec: &ImageSpec,
    target: &spec::Stage,
    with_sha1: bool,
) -> Result<Vec<sbom::File>, Error> {
    let mut files = Vec::new();
    let mut stage = Some(target);
    while let Some(s) = stage {
        for entry in s.layers.iter().flat_map(|l| &l.entries) {
            let path = match &entry.source {
                spec::Source::Path { path, .. } | spec::Source::Tar { path, .. } => path,
                _ => continue,
            };
            let full = spec.context.join(path);
            let (sha256, sha1) = if full.is_dir() {
                (None, None)
            } else {
                let (sha256, sha1) =
                    file_digests(&full, with_sha1).map_err(|source| Error::SbomFile {
                        path: full.clone(),
                        source,
                    })?;
                (Some(sha256), sha1)
            };
            files.push(sbom::File {
                path: slash_path(path),
                sha256,
                sha1,
            });
        }
        stage = match &s.base {
            Base::Stage(name) => spec.find_stage(name),
            _ => None,
        };
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// The sha256 (hex) of the file at `path`, and its SHA-1 when `with_sha1`, in one read.
fn file_digests(path: &Path, with_sha1: bool) -> std::io::Result<(String, Option<String>)> {
    if !with_sha1 {
        return Ok((sha256_file(path)?, None));
    }
    let mut file = std::fs::File::open(path)?;
    let mut sha256 = Sha256::new();
    let mut sha1 = sha1::Sha1::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        sha1.update(&buf[..n]);
    }
    Ok((
        hex::encode(sha256.finalize()),
        Some(hex::encode(sha1.finalize())),
    ))
}

/// The sha256 (hex) of the file at `path`.
pub(super) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// A context-relative path, `/`-separated.
pub(super) fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}
