//! Writing a [`LayerTree`] as a blob: tar -> sha256 (diff_id) -> compressor -> sha256 (digest).
//!
//! One pass, streaming, in stages that each run on a thread of their own, connected by bounded
//! queues of reused 1 MiB chunks (`pipeline`), so the slowest stage sets the pace rather than the
//! sum of them:
//!
//! 1. the tar writer (the calling thread) walks the tree in order, writes each entry's header
//!    and reads its content straight into the queue (`tar_writer`);
//! 2. a thread hashes the tar stream (the `diff_id`) and passes it on;
//! 3. a thread feeds it to the compressor (`compress`), whose own workers compress it (gzp's
//!    threads for gzip, libzstd's for zstd);
//! 4. a thread hashes the compressed stream (the `digest` and size) and writes it to the output.
//!
//! With no compression the tar writer's queue goes straight to the last stage, whose hash is both
//! the `diff_id` and the `digest`. Memory use is bounded by the chunk pools and the compressor's
//! blocks in flight. A stage that fails stops the others (none is left waiting), and the error
//! reported is the one that stopped them (see `pipeline`); nothing is returned for a stream cut
//! short.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::thread::ScopedJoinHandle;

use super::compress::Encoder;
use super::hash::StreamHash;
use super::pipeline::{self, first_cause, ChunkReader, ChunkWriter};
use super::tar_writer::{HostReads, TarWriter};
use super::{Compression, EntryKind, Error, LayerBlob, LayerTree, WriteOptions};

/// A blob written, and what the tar writer found of its tree's host files.
type Written = (LayerBlob, HostReads);

/// A progress callback: content bytes written so far.
pub type Progress<'a> = dyn Fn(u64) + Sync + 'a;

/// Progress is told at least this often (in content bytes), and at the end.
const PROGRESS_STEP: u64 = 256 * 1024;

/// Writes `tree` as a compressed tar blob to `out` and returns its digests and size.
///
/// The bytes written depend only on `tree`, `opts.compression` and `opts.mtime` (and the encoders
/// named in [`FORMAT_VERSION`](super::FORMAT_VERSION)), never on `opts.threads`. `out` is written
/// from a thread of the writer's own, hence `Send`, and flushed at the end.
pub fn write_layer<W: Write + Send>(
    tree: &LayerTree,
    opts: &WriteOptions,
    out: W,
) -> Result<LayerBlob, Error> {
    write_layer_with_progress(tree, opts, out, &|_| {})
}

/// [`write_layer`], calling `progress` with the number of content bytes written so far (out of
/// [`LayerTree::content_size`]) as they are written: every 256 KiB of content or so, even inside
/// a single large file, at the end of a large file, and at the end. It is called from the
/// calling thread.
pub fn write_layer_with_progress<W: Write + Send>(
    tree: &LayerTree,
    opts: &WriteOptions,
    out: W,
    progress: &Progress<'_>,
) -> Result<LayerBlob, Error> {
    write_stream(tree, opts, out, progress, false).map(|(blob, _)| blob)
}

/// [`write_layer_with_progress`], also giving the blake3 content hash of every host file of
/// `tree` (in tree order), computed by the tar writer from the very bytes it wrote: what the
/// layer's key needs when it is keyed while written (see `plan`'s module docs).
pub fn write_layer_hashing_host_files<W: Write + Send>(
    tree: &LayerTree,
    opts: &WriteOptions,
    out: W,
    progress: &Progress<'_>,
) -> Result<(LayerBlob, Vec<[u8; 32]>), Error> {
    write_stream(tree, opts, out, progress, true).map(|(blob, hosts)| (blob, hosts.hashes))
}

