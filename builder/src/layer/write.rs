//! Writing a [`LayerTree`] as a blob: tar -> sha256 (diff_id) -> compressor -> sha256 (digest).
//!
//! One pass, streaming: the tree is walked in order, each entry's header and content go through a
//! 1 MiB buffer into the uncompressed hasher, then the compressor, then the compressed hasher and
//! the output. Memory use is bounded by the buffers and the compressor's in-flight blocks.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::compress::Encoder;
use super::hash::HashWriter;
use super::tar_writer::TarWriter;
use super::{Compression, Error, LayerBlob, LayerTree, WriteOptions};

/// A progress callback: content bytes written so far.
pub type Progress<'a> = dyn Fn(u64) + Sync + 'a;

/// Size of the buffer in front of the hasher and compressor.
const WRITE_BUF: usize = 1 << 20;

/// Writes `tree` as a compressed tar blob to `out` and returns its digests and size.
///
/// The bytes written depend only on `tree`, `opts.compression` and `opts.mtime` (and the encoders
/// named in [`FORMAT_VERSION`](super::FORMAT_VERSION)), never on `opts.threads`. `out` is written
/// from a compressor thread for gzip, hence `Send`.
pub fn write_layer<W: Write + Send>(
    tree: &LayerTree,
    opts: &WriteOptions,
    out: W,
) -> Result<LayerBlob, Error> {
    write_layer_with_progress(tree, opts, out, &|_| {})
}

/// [`write_layer`], calling `progress` with the number of content bytes written so far (out of
/// [`LayerTree::content_size`]) as they are written: after each piece of a file's content (at
/// most the 1 MiB copy buffer), so a single large file moves it too.
pub fn write_layer_with_progress<W: Write + Send>(
    tree: &LayerTree,
    opts: &WriteOptions,
    out: W,
    progress: &Progress<'_>,
) -> Result<LayerBlob, Error> {
    let compression = opts.compression;
    std::thread::scope(|scope| {
        // With no compression the blob is the tar: one hasher gives both digests.
        let (diff_id, digest, size) = if compression == Compression::None {
            let mut tar = HashWriter::new(out);
            write_tar(tree, opts.mtime, &mut tar, progress)?;
            let (_, diff_id, size) = tar.finish();
            (diff_id.clone(), diff_id, size)
        } else {
            let compressed = HashWriter::new(out);
            let encoder = Encoder::new(compression, opts.threads, compressed, scope)?;
            let mut tar = HashWriter::new(encoder);
            let written = write_tar(tree, opts.mtime, &mut tar, progress);
            let (encoder, diff_id, _) = tar.finish();
            // Finish the compressor even after an error, so its threads end here and report
            // their own error instead of panicking when dropped.
            let finished = encoder.finish(compression);
            written?;
            let (_, digest, size) = finished?.finish();
            (diff_id, digest, size)
        };
        Ok(LayerBlob {
            digest,
            diff_id,
            size,
            media_type: compression.media_type().to_owned(),
        })
    })
}

/// Writes the tar stream of `tree` into `out` through a large buffer.
fn write_tar<W: Write>(
    tree: &LayerTree,
    mtime: u64,
    out: &mut W,
    progress: &Progress<'_>,
) -> Result<(), Error> {
    let mut tar = TarWriter::new(BufWriter::with_capacity(WRITE_BUF, out), mtime);
    // Progress moves with every piece of content written (a piece of the copy buffer), so a
    // single large file moves it by bytes, not only when it is done.
    let mut done = 0u64;
    for (path, entry) in tree.iter() {
        tar.write_entry(path, entry, &mut |n| {
            done += n;
            progress(done);
        })?;
    }
    // `into_inner` writes the buffer out without calling `flush` on the writer below.
    tar.finish()?.into_inner().map_err(|e| Error::WriteLayer {
        source: e.into_error(),
    })?;
    Ok(())
}

/// Writes `tree` as a blob file named by its hex digest in `dir` and returns its digests.
///
/// The blob is streamed into a temporary file in `dir`, synced, made readable (0644) and renamed
/// to `dir/<hex digest>`, so a crash never leaves a partial blob under a digest. If a blob with
/// that digest is already there it is kept and the new copy dropped.
pub fn write_layer_to_dir(
    tree: &LayerTree,
    opts: &WriteOptions,
    dir: &Path,
) -> Result<LayerBlob, Error> {
    write_layer_to_dir_with_progress(tree, opts, dir, &|_| {})
}

/// [`write_layer_to_dir`] with a progress callback (see [`write_layer_with_progress`]).
pub fn write_layer_to_dir_with_progress(
    tree: &LayerTree,
    opts: &WriteOptions,
    dir: &Path,
    progress: &Progress<'_>,
) -> Result<LayerBlob, Error> {
    let blob_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::WriteBlob { path, source }
    };
    let temp = tempfile::Builder::new()
        .prefix(".tmp-layer-")
        .tempfile_in(dir)
        .map_err(blob_err(dir))?;
    let blob = write_layer_with_progress(tree, opts, temp.as_file(), progress)?;
    let file = temp.as_file();
    file.sync_all().map_err(blob_err(temp.path()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(blob_err(temp.path()))?;
    }
    let hex = blob.digest.strip_prefix("sha256:").unwrap_or(&blob.digest);
    let dest = dir.join(hex);
    match temp.persist_noclobber(&dest) {
        Ok(_) => {}
        // Another build wrote the same content first: keep its file.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::WriteBlob {
                path: dest,
                source: e.error,
            })
        }
    }
    sync_dir(dir).map_err(blob_err(dir))?;
    Ok(blob)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
