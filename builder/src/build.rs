//! The build operation: spec in, OCI image layout out, through the plan and the store.
//!
//! # Brief overview
//! [`build`] runs the pipeline for one spec:
//! 1. read and validate the spec ([`crate::spec::load`]);
//! 2. run the cargo builds its `cargo` entries ask for ([`crate::cargo::build`]), once per
//!    distinct source (cargo's own fingerprints make an unchanged one a no-op);
//! 3. plan: resolve the base, and key every layer from the content of its inputs
//!    ([`crate::plan`]); host file hashes come from the store's stat index, so a warm plan reads
//!    no file; the result is a [`LayerGraph`] where each node knows whether the store has it;
//! 4. execute: layers the store lacks are built in parallel (rayon), each streamed once through
//!    tar, the compressor and two hashers into the store, then recorded under their key; a
//!    layer whose key is in the store costs a lookup ([`crate::store`]);
//! 5. emit: config and manifest as canonical JSON, and the OCI layout: blobs hard-linked out of
//!    the store into a temporary directory beside the output, swapped into place at the end, so
//!    a failed build leaves the previous output as it was ([`crate::oci::LayoutWriter`]).
//!
//! # Platforms
//! A spec (or [`BuildOptions::platforms`]) may name several platforms. Steps 2-4 then run once
//! per platform, in parallel and sharing the store, on the spec as
//! [`ImageSpec::for_platform`] makes it (cargo entries built for the platform's target, entries
//! of other platforms left out); the base resolves to the platform's image of an index. A layer
//! whose key is the same on every platform (assets, certificates) is built once, under its
//! key's lock, and shared by digest. Step 5 writes one OCI image index whose entries carry each
//! platform, and tags it. One platform gives a plain manifest, unless an index is asked for
//! (`index = true`, [`BuildOptions::index`]).
//!
//! Progress leaves the library as [`Event`]s given to a callback (from several threads): the CLI
//! prints them, tools get them as JSON. The library never prints.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::image::MediaType;
use rayon::prelude::*;

use crate::cargo::{self, CargoOptions};
use crate::layer::{self, LayerBlob, LayerTree, SourceContext, WriteOptions};
use crate::oci::{self, LayoutWriter};
use crate::plan::{self, ContentHasher, Key, LayerGraph, LayerPlan, NodeKind};
use crate::spec::{self, Base, CargoSource, ImageSpec, Stage};
use crate::store::{self, BlobRef, BlobsRecord, NodeResult, StatIndex, Store};

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
    #[error("store {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: Box<store::Error>,
    },
    #[error("pulling base image {reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: Box<crate::registry::Error>,
    },
    #[error("pushing image {reference}: {source}")]
    Push {
        reference: String,
        #[source]
        source: Box<crate::registry::Error>,
    },
    #[error("there is no stage `{target}` to build (--target); the stages are {stages}")]
    UnknownTarget { target: String, stages: String },
    #[error("invalid tag `{tag}` given with --tag: {reason}")]
    InvalidTag { tag: String, reason: String },
    #[error("SOURCE_DATE_EPOCH={epoch} is after the year 9999 (the latest is {}); it is in seconds since 1970", spec::MAX_EPOCH)]
    InvalidEpoch { epoch: u64 },
    #[error("no platform to build: {platform} has no default rust target; set `[platform.\"{platform}\"] target = \"...\"` in the spec")]
    UnknownPlatform { platform: String },
    #[error("a cargo entry of the spec pins `target = \"{target}\"`, which builds for one platform, and {count} platforms are asked for; remove `target` from the entry (each platform builds for its own target) or build one --platform")]
    PinnedTarget { target: String, count: usize },
    #[error("a docker archive holds one image, and this build is for {platforms}; write an OCI archive (`--output-format oci-archive`) or build one --platform")]
    DockerArchivePlatforms { platforms: String },
    #[error("could not start {threads} worker threads: {source}")]
    Threads {
        threads: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
}

impl From<oci::Error> for Error {
    fn from(e: oci::Error) -> Self {
        Error::Output(Box::new(e))
    }
}

/// What a build writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// An OCI image layout directory.
    #[default]
    Oci,
    /// A tar of an OCI image layout (`skopeo ... oci-archive:FILE`).
    OciArchive,
    /// A `docker save` tarball (`docker load` / `podman load`).
    DockerArchive,
}

/// What the caller decides beyond the spec.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// What to write: a layout directory (default) or an archive file.
    pub output_format: OutputFormat,
    /// Where the OCI layout (or archive) goes; `None` means `<target-dir>/image/<name>` of the
    /// cargo workspace the spec belongs to (or `target/image/<name>` beside the spec outside any
    /// workspace), with `.tar` / `.docker.tar` appended for archives.
    pub output: Option<PathBuf>,
    /// The store (cache) directory; `None` means `<target-dir>/image/.store` (as for `output`).
    pub store: Option<PathBuf>,
    /// Tags to use instead of the spec's `tags` (when non-empty).
    pub tags: Vec<String>,
    /// `SOURCE_DATE_EPOCH`: overrides the spec's `epoch` when set.
    pub source_date_epoch: Option<u64>,
    /// Parallel jobs: layers built at once and compressor threads (0 = the number of CPUs);
    /// never changes the bytes.
    pub jobs: usize,
    /// How cargo runs.
    pub cargo: CargoOptions,
    /// How registries are reached (bases, pushes).
    pub registry: crate::registry::RegistryOptions,
    /// Push the image after building it.
    pub push: Option<PushOptions>,
    /// Build this stage as the image instead of the spec's image stage.
    pub target: Option<String>,
    /// Build for these platforms instead of the spec's `platforms` (when non-empty).
    pub platforms: Vec<oci::Platform>,
    /// Write an image index even for a single platform.
    pub index: bool,
}

/// Where a build pushes its image.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// The repository to push to (`registry/name`, a tag or digest in it is ignored); `None`
    /// means the spec's `name`. Every tag of the build is pushed.
    pub repository: Option<String>,
}

