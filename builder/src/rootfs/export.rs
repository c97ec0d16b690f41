//! Export: an image's merged filesystem (its layers applied in order, whiteouts honoured, hard
//! links resolved) written as one tar, or unpacked into a directory, as `docker export` does
//! for a container made from it.
//!
//! The image's layers are opened as a [`Rootfs`] view (nothing unpacked), its root copied out
//! into a [`LayerTree`] like a `from-stage` copy of `/`, and the tree written by the layer tar
//! writer (uncompressed). So the tar is deterministic and has the layers' rules: entries sorted
//! by path with parents first, numeric owners and modes as the image has them, devices and
//! fifos with their numbers, and every entry dated the image's `created` time (0 when the
//! config has none: layer mtimes are not kept by the view). Importing it back with a `tar =`
//! entry gives a one-layer image with the same files.
//!
//! Output is never half-written: the tar is written to a temporary file beside the
//! destination and renamed into place; a directory is unpacked into a temporary directory
//! beside it and renamed, and an existing destination is refused rather than merged into.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{CopyRequest, Error as RootfsError, LayerBlobRef, Rootfs};
use crate::layer::{self, Compression, LayerTree, WriteOptions};
use crate::oci::{self, ResolvedImage};

/// Why an image could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image's layers could not be read into one filesystem.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// A layer blob of the image is missing or fails its checks.
    #[error(transparent)]
    Image(#[from] oci::Error),
    /// Writing the tar failed.
    #[error("cannot write the exported filesystem to `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The tree could not be written as a tar.
    #[error("cannot write the exported filesystem")]
    Tar(#[source] layer::Error),
    /// The destination directory exists.
    #[error("`{path}` exists; export into a new directory (or to a `.tar` file)")]
    Exists { path: PathBuf },
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Paths in the filesystem (the root not counted).
    pub entries: usize,
    /// Bytes of file content.
    pub content_bytes: u64,
    /// The mtime every entry has.
    pub mtime: u64,
}

/// The merged filesystem of `image` as a tree ready to be written; `scratch` holds the
/// decompressed layers while the tree lives.
fn merged_tree(image: &ResolvedImage, scratch: &Path) -> Result<(LayerTree, u64), Error> {
    let layers = image
        .layers()
        .iter()
        .map(|desc| {
            Ok(LayerBlobRef {
                path: image.blob_path(desc.digest().as_ref())?,
                media_type: desc.media_type().to_string(),
            })
        })
        .collect::<Result<Vec<_>, oci::Error>>()?;
    let fs = Rootfs::open("image", &layers, scratch)?;
    let mut tree = LayerTree::new();
    fs.copy_out(
        &CopyRequest {
            src: "/",
            include: &[],
            exclude: &[],
            dest: "",
            dest_is_dir: false,
            owner: None,
            mode: None,
            dir_mode: None,
            layer: "export",
            origin: 0,
        },
        &mut tree,
    )?;
    let mtime = image
        .config
        .created()
        .as_deref()
        .and_then(oci::epoch_of_rfc3339)
        .unwrap_or(0);
    Ok((tree, mtime))
}

fn exported(tree: &LayerTree, mtime: u64) -> Exported {
    Exported {
        entries: tree.len(),
        content_bytes: tree.content_size(),
        mtime,
    }
}

/// Writes the merged filesystem of `image` as an uncompressed tar to `out` (`scratch`: a
/// directory for the decompressed layers).
pub fn export_tar(
    image: &ResolvedImage,
    scratch: &Path,
    out: impl Write + Send,
) -> Result<Exported, Error> {
    let (tree, mtime) = merged_tree(image, scratch)?;
    let opts = WriteOptions {
        compression: Compression::None,
        mtime,
        threads: 1,
    };
    layer::write_layer(&tree, &opts, out).map_err(Error::Tar)?;
    Ok(exported(&tree, mtime))
}

/// Writes the merged filesystem of `image` as a tar file at `dest`, replacing it only when the
/// whole tar is written.
pub fn export_tar_file(
    image: &ResolvedImage,
    scratch: &Path,
    dest: &Path,
) -> Result<Exported, Error> {
    let write_err = |source| Error::Write {
        path: dest.to_path_buf(),
        source,
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".cargo-image-export-")
        .tempfile_in(parent)
        .map_err(write_err)?;
    let mut out = BufWriter::new(temp.as_file());
    let report = export_tar(image, scratch, &mut out)?;
    out.flush().map_err(write_err)?;
    drop(out);
    temp.as_file().sync_all().map_err(write_err)?;
    temp.persist(dest).map_err(|e| write_err(e.error))?;
    Ok(report)
}

/// Unpacks the merged filesystem of `image` into the new directory `dest` (which must not
/// exist): files, directories, symlinks, devices and fifos with the image's modes and, when
/// run as root, owners. Devices need the right to create them (root, or `CAP_MKNOD`).
pub fn export_dir(image: &ResolvedImage, scratch: &Path, dest: &Path) -> Result<Exported, Error> {
    if dest.symlink_metadata().is_ok() {
        return Err(Error::Exists {
            path: dest.to_path_buf(),
        });
    }
    let write_err = |source| Error::Write {
        path: dest.to_path_buf(),
        source,
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tar_file = tempfile::tempfile_in(scratch).map_err(write_err)?;
    let mut out = BufWriter::new(&tar_file);
    let report = export_tar(image, scratch, &mut out)?;
    out.flush().map_err(write_err)?;
    drop(out);
    let mut tar_file = tar_file;
    io::Seek::rewind(&mut tar_file).map_err(write_err)?;
    let temp = tempfile::Builder::new()
        .prefix(".cargo-image-export-")
        .tempdir_in(parent)
        .map_err(write_err)?;
    let mut archive = tar::Archive::new(io::BufReader::new(tar_file));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(is_root());
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    archive.unpack(temp.path()).map_err(write_err)?;
    // The temporary directory is 0700; the root of the image's filesystem is 0755.
    fs::set_permissions(
        temp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(write_err)?;
    let kept = temp.keep();
    fs::rename(&kept, dest).map_err(|source| {
        let _ = fs::remove_dir_all(&kept);
        write_err(source)
    })?;
    Ok(report)
}

/// Whether this process runs as root (owners are then kept when unpacking).
fn is_root() -> bool {
    // The owner of a file this process creates is its effective uid.
    tempfile::tempfile()
        .and_then(|f| f.metadata())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}
