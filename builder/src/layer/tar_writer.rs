//! The layer side of the deterministic tar writer: each [`Entry`] of a
//! [`LayerTree`](super::LayerTree) written through [`tarball::TarWriter`] in
//! [`HeaderFormat::Pax`], its content read from where the tree says it is (inline bytes, a host
//! file, a member of an imported or stage tar).
//!
//! The header format itself (ustar fields, PAX records for what does not fit, the checksum form)
//! is the toolkit's, documented in [`crate::tarball`]: it is `tar1` of the layer
//! [`FORMAT_VERSION`](super::FORMAT_VERSION). This file only knows where content comes from and
//! checks that a host file still has the size the tree recorded.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use super::tree::{Entry, EntryKind, FileSource, ImportedArchive};
use super::Error;
use crate::tarball::{self, CopyError, EntryHeader, HeaderFormat};

/// Writes layer entries to `out` (which should be buffered).
pub(crate) struct TarWriter<W: Write> {
    tar: tarball::TarWriter<W>,
    /// The archive file last read from, kept open for its next member.
    archive: Option<(Arc<ImportedArchive>, File)>,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W, mtime: u64) -> Self {
        TarWriter {
            tar: tarball::TarWriter::new(out, mtime, HeaderFormat::Pax),
            archive: None,
        }
    }

    /// Writes one entry: its header(s), then its content padded to a block; `on_bytes` is
    /// told of the content bytes as they are written (each piece of a large file).
    pub(crate) fn write_entry(
        &mut self,
        path: &str,
        entry: &Entry,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(), Error> {
        let kind = match &entry.kind {
            EntryKind::File { size, .. } => tarball::EntryKind::File { size: *size },
            EntryKind::Dir => tarball::EntryKind::Dir,
            EntryKind::Symlink { target } => tarball::EntryKind::Symlink { target },
            EntryKind::Device { kind, major, minor } => tarball::EntryKind::Device {
                kind: *kind,
                major: *major,
                minor: *minor,
            },
        };
        self.tar
            .header(&EntryHeader {
                path,
                kind,
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
            })
            .map_err(|source| Error::WriteLayer { source })?;
        if let EntryKind::File { source, size } = &entry.kind {
            self.write_content(source, *size, on_bytes)?;
        }
        Ok(())
    }

    /// Ends the archive with two zero blocks and returns the output (not flushed).
    pub(crate) fn finish(self) -> Result<W, Error> {
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
                self.tar.get_mut().write_all(bytes).map_err(write_err)?;
                on_bytes(size);
            }
            FileSource::Host(path) => {
                let read_err = |source| Error::ReadSource {
                    path: path.clone(),
                    source,
                };
                let mut file = File::open(path).map_err(read_err)?;
                let copied = self.copy(&mut file, size, path, on_bytes)?;
                // The file must still be exactly `size` bytes long: a file that grew or shrank
                // since the tree was read would give a tar that does not match the tree.
                let mut probe = [0u8; 1];
                if copied < size || read_retrying(&mut file, &mut probe).map_err(read_err)? != 0 {
                    return Err(Error::SourceChanged {
                        path: path.clone(),
                        expected: size,
                    });
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
                    .and_then(|_| self.copy(&mut file, size, &archive.source, on_bytes));
                self.archive = Some((archive.clone(), file));
                if result? < size {
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

    /// Copies up to `size` bytes of `from` to the output, telling `on_bytes` of each piece;
    /// returns how many there were.
    fn copy(
        &mut self,
        from: &mut File,
        size: u64,
        path: &Path,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<u64, Error> {
        self.tar
            .copy_content(from, size, &mut |piece| on_bytes(piece.len() as u64))
            .map_err(|e| match e {
                CopyError::Read(source) => Error::ReadSource {
                    path: path.to_path_buf(),
                    source,
                },
                CopyError::Write(source) => Error::WriteLayer { source },
            })
    }
}

fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
