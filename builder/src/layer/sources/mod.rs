//! Sources: each `add` entry of a layer spec read into the [`LayerTree`].
//!
//! [`LayerTree::from_spec`] goes through the entries in spec order and hands each to the reader
//! of its source kind: host paths (`host`), tar archives (`tar_import`), and the small ones here
//! (inline content, empty directory, symlink, cargo binary). Every reader turns what it finds into
//! [`Entry`] values with normalised modes and the spec's owner, and inserts them through one
//! [`Builder`], which turns tree conflicts into errors naming both sources.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::spec::{CargoSource, EntrySpec, LayerSpec, Source};

use super::tree::{Conflict, Entry, EntryKind, FileSource, LayerTree, Origin};
use super::{Error, SourceContext};

mod debian;
mod filter;
mod host;
mod tar_import;

pub(crate) use crate::tarball::normalise_member;
pub(crate) use debian::INSTALL_RECIPE as DEBIAN_INSTALL_RECIPE;
pub use filter::{HostFilter, IgnoreFile, Reserved};
pub(crate) use host::Globs;

/// Permission bits of a symlink.
pub(crate) const SYMLINK_MODE: u32 = 0o777;
/// Default permission bits of a directory.
pub(crate) const DIR_MODE: u32 = 0o755;
/// Default permission bits of a file without an exec bit (and of inline content).
pub(crate) const FILE_MODE: u32 = 0o644;
/// Default permission bits of an executable file (and of cargo binaries).
pub(crate) const EXEC_MODE: u32 = 0o755;

impl LayerTree {
    /// Reads every `add` entry of `layer` from its source into one tree.
    ///
    /// Errors name the source at fault: a missing or escaping host path, a special file, an
    /// unreadable archive, a bad glob, or two entries at one destination.
    pub fn from_spec(layer: &LayerSpec, ctx: &SourceContext<'_>) -> Result<LayerTree, Error> {
        // The context is documented as canonical; canonicalising again costs one syscall and
        // keeps the "inside the context" check right if a caller passes a symlinked path.
        let context = fs::canonicalize(ctx.context).map_err(|source| Error::ReadSource {
            path: ctx.context.to_path_buf(),
            source,
        })?;
        let mut b = Builder {
            tree: LayerTree::new(),
            layer,
            context: &context,
            ctx,
            dpkg: std::collections::BTreeMap::new(),
        };
        for (index, spec) in layer.entries.iter().enumerate() {
            b.add_source(index, spec)?;
        }
        let installed = std::mem::take(&mut b.dpkg);
        debian::write_database(&mut b, installed)?;
        let mut tree = b.tree;
        if !layer.remove.is_empty() {
            let removes: Vec<String> = layer.remove.iter().map(|p| format!("/{p}")).collect();
            super::add_whiteouts(&mut tree, &layer.name, &removes, layer.entries.len())?;
        }
        Ok(tree)
    }
}

/// State shared by the source readers while one layer's tree is built.
pub(crate) struct Builder<'a> {
    pub tree: LayerTree,
    pub layer: &'a LayerSpec,
    /// The canonical context directory.
    pub context: &'a Path,
    pub ctx: &'a SourceContext<'a>,
    /// The packages `debian` entries installed, by dpkg info name, for dpkg's database.
    pub(crate) dpkg: std::collections::BTreeMap<String, debian::Installed>,
}