/// Progress of a build, in the order it happens (layer events of parallel layers interleave).
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
    /// The graph is planned: every node with its key and whether the store has it.
    Plan { graph: LayerGraph },
    /// A layer the store lacks starts building; `total` is its content size in bytes.
    LayerStarted { name: String, total: u64 },
    /// Content bytes of a building layer written so far.
    LayerProgress { name: String, done: u64, total: u64 },
    /// A layer is ready: built now, or `cached` in the store.
    LayerFinished {
        name: String,
        digest: String,
        diff_id: String,
        size: u64,
        media_type: String,
        cached: bool,
    },
    /// A blob of a push: `uploaded`, `skipped` (the registry had it) or `mounted` (from the
    /// base's repository).
    PushBlob {
        digest: String,
        size: u64,
        action: &'static str,
    },
    /// The image is in the registry as `reference` (`name@sha256:...`), under `tags`.
    Pushed {
        reference: String,
        tags: Vec<String>,
        uploaded_blobs: usize,
        skipped_blobs: usize,
        mounted_blobs: usize,
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
    /// `sha256:<hex>` of what the tags point at: the image manifest, or the image index of a
    /// multi-platform build.
    pub manifest_digest: String,
    /// Our layers (not the base's), bottom first; platform after platform for an index.
    pub layers: Vec<LayerBlob>,
    /// How many of them came from the store.
    pub cached_layers: usize,
    /// The images of an index, one per platform, in index order (empty for a plain manifest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformImage>,
    /// `name@sha256:...` when the image was pushed.
    pub pushed: Option<String>,
}

/// One platform's image of a multi-platform build.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlatformImage {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// `sha256:<hex>` of the platform's image manifest.
    pub manifest_digest: String,
    /// Size of the manifest in bytes.
    pub manifest_size: u64,
    /// Our layers of this platform's image, bottom first.
    pub layers: Vec<LayerBlob>,
}

