//! Stage filesystems: the merged view of an image's layers, and copies out of it.
//!
//! # Brief overview
//!
//! A multi-stage build copies paths out of another stage (`COPY --from=builder` in a
//! Dockerfile). What a stage's filesystem holds is its layers applied in order, so this module
//! builds that view without unpacking anything to disk:
//!
//! 1. **[`Rootfs::open`]** (in `layers.rs`) reads each layer blob of the stage, bottom first. A
//!    compressed blob (gzip or zstd, from its media type, checked against its first bytes) is
//!    decompressed once into an uncompressed tar in a scratch directory; a plain tar is read
//!    where it is. The tar's members, walked by the tar toolkit's scanner
//!    ([`crate::tarball::Members`], names under [`crate::tarball::NamePolicy::Layer`]: leading
//!    `/` dropped, `..` and non-UTF-8 names refused), are indexed: path -> kind, mode, owner, and
//!    for files the layer and the offset of the data in its tar. Contents are never read here,
//!    so the index costs a few hundred bytes per path (a 50 000-file base image is some 10 MiB)
//!    and file data is streamed straight from the tars when a layer that copies it is written.
//! 2. **[`Rootfs::copy_out`]** puts a path of the view into a [`LayerTree`] of the layer being
//!    built: files as [`FileSource::Archive`] entries (the tar and the offset), directories and
//!    symlinks as they are. From there the layer is written like any other.
//!
//! ```text
//! stage layer blobs --open--> Rootfs (index) --copy_out--> LayerTree --write_layer--> blob
//! ```
//!
//! # How layers merge (OCI image spec, `layer.md`)
//!
//! Layers apply in order, each on the view of the ones below it:
//! - an entry replaces the entry at its path; a directory over a directory keeps the lower
//!   children (it only sets the directory's metadata); anything else over a directory removes
//!   the lower subtree;
//! - `.wh.NAME` removes `NAME` (and its subtree) of the lower layers; `.wh..wh..opq` in a
//!   directory removes all of the directory's lower children. Whiteouts act on lower layers only,
//!   never on entries of their own layer, and are not part of the view (nor are the other
//!   `.wh..wh.*` names aufs leaves behind);
//! - a hard link becomes the entry its target is at that point (a file: the same content);
//! - an entry whose parent path goes through a symlink lands where the symlink points (as tar
//!   extraction into a directory does); a missing parent becomes a directory (0755, 0:0), and a
//!   parent that is a file is replaced by one (as overlay does).
//!
//! Character and block devices and fifos are indexed with their device numbers (a base image
//! or an imported rootfs has them in `/dev`) and copied out as they are.
//!
//! # Symlinks
//!
//! [`Rootfs::resolve`] follows symlinks the way the kernel would inside a `chroot` of the stage:
//! an absolute target starts again at the stage root, `..` never climbs above the root (`/..` is
//! `/`), and more than 40 links in one resolution is an error. Resolution only ever looks at the
//! index, never at the host, so a link to `../../etc/passwd` reads the stage's `/etc/passwd`.
//! [`Rootfs::copy_out`] resolves the top-level source path only; symlinks inside a copied tree are
//! copied as symlinks.
//!
//! # Ownership and modes
//!
//! A copy keeps the stage's modes and numeric owners (it copies from an image, whose owners mean
//! something there) unless the request overrides them: `mode` for files, `dir_mode` for
//! directories, `owner` for every entry. Symlinks are 0777.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::layer::{
    self, is_normalised, join, DeviceKind, Entry, EntryKind, FileSource, Globs, ImportedArchive,
    LayerTree, Origin, SYMLINK_MODE,
};
use crate::spec::Owner;
use crate::tarball::normalise_member;

mod export;
mod layers;

mod stage_fs;
#[cfg(all(test, unix))]
mod tests;

pub use export::{export_dir, export_tar, export_tar_file, Error as ExportError, Exported};
pub use stage_fs::{StageFs, BASE_FS};

