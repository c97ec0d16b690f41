//! The plan: a resolved spec compiled into an immutable [`LayerGraph`] whose every node has a
//! content key.
//!
//! # Brief overview
//! A node is a unit of work and of caching: *fetch base* (resolve the base image), *build layer*
//! (one `[[layer]]` of the spec), *assemble image* (config + manifest) and *assemble index* (the
//! tags of the output layout). Edges are data dependencies: the image needs its base and its
//! layers, the index needs the image.
//!
//! Each node's [`Key`] is blake3 over canonical bytes of its recipe, the keys of its inputs, the
//! content hashes of its host inputs, and [`KEY_VERSION`] plus [`layer::FORMAT_VERSION`] (which
//! names the tar writer and the compressors with their versions and levels). So a key changes
//! exactly when the bytes the node would produce may change:
//!
//! - a layer's key covers every entry the layer would write (path, kind, permission bits, owner,
//!   symlink target, and the blake3 of each file's content), the compression and the mtime
//!   (`SOURCE_DATE_EPOCH` / `epoch`); it does not cover host mtimes, inode numbers, the order
//!   files were created in, or the layer's name, so `touch` is still a hit and two layers with
//!   the same content share one blob;
//! - a layer with `cargo` entries also covers each entry's build recipe: target triple, linker,
//!   profile, features, and the content of the workspace's `Cargo.lock`. The binary's content
//!   already decides the bytes; the recipe keeps two platforms' (or profiles') builds apart
//!   even before their binaries are compared, and says in the plan why a key changed;
//! - an imported tarball is covered by the hash of the archive file and the entry's options, so
//!   a warm build never decompresses it;
//! - file content hashes come from a [`ContentHasher`]: the store's stat index answers for files
//!   whose (size, mtime, ctime, inode) did not change, so a warm build reads no file.
//!
//! # Alias keys: keying without reading
//! A machine with an empty store (a new CI runner) would have to read and hash every input
//! file to learn a layer's key, even when the remote layer cache already holds the layer. When
//! its sources are a git checkout, git's index already says what each clean file holds (its
//! blob id, see [`crate::git_index`]). So a layer made only of host files, inline files,
//! directories and symlinks also gets an **alias key**: blake3 over [`ALIAS_VERSION`], the
//! object format and exactly what its key covers, each host file's content hash replaced by
//! its blob id (`sha1:<20 bytes>` or `sha256:<32 bytes>`). Paths, modes (from the file's
//! `lstat`, as for the key), owners, sizes, symlink targets, the base, the compression and
//! the mtime are in both, so two layers with one alias have the same bytes whenever their
//! files' blob ids name their bytes (git's index module docs say when they do: a clean entry,
//! and no size-keeping checkout conversion; the alias covers each file's size, so end-of-line
//! conversions cannot share an alias).
//!
//! The alias is computed only when every host file of the layer is clean in git's index
//! (a dirty, untracked or ignored file, or a file outside the repository, leaves the layer
//! without one), and it is used only to ask the remote layer cache: a machine that builds a
//! layer publishes `alias -> key` beside the key's record (`--cache-to`); a machine that
//! misses a file in its stat index asks the cache for the alias first
//! ([`ContentHasher::resolve_alias`]) and, on a hit, takes the key from there without
//! reading a file. Otherwise it reads and hashes the files it does not know, as before. The
//! local store only ever holds real keys.
//!
//! # Keying while writing: reading each file once
//! A layer's key needs the content hash of every host file, and a file the stat index does not
//! know has to be read to get it. When the layer is then a miss (a cold build), the layer
//! writer reads every file again. So a build may leave such a layer's key **pending**
//! ([`LayerPlan::pending`], from [`layer_plan`]): the executor writes the layer, the tar writer
//! hashing each host file (blake3) from the very bytes it streams into the tar, and
//! [`PendingKey::finish`] computes the key from those hashes, over the tree as planned, with
//! the same `write_tree` as [`layer_key`]: the same key. The layer is then recorded under
//! it (or, when the store turns out to hold that key already, because another build recorded
//! it meanwhile or the same content was built under other stat data, the store's record is
//! taken: the same bytes, one blob), and the hashes go into the stat index, so the next build
//! is warm. The check that no input changed while the layer was written stays; the hashes are
//! now of the bytes written, which is stricter than hashing before writing.
//!
//! A layer is keyed while written only when all of these hold:
//! - the command builds (`build`, `push`); `cargo image plan` prints real keys, so it reads;
//! - keying it first would read much that is new: the host files it must read (no stat
//!   index entry for their stat) at paths the stat index never saw hold at least
//!   [`KEY_WHILE_WRITING_MIN_BYTES`]. Below that, reading them twice costs next to nothing,
//!   and the plan shows the key. A file at a path the index knows under other stat data was
//!   touched or edited, and does not count: a layer where a few files changed, or a fresh
//!   checkout beside a restored store (every file touched, nothing changed), is keyed first,
//!   and may be a store hit without being written;
//! - it is made of host files, inline files, directories and symlinks (imported tarballs,
//!   Debian packages and copies out of stages are keyed by other keys) and removes nothing;
//! - no other node's key needs its key before it is built: it belongs to the target stage
//!   (every other needed stage is the base of a later one or copied from, and those keys
//!   cover its key). The image and index nodes above it get their keys in the executor, once
//!   the layer's is known; the plan shows them, and the layer, as to build with a `null` key;
//! - the build is of one image for one platform, without remote layer caches: the images of
//!   a workspace and the platforms of an index share layers by their planned keys, and a
//!   remote cache is asked for a layer by its key (or alias) before the layer is built.
//!
//! Planning writes nothing: `cargo image plan` prints the graph with each node's key and whether
//! the store already holds its result.

use std::fmt::Write as _;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::git_index::ObjectId;
use crate::layer::{self, EntryKind, FileSource, LayerTree, SourceContext, WriteOptions};
use crate::spec::{EntrySpec, LayerSpec, Source};

/// The version of the key derivation itself; change it when the bytes hashed into keys change.
pub const KEY_VERSION: &str = "cargo-image-key-1";

/// The version of alias keys (see the module docs); change it when what they hash changes.
pub const ALIAS_VERSION: &str = "cargo-image-alias-1";

/// A node key: blake3 of the node's recipe and inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The key as 64 lower-case hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

