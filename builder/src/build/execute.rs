//! Execution: walks a [`Plan`]'s graph in dependency order and runs each node's [`Work`], in
//! parallel on `threads` worker threads (`--jobs`), a node as soon as its inputs are done.
//!
//! - *fetch base*: the base's blobs go into the store, checked ([`hold_base`]);
//! - *build layer*: a layer the store has (a hit when planned, or built meanwhile by another
//!   build, which its key's lock makes us wait for) costs a lookup; a miss is looked up in the
//!   remote caches (`remote.rs`: downloaded only when its bytes are needed, [`need_bytes`]),
//!   else streamed once through tar, the compressor and two hashers into the store and
//!   recorded under its key. A layer keyed while written (its planned key pending, see
//!   `plan`'s module docs) is built first, its host files hashed by the tar writer as it
//!   streams them, then recorded under the key they give, under that key's lock (or taken
//!   from the store, when another build recorded that key meanwhile), and the hashes go into
//!   the stat index, which is saved at once. It is written under the lock of its identity
//!   (its recipe and its files' stat data), so a build in another process that planned the
//!   same layer waits for the first, then finds its key in the saved index and the layer in
//!   the store instead of writing it too;
//! - *assemble image*: the stage's config and manifest are written into the store, and
//!   recorded under the image's key (computed here from its layers' keys when one of them
//!   was keyed while written);
//! - *assemble index*: nothing here; emitting writes the output.
//!
//! Nodes of one process that share a key (the same layer on two platforms) run one after the
//! other, never waiting for each other's key lock: the later one finds the first one's result.
//! Worker threads are plain threads, so the rayon work inside a layer (parallel stats,
//! compression) never picks up another node while a key lock is held.
//!
//! The first failure stops the start of new nodes; the nodes already running finish.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Condvar, Mutex, OnceLock, RwLock};

use oci_spec::image::MediaType;

use super::base::{base_label, hold_base};
use super::elf;
use super::options::Context;
use super::planner::{ImageWork, LayerWork, Plan, Work};
use super::remote::RemoteCache;
use super::{store_err, Error, Event};
use crate::layer::{self, LayerBlob, LayerTree, LazyScratch, SourceContext};
use crate::oci;
use crate::plan::{self, LayerPlan, NodeId};
use crate::rootfs::{LayerBlobRef, StageFs, BASE_FS};
use crate::spec::{self, Stage};
use crate::store::{hash_file, BlobRef, BlobsRecord, LayerRecord, NodeResult, StatIndex, Store};

/// The result of one executed node.
pub(super) enum Output {
    /// A base held in the store, or a stage's assembled image.
    Image {
        image: Box<oci::ResolvedImage>,
        /// The stage's own layers (none for a base), bottom first.
        layers: Vec<LayerBlob>,
        /// How many of them came from the store.
        cached: usize,
    },
    /// A layer, its key, whether it came from the store (or a remote cache), and the remote
    /// cache (`registry/repository`) it came from.
    Layer {
        key: plan::Key,
        blob: LayerBlob,
        cached: bool,
        remote: Option<String>,
    },
    /// The index node (written when emitting).
    Index,
}

impl Output {
    /// The image of an image or base node.
    pub fn image(&self) -> &oci::ResolvedImage {
        match self {
            Output::Image { image, .. } => image,
            _ => unreachable!("only image and base nodes are used as images"),
        }
    }
}

