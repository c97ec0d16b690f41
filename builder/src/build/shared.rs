//! What the builds of one invocation share: work whose answer is the same for every image
//! of a cargo workspace, done once instead of once per image ([`Shared`]).
//!
//! [`super::build_many`] builds the images of a workspace in parallel, each through the same
//! steps as a single build. Those steps ask things whose answer does not depend on the image:
//!
//! - **cargo's workspace** (`cargo metadata`, tens of milliseconds a run): the target
//!   directory and workspace root of a directory. One run answers for the workspace root and
//!   every package directory of it, unless a cargo configuration file between such a
//!   directory and the root could make cargo say something else there
//!   ([`crate::cargo::Metadata::describes`]): then cargo runs there too.
//! - **the git revision** of the context (`git rev-parse`, for the revision annotation), and
//!   the toolchain's `rustc -vV` (for provenance), once per directory they run in.
//! - **what registries answered**: whether a loopback registry speaks HTTPS, whether it asks
//!   for credentials, whether it has the referrers API, and the TLS configuration (the
//!   system's root certificates): the remote cache's, the bases' and the push's registry
//!   clients share one [`crate::registry::Learnt`], so each is asked once.
//! - **layer plans**: a layer the images share (the workspace's `[[layer]]`s sit below each
//!   package's) has the same key in every image, and keying it walks, `stat`s and looks up
//!   every file of its trees. [`LayerMemo`] keys it once: a layer whose recipe and inputs
//!   are the same as a layer already planned takes that plan (see its docs for what "the
//!   same" covers). In a workspace build the others wait while one image plans it (on the
//!   memo's own threads, so that waiting cannot deadlock the shared rayon pool).
//!
//! A single build gets a fresh [`Shared`]: nothing outlives one invocation of the library, so
//! a long-running caller sees every change between two builds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use super::provenance::Toolchain;
use crate::cargo::{self, Metadata, Workspace};
use crate::layer::{self, Reserved, SourceContext, WriteOptions};
use crate::plan::{Key, LayerPlan};
use crate::spec::{self, ImageSpec, LayerSpec, Source};
use crate::store::{Loading, StatIndex, Store};

/// What `cargo metadata` says in `dir`: an answer an earlier build kept in a store while it
/// still holds ([`cargo::metadata_kept`]), else cargo's own, with what keeps it for the next
/// process. The stores looked in: `store` (`--store`), then the default store
/// (`target/image/.store`) of each directory at or above `dir` that has a `Cargo.toml`, and of
/// a target directory the environment names. Where an answer is found does not matter for its
/// correctness: it is checked against what it was read from.
pub(super) fn metadata_kept(
    dir: &Path,
    store: Option<&Path>,
) -> Result<(Metadata, Option<cargo::FreshMetadata>), cargo::Error> {
    let mut places: Vec<PathBuf> = store.iter().map(|s| s.to_path_buf()).collect();
    if let Ok(canonical) = dir.canonicalize() {
        for a in canonical.ancestors() {
            if a.join("Cargo.toml").is_file() {
                places.push(a.join("target").join("image").join(".store"));
            }
        }
    }
    for var in ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"] {
        if let Some(target) = std::env::var_os(var).map(PathBuf::from) {
            if target.is_absolute() {
                places.push(target.join("image").join(".store"));
            }
        }
    }
    cargo::metadata_kept(dir, &places)
}

/// What the builds of one invocation share (see the module docs).
#[derive(Default)]
pub(super) struct Shared {
    /// `cargo metadata` as run in each directory (`None`: it failed there).
    workspaces: Mutex<Vec<(PathBuf, Option<Metadata>)>>,
    /// `git rev-parse HEAD` in each context.
    revisions: Mutex<HashMap<PathBuf, Option<String>>>,
    /// `rustc -vV` in each context.
    toolchains: Mutex<HashMap<PathBuf, Arc<Toolchain>>>,
    /// The stat index of each store, loaded once; `Some` when the builds share them and
    /// [`save_stat_indexes`](Self::save_stat_indexes) saves them at the end.
    stat_indexes: Option<Mutex<Vec<SharedStatIndex>>>,
    pub layers: LayerMemo,
    /// What the registry clients of the invocation learnt of registries.
    pub registry: crate::registry::Learnt,
    /// The store given on the command line, where answers of `cargo metadata` kept by earlier
    /// builds are looked for first (see [`workspace`](Self::workspace)).
    store: Option<PathBuf>,
    /// Answers cargo gave in this invocation, to keep in the store
    /// ([`keep_cargo_answers`](Self::keep_cargo_answers)).
    fresh: Mutex<Vec<(cargo::FreshMetadata, Metadata)>>,
}

