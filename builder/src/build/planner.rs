//! Planning: the complete [`LayerGraph`] of a build, before anything is built.
//!
//! [`plan`] turns the resolved options ([`Context`]) and the platforms of a build into a
//! [`Plan`]: every node of every stage the image needs, for every platform, keyed from the
//! content of its inputs, with whether the store already has it, and for each node the work
//! that executing it takes ([`Work`]). `cargo image plan` and `cargo image build` run exactly
//! this code; a build then hands the plan to the executor.
//!
//! Two things are inputs of the plan rather than nodes of it, because no key can be computed
//! without them, and both are done here, once per platform, in parallel:
//! - **cargo builds**: a binary's key is the hash of its bytes, so the binaries the needed
//!   stages ask for are built first (cargo's own fingerprints make an unchanged one a no-op);
//! - **base resolution**: a layer's key covers its base's manifest digest, so each outside base
//!   is resolved to a verified manifest and config ([`super::base::resolve_base`]); a registry
//!   base is pulled into the store on the way, by the digest the lock file pins (`pins.rs`). Putting a local base's blobs into the store
//!   (checked against its descriptors) is the `fetch base` node's work, done by the executor.
//!
//! Planning reads host files only through the stat index (a warm plan reads no file) and never
//! writes a layer. A build may leave the key of a target-stage layer of many new files
//! pending, to be computed while the layer is written (`plan`'s module docs on keying while
//! writing; [`Keying::key_while_writing`]): its node, and the image and index nodes above it,
//! then have no key in the plan, and the image's key is computed by the executor from
//! [`ImageKeyParts`]. With a remote layer cache, a layer whose files the stat index does not know
//! but git's index vouches for is keyed from the cache's alias record of it ([`Keying`]; `plan`'s
//! module docs on alias keys): then planning asks the registry, and reads no file either.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use rayon::prelude::*;

use super::base::{base_annotations, base_label, base_name, resolve_base};
use super::elf::{self, DynamicBinary};
use super::options::{needed_stages, Context, PlatformSpec};
use super::pins::Pins;
use super::remote::RemoteCache;
use super::shared::{LayerMemo, LayerRecipe};
use super::{store_err, BuildOptions, Error, Event};
use crate::cargo;
use crate::git_index::{GitIndex, ObjectId};
use crate::layer::{self, LayerTree, SourceContext, StageCopier};
use crate::oci;
use crate::plan::{self, ContentHasher, Key, LayerGraph, LayerPlan, NodeId, NodeKind};
use crate::registry::Reference;
use crate::spec::{self, Base, CargoSource, ImageSpec, LayerSpec, Stage};
use crate::store::{self, NodeResult, StatIndex, Store};

/// Everything a build decides before executing anything.
pub(super) struct Plan {
    /// Every node of every needed stage of every platform, then the index node.
    pub graph: LayerGraph,
    /// What executing each node takes, by node id.
    pub work: Vec<Work>,
    /// The platforms, in index order.
    pub platforms: Vec<PlannedPlatform>,
    /// How many stages were planned (each gets its own view of the stages it reads).
    pub stages: usize,
    /// Whether the output is an image index.
    pub as_index: bool,
}

/// One platform of a plan.
pub(super) struct PlannedPlatform {
    pub platform: oci::Platform,
    /// The spec as built for this platform.
    pub spec: ImageSpec,
    /// The options as resolved for this platform.
    pub cx: Context,
    /// The executables of the spec's `cargo` entries.
    pub cargo_outputs: HashMap<CargoSource, PathBuf>,
    /// The packages of the spec's `debian` entries, with their `.deb` files.
    pub debian: layer::DebianPackages,
    /// The node of the image this platform's output is (the target stage's image).
    pub image: NodeId,
    /// The registry reference of the image's base (through stage bases too), so a push to the
    /// same registry can mount its blobs.
    pub reference: Option<Reference>,
}

/// What executing one node of the graph takes.
pub(super) enum Work {
    /// Put an outside base's blobs into the store, checked against its descriptors.
    Base {
        base: Box<oci::ResolvedImage>,
        which: Base,
    },
    /// Build one layer, or take it from the store.
    Layer(LayerWork),
    /// Write a stage's config and manifest.
    Image(ImageWork),
    /// Tag the output: done when emitting.
    Index,
}