/// The stages of the module docs; with `hash_hosts`, the host files' content hashes too.
fn write_stream<W: Write + Send>(
    tree: &LayerTree,
    opts: &WriteOptions,
    out: W,
    progress: &Progress<'_>,
    hash_hosts: bool,
) -> Result<Written, Error> {
    let compression = opts.compression;
    let mut host_reads = HostReads::default();
    let hosts = &mut host_reads;
    let (diff_id, digest, size) = std::thread::scope(|scope| {
        let (tar_out, tar_in) = pipeline::queue();
        if compression == Compression::None {
            let output = scope.spawn(move || output_stage(tar_in, out));
            let written =
                write_tar(tree, opts.mtime, tar_out, progress, hash_hosts).map(|h| *hosts = h);
            return match (joined(output), written) {
                (Ok((digest, size)), Ok(())) => Ok((digest.clone(), digest, size)),
                (output, written) => Err(cause([output.err(), written.err()])),
            };
        }
        let (compressed_out, compressed_in) = pipeline::queue();
        let encoder = Encoder::new(compression, opts.threads, compressed_out, scope)?;
        let (diff_id_hasher, compress_in) = tar_in.relay();
        let hasher = scope.spawn(move || {
            let mut hash = StreamHash::default();
            diff_id_hasher.run(|chunk| hash.update(chunk))?;
            Ok(hash.finish().0)
        });
        let compressor = scope.spawn(move || compress_stage(compress_in, encoder, compression));
        let output = scope.spawn(move || output_stage(compressed_in, out));
        let written =
            write_tar(tree, opts.mtime, tar_out, progress, hash_hosts).map(|h| *hosts = h);
        match (joined(output), joined(compressor), joined(hasher), written) {
            (Ok((digest, size)), Ok(()), Ok(diff_id), Ok(())) => Ok((diff_id, digest, size)),
            (output, compressed, hashed, written) => Err(cause([
                output.err(),
                compressed.err(),
                hashed.err(),
                written.err(),
            ])),
        }
    })?;
    Ok((
        LayerBlob {
            digest,
            diff_id,
            size,
            media_type: compression.media_type().to_owned(),
        },
        host_reads,
    ))
}

/// The error to report of the stages' errors, listed from the output back to the tar writer
/// (at least one of them failed).
fn cause<const N: usize>(errors: [Option<Error>; N]) -> Error {
    first_cause(errors.into_iter().flatten()).expect("a stage failed")
}

