//! Layers: from a [`LayerSpec`](crate::spec::LayerSpec) to a deterministic, compressed tar blob.
//!
//! # Brief overview
//!
//! A layer is built in two steps, and data flows one way:
//!
//! 1. **sources -> [`LayerTree`]** ([`LayerTree::from_spec`]): every `add` entry of the layer is
//!    read from its source (a host path with include/exclude globs, less what the build's
//!    [`HostFilter`] leaves out: cargo's and our own directories, and what the context's
//!    `.dockerignore` excludes; inline content, an empty directory, a symlink, the members of
//!    an existing tar, a cargo binary; one file per source under `sources/`) into one merged tree, sorted by path in byte order. Modes are normalised,
//!    owners come from the spec, implicit parent directories are added, and two different entries
//!    at one path are an error. The tree holds *where* file content is (a host file, inline bytes,
//!    a member of an archive at an offset), never the content of large files.
//! 2. **[`LayerTree`] -> blob** ([`write_layer`], [`write_layer_to_dir`]): one pass over the tree
//!    writes a tar stream with headers built by hand (`tar_writer`), hashes it (the `diff_id`),
//!    compresses it (`compress`: parallel gzip or multithreaded zstd, whose bytes never depend on
//!    the thread count), hashes the compressed bytes (the `digest`) and streams them out, each
//!    step on a thread of its own connected by bounded queues (`pipeline`). Nothing is held in
//!    memory beyond fixed-size buffers.
//!
//! ```text
//! LayerSpec --sources--> LayerTree --tar_writer--> sha256 (diff_id) --compress--> sha256 (digest) --> out
//! ```
//!
//! A layer may also *remove* paths the layers below it provide: [`add_whiteouts`] (module
//! `whiteout`) adds OCI whiteout entries (`.wh.<name>`, and `.wh..wh..opq` in a directory the
//! layer replaces) to the finished tree, which the writer streams like any other entry.
//!
//! The bytes of a blob depend only on the tree, the [`WriteOptions`] and the encoders named in
//! [`FORMAT_VERSION`]: not on the host's umask, file order, mtimes, inode numbers, hard links,
//! user names or thread count.
//!
//! # Example
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::path::Path;
//! use cargo_oci_image::layer::{self, Compression, LayerTree, SourceContext, WriteOptions};
//! # fn demo(spec: &cargo_oci_image::spec::LayerSpec) -> Result<(), layer::Error> {
//! let outputs = HashMap::new();
//! let ctx = SourceContext::new(Path::new("/src/app"), &outputs);
//! let tree = LayerTree::from_spec(spec, &ctx)?;
//! let opts = WriteOptions { compression: Compression::Gzip, mtime: 0, threads: 4 };
//! let blob = layer::write_layer_to_dir(&tree, &opts, Path::new("store/blobs/sha256"))?;
//! println!("{} {} {}", blob.digest, blob.diff_id, blob.size);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::spec::CargoSource;

mod compress;
mod error;
mod hash;
mod pipeline;
mod sources;
mod tar_writer;
mod tree;
mod whiteout;
mod write;

#[cfg(all(test, unix))]
mod tests;

pub use crate::types::{Compression, LayerBlob};
pub use error::Error;
pub(crate) use sources::{Globs, DEBIAN_INSTALL_RECIPE, SYMLINK_MODE};
pub use sources::{HostFilter, IgnoreFile, Reserved};
pub use tar_writer::HostReads;
pub(crate) use tree::{is_normalised, join};
pub use tree::{
    DeviceKind, Entry, EntryKind, FileSource, ImportedArchive, LayerTree, Origin, Replaced,
};
pub use whiteout::{add_whiteouts, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
pub use write::{
    write_layer, write_layer_hashing_host_files, write_layer_to_dir,
    write_layer_to_dir_reading_hosts, write_layer_to_dir_with_progress, write_layer_with_progress,
    Progress,
};

/// The version of everything that decides a layer blob's bytes: the tar writer, and for each
/// compression its encoder, backend, level and framing. It is part of every layer's cache key:
/// change it whenever a change here (or an encoder update) changes the bytes of a blob.
///
/// - `tar1`: ustar headers by hand, PAX records for what does not fit (see `tar_writer`).
/// - gzip: gzp 2.0.4 parallel framing with our own pigz-style block format (128 KiB blocks, each
///   a sync-flushed raw deflate stream primed with the previous block's last 32 KiB), deflate by
///   flate2 1.1.11 on the zlib-rs 0.6.8 backend, level 6; header mtime 0, no name, OS 255.
/// - zstd: libzstd 1.5.7 (bundled by zstd-sys), level 3, multithreaded mode (>= 1 worker).
pub const FORMAT_VERSION: &str =
    "tar1;gzip:gzp-2.0.4/zlib-rs-0.6.8/6/128k/dict32k/fresh;zstd:1.5.7/3/mt";

/// What the tree builder needs besides the spec: where host paths are, what host trees leave
/// out, where cargo put the binaries the spec asks for, and how to copy out of other stages.
#[derive(Debug, Clone)]
pub struct SourceContext<'a> {
    /// The build context directory (absolute, canonical). Host sources never resolve outside it.
    pub context: &'a Path,
    /// What host `path` sources leave out besides their own globs: cargo's and cargo-image's
    /// directories, and what the context's ignore file excludes (`None`: nothing).
    pub host_filter: Option<&'a HostFilter>,
    /// The built binary for each cargo source of the spec.
    pub cargo_outputs: &'a HashMap<CargoSource, PathBuf>,
    /// Copies `from-stage` entries out of built stages (`None` when the spec has no stages).
    pub stages: Option<&'a dyn StageCopier>,
    /// The packages resolved for each `debian` source on this platform, with their `.deb`
    /// files (`None` when the spec has no `debian` entry).
    pub debian: Option<&'a DebianPackages>,
    /// Where compressed `tar` sources and `.deb` data are decompressed while a layer's tree is
    /// read for writing (a build's: a scratch directory of the store; `None`: the system's
    /// temporary directory).
    pub scratch: Option<&'a LazyScratch>,
}