/// A layer to build.
pub(super) struct LayerWork {
    /// Index into [`Plan::platforms`].
    pub platform: usize,
    /// The stage's view of the stages it reads (index below [`Plan::stages`]).
    pub stage: usize,
    pub spec: LayerSpec,
    /// The layer's name in events: with its stage and platform when they are not obvious.
    pub label: String,
    pub plan: LayerPlan,
    /// The store's record of the key, if it had one when planned.
    pub hit: Option<store::LayerRecord>,
    /// The node of the stage's base image (a fetched base or another stage's image).
    pub base: Option<NodeId>,
    /// The stages the layer copies out of, with the nodes of their images.
    pub copies: Vec<(String, NodeId)>,
}

/// An image (a stage's config and manifest) to assemble.
pub(super) struct ImageWork {
    /// Index into [`Plan::platforms`].
    pub platform: usize,
    pub stage: Stage,
    /// Whether this is the image the build outputs (it alone carries the annotations).
    pub is_target: bool,
    /// The image's key; `None` when a layer of it is keyed while it is written: then the
    /// executor computes it from the layers' keys and [`key_parts`](Self::key_parts).
    pub key: Option<Key>,
    /// What the image's key covers besides its layers' keys.
    pub key_parts: ImageKeyParts,
    /// The node of the stage's base image.
    pub base: Option<NodeId>,
    /// The nodes of the stage's layers, bottom first.
    pub layers: Vec<NodeId>,
    /// The cargo binaries of the image that need a dynamic loader, checked against its
    /// filesystem before it is written (none when the store holds the image: it was checked).
    pub dynamic: Vec<DynamicBinary>,
    /// `org.opencontainers.image.base.*` of the target image on an outside base (under the
    /// spec's own annotations, which win).
    pub base_annotations: BTreeMap<String, String>,
}

/// What an image's key covers besides its layers' keys ([`plan::image_key`]).
pub(super) struct ImageKeyParts {
    /// The base: its manifest digest, or `stage:<key>`.
    pub base: Option<String>,
    /// The layers' names, bottom first.
    pub names: Vec<String>,
    /// The canonical bytes of the config and manifest recipe.
    pub recipe: Vec<u8>,
}

impl ImageKeyParts {
    /// The image's key, given its layers' keys, bottom first.
    pub fn key(&self, layers: &[Key]) -> Key {
        plan::image_key(self.base.as_deref(), layers, &self.names, &self.recipe)
    }
}

impl Work {
    /// Renumbers the node and stage ids of a branch appended after `nodes` nodes and
    /// `stages` stages.
    fn shift(mut self, nodes: NodeId, stages: usize) -> Self {
        let shift = |id: &mut NodeId| *id += nodes;
        match &mut self {
            Work::Layer(w) => {
                w.stage += stages;
                w.base.iter_mut().for_each(shift);
                w.copies.iter_mut().for_each(|(_, id)| shift(id));
            }
            Work::Image(w) => {
                w.base.iter_mut().for_each(shift);
                w.layers.iter_mut().for_each(shift);
            }
            Work::Base { .. } | Work::Index => {}
        }
        self
    }
}