/// A store and the stat index the builds share for it.
type SharedStatIndex = (Store, Arc<RwLock<StatIndex>>);

/// The packages resolved for a `debian` entry (an entry of [`layer::DebianPackages`]).
type Packages = Arc<Vec<(crate::debian::Package, PathBuf)>>;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// What the builds of a workspace share: everything above, and the stores' stat indexes
    /// (loaded once, saved once by [`save_stat_indexes`](Self::save_stat_indexes) when they
    /// are done; a single build saves its own right after planning).
    /// Layer plans are computed on `threads` threads of their own and waited for.
    pub fn for_many(threads: usize) -> Self {
        Shared {
            stat_indexes: Some(Mutex::default()),
            layers: LayerMemo::waiting(threads),
            ..Shared::default()
        }
    }

    /// The same, with `store` (`--store`) as the first place kept answers of `cargo metadata`
    /// are looked for.
    pub fn with_store(mut self, store: Option<&Path>) -> Self {
        self.store = store.map(Path::to_path_buf);
        self
    }

    /// The stat index of `store`. A single build gets one of its own, loading on a thread of
    /// its own while the build plans, with the [`Loading`] whose `finish` gives the load's
    /// error: that build saves the index itself. The builds of a workspace get the one they
    /// share and `None`: [`save_stat_indexes`](Self::save_stat_indexes) saves it.
    pub fn stat_index(
        &self,
        store: &Store,
    ) -> Result<(Arc<RwLock<StatIndex>>, Option<Loading>), crate::store::Error> {
        let Some(shared) = &self.stat_indexes else {
            let (index, loading) = StatIndex::load_in_background(store);
            return Ok((index, Some(loading)));
        };
        let mut indexes = locked(shared);
        if let Some((_, index)) = indexes.iter().find(|(s, _)| s.root() == store.root()) {
            return Ok((index.clone(), None));
        }
        let index = Arc::new(RwLock::new(StatIndex::load(store)?));
        indexes.push((store.clone(), index.clone()));
        Ok((index, None))
    }

    /// Saves the stat indexes the builds shared (what they learnt; failing costs only speed).
    pub fn save_stat_indexes(&self) {
        for (store, index) in self.stat_indexes.iter().flat_map(|m| locked(m).clone()) {
            let _ = index
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .save(&store);
        }
    }

    /// The cargo workspace `dir` belongs to, as [`cargo::workspace`] says (`None` when cargo
    /// cannot say), from an earlier answer when one holds for `dir`.
    pub fn workspace(&self, dir: &Path) -> Option<Workspace> {
        // Held while cargo runs: two images asking at once wait for one run.
        let mut known = locked(&self.workspaces);
        if let Some((_, meta)) = known.iter().find(|(ran_in, _)| ran_in == dir) {
            return meta.as_ref().map(|m| Workspace::of(m, dir));
        }
        let answering = known.iter().find_map(|(ran_in, meta)| {
            meta.as_ref()
                .filter(|m| m.describes(ran_in) && m.describes(dir))
        });
        if let Some(meta) = answering {
            return Some(Workspace::of(meta, dir));
        }
        // Outside a cargo project cargo can only fail: it is not run.
        let meta = cargo::in_project(dir).then(|| self.metadata(dir)).flatten();
        let workspace = meta.as_ref().map(|m| Workspace::of(m, dir));
        known.push((dir.to_path_buf(), meta));
        workspace
    }

    /// What `cargo metadata` says in `dir`: an answer an earlier build kept while it still
    /// holds, else cargo's own, remembered to be kept ([`metadata_kept`]).
    fn metadata(&self, dir: &Path) -> Option<Metadata> {
        let (meta, fresh) = metadata_kept(dir, self.store.as_deref()).ok()?;
        if let Some(fresh) = fresh {
            self.keeps(fresh, &meta);
        }
        Some(meta)
    }

    /// Keeps `meta`, a fresh answer of cargo's, in the store of the first build that ends
    /// ([`keep_cargo_answers`](Self::keep_cargo_answers)).
    pub fn keeps(&self, fresh: cargo::FreshMetadata, meta: &Metadata) {
        locked(&self.fresh).push((fresh, meta.clone()));
    }

    /// Keeps the answers cargo gave in this invocation in `store`, for the next build (failing
    /// to costs only speed). Only builds keep them: planning writes nothing.
    pub fn keep_cargo_answers(&self, store: &Store) {
        for (fresh, meta) in std::mem::take(&mut *locked(&self.fresh)) {
            let _ = fresh.keep(store.root(), &meta);
        }
    }

    /// Takes `metadata` as what `cargo metadata` says in `dir` (the caller ran it there).
    pub fn knows_workspace(&self, dir: &Path, metadata: &Metadata) {
        locked(&self.workspaces).push((dir.to_path_buf(), Some(metadata.clone())));
    }

    /// The git commit checked out where `dir` is ([`spec::git_head`]), asked once per
    /// directory.
    pub fn revision(&self, dir: &Path) -> Option<String> {
        locked(&self.revisions)
            .entry(dir.to_path_buf())
            .or_insert_with(|| spec::git_head(dir).ok())
            .clone()
    }

    /// The toolchain of the spec's provenance ([`Toolchain::start`]), one per context: the
    /// images of a workspace share its `rustc -vV`.
    pub fn toolchain(&self, spec: &ImageSpec) -> Arc<Toolchain> {
        let mut toolchains = locked(&self.toolchains);
        match toolchains.get(&spec.context) {
            Some(toolchain) => {
                toolchain.start_for(spec);
                toolchain.clone()
            }
            None => {
                let toolchain = Arc::new(Toolchain::start(spec));
                toolchains.insert(spec.context.clone(), toolchain.clone());
                toolchain
            }
        }
    }
}