impl<'a> SourceContext<'a> {
    /// The context directory `context` and the binaries of its cargo sources, with no host
    /// filter, no built stages and no debian packages (set those fields for a build's).
    pub fn new(context: &'a Path, cargo_outputs: &'a HashMap<CargoSource, PathBuf>) -> Self {
        SourceContext {
            context,
            host_filter: None,
            cargo_outputs,
            stages: None,
            debian: None,
            scratch: None,
        }
    }

    /// The directory to decompress an archive into: [`SourceContext::scratch`]'s, made on first
    /// use, else the system's temporary directory.
    pub(crate) fn scratch_dir(&self) -> std::io::Result<PathBuf> {
        match self.scratch {
            Some(scratch) => scratch.path(),
            None => Ok(std::env::temp_dir()),
        }
    }
}

/// A scratch directory (`.cargo-image-import-XXXXXX` in `parent`, see [`crate::oci::Scratch`])
/// made the first time it is asked for, so a build that decompresses nothing makes none, and
/// removed when dropped. Decompressed archives go there rather than to the system's temporary
/// directory: beside the store, on the disk sized for it, and removed by the next build if a
/// killed one left it.
#[derive(Debug)]
pub struct LazyScratch {
    parent: PathBuf,
    dir: std::sync::Mutex<Option<crate::oci::TempDirBeside>>,
}

impl LazyScratch {
    /// A scratch directory to be made in `parent` (created if missing) on first use.
    pub fn new(parent: &Path) -> Self {
        LazyScratch {
            parent: parent.to_path_buf(),
            dir: std::sync::Mutex::new(None),
        }
    }

    /// The directory, made now if it is not yet. The error names `parent`.
    pub fn path(&self) -> std::io::Result<PathBuf> {
        let mut dir = self.dir.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = &*dir {
            return Ok(dir.path().to_path_buf());
        }
        let made =
            crate::oci::scratch_dir(&self.parent, crate::oci::Scratch::Import).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot make a scratch directory in {}: {e}",
                        self.parent.display()
                    ),
                )
            })?;
        let path = made.path().to_path_buf();
        *dir = Some(made);
        Ok(path)
    }
}

/// The packages resolved for each `debian` source, each with its `.deb` file in the store.
pub type DebianPackages = HashMap<
    crate::spec::DebianSource,
    std::sync::Arc<Vec<(crate::debian::Package, std::path::PathBuf)>>,
>;

/// Puts paths of a built stage's merged filesystem into a layer tree (`from-stage` entries).
/// Implemented over [`crate::rootfs`] by the build; the layer module only calls it.
pub trait StageCopier: Sync + std::fmt::Debug {
    /// Adds `path` (normalised, no leading `/`) of stage `stage`, filtered by `include` and
    /// `exclude`, at `entry.dest` of `tree`, as `add` entry number `index` of the layer.
    #[allow(clippy::too_many_arguments)]
    fn copy_out(
        &self,
        layer: &str,
        stage: &str,
        path: &str,
        include: &[String],
        exclude: &[String],
        entry: &crate::spec::EntrySpec,
        index: usize,
        tree: &mut LayerTree,
    ) -> Result<(), Error>;
}

/// Settings that decide a layer's bytes (besides its tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    pub compression: Compression,
    /// mtime of every entry (seconds since the epoch).
    pub mtime: u64,
    /// Compressor threads; never changes the output bytes (0 counts as 1).
    pub threads: usize,
}