/// Plans a build: one branch per platform (planned in parallel: cargo builds, base
/// resolution, keys), then the node that tags the output; reports the graph as [`Event::Plan`]. `store` is `None` when planning
/// without a store (nothing is cached then).
#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    cx: &Context,
    opts: &BuildOptions,
    pins: &Pins,
    platforms: Vec<PlatformSpec>,
    as_index: bool,
    store: Option<&Store>,
    keying: &Keying<'_>,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<Plan, Error> {
    let multi = platforms.len() > 1;
    let branches: Vec<(PlannedPlatform, Branch)> = platforms
        .into_par_iter()
        .enumerate()
        .map(|(index, p)| {
            let pcx = cx.for_platform(&p.platform, multi);
            let target = pcx.target_stage(&p.spec)?;
            let needed = needed_stages(&p.spec, target);
            let cargo_outputs = cargo_builds(&p.spec, &needed, opts, on_event)?;
            let debian =
                super::debian::packages(&p.spec, &needed, &p.platform, pins, store, on_event)?;
            let planner = Planner {
                spec: &p.spec,
                cx: &pcx,
                opts,
                pins,
                store,
                platform: index,
                cargo_outputs: &cargo_outputs,
                debian: &debian,
                hasher: keying,
                on_event,
            };
            let mut branch = Branch::default();
            let mut done: Vec<PlannedStage> = Vec::new();
            for stage in needed {
                let planned =
                    planner.stage(stage, stage.name == target.name, &done, &mut branch)?;
                done.push(planned);
            }
            let image = done.pop().expect("the target stage is planned last");
            Ok((
                PlannedPlatform {
                    platform: p.platform,
                    spec: p.spec,
                    cx: pcx,
                    cargo_outputs,
                    debian,
                    image: image.node,
                    reference: image.reference,
                },
                branch,
            ))
        })
        .collect::<Result<_, Error>>()?;

    let mut plan = Plan {
        graph: LayerGraph::default(),
        work: Vec::new(),
        platforms: Vec::new(),
        stages: 0,
        as_index,
    };
    for (mut platform, branch) in branches {
        let offset = plan.graph.append(branch.graph);
        let stages = plan.stages;
        plan.work
            .extend(branch.work.into_iter().map(|w| w.shift(offset, stages)));
        plan.stages += branch.stages;
        platform.image += offset;
        plan.platforms.push(platform);
    }
    let images: Vec<(oci::Platform, Option<Key>, NodeId)> = plan
        .platforms
        .iter()
        .map(|p| (p.platform.clone(), plan.graph.nodes[p.image].key, p.image))
        .collect();
    push_index_node(&mut plan.graph, &cx.tags, &images, as_index);
    plan.work.push(Work::Index);
    on_event(Event::Plan {
        graph: plan.graph.clone(),
    });
    Ok(plan)
}

/// The nodes of one platform, numbered from 0, with their work.
#[derive(Default)]
struct Branch {
    graph: LayerGraph,
    work: Vec<Work>,
    stages: usize,
}

impl Branch {
    fn push(
        &mut self,
        kind: NodeKind,
        key: impl Into<Option<Key>>,
        inputs: Vec<NodeId>,
        cached: Option<bool>,
        work: Work,
    ) -> NodeId {
        self.work.push(work);
        self.graph.push(kind, key, inputs, cached)
    }
}

/// A stage as planned.
struct PlannedStage {
    name: String,
    /// The key of the stage's image (`None` only for the target stage, whose layers may be
    /// keyed while written: no other stage's key covers it).
    key: Option<Key>,
    /// The node of the stage's image.
    node: NodeId,
    /// The registry reference of the base (through stage bases too).
    reference: Option<Reference>,
    /// The base annotations of an image on it (its outside base, through stage bases too).
    base_annotations: BTreeMap<String, String>,
}

/// What planning the stages of one platform shares.
struct Planner<'a> {
    spec: &'a ImageSpec,
    cx: &'a Context,
    opts: &'a BuildOptions,
    pins: &'a Pins,
    store: Option<&'a Store>,
    platform: usize,
    cargo_outputs: &'a HashMap<CargoSource, PathBuf>,
    debian: &'a layer::DebianPackages,
    hasher: &'a Keying<'a>,
    on_event: &'a (dyn Fn(Event) + Sync),
}