/// Executes every node of `plan` (whose work it takes) into `store`; returns each node's
/// output, by node id. The content hashes a layer keyed while written learns go into
/// `stat_index`.
#[allow(clippy::too_many_arguments)]
pub(super) fn execute(
    plan: &mut Plan,
    store: &Store,
    stat_index: &RwLock<StatIndex>,
    threads: usize,
    remote: Option<&RemoteCache<'_>>,
    local_output: bool,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<Vec<Output>, Error> {
    let nodes = &plan.graph.nodes;
    // Who waits for whom: the graph's edges, plus an edge from a node to the next node of
    // the same key (see the module docs).
    let mut users: Vec<Vec<NodeId>> = vec![Vec::new(); nodes.len()];
    let mut waiting: Vec<usize> = vec![0; nodes.len()];
    let mut last_of_key: HashMap<plan::Key, NodeId> = HashMap::new();
    for node in nodes {
        let mut inputs = node.inputs.clone();
        if let (Work::Layer(_), Some(key)) = (&plan.work[node.id], node.key) {
            if let Some(previous) = last_of_key.insert(key, node.id) {
                inputs.push(previous);
            }
        }
        inputs.sort_unstable();
        inputs.dedup();
        waiting[node.id] = inputs.len();
        for input in inputs {
            users[input].push(node.id);
        }
    }
    let need_bytes = need_bytes(plan, &users, local_output);
    let work = std::mem::take(&mut plan.work);
    let plan: &Plan = plan;
    let nodes = &plan.graph.nodes;
    let run = Run {
        plan,
        work: work.into_iter().map(|w| Mutex::new(Some(w))).collect(),
        views: (0..plan.stages)
            .map(|_| StageFs::new(Some(store.root())))
            .collect(),
        scratch: LazyScratch::new(store.root()),
        store,
        stat_index,
        remote,
        need_bytes,
        on_event,
        outputs: (0..nodes.len()).map(|_| OnceLock::new()).collect(),
        users,
        queue: Mutex::new(Queue {
            ready: (0..nodes.len()).filter(|id| waiting[*id] == 0).collect(),
            waiting,
            left: nodes.len(),
            failure: None,
        }),
        changed: Condvar::new(),
    };
    let workers = threads.clamp(1, nodes.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| run.worker());
        }
    });
    let queue = run.queue.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = queue.failure {
        return Err(e);
    }
    Ok(run
        .outputs
        .into_iter()
        .map(|o| o.into_inner().expect("every node ran"))
        .collect())
}

/// What the workers share.
struct Run<'a> {
    plan: &'a Plan,
    work: Vec<Mutex<Option<Work>>>,
    /// One view of the stages it reads per planned stage.
    views: Vec<StageFs>,
    /// Where compressed archives and `.deb` data are decompressed while layers are written.
    scratch: LazyScratch,
    store: &'a Store,
    stat_index: &'a RwLock<StatIndex>,
    remote: Option<&'a RemoteCache<'a>>,
    /// Whether a layer node's bytes must be in the store (see [`need_bytes`]).
    need_bytes: Vec<bool>,
    on_event: &'a (dyn Fn(Event) + Sync),
    outputs: Vec<OnceLock<Output>>,
    users: Vec<Vec<NodeId>>,
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// The scheduler's state.
struct Queue {
    /// Nodes whose inputs are all done, not started yet.
    ready: VecDeque<NodeId>,
    /// Inputs not done yet, by node.
    waiting: Vec<usize>,
    /// Nodes not done yet.
    left: usize,
    failure: Option<Error>,
}