impl Builder<'_> {
    fn add_source(&mut self, index: usize, spec: &EntrySpec) -> Result<(), Error> {
        match &spec.source {
            Source::Path {
                path,
                include,
                exclude,
            } => host::add(self, index, spec, path, include, exclude),
            Source::Tar {
                path,
                include,
                exclude,
            } => tar_import::add(self, index, spec, path, include, exclude),
            Source::Content(bytes) => {
                let dest = self.leaf_dest(spec, "inline content")?;
                let mode = spec.mode.map_or(FILE_MODE, mask);
                let source = FileSource::Inline(Arc::from(bytes.as_slice()));
                self.insert(
                    index,
                    &dest,
                    spec,
                    EntryKind::File {
                        source,
                        size: bytes.len() as u64,
                    },
                    mode,
                )
            }
            Source::Dir => {
                if spec.dest.is_empty() {
                    return Ok(()); // the image root always exists
                }
                let mode = spec.dir_mode.or(spec.mode).map_or(DIR_MODE, mask);
                self.insert(index, &spec.dest, spec, EntryKind::Dir, mode)
            }
            Source::Symlink(target) => {
                let dest = self.leaf_dest(spec, "a symlink")?;
                self.insert(
                    index,
                    &dest,
                    spec,
                    EntryKind::Symlink {
                        target: target.clone(),
                    },
                    SYMLINK_MODE,
                )
            }
            Source::Cargo(cargo) => self.add_cargo(index, spec, cargo),
            Source::Debian(source) => debian::add(self, index, spec, source),
            Source::Stage {
                stage,
                path,
                include,
                exclude,
            } => match self.ctx.stages {
                Some(copier) => copier.copy_out(
                    &self.layer.name,
                    stage,
                    path,
                    include,
                    exclude,
                    spec,
                    index,
                    &mut self.tree,
                ),
                None => Err(Error::CopyFromStage {
                    stage: stage.clone(),
                    path: format!("/{path}"),
                    source: "the stage is not built in this build".into(),
                }),
            },
        }
    }

    fn add_cargo(
        &mut self,
        index: usize,
        spec: &EntrySpec,
        cargo: &CargoSource,
    ) -> Result<(), Error> {
        let binary = self
            .ctx
            .cargo_outputs
            .get(cargo)
            .ok_or_else(|| Error::FindCargoOutput {
                what: describe_cargo(cargo),
            })?;
        let meta = fs::metadata(binary).map_err(|source| Error::ReadSource {
            path: binary.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(Error::AddSpecialFile {
                path: binary.clone(),
                kind: file_kind(&meta.file_type()),
            });
        }
        let dest = if spec.dest_is_dir || spec.dest.is_empty() {
            super::tree::join(&spec.dest, utf8_file_name(binary)?)
        } else {
            spec.dest.clone()
        };
        let mode = spec.mode.map_or(EXEC_MODE, mask);
        let kind = EntryKind::host_file(binary.clone(), meta);
        self.insert(index, &dest, spec, kind, mode)
    }

    /// The destination of a source that produces one leaf (file or symlink) at `dest`.
    fn leaf_dest(&self, spec: &EntrySpec, what: &str) -> Result<String, Error> {
        if spec.dest.is_empty() {
            return Err(Error::PlaceEntry {
                layer: self.layer.name.clone(),
                what: what.to_owned(),
            });
        }
        Ok(spec.dest.clone())
    }

    /// Inserts an entry owned as the spec says, naming both sources on a conflict.
    pub fn insert(
        &mut self,
        index: usize,
        path: &str,
        spec: &EntrySpec,
        kind: EntryKind,
        mode: u32,
    ) -> Result<(), Error> {
        self.insert_owned(index, path.to_owned(), spec, kind, mode)
    }

    /// [`insert`](Self::insert) with the path as an owned string (it becomes the tree's key).
    pub fn insert_owned(
        &mut self,
        index: usize,
        path: String,
        spec: &EntrySpec,
        kind: EntryKind,
        mode: u32,
    ) -> Result<(), Error> {
        use super::whiteout::WHITEOUT_PREFIX;
        // A component that starts with the whiteout prefix (the components are split only
        // when the prefix is in the path at all: one substring search per entry).
        let hidden = path
            .contains(WHITEOUT_PREFIX)
            .then(|| path.split('/').find(|c| c.starts_with(WHITEOUT_PREFIX)))
            .flatten();
        if let Some(name) = hidden {
            return Err(Error::WhiteoutName {
                layer: self.layer.name.clone(),
                path: path.to_owned(),
                what: self.describe(index),
                hidden: name
                    .strip_prefix(WHITEOUT_PREFIX)
                    .unwrap_or(name)
                    .to_owned(),
            });
        }
        let entry = Entry {
            kind,
            mode,
            uid: spec.owner.uid,
            gid: spec.owner.gid,
            origin: Origin {
                entry: index,
                implicit: false,
            },
        };
        self.tree
            .try_insert_owned(path, entry)
            .map_err(|c| self.conflict(c))
    }

    fn conflict(&self, c: Conflict) -> Error {
        let detail = |origin: Origin| {
            let what = self.describe(origin.entry);
            if origin.implicit {
                format!("{what} (as a parent directory of its entries)")
            } else {
                what
            }
        };
        let host = |p: Option<PathBuf>| match p {
            Some(p) => format!(
                " (host file `{}`)",
                p.strip_prefix(self.context).unwrap_or(&p).display()
            ),
            None => String::new(),
        };
        let first = detail(c.existing) + &host(c.existing_host);
        let second = detail(c.new) + &host(c.new_host);
        Error::MergeEntries {
            layer: self.layer.name.clone(),
            path: c.path,
            first,
            second,
        }
    }

    /// A short description of `add` entry `index` for messages.
    fn describe(&self, index: usize) -> String {
        let Some(spec) = self.layer.entries.get(index) else {
            return format!("add entry #{}", index + 1);
        };
        let source = match &spec.source {
            Source::Path { path, .. } => format!("path `{}`", path.display()),
            Source::Content(_) => "inline content".to_owned(),
            Source::Dir => "a directory".to_owned(),
            Source::Symlink(target) => format!("a symlink to `{target}`"),
            Source::Tar { path, .. } => format!("archive `{}`", path.display()),
            Source::Cargo(cargo) => describe_cargo(cargo),
            Source::Stage { stage, path, .. } => format!("`/{path}` of stage `{stage}`"),
            Source::Debian(d) => format!("Debian packages of `{}`", d.suite),
        };
        format!("add entry #{} ({source} -> `/{}`)", index + 1, spec.dest)
    }

    /// Resolves a host source path (relative to the context) to a canonical path inside it.
    pub fn resolve(&self, rel: &Path) -> Result<PathBuf, Error> {
        let full = self.context.join(rel);
        let missing = |source| Error::FindSource {
            path: rel.to_path_buf(),
            context: self.context.to_path_buf(),
            source,
        };
        if let Err(e) = fs::symlink_metadata(&full) {
            return Err(if e.kind() == io::ErrorKind::NotFound {
                missing(e)
            } else {
                Error::ReadSource {
                    path: full,
                    source: e,
                }
            });
        }
        let resolved = fs::canonicalize(&full).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                missing(e) // a dangling symlink
            } else {
                Error::ReadSource {
                    path: full.clone(),
                    source: e,
                }
            }
        })?;
        if !resolved.starts_with(self.context) {
            return Err(Error::ResolveSource {
                path: rel.to_path_buf(),
                resolved,
                context: self.context.to_path_buf(),
            });
        }
        Ok(resolved)
    }
}

