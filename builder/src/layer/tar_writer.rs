//! The layer side of the deterministic tar writer: each [`Entry`] of a
//! [`LayerTree`](super::LayerTree) written through [`tarball::TarWriter`] in
//! [`HeaderFormat::Pax`], its content read from where the tree says it is (inline bytes, a host
//! file, a member of an imported or stage tar).
//!
//! The header format itself (ustar fields, PAX records for what does not fit, the checksum form)
//! is the toolkit's, documented in [`crate::tarball`]: it is `tar1` of the layer
//! [`FORMAT_VERSION`](super::FORMAT_VERSION). This file only knows where content comes from and
//! checks that a host file still has the size the tree recorded.
//!
//! Content is read straight into the free space of the pipeline's current chunk
//! ([`ChunkWriter::spare`]), with no copy buffer in between. A host file is read with one byte
//! more asked than is left of it: a read that gives fewer bytes than asked is the end of a
//! regular file, so a small file costs one `read` (not a second one that returns 0), and a file
//! that grew since the tree was read gives that byte and is an error. Only when no read came
//! short (the file ended exactly at the end of a chunk's space) does one more read check the end.
//!
//! When the layer is keyed while it is written (`plan`'s module docs), the writer also hashes
//! each host file's content (blake3, the content hash the stat index and the layer key use)
//! from the bytes it has just read into the chunk, on this thread: the file is read once, for
//! the tar and its key alike, and the hash is of exactly the bytes the tar holds.
//!
//! After reading a host file, the writer `fstat`s it (the open file, no path lookup) and notes
//! whether it still has the stat the tree recorded for it ([`HostReads::unchanged`]): when it
//! does, the bytes in the tar are those the file held when the tree was read, so the build may
//! cache them under a key computed from that stat. This is the check a build would otherwise do
//! with a second `stat` of every input path once the layer is written, done here on the tar
//! writer's thread while the compressor works, and on the very file that was read.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use super::pipeline::ChunkWriter;
use super::tree::{Entry, EntryKind, FileSource, ImportedArchive};
use super::Error;
use crate::tarball::{self, HeaderFormat};

/// Writes layer entries into the pipeline's first queue.
pub(crate) struct TarWriter {
    tar: tarball::TarWriter<ChunkWriter>,
    /// The archive file last read from, kept open for its next member.
    archive: Option<(Arc<ImportedArchive>, File)>,
    /// What it found of the host files it read, in the order written.
    hosts: HostReads,
    /// Whether to hash host files ([`Self::hashing_host_files`]).
    hashing: bool,
}

/// What the tar writer found of the host files of a tree, in tree order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostReads {
    /// The blake3 content hash of each host file, from the bytes written (empty unless asked
    /// for: [`write_layer_hashing_host_files`](super::write_layer_hashing_host_files)).
    pub hashes: Vec<[u8; 32]>,
    /// Whether each host file, once read, still had the stat the tree recorded for it (size,
    /// modification and change times, inode and device, from `fstat` of the file read).
    pub unchanged: Vec<bool>,
}

impl TarWriter {
    pub(crate) fn new(out: ChunkWriter, mtime: u64) -> Self {
        TarWriter {
            tar: tarball::TarWriter::new(out, mtime, HeaderFormat::Pax),
            archive: None,
            hosts: HostReads::default(),
            hashing: false,
        }
    }

    /// Also hashes (blake3) the content of every host file as it is written, from the bytes
    /// read into the chunk (no second read, no copy): [`Self::take_host_reads`] gives them.
    pub(crate) fn hashing_host_files(mut self) -> Self {
        self.hashing = true;
        self
    }

    /// What the writer found of the host files written so far, in the order written.
    pub(crate) fn take_host_reads(&mut self) -> HostReads {
        std::mem::take(&mut self.hosts)
    }

