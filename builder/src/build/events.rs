//! The events a build reports, in the order it happens: spec loaded, cargo builds, bases
//! resolved, the plan, then the layers (events of parallel layers interleave), the push and
//! the finished image. The CLI prints them as status lines or one JSON object each.

use std::path::PathBuf;

use crate::plan::LayerGraph;

/// Progress of a build, in the order it happens (layer events of parallel layers interleave).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The spec was read.
    SpecLoaded { spec: PathBuf, name: String },
    /// A cargo build starts.
    CargoBuild { what: String },
    /// A cargo build finished with this executable: `strip` is the setting it was built with
    /// (`none`, `debuginfo` or `symbols`), `size` its size in bytes, `debug_info` and `symbols`
    /// the bytes of it that are debug information and symbol table (read from its section
    /// headers: what stripping would still remove).
    CargoFinished {
        what: String,
        executable: PathBuf,
        strip: &'static str,
        size: u64,
        debug_info: u64,
        symbols: u64,
    },
    /// The base image was resolved; `pinned_by` names the lock file whose pin it came from
    /// (`image.lock`), `null` when it was resolved without one.
    BaseResolved {
        base: String,
        digest: String,
        layers: usize,
        pinned_by: Option<String>,
    },
    /// The packages of a `debian` entry were resolved for `architecture` (`packages` of them,
    /// with their dependencies); `pinned_by` names the lock file they came from, `null` when
    /// they were resolved from the suite's mirrors.
    DebianResolved {
        suite: String,
        architecture: String,
        packages: usize,
        pinned_by: Option<String>,
    },
    /// Registry bases the lock lacked were resolved and added to the lock file at `path`.
    Locked { path: PathBuf, bases: Vec<String> },
    /// The graph is planned: every node with its key and whether the store has it. A layer
    /// keyed while it is written has no key yet (`null`), nor have the image and index above
    /// it: its `layer-finished` event gives the layer's key.
    Plan { graph: LayerGraph },
    /// Another build (a process sharing the store) is writing this layer, which this build
    /// lacks too and keys only while it is written: this build waits for it, then takes it
    /// from the store (its `layer-finished` event says `cached`), or builds it when it cannot.
    LayerWaiting { name: String },
    /// A layer the store lacks starts building; `total` is its content size in bytes.
    LayerStarted { name: String, total: u64 },
    /// Content bytes of a building layer written so far.
    LayerProgress { name: String, done: u64, total: u64 },
    /// A layer is ready: built now, or `cached` (in the store, or in the remote cache
    /// `remote`, a `registry/repository` of --cache-from); `key` is its node key (for a layer
    /// keyed while written, the one computed from the bytes written).
    LayerFinished {
        name: String,
        key: String,
        digest: String,
        diff_id: String,
        size: u64,
        media_type: String,
        cached: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        remote: Option<String>,
    },
    /// A remote layer cache failed (`repository`, empty when no client could be made): it is
    /// not asked again in this build, whose layers are built locally. Given once per build.
    CacheWarning { repository: String, message: String },
    /// The build's layers are recorded in the remote cache `repository` (`records` new ones).
    CacheExported { repository: String, records: usize },
    /// A blob of a push: `uploaded`, `skipped` (the registry had it) or `mounted` (from another
    /// repository of the registry: the base's, or one the store saw it in).
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
        /// The referrers (each image's SBOM, ...) pushed with it.
        referrers: usize,
    },
    /// The image `digest` was signed with the key file `key` as repository `identity`, and its
    /// referrers attested (their predicate types), in the layout.
    Signed {
        digest: String,
        identity: String,
        key: PathBuf,
        attestations: Vec<String>,
    },
    /// The layout's signatures are in the registry: `tags` (`sha256-<hex>.sig`, `.att`) of
    /// `repository`.
    SignaturesPushed {
        repository: String,
        tags: Vec<String>,
    },
    /// The image for `platform` was loaded into `engine` (`podman`, `docker`) as `references`;
    /// `image_id` is its config digest, the id the engine shows.
    Loaded {
        engine: String,
        platform: String,
        references: Vec<String>,
        image_id: String,
    },
    /// The image is written and in place.
    ImageFinished {
        name: String,
        tags: Vec<String>,
        digest: String,
        path: PathBuf,
    },
}