/// Most symlinks one resolution follows (as Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;
/// Buffer size for reading and decompressing layers.
const BUF_SIZE: usize = 1 << 20;
/// Mode of directories the view adds for members whose parents no layer gave.
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Why a stage's filesystem could not be read, or a path copied out of it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer's media type is not a layer type, or its bytes are not what the type says.
    #[error(
        "layer blob `{path}` of stage `{stage}` has media type `{media_type}` but {found}; \
         only tar layers (plain, gzip, zstd) can be read"
    )]
    CheckLayer {
        stage: String,
        path: PathBuf,
        media_type: String,
        found: String,
    },
    /// Reading, decompressing or parsing a layer blob failed.
    #[error("cannot read layer blob `{path}` of stage `{stage}`; is the blob complete?")]
    ReadLayer {
        stage: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A member of a layer cannot be applied (a name with `..`, a dangling hard link, a name
    /// that is not UTF-8).
    #[error("member `{member}` of layer blob `{path}` of stage `{stage}`: {reason}")]
    ReadMember {
        stage: String,
        path: PathBuf,
        member: String,
        reason: String,
    },
    /// A path is not in the stage's filesystem.
    #[error(
        "`{path}` is not in the filesystem of stage `{stage}`{resolved}; \
         check the path (symlinks are resolved inside the stage)"
    )]
    FindPath {
        stage: String,
        path: String,
        /// ` (it resolves to `...`)` when symlinks led elsewhere, else empty.
        resolved: String,
    },
    /// Following the symlinks of a path took more than [`MAX_SYMLINKS`] links.
    #[error(
        "`{path}` in stage `{stage}` goes through more than {MAX_SYMLINKS} symlinks \
         (a symlink loop?)"
    )]
    ResolvePath { stage: String, path: String },
    /// A copied file cannot be placed at the image root.
    #[error("`{path}` of stage `{stage}` is a file; give it a destination path, not `/`")]
    PlaceEntry { stage: String, path: String },
    /// Reading a file's content out of a layer failed.
    #[error("cannot read `{path}` of stage `{stage}` from its layer")]
    ReadFile {
        stage: String,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The copied entries do not fit into the layer (a conflict, a bad glob).
    #[error(transparent)]
    AddEntries(#[from] layer::Error),
}

/// One layer blob of a stage, as a file (in the store or a layout) with its media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlobRef {
    pub path: PathBuf,
    pub media_type: String,
}

/// What a path of the view is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind<'a> {
    /// A regular file of `size` bytes (from layer `layer`, bottom = 0).
    File {
        size: u64,
        layer: usize,
    },
    Dir,
    Symlink {
        target: &'a str,
    },
    /// A character or block device or a fifo.
    Device {
        kind: DeviceKind,
        major: u32,
        minor: u32,
    },
}

/// A path of the view: its kind, permission bits and numeric owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo<'a> {
    pub kind: NodeKind<'a>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// What [`Rootfs::copy_out`] copies, and where to.
#[derive(Debug, Clone, Copy)]
pub struct CopyRequest<'a> {
    /// The path in the stage (absolute; resolved inside the stage, symlinks followed).
    pub src: &'a str,
    /// Globs as for host path sources (gitignore-style, relative to `src`): only for directories.
    pub include: &'a [String],
    pub exclude: &'a [String],
    /// Where it goes in the layer: normalised, without the leading `/`; `""` is the root.
    pub dest: &'a str,
    /// `dest` names a directory to put a file into (the spec wrote a trailing `/`).
    pub dest_is_dir: bool,
    /// Owner of every copied entry; `None` keeps the stage's uid/gid.
    pub owner: Option<Owner>,
    /// Permission bits of copied files; `None` keeps the stage's.
    pub mode: Option<u32>,
    /// Permission bits of copied directories; `None` keeps the stage's.
    pub dir_mode: Option<u32>,
    /// The layer being built (for messages).
    pub layer: &'a str,
    /// Index of the `add` entry of the layer the copy is (for conflict messages).
    pub origin: usize,
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
}

#[derive(Debug, Clone)]
enum Kind {
    File {
        layer: u32,
        offset: u64,
        size: u64,
    },
    Dir,
    Symlink(Box<str>),
    Device {
        kind: DeviceKind,
        major: u32,
        minor: u32,
    },
}