/// Gives the content hash (blake3) of a host file, possibly from a cache of earlier answers.
/// Shared by layers planned in parallel, hence `&self` and `Sync`.
///
/// The other methods let a layer be keyed without reading its files (see the module docs on
/// alias keys); their defaults know nothing, so every file is hashed.
pub trait ContentHasher: Sync {
    fn content_hash(&self, path: &Path, meta: &Metadata) -> std::io::Result<[u8; 32]>;

    /// The content hash of the file when it is known without reading it (a stat cache).
    fn known_hash(&self, _path: &Path, _meta: &Metadata) -> Option<[u8; 32]> {
        None
    }

    /// The git blob id of the file when git's index vouches for it without reading it
    /// ([`crate::git_index::GitIndex::clean_id`]).
    fn git_id(&self, _path: &Path, _meta: &Metadata) -> Option<ObjectId> {
        None
    }

    /// The layer key an alias key stands for (a record of the remote layer cache), if one is
    /// known.
    fn resolve_alias(&self, _alias: &Key) -> Option<Key> {
        None
    }

    /// Whether a content hash of a file at `path` was ever known (a stat cache entry for the
    /// path, whatever its stat data): a file at a path never seen is new or moved, one at a
    /// path seen before was touched or edited (see the module docs on keying while writing).
    fn has_seen(&self, _path: &Path) -> bool {
        false
    }
}

/// Hashes every file it is asked about (no cache).
pub struct ReadEveryFile;

impl ContentHasher for ReadEveryFile {
    fn content_hash(&self, path: &Path, _meta: &Metadata) -> std::io::Result<[u8; 32]> {
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(path)?)?;
        Ok(*hasher.finalize().as_bytes())
    }
}

/// What the stat of a host input was when its key was computed; compared again after the layer
/// is written, so a file changed during the build never gets its new bytes cached under the old
/// key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputStamp {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub inode: u64,
}

impl InputStamp {
    /// Stamps `path` with its metadata.
    pub fn new(path: &Path, meta: &Metadata) -> Self {
        let (size, mtime_ns, ctime_ns, inode) = Self::stat_of(meta);
        InputStamp {
            path: path.to_path_buf(),
            size,
            mtime_ns,
            ctime_ns,
            inode,
        }
    }

    fn stat_of(meta: &Metadata) -> (u64, i128, i128, u64) {
        use std::os::unix::fs::MetadataExt;
        (
            meta.len(),
            meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            meta.ino(),
        )
    }

    /// Whether `path` with the stat `meta` is what was stamped (nothing asked of the file
    /// system).
    pub fn is(&self, path: &Path, meta: &Metadata) -> bool {
        use std::os::unix::ffi::OsStrExt;
        self.path.as_os_str().as_bytes() == path.as_os_str().as_bytes()
            && Self::stat_of(meta) == (self.size, self.mtime_ns, self.ctime_ns, self.inode)
    }

    /// Whether the file still has the stat it had when stamped (a `stat` of its path now).
    pub fn unchanged(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| self.is(&self.path, &m))
    }
}

/// The planned form of one layer: its key, the host inputs it was computed from, and the tree
/// when the planning had to build it anyway (a layer with no imported tarball).
#[derive(Debug, Clone)]
pub struct LayerPlan {
    /// The layer's key; `None` when it is keyed while it is written ([`pending`](Self::pending)).
    pub key: Option<Key>,
    /// For a layer keyed while it is written (see the module docs), what its key needs besides
    /// the content hashes of its host files; `None` when [`key`](Self::key) is known.
    pub pending: Option<PendingKey>,
    /// The layer's alias key, when git's index vouches for every host file of it (see the
    /// module docs).
    pub alias: Option<Key>,
    /// Whether [`key`](Self::key) came from resolving the alias (no file was read to key it).
    pub keyed_by_alias: bool,
    /// Shared, not copied, by the images of one invocation that plan the same layer.
    pub inputs: std::sync::Arc<Vec<InputStamp>>,
    /// [`LayerTree::walked`] of the tree keyed: a tree read again to write the layer (when
    /// [`tree`](Self::tree) is `None`) is checked against it, as its host files are against
    /// [`inputs`](Self::inputs).
    pub walked: [u8; 32],
    pub tree: Option<LayerTree>,
}