    /// Writes one entry: its header(s), then its content padded to a block; `on_bytes` is
    /// told of the content bytes as they are written (each piece of a large file).
    pub(crate) fn write_entry(
        &mut self,
        path: &str,
        entry: &Entry,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(), Error> {
        self.tar
            .header(&entry.tar_header(path))
            .map_err(|source| Error::WriteLayer { source })?;
        if let EntryKind::File { source, size } = &entry.kind {
            self.write_content(source, *size, on_bytes)?;
        }
        Ok(())
    }

    /// Ends the archive with two zero blocks and returns the output (its stream not ended).
    pub(crate) fn finish(self) -> Result<ChunkWriter, Error> {
        self.tar
            .finish()
            .map_err(|source| Error::WriteLayer { source })
    }

    fn write_content(
        &mut self,
        source: &FileSource,
        size: u64,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(), Error> {
        let write_err = |source| Error::WriteLayer { source };
        match source {
            FileSource::Inline(bytes) => {
                debug_assert_eq!(bytes.len() as u64, size);
                io::Write::write_all(self.tar.get_mut(), bytes).map_err(write_err)?;
                on_bytes(size);
            }
            FileSource::Host { path, stat } => {
                let mut file = File::open(path).map_err(|source| Error::ReadSource {
                    path: path.clone(),
                    source,
                })?;
                // The file must still be exactly `size` bytes long: a file that grew or shrank
                // since the tree was read would give a tar that does not match the tree.
                let mut hasher = self.hashing.then(blake3::Hasher::new);
                match self.copy(&mut file, size, true, path, hasher.as_mut(), on_bytes)? {
                    Copied::All => {
                        if let Some(hasher) = hasher {
                            self.hosts.hashes.push(*hasher.finalize().as_bytes());
                        }
                        let now = file.metadata();
                        self.hosts
                            .unchanged
                            .push(now.is_ok_and(|now| same_stat(stat, &now)));
                    }
                    Copied::Short | Copied::More => {
                        return Err(Error::SourceChanged {
                            path: path.clone(),
                            expected: size,
                        })
                    }
                }
            }
            FileSource::Archive { archive, offset } => {
                let reuse = matches!(&self.archive, Some((open, _)) if Arc::ptr_eq(open, archive));
                if !reuse {
                    let file = File::open(&archive.tar).map_err(|source| Error::ReadArchive {
                        path: archive.source.clone(),
                        source,
                    })?;
                    self.archive = Some((archive.clone(), file));
                }
                let (_, mut file) = self.archive.take().expect("the archive was just opened");
                let result = file
                    .seek(SeekFrom::Start(*offset))
                    .map_err(|source| Error::ReadArchive {
                        path: archive.source.clone(),
                        source,
                    })
                    .and_then(|_| {
                        self.copy(&mut file, size, false, &archive.source, None, on_bytes)
                    });
                self.archive = Some((archive.clone(), file));
                if let Copied::Short = result? {
                    return Err(Error::ReadArchive {
                        path: archive.source.clone(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the archive ends inside a member",
                        ),
                    });
                }
            }
        }
        self.tar.end_content(size, size).map_err(write_err)
    }

    /// Reads `size` bytes of `from` into the output, telling `on_bytes` of each piece (and
    /// `hasher`, when given, of the bytes themselves, as they lie in the chunk). With
    /// `check_end` (a whole file), also finds whether `from` ends there (see the module docs);
    /// without it (a member of an archive), never reads past them.
    fn copy(
        &mut self,
        from: &mut File,
        size: u64,
        check_end: bool,
        path: &Path,
        mut hasher: Option<&mut blake3::Hasher>,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<Copied, Error> {
        let read_err = |source| Error::ReadSource {
            path: path.to_path_buf(),
            source,
        };
        let out = self.tar.get_mut();
        let mut left = size;
        // Whether a read gave fewer bytes than asked: the file ends there.
        let mut at_end = false;
        while left > 0 {
            let spare = out.spare().map_err(|source| Error::WriteLayer { source })?;
            let ask = u64::try_from(spare.len())
                .unwrap_or(u64::MAX)
                .min(left + u64::from(check_end)) as usize;
            let n = read_retrying(from, &mut spare[..ask]).map_err(read_err)?;
            if n == 0 {
                return Ok(Copied::Short);
            }
            if n as u64 > left {
                // The byte past `size` stays in the spare space, never committed.
                return Ok(Copied::More);
            }
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.update(&spare[..n]);
            }
            out.commit(n);
            on_bytes(n as u64);
            left -= n as u64;
            at_end = n < ask;
        }
        if check_end && !at_end {
            let mut probe = [0u8; 1];
            if read_retrying(from, &mut probe).map_err(read_err)? != 0 {
                return Ok(Copied::More);
            }
        }
        Ok(Copied::All)
    }
}

/// Whether two `stat`s of a file describe the same content, as far as stat data can tell.
fn same_stat(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.len() == b.len()
        && (a.mtime(), a.mtime_nsec()) == (b.mtime(), b.mtime_nsec())
        && (a.ctime(), a.ctime_nsec()) == (b.ctime(), b.ctime_nsec())
        && (a.ino(), a.dev()) == (b.ino(), b.dev())
}

/// What [`TarWriter::copy`] found.
enum Copied {
    /// All the bytes asked for (and, when checked, the source ends there).
    All,
    /// The source ended before.
    Short,
    /// The source has more bytes than asked for (checked only for whole files).
    More,
}

fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
