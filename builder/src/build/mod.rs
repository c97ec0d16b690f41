//! The build operation: spec in, OCI image out, in four steps that each only consume the one
//! before.
//!
//! ```text
//! spec ──options──> Context, platforms ──planner──> Plan (LayerGraph + work) ──execute──> outputs ──emit──> layout / archive / push
//! ```
//!
//! 1. **Options** (`options.rs`): the spec and [`BuildOptions`] resolved once (tags, epoch,
//!    threads, output and store paths, annotations, what host trees leave out: cargo's target
//!    directory, the store, the output and the context's `.dockerignore`), and the platforms, each with the spec as
//!    [`ImageSpec::for_platform`] makes it (cargo entries built for the platform's target,
//!    entries of other platforms left out).
//! 2. **Plan** (`planner.rs`): for every platform in parallel, the cargo builds and base
//!    resolutions the keys need (inputs of the plan), then every needed stage keyed, sources
//!    first: the complete [`LayerGraph`] (fetch base, build layer, assemble image, and the
//!    index node) with what the store already has, before any layer is built. The
//!    [`Event::Plan`] event carries it. `cargo image plan` ([`plan`]) stops here and shares
//!    this code exactly.
//! 3. **Execute** (`execute.rs`): the graph's nodes run in dependency order on `--jobs` worker
//!    threads; a layer the store has costs a lookup, a miss is looked up in the remote caches
//!    (`remote.rs`, `--cache-from`), else built under its key's lock and recorded (a layer of
//!    many new files, in a build of one image for one platform without remote caches, is keyed
//!    while it is written: its files read once; see [`crate::plan`]); then the
//!    build's layers are recorded in the `--cache-to` caches. A layer whose key is the same on every platform (assets, certificates) is built
//!    once and shared by digest.
//! 4. **Emit** (`emit.rs`): blobs hard-linked out of the store into a temporary layout beside
//!    the output, an image index for several platforms (or `index = true`), the layout swapped
//!    into place (or made into an archive), then the push. A failed build leaves the previous
//!    output as it was.
//!
//! Bases have their own module (`base.rs`): resolved while planning, their blobs put into the
//! store (checked) by the executor; `builtin.rs` makes the built-in `builtin:static` base. A
//! registry base is taken from the digest the lock file pins (`pins.rs`, over the
//! [`crate::lock`] model); bases the lock lacked are added to it once the build has planned,
//! and [`update`] resolves them again. The packages of `debian` entries are resolved (or taken
//! from the lock) and their `.deb` files put into the store while planning (`debian.rs`). While planning, `elf.rs` checks that every cargo binary's
//! ELF interpreter is in the image's merged filesystem. After emitting, `load.rs` hands the
//! image to podman or docker (`--load`). The images of a workspace ([`build_many`]) share
//! what is the same for all of them (`shared.rs`: cargo's workspace, a shared layer's plan, the
//! stat index, `rustc -vV`), done once. The stage filesystems layers copy out of live with
//! [`crate::rootfs`].
//!
//! Progress leaves the library as [`Event`]s given to a callback (from several threads): the CLI
//! prints them, tools get them as JSON. The library never prints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::cargo::{self, CargoOptions};
use crate::layer::{self, LayerBlob};
use crate::oci;
use crate::plan::LayerGraph;
use crate::spec::{self, ImageSpec};
use crate::store::{self, StatIndex, Store};

mod base;
pub mod builtin;
mod debian;
mod elf;
mod emit;
mod events;
mod execute;
mod load;
mod options;
mod pins;
mod planner;
mod provenance;
mod remote;
mod sbom;
mod shared;