/// The result of a stage's thread (its panic goes on in the caller).
fn joined<T>(stage: ScopedJoinHandle<'_, T>) -> T {
    stage
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Stage 1: writes the tar stream of `tree` into `out`, and ends the stream; returns what it
/// found of the host files (with `hash_hosts`, their content hashes too).
fn write_tar(
    tree: &LayerTree,
    mtime: u64,
    out: ChunkWriter,
    progress: &Progress<'_>,
    hash_hosts: bool,
) -> Result<HostReads, Error> {
    let mut tar = TarWriter::new(out, mtime);
    if hash_hosts {
        tar = tar.hashing_host_files();
    }
    // Progress moves with the content written, piece by piece, so a single large file moves it
    // by bytes, not only when it is done; told every `PROGRESS_STEP` and at the end of a large
    // file, not for every small file.
    let (mut done, mut told) = (0u64, 0u64);
    for (path, entry) in tree.iter() {
        tar.write_entry(path, entry, &mut |n| {
            done += n;
            if done - told >= PROGRESS_STEP {
                told = done;
                progress(done);
            }
        })?;
        let large = matches!(entry.kind, EntryKind::File { size, .. } if size >= PROGRESS_STEP);
        if large && done > told {
            told = done;
            progress(done);
        }
    }
    if done > told {
        progress(done);
    }
    let hosts = tar.take_host_reads();
    tar.finish()?
        .finish()
        .map_err(|source| Error::WriteLayer { source })?;
    Ok(hosts)
}

/// Stage 3: compresses the stream of `input` with `encoder`. The compressed stream is ended
/// only when the input was complete.
fn compress_stage(
    input: ChunkReader,
    mut encoder: Encoder<'_, ChunkWriter>,
    compression: Compression,
) -> Result<(), Error> {
    let fed = input.for_each(|chunk| {
        encoder
            .write_all(chunk)
            .map_err(|source| Error::WriteLayer { source })
    });
    // Finish the compressor even after an error, so its threads end here and report their own
    // error instead of panicking when dropped.
    let finished = encoder.finish(compression);
    fed?;
    finished?
        .finish()
        .map_err(|source| Error::WriteLayer { source })
}

/// Stage 4 (stage 2 too with no compression): hashes the stream of `input` and writes it to
/// `out`; returns its `sha256:<hex>` digest and size.
fn output_stage<W: Write>(input: ChunkReader, mut out: W) -> Result<(String, u64), Error> {
    let write_err = |source| Error::WriteLayer { source };
    let mut hash = StreamHash::default();
    input.for_each(|chunk| {
        out.write_all(chunk).map_err(write_err)?;
        hash.update(chunk);
        Ok(())
    })?;
    out.flush().map_err(write_err)?;
    Ok(hash.finish())
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
    write_to_dir(tree, opts, dir, progress, false).map(|(blob, _)| blob)
}

/// [`write_layer_to_dir_with_progress`], also giving what the tar writer found of the host
/// files of `tree`, in tree order: whether each was unchanged once read, and with
/// `hash_hosts` their content hashes as written (see [`write_layer_hashing_host_files`]).
pub fn write_layer_to_dir_reading_hosts(
    tree: &LayerTree,
    opts: &WriteOptions,
    dir: &Path,
    progress: &Progress<'_>,
    hash_hosts: bool,
) -> Result<(LayerBlob, HostReads), Error> {
    write_to_dir(tree, opts, dir, progress, hash_hosts)
}

fn write_to_dir(
    tree: &LayerTree,
    opts: &WriteOptions,
    dir: &Path,
    progress: &Progress<'_>,
    hash_hosts: bool,
) -> Result<Written, Error> {
    let blob_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::WriteBlob { path, source }
    };
    let temp = tempfile::Builder::new()
        .prefix(".tmp-layer-")
        .tempfile_in(dir)
        .map_err(blob_err(dir))?;
    let file = temp.as_file();
    let (blob, hashes) = std::thread::scope(|scope| {
        let (out, syncer) = Writeback::start(file, scope);
        let written = write_stream(tree, opts, out, progress, hash_hosts);
        joined(syncer);
        written
    })?;
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
    Ok((blob, hashes))
}

/// A blob file whose writeback starts as it grows: each time another [`WRITEBACK_WINDOW`] bytes
/// were written, a thread of its own is asked to `fdatasync` what is there, so the disk writes
/// while the compressor works and the `fsync` that makes the blob durable at the end waits for
/// the last window only, not for the whole blob. Requests made while a sync runs are merged
/// into one; errors are left to that final `fsync`, which reports them.
struct Writeback<'a> {
    file: &'a fs::File,
    since_request: u64,
    request: std::sync::mpsc::SyncSender<()>,
}

/// How much is written between two requests to sync.
const WRITEBACK_WINDOW: u64 = 16 << 20;

impl<'a> Writeback<'a> {
    /// The writer, and the syncing thread (which ends when the writer is dropped).
    fn start<'scope>(
        file: &'a fs::File,
        scope: &'scope std::thread::Scope<'scope, '_>,
    ) -> (Self, ScopedJoinHandle<'scope, ()>)
    where
        'a: 'scope,
    {
        let (request, requests) = std::sync::mpsc::sync_channel::<()>(1);
        let syncer = scope.spawn(move || {
            while requests.recv().is_ok() {
                let _ = file.sync_data();
            }
        });
        let writer = Self {
            file,
            since_request: 0,
            request,
        };
        (writer, syncer)
    }
}

impl Write for Writeback<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.since_request += n as u64;
        if self.since_request >= WRITEBACK_WINDOW {
            self.since_request = 0;
            // Full: a sync is already asked for, and it will cover these bytes too.
            let _ = self.request.try_send(());
        }
        Ok(n)
    }

    /// Nothing to do: each `write` goes straight to the file (no buffer here), and durability
    /// is the syncer's and the final `sync_all`'s job, not `flush`'s.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