/// Layer plans already computed in this invocation, by everything a layer's plan depends on
/// besides the content of its files ([`LayerRecipe`]).
///
/// With a pool of its own ([`LayerMemo::waiting`], the builds of a workspace), a layer being
/// planned by one image is waited for by the others, and it is computed on that pool: the
/// images plan on the shared rayon pool, where a thread that waits could hold a piece of the
/// very computation it waits for (rayon lets a thread that waits for its own work run
/// someone else's), but no thread of the memo's pool ever waits for the memo. Without one
/// (a single build), two planners of one layer at once both compute it.
#[derive(Default)]
pub(super) struct LayerMemo {
    plans: Mutex<Vec<(LayerRecipe, Slot)>>,
    ready: Condvar,
    pool: Option<rayon::ThreadPool>,
}

/// A remembered layer plan.
enum Slot {
    Computing,
    Done(Arc<LayerPlan>),
    /// Computing it failed (or panicked): every image computes it for itself, and reports its
    /// own error.
    Failed,
}

impl LayerMemo {
    /// A memo whose computations run on `threads` threads of their own, and are waited for.
    /// Without threads, one that does not wait.
    fn waiting(threads: usize) -> Self {
        LayerMemo {
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("layer-plan-{i}"))
                .build()
                .ok(),
            ..LayerMemo::default()
        }
    }

    /// The plan of a layer whose recipe is `recipe` (`None`: do not remember it), computed by
    /// `compute` unless a layer with the same recipe was planned already (or is being planned,
    /// when the memo waits). Errors are not remembered: each image reports its own.
    pub fn plan(
        &self,
        recipe: Option<LayerRecipe>,
        compute: impl FnOnce() -> Result<LayerPlan, layer::Error> + Send,
    ) -> Result<LayerPlan, layer::Error> {
        let Some(recipe) = recipe else {
            return compute();
        };
        let mut plans = locked(&self.plans);
        let at = loop {
            match plans.iter().position(|(r, _)| *r == recipe) {
                None => {
                    plans.push((recipe, Slot::Computing));
                    break plans.len() - 1;
                }
                Some(at) => match &plans[at].1 {
                    Slot::Done(plan) => return Ok(LayerPlan::clone(plan)),
                    Slot::Computing if self.pool.is_some() => {
                        plans = self.ready.wait(plans).unwrap_or_else(|p| p.into_inner());
                    }
                    Slot::Computing | Slot::Failed => {
                        drop(plans);
                        return compute();
                    }
                },
            }
        };
        drop(plans);
        // The slot is settled on the thread that computes (a pool thread), before the
        // caller's thread, which may be waiting for it further up its stack, takes it.
        let settle = || {
            let mut guard = Settle {
                memo: self,
                at,
                plan: None,
            };
            let result = compute();
            if let Ok(plan) = &result {
                // Without the tree: a later image with this recipe has the same key, so it
                // finds the layer built (or building, under the key's lock) by the first, and
                // a tree of every file is costly to copy and drop.
                guard.plan = Some(Arc::new(LayerPlan {
                    key: plan.key,
                    pending: plan.pending.clone(),
                    alias: plan.alias,
                    keyed_by_alias: plan.keyed_by_alias,
                    inputs: plan.inputs.clone(),
                    walked: plan.walked,
                    tree: None,
                }));
            }
            result
        };
        match &self.pool {
            Some(pool) => pool.install(settle),
            None => settle(),
        }
    }
}

