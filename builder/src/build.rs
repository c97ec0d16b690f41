//! The build operation: spec in, OCI image layout out.
//!
//! # Brief overview
//! [`build`] runs the pipeline for one spec:
//! 1. read and validate the spec ([`crate::spec::load`]);
//! 2. run the cargo builds its `cargo` entries ask for ([`crate::cargo::build`]), once per
//!    distinct source;
//! 3. resolve the base (scratch, or an image in a local OCI layout, every blob verified);
//! 4. turn each layer into a tree and stream it through tar, the compressor and two hashers
//!    straight into the new layout's blob directory ([`crate::layer`]);
//! 5. write the config and manifest as canonical JSON, tag the manifest once per tag in
//!    `index.json`, and swap the new layout into place ([`crate::oci::LayoutWriter`]), so a failed
//!    build leaves the previous output as it was.
//!
//! Progress leaves the library as [`Event`]s given to a callback: the CLI prints them, tools get
//! them as JSON. The library never prints.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::cargo::{self, CargoOptions};
use crate::layer::{self, LayerBlob, LayerTree, SourceContext, WriteOptions};
use crate::oci::{self, LayoutWriter};
use crate::spec::{self, Base, CargoSource, ImageSpec};
use oci_spec::image::MediaType;

/// Errors of the build operation; each wraps the module error of the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Cargo(#[from] cargo::Error),
    #[error("layer `{layer}`: {source}")]
    Layer {
        layer: String,
        #[source]
        source: Box<layer::Error>,
    },
    #[error("base image {base}: {source}")]
    Base {
        base: String,
        #[source]
        source: Box<oci::Error>,
    },
    #[error(transparent)]
    Output(Box<oci::Error>),
    #[error("invalid tag `{tag}` given with --tag: {reason}")]
    InvalidTag { tag: String, reason: String },
}

impl From<oci::Error> for Error {
    fn from(e: oci::Error) -> Self {
        Error::Output(Box::new(e))
    }
}

/// What the caller decides beyond the spec.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Where the OCI layout goes; `None` means `<target-dir>/image/<name>` of the cargo workspace
    /// the spec belongs to (or `target/image/<name>` beside the spec outside any workspace).
    pub output: Option<PathBuf>,
    /// Tags to use instead of the spec's `tags` (when non-empty).
    pub tags: Vec<String>,
    /// `SOURCE_DATE_EPOCH`: overrides the spec's `epoch` when set.
    pub source_date_epoch: Option<u64>,
    /// Threads for compression (0 = the number of CPUs); never changes the bytes.
    pub jobs: usize,
    /// How cargo runs.
    pub cargo: CargoOptions,
}

/// Progress of a build, in the order it happens.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The spec was read.
    SpecLoaded { spec: PathBuf, name: String },
    /// A cargo build starts.
    CargoBuild { what: String },
    /// A cargo build finished with this executable.
    CargoFinished { what: String, executable: PathBuf },
    /// The base image was resolved.
    BaseResolved {
        base: String,
        digest: String,
        layers: usize,
    },
    /// A layer starts building.
    LayerStarted { name: String },
    /// A layer is written.
    LayerFinished {
        name: String,
        digest: String,
        diff_id: String,
        size: u64,
        media_type: String,
    },
    /// The image is written and in place.
    ImageFinished {
        name: String,
        tags: Vec<String>,
        digest: String,
        path: PathBuf,
    },
}

/// The result of a build.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildOutput {
    /// The OCI layout directory.
    pub path: PathBuf,
    /// The image name.
    pub name: String,
    /// The tags written in `index.json`.
    pub tags: Vec<String>,
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: String,
    /// Our layers (not the base's), bottom first.
    pub layers: Vec<LayerBlob>,
}

