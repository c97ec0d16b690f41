//! The content-addressed store: blobs by digest, node keys to results, the stat index and the
//! locks that let several `cargo image` processes share it.
//!
//! # Brief overview
//!
//! The executor keys every node of the layer graph (blake3 over its recipe and input keys).
//! Before building a node it asks the [`Store`] for that key: a hit ([`Store::get_key`])
//! costs a stat and a read of a small file and returns the node's [`NodeResult`]; a miss
//! builds the node, streams its blobs in ([`Store::blob_writer`], [`Store::write_blob`],
//! [`Store::import_blob`]) and then records the key ([`Store::put_key`]). Sinks take finished
//! blobs out with [`Store::link_out`] (a hard link, else a copy), so nothing is compressed
//! twice. The [`StatIndex`] lets layer builders skip re-reading host files that did not change.
//! The store also remembers which repositories of a registry hold a blob ([`Store::seen_in`],
//! [`Store::record_seen`]), so a push mounts blobs across repositories.
//!
//! ```no_run
//! # use std::path::Path;
//! # use cargo_oci_image::store::*;
//! # fn build_layer(_: &mut BlobWriter) -> std::io::Result<String> { Ok(String::new()) }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open(Path::new("target/image/.store"))?;
//! let _lock = store.lock_shared()?; // held for the whole build
//! let key = "9f".repeat(32); // the node key (blake3 hex) computed by the planner
//! let layer = match store.get_key(&key)? {
//!     Some(NodeResult::Layer(layer)) => layer,
//!     _ => {
//!         let mut writer = store.blob_writer()?;
//!         let diff_id = build_layer(&mut writer)?;
//!         let (digest, size) = writer.finish()?;
//!         let layer = LayerRecord {
//!             digest: digest.to_string(),
//!             diff_id,
//!             size,
//!             media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
//!         };
//!         store.put_key(&key, &NodeResult::Layer(layer.clone()))?;
//!         layer
//!     }
//! };
//! store.link_out(&layer.digest.parse()?, Path::new("out/blobs/sha256/x"))?;
//! # Ok(()) }
//! ```
//!
//! # Layout on disk
//!
//! ```text
//! <root>/version                 the store format version (`STORE_VERSION`), one line
//! <root>/blobs/sha256/<hex>      every blob (layer, config, manifest, index) by OCI digest, mode 0444
//! <root>/keys/<2 hex>/<64 hex>   node key -> result record (canonical JSON), mtime = last use;
//!                                also the registry repositories a blob was seen in (`seen.rs`)
//! <root>/stat-index              host path + stat -> blake3 content hash (binary, see below)
//! <root>/cargo-metadata/<hex>.json  `cargo metadata` answers with what they were read from
//!                                (written by the `cargo` module; see `cargo::metadata_kept`;
//!                                prune drops those of directories that are gone)
//! <root>/locks/store.lock        shared by builds, exclusive for prune and verify
//! <root>/locks/stat-index.lock   serialises stat index saves
//! ```
//!
//! Every file is written the same way: a temporary file named `.tmp-*` in the destination's
//! directory, fsync, then `rename` over the final name. Readers therefore see a whole file or
//! none, and two processes writing the same blob race harmlessly (same bytes, atomic rename).
//!
//! # Crash safety
//!
//! A node's blobs are written (and renamed into place) *before* its key record. A crash at any
//! point leaves at worst `.tmp-*` files (removed by [`Store::prune`] after an hour) and blobs no
//! key refers to (orphans, also pruned); it never leaves a key whose blobs were not complete. A
//! lookup does not rely on the order alone: [`Store::get_key`] checks that every blob of the
//! record exists with its recorded size, and re-hashes a blob whose stat fingerprint moved, so a
//! key that outlived its blobs, a truncated blob or a blob written to through a hard-linked
//! output is a miss (the caller rebuilds), never a wrong hit.
//!
//! The fingerprint compared on a hit is (size, mtime, inode, device). The ctime is recorded but
//! not compared: [`Store::link_out`] hard-links blobs into outputs on every build, and each new
//! link moves the blob's ctime, which would turn every warm hit into a full re-hash. Writes
//! move the mtime, and blobs are read-only (0444) so an output written through by mistake
//! fails loudly; a write that also restores the mtime is caught by [`Store::verify`].
//!
//! # Concurrency
//!
//! Several `cargo image` processes may use one store at once; none assumes it is alone.
//!
//! - A build holds [`Store::lock_shared`] for its whole run. Builds never block each other's
//!   progress: blob and key writes are atomic renames, and a blob written twice has the same
//!   bytes. So that they do not do the same work twice, a build writes a missing layer under
//!   its key's lock ([`Store::lock_key`]), and a layer whose key it learns only while writing
//!   it under the lock of the layer's identity ([`Store::lock_pending`]): a second build of
//!   the same layer waits, then finds it.
//! - [`Store::prune`] and [`Store::verify`] delete files, so they need an [`ExclusiveLock`]
//!   ([`Store::lock_exclusive`], or [`Store::try_lock_exclusive`] to tell the user that another
//!   process is being waited for). Holding it, no build is between "blob written" and "key
//!   recorded", so a blob without a key is really an orphan.
//! - Locks are `flock`-style locks of an open file (std's `File::lock`): two [`Store`] values
//!   in one process exclude each other like two processes do, so a process holding a shared lock
//!   must not wait for the exclusive one (it would wait for itself).
//! - The stat index is loaded without a lock (it is replaced atomically) and saved under
//!   `locks/stat-index.lock`, merging what other processes saved meanwhile. A build loads it
//!   on a thread of its own ([`StatIndex::load_in_background`]) while it walks its trees, and
//!   takes in what another build saved since ([`StatIndex::merge_saved`]) before it writes a
//!   layer keyed while written.
//!
//! # The stat index
//!
//! Like git's index, [`StatIndex`] maps an absolute host path and its stat data (size, mtime,
//! ctime, inode, device, mode) to the blake3 hash of its content, so a warm build hashes no
//! unchanged file. Any doubt falls back to hashing. In particular the *racy-git rule*: an entry
//! is trusted only if the file's mtime is more than 2 seconds older than the moment the entry
//! was recorded. A file modified within the same timestamp granule as (or shortly before) it was
//! hashed could change again without its stat data changing; such an entry is re-hashed, and
//! re-recorded later, when the file has been still for long enough.
//!
//! The file format is little-endian binary: an 8-byte magic `CIMGSIDX`, a u32 format version, a
//! u64 entry count, the entries (recorded time, size, mtime, ctime, inode, device, mode,
//! 32-byte hash, u32 path length, path bytes), and a trailing blake3 checksum of everything
//! before it. A file that is truncated, corrupt or of another version loads as an empty index.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod blobs;
mod keys;
mod layer_facts;
mod lock;
mod maintenance;
mod seen;
mod stat_index;