/// Settles a slot of a [`LayerMemo`] when dropped: done with `plan`, else failed (an error,
/// or a panic unwinding), and wakes the images that wait for it.
struct Settle<'a> {
    memo: &'a LayerMemo,
    at: usize,
    plan: Option<Arc<LayerPlan>>,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        let slot = match self.plan.take() {
            Some(plan) => Slot::Done(plan),
            None => Slot::Failed,
        };
        locked(&self.memo.plans)[self.at].1 = slot;
        self.memo.ready.notify_all();
    }
}

/// Everything a layer's plan ([`crate::plan::layer_key`]) depends on besides the content of
/// the files it reads (which one invocation reads once anyway): the layer spec, the context
/// its paths are in, the write options (compression, mtime), the layer below, and for its
/// entries:
///
/// - host paths: each resolved root, and what the build's host filter reserves at it and
///   below it (the outputs of two images differ, but neither is inside a shared layer's
///   tree), and the ignore file;
/// - cargo entries: the binary cargo built;
/// - Debian entries: the packages resolved for the platform, with their `.deb` files;
/// - copies out of stages: the stage's key;
///
/// and the remote caches asked for alias keys.
#[derive(Debug, PartialEq)]
pub(super) struct LayerRecipe {
    spec: LayerSpec,
    context: PathBuf,
    write: WriteOptions,
    lower: Option<String>,
    hosts: Vec<(PathBuf, Option<Reserved>, Vec<Reserved>)>,
    ignore_file: Option<PathBuf>,
    cargo: Vec<Option<PathBuf>>,
    debian: Vec<Option<Packages>>,
    stages: Vec<Option<Key>>,
    cache_from: Vec<String>,
}

impl LayerRecipe {
    /// The recipe of `spec` planned with these inputs; `None` when a host path does not
    /// resolve (planning reports that, and there is nothing to remember).
    pub fn of(
        spec: &LayerSpec,
        ctx: &SourceContext<'_>,
        write: &WriteOptions,
        stage_keys: &HashMap<String, Key>,
        lower: Option<&str>,
        cache_from: &[String],
    ) -> Option<LayerRecipe> {
        let mut recipe = LayerRecipe {
            spec: spec.clone(),
            context: ctx.context.to_path_buf(),
            write: *write,
            lower: lower.map(str::to_owned),
            hosts: Vec::new(),
            ignore_file: ctx
                .host_filter
                .and_then(|f| f.ignore_file())
                .map(|f| f.path().to_path_buf()),
            cargo: Vec::new(),
            debian: Vec::new(),
            stages: Vec::new(),
            cache_from: cache_from.to_vec(),
        };
        for entry in &spec.entries {
            match &entry.source {
                Source::Path { path, .. } => {
                    // As the tree builder resolves it (it refuses a root outside the context).
                    let root = ctx.context.join(path).canonicalize().ok()?;
                    let (at, below) = match ctx.host_filter {
                        Some(f) => (
                            f.reserved(&root).cloned(),
                            f.reserved_below(&root).into_iter().cloned().collect(),
                        ),
                        None => (None, Vec::new()),
                    };
                    recipe.hosts.push((root, at, below));
                }
                Source::Cargo(src) => recipe.cargo.push(ctx.cargo_outputs.get(src).cloned()),
                Source::Debian(src) => recipe
                    .debian
                    .push(ctx.debian.and_then(|d| d.get(src)).cloned()),
                Source::Stage { stage, .. } => recipe.stages.push(stage_keys.get(stage).copied()),
                Source::Content(_) | Source::Dir | Source::Symlink(_) | Source::Tar { .. } => {}
            }
        }
        Some(recipe)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::layer::HostFilter;
    use crate::plan::{layer_key, ReadEveryFile};
    use crate::spec::{EntrySpec, Owner};
    use crate::types::Compression;

    fn base_layer() -> LayerSpec {
        LayerSpec {
            name: "base".into(),
            entries: vec![EntrySpec {
                dest: "data".into(),
                dest_is_dir: true,
                source: Source::Path {
                    path: "base".into(),
                    include: vec![],
                    exclude: vec![],
                },
                owner: Owner::default(),
                mode: None,
                dir_mode: None,
                platforms: vec![],
            }],
            remove: Vec::new(),
        }
    }

    /// The host filter of an image whose output is `output` (as the options make it).
    fn filter(output: &Path) -> HostFilter {
        HostFilter::new(
            vec![Reserved::path(output, "the output of this build")],
            None,
        )
    }

    const WRITE: WriteOptions = WriteOptions {
        compression: Compression::Gzip,
        mtime: 0,
        threads: 1,
    };

    #[test]
    fn a_shared_layer_is_planned_once_and_a_filter_that_reaches_into_it_is_another_recipe() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("base/sub")).unwrap();
        std::fs::write(root.join("base/a.txt"), "a").unwrap();
        std::fs::write(root.join("base/sub/b.txt"), "b").unwrap();
        let cargo = HashMap::new();
        let (one, two, inside) = (
            filter(&root.join("target/image/one")),
            filter(&root.join("target/image/two")),
            filter(&root.join("base/sub")),
        );
        let ctx = |f| SourceContext {
            context: &root,
            host_filter: Some(f),
            cargo_outputs: &cargo,
            stages: None,
            debian: None,
            scratch: None,
        };
        let spec = base_layer();
        let recipe =
            |f| LayerRecipe::of(&spec, &ctx(f), &WRITE, &HashMap::new(), None, &[]).unwrap();
        // Two images' outputs are outside the layer's tree: the same recipe.
        assert_eq!(recipe(&one), recipe(&two));
        // A reserved path inside the tree leaves part of it out: another recipe.
        assert_ne!(recipe(&one), recipe(&inside));
        let lower = LayerRecipe::of(&spec, &ctx(&one), &WRITE, &HashMap::new(), Some("x"), &[]);
        assert_ne!(Some(recipe(&one)), lower, "another layer below");

