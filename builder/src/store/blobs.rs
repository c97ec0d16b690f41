//! Blobs: `blobs/sha256/<hex>`, written atomically, linked or copied out.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::{finish_tmp, Error, Store, TMP_PREFIX};
use crate::oci::bounded;
use crate::types::Digest;

/// Blobs are read-only: an output hard-linked to a blob cannot be written through by mistake.
pub(crate) const BLOB_MODE: u32 = 0o444;

impl Store {
    /// `blobs/sha256/`: every blob, named by its hex digest.
    pub fn blobs_dir(&self) -> &Path {
        &self.blobs
    }

    /// The path of blob `digest` (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether blob `digest` is in the store (its content is not checked).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Writes `bytes` as a blob and returns its digest and size. A blob that is already there
    /// with that size is left alone.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<(Digest, u64), Error> {
        let digest = Digest::of(bytes);
        let size = bytes.len() as u64;
        let dest = self.blob_path(&digest);
        if existing_size(&dest) != Some(size) {
            let write = || -> io::Result<()> {
                let mut tmp = tempfile::Builder::new()
                    .prefix(TMP_PREFIX)
                    .tempfile_in(&self.blobs)?;
                tmp.write_all(bytes)?;
                publish_blob(tmp, &dest, size)
            };
            write().map_err(|source| Error::WriteBlob { path: dest, source })?;
        }
        Ok((digest, size))
    }

    /// Starts streaming a blob into the store: write its bytes, then [`BlobWriter::finish`]
    /// names it by their digest. Dropped unfinished, it leaves nothing behind.
    pub fn blob_writer(&self) -> Result<BlobWriter, Error> {
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(&self.blobs)
            .map_err(|source| Error::WriteBlob {
                path: self.blobs.clone(),
                source,
            })?;
        Ok(BlobWriter {
            dir: self.blobs.clone(),
            file: BufWriter::with_capacity(256 * 1024, tmp),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Copies the file `src` into the store as blob `digest` of `size` bytes (e.g. a base
    /// layer from a local layout), verifying its content. `src` is untrusted: it must be a
    /// regular file (a FIFO or device is refused without reading it), and at most `size + 1`
    /// bytes are read, so an endless or oversized file fails with [`Error::BlobSize`] and
    /// leaves no temporary file. A blob already there is kept.
    pub fn import_blob(&self, src: &Path, digest: &Digest, size: u64) -> Result<(), Error> {
        if existing_size(&self.blob_path(digest)) == Some(size) {
            return Ok(());
        }
        let read_err = |source| Error::ReadBlob {
            path: src.to_path_buf(),
            source,
        };
        let file = bounded::open_regular(src).map_err(read_err)?;
        let mut writer = self.blob_writer()?;
        io::copy(&mut file.take(size + 1), &mut writer).map_err(read_err)?;
        if writer.size() != size {
            return Err(Error::BlobSize {
                path: src.to_path_buf(),
                expected: size,
                actual: writer.size(),
            });
        }
        let (actual, _) = writer.finish_expecting(Some(digest), src)?;
        debug_assert_eq!(&actual, digest);
        Ok(())
    }

    /// Puts blob `digest` at `dest` (e.g. in a layout's `blobs/sha256/`): a hard link to the
    /// store's file, or a copy when linking fails (another filesystem, no permission). `dest`
    /// appears atomically (a temporary name beside it, then rename) and is replaced if it
    /// exists. True when `dest` is the store's file (linked): its content is on disk already
    /// (store blobs are synced before they are named), only the new link is not.
    pub fn link_out(&self, digest: &Digest, dest: &Path) -> Result<bool, Error> {
        let src = self.blob_path(digest);
        let link_err = |source| Error::LinkOut {
            digest: digest.to_string(),
            dest: dest.to_path_buf(),
            source,
        };
        let src_meta = match fs::metadata(&src) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::MissingBlob {
                    digest: digest.to_string(),
                    path: src,
                })
            }
            Err(source) => return Err(Error::ReadBlob { path: src, source }),
        };
        if let Ok(dest_meta) = fs::metadata(dest) {
            if dest_meta.ino() == src_meta.ino() && dest_meta.dev() == src_meta.dev() {
                return Ok(true); // already linked
            }
        }
        let tmp = tmp_sibling(dest).map_err(link_err)?;
        let linked = fs::hard_link(&src, &tmp).is_ok();
        if !linked {
            if let Err(e) = fs::copy(&src, &tmp) {
                let _ = fs::remove_file(&tmp);
                return Err(link_err(e));
            }
        }
        fs::rename(&tmp, dest).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            link_err(e)
        })?;
        Ok(linked)
    }
}

/// The size of the file at `path`, if it is there.
fn existing_size(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.len())
}

/// Names a finished temporary blob file `dest` (chmod'ed to [`BLOB_MODE`], fsynced).
///
/// An intact blob already at `dest` (one of the expected `size`, e.g. written meanwhile by
/// another process) is never replaced: a record's fingerprint of it must stay valid, or a
/// reader would see the blob change under it and take the record for a miss. Only a blob of
/// the wrong size (damaged) is replaced.
fn publish_blob(tmp: tempfile::NamedTempFile, dest: &Path, size: u64) -> io::Result<()> {
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(BLOB_MODE))?;
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(dest) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            if existing_size(dest) == Some(size) {
                Ok(())
            } else {
                finish_tmp(e.file, dest, None)
            }
        }
        Err(e) => Err(e.error),
    }
}

/// A fresh `.tmp-<name>-<pid>-<n>` path beside `dest`.
fn tmp_sibling(dest: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = dest.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "destination has no file name")
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(
        "{TMP_PREFIX}{}-{}-{n}",
        name.to_string_lossy(),
        std::process::id()
    );
    Ok(dest.with_file_name(tmp_name))
}

/// A blob being streamed into the store; see [`Store::blob_writer`]. Hashes (sha256) what it
/// writes, into a `.tmp-*` file of `blobs/sha256/`.
#[derive(Debug)]
pub struct BlobWriter {
    dir: PathBuf,
    file: BufWriter<tempfile::NamedTempFile>,
    hasher: Sha256,
    size: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Completes the blob: fsync, rename to its digest. Returns its digest and size. If the
    /// blob is already in the store, the copy just written is dropped.
    pub fn finish(self) -> Result<(Digest, u64), Error> {
        let dir = self.dir.clone();
        self.finish_expecting(None, &dir)
    }

    /// [`finish`](Self::finish), failing with [`Error::DigestMismatch`] (naming `origin`) if the
    /// content is not `expected`.
    fn finish_expecting(
        self,
        expected: Option<&Digest>,
        origin: &Path,
    ) -> Result<(Digest, u64), Error> {
        let Self {
            dir,
            file,
            hasher,
            size,
        } = self;
        let digest = Digest::from_hasher(hasher);
        if let Some(expected) = expected {
            if expected != &digest {
                return Err(Error::DigestMismatch {
                    path: origin.to_path_buf(),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let dest = dir.join(digest.hex());
        let write_err = |source| Error::WriteBlob {
            path: dest.clone(),
            source,
        };
        let tmp = file.into_inner().map_err(|e| write_err(e.into_error()))?;
        if existing_size(&dest) != Some(size) {
            publish_blob(tmp, &dest, size).map_err(write_err)?;
        }
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