/// Canonical, unambiguous bytes for hashing: every field is length-prefixed.
///
/// The fields (a few bytes each, several per tree entry) are gathered in a buffer and handed
/// to blake3 in large pieces, which it hashes many chunks at a time; the hash is that of the
/// same byte stream.
#[derive(Debug, Clone)]
struct KeyWriter {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

/// How many bytes [`KeyWriter`] gathers before hashing them.
const KEY_BUFFER: usize = 64 * 1024;

impl KeyWriter {
    fn new(kind: &str) -> Self {
        let mut w = KeyWriter {
            hasher: blake3::Hasher::new(),
            buf: Vec::new(),
        };
        w.str(KEY_VERSION);
        w.str(layer::FORMAT_VERSION);
        w.str(kind);
        w
    }
    fn put(&mut self, b: &[u8]) {
        if self.buf.len() + b.len() > KEY_BUFFER {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
        if b.len() > KEY_BUFFER {
            self.hasher.update(b);
        } else {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(KEY_BUFFER);
            }
            self.buf.extend_from_slice(b);
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.put(&(b.len() as u64).to_le_bytes());
        self.put(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    fn finish(mut self) -> Key {
        self.hasher.update(&self.buf);
        Key(*self.hasher.finalize().as_bytes())
    }
}

/// The part of a layer's key computed while planning, for a layer keyed while it is written:
/// [`Self::finish`] adds the tree with the content hashes of its host files, as written.
#[derive(Debug, Clone)]
pub struct PendingKey {
    /// The key's bytes up to its tree: the recipe, and the cargo entries' recipes (boxed: a
    /// hasher's state is a few KiB, and plans are moved around).
    writer: Box<KeyWriter>,
}

impl PendingKey {
    /// The layer's key: exactly what [`layer_key`] computes, given the content hash (blake3)
    /// of each host file of `tree` in tree order. `tree` is the layer's tree as planned (its
    /// [`LayerPlan::tree`]; implicit directories not yet given the base's attributes).
    pub fn finish(self, tree: &LayerTree, hashes: &[[u8; 32]]) -> Key {
        let mut w = *self.writer;
        let mut hashes = hashes.iter();
        write_tree(&mut w, tree, |bytes, w| match bytes {
            Some(bytes) => w.bytes(blake3::hash(bytes).as_bytes()),
            None => w.bytes(hashes.next().expect("one hash per host file")),
        });
        w.finish()
    }

    /// What the layer is before its files are read: the key's recipe and `tree` (as planned)
    /// with each host file's path and stat data (size, mtime, ctime, inode, device) in place
    /// of its content hash. Two builds that plan the same layer from the same files give the
    /// same identity, so it names the work of writing it (a lock, see the executor) before
    /// its key is known. It is never a key: its bytes start apart from every key's.
    pub fn identity(&self, tree: &LayerTree) -> Key {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let mut w = (*self.writer).clone();
        w.str("pending-identity");
        let mut hosts = tree.host_files();
        write_tree(&mut w, tree, |bytes, w| match bytes {
            Some(bytes) => w.bytes(blake3::hash(bytes).as_bytes()),
            None => {
                let (path, meta) = hosts.next().expect("one host file per host entry");
                w.bytes(path.as_os_str().as_bytes());
                let (size, mtime_ns, ctime_ns, inode) = InputStamp::stat_of(meta);
                w.u64(size);
                w.bytes(&mtime_ns.to_le_bytes());
                w.bytes(&ctime_ns.to_le_bytes());
                w.u64(inode);
                w.u64(meta.dev());
            }
        });
        w.finish()
    }
}

/// A layer is keyed while it is written only when the host files it must read to be keyed,
/// at paths the stat cache never saw, hold at least this many bytes (see the module docs).
pub const KEY_WHILE_WRITING_MIN_BYTES: u64 = 4 << 20;

/// Computes the key of a layer (see the module docs for what it covers).
///
/// Errors are those of reading the layer's sources (a missing path, an escaping symlink, two
/// entries at one destination...), exactly as building the layer would report them.
///
/// `lower` identifies the stage's base (its manifest digest, or its stage key), whose directory
/// attributes the layer's implicit directories inherit. Entries copied out of other stages are
/// keyed by the key of that stage's image
/// (`stage_keys`) and the entry's options, like imported tarballs by their archive.
pub fn layer_key(
    spec: &LayerSpec,
    ctx: &SourceContext<'_>,
    opts: &WriteOptions,
    hasher: &dyn ContentHasher,
    stage_keys: &std::collections::HashMap<String, Key>,
    lower: Option<&str>,
) -> Result<LayerPlan, layer::Error> {
    layer_plan(spec, ctx, opts, hasher, stage_keys, lower, false)
}

/// [`layer_key`], or with `may_key_while_writing`, the plan of a layer whose key is computed
/// while it is written ([`LayerPlan::pending`]) when reading its files to key it would read
/// most of them a second time (see the module docs for when).
pub fn layer_plan(
    spec: &LayerSpec,
    ctx: &SourceContext<'_>,
    opts: &WriteOptions,
    hasher: &dyn ContentHasher,
    stage_keys: &std::collections::HashMap<String, Key>,
    lower: Option<&str>,
    may_key_while_writing: bool,
) -> Result<LayerPlan, layer::Error> {
    let mut w = KeyWriter::new("layer");
    recipe(&mut w, spec, opts, lower);
    cargo_recipes(spec, ctx, hasher, &mut w)?;

    // Imported tarballs are keyed by the archive's content and the entry's options; everything
    // else by the tree it makes.
    type Numbered<'a> = Vec<(usize, &'a EntrySpec)>;
    let (tars, others): (Numbered<'_>, Numbered<'_>) =
        spec.entries.iter().enumerate().partition(|(_, e)| {
            matches!(
                e.source,
                Source::Tar { .. } | Source::Stage { .. } | Source::Debian(_)
            )
        });
    let rest = LayerSpec {
        name: spec.name.clone(),
        entries: others.iter().map(|(_, e)| (*e).clone()).collect(),
        remove: Vec::new(),
    };
    let tree = LayerTree::from_spec(&rest, ctx)?;
    // Host files are looked up in the stat index and git's index in parallel, by the metadata
    // the tree was read with (the walk's one `lstat` per file: no second `stat`); only the
    // files neither knows are read (below), then everything is keyed in tree order.
    let walked = tree.walked();
    let hosts: Vec<(&Path, &Metadata)> = tree.host_files().collect();
    let read_error = |p: &Path| {
        let path = p.to_path_buf();
        move |source| layer::Error::ReadSource { path, source }
    };
    type Known = (Option<[u8; 32]>, Option<ObjectId>);
    let known: Vec<Known> = hosts
        .par_iter()
        .map(|&(p, meta)| (hasher.known_hash(p, meta), hasher.git_id(p, meta)))
        .collect();
    // The alias: the same recipe with git blob ids for contents, for layers made of host
    // files, inline files, directories and symlinks only (a cargo binary is not in git, and
    // archives and stage copies are keyed by other keys).
    let has_cargo = spec
        .entries
        .iter()
        .any(|e| matches!(e.source, Source::Cargo(_)));
    let ids: Option<Vec<ObjectId>> = (tars.is_empty() && !has_cargo && !hosts.is_empty())
        .then(|| known.iter().map(|(_, id)| *id).collect())
        .flatten();
    let alias = ids.map(|ids| {
        let mut a = KeyWriter::new("layer-alias");
        a.str(ALIAS_VERSION);
        recipe(&mut a, spec, opts, lower);
        let mut ids = ids.into_iter();
        write_tree(&mut a, &tree, |inline, a| {
            if let Some(bytes) = inline {
                return a.bytes(blake3::hash(bytes).as_bytes());
            }
            let id = ids.next().expect("one id per host file");
            let mut content = Vec::with_capacity(40);
            content.extend_from_slice(id.format.name().as_bytes());
            content.push(b':');
            content.extend_from_slice(id.as_bytes());
            a.bytes(&content);
        });
        a.finish()
    });
    // In parallel: a path copied per file.
    let mut inputs: Vec<InputStamp> = hosts
        .par_iter()
        .map(|&(p, meta)| InputStamp::new(p, meta))
        .collect();
    let all_known = known.iter().all(|(hash, _)| hash.is_some());
    if !all_known && tars.is_empty() {
        if let Some(key) = alias.as_ref().and_then(|a| hasher.resolve_alias(a)) {
            return Ok(LayerPlan {
                key: Some(key),
                pending: None,
                alias,
                keyed_by_alias: true,
                inputs: inputs.into(),
                walked,
                tree: spec.remove.is_empty().then_some(tree),
            });
        }
    }
    if may_key_while_writing
        && tars.is_empty()
        && spec.remove.is_empty()
        && new_bytes(&hosts, &known, hasher) >= KEY_WHILE_WRITING_MIN_BYTES
    {
        return Ok(LayerPlan {
            key: None,
            pending: Some(PendingKey {
                writer: Box::new(w),
            }),
            alias,
            keyed_by_alias: false,
            inputs: inputs.into(),
            walked,
            tree: Some(tree),
        });
    }
    let hashes: Vec<[u8; 32]> = hosts
        .par_iter()
        .zip(&known)
        .map(|(&(p, meta), (hash, _))| match hash {
            Some(hash) => Ok(*hash),
            None => hasher.content_hash(p, meta).map_err(read_error(p)),
        })
        .collect::<Result<_, layer::Error>>()?;
    let mut hashes = hashes.into_iter();
    write_tree(&mut w, &tree, |bytes, w| match bytes {
        Some(bytes) => w.bytes(blake3::hash(bytes).as_bytes()),
        None => w.bytes(&hashes.next().expect("one hash per host file")),
    });
    for (index, entry) in &tars {
        // Debian packages are keyed by exactly what is installed: each package's name,
        // version, architecture and `.deb` digest (dpkg's database is made from them).
        if let Source::Debian(source) = &entry.source {
            let packages = ctx.debian.and_then(|d| d.get(source)).ok_or_else(|| {
                layer::Error::DebianUnresolved {
                    entry: index + 1,
                    suite: source.suite.clone(),
                }
            })?;
            w.str(layer::DEBIAN_INSTALL_RECIPE);
            w.u64(*index as u64);
            w.u64(entry.owner.uid);
            w.u64(entry.owner.gid);
            w.u64(packages.len() as u64);
            for (p, _) in packages.iter() {
                w.str(&p.name);
                w.str(&p.version);
                w.str(&p.architecture);
                w.str(p.sha256.hex());
            }
            continue;
        }
        if let Source::Stage {
            stage,
            path,
            include,
            exclude,
        } = &entry.source
        {
            let Some(stage_key) = stage_keys.get(stage) else {
                return Err(layer::Error::CopyFromStage {
                    stage: stage.clone(),
                    path: format!("/{path}"),
                    source: "the stage is not built in this build".into(),
                });
            };
            w.str("stage");
            w.u64(*index as u64);
            w.bytes(&stage_key.0);
            w.str(path);
            w.u64(include.len() as u64);
            for g in include {
                w.str(g);
            }
            w.u64(exclude.len() as u64);
            for g in exclude {
                w.str(g);
            }
            w.str(&entry.dest);
            w.u64(entry.dest_is_dir as u64);
            w.u64(entry.owner.uid);
            w.u64(entry.owner.gid);
            w.u64(entry.mode.map_or(u64::MAX, u64::from));
            w.u64(entry.dir_mode.map_or(u64::MAX, u64::from));
            continue;
        }
        let Source::Tar {
            path: rel,
            include,
            exclude,
        } = &entry.source
        else {
            continue;
        };
        let resolved = ctx.context.join(rel).canonicalize().ok().filter(|p| {
            p.starts_with(ctx.context.canonicalize().unwrap_or_default()) && p.is_file()
        });
        let Some(path) = resolved else {
            // Let the tree builder report what is wrong with this archive, in its words.
            LayerTree::from_spec(spec, ctx)?;
            return Err(layer::Error::FindSource {
                path: rel.clone(),
                context: ctx.context.to_path_buf(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        };
        let meta = std::fs::metadata(&path).map_err(|source| layer::Error::ReadSource {
            path: path.clone(),
            source,
        })?;
        inputs.push(InputStamp::new(&path, &meta));
        let hash =
            hasher
                .content_hash(&path, &meta)
                .map_err(|source| layer::Error::ReadSource {
                    path: path.clone(),
                    source,
                })?;
        w.str("tar");
        w.u64(*index as u64);
        w.str(&entry.dest);
        w.u64(entry.dest_is_dir as u64);
        w.u64(entry.owner.uid);
        w.u64(entry.owner.gid);
        w.u64(entry.mode.map_or(u64::MAX, u64::from));
        w.u64(entry.dir_mode.map_or(u64::MAX, u64::from));
        w.bytes(&hash);
        // Written only when there are globs, so the key of an unfiltered import is the one it
        // has always had.
        if !include.is_empty() || !exclude.is_empty() {
            w.str("globs");
            for globs in [include, exclude] {
                w.u64(globs.len() as u64);
                for g in globs {
                    w.str(g);
                }
            }
        }
    }
    Ok(LayerPlan {
        key: Some(w.finish()),
        pending: None,
        alias,
        keyed_by_alias: false,
        inputs: inputs.into(),
        walked,
        tree: (tars.is_empty() && spec.remove.is_empty()).then_some(tree),
    })
}

/// The bytes of the host files whose content hash is unknown, at paths the stat cache never
/// saw: what keying the layer before writing it would read twice, for a layer that is most
/// likely a miss.
fn new_bytes(
    hosts: &[(&Path, &Metadata)],
    known: &[(Option<[u8; 32]>, Option<ObjectId>)],
    hasher: &dyn ContentHasher,
) -> u64 {
    hosts
        .iter()
        .zip(known)
        .filter(|((path, _), (hash, _))| hash.is_none() && !hasher.has_seen(path))
        .map(|((_, meta), _)| meta.len())
        .sum()
}

/// The part of a layer's recipe besides its entries, for its key and its alias alike.
fn recipe(w: &mut KeyWriter, spec: &LayerSpec, opts: &WriteOptions, lower: Option<&str>) {
    // Implicit parent directories take their mode and owner from the base below (so adding
    // `/tmp/x` keeps `/tmp` 1777): the base is part of the layer's recipe.
    w.str(lower.unwrap_or("scratch"));
    w.str(opts.compression.media_type());
    w.u64(opts.mtime);
    w.u64(spec.remove.len() as u64);
    for r in &spec.remove {
        w.str(r);
    }
}

/// Writes every entry of `tree` into a key: path, mode, owner, kind, and for a file its size
/// and what `content` writes of it (given an inline file's bytes, `None` for a host file: host
/// files are asked in tree order; it writes one [`KeyWriter::bytes`], copying nothing).
fn write_tree(
    w: &mut KeyWriter,
    tree: &LayerTree,
    mut content: impl FnMut(Option<&[u8]>, &mut KeyWriter),
) {
    for (path, entry) in tree.iter() {
        w.str(path);
        w.u64(entry.mode as u64);
        w.u64(entry.uid);
        w.u64(entry.gid);
        match &entry.kind {
            EntryKind::Dir => w.str("dir"),
            EntryKind::Device { kind, major, minor } => {
                w.str(kind.name());
                w.u64(u64::from(*major));
                w.u64(u64::from(*minor));
            }
            EntryKind::Symlink { target } => {
                w.str("symlink");
                w.str(target);
            }
            EntryKind::File { source, size } => {
                w.str("file");
                w.u64(*size);
                match source {
                    FileSource::Host { .. } => content(None, w),
                    FileSource::Inline(bytes) => content(Some(bytes), w),
                    FileSource::Archive { .. } => {
                        unreachable!("archives are keyed by their file, not their members")
                    }
                }
            }
        }
    }
}

/// Writes the build recipe of each `cargo` entry of `spec` into a layer key (nothing for a
/// layer without one, so other layers' keys are as before).
fn cargo_recipes(
    spec: &LayerSpec,
    ctx: &SourceContext<'_>,
    hasher: &dyn ContentHasher,
    w: &mut KeyWriter,
) -> Result<(), layer::Error> {
    let mut lock_hash: Option<[u8; 32]> = None;
    for (index, entry) in spec.entries.iter().enumerate() {
        let Source::Cargo(src) = &entry.source else {
            continue;
        };
        if lock_hash.is_none() {
            lock_hash = Some(match cargo_lock(ctx.context) {
                Some(lock) => {
                    let meta =
                        std::fs::metadata(&lock).map_err(|source| layer::Error::ReadSource {
                            path: lock.clone(),
                            source,
                        })?;
                    hasher
                        .content_hash(&lock, &meta)
                        .map_err(|source| layer::Error::ReadSource { path: lock, source })?
                }
                None => [0; 32],
            });
        }
        w.str("cargo");
        w.u64(index as u64);
        w.str(&src.target);
        w.str(src.linker.as_deref().unwrap_or(""));
        w.str(src.cc.as_deref().unwrap_or(""));
        w.str(src.strip.as_str());
        w.str(src.builder.as_str());
        w.str(&src.profile);
        w.u64(src.features.len() as u64);
        for f in &src.features {
            w.str(f);
        }
        w.u64(src.all_features as u64);
        w.u64(src.no_default_features as u64);
        w.str(src.package.as_deref().unwrap_or(""));
        w.str(src.bin.as_deref().unwrap_or(""));
        w.bytes(&lock_hash.unwrap_or_default());
    }
    Ok(())
}

/// The `Cargo.lock` of the workspace that holds `context`: the nearest one above it.
fn cargo_lock(context: &Path) -> Option<PathBuf> {
    context
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())
}

/// The key of an assembled image: its base, its layers (by key), and every recipe field that
/// goes into the config or manifest.
pub fn image_key(
    base_manifest: Option<&str>,
    layer_keys: &[Key],
    layer_names: &[String],
    recipe: &[u8],
) -> Key {
    let mut w = KeyWriter::new("image");
    w.str(base_manifest.unwrap_or("scratch"));
    w.u64(layer_keys.len() as u64);
    for (k, name) in layer_keys.iter().zip(layer_names) {
        w.bytes(&k.0);
        w.str(name);
    }
    w.bytes(recipe);
    w.finish()
}

/// The key of the output index: the image and its tags.
pub fn index_key(image: &Key, tags: &[String]) -> Key {
    let mut w = KeyWriter::new("index");
    w.bytes(&image.0);
    w.u64(tags.len() as u64);
    for t in tags {
        w.str(t);
    }
    w.finish()
}

/// The key of a multi-platform image index: each platform's image (by key), in index order,
/// and the tags.
pub fn platform_index_key(images: &[(String, Key)], tags: &[String]) -> Key {
    let mut w = KeyWriter::new("platform-index");
    w.u64(images.len() as u64);
    for (platform, key) in images {
        w.str(platform);
        w.bytes(&key.0);
    }
    w.u64(tags.len() as u64);
    for t in tags {
        w.str(t);
    }
    w.finish()
}

/// The index of a node in its [`LayerGraph`].
pub type NodeId = usize;

/// What a node does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NodeKind {
    /// Resolve the base image (a local layout today) to a verified manifest.
    FetchBase { reference: String },
    /// Build one layer of the spec.
    BuildLayer {
        layer: String,
        /// What the layer copies out of other stages: `stage:/path -> /dest`.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        copies: Vec<String>,
    },
    /// Write the image config and manifest.
    AssembleImage { name: String },
    /// Tag the image in the output layout's index; with `platforms`, write an image index of
    /// each platform's image first and tag that.
    AssembleIndex {
        tags: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        platforms: Vec<String>,
    },
}

/// One node of the graph.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: NodeId,
    #[serde(flatten)]
    pub kind: NodeKind,
    /// The node's key; `null` for a layer keyed while it is written (see the module docs) and
    /// for the image and index nodes above it, whose keys cover it: the executor computes
    /// them, and each layer's key is in its `layer-finished` event.
    pub key: Option<Key>,
    /// The nodes whose results this one needs.
    pub inputs: Vec<NodeId>,
    /// Whether the store holds this node's result (`None` for nodes that are never cached).
    pub cached: Option<bool>,
    /// The remote layer cache (`registry/repository` of `--cache-from`) that holds a layer the
    /// store lacks, when planning asked the remote caches (`cargo image plan --cache-from`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Whether a layer's key came from the remote cache's alias record of it, with no input
    /// file read (see the module docs on alias keys).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keyed_by_alias: bool,
}

impl Node {
    /// A short human label: `layer app`, `image hello`...
    pub fn label(&self) -> String {
        match &self.kind {
            NodeKind::FetchBase { reference } => format!("base {reference}"),
            NodeKind::BuildLayer { layer, .. } => format!("layer {layer}"),
            NodeKind::AssembleImage { name } => format!("image {name}"),
            NodeKind::AssembleIndex { tags, platforms } if platforms.is_empty() => {
                format!("index [{}]", tags.join(", "))
            }
            NodeKind::AssembleIndex { tags, platforms } => {
                format!("index [{}] of {}", tags.join(", "), platforms.join(", "))
            }
        }
    }
}

/// The immutable graph of one build: nodes in dependency order (every input before its users).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LayerGraph {
    pub nodes: Vec<Node>,
}

impl LayerGraph {
    /// Adds a node after its inputs and returns its id.
    pub fn push(
        &mut self,
        kind: NodeKind,
        key: impl Into<Option<Key>>,
        inputs: Vec<NodeId>,
        cached: Option<bool>,
    ) -> NodeId {
        debug_assert!(inputs.iter().all(|i| *i < self.nodes.len()));
        let id = self.nodes.len();
        self.nodes.push(Node {
            id,
            kind,
            key: key.into(),
            inputs,
            cached,
            remote: None,
            keyed_by_alias: false,
        });
        id
    }