        for memo in [LayerMemo::default(), LayerMemo::waiting(2)] {
            let computed = AtomicUsize::new(0);
            let plan = |f| {
                memo.plan(Some(recipe(f)), || {
                    computed.fetch_add(1, Ordering::Relaxed);
                    layer_key(
                        &spec,
                        &ctx(f),
                        &WRITE,
                        &ReadEveryFile,
                        &HashMap::new(),
                        None,
                    )
                })
                .unwrap()
            };
            let (a, b, c) = (plan(&one), plan(&two), plan(&inside));
            assert_eq!(computed.load(Ordering::Relaxed), 2);
            assert_eq!(a.key, b.key);
            assert_eq!(a.inputs, b.inputs);
            assert_ne!(a.key, c.key, "the reserved directory is left out");
            // What the memo gives is what keying it again gives.
            let again = layer_key(
                &spec,
                &ctx(&two),
                &WRITE,
                &ReadEveryFile,
                &HashMap::new(),
                None,
            );
            assert_eq!(b.key, again.unwrap().key);
        }
    }

    #[test]
    fn a_failed_plan_is_not_remembered() {
        let memo = LayerMemo::waiting(2);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("base")).unwrap();
        let cargo = HashMap::new();
        let ctx = SourceContext::new(&root, &cargo);
        let spec = base_layer();
        let recipe = || LayerRecipe::of(&spec, &ctx, &WRITE, &HashMap::new(), None, &[]);
        let failing = memo.plan(recipe(), || {
            Err(layer::Error::ReadSource {
                path: root.join("base"),
                source: std::io::ErrorKind::PermissionDenied.into(),
            })
        });
        assert!(failing.is_err());
        let planned = memo.plan(recipe(), || {
            layer_key(&spec, &ctx, &WRITE, &ReadEveryFile, &HashMap::new(), None)
        });
        assert!(planned.is_ok(), "computed again: {planned:?}");
    }

    #[test]
    fn one_cargo_metadata_answers_for_the_root_and_its_packages() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/workspace")
            .canonicalize()
            .unwrap();
        let shared = Shared::default();
        let at_root = shared.workspace(&root).unwrap();
        let api = shared.workspace(&root.join("api")).unwrap();
        assert_eq!(locked(&shared.workspaces).len(), 1, "cargo ran once");
        let asked = cargo::workspace(&root.join("api")).unwrap();
        assert_eq!(
            (&api.root, &api.target_directory, &api.repository),
            (&asked.root, &asked.target_directory, &asked.repository)
        );
        assert_eq!(at_root.root, api.root);
    }
}