impl Planner<'_> {
    /// Plans one stage: its base, its layers and its image. `done` holds the stages it needs.
    fn stage(
        &self,
        stage: &Stage,
        is_target: bool,
        done: &[PlannedStage],
        branch: &mut Branch,
    ) -> Result<PlannedStage, Error> {
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
        let view = branch.stages;
        branch.stages += 1;

        // The base: another stage, or an image from outside (verified; its blobs go into the
        // store when its node is executed).
        let (base, base_id, reference, base_annotations) = match &stage.base {
            Base::Stage(name) => {
                let b = find(name).expect("needed stages come first");
                let key = b
                    .key
                    .expect("a stage other stages build on is keyed when planned");
                (
                    Some(b.node),
                    Some(format!("stage:{}", key.hex())),
                    b.reference.clone(),
                    b.base_annotations.clone(),
                )
            }
            other => match resolve_base(
                other,
                self.opts,
                self.pins,
                &cx.store_root,
                &cx.platform,
                self.on_event,
            )? {
                Some(base) => {
                    let id = base.digest();
                    let reference = base.reference.clone();
                    let mut w = blake3::Hasher::new();
                    w.update(plan::KEY_VERSION.as_bytes());
                    w.update(b"base");
                    w.update(id.as_bytes());
                    let node = branch.push(
                        NodeKind::FetchBase {
                            reference: base_label(other),
                        },
                        Key(*w.finalize().as_bytes()),
                        vec![],
                        None,
                        Work::Base {
                            base: Box::new(base),
                            which: other.clone(),
                        },
                    );
                    let annotations = base_annotations(
                        base_name(
                            other,
                            self.spec.spec_path.parent().unwrap_or(Path::new(".")),
                        )
                        .as_deref(),
                        &id,
                    );
                    (Some(node), Some(id), reference, annotations)
                }
                None => (None, None, None, BTreeMap::new()),
            },
        };

        // Keys of our layers.
        let stage_keys: HashMap<String, Key> = done
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.key?)))
            .collect();
        // Only the target stage's layers may be keyed while written: every other needed
        // stage's key is covered by a later stage's (its base, or what it copies from).
        let may_key_while_writing = is_target && self.hasher.key_while_writing;
        let ctx = SourceContext {
            context: &self.spec.context,
            host_filter: Some(&cx.host_filter),
            cargo_outputs: self.cargo_outputs,
            stages: Some(&KeyedByStage),
            debian: Some(self.debian),
            // Planning keys archives by their bytes: it decompresses nothing.
            scratch: None,
        };
        let plans: Vec<LayerPlan> = stage
            .layers
            .par_iter()
            .map(|layer_spec| {
                // A layer another image of this invocation planned with the same recipe and
                // inputs has its plan already (`shared.rs`).
                // (A layer that may be keyed while written is not remembered: only a build of
                // one image does that, where the memo has nothing to share.)
                let recipe = LayerRecipe::of(
                    layer_spec,
                    &ctx,
                    &cx.write,
                    &stage_keys,
                    base_id.as_deref(),
                    self.hasher.cache_from,
                )
                .filter(|_| !may_key_while_writing);
                self.hasher
                    .memo
                    .plan(recipe, || {
                        plan::layer_plan(
                            layer_spec,
                            &ctx,
                            &cx.write,
                            self.hasher,
                            &stage_keys,
                            base_id.as_deref(),
                            may_key_while_writing,
                        )
                    })
                    .map_err(|source| Error::Layer {
                        layer: label(&layer_spec.name),
                        source: Box::new(source),
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut layers = Vec::new();
        for (layer, mut plan) in stage.layers.iter().zip(plans) {
            let hit = match (self.store, plan.key) {
                (Some(store), Some(key)) => match store.get_key(&key.hex()) {
                    Ok(Some(NodeResult::Layer(record))) => Some(record),
                    Ok(_) => None,
                    Err(e) => return Err(store_err(&cx.store_root, e)),
                },
                _ => None,
            };
            if hit.is_some() {
                // A layer the store holds is not built: its tree and the stamps of its
                // files (an entry and a path per file) are not needed, and are freed beside
                // the rest of the build instead of in its way.
                let unneeded = (plan.tree.take(), std::mem::take(&mut plan.inputs));
                super::drop_in_background(unneeded);
            }
            let copies: Vec<(String, NodeId)> = layer
                .entries
                .iter()
                .filter_map(|e| match &e.source {
                    spec::Source::Stage { stage, .. } => {
                        find(stage).map(|s| (stage.clone(), s.node))
                    }
                    _ => None,
                })
                .collect();
            let described = layer
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
            // A layer needs its base (its implicit directories take the base's attributes)
            // and the stages it copies out of.
            let mut inputs: Vec<NodeId> = base.into_iter().collect();
            for (_, node) in &copies {
                if !inputs.contains(node) {
                    inputs.push(*node);
                }
            }
            let cached = Some(hit.is_some());
            let name = label(&layer.name);
            let keyed_by_alias = plan.keyed_by_alias;
            layers.push(branch.push(
                NodeKind::BuildLayer {
                    layer: name.clone(),
                    copies: described,
                },
                plan.key,
                inputs,
                cached,
                Work::Layer(LayerWork {
                    platform: self.platform,
                    stage: view,
                    spec: layer.clone(),
                    label: name,
                    plan,
                    hit,
                    base,
                    copies,
                }),
            ));
            let last = branch.graph.nodes.len() - 1;
            branch.graph.nodes[last].keyed_by_alias = keyed_by_alias;
        }
        let keys: Option<Vec<Key>> = layers.iter().map(|n| branch.graph.nodes[*n].key).collect();
        let names: Vec<String> = stage.layers.iter().map(|l| l.name.clone()).collect();
        // Only the image carries annotations (source stages are not published).
        let annotations = if is_target {
            base_annotations.clone()
        } else {
            BTreeMap::new()
        };
        let key_parts = ImageKeyParts {
            base: base_id,
            names,
            recipe: image_recipe(stage, cx, &annotations),
        };
        let key = keys.map(|keys| key_parts.key(&keys));
        let image_cached = match (self.store, key) {
            (Some(store), Some(key)) => Some(store.get_key(&key.hex()).ok().flatten().is_some()),
            (Some(_), None) => Some(false),
            (None, _) => None,
        };
        let dynamic = if is_target && image_cached != Some(true) {
            self.dynamic_binaries(stage)?
        } else {
            Vec::new()
        };
        let name = if is_target {
            self.spec.name.clone()
        } else {
            format!("stage {}", stage.name)
        };
        let inputs = base.into_iter().chain(layers.iter().copied()).collect();
        let node = branch.push(
            NodeKind::AssembleImage {
                name: match &cx.label {
                    Some(platform) => format!("{name} [{platform}]"),
                    None => name,
                },
            },
            key,
            inputs,
            Some(image_cached.unwrap_or(false)),
            Work::Image(ImageWork {
                platform: self.platform,
                stage: stage.clone(),
                is_target,
                key,
                key_parts,
                base,
                layers,
                dynamic,
                base_annotations: annotations,
            }),
        );
        Ok(PlannedStage {
            name: stage.name.clone(),
            key,
            node,
            reference,
            base_annotations,
        })
    }
}

impl Planner<'_> {
    /// The cargo binaries of `stage` that ask for a program interpreter (the spec is this
    /// platform's already: entries of other platforms are gone).
    fn dynamic_binaries(&self, stage: &Stage) -> Result<Vec<DynamicBinary>, Error> {
        let mut found = Vec::new();
        for entry in stage.layers.iter().flat_map(|l| &l.entries) {
            let spec::Source::Cargo(src) = &entry.source else {
                continue;
            };
            let Some(exe) = self.cargo_outputs.get(src) else {
                continue;
            };
            let interpreter = elf::interpreter(exe).map_err(|source| Error::ReadBinary {
                path: exe.clone(),
                source,
            })?;
            if let Some(interpreter) = interpreter {
                found.push(DynamicBinary {
                    path: elf::image_path(entry, exe),
                    target: src.target.clone(),
                    interpreter,
                });
            }
        }
        Ok(found)
    }
}

/// The stage copier planning gives the layer planner: entries copied out of other stages are
/// keyed by the key of the stage's image and never read while planning, so it adds nothing.
/// (The planner only builds a tree with them to report, in the builder's words, what is wrong
/// with a layer's other sources.)
#[derive(Debug)]
struct KeyedByStage;

impl StageCopier for KeyedByStage {
    fn copy_out(
        &self,
        _layer_name: &str,
        _stage: &str,
        _path: &str,
        _include: &[String],
        _exclude: &[String],
        _entry: &spec::EntrySpec,
        _index: usize,
        _tree: &mut LayerTree,
    ) -> Result<(), layer::Error> {
        Ok(())
    }
}
/// Adds the node that tags the output: the image's (`as_index` false, one image), or an image
/// index over every platform's image.
fn push_index_node(
    graph: &mut LayerGraph,
    tags: &[String],
    images: &[(oci::Platform, Option<Key>, plan::NodeId)],
    as_index: bool,
) {
    if let (false, [(_, key, node)]) = (as_index, images) {
        graph.push(
            NodeKind::AssembleIndex {
                tags: tags.to_vec(),
                platforms: Vec::new(),
            },
            key.map(|key| plan::index_key(&key, tags)),
            vec![*node],
            None,
        );
        return;
    }
    let keyed: Option<Vec<(String, Key)>> = images
        .iter()
        .map(|(p, k, _)| Some((p.to_string(), (*k)?)))
        .collect();
    graph.push(
        NodeKind::AssembleIndex {
            tags: tags.to_vec(),
            platforms: images.iter().map(|(p, _, _)| p.to_string()).collect(),
        },
        keyed.map(|keyed| plan::platform_index_key(&keyed, tags)),
        images.iter().map(|(_, _, n)| *n).collect(),
        None,
    );
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
                // As cargo will build it: `--profile` and the other overrides applied.
                let what = cargo::describe(&opts.cargo.overrides.apply(src));
                on_event(Event::CargoBuild { what: what.clone() });
                let exe = cargo::build(src, &spec.context, &opts.cargo)?;
                // Only for the report: a binary that cannot be read fails later, with its path.
                let sizes = cargo::DebugSize::of(&exe).unwrap_or_default();
                on_event(Event::CargoFinished {
                    what,
                    executable: exe.clone(),
                    strip: src.strip.as_str(),
                    size: sizes.size,
                    debug_info: sizes.debug_info,
                    symbols: sizes.symbols,
                });
                outputs.insert(src.clone(), exe);
            }
        }
    }
    Ok(outputs)
}