impl Node {
    fn implicit_dir() -> Node {
        Node {
            kind: Kind::Dir,
            mode: IMPLICIT_DIR_MODE,
            uid: 0,
            gid: 0,
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir)
    }
}

/// The merged filesystem of a stage: its layers applied in order. See the module docs.
#[derive(Debug)]
pub struct Rootfs {
    stage: String,
    /// The uncompressed tar of each layer, bottom first.
    archives: Vec<Arc<ImportedArchive>>,
    root: Node,
    /// Every path but the root (relative, normalised), in byte order.
    nodes: BTreeMap<String, Node>,
}

impl Rootfs {
    /// Reads the layers of stage `stage` (bottom first) into a merged view. Compressed layers are
    /// decompressed into temporary files in `scratch`, which live as long as the view or the
    /// last layer entry copied out of it.
    pub fn open(stage: &str, layers: &[LayerBlobRef], scratch: &Path) -> Result<Rootfs, Error> {
        let mut fs = Rootfs {
            stage: stage.to_owned(),
            archives: Vec::with_capacity(layers.len()),
            root: Node::implicit_dir(),
            nodes: BTreeMap::new(),
        };
        for (index, layer) in layers.iter().enumerate() {
            fs.add_layer(layer, index as u32, scratch)?;
        }
        Ok(fs)
    }