pub use events::Event;
pub use load::LoadEngine;
use options::{image_dir, platform_specs, Context};
pub use pins::{lock_path, update, LockChange};
use shared::Shared;

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
    /// The ignore file cannot be read or has a bad pattern.
    #[error(transparent)]
    IgnoreFile(Box<layer::Error>),
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
    #[error("layer `{layer}`: Debian packages: {source}")]
    Debian {
        layer: String,
        #[source]
        source: Box<crate::debian::Error>,
    },
    #[error("signing: {0}")]
    Sign(Box<crate::sign::Error>),
    #[error("pushing image {reference}: {source}")]
    Push {
        reference: String,
        #[source]
        source: Box<crate::registry::Error>,
    },
    /// A `--cache-from` / `--cache-to` that is not a repository reference.
    #[error("invalid cache repository `{reference}`: {source}; give a repository like ghcr.io/acme/cache")]
    CacheReference {
        reference: String,
        #[source]
        source: crate::registry::InvalidReference,
    },
    /// `no_output` without a push: the build would leave nothing.
    #[error("a build without a local output (--no-output) must push the image (--push or --push-to REPOSITORY), or it leaves nothing")]
    NothingToOutput,
    #[error("there is no stage `{target}` to build (--stage); the stages are {stages}")]
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
    #[error("--load: {wanted} is not installed (not on PATH); install podman (`apt install podman`) or docker, or name the one you have with --load=podman|docker")]
    NoLoadEngine { wanted: String },
    #[error("--load: could not run `{program} load`: {source}")]
    LoadSpawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--load: `{program} load` failed ({status}):\n{output}")]
    LoadFailed {
        program: String,
        status: String,
        output: String,
    },
    #[error("--load: could not make a scratch directory in {}: {source}", path.display())]
    LoadScratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tarball or host file could not be read for the image's SBOM.
    #[error("cannot read {path} for the image's SBOM: {source}")]
    SbomFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The spec or `Cargo.lock` could not be read for the image's provenance.
    #[error("cannot read {path} for the image's provenance: {source}")]
    ProvenanceFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An invalid digest or platform met while building ([`crate::types`] checks them).
    #[error(transparent)]
    Value(#[from] crate::types::Error),
    /// A cargo binary could not be read for the dynamic loader it needs.
    #[error("cannot read the ELF program headers of cargo binary {path}: {source}")]
    ReadBinary {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A dynamically linked cargo binary whose loader the image does not have.
    #[error("{message}")]
    MissingInterpreter {
        /// The binary's path in the image.
        binary: String,
        /// The loader it asks for.
        interpreter: String,
        message: String,
    },
    /// The lock file cannot be read or written.
    #[error(transparent)]
    Lock(#[from] crate::lock::Error),
    /// `--locked`, and the lock lacks the packages of a `debian` entry for a platform.
    #[error("layer `{layer}`: {what} are not pinned in {} and --locked forbids resolving them; run `cargo image update` to resolve them and write the lock (or build without --locked)", lock.display())]
    DebianNotLocked {
        layer: String,
        /// `the Debian packages `a`, `b` of suite `s` for PLATFORM`.
        what: String,
        lock: PathBuf,
    },
    /// `--locked`, and the lock lacks a registry base of the spec (or its platform).
    #[error("base image {base} {reason} {} and --locked forbids adding it; run `cargo image update {base}` to resolve it and write the lock (or build without --locked)", lock.display())]
    NotLocked {
        base: String,
        lock: PathBuf,
        reason: String,
    },
    /// The image the lock's index pin gives for a platform is not the manifest it pins.
    #[error("base image {base}: {} pins {pinned} for {platform}, and its pinned index gives {found}; run `cargo image update {base}` to pin it again", lock.display())]
    LockMismatch {
        base: String,
        lock: PathBuf,
        platform: String,
        pinned: String,
        found: String,
    },
    /// `cargo image update BASE` names no registry base of the spec.
    #[error("`{base}` is not a registry base of the spec (`from` of a stage); its registry bases are {bases}")]
    UnknownBase { base: String, bases: String },
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
    /// Sign the image (and attest its SBOM and provenance) with this key, in the layout and,
    /// when pushing, in the registry (`--sign-key`).
    pub sign: Option<crate::sign::Signer>,
    /// Load the image for the host's platform into a local container engine after building it.
    pub load: Option<LoadEngine>,
    /// Build this stage as the image instead of the spec's image stage.
    pub target: Option<String>,
    /// Build for these platforms instead of the spec's `platforms` (when non-empty).
    pub platforms: Vec<oci::Platform>,
    /// Write an image index even for a single platform.
    pub index: bool,
    /// Fail when the lock file (`image.lock`) lacks a registry base of the spec (or a platform
    /// of it) instead of resolving it and adding it to the lock.
    pub locked: bool,
    /// Remote layer caches (`registry/repository`) asked, in order, for every layer the store
    /// lacks before it is built (see the `remote` step in the module docs). Empty: the
    /// spec's `cache-from`.
    pub cache_from: Vec<String>,
    /// Remote layer caches every layer of the build is recorded in. Empty: the spec's
    /// `cache-to`.
    pub cache_to: Vec<String>,
    /// Write no local output: the image is only pushed (`push` is required). Layers found in a
    /// remote cache of the registry pushed to are then mounted there, never downloaded.
    pub no_output: bool,
}

/// Where a build pushes its image.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// The repositories to push to, in order (`registry/name`, a tag or digest in it is
    /// ignored); none means the spec's `name`. Every tag of the build is pushed to each (one
    /// manifest upload per tag); a blob the store saw in another repository of the same
    /// registry (an earlier one of this list, say) is mounted from there, not uploaded.
    pub repositories: Vec<String>,
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
    /// `name@sha256:...` of each repository the image was pushed to, in order (empty when it
    /// was not pushed).
    pub pushed: Vec<String>,
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
    let spec = spec::load(spec_path)?;
    on_event(Event::SpecLoaded {
        spec: spec.spec_path.clone(),
        name: spec.name.clone(),
    });
    plan_spec(&spec, opts, on_event)
}

/// The `cargo metadata` a caller read a workspace's specs from ([`spec::workspace_specs_from`]),
/// to hand to [`build_many`] or [`plan_many`] so that they do not ask cargo again.
#[derive(Debug, Clone)]
pub struct KnownWorkspace {
    /// The directory cargo ran in.
    pub dir: PathBuf,
    /// What it said.
    pub metadata: cargo::Metadata,
    /// When cargo itself answered (no kept answer held): what keeps its answer for the next
    /// process; a build keeps it in its store.
    pub fresh: Option<cargo::FreshMetadata>,
}

/// What `cargo metadata --no-deps` says in `dir`, asked as the builds ask it: an answer an
/// earlier build kept (in `store`, else the default store of `dir`'s project or of the target
/// directory the environment names) while nothing it was read from changed, else cargo's own
/// (see `cargo::metadata_kept`). A warm build of a workspace then runs no cargo at all.
pub fn workspace_metadata(
    dir: &Path,
    store: Option<&Path>,
) -> Result<KnownWorkspace, cargo::Error> {
    let (metadata, fresh) = shared::metadata_kept(dir, store)?;
    Ok(KnownWorkspace {
        dir: dir.to_path_buf(),
        metadata,
        fresh,
    })
}

/// Builds several specs (the images of a cargo workspace) in parallel, sharing the store: a
/// layer several images have (a shared base layer) is keyed and built once, the other builds
/// wait for it and reuse it. What is the same for every image is asked once (cargo's
/// workspace, the git revision, the toolchain: `shared.rs`); `workspace` is the
/// `cargo metadata` the specs were read from ([`workspace_metadata`]), if the caller has it;
/// a fresh answer of cargo's in it is kept in the store for the next build. `on_event` gets
/// each event with the name of the image it belongs to. Every spec is built even when another
/// fails; the results come back in the order of `specs`.
pub fn build_many(
    specs: &[ImageSpec],
    workspace: Option<&KnownWorkspace>,
    opts: &BuildOptions,
    on_event: &(dyn Fn(&str, Event) + Sync),
) -> Vec<Result<BuildOutput, Error>> {
    let shared = workspace_shared(opts, workspace);
    let results = for_each_image(specs, opts, on_event, |spec, on_event| {
        build_spec_in(spec, opts, &shared, on_event)
    });
    shared.save_stat_indexes();
    results
}

/// Plans several specs (the images of a cargo workspace) in parallel, as [`build_many`] builds
/// them: what is the same for every image is asked once, and a layer several images share is
/// keyed once (the others take its plan). Planning writes nothing, the stat index included.
/// `on_event` gets each event with the name of the image it belongs to; the graphs come back
/// in the order of `specs`, each planned even when another fails.
pub fn plan_many(
    specs: &[ImageSpec],
    workspace: Option<&KnownWorkspace>,
    opts: &BuildOptions,
    on_event: &(dyn Fn(&str, Event) + Sync),
) -> Vec<Result<LayerGraph, Error>> {
    let shared = workspace_shared(opts, workspace);
    for_each_image(specs, opts, on_event, |spec, on_event| {
        plan_spec_in(spec, opts, &shared, on_event)
    })
}

/// What the images of one workspace invocation share, knowing `workspace` (the `cargo
/// metadata` the specs were read from and where it ran) when the caller has it.
fn workspace_shared(opts: &BuildOptions, workspace: Option<&KnownWorkspace>) -> Shared {
    let shared = Shared::for_many(options::threads(opts)).with_store(opts.store.as_deref());
    if let Some(known) = workspace {
        shared.knows_workspace(&known.dir, &known.metadata);
        if let Some(fresh) = &known.fresh {
            shared.keeps(fresh.clone(), &known.metadata);
        }
    }
    shared
}

/// Runs `work` for every spec, several images at a time, after its `SpecLoaded` event, with
/// its events named by the image; the results in the order of `specs`.
///
/// Images spend much of their time waiting (for a shared layer another image plans or builds,
/// for `fsync`, for cargo): more of them are under way than there are threads (`--jobs`), each
/// on a plain thread (never a rayon worker, which could be lent to another image while it
/// waits).
fn for_each_image<T: Send + Sync>(
    specs: &[ImageSpec],
    opts: &BuildOptions,
    on_event: &(dyn Fn(&str, Event) + Sync),
    work: impl Fn(&ImageSpec, &(dyn Fn(Event) + Sync)) -> T + Sync,
) -> Vec<T> {
    let threads = options::threads(opts);
    let work = |spec: &ImageSpec| {
        let name = spec.name.as_str();
        on_event(
            name,
            Event::SpecLoaded {
                spec: spec.spec_path.clone(),
                name: spec.name.clone(),
            },
        );
        work(spec, &|e| on_event(name, e))
    };
    let next = AtomicUsize::new(0);
    let results: Vec<OnceLock<T>> = specs.iter().map(|_| OnceLock::new()).collect();
    std::thread::scope(|scope| {
        for _ in 0..(IMAGES_PER_THREAD * threads).clamp(1, specs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(i) else { break };
                let _ = results[i].set(work(spec));
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().expect("every image is done"))
        .collect()
}

/// Drops `value` on a thread of its own (dropping a large value, such as the tree of a layer
/// of many files, frees memory piece by piece). When no thread can be started, the value is
/// dropped here, with the closure that holds it.
pub(super) fn drop_in_background<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("drop".into())
        .spawn(move || drop(value));
}

/// How many images of a workspace build are under way per thread (`--jobs`).
const IMAGES_PER_THREAD: usize = 4;

fn store_err(path: &Path, e: store::Error) -> Error {
    Error::Store {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
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

/// The git index of the checkout holding the spec's context, for alias keys; `None` when the
/// context is in no git worktree or its index cannot be used (everything is then keyed by
/// reading, as without it: see [`crate::git_index`] for what refuses an index).
fn git_index(spec: &ImageSpec) -> Option<crate::git_index::GitIndex> {
    crate::git_index::GitIndex::discover(&spec.context)
        .ok()
        .flatten()
}

/// The remote caches of a build: `--cache-from`/`--cache-to` (or their environment variables)
/// when given, else the spec's `cache-from`/`cache-to`; each list decided on its own.
fn remote_caches<'a>(spec: &'a ImageSpec, opts: &'a BuildOptions) -> (&'a [String], &'a [String]) {
    let pick =
        |given: &'a [String], spec: &'a [String]| if given.is_empty() { spec } else { given };
    (
        pick(&opts.cache_from, &spec.cache_from),
        pick(&opts.cache_to, &spec.cache_to),
    )
}

/// Plans an already loaded spec (see [`plan`]): the same planning a build does, with the store
/// only read (when it exists), never written. With [`BuildOptions::cache_from`] every layer the
/// store lacks is looked up in the remote caches (nothing downloaded): its node's `remote`.
pub fn plan_spec(
    spec: &ImageSpec,
    opts: &BuildOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<LayerGraph, Error> {
    plan_spec_in(
        spec,
        opts,
        &Shared::default().with_store(opts.store.as_deref()),
        on_event,
    )
}

/// [`plan_spec`] with what the plans of this invocation share.
fn plan_spec_in(
    spec: &ImageSpec,
    opts: &BuildOptions,
    shared: &Shared,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<LayerGraph, Error> {
    let cx = Context::new(spec, opts, shared)?;
    let (platforms, as_index) = platform_specs(spec, opts)?;
    let store_root = cx.store_root.clone();
    let store = if store_root.join("version").is_file() {
        Some(Store::open(&store_root).map_err(|e| store_err(&store_root, e))?)
    } else {
        None
    };
    // Read, never saved: planning writes nothing.
    let stat_index = match &store {
        Some(s) => {
            let (index, loading) = shared
                .stat_index(s)
                .map_err(|e| store_err(&store_root, e))?;
            // Loaded before planning, so that its error comes before the plan is printed.
            if let Some(loading) = loading {
                loading.finish().map_err(|e| store_err(&store_root, e))?;
            }
            index
        }
        None => Arc::new(RwLock::new(StatIndex::new())),
    };
    let pins = pins::Pins::open(spec, opts, shared)?;
    let (cache_from, _) = remote_caches(spec, opts);
    let remote = remote::RemoteCache::new(cache_from, &[], &opts.registry, &cx.registry, on_event)?;
    let git = remote.as_ref().and_then(|_| git_index(spec));
    let keying = planner::Keying {
        stat_index: &stat_index,
        git: git.as_ref(),
        remote: remote.as_ref(),
        cache_from,
        memo: &shared.layers,
        // `cargo image plan` prints real keys: it reads what it must to know them.
        key_while_writing: false,
    };
    let mut graph = planner::plan(
        &cx,
        opts,
        &pins,
        platforms,
        as_index,
        store.as_ref(),
        &keying,
        &|event| match event {
            // With remote caches the graph is reported once they are asked (below).
            Event::Plan { .. } if !cache_from.is_empty() => {}
            other => on_event(other),
        },
    )?
    .graph;
    if let Some(remote) = &remote {
        for node in &mut graph.nodes {
            if node.cached == Some(false)
                && matches!(node.kind, crate::plan::NodeKind::BuildLayer { .. })
            {
                node.remote = node.key.and_then(|key| remote.find(&key.hex()));
            }
        }
        on_event(Event::Plan {
            graph: graph.clone(),
        });
    }
    Ok(graph)
}

/// Builds an already loaded spec: options, plan, execute, emit (see the module docs).
pub fn build_spec(
    spec: &ImageSpec,
    opts: &BuildOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<BuildOutput, Error> {
    let shared = Shared::default().with_store(opts.store.as_deref());
    let output = build_spec_in(spec, opts, &shared, on_event);
    drop_in_background(shared);
    output
}

/// [`build_spec`] with what the builds of this invocation share.
fn build_spec_in(
    spec: &ImageSpec,
    opts: &BuildOptions,
    shared: &Shared,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<BuildOutput, Error> {
    let cx = Context::new(spec, opts, shared)?;
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

    if opts.no_output && opts.push.is_none() {
        return Err(Error::NothingToOutput);
    }
    // The output is checked (and its temporary sibling made) before any long work.
    let destination = emit::Destination::create(&cx, opts.no_output)?;
    let store = Store::open(&cx.store_root).map_err(|e| store_err(&cx.store_root, e))?;
    let _lock = store
        .lock_shared()
        .map_err(|e| store_err(&cx.store_root, e))?;
    // Cargo's answers, for the next build to take instead of running cargo.
    shared.keep_cargo_answers(&store);

    // Loads while the plan walks the trees (a single build's own index).
    let (stat_index, loading) = shared
        .stat_index(&store)
        .map_err(|e| store_err(&cx.store_root, e))?;
    let saves_stat_index = loading.is_some();
    // The provenance statement's `rustc -vV`, asked while the plan and cargo run.
    let toolchain = shared.toolchain(spec);
    let pins = pins::Pins::open(spec, opts, shared)?;
    let (cache_from, cache_to) = remote_caches(spec, opts);
    let remote =
        remote::RemoteCache::new(cache_from, cache_to, &opts.registry, &cx.registry, on_event)?
            .map(|remote| match &opts.push {
                Some(push) if opts.no_output => {
                    remote.only_pushing_to(match push.repositories.as_slice() {
                        [] => std::slice::from_ref(&spec.name),
                        given => given,
                    })
                }
                _ => remote,
            });
    let git = remote.as_ref().and_then(|_| git_index(spec));
    // Layers are keyed while written (`plan`'s module docs) only in a build of one image
    // (the images of a workspace share layers by their planned keys) for one platform (the
    // platforms' layers share by key too) without remote caches (a layer is looked up in them
    // by its key, or its alias, before it is built).
    let key_while_writing = saves_stat_index && platforms.len() == 1 && remote.is_none();
    let keying = planner::Keying {
        stat_index: &stat_index,
        git: git.as_ref(),
        remote: remote.as_ref(),
        cache_from,
        memo: &shared.layers,
        key_while_writing,
    };
    let mut plan = planner::plan(
        &cx,
        opts,
        &pins,
        platforms,
        as_index,
        Some(&store),
        &keying,
        on_event,
    )?;
    if let Some(loading) = loading {
        loading.finish().map_err(|e| store_err(&cx.store_root, e))?;
    }
    // Newly learnt content hashes serve the next build; failing to save them costs only speed.
    // (The builds of a workspace share one index, saved when they are done.)
    if saves_stat_index {
        let _ = stat_index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .save(&store);
    }
    // Bases resolved without the lock are pinned now: the next build takes the same ones.
    pins.save(on_event)?;

    // The alias keys of the plan's layers, for the cache's alias records.
    let aliases: HashMap<String, String> = plan
        .work
        .iter()
        .filter_map(|w| match w {
            planner::Work::Layer(l) => Some((l.plan.key?.hex(), l.plan.alias?.hex())),
            _ => None,
        })
        .collect();
    let outputs = execute::execute(
        &mut plan,
        &store,
        &stat_index,
        cx.threads,
        remote.as_ref(),
        !opts.no_output,
        on_event,
    )?;
    let output = std::thread::scope(|scope| {
        // The content hashes learnt while writing layers keyed then, for the next build: saved
        // while the output is written.
        if saves_stat_index && key_while_writing {
            scope.spawn(|| {
                let _ = stat_index
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .save(&store);
            });
        }
        if let Some(remote) = &remote {
            remote.export(&execute::layers_of(&plan, &outputs), &aliases, &store);
        }
        emit::emit(
            spec,
            &cx,
            opts,
            &plan,
            outputs,
            &store,
            destination,
            &toolchain,
            on_event,
        )
    });
    // The plan and the stat index hold a path (or more) per input file: freed beside the
    // caller's work, not before it gets the output.
    drop_in_background((plan, stat_index));
    output
}