/// Reads the spec at `spec_path` and builds it; see the module docs for the steps.
pub fn build(
    spec_path: &Path,
    opts: &BuildOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<BuildOutput, Error> {
    let spec = spec::load(spec_path)?;
    on_event(Event::SpecLoaded {
        spec: spec.spec_path.clone(),
        name: spec.name.clone(),
    });
    build_spec(&spec, opts, on_event)
}

/// Plans the spec at `spec_path` without building anything: runs its cargo builds (the only way
/// to know a binary's content), keys every node of every needed stage and asks the store (if it
/// exists) which it has. A registry base is resolved (and held in the store) on the way. A
/// multi-platform spec gives one graph with a branch per platform.
pub fn plan(
    spec_path: &Path,
    opts: &BuildOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<LayerGraph, Error> {
    plan_spec(&spec::load(spec_path)?, opts, on_event)
}

/// Plans an already loaded spec (see [`plan`]).
pub fn plan_spec(
    spec: &ImageSpec,
    opts: &BuildOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<LayerGraph, Error> {
    let cx = Context::new(spec, opts)?;
    let (platforms, as_index) = platform_specs(spec, opts)?;
    let store_root = cx.store_root.clone();
    let store = if store_root.join("version").is_file() {
        Some(Store::open(&store_root).map_err(|e| store_err(&store_root, e))?)
    } else {
        None
    };
    let stat_index = Mutex::new(match &store {
        Some(s) => StatIndex::load(s).map_err(|e| store_err(&store_root, e))?,
        None => StatIndex::new(),
    });
    let mut graph = LayerGraph::default();
    let mut images = Vec::new();
    for p in &platforms {
        let pcx = cx.for_platform(&p.platform, platforms.len() > 1);
        let target = pcx.target_stage(&p.spec)?;
        let cargo_outputs = cargo_builds(&p.spec, &needed_stages(&p.spec, target), opts, on_event)?;
        let run = StageRun {
            spec: &p.spec,
            cx: &pcx,
            opts,
            store: store.as_ref(),
            cargo_outputs: &cargo_outputs,
            hasher: &StatHasher(&stat_index),
            on_event,
            execute: false,
        };
        let mut branch = LayerGraph::default();
        let image = run
            .stages(target, &mut branch)?
            .pop()
            .expect("the target stage is planned last");
        let offset = graph.append(branch);
        images.push((p.platform.clone(), image.key, image.node + offset));
    }
    push_index_node(&mut graph, &cx.tags, &images, as_index);
    Ok(graph)
}

/// One platform of a build, with the spec as built for it.
struct PlatformSpec {
    platform: oci::Platform,
    spec: ImageSpec,
}

/// The platforms a build is for (`--platform`, else the spec's, else `linux/amd64`), each with
/// the spec as built for it, and whether the output is an image index.
fn platform_specs(
    spec: &ImageSpec,
    opts: &BuildOptions,
) -> Result<(Vec<PlatformSpec>, bool), Error> {
    let mut platforms: Vec<oci::Platform> = Vec::new();
    let asked = if !opts.platforms.is_empty() {
        opts.platforms.clone()
    } else if !spec.platforms.is_empty() {
        spec.platforms.clone()
    } else {
        vec![oci::Platform::linux_amd64()]
    };
    for p in asked {
        if !platforms.contains(&p) {
            platforms.push(p);
        }
    }
    if platforms.len() > 1 {
        if let Some(target) = spec.pinned_cargo_target() {
            return Err(Error::PinnedTarget {
                target: target.to_string(),
                count: platforms.len(),
            });
        }
    }
    let has_cargo = spec
        .entries()
        .any(|e| matches!(&e.source, spec::Source::Cargo(src) if !src.target_pinned));
    let as_index = platforms.len() > 1 || spec.index || opts.index;
    let specs = platforms
        .into_iter()
        .map(|platform| {
            let target = match spec.cargo_target(&platform) {
                Some(t) => t,
                None if !has_cargo => String::new(),
                None => {
                    return Err(Error::UnknownPlatform {
                        platform: platform.to_string(),
                    })
                }
            };
            Ok(PlatformSpec {
                spec: spec.for_platform(&platform, &target),
                platform,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((specs, as_index))
}

/// Adds the node that tags the output: the image's (`as_index` false, one image), or an image
/// index over every platform's image.
fn push_index_node(
    graph: &mut LayerGraph,
    tags: &[String],
    images: &[(oci::Platform, Key, plan::NodeId)],
    as_index: bool,
) {
    if let (false, [(_, key, node)]) = (as_index, images) {
        graph.push(
            NodeKind::AssembleIndex {
                tags: tags.to_vec(),
                platforms: Vec::new(),
            },
            plan::index_key(key, tags),
            vec![*node],
            None,
        );
        return;
    }
    let keyed: Vec<(String, Key)> = images.iter().map(|(p, k, _)| (p.to_string(), *k)).collect();
    graph.push(
        NodeKind::AssembleIndex {
            tags: tags.to_vec(),
            platforms: keyed.iter().map(|(p, _)| p.clone()).collect(),
        },
        plan::platform_index_key(&keyed, tags),
        images.iter().map(|(_, _, n)| *n).collect(),
        None,
    );
}

/// Builds an already loaded spec.
pub fn build_spec(
    spec: &ImageSpec,
    opts: &BuildOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<BuildOutput, Error> {
    let cx = Context::new(spec, opts)?;
    let (platforms, as_index) = platform_specs(spec, opts)?;
    if cx.format == OutputFormat::DockerArchive && platforms.len() > 1 {
        return Err(Error::DockerArchivePlatforms {
            platforms: platforms
                .iter()
                .map(|p| p.platform.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    for p in &platforms {
        cx.target_stage(&p.spec)?;
    }

    // The output is checked (and its temporary sibling made) before any long work. An archive
    // is made from a layout written in a temporary directory beside it.
    let archive_scratch = match cx.format {
        OutputFormat::Oci => None,
        _ => Some(archive_scratch(&cx.output)?),
    };
    let layout_target = match &archive_scratch {
        Some(dir) => dir.path().join("layout"),
        None => cx.output.clone(),
    };
    let writer = LayoutWriter::create(&layout_target)?;
    let store = Store::open(&cx.store_root).map_err(|e| store_err(&cx.store_root, e))?;
    let _lock = store
        .lock_shared()
        .map_err(|e| store_err(&cx.store_root, e))?;

    // 2-4. Per platform, in parallel: cargo builds for the stages the image needs, then plan
    // and execute every needed stage, sources first. Layers with one key on several platforms
    // are built once (under the key's lock) and shared.
    let stat_index = Mutex::new(StatIndex::load(&store).map_err(|e| store_err(&cx.store_root, e))?);
    let multi = platforms.len() > 1;
    let built: Vec<(LayerGraph, StageImage)> = platforms
        .par_iter()
        .map(|p| {
            let pcx = cx.for_platform(&p.platform, multi);
            let target = pcx.target_stage(&p.spec)?;
            let needed = needed_stages(&p.spec, target);
            let cargo_outputs = cargo_builds(&p.spec, &needed, opts, on_event)?;
            let mut graph = LayerGraph::default();
            let run = StageRun {
                spec: &p.spec,
                cx: &pcx,
                opts,
                store: Some(&store),
                cargo_outputs: &cargo_outputs,
                hasher: &StatHasher(&stat_index),
                on_event,
                execute: true,
            };
            let image = run
                .stages(target, &mut graph)?
                .pop()
                .expect("the target stage is built last");
            Ok((graph, image))
        })
        .collect::<Result<_, Error>>()?;
    // Newly learnt content hashes serve the next build; failing to save them costs only speed.
    let _ = stat_index
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .save(&store);
    let mut graph = LayerGraph::default();
    let mut images = Vec::new();
    let mut results = Vec::new();
    for ((branch, image), p) in built.into_iter().zip(&platforms) {
        let offset = graph.append(branch);
        images.push((p.platform.clone(), image.key, image.node + offset));
        results.push(image);
    }
    push_index_node(&mut graph, &cx.tags, &images, as_index);
    on_event(Event::Plan { graph });

    // 5. Emit: every blob of every image out of the store, then the index.
    let mut children = Vec::new();
    for (image, p) in results.iter().zip(&platforms) {
        let resolved = image.image.as_ref().expect("built stages have an image");
        for desc in resolved.layers() {
            link_out(&store, desc.digest().as_ref(), &writer, &cx.store_root)?;
        }
        link_out(
            &store,
            resolved.manifest.config().digest().as_ref(),
            &writer,
            &cx.store_root,
        )?;
        link_out(&store, &resolved.digest(), &writer, &cx.store_root)?;
        let mut child = resolved.descriptor.clone();
        child.set_platform(Some(p.platform.to_oci()));
        children.push(child);
    }
    let mut platform_images = Vec::new();
    let tagged = if as_index {
        for (image, child) in results.iter().zip(&children) {
            platform_images.push(PlatformImage {
                platform: image_platform(child),
                manifest_digest: child.digest().to_string(),
                manifest_size: child.size(),
                layers: image.layers.clone(),
            });
        }
        let index = oci::platform_index(children, &cx.annotations);
        let (descriptor, _) = write_json(&store, MediaType::ImageIndex, &index)?;
        link_out(
            &store,
            descriptor.digest().as_ref(),
            &writer,
            &cx.store_root,
        )?;
        descriptor
    } else {
        results[0]
            .image
            .as_ref()
            .expect("built stages have an image")
            .descriptor
            .clone()
    };
    let manifest_digest = tagged.digest().to_string();
    let entry_platform = (!as_index).then(|| platforms[0].platform.clone());
    let layout = writer.finish(oci::index_entries(
        &tagged,
        entry_platform.as_ref(),
        &cx.tags,
    ))?;
    let path = match cx.format {
        OutputFormat::Oci => layout,
        OutputFormat::OciArchive => {
            oci::write_oci_archive(&layout, &cx.output, cx.epoch)?;
            cx.output.clone()
        }
        OutputFormat::DockerArchive => {
            let repo_tags: Vec<String> = cx
                .tags
                .iter()
                .map(|t| format!("{}:{t}", spec.name))
                .collect();
            oci::write_docker_archive(
                &layout,
                cx.tags.first().map(String::as_str),
                &repo_tags,
                &cx.output,
                cx.epoch,
            )?;
            cx.output.clone()
        }
    };
    let pushed = match &opts.push {
        Some(push) => Some(push_image(
            spec,
            &cx,
            opts,
            push,
            &layout_dir_of(&path, archive_scratch.as_ref()),
            results[0].reference.as_ref(),
            on_event,
        )?),
        None => None,
    };
    drop(archive_scratch);
    on_event(Event::ImageFinished {
        name: spec.name.clone(),
        tags: cx.tags.clone(),
        digest: manifest_digest.clone(),
        path: path.clone(),
    });
    Ok(BuildOutput {
        path,
        name: spec.name.clone(),
        tags: cx.tags.clone(),
        manifest_digest,
        cached_layers: results.iter().map(|i| i.cached).sum(),
        layers: results.into_iter().flat_map(|i| i.layers).collect(),
        platforms: platform_images,
        pushed,
    })
}

/// `os/arch[/variant]` of an index entry.
fn image_platform(descriptor: &oci_spec::image::Descriptor) -> String {
    descriptor
        .platform()
        .as_ref()
        .map(|p| oci::Platform::from_oci(p).to_string())
        .unwrap_or_default()
}

/// Builds several specs (the images of a cargo workspace) in parallel, sharing the store: a
/// layer several images have (a shared base layer) is built once, the other builds wait for it
/// and reuse it. `on_event` gets each event with the name of the image it belongs to. Every
/// spec is built even when another fails; the results come back in the order of `specs`.
pub fn build_many(
    specs: &[ImageSpec],
    opts: &BuildOptions,
    on_event: &(dyn Fn(&str, Event) + Sync),
) -> Vec<Result<BuildOutput, Error>> {
    specs
        .par_iter()
        .map(|spec| {
            let name = spec.name.as_str();
            on_event(
                name,
                Event::SpecLoaded {
                    spec: spec.spec_path.clone(),
                    name: spec.name.clone(),
                },
            );
            build_spec(spec, opts, &|e| on_event(name, e))
        })
        .collect()
}

/// The stages `target` needs (as bases or through `from-stage`), transitively, sources first
/// and `target` last; each once.
fn needed_stages<'a>(spec: &'a ImageSpec, target: &'a Stage) -> Vec<&'a Stage> {
    fn visit<'a>(spec: &'a ImageSpec, stage: &'a Stage, out: &mut Vec<&'a Stage>) {
        if out.iter().any(|s| s.name == stage.name) {
            return;
        }
        let mut uses = Vec::new();
        if let Base::Stage(name) = &stage.base {
            uses.push(name.as_str());
        }
        for layer in &stage.layers {
            for entry in &layer.entries {
                if let spec::Source::Stage { stage, .. } = &entry.source {
                    uses.push(stage.as_str());
                }
            }
        }
        for name in uses {
            if let Some(used) = spec.find_stage(name) {
                visit(spec, used, out);
            }
        }
        if !out.iter().any(|s| s.name == stage.name) {
            out.push(stage);
        }
    }
    let mut out = Vec::new();
    visit(spec, target, &mut out);
    out
}

/// A stage, planned and (in a build) built.
struct StageImage {
    name: String,
    /// The key of the stage's assembled image.
    key: Key,
    /// The graph node of the stage's image.
    node: plan::NodeId,
    /// The image, readable from the store (a build only).
    image: Option<oci::ResolvedImage>,
    /// The registry reference of the base (through stage bases too), for cross-repo mounts.
    reference: Option<crate::registry::Reference>,
    /// Our layers (not the base's).
    layers: Vec<LayerBlob>,
    /// How many of them came from the store.
    cached: usize,
}

/// What planning and building the stages of one spec share.
struct StageRun<'a> {
    spec: &'a ImageSpec,
    cx: &'a Context,
    opts: &'a BuildOptions,
    store: Option<&'a Store>,
    cargo_outputs: &'a HashMap<CargoSource, PathBuf>,
    hasher: &'a StatHasher<'a>,
    on_event: &'a (dyn Fn(Event) + Sync),
    /// Build (true) or only plan (false).
    execute: bool,
}

impl StageRun<'_> {
    /// Plans (and builds) every stage `target` needs, in order; the last is `target`.
    fn stages(&self, target: &Stage, graph: &mut LayerGraph) -> Result<Vec<StageImage>, Error> {
        let mut done: Vec<StageImage> = Vec::new();
        for stage in needed_stages(self.spec, target) {
            let built = self.stage(stage, stage.name == target.name, &done, graph)?;
            done.push(built);
        }
        Ok(done)
    }

    fn stage(
        &self,
        stage: &Stage,
        is_target: bool,
        done: &[StageImage],
        graph: &mut LayerGraph,
    ) -> Result<StageImage, Error> {
        let cx = self.cx;
        let find = |name: &str| done.iter().find(|s| s.name == name);
        // Layer and event names of source stages say which stage they belong to.
        // In a multi-platform build they also say which platform.
        let label = |layer: &str| {
            let name = if is_target {
                layer.to_string()
            } else {
                format!("{}/{layer}", stage.name)
            };
            match &cx.label {
                Some(platform) => format!("{name} [{platform}]"),
                None => name,
            }
        };

        // The base: another stage, or an image from outside (verified, blobs held in the store).
        let mut inputs = Vec::new();
        let (base, base_id, reference) = match &stage.base {
            Base::Stage(name) => {
                let b = find(name).expect("needed stages come first");
                inputs.push(b.node);
                (
                    b.image.clone(),
                    Some(format!("stage:{}", b.key.hex())),
                    b.reference.clone(),
                )
            }
            other => match resolve_base(
                other,
                self.opts,
                &cx.store_root,
                &cx.platform,
                self.on_event,
            )? {
                Some(base) => {
                    let id = base.digest();
                    let mut w = blake3::Hasher::new();
                    w.update(plan::KEY_VERSION.as_bytes());
                    w.update(b"base");
                    w.update(id.as_bytes());
                    inputs.push(graph.push(
                        NodeKind::FetchBase {
                            reference: base_label(other),
                        },
                        Key(*w.finalize().as_bytes()),
                        vec![],
                        None,
                    ));
                    let image = match self.store {
                        Some(store) if self.execute => Some(hold_base(store, &base, other)?),
                        _ => Some(base.image.clone()),
                    };
                    (image, Some(id), base.reference.clone())
                }
                None => (None, None, None),
            },
        };

        // Keys of our layers.
        let stage_keys: HashMap<String, Key> =
            done.iter().map(|s| (s.name.clone(), s.key)).collect();
        let mut copier = StageFs::new(done, self.store.map(Store::root));
        if let Some(base) = &base {
            copier.images.insert(BASE_FS.to_string(), base.clone());
        }
        let ctx = SourceContext {
            context: &self.spec.context,
            cargo_outputs: self.cargo_outputs,
            stages: Some(&copier),
        };
        let plans: Vec<LayerPlan> = stage
            .layers
            .par_iter()
            .map(|layer_spec| {
                plan::layer_key(
                    layer_spec,
                    &ctx,
                    &cx.write,
                    self.hasher,
                    &stage_keys,
                    base_id.as_deref(),
                )
                .map_err(|source| Error::Layer {
                    layer: label(&layer_spec.name),
                    source: Box::new(source),
                })
            })
            .collect::<Result<_, _>>()?;
        let hits: Vec<Option<store::LayerRecord>> = plans
            .iter()
            .map(|p| match self.store.map(|s| s.get_key(&p.key.hex())) {
                Some(Ok(Some(NodeResult::Layer(record)))) => Ok(Some(record)),
                Some(Ok(_)) | None => Ok(None),
                Some(Err(e)) => Err(store_err(&cx.store_root, e)),
            })
            .collect::<Result<_, _>>()?;
        for (layer, (plan, hit)) in stage.layers.iter().zip(plans.iter().zip(&hits)) {
            let copies_from: Vec<plan::NodeId> = layer
                .entries
                .iter()
                .filter_map(|e| match &e.source {
                    spec::Source::Stage { stage, .. } => find(stage).map(|s| s.node),
                    _ => None,
                })
                .collect();
            let copies = layer
                .entries
                .iter()
                .filter_map(|e| match &e.source {
                    spec::Source::Stage { stage, path, .. } => Some(format!(
                        "{stage}:/{path} -> /{}{}",
                        e.dest,
                        if e.dest_is_dir && !e.dest.is_empty() {
                            "/"
                        } else {
                            ""
                        }
                    )),
                    _ => None,
                })
                .collect();
            inputs.push(graph.push(
                NodeKind::BuildLayer {
                    layer: label(&layer.name),
                    copies,
                },
                plan.key,
                copies_from,
                Some(hit.is_some()),
            ));
        }
        let keys: Vec<Key> = plans.iter().map(|p| p.key).collect();
        let names: Vec<String> = stage.layers.iter().map(|l| l.name.clone()).collect();
        let key = plan::image_key(base_id.as_deref(), &keys, &names, &image_recipe(stage, cx));
        let image_cached = self
            .store
            .map(|s| s.get_key(&key.hex()).ok().flatten().is_some());
        let node = graph.push(
            NodeKind::AssembleImage {
                name: {
                    let name = if is_target {
                        self.spec.name.clone()
                    } else {
                        format!("stage {}", stage.name)
                    };
                    match &cx.label {
                        Some(platform) => format!("{name} [{platform}]"),
                        None => name,
                    }
                },
            },
            key,
            inputs,
            Some(image_cached.unwrap_or(false)),
        );
        let cached = hits.iter().filter(|h| h.is_some()).count();
        let mut result = StageImage {
            name: stage.name.clone(),
            key,
            node,
            image: None,
            reference,
            layers: Vec::new(),
            cached,
        };
        let Some(store) = self.store.filter(|_| self.execute) else {
            return Ok(result);
        };

        // Execute: misses in parallel, hits as they are.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cx.threads)
            .build()
            .map_err(|source| Error::Threads {
                threads: cx.threads,
                source,
            })?;
        let on_event = self.on_event;
        let work: Vec<_> = stage.layers.iter().zip(plans).zip(hits).collect();
        let built: Vec<(LayerBlob, bool)> = pool.install(|| {
            work.into_par_iter()
                .map(|((layer_spec, plan), hit)| {
                    let name = label(&layer_spec.name);
                    // A miss is built under the key's lock; another build (thread or process)
                    // that built it meanwhile leaves a hit to take instead.
                    let _key_lock = match hit {
                        Some(_) => None,
                        None => Some(
                            store
                                .lock_key(&plan.key.hex())
                                .map_err(|e| store_err(store.root(), e))?,
                        ),
                    };
                    let hit = match hit {
                        Some(record) => Some(record),
                        None => match store.get_key(&plan.key.hex()) {
                            Ok(Some(NodeResult::Layer(record))) => Some(record),
                            _ => None,
                        },
                    };
                    let cached = hit.is_some();
                    let blob = match hit {
                        Some(record) => LayerBlob::from(&record),
                        None => build_layer(
                            layer_spec,
                            &name,
                            plan,
                            &ctx,
                            base.as_ref().map(|_| &copier),
                            cx,
                            store,
                            on_event,
                        )?,
                    };
                    on_event(Event::LayerFinished {
                        name,
                        digest: blob.digest.clone(),
                        diff_id: blob.diff_id.clone(),
                        size: blob.size,
                        media_type: blob.media_type.clone(),
                        cached,
                    });
                    Ok((blob, cached))
                })
                .collect::<Result<Vec<_>, Error>>()
        })?;
        // A layer another build (a platform of this one, or another process) made while this
        // one waited for its key's lock is fresh too.
        result.cached = built.iter().filter(|(_, cached)| *cached).count();
        let blobs: Vec<LayerBlob> = built.into_iter().map(|(blob, _)| blob).collect();
        let image = assemble_image(stage, is_target, cx, base.as_ref(), &blobs, store)?;
        let _ = store.put_key(
            &key.hex(),
            &NodeResult::Blobs(BlobsRecord {
                blobs: vec![BlobRef {
                    digest: image.digest(),
                    size: image.descriptor.size(),
                    media_type: image.descriptor.media_type().to_string(),
                }],
                data: serde_json::Value::Null,
            }),
        );
        result.image = Some(image);
        result.layers = blobs;
        Ok(result)
    }
}

/// The name under which a stage's own base is opened in its [`StageFs`] (not a valid stage
/// name, so it never meets one).
const BASE_FS: &str = "/base";

/// Copies `from-stage` entries out of built stages' merged filesystems, opening each stage's
/// filesystem once, when a layer that copies from it is built.
#[derive(Debug)]
struct StageFs {
    images: HashMap<String, oci::ResolvedImage>,
    store_root: Option<PathBuf>,
    opened: Mutex<HashMap<String, std::sync::Arc<crate::rootfs::Rootfs>>>,
    scratch: Mutex<Vec<oci::TempDirBeside>>,
}

impl StageFs {
    fn new(done: &[StageImage], store_root: Option<&Path>) -> Self {
        StageFs {
            images: done
                .iter()
                .filter_map(|s| s.image.clone().map(|i| (s.name.clone(), i)))
                .collect(),
            store_root: store_root.map(Path::to_path_buf),
            opened: Mutex::new(HashMap::new()),
            scratch: Mutex::new(Vec::new()),
        }
    }

    fn rootfs(&self, stage: &str) -> Result<std::sync::Arc<crate::rootfs::Rootfs>, layer::Error> {
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| layer::Error::CopyFromStage {
            stage: stage.to_string(),
            path: "/".to_string(),
            source: e,
        };
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fs) = opened.get(stage) {
            return Ok(fs.clone());
        }
        let image = self
            .images
            .get(stage)
            .ok_or_else(|| fail("the stage is not built in this build".into()))?;
        let layers: Vec<crate::rootfs::LayerBlobRef> = image
            .layers()
            .iter()
            .map(|d| crate::rootfs::LayerBlobRef {
                path: image.layout.join("blobs/sha256").join(d.digest().digest()),
                media_type: d.media_type().to_string(),
            })
            .collect();
        let parent = self.store_root.clone().unwrap_or_else(std::env::temp_dir);
        let scratch =
            oci::scratch_dir(&parent, oci::Scratch::Stage).map_err(|e| fail(Box::new(e)))?;
        let fs = crate::rootfs::Rootfs::open(stage, &layers, scratch.path())
            .map_err(|e| fail(Box::new(e)))?;
        let fs = std::sync::Arc::new(fs);
        opened.insert(stage.to_string(), fs.clone());
        self.scratch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(scratch);
        Ok(fs)
    }
}

impl layer::StageCopier for StageFs {
    fn copy_out(
        &self,
        layer_name: &str,
        stage: &str,
        path: &str,
        include: &[String],
        exclude: &[String],
        entry: &spec::EntrySpec,
        index: usize,
        tree: &mut LayerTree,
    ) -> Result<(), layer::Error> {
        let fs = self.rootfs(stage)?;
        let src = format!("/{path}");
        let request = crate::rootfs::CopyRequest {
            src: &src,
            include,
            exclude,
            dest: &entry.dest,
            dest_is_dir: entry.dest_is_dir,
            // As Docker's `COPY --from`: owned by 0:0 unless the entry says otherwise.
            owner: Some(entry.owner),
            mode: entry.mode,
            dir_mode: entry.dir_mode,
            layer: layer_name,
            origin: index,
        };
        fs.copy_out(&request, tree)
            .map_err(|e| layer::Error::CopyFromStage {
                stage: stage.to_string(),
                path: format!("/{path}"),
                source: Box::new(e),
            })
    }
}

/// Puts an outside base's blobs in the store (verified) and returns the base as an image read
/// from the store, so stages and outputs take every blob from one place.
///
/// Each layer is checked against its descriptor (size, digest, media type by its magic bytes)
/// and the config's diff_id for it before anything of the base is reused: while it is copied
/// into the store, or (a blob the store already has) from the facts recorded for it, else by
/// reading it once and recording them.
fn hold_base(store: &Store, base: &BaseImage, which: &Base) -> Result<oci::ResolvedImage, Error> {
    let wrap = |source| Error::Base {
        base: base_label(which),
        source: Box::new(source),
    };
    let serr = |e| store_err(store.root(), e);
    let diff_ids = base.config.rootfs().diff_ids();
    if diff_ids.len() != base.layers().len() {
        return Err(wrap(oci::Error::LayerCount {
            layout: base.layout.clone(),
            digest: base.digest(),
            layers: base.layers().len(),
            diff_ids: diff_ids.len(),
        }));
    }
    for (desc, diff_id) in base.layers().iter().zip(diff_ids) {
        let digest = oci::Digest::parse(desc.digest().as_ref())?;
        let src = base.blob_path(desc.digest().as_ref()).map_err(wrap)?;
        if let Some(facts) = store.layer_facts(&digest).map_err(serr)? {
            oci::check_layer(&src, desc, diff_id, &facts).map_err(wrap)?;
            continue;
        }
        let facts = if store.has_blob(&digest) {
            let held = store.blob_path(&digest);
            let facts = oci::read_layer(&held, desc, &mut std::io::sink()).map_err(wrap)?;
            oci::check_layer(&held, desc, diff_id, &facts).map_err(wrap)?;
            facts
        } else {
            let mut writer = store.blob_writer().map_err(serr)?;
            let facts = oci::read_layer(&src, desc, &mut writer).map_err(wrap)?;
            oci::check_layer(&src, desc, diff_id, &facts).map_err(wrap)?;
            writer.finish().map_err(serr)?;
            facts
        };
        store.record_layer_facts(&facts).map_err(serr)?;
    }
    for bytes in [&base.manifest_bytes, &base.config_bytes] {
        store
            .write_blob(bytes)
            .map_err(|e| store_err(store.root(), e))?;
    }
    let mut image = base.image.clone();
    image.layout = store.root().to_path_buf();
    Ok(image)
}

/// What one build decides once, up front (and per platform: `platform`, `label`).
#[derive(Clone)]
struct Context {
    target: Option<String>,
    format: OutputFormat,
    tags: Vec<String>,
    epoch: u64,
    threads: usize,
    output: PathBuf,
    store_root: PathBuf,
    platform: oci::Platform,
    write: WriteOptions,
    annotations: BTreeMap<String, String>,
    /// The platform layer and image names carry in a multi-platform build.
    label: Option<String>,
}

impl Context {
    /// This context for one platform of the build; `multi` when there are several.
    fn for_platform(&self, platform: &oci::Platform, multi: bool) -> Context {
        Context {
            platform: platform.clone(),
            label: multi.then(|| platform.to_string()),
            ..self.clone()
        }
    }

    /// The stage that becomes the image: `--target`, else the spec's image stage.
    fn target_stage<'s>(&self, spec: &'s ImageSpec) -> Result<&'s Stage, Error> {
        match &self.target {
            None => Ok(&spec.stage),
            Some(name) => spec.find_stage(name).ok_or_else(|| Error::UnknownTarget {
                target: name.clone(),
                stages: spec
                    .all_stages()
                    .map(|s| format!("`{}`", s.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn new(spec: &ImageSpec, opts: &BuildOptions) -> Result<Self, Error> {
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
        if epoch > spec::MAX_EPOCH {
            return Err(Error::InvalidEpoch { epoch });
        }
        let threads = if opts.jobs == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.jobs
        };
        let mut workspace = cargo::workspace(&spec.context).ok();
        if let (Some(w), Some(dir)) = (workspace.as_mut(), &opts.cargo.overrides.target_dir) {
            w.target_directory = dir.clone();
        }
        let image_dir = image_dir(spec, workspace.as_ref());
        let output = opts.output.clone().unwrap_or_else(|| {
            let name = spec.short_name();
            image_dir.join(match opts.output_format {
                OutputFormat::Oci => name.to_string(),
                OutputFormat::OciArchive => format!("{name}.tar"),
                OutputFormat::DockerArchive => format!("{name}.docker.tar"),
            })
        });
        let store_root = opts
            .store
            .clone()
            .unwrap_or_else(|| image_dir.join(".store"));

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

        Ok(Context {
            target: opts.target.clone(),
            format: opts.output_format,
            tags,
            epoch,
            threads,
            output,
            store_root,
            platform: oci::Platform::linux_amd64(),
            write: WriteOptions {
                compression: spec.compression,
                mtime: epoch,
                threads,
            },
            annotations,
            label: None,
        })
    }
}

fn store_err(path: &Path, e: store::Error) -> Error {
    Error::Store {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

/// Runs the cargo builds of a spec, once per distinct source.
fn cargo_builds(
    spec: &ImageSpec,
    stages: &[&Stage],
    opts: &BuildOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<HashMap<CargoSource, PathBuf>, Error> {
    let mut outputs: HashMap<CargoSource, PathBuf> = HashMap::new();
    for layer in stages.iter().flat_map(|s| &s.layers) {
        for entry in &layer.entries {
            if let spec::Source::Cargo(src) = &entry.source {
                if outputs.contains_key(src) {
                    continue;
                }
                let what = cargo::describe(src);
                on_event(Event::CargoBuild { what: what.clone() });
                let exe = cargo::build(src, &spec.context, &opts.cargo)?;
                on_event(Event::CargoFinished {
                    what,
                    executable: exe.clone(),
                });
                outputs.insert(src.clone(), exe);
            }
        }
    }
    Ok(outputs)
}

fn base_label(base: &Base) -> String {
    let with_tag = |prefix: &str, path: &Path, tag: &Option<String>| match tag {
        Some(t) => format!("{prefix}:{}:{t}", path.display()),
        None => format!("{prefix}:{}", path.display()),
    };
    match base {
        Base::Scratch => "scratch".to_string(),
        Base::Stage(name) => format!("stage:{name}"),
        Base::OciLayout { path, tag } => with_tag("oci", path, tag),
        Base::OciArchive { path, tag } => with_tag("oci-archive", path, tag),
        Base::DockerArchive { path, tag } => with_tag("docker-archive", path, tag),
        Base::Registry { reference, .. } => reference.clone(),
    }
}

/// A resolved base image, with what keeps its blobs readable.
struct BaseImage {
    image: oci::ResolvedImage,
    /// The directory an archive base was unpacked into (removed on drop).
    _scratch: Option<oci::TempDirBeside>,
    /// For a registry base: its reference, so a push to the same registry can mount its blobs.
    reference: Option<crate::registry::Reference>,
}

impl std::ops::Deref for BaseImage {
    type Target = oci::ResolvedImage;
    fn deref(&self) -> &oci::ResolvedImage {
        &self.image
    }
}

/// Resolves the stage's base to a verified image (manifest and config read and checked; a
/// registry base's blobs pulled into the store).
fn resolve_base(
    which: &Base,
    opts: &BuildOptions,
    store_root: &Path,
    platform: &oci::Platform,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<Option<BaseImage>, Error> {
    let wrap = |source| Error::Base {
        base: base_label(which),
        source: Box::new(source),
    };
    let unpack = |path: &Path, open: fn(&Path, &Path) -> Result<oci::Layout, oci::Error>| {
        let parent = store_root.parent().unwrap_or(Path::new("."));
        let scratch = oci::scratch_dir(parent, oci::Scratch::Base).map_err(|source| {
            wrap(oci::Error::CreateDir {
                path: parent.to_path_buf(),
                source,
            })
        })?;
        let layout = open(path, scratch.path()).map_err(wrap)?;
        Ok::<_, Error>((layout, scratch))
    };
    let base = match which {
        Base::Scratch | Base::Stage(_) => return Ok(None),
        Base::OciLayout { path, tag } => BaseImage {
            image: oci::Layout::open(path)
                .and_then(|l| l.resolve(tag.as_deref(), platform))
                .map_err(wrap)?,
            _scratch: None,
            reference: None,
        },
        Base::OciArchive { path, tag } => {
            let (layout, scratch) = unpack(path, oci::open_oci_archive)?;
            BaseImage {
                image: layout.resolve(tag.as_deref(), platform).map_err(wrap)?,
                _scratch: Some(scratch),
                reference: None,
            }
        }
        Base::DockerArchive { path, tag } => {
            let (layout, scratch) = unpack(path, oci::open_docker_archive)?;
            BaseImage {
                image: layout.resolve(tag.as_deref(), platform).map_err(wrap)?,
                _scratch: Some(scratch),
                reference: None,
            }
        }
        Base::Registry { reference, pull } => {
            let registry_err = |source| Error::Registry {
                reference: reference.clone(),
                source: Box::new(source),
            };
            let parsed = crate::registry::Reference::parse(reference).map_err(|e| {
                registry_err(crate::registry::Error::ParseReference {
                    reference: reference.clone(),
                    source: e,
                })
            })?;
            let store = Store::open(store_root).map_err(|e| store_err(store_root, e))?;
            let client = crate::registry::RegistryClient::new(opts.registry.clone())
                .map_err(registry_err)?;
            let pulled = client
                .pull(&parsed, platform, &store, *pull)
                .map_err(registry_err)?;
            BaseImage {
                image: pulled.to_resolved(),
                _scratch: None,
                reference: Some(parsed),
            }
        }
    };
    on_event(Event::BaseResolved {
        base: base_label(which),
        digest: base.digest(),
        layers: base.layers().len(),
    });
    Ok(Some(base))
}

/// The stat index as a [`ContentHasher`] shared by parallel planners: lookups under the lock,
/// hashing outside it.
struct StatHasher<'a>(&'a Mutex<StatIndex>);

impl ContentHasher for StatHasher<'_> {
    fn content_hash(&self, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<[u8; 32]> {
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hash) = lock().lookup(path, meta) {
            return Ok(hash);
        }
        let hash = store::hash_file(path)?;
        lock().insert(path, meta, hash);
        Ok(hash)
    }
}

/// The canonical bytes of everything besides the layers that decides the config and manifest.
fn image_recipe(stage: &Stage, cx: &Context) -> Vec<u8> {
    let config = &stage.config;
    let recipe = serde_json::json!({
        "platform": cx.platform.to_string(),
        "created": cx.epoch,
        "annotations": cx.annotations,
        "entrypoint": config.entrypoint,
        "cmd": config.cmd,
        "env": config.env,
        "workdir": config.workdir,
        "user": config.user,
        "labels": config.labels,
        "exposed_ports": config.exposed_ports,
        "volumes": config.volumes,
        "stop_signal": config.stop_signal,
    });
    oci::to_canonical_json(&recipe).unwrap_or_default()
}

/// Builds one layer into the store and records it under its key.
#[allow(clippy::too_many_arguments)]
fn build_layer(
    layer_spec: &spec::LayerSpec,
    name: &str,
    plan: LayerPlan,
    ctx: &SourceContext<'_>,
    lower: Option<&StageFs>,
    cx: &Context,
    store: &Store,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<LayerBlob, Error> {
    let wrap = |source| Error::Layer {
        layer: name.to_string(),
        source: Box::new(source),
    };
    let mut tree = match plan.tree {
        Some(tree) => tree,
        None => LayerTree::from_spec(layer_spec, ctx).map_err(wrap)?,
    };
    // Parent directories this layer only implies keep the base's mode and owner.
    if let Some(lower) = lower {
        if tree.iter().any(|(_, e)| e.origin.implicit) {
            let base = lower.rootfs(BASE_FS).map_err(wrap)?;
            tree.inherit_implicit_dirs(|p| base.dir_attributes(p));
        }
    }
    let total = tree.content_size();
    on_event(Event::LayerStarted {
        name: name.to_string(),
        total,
    });
    let progress = |done: u64| {
        on_event(Event::LayerProgress {
            name: name.to_string(),
            done,
            total,
        })
    };
    let blob =
        layer::write_layer_to_dir_with_progress(&tree, &cx.write, store.blobs_dir(), &progress)
            .map_err(wrap)?;
    // Store blobs are read-only, so writing through a hard-linked output fails loudly.
    let digest = oci::Digest::parse(&blob.digest)?;
    let blob_path = store.blob_path(&digest);
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&blob_path, std::fs::Permissions::from_mode(0o444));
    // Cache the layer only if no input changed while it was written: otherwise its bytes may
    // not be what the key says.
    if plan.inputs.iter().all(plan::InputStamp::unchanged) {
        store
            .put_key(&plan.key.hex(), &NodeResult::Layer((&blob).into()))
            .map_err(|e| store_err(store.root(), e))?;
    }
    Ok(blob)
}

/// Puts a store blob into the layout being written.
fn link_out(
    store: &Store,
    digest: &str,
    writer: &LayoutWriter,
    store_root: &Path,
) -> Result<(), Error> {
    let digest = oci::Digest::parse(digest)?;
    store
        .link_out(&digest, &writer.blobs_dir().join(digest.hex()))
        .map_err(|e| store_err(store_root, e))
}

/// Writes a stage's config and manifest into the store; returns the stage's image, read from
/// the store.
fn assemble_image(
    stage: &Stage,
    is_target: bool,
    cx: &Context,
    base: Option<&oci::ResolvedImage>,
    blobs: &[LayerBlob],
    store: &Store,
) -> Result<oci::ResolvedImage, Error> {
    let names: Vec<String> = stage.layers.iter().map(|l| l.name.clone()).collect();
    let diff_ids: Vec<String> = blobs.iter().map(|b| b.diff_id.clone()).collect();
    let layer_descriptors = blobs
        .iter()
        .map(oci::layer_descriptor)
        .collect::<Result<Vec<_>, _>>()?;
    let config = oci::image_config(
        &cx.platform,
        base.map(|b| &b.config),
        &stage.config,
        &diff_ids,
        &names,
        cx.epoch,
    );
    let (config_desc, config_bytes) = write_json(store, MediaType::ImageConfig, &config)?;
    // Source stages are not published: only the image carries the spec's annotations.
    let no_annotations = BTreeMap::new();
    let manifest = oci::image_manifest(
        config_desc,
        base.map(|b| &b.manifest),
        &layer_descriptors,
        if is_target {
            &cx.annotations
        } else {
            &no_annotations
        },
    );
    let (descriptor, manifest_bytes) = write_json(store, MediaType::ImageManifest, &manifest)?;
    Ok(oci::ResolvedImage {
        layout: store.root().to_path_buf(),
        tag: None,
        index: None,
        descriptor,
        manifest,
        manifest_bytes,
        config,
        config_bytes,
    })
}

/// Writes a JSON document as canonical bytes into the store.
fn write_json<T: serde::Serialize>(
    store: &Store,
    media_type: MediaType,
    value: &T,
) -> Result<(oci_spec::image::Descriptor, Vec<u8>), Error> {
    let bytes = oci::to_canonical_json(value)?;
    let (digest, size) = store
        .write_blob(&bytes)
        .map_err(|e| store_err(store.root(), e))?;
    Ok((oci::descriptor(media_type, &digest, size), bytes))
}

/// The layout directory of a finished build: the output, or the layout an archive was made of.
fn layout_dir_of(output: &Path, archive_scratch: Option<&oci::TempDirBeside>) -> PathBuf {
    match archive_scratch {
        Some(dir) => dir.path().join("layout"),
        None => output.to_path_buf(),
    }
}

/// Pushes a finished layout to its registry; returns `repository@digest`.
fn push_image(
    spec: &ImageSpec,
    cx: &Context,
    opts: &BuildOptions,
    push: &PushOptions,
    layout: &Path,
    mount_from: Option<&crate::registry::Reference>,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<String, Error> {
    use crate::registry::{PushEvent, Reference, RegistryClient};
    let repository = push.repository.clone().unwrap_or_else(|| spec.name.clone());
    let registry_err = |source| Error::Push {
        reference: repository.clone(),
        source: Box::new(source),
    };
    let target = Reference::parse(&repository).map_err(|e| {
        registry_err(crate::registry::Error::ParseReference {
            reference: repository.clone(),
            source: e,
        })
    })?;
    let target = Reference::from_parts(target.registry(), target.repository(), None, None)
        .map_err(|e| {
            registry_err(crate::registry::Error::ParseReference {
                reference: repository.clone(),
                source: e,
            })
        })?;
    // Mount base blobs only within one registry.
    let mount_from = mount_from.filter(|m| m.registry() == target.registry());
    let client = RegistryClient::new(opts.registry.clone()).map_err(registry_err)?;
    let progress = |e: PushEvent| {
        let (digest, size, action) = match e {
            PushEvent::BlobSkipped { digest, size } => (digest, size, "skipped"),
            PushEvent::BlobMounted { digest, size } => (digest, size, "mounted"),
            PushEvent::BlobUploaded { digest, size } => (digest, size, "uploaded"),
            PushEvent::ManifestPushed { .. } => return,
        };
        on_event(Event::PushBlob {
            digest,
            size,
            action,
        })
    };
    let report = client
        .push_layout(
            layout,
            cx.tags.first().map(String::as_str),
            &target,
            &cx.tags,
            mount_from,
            &progress,
        )
        .map_err(registry_err)?;
    let reference = format!("{}@{}", target.name(), report.digest);
    on_event(Event::Pushed {
        reference: reference.clone(),
        tags: cx.tags.clone(),
        uploaded_blobs: report.uploaded_blobs,
        skipped_blobs: report.skipped_blobs,
        mounted_blobs: report.mounted_blobs,
    });
    Ok(reference)
}

/// A temporary directory beside an archive's destination, for the layout it is made from
/// (after checking the destination and removing the leftovers of killed builds there).
fn archive_scratch(dest: &Path) -> Result<oci::TempDirBeside, Error> {
    Ok(oci::prepare_archive_output(dest)?)
}

/// `target/image` of the cargo workspace that holds the context, or `target/image` beside the
/// spec outside any workspace.
fn image_dir(spec: &ImageSpec, workspace: Option<&cargo::Workspace>) -> PathBuf {
    let target = match workspace {
        Some(w) => w.target_directory.clone(),
        None => spec
            .spec_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("target"),
    };
    target.join("image")
}

/// The default output directory of the spec at `spec_path` (see [`BuildOptions::output`]).
pub fn default_output(spec_path: &Path) -> Result<PathBuf, Error> {
    let spec = spec::load(spec_path)?;
    let workspace = cargo::workspace(&spec.context).ok();
    Ok(image_dir(&spec, workspace.as_ref()).join(spec.short_name()))
}

/// The default store directory of the spec at `spec_path` (see [`BuildOptions::store`]).
pub fn default_store(spec_path: &Path) -> Result<PathBuf, Error> {
    let spec = spec::load(spec_path)?;
    let workspace = cargo::workspace(&spec.context).ok();
    Ok(image_dir(&spec, workspace.as_ref()).join(".store"))
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