impl Run<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs ready nodes until every node is done or one failed.
    fn worker(&self) {
        loop {
            let id = {
                let mut queue = self.lock();
                loop {
                    if queue.failure.is_some() || queue.left == 0 {
                        return;
                    }
                    if let Some(id) = queue.ready.pop_front() {
                        break id;
                    }
                    queue = self.changed.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
            };
            let result = self.node(id);
            let mut queue = self.lock();
            match result {
                Ok(output) => {
                    let _ = self.outputs[id].set(output);
                    queue.left -= 1;
                    for &user in &self.users[id] {
                        queue.waiting[user] -= 1;
                        if queue.waiting[user] == 0 {
                            queue.ready.push_back(user);
                        }
                    }
                }
                Err(e) => {
                    queue.failure.get_or_insert(e);
                }
            }
            drop(queue);
            self.changed.notify_all();
        }
    }

    fn output(&self, id: NodeId) -> &Output {
        self.outputs[id].get().expect("inputs run first")
    }

    fn node(&self, id: NodeId) -> Result<Output, Error> {
        let work = self.work[id]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("each node runs once");
        match work {
            Work::Base { base, which } => Ok(Output::Image {
                image: Box::new(hold_base(self.store, *base, &which)?),
                layers: Vec::new(),
                cached: 0,
            }),
            Work::Layer(layer) => self.layer(id, layer),
            Work::Image(image) => self.image(image),
            Work::Index => Ok(Output::Index),
        }
    }

    /// Takes a layer from the store or a remote cache, or builds it under its key's lock.
    fn layer(&self, id: NodeId, work: LayerWork) -> Result<Output, Error> {
        let store = self.store;
        let platform = &self.plan.platforms[work.platform];
        let view = &self.views[work.stage];
        for (name, node) in work.base.iter().map(|node| (BASE_FS, *node)).chain(
            work.copies
                .iter()
                .map(|(name, node)| (name.as_str(), *node)),
        ) {
            view.provide(name, || blob_refs(self.output(node).image()));
        }
        let ctx = SourceContext {
            context: &platform.spec.context,
            host_filter: Some(&platform.cx.host_filter),
            cargo_outputs: &platform.cargo_outputs,
            stages: Some(view),
            debian: Some(&platform.debian),
            scratch: Some(&self.scratch),
        };
        let build = |plan, stat_index| {
            build_layer(
                &work.spec,
                &work.label,
                plan,
                &ctx,
                work.base.map(|_| view),
                &platform.cx,
                store,
                stat_index,
                self.on_event,
            )
        };
        let (key, blob, cached, remote) = match work.plan.key {
            // Keyed while written: built first, then recorded under the key it turns out to
            // have (or taken from the store, if another build recorded it meanwhile).
            None => {
                let (blob, key, cached) = build(work.plan, Some(self.stat_index))?;
                (key, blob, cached, None)
            }
            Some(planned_key) => {
                let key = planned_key.hex();
                // A miss is built under the key's lock; another build (a process, or a node
                // of this one with the same key) that built it meanwhile leaves a hit to take
                // instead.
                let _key_lock = match work.hit {
                    Some(_) => None,
                    None => Some(
                        store
                            .lock_key(&key)
                            .map_err(|e| store_err(store.root(), e))?,
                    ),
                };
                let hit = match work.hit {
                    Some(record) => Some(record),
                    None => match store.get_key(&key) {
                        Ok(Some(NodeResult::Layer(record))) => Some(record),
                        _ => None,
                    },
                };
                // A miss in the store is looked up in the remote caches before it is built.
                let hit = match hit {
                    Some(record) => Some((record, None)),
                    None => self
                        .remote
                        .and_then(|r| r.take(&key, store, self.need_bytes[id]))
                        .map(|h| (h.layer, Some(h.repository))),
                };
                match hit {
                    Some((record, remote)) => (planned_key, LayerBlob::from(&record), true, remote),
                    None => (planned_key, build(work.plan, None)?.0, false, None),
                }
            }
        };
        (self.on_event)(Event::LayerFinished {
            name: work.label,
            key: key.hex(),
            digest: blob.digest.clone(),
            diff_id: blob.diff_id.clone(),
            size: blob.size,
            media_type: blob.media_type.clone(),
            cached,
            remote: remote.clone(),
        });
        Ok(Output::Layer {
            key,
            blob,
            cached,
            remote,
        })
    }

    /// Writes a stage's config and manifest into the store and records the image's key.
    fn image(&self, work: ImageWork) -> Result<Output, Error> {
        let platform = &self.plan.platforms[work.platform];
        let mut blobs = Vec::new();
        let mut keys = Vec::new();
        let mut cached = 0;
        for node in &work.layers {
            match self.output(*node) {
                Output::Layer {
                    key,
                    blob,
                    cached: hit,
                    ..
                } => {
                    blobs.push(blob.clone());
                    keys.push(*key);
                    cached += usize::from(*hit);
                }
                _ => unreachable!("an image's inputs after its base are layers"),
            }
        }
        let base = work.base.map(|node| self.output(node).image());
        if !work.dynamic.is_empty() {
            check_interpreters(&work, base, &blobs, &platform.spec.name, self.store)?;
        }
        let image = assemble_image(
            &work.stage,
            work.is_target,
            &work.base_annotations,
            &platform.cx,
            base,
            &blobs,
            self.store,
        )?;
        // Pending when planned: a layer of it was keyed while written.
        let key = work.key.unwrap_or_else(|| work.key_parts.key(&keys));
        let _ = self.store.put_key(
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
        Ok(Output::Image {
            image: Box::new(image),
            layers: blobs,
            cached,
        })
    }
}

/// Which layer nodes need their bytes in the store, by node id: all of them with a local
/// output; otherwise those of a stage whose filesystem is read (a later stage copies out of it
/// or builds on it with layers, or its image has a dynamic loader to check), so a layer from a
/// remote cache that is only pushed is never downloaded.
fn need_bytes(plan: &Plan, users: &[Vec<NodeId>], local_output: bool) -> Vec<bool> {
    let n = plan.work.len();
    if local_output {
        return vec![true; n];
    }
    // Users come after their inputs: walk images last to first.
    let mut read = vec![false; n];
    for id in (0..n).rev() {
        if let Work::Image(image) = &plan.work[id] {
            read[id] = !image.dynamic.is_empty()
                || users[id].iter().any(|&u| match &plan.work[u] {
                    Work::Layer(_) => true,
                    Work::Image(_) => read[u],
                    Work::Base { .. } | Work::Index => false,
                });
        }
    }
    (0..n)
        .map(|id| match &plan.work[id] {
            Work::Layer(_) => users[id]
                .iter()
                .any(|&u| matches!(plan.work[u], Work::Image(_)) && read[u]),
            _ => false,
        })
        .collect()
}

/// Every layer of an executed plan, once per key: (key, layer, the remote cache it came from).
pub(super) fn layers_of(
    plan: &Plan,
    outputs: &[Output],
) -> Vec<(String, LayerRecord, Option<String>)> {
    let mut seen = std::collections::HashSet::new();
    let mut layers = Vec::new();
    for node in &plan.graph.nodes {
        if let Output::Layer {
            key, blob, remote, ..
        } = &outputs[node.id]
        {
            if seen.insert(*key) {
                layers.push((key.hex(), blob.into(), remote.clone()));
            }
        }
    }
    layers
}

/// The layer blobs of an image, as files of its layout (or the store), bottom first.
fn blob_refs(image: &oci::ResolvedImage) -> Vec<LayerBlobRef> {
    image
        .layers()
        .iter()
        .map(|d| LayerBlobRef {
            path: image.layout.join("blobs/sha256").join(d.digest().digest()),
            media_type: d.media_type().to_string(),
        })
        .collect()
}

/// Fails when a dynamically linked cargo binary of the image asks for a loader that the
/// image's merged filesystem (its base's layers and its own) does not have (see
/// [`super::elf`]).
fn check_interpreters(
    work: &ImageWork,
    base: Option<&oci::ResolvedImage>,
    blobs: &[LayerBlob],
    image: &str,
    store: &Store,
) -> Result<(), Error> {
    let mut layers = base.map(blob_refs).unwrap_or_default();
    for blob in blobs {
        layers.push(LayerBlobRef {
            path: store.blob_path(&oci::Digest::parse(&blob.digest)?),
            media_type: blob.media_type.clone(),
        });
    }
    let wrap = |e: Box<dyn std::error::Error + Send + Sync>| Error::Layer {
        layer: format!("(the filesystem of image {image})"),
        source: Box::new(layer::Error::CopyFromStage {
            stage: work.stage.name.clone(),
            path: "/".to_owned(),
            source: e,
        }),
    };
    let scratch =
        oci::scratch_dir(store.root(), oci::Scratch::Stage).map_err(|e| wrap(e.into()))?;
    let fs = crate::rootfs::Rootfs::open(&work.stage.name, &layers, scratch.path())
        .map_err(|e| wrap(e.into()))?;
    for binary in &work.dynamic {
        if elf::find_in(&fs, &binary.interpreter).is_none() {
            return Err(Error::MissingInterpreter {
                binary: binary.path.clone(),
                interpreter: binary.interpreter.clone(),
                message: elf::missing_message(binary, image, &base_label(&work.stage.base)),
            });
        }
    }
    Ok(())
}

/// Builds one layer into the store and records it under its key; returns it with its key, and
/// whether it was found in the store instead of written.
///
/// A layer keyed while written (its plan's key pending) has the content hash of each host
/// file computed from the bytes written, its key computed from them, and is recorded under it
/// with its key's lock held, unless the store has that key already (another build recorded
/// it meanwhile, or the same content existed under other stat data): then the store's record
/// is taken (the same bytes, by determinism: one blob). The hashes of the files that did not
/// change while written go into `stat_index`, which is saved, so the next build reads none
/// of them.
///
/// Such a layer is written under the lock of its identity ([`plan::PendingKey::identity`]:
/// its recipe and its files' paths and stat data), so that builds in other processes that
/// plan the same layer from the same files, each without its key, do not all write it: the
/// first writes it and saves the stat index before it lets go; the others, once they have
/// the lock, find its files' hashes in the saved index, their key, and the layer in the
/// store ([`stored_meanwhile`]).
#[allow(clippy::too_many_arguments)]
fn build_layer(
    layer_spec: &spec::LayerSpec,
    name: &str,
    plan: LayerPlan,
    ctx: &SourceContext<'_>,
    lower: Option<&StageFs>,
    cx: &Context,
    store: &Store,
    stat_index: Option<&RwLock<StatIndex>>,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<(LayerBlob, plan::Key, bool), Error> {
    let wrap = |source| Error::Layer {
        layer: name.to_string(),
        source: Box::new(source),
    };
    let mut tree = match plan.tree {
        Some(tree) => tree,
        None => LayerTree::from_spec(layer_spec, ctx).map_err(wrap)?,
    };
    let _pending_lock = match &plan.pending {
        Some(pending) => {
            let identity = pending.identity(&tree).hex();
            let err = |e| store_err(store.root(), e);
            let lock = match store.try_lock_pending(&identity).map_err(err)? {
                Some(lock) => lock,
                None => {
                    on_event(Event::LayerWaiting {
                        name: name.to_string(),
                    });
                    store.lock_pending(&identity).map_err(err)?
                }
            };
            if let Some((record, key)) = stored_meanwhile(pending, &tree, store, stat_index) {
                return Ok((LayerBlob::from(&record), key, true));
            }
            Some(lock)
        }
        None => None,
    };
    // Parent directories this layer only implies keep the base's mode and owner.
    let mut replaced = None;
    if let Some(lower) = lower {
        if tree.iter().any(|(_, e)| e.origin.implicit) {
            let base = lower.rootfs(BASE_FS).map_err(wrap)?;
            replaced = Some(tree.inherit_implicit_dirs(|p| base.dir_attributes(p)));
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
    let reading = StatIndex::reading_starts();
    let (blob, reads) = layer::write_layer_to_dir_reading_hosts(
        &tree,
        &cx.write,
        store.blobs_dir(),
        &progress,
        plan.pending.is_some(),
    )
    .map_err(wrap)?;
    // Store blobs are read-only, so writing through a hard-linked output fails loudly.
    let digest = oci::Digest::parse(&blob.digest)?;
    let blob_path = store.blob_path(&digest);
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&blob_path, std::fs::Permissions::from_mode(0o444));
    // The tree as planned again (the implicit directories' own attributes): a layer keyed
    // while written is keyed over it. Its host files are as written.
    if let Some(replaced) = replaced {
        tree.put_back(replaced);
    }
    let hosts: Vec<(&std::path::Path, &std::fs::Metadata)> = tree.host_files().collect();
    // Cache the layer only if no input changed before it was read into it: otherwise its
    // bytes may not be what the key says. (A tree kept from planning walked what was keyed.)
    let same_walk = tree.walked() == plan.walked;
    let unchanged = inputs_unchanged(
        layer_spec,
        &plan.inputs,
        same_walk,
        &hosts,
        &reads.unchanged,
    );
    let pending = match (plan.key, plan.pending) {
        (Some(key), _) => {
            if unchanged.iter().all(|u| *u) {
                store
                    .put_key(&key.hex(), &NodeResult::Layer((&blob).into()))
                    .map_err(|e| store_err(store.root(), e))?;
            }
            return Ok((blob, key, false));
        }
        (None, Some(pending)) => pending,
        (None, None) => unreachable!("a layer plan has a key or a pending key"),
    };
    let hashes = reads.hashes;
    let key = pending.finish(&tree, &hashes);
    debug_assert_eq!(hosts.len(), hashes.len(), "one hash per host file");
    // A layer keyed while written imports no archive: its inputs are its host files.
    debug_assert_eq!(hosts.len(), unchanged.len(), "one verdict per host file");
    let hex = key.hex();
    let key_lock = store
        .lock_key(&hex)
        .map_err(|e| store_err(store.root(), e))?;
    let blob = match store.get_key(&hex) {
        Ok(Some(NodeResult::Layer(record))) => LayerBlob::from(&record),
        _ => {
            if unchanged.iter().all(|u| *u) {
                store
                    .put_key(&hex, &NodeResult::Layer((&blob).into()))
                    .map_err(|e| store_err(store.root(), e))?;
            }
            blob
        }
    };
    drop(key_lock);
    // Saved before the pending lock goes, for the builds waiting for it (failing to save
    // costs only speed: they write the layer too).
    if let Some(stat_index) = stat_index {
        let mut index = stat_index.write().unwrap_or_else(|p| p.into_inner());
        for (((path, meta), hash), unchanged) in hosts.iter().zip(&hashes).zip(&unchanged) {
            if *unchanged && index.lookup(path, meta).is_none() {
                index.insert_read_since(path, meta, *hash, reading);
            }
        }
        let _ = index.save(store);
    }
    Ok((blob, key, false))
}

/// The layer another build wrote while this one waited for the lock of its identity (or
/// since this one planned it): found when the stat index that build saved knows every host
/// file of `tree` as planned, and the store has the key their hashes give. Files it recorded
/// too recently to be trusted (the racy rule: written less than two seconds before it read
/// them) are read and hashed here, which costs less than writing the layer (that reads them
/// too), and their hashes go into the index. Nothing is read when the index does not know a
/// file's path (no other build recorded it: a cold build alone), and a stat index that cannot
/// be read again finds nothing: the layer is written.
fn stored_meanwhile(
    pending: &plan::PendingKey,
    tree: &LayerTree,
    store: &Store,
    stat_index: Option<&RwLock<StatIndex>>,
) -> Option<(LayerRecord, plan::Key)> {
    use rayon::prelude::*;
    let stat_index = stat_index?;
    let (mut hosts, mut known) = (Vec::new(), Vec::new());
    {
        let mut index = stat_index.write().unwrap_or_else(|p| p.into_inner());
        index.merge_saved(store).ok()?;
        // A cold build alone stops at its first file.
        for (path, meta) in tree.host_files() {
            let hash = index.lookup(path, meta);
            if hash.is_none() && !index.has_path(path) {
                return None;
            }
            hosts.push((path, meta));
            known.push(hash);
        }
    }
    let reading = StatIndex::reading_starts();
    let read: Vec<Option<[u8; 32]>> = hosts
        .par_iter()
        .zip(&known)
        .map(|(&(path, meta), hash)| match hash {
            Some(_) => None,
            // Hashed as it is now, and the same file as planned after that.
            None => hash_file(path)
                .ok()
                .filter(|_| plan::InputStamp::new(path, meta).unchanged()),
        })
        .collect();
    let hashes: Option<Vec<[u8; 32]>> = known
        .iter()
        .zip(&read)
        .map(|(known, read)| known.or(*read))
        .collect();
    if read.iter().any(Option::is_some) {
        let mut index = stat_index.write().unwrap_or_else(|p| p.into_inner());
        for ((path, meta), hash) in hosts.iter().zip(&read) {
            if let Some(hash) = hash {
                index.insert_read_since(path, meta, *hash, reading);
            }
        }
    }
    let key = pending.clone().finish(tree, &hashes?);
    match store.get_key(&key.hex()) {
        Ok(Some(NodeResult::Layer(record))) => Some((record, key)),
        _ => None,
    }
}

/// Whether each input of a layer's plan (`inputs`, as planned: the host files of its tree in
/// tree order, then one archive per `tar` entry of `layer`) was, when the layer read it, what
/// the plan keyed. A host file is compared in memory: its stamp with the path and stat of the
/// file at its place in `hosts` (the host files of the tree written,
/// [`LayerTree::host_files`]), and `read_unchanged` (from the tar writer: whether the file
/// still had that stat once read). An archive is `stat`ed again. A tree that does not hold
/// the planned host files one for one (it was read again, and files came or went meanwhile),
/// or whose host walks took other directories or symlinks than the tree planned (`same_walk`
/// false: [`LayerTree::walked`] differs), makes every verdict false.
fn inputs_unchanged(
    layer: &spec::LayerSpec,
    inputs: &[plan::InputStamp],
    same_walk: bool,
    hosts: &[(&std::path::Path, &std::fs::Metadata)],
    read_unchanged: &[bool],
) -> Vec<bool> {
    let archives = layer
        .entries
        .iter()
        .filter(|e| matches!(e.source, spec::Source::Tar { .. }))
        .count();
    let planned_hosts = inputs.len().saturating_sub(archives);
    if !same_walk || hosts.len() != planned_hosts || read_unchanged.len() != planned_hosts {
        return vec![false; inputs.len()];
    }
    let (host_stamps, archive_stamps) = inputs.split_at(planned_hosts);
    host_stamps
        .iter()
        .zip(hosts)
        .zip(read_unchanged)
        .map(|((stamp, &(path, stat)), read)| *read && stamp.is(path, stat))
        .chain(archive_stamps.iter().map(plan::InputStamp::unchanged))
        .collect()
}

/// Writes a stage's config and manifest into the store; returns the stage's image, read from
/// the store.
fn assemble_image(
    stage: &Stage,
    is_target: bool,
    base_annotations: &BTreeMap<String, String>,
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
    // Source stages are not published: only the image carries annotations, the base's
    // (`org.opencontainers.image.base.*`) under the spec's.
    let mut annotations = BTreeMap::new();
    if is_target {
        annotations.extend(base_annotations.clone());
        annotations.extend(cx.annotations.clone());
    }
    let manifest = oci::image_manifest(
        config_desc,
        base.map(|b| &b.manifest),
        &layer_descriptors,
        &annotations,
    );
    let (descriptor, manifest_bytes) = write_json(store, MediaType::ImageManifest, &manifest)?;
    Ok(oci::ResolvedImage::new(
        store.root().to_path_buf(),
        descriptor,
        manifest,
        manifest_bytes,
        config,
        config_bytes,
    ))
}

/// Writes a JSON document as canonical bytes into the store.
pub(super) fn write_json<T: serde::Serialize>(
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::plan::InputStamp;
    use crate::spec::{EntrySpec, LayerSpec, Owner, Source};

    fn entry(dest: &str, source: Source) -> EntrySpec {
        EntrySpec {
            dest: dest.into(),
            dest_is_dir: true,
            source,
            owner: Owner::default(),
            mode: None,
            dir_mode: None,
            platforms: vec![],
        }
    }

    /// The directory `src` of the context, into `/data`.
    fn src_entry() -> EntrySpec {
        entry(
            "data",
            Source::Path {
                path: "src".into(),
                include: vec![],
                exclude: vec![],
            },
        )
    }

    /// The tree of a layer of `src_entry` alone (a layer's host files, as planning reads them).
    fn tree_of(context: &Path) -> LayerTree {
        let outputs = HashMap::new();
        let ctx = SourceContext::new(context, &outputs);
        let spec = LayerSpec {
            name: "files".into(),
            entries: vec![src_entry()],
            remove: vec![],
        };
        LayerTree::from_spec(&spec, &ctx).unwrap()
    }

    fn host_files(tree: &LayerTree) -> Vec<(&Path, &fs::Metadata)> {
        tree.host_files().collect()
    }

    /// The host files of `tree`'s stamps, then the archive's.
    fn stamps(tree: &LayerTree, archive: &Path) -> Vec<InputStamp> {
        tree.host_files()
            .map(|(path, stat)| InputStamp::new(path, stat))
            .chain([InputStamp::new(archive, &fs::metadata(archive).unwrap())])
            .collect()
    }

    #[test]
    fn inputs_are_judged_by_the_tree_written_the_writers_reads_and_the_archives_stat() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        for name in ["a", "b", "c"] {
            fs::write(src.join(name), name).unwrap();
        }
        let archive = dir.path().join("x.tar");
        fs::write(&archive, b"not read here").unwrap();
        let layer = LayerSpec {
            name: "files".into(),
            entries: vec![
                src_entry(),
                entry(
                    "imported",
                    Source::Tar {
                        path: "x.tar".into(),
                        include: vec![],
                        exclude: vec![],
                    },
                ),
            ],
            remove: vec![],
        };
        let tree = tree_of(dir.path());
        let hosts = host_files(&tree);
        let planned = stamps(&tree, &archive);
        assert_eq!(planned.len(), 4);
        let all_read = [true; 3];

        assert_eq!(
            inputs_unchanged(&layer, &planned, true, &hosts, &all_read),
            [true; 4]
        );
        // The writer found `b` changed once read.
        assert_eq!(
            inputs_unchanged(&layer, &planned, true, &hosts, &[true, false, true]),
            [true, false, true, true]
        );
        // A file renamed since planning: the tree read again has another path at its place.
        fs::rename(src.join("c"), src.join("d")).unwrap();
        let renamed = tree_of(dir.path());
        assert_eq!(
            inputs_unchanged(&layer, &planned, true, &host_files(&renamed), &all_read),
            [true, true, false, true]
        );
        // A file added since planning: the tree does not hold the planned files one for one.
        fs::write(src.join("e"), "e").unwrap();
        let grown = tree_of(dir.path());
        assert_eq!(
            inputs_unchanged(&layer, &planned, true, &host_files(&grown), &[true; 4]),
            [false; 4]
        );
        // The archive touched since planning is `stat`ed again.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        fs::File::open(&archive)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(
            inputs_unchanged(&layer, &planned, true, &hosts, &all_read),
            [true, true, true, false]
        );
        // A tree whose walk took other directories or symlinks than planning did.
        assert_eq!(
            inputs_unchanged(&layer, &planned, false, &hosts, &all_read),
            [false; 4]
        );
    }

    /// What the host files' stamps do not see: a directory or symlink that came, went or was
    /// pointed elsewhere between planning and the second read of the tree.
    #[test]
    fn a_tree_read_again_tells_directories_and_symlinks_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/a"), "a").unwrap();
        std::os::unix::fs::symlink("sub/a", src.join("link")).unwrap();
        let planned = tree_of(dir.path());
        assert_eq!(tree_of(dir.path()).walked(), planned.walked());

        std::os::unix::fs::symlink("sub/a", src.join("second")).unwrap();
        let added = tree_of(dir.path());
        assert_eq!(host_files(&added).len(), host_files(&planned).len());
        assert_ne!(added.walked(), planned.walked());
        fs::remove_file(src.join("second")).unwrap();
        assert_eq!(tree_of(dir.path()).walked(), planned.walked());

        fs::remove_file(src.join("link")).unwrap();
        std::os::unix::fs::symlink("sub", src.join("link")).unwrap();
        assert_ne!(tree_of(dir.path()).walked(), planned.walked());
        fs::remove_file(src.join("link")).unwrap();
        std::os::unix::fs::symlink("sub/a", src.join("link")).unwrap();
        assert_eq!(tree_of(dir.path()).walked(), planned.walked());

        fs::create_dir(src.join("empty")).unwrap();
        assert_ne!(tree_of(dir.path()).walked(), planned.walked());
    }
}