/// Permission bits a spec gives, limited to what a tar mode field holds.
pub(crate) fn mask(mode: u32) -> u32 {
    mode & 0o7777
}

/// Host permission bits normalised: 0755 if any exec bit is set, else 0644.
pub(crate) fn normalise_file_mode(host_mode: u32) -> u32 {
    if host_mode & 0o111 != 0 {
        EXEC_MODE
    } else {
        FILE_MODE
    }
}

fn describe_cargo(cargo: &CargoSource) -> String {
    let mut s = match (&cargo.bin, &cargo.package) {
        (Some(bin), _) => format!("cargo binary `{bin}`"),
        (None, Some(package)) => format!("the cargo binary of package `{package}`"),
        (None, None) => "the cargo binary of the context package".to_owned(),
    };
    s.push_str(&format!(" ({}, {})", cargo.profile, cargo.target));
    s
}

/// The file name of `path` as UTF-8.
pub(crate) fn utf8_file_name(path: &Path) -> Result<&str, Error> {
    path.file_name()
        .ok_or_else(|| Error::ReadSource {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        })?
        .to_str()
        .ok_or_else(|| Error::DecodePath {
            path: path.to_path_buf(),
        })
}

/// What kind of special file a file type is, for messages.
pub(crate) fn file_kind(ft: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_socket() {
            return "socket";
        }
        if ft.is_fifo() {
            return "named pipe (fifo)";
        }
        if ft.is_block_device() {
            return "block device";
        }
        if ft.is_char_device() {
            return "character device";
        }
    }
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else {
        "special file"
    }
}