    /// The stage's name, as given to [`Rootfs::open`].
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Number of paths in the view (the root not counted).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the view holds nothing but the root.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every path of the view (absolute, `/` first), in byte order.
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once("/".to_owned()).chain(self.nodes.keys().map(|k| format!("/{k}")))
    }

    /// The entry at `path` itself (absolute or relative; not resolved: a symlink is returned as
    /// a symlink), or `None`.
    pub fn get(&self, path: &str) -> Option<NodeInfo<'_>> {
        let key = normalise_member(path)?;
        self.node(&key).map(|n| NodeInfo {
            kind: match &n.kind {
                Kind::File { layer, size, .. } => NodeKind::File {
                    size: *size,
                    layer: *layer as usize,
                },
                Kind::Dir => NodeKind::Dir,
                Kind::Symlink(t) => NodeKind::Symlink { target: t },
                Kind::Device { kind, major, minor } => NodeKind::Device {
                    kind: *kind,
                    major: *major,
                    minor: *minor,
                },
            },
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
        })
    }

    /// `(mode, uid, gid)` of the directory at `path` (not resolved), for
    /// [`LayerTree::inherit_implicit_dirs`]: `tree.inherit_implicit_dirs(|p| lower.dir_attributes(p))`.
    pub fn dir_attributes(&self, path: &str) -> Option<(u32, u64, u64)> {
        let node = self.node(&normalise_member(path)?)?;
        node.is_dir().then_some((node.mode, node.uid, node.gid))
    }

    /// Resolves every symlink of `path` inside the stage root (see the module docs) and returns
    /// the absolute path it names, which must exist.
    pub fn resolve(&self, path: &str) -> Result<String, Error> {
        let key = self.resolve_key(path)?;
        Ok(format!("/{key}"))
    }

    /// The content of the file at `path` (symlinks resolved inside the stage).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, Error> {
        let key = self.resolve_key(path)?;
        let node = self.node(&key).expect("resolve_key returns existing paths");
        let Kind::File {
            layer,
            offset,
            size,
        } = node.kind
        else {
            return Err(Error::ReadFile {
                stage: self.stage.clone(),
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            });
        };
        let read = || -> io::Result<Vec<u8>> {
            use std::io::Seek;
            let mut file = File::open(self.archives[layer as usize].tar_path())?;
            file.seek(io::SeekFrom::Start(offset))?;
            // Not sized by the header: the buffer grows with what is there.
            let mut buf = Vec::new();
            file.take(size).read_to_end(&mut buf)?;
            if buf.len() as u64 != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the layer ends inside the file",
                ));
            }
            Ok(buf)
        };
        read().map_err(|source| Error::ReadFile {
            stage: self.stage.clone(),
            path: path.to_owned(),
            source,
        })
    }

    /// Copies `req.src` of the stage into `tree` at `req.dest`: a file (the top-level path's
    /// symlinks resolved inside the stage) goes to `dest` (or into it, named as `src` is named,
    /// when `dest_is_dir` or `dest` is the root); a directory's *contents* go into `dest`,
    /// filtered by `include`/`exclude` exactly as host path sources are, with symlinks copied as
    /// symlinks. File contents are referenced in the layer tars, not read.
    pub fn copy_out(&self, req: &CopyRequest<'_>, tree: &mut LayerTree) -> Result<(), Error> {
        debug_assert!(
            req.dest.is_empty() || is_normalised(req.dest),
            "unnormalised destination {:?}",
            req.dest
        );
        let key = self.resolve_key(req.src)?;
        let node = self.node(&key).expect("resolve_key returns existing paths");
        let add =
            |tree: &mut LayerTree, dest: &str, node: &Node| self.add_entry(req, tree, dest, node);
        if !node.is_dir() {
            let written = normalise_member(req.src).unwrap_or_default();
            let name = written.rsplit('/').next().unwrap_or_default();
            let dest = if req.dest_is_dir || req.dest.is_empty() {
                join(req.dest, name)
            } else {
                req.dest.to_owned()
            };
            if dest.is_empty() {
                return Err(Error::PlaceEntry {
                    stage: self.stage.clone(),
                    path: req.src.to_owned(),
                });
            }
            return add(tree, &dest, node);
        }

        let include = Globs::new(req.layer, req.include)?;
        let exclude = Globs::new(req.layer, req.exclude)?;
        // Directory states by relative path: (excluded, included).
        let mut states: HashMap<&str, (bool, bool)> = HashMap::new();
        states.insert("", (false, include.is_none()));
        let mut written: HashSet<&str> = HashSet::new();
        if include.is_none() {
            written.insert("");
            if !req.dest.is_empty() {
                add(tree, req.dest, node)?;
            }
        }
        let prefix_len = if key.is_empty() { 0 } else { key.len() + 1 };
        for (path, child) in self.children(&key) {
            let rel = &path[prefix_len..];
            let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
            let (parent_excluded, parent_included) =
                states.get(parent).copied().unwrap_or((true, false));
            let is_dir = child.is_dir();
            if parent_excluded || exclude.as_ref().is_some_and(|g| g.matches(rel, is_dir)) {
                if is_dir {
                    states.insert(rel, (true, false));
                }
                continue;
            }
            let included = Globs::includes(include.as_ref(), rel, is_dir, parent_included);
            if is_dir {
                states.insert(rel, (false, included));
            }
            if !included {
                continue;
            }
            // The directories above it that are not written yet, nearest last.
            let mut missing = Vec::new();
            let mut up = parent;
            while !written.contains(up) {
                missing.push(up);
                if up.is_empty() {
                    break;
                }
                up = up.rsplit_once('/').map_or("", |(p, _)| p);
            }
            for dir in missing.into_iter().rev() {
                written.insert(dir);
                let dir_key = join(&key, dir);
                let dir_node = self
                    .node(&dir_key)
                    .expect("parents of a path are in the view");
                let dest = join(req.dest, dir);
                if !dest.is_empty() {
                    add(tree, &dest, dir_node)?;
                }
            }
            if is_dir {
                written.insert(rel);
            }
            add(tree, &join(req.dest, rel), child)?;
        }
        Ok(())
    }

    /// Inserts one copied entry into the tree.
    fn add_entry(
        &self,
        req: &CopyRequest<'_>,
        tree: &mut LayerTree,
        dest: &str,
        node: &Node,
    ) -> Result<(), Error> {
        let (kind, mode) = match &node.kind {
            Kind::File {
                layer,
                offset,
                size,
            } => (
                EntryKind::File {
                    source: FileSource::Archive {
                        archive: self.archives[*layer as usize].clone(),
                        offset: *offset,
                    },
                    size: *size,
                },
                req.mode.unwrap_or(node.mode) & 0o7777,
            ),
            Kind::Dir => (EntryKind::Dir, req.dir_mode.unwrap_or(node.mode) & 0o7777),
            Kind::Symlink(target) => (
                EntryKind::Symlink {
                    target: target.to_string(),
                },
                SYMLINK_MODE,
            ),
            Kind::Device { kind, major, minor } => (
                EntryKind::Device {
                    kind: *kind,
                    major: *major,
                    minor: *minor,
                },
                req.mode.unwrap_or(node.mode) & 0o7777,
            ),
        };
        let owner = req.owner.unwrap_or(Owner {
            uid: node.uid,
            gid: node.gid,
        });
        let entry = Entry {
            kind,
            mode,
            uid: owner.uid,
            gid: owner.gid,
            origin: Origin {
                entry: req.origin,
                implicit: false,
            },
        };
        tree.insert(dest, entry).map_err(|e| match e {
            layer::Error::MergeEntries {
                path,
                first,
                second,
                ..
            } => layer::Error::MergeEntries {
                layer: req.layer.to_owned(),
                path,
                first,
                second: format!("{second} (`{}` of stage `{}`)", req.src, self.stage),
            }
            .into(),
            e => e.into(),
        })
    }

    fn node(&self, key: &str) -> Option<&Node> {
        if key.is_empty() {
            Some(&self.root)
        } else {
            self.nodes.get(key)
        }
    }

    /// The entries below directory `key` (all of them for the root), in byte order.
    fn children<'a>(&'a self, key: &str) -> Box<dyn Iterator<Item = (&'a str, &'a Node)> + 'a> {
        let iter = self.nodes.iter().map(|(k, n)| (k.as_str(), n));
        if key.is_empty() {
            return Box::new(iter);
        }
        // `key/` up to `key0`: `0` is the byte after `/`.
        let (start, end) = (format!("{key}/"), format!("{key}0"));
        Box::new(self.nodes.range(start..end).map(|(k, n)| (k.as_str(), n)))
    }

    /// Removes the entries below directory `key` (not `key` itself).
    fn remove_children(&mut self, key: &str) {
        if key.is_empty() {
            self.nodes.clear();
            return;
        }
        let mut below = self.nodes.split_off(&format!("{key}/"));
        let mut after = below.split_off(&format!("{key}0"));
        self.nodes.append(&mut after);
    }

    /// Resolves `path` and checks that it exists; returns its key.
    fn resolve_key(&self, path: &str) -> Result<String, Error> {
        let key = self.resolve_path(path, true)?;
        if self.node(&key).is_none() {
            let written = normalise_member(path).unwrap_or_default();
            return Err(Error::FindPath {
                stage: self.stage.clone(),
                path: path.to_owned(),
                resolved: if written == key {
                    String::new()
                } else {
                    format!(" (it resolves to `/{key}`)")
                },
            });
        }
        Ok(key)
    }

    /// Resolves the symlinks of `path` inside the root (the last component's only when
    /// `follow_last`); returns the key of the path it names, which may not exist. Components
    /// that do not exist are taken as they are.
    fn resolve_path(&self, path: &str, follow_last: bool) -> Result<String, Error> {
        // Components still to walk, last first.
        let mut todo: Vec<String> = path
            .split('/')
            .rev()
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect();
        let mut cur: Vec<String> = Vec::new();
        let mut links = 0usize;
        while let Some(c) = todo.pop() {
            if c == "." {
                continue;
            }
            if c == ".." {
                cur.pop();
                continue;
            }
            cur.push(c);
            let is_last = todo.is_empty();
            if is_last && !follow_last {
                break;
            }
            let key = cur.join("/");
            if let Some(Node {
                kind: Kind::Symlink(target),
                ..
            }) = self.nodes.get(&key)
            {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::ResolvePath {
                        stage: self.stage.clone(),
                        path: path.to_owned(),
                    });
                }
                cur.pop();
                if target.starts_with('/') {
                    cur.clear();
                }
                todo.extend(
                    target
                        .split('/')
                        .rev()
                        .filter(|c| !c.is_empty() && *c != ".")
                        .map(str::to_owned),
                );
            }
        }
        Ok(cur.join("/"))
    }
}