    /// Appends the nodes of `other` (renumbered after this graph's); returns the offset added
    /// to `other`'s node ids.
    pub fn append(&mut self, other: LayerGraph) -> NodeId {
        let offset = self.nodes.len();
        for mut node in other.nodes {
            node.id += offset;
            for input in &mut node.inputs {
                *input += offset;
            }
            self.nodes.push(node);
        }
        offset
    }

    /// A plain text listing: one node a line, with its key, state and inputs.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let state = match (n.cached, &n.remote) {
                (Some(true), _) => "cached",
                (Some(false), Some(_)) => "remote",
                (Some(false), None) => "to build",
                (None, _) => "",
            };
            let inputs = if n.inputs.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = n.inputs.iter().map(|i| format!("#{i}")).collect();
                format!("  <- {}", names.join(" "))
            };
            let _ = writeln!(
                out,
                "#{:<3} {:<32} {}  {:<8}{}",
                n.id,
                n.label(),
                short_key(n.key),
                state,
                inputs
            );
            if let NodeKind::BuildLayer { copies, .. } = &n.kind {
                for copy in copies {
                    let _ = writeln!(out, "       copies {copy}");
                }
            }
        }
        out
    }

    /// The graph in Graphviz DOT: cached nodes filled grey, layers of a remote cache light
    /// blue, nodes to build white.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph cargo_image {\n  rankdir=BT;\n  node [shape=box];\n");
        for n in &self.nodes {
            let fill = match (n.cached, &n.remote) {
                (Some(true), _) => ", style=filled, fillcolor=lightgrey",
                (Some(false), Some(_)) => ", style=filled, fillcolor=lightblue",
                _ => "",
            };
            let label = format!("{}\\n{}", n.label(), short_key(n.key)).replace('"', "\\\"");
            let _ = writeln!(out, "  n{} [label=\"{label}\"{fill}];", n.id);
        }
        for n in &self.nodes {
            for i in &n.inputs {
                let _ = writeln!(out, "  n{i} -> n{};", n.id);
            }
        }
        out.push_str("}\n");
        out
    }
}