/// Reads the spec at `spec_path` and builds it; see the module docs for the steps.
pub fn build(
    spec_path: &Path,
    opts: &BuildOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<BuildOutput, Error> {
    let spec = spec::load(spec_path)?;
    on_event(Event::SpecLoaded {
        spec: spec.spec_path.clone(),
        name: spec.name.clone(),
    });
    build_spec(&spec, opts, on_event)
}

/// Builds an already loaded spec.
pub fn build_spec(
    spec: &ImageSpec,
    opts: &BuildOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<BuildOutput, Error> {
    let tags = if opts.tags.is_empty() {
        spec.tags.clone()
    } else {
        for tag in &opts.tags {
            spec::validate_tag(tag).map_err(|reason| Error::InvalidTag {
                tag: tag.clone(),
                reason,
            })?;
        }
        opts.tags.clone()
    };
    let epoch = opts.source_date_epoch.unwrap_or(spec.epoch);
    let threads = if opts.jobs == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.jobs
    };
    let workspace = cargo::workspace(&spec.context).ok();

    // The output is checked (and its temporary sibling made) before any long work.
    let output = opts
        .output
        .clone()
        .unwrap_or_else(|| output_dir(spec, workspace.as_ref()));
    let writer = LayoutWriter::create(&output)?;

    // 2. Cargo builds, once per distinct source.
    let mut cargo_outputs: HashMap<CargoSource, PathBuf> = HashMap::new();
    for layer in &spec.stage.layers {
        for entry in &layer.entries {
            if let spec::Source::Cargo(src) = &entry.source {
                if cargo_outputs.contains_key(src) {
                    continue;
                }
                let what = cargo::describe(src);
                on_event(Event::CargoBuild { what: what.clone() });
                let exe = cargo::build(src, &spec.context, &opts.cargo)?;
                on_event(Event::CargoFinished {
                    what,
                    executable: exe.clone(),
                });
                cargo_outputs.insert(src.clone(), exe);
            }
        }
    }

    // 3. The base.
    let platform = oci::Platform::linux_amd64();
    let base = match &spec.stage.base {
        Base::Scratch => None,
        Base::OciLayout { path, tag } => {
            let shown = match tag {
                Some(t) => format!("oci:{}:{t}", path.display()),
                None => format!("oci:{}", path.display()),
            };
            let wrap = |source| Error::Base {
                base: shown.clone(),
                source: Box::new(source),
            };
            let image = oci::Layout::open(path)
                .and_then(|l| l.resolve(tag.as_deref(), &platform))
                .map_err(wrap)?;
            for desc in image.layers() {
                let digest = desc.digest().to_string();
                image.verify_blob(&digest, desc.size()).map_err(wrap)?;
                writer
                    .import_blob(&image.blob_path(&digest).map_err(wrap)?, &digest)
                    .map_err(wrap)?;
            }
            on_event(Event::BaseResolved {
                base: shown.clone(),
                digest: image.digest(),
                layers: image.layers().len(),
            });
            Some(image)
        }
    };

    // 4. Our layers.
    let ctx = SourceContext {
        context: &spec.context,
        cargo_outputs: &cargo_outputs,
    };
    let write_opts = WriteOptions {
        compression: spec.compression,
        mtime: epoch,
        threads,
    };
    let mut blobs = Vec::new();
    for layer_spec in &spec.stage.layers {
        on_event(Event::LayerStarted {
            name: layer_spec.name.clone(),
        });
        let wrap = |source| Error::Layer {
            layer: layer_spec.name.clone(),
            source: Box::new(source),
        };
        let tree = LayerTree::from_spec(layer_spec, &ctx).map_err(wrap)?;
        let blob =
            layer::write_layer_to_dir(&tree, &write_opts, &writer.blobs_dir()).map_err(wrap)?;
        on_event(Event::LayerFinished {
            name: layer_spec.name.clone(),
            digest: blob.digest.clone(),
            diff_id: blob.diff_id.clone(),
            size: blob.size,
            media_type: blob.media_type.clone(),
        });
        blobs.push(blob);
    }

    // 5. Config, manifest, index.
    let mut annotations: BTreeMap<String, String> = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.created".into(),
        oci::rfc3339(epoch),
    );
    if let Some(repo) = workspace.as_ref().and_then(|w| w.repository.clone()) {
        annotations.insert("org.opencontainers.image.source".into(), repo);
    }
    if let Some(rev) = git_revision(&spec.context) {
        annotations.insert("org.opencontainers.image.revision".into(), rev);
    }
    annotations.extend(spec.annotations.clone());

    let names: Vec<String> = spec.stage.layers.iter().map(|l| l.name.clone()).collect();
    let diff_ids: Vec<String> = blobs.iter().map(|b| b.diff_id.clone()).collect();
    let layer_descriptors = blobs
        .iter()
        .map(oci::layer_descriptor)
        .collect::<Result<Vec<_>, _>>()?;
    let config = oci::image_config(
        &platform,
        base.as_ref().map(|b| &b.config),
        &spec.stage.config,
        &diff_ids,
        &names,
        epoch,
    );
    let config = writer.write_json(MediaType::ImageConfig, &config)?;
    let manifest = oci::image_manifest(
        config,
        base.as_ref().map(|b| &b.manifest),
        &layer_descriptors,
        &annotations,
    );
    let manifest = writer.write_json(MediaType::ImageManifest, &manifest)?;
    let manifest_digest = manifest.digest().to_string();
    let path = writer.finish(oci::index_entries(&manifest, Some(&platform), &tags))?;
    on_event(Event::ImageFinished {
        name: spec.name.clone(),
        tags: tags.clone(),
        digest: manifest_digest.clone(),
        path: path.clone(),
    });
    Ok(BuildOutput {
        path,
        name: spec.name.clone(),
        tags,
        manifest_digest,
        layers: blobs,
    })
}

/// Where a spec's image goes when no output is given: `<target-dir>/image/<last part of name>`
/// of the cargo workspace that holds the context, or `target/image/<name>` beside the spec.
fn output_dir(spec: &ImageSpec, workspace: Option<&cargo::Workspace>) -> PathBuf {
    let target = match workspace {
        Some(w) => w.target_directory.clone(),
        None => spec
            .spec_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("target"),
    };
    let short = spec.name.rsplit('/').next().unwrap_or(&spec.name);
    target.join("image").join(short)
}

/// The default output directory of the spec at `spec_path` (see [`BuildOptions::output`]).
pub fn default_output(spec_path: &Path) -> Result<PathBuf, Error> {
    let spec = spec::load(spec_path)?;
    let workspace = cargo::workspace(&spec.context).ok();
    Ok(output_dir(&spec, workspace.as_ref()))
}

/// The commit checked out in the git work tree that holds `dir`, if any (for the
/// `org.opencontainers.image.revision` annotation). Never fails a build.
fn git_revision(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "-q", "HEAD"])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (rev.len() == 40 || rev.len() == 64).then_some(rev)
}