/// How planning learns what host files hold, shared by parallel planners: the stat index
/// (lookups under its read lock, from several threads at once; hashing outside it), and, with a remote cache, git's index and the
/// cache's alias records (see `plan`'s module docs on alias keys).
pub(super) struct Keying<'a> {
    pub stat_index: &'a RwLock<StatIndex>,
    /// The index of the git checkout holding the context, when a remote cache is in use.
    pub git: Option<&'a GitIndex>,
    /// The remote caches, asked for alias records.
    pub remote: Option<&'a RemoteCache<'a>>,
    /// The repositories of those caches, part of what a layer's plan depends on.
    pub cache_from: &'a [String],
    /// The layers other images of this invocation planned.
    pub memo: &'a LayerMemo,
    /// Whether the target stage's layers may be keyed while they are written (`plan`'s module
    /// docs): a build or push of one image for one platform without remote caches, never
    /// `cargo image plan`.
    pub key_while_writing: bool,
}

impl Keying<'_> {
    /// The index to look up in: planners on several threads read it at once.
    fn stat_index(&self) -> std::sync::RwLockReadGuard<'_, StatIndex> {
        self.stat_index.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl ContentHasher for Keying<'_> {
    fn content_hash(&self, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<[u8; 32]> {
        if let Some(hash) = self.stat_index().lookup(path, meta) {
            return Ok(hash);
        }
        let hash = store::hash_file(path)?;
        self.stat_index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path, meta, hash);
        Ok(hash)
    }

    fn known_hash(&self, path: &Path, meta: &std::fs::Metadata) -> Option<[u8; 32]> {
        self.stat_index().lookup(path, meta)
    }

    fn git_id(&self, path: &Path, meta: &std::fs::Metadata) -> Option<ObjectId> {
        self.git?.id(path, meta)
    }

    fn has_seen(&self, path: &Path) -> bool {
        self.stat_index().has_path(path)
    }

    fn resolve_alias(&self, alias: &Key) -> Option<Key> {
        let key = self.remote?.resolve_alias(&alias.hex())?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(key, &mut bytes).ok()?;
        Some(Key(bytes))
    }
}

/// The canonical bytes of everything besides the layers that decides the config and manifest.
fn image_recipe(
    stage: &Stage,
    cx: &Context,
    base_annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let config = &stage.config;
    let recipe = serde_json::json!({
        "platform": cx.platform.to_string(),
        "created": cx.epoch,
        "annotations": cx.annotations,
        "base_annotations": base_annotations,
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