/// The first 16 hex digits of a key, or `key pending` (as wide) for a key computed later.
fn short_key(key: Option<Key>) -> String {
    match key {
        Some(key) => key.hex()[..16].to_owned(),
        None => format!("{:<16}", "key pending"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::spec::{CargoSource, Owner};
    use crate::types::Compression;

    fn cargo(target: &str, linker: Option<&str>) -> CargoSource {
        CargoSource {
            package: None,
            bin: Some("app".into()),
            profile: "release".into(),
            features: vec![],
            all_features: false,
            no_default_features: false,
            target: target.into(),
            target_pinned: false,
            linker: linker.map(str::to_string),
            cc: None,
            strip: Default::default(),
            builder: Default::default(),
        }
    }

    /// The key of a layer holding the binary of `src`, built (here: faked) as `bin`.
    fn cargo_layer_key(context: &Path, src: &CargoSource, bin: &Path) -> Key {
        let outputs = HashMap::from([(src.clone(), bin.to_path_buf())]);
        let ctx = SourceContext::new(context, &outputs);
        let layer = LayerSpec {
            name: "app".into(),
            entries: vec![EntrySpec {
                dest: "app".into(),
                dest_is_dir: false,
                source: Source::Cargo(src.clone()),
                owner: Owner::default(),
                mode: None,
                dir_mode: None,
                platforms: vec![],
            }],
            remove: vec![],
        };
        let opts = WriteOptions {
            compression: Compression::Gzip,
            mtime: 0,
            threads: 1,
        };
        layer_key(&layer, &ctx, &opts, &ReadEveryFile, &HashMap::new(), None)
            .unwrap()
            .key
            .unwrap()
    }

    #[test]
    fn cargo_layer_keys_cover_target_linker_cc_strip_and_cargo_lock() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().canonicalize().unwrap();
        let bin = context.join("app");
        std::fs::write(&bin, b"\x7fELF same bytes").unwrap();
        std::fs::write(context.join("Cargo.lock"), "version = 4\n").unwrap();

        let amd64 = cargo_layer_key(&context, &cargo("x86_64-unknown-linux-musl", None), &bin);
        let again = cargo_layer_key(&context, &cargo("x86_64-unknown-linux-musl", None), &bin);
        assert_eq!(amd64, again);
        let arm64 = cargo_layer_key(
            &context,
            &cargo("aarch64-unknown-linux-musl", Some("aarch64-linux-gnu-gcc")),
            &bin,
        );
        assert_ne!(amd64, arm64, "the target triple is in the key");
        let other_linker = cargo_layer_key(
            &context,
            &cargo("aarch64-unknown-linux-musl", Some("zig-cc")),
            &bin,
        );
        assert_ne!(arm64, other_linker, "the linker is in the key");
        let mut dev = cargo("x86_64-unknown-linux-musl", None);
        dev.profile = "dev".into();
        assert_ne!(amd64, cargo_layer_key(&context, &dev, &bin), "the profile");
        let mut unstripped = cargo("x86_64-unknown-linux-musl", None);
        unstripped.strip = crate::cargo::Strip::None;
        assert_ne!(
            amd64,
            cargo_layer_key(&context, &unstripped, &bin),
            "the strip setting"
        );
        let mut other_cc = cargo("x86_64-unknown-linux-musl", None);
        other_cc.cc = Some("clang".into());
        assert_ne!(
            amd64,
            cargo_layer_key(&context, &other_cc, &bin),
            "the C compiler"
        );
        let mut featured = cargo("x86_64-unknown-linux-musl", None);
        featured.features = vec!["tls".into()];
        assert_ne!(
            amd64,
            cargo_layer_key(&context, &featured, &bin),
            "features"
        );

        std::fs::write(context.join("Cargo.lock"), "version = 4\n# changed\n").unwrap();
        let relocked = cargo_layer_key(&context, &cargo("x86_64-unknown-linux-musl", None), &bin);
        assert_ne!(amd64, relocked, "Cargo.lock is in the key");
    }

    /// An entry at `dest` (a directory when it ends with `/`).
    fn entry(dest: &str, source: Source) -> EntrySpec {
        EntrySpec {
            dest: dest.trim_end_matches('/').into(),
            dest_is_dir: dest.ends_with('/'),
            source,
            owner: Owner::default(),
            mode: None,
            dir_mode: None,
            platforms: vec![],
        }
    }

    /// Bytes that do not repeat in any short period.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Never saw a path, knows no hash: every file must be read to key a layer.
    struct Cold;

    impl ContentHasher for Cold {
        fn content_hash(&self, path: &Path, meta: &Metadata) -> std::io::Result<[u8; 32]> {
            ReadEveryFile.content_hash(path, meta)
        }
    }

    /// Knows every file's path (under other stat data) and no hash: files were touched.
    struct Touched;

    impl ContentHasher for Touched {
        fn content_hash(&self, path: &Path, meta: &Metadata) -> std::io::Result<[u8; 32]> {
            ReadEveryFile.content_hash(path, meta)
        }
        fn has_seen(&self, _path: &Path) -> bool {
            true
        }
    }

    #[test]
    fn a_layer_keyed_while_written_has_the_key_keying_it_first_gives() {
        const CHUNK: usize = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().canonicalize().unwrap();
        let file = |rel: &str, content: &[u8]| {
            let p = context.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        };
        // The tar starts with `etc`, `etc/app`, `etc/app/empty` (headers only),
        // `etc/app/inline.toml` (a header and 3,072 bytes), `srv` and `srv/a`: 6,144 bytes,
        // after which `srv/a` fills the writer's first 1 MiB chunk exactly. Others end one
        // byte before and after a chunk, span several, or are empty.
        file("site/a", &noise(CHUNK - 6144, 1));
        file("site/b", &noise(CHUNK - 1, 2));
        file("site/c", &noise(CHUNK + 1, 3));
        file("site/d/e", &noise(2 * CHUNK + 77, 4));
        file("site/empty", b"");
        for i in 0..50 {
            file(&format!("site/small/{i:02}"), &noise(i * 41, 5 + i as u64));
        }
        std::fs::create_dir_all(context.join("site/empty-dir")).unwrap();
        std::os::unix::fs::symlink("d/e", context.join("site/link")).unwrap();
        let outputs = HashMap::new();
        let ctx = SourceContext::new(&context, &outputs);
        let spec = LayerSpec {
            name: "site".into(),
            entries: vec![
                entry(
                    "srv/",
                    Source::Path {
                        path: "site".into(),
                        include: vec![],
                        exclude: vec![],
                    },
                ),
                entry("etc/app/inline.toml", Source::Content(noise(3000, 9))),
                entry("etc/app/empty", Source::Content(Vec::new())),
                entry("var/cache/app/", Source::Dir),
                entry("usr/bin/site", Source::Symlink("/srv/link".into())),
            ],
            remove: vec![],
        };
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let opts = WriteOptions {
                compression,
                mtime: 1000,
                threads: 2,
            };
            let lower = Some("sha256:base");
            let stages = HashMap::new();
            let first = layer_key(&spec, &ctx, &opts, &Cold, &stages, lower).unwrap();
            let key = first.key.expect("layer_key always keys");
            assert!(first.pending.is_none());

            // A layer the stat index never saw is keyed while written, by `layer_plan` only.
            let plan = layer_plan(&spec, &ctx, &opts, &Cold, &stages, lower, true).unwrap();
            assert_eq!(plan.key, None, "{compression:?}");
            assert_eq!(plan.inputs, first.inputs);
            let mut tree = plan.tree.expect("the tree it will write");
            // As on a base: implicit directories take the base's attributes while written.
            let replaced = tree.inherit_implicit_dirs(|p| (p == "etc").then_some((0o700, 7, 8)));
            assert_eq!(tree.get("etc").unwrap().mode, 0o700);
            let mut out = Vec::new();
            let (blob, hashes) =
                layer::write_layer_hashing_host_files(&tree, &opts, &mut out, &|_| {}).unwrap();
            let (again, _) =
                layer::write_layer_hashing_host_files(&tree, &opts, std::io::sink(), &|_| {})
                    .unwrap();
            assert_eq!(blob, again);
            if compression == Compression::None {
                assert!(
                    out[6144..CHUNK] == noise(CHUNK - 6144, 1)[..],
                    "`srv/a` ends where the first chunk does"
                );
            }
            tree.put_back(replaced);
            assert_eq!(tree.get("etc").unwrap().mode, 0o755);
            let pending = plan.pending.expect("a pending key");
            assert_eq!(pending.finish(&tree, &hashes), key, "{compression:?}");

            // Touched files (their paths known, their stat not) are keyed first, as before.
            let touched = layer_plan(&spec, &ctx, &opts, &Touched, &stages, lower, true).unwrap();
            assert_eq!(touched.key, Some(key));
        }
        // Another content, another key, both ways.
        file("site/c", &noise(CHUNK + 1, 30));
        let opts = WriteOptions {
            compression: Compression::Gzip,
            mtime: 1000,
            threads: 1,
        };
        let keyed = layer_key(&spec, &ctx, &opts, &Cold, &HashMap::new(), None).unwrap();
        let plan = layer_plan(&spec, &ctx, &opts, &Cold, &HashMap::new(), None, true).unwrap();
        let tree = plan.tree.unwrap();
        let (_, hashes) =
            layer::write_layer_hashing_host_files(&tree, &opts, std::io::sink(), &|_| {}).unwrap();
        assert_eq!(
            plan.pending.unwrap().finish(&tree, &hashes),
            keyed.key.unwrap()
        );
    }

    #[test]
    fn only_a_layer_with_megabytes_of_new_files_is_keyed_while_written() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(context.join("big")).unwrap();
        std::fs::write(context.join("big/large"), noise(6 << 20, 1)).unwrap();
        std::fs::write(context.join("big/small"), b"x").unwrap();
        std::fs::create_dir_all(context.join("tiny")).unwrap();
        std::fs::write(context.join("tiny/one"), noise(3 << 20, 2)).unwrap();
        let outputs = HashMap::new();
        let ctx = SourceContext::new(&context, &outputs);
        let layer = |dir: &str, remove: Vec<String>| LayerSpec {
            name: dir.into(),
            entries: vec![entry(
                "data/",
                Source::Path {
                    path: dir.into(),
                    include: vec![],
                    exclude: vec![],
                },
            )],
            remove,
        };
        let opts = WriteOptions {
            compression: Compression::Gzip,
            mtime: 0,
            threads: 1,
        };
        /// Knows the hash of every file but `big/small`, whose path it never saw.
        struct AllButSmall;
        impl ContentHasher for AllButSmall {
            fn content_hash(&self, path: &Path, meta: &Metadata) -> std::io::Result<[u8; 32]> {
                ReadEveryFile.content_hash(path, meta)
            }
            fn known_hash(&self, path: &Path, meta: &Metadata) -> Option<[u8; 32]> {
                if path.ends_with("big/small") {
                    return None;
                }
                ReadEveryFile.content_hash(path, meta).ok()
            }
        }
        let pending = |spec: &LayerSpec, hasher: &dyn ContentHasher| {
            layer_plan(spec, &ctx, &opts, hasher, &HashMap::new(), None, true)
                .unwrap()
                .pending
                .is_some()
        };
        assert!(pending(&layer("big", vec![]), &Cold), "6 MiB never seen");
        assert!(!pending(&layer("tiny", vec![]), &Cold), "3 MiB: read twice");
        assert!(
            !pending(&layer("big", vec![]), &Touched),
            "touched: keyed first"
        );
        assert!(
            !pending(&layer("big", vec![]), &AllButSmall),
            "one new byte of a known layer: keyed first"
        );
        assert!(
            !pending(&layer("big", vec!["etc/old".into()]), &Cold),
            "a layer that removes paths is keyed first"
        );
    }

    #[test]
    fn a_pending_layers_identity_follows_its_recipe_and_its_files_stat_not_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(context.join("big")).unwrap();
        std::fs::write(context.join("big/large"), noise(6 << 20, 1)).unwrap();
        std::fs::write(context.join("big/small"), b"x").unwrap();
        let outputs = HashMap::new();
        let ctx = SourceContext::new(&context, &outputs);
        let spec = |dest: &str| LayerSpec {
            name: "big".into(),
            entries: vec![entry(
                dest,
                Source::Path {
                    path: "big".into(),
                    include: vec![],
                    exclude: vec![],
                },
            )],
            remove: vec![],
        };
        let opts = WriteOptions {
            compression: Compression::Gzip,
            mtime: 0,
            threads: 1,
        };
        let identity = |spec: &LayerSpec| {
            let plan = layer_plan(spec, &ctx, &opts, &Cold, &HashMap::new(), None, true).unwrap();
            let tree = plan.tree.expect("a pending layer's tree");
            let pending = plan.pending.expect("keyed while written");
            let (_, hashes) =
                layer::write_layer_hashing_host_files(&tree, &opts, std::io::sink(), &|_| {})
                    .unwrap();
            (pending.identity(&tree), pending.finish(&tree, &hashes))
        };
        let (first, key) = identity(&spec("data/"));
        assert_eq!(identity(&spec("data/")), (first, key), "planned twice");
        assert_ne!(first, key, "an identity is never a key");
        assert_ne!(identity(&spec("srv/")).0, first, "another recipe");

        // The same bytes with another mtime: the identity moved, the key (content) did not.
        std::fs::File::options()
            .write(true)
            .open(context.join("big/small"))
            .unwrap()
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        let touched = identity(&spec("data/"));
        assert_ne!(touched.0, first);
        assert_eq!(touched.1, key);
    }

    #[test]
    fn platform_index_keys_follow_platforms_images_and_tags() {
        let a = Key([1; 32]);
        let b = Key([2; 32]);
        let tags = vec!["latest".to_string()];
        let both = [
            ("linux/amd64".to_string(), a),
            ("linux/arm64".to_string(), b),
        ];
        let key = platform_index_key(&both, &tags);
        assert_eq!(key, platform_index_key(&both, &tags));
        let swapped = [
            ("linux/arm64".to_string(), b),
            ("linux/amd64".to_string(), a),
        ];
        assert_ne!(key, platform_index_key(&swapped, &tags), "index order");
        assert_ne!(key, platform_index_key(&both, &["v1".to_string()]), "tags");
        assert_ne!(key, platform_index_key(&both[..1], &tags), "platforms");
        assert_ne!(key, index_key(&a, &tags), "not a single image's index");
    }

    #[test]
    fn appended_graphs_are_renumbered() {
        let mut one = LayerGraph::default();
        let base = one.push(
            NodeKind::BuildLayer {
                layer: "a".into(),
                copies: Vec::new(),
            },
            Key([1; 32]),
            vec![],
            Some(false),
        );
        one.push(
            NodeKind::AssembleImage { name: "x".into() },
            Key([2; 32]),
            vec![base],
            Some(false),
        );
        let mut all = LayerGraph::default();
        assert_eq!(all.append(one.clone()), 0);
        assert_eq!(all.append(one), 2);
        assert_eq!(all.nodes.len(), 4);
        assert_eq!(all.nodes[3].id, 3);
        assert_eq!(all.nodes[3].inputs, [2]);
        assert_eq!(all.nodes[1].inputs, [0]);
    }
}