#[cfg(test)]
mod tests;

pub use blobs::BlobWriter;
pub use keys::{BlobRef, BlobsRecord, Fingerprint, LayerRecord, NodeResult};
pub use lock::{ExclusiveLock, KeyLock, StoreLock};
pub use maintenance::{PruneOptions, PruneReport, StoreInfo, VerifyReport};
pub use seen::MAX_SEEN;
pub use stat_index::{hash_file, Loading, ReadStart, StatIndex};

use crate::types::Digest;

/// The store format version, written to `<root>/version`. A store of another version is not
/// opened (unless it is empty, then it is recreated).
pub const STORE_VERSION: u32 = 1;

/// Prefix of every temporary file in the store; such files are never blobs or keys.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to create the store directory `{}`", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to read the store version file `{}`", path.display())]
    ReadVersion {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to write the store version file `{}`", path.display())]
    WriteVersion {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("the store `{}` has format version `{found}`, but this cargo-image uses version {expected}; the store is only a cache: delete the directory, or use another store location", path.display())]
    Version {
        path: PathBuf,
        found: String,
        expected: u32,
    },

    #[error("failed to lock `{}`", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("the exclusive lock given belongs to the store `{}`, not to this one", path.display())]
    ForeignLock { path: PathBuf },

    #[error("failed to write blob `{}`", path.display())]
    WriteBlob {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to read blob `{}`", path.display())]
    ReadBlob {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("blob {digest} is not in the store (`{}`); write blobs before recording the key that refers to them", path.display())]
    MissingBlob { digest: String, path: PathBuf },

    #[error("blob `{}` has {actual} bytes, but the record says {expected}", path.display())]
    BlobSize {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error("`{}` does not hold blob {expected}: its content has digest {actual}", path.display())]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("invalid blob digest `{digest}` in a store record")]
    InvalidDigest {
        digest: String,
        #[source]
        source: Box<crate::types::Error>,
    },

    #[error("failed to link or copy blob {digest} to `{}`", dest.display())]
    LinkOut {
        digest: String,
        dest: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid node key `{key}`: expected 64 lowercase hex digits (a blake3 hash)")]
    InvalidKey { key: String },

    #[error("failed to encode the record of key `{}`", path.display())]
    EncodeKey {
        path: PathBuf,
        #[source]
        source: Box<crate::oci::Error>,
    },

    #[error("failed to read key `{}`", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to write key `{}`", path.display())]
    WriteKey {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to read the stat index `{}`", path.display())]
    ReadStatIndex {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to write the stat index `{}`", path.display())]
    WriteStatIndex {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to list the store directory `{}`", path.display())]
    ListDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to remove `{}` from the store", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A content-addressed store on disk; see the [module docs](self). Cheap to clone: it is only
/// the paths.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    blobs: PathBuf,
    keys: PathBuf,
    locks: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating it if needed. A store of another format version is
    /// an [`Error::Version`], unless it holds no blob and no key: then it is recreated.
    pub fn open(root: &Path) -> Result<Self, Error> {
        let root = std::path::absolute(root).map_err(|source| Error::CreateDir {
            path: root.to_path_buf(),
            source,
        })?;
        let store = Self {
            blobs: root.join("blobs").join("sha256"),
            keys: root.join("keys"),
            locks: root.join("locks"),
            root,
        };
        for dir in [&store.blobs, &store.keys, &store.locks] {
            fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: dir.clone(),
                source,
            })?;
        }
        store.check_version()?;
        Ok(store)
    }

    /// The store's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn version_path(&self) -> PathBuf {
        self.root.join("version")
    }

    pub(crate) fn stat_index_path(&self) -> PathBuf {
        self.root.join("stat-index")
    }

    pub(crate) fn locks_dir(&self) -> &Path {
        &self.locks
    }

    fn check_version(&self) -> Result<(), Error> {
        let path = self.version_path();
        let found = match fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(Error::ReadVersion { path, source }),
        };
        if found == STORE_VERSION.to_string() {
            return Ok(());
        }
        if !self.is_empty()? {
            let found = if found.is_empty() {
                "none (no version file)".to_string()
            } else {
                found
            };
            return Err(Error::Version {
                path: self.root.clone(),
                found,
                expected: STORE_VERSION,
            });
        }
        // An empty store (new, or of another version): (re)create it. The stat index of another
        // format would load as empty anyway; remove it so it does not linger.
        if !found.is_empty() {
            remove_if_exists(&self.stat_index_path())?;
        }
        write_atomic(
            &self.root,
            &path,
            format!("{STORE_VERSION}\n").as_bytes(),
            None,
        )
        .map_err(|source| Error::WriteVersion { path, source })
    }

    /// Whether the store holds no blob and no key (temporary files do not count).
    fn is_empty(&self) -> Result<bool, Error> {
        if list_dir(&self.blobs)?
            .into_iter()
            .any(|(name, _)| !is_tmp(&name))
        {
            return Ok(false);
        }
        for (_, shard) in list_dir(&self.keys)? {
            if shard.is_dir() && list_dir(&shard)?.iter().any(|(name, _)| !is_tmp(name)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Whether a directory entry name is a temporary file of the store.
pub(crate) fn is_tmp(name: &str) -> bool {
    name.starts_with(TMP_PREFIX)
}

/// The entries of `dir` as (file name, path); names that are not UTF-8 are skipped (the store
/// never writes such names).
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let list_err = |source| Error::ListDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(list_err(e)),
    };
    for entry in entries {
        let entry = entry.map_err(list_err)?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

/// Removes a file; one that is already gone is fine (another process may have removed it).
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `bytes` to `dest` atomically: a `.tmp-*` file in `dir` (the directory of `dest`),
/// optionally chmod'ed to `mode`, fsynced, then renamed over `dest`.
pub(crate) fn write_atomic(
    dir: &Path,
    dest: &Path,
    bytes: &[u8],
    mode: Option<u32>,
) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    finish_tmp(tmp, dest, mode)
}

/// Sets `mode`, fsyncs and renames a finished temporary file to `dest`.
pub(crate) fn finish_tmp(
    tmp: tempfile::NamedTempFile,
    dest: &Path,
    mode: Option<u32>,
) -> io::Result<()> {
    if let Some(mode) = mode {
        tmp.as_file()
            .set_permissions(Permissions::from_mode(mode))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Opens (creating) a lock file.
pub(crate) fn open_lock_file(path: &Path) -> Result<File, Error> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| Error::Lock {
            path: path.to_path_buf(),
            source,
        })
}

/// Parses a `sha256:<hex>` digest of a record.
pub(crate) fn parse_digest(digest: &str) -> Result<Digest, Error> {
    Digest::parse(digest).map_err(|source| Error::InvalidDigest {
        digest: digest.to_string(),
        source: Box::new(source),
    })
}
