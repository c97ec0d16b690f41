//! Tar archives: the members of an existing tar (plain, gzip or zstd) imported under `dest`.
//!
//! The compression is detected from the first bytes, not the file name. A compressed archive is
//! decompressed once into a temporary file, so that file members can be referenced by offset and
//! streamed into the layer later without holding them in memory. Member names are normalised
//! (`./` and leading `/` dropped); a name with `..` is an error. Hard links become regular files
//! with the content of their target. Modes are kept (masked to `0o7777`) unless the spec sets one;
//! owners come from the spec; mtimes and user/group names are dropped.
//!
//! A damaged archive is an error, never a shorter import: an empty file, a compressed stream
//! that ends early, and a tar that ends inside a member's header, data or padding (which the
//! tar crate would take as the end of the archive) all name the file and the byte it ends at.
//! A tar without its two zero end blocks is still read, as GNU tar reads it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use tar::EntryType;

use super::{mask, Builder, SYMLINK_MODE};
use crate::layer::tree::{join, EntryKind, FileSource, ImportedArchive};
use crate::layer::Error;
use crate::spec::EntrySpec;

/// Buffer size for reading and decompressing archives.
const BUF_SIZE: usize = 1 << 20;
/// A tar header, and the unit member data is padded to.
const TAR_BLOCK: u64 = 512;

/// How an archive to import is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveFormat {
    Plain,
    Gzip,
    Zstd,
}

/// Detects the compression of an archive from its first bytes.
pub(crate) fn detect(magic: &[u8]) -> ArchiveFormat {
    if magic.starts_with(&[0x1f, 0x8b]) {
        ArchiveFormat::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ArchiveFormat::Zstd
    } else {
        ArchiveFormat::Plain
    }
}

/// Adds the members of the archive at `rel` (relative to the context) under `spec.dest`.
pub(super) fn add(
    b: &mut Builder<'_>,
    index: usize,
    spec: &EntrySpec,
    rel: &Path,
) -> Result<(), Error> {
    let resolved = b.resolve(rel)?;
    let read_err = |source: io::Error| Error::ReadArchive {
        path: rel.to_path_buf(),
        source,
    };
    let archive = Arc::new(open_plain(&resolved, rel)?);

    let file = File::open(&archive.tar).map_err(read_err)?;
    // The tar crate ends its walk quietly where the file ends, even inside a member: the
    // length is checked against where each member's data (and padding) ends.
    let len = file.metadata().map_err(read_err)?.len();
    if len == 0 {
        return Err(Error::EmptyArchive {
            path: rel.to_path_buf(),
        });
    }
    let decompressed = archive.tar != resolved;
    let truncated = |detail: String| Error::TruncatedArchive {
        path: rel.to_path_buf(),
        offset: len,
        detail: if decompressed {
            format!("{detail} (an offset into the decompressed tar)")
        } else {
            detail
        },
    };
    // Where the next header starts (the padded end of the last member), and that member.
    let mut next_header = 0u64;
    let mut last_member: Option<String> = None;
    let after_last = |last: &Option<String>| match last {
        Some(name) => format!("after member `{name}`"),
        None => "at its start".to_owned(),
    };
    let mut tar = tar::Archive::new(BufReader::with_capacity(BUF_SIZE, file));
    // Regular files seen so far (normalised name -> data offset and size), for hard links.
    let mut files: HashMap<String, (u64, u64)> = HashMap::new();
    for member in tar.entries_with_seek().map_err(read_err)? {
        let member = match member {
            Ok(member) => member,
            Err(e) if len < next_header + TAR_BLOCK || e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(truncated(format!(
                    "inside the tar header {}",
                    after_last(&last_member)
                )));
            }
            Err(e) => return Err(read_err(e)),
        };
        let header = member.header();
        let entry_type = header.entry_type();
        let raw_name = member.path_bytes();
        let name_str = std::str::from_utf8(&raw_name)
            .map_err(|_| Error::DecodePath {
                path: rel.join(String::from_utf8_lossy(&raw_name).as_ref()),
            })?
            .to_owned();
        let (data_start, data_end) = (
            member.raw_file_position(),
            member.raw_file_position() + member.size(),
        );
        if data_end > len {
            return Err(truncated(format!(
                "inside member `{name_str}`, whose data runs from byte {data_start} to {data_end}"
            )));
        }
        next_header = data_end.next_multiple_of(TAR_BLOCK);
        last_member = Some(name_str.clone());
        let name = normalise_member(&name_str).ok_or_else(|| Error::ImportMember {
            archive: rel.to_path_buf(),
            member: name_str.clone(),
        })?;
        let mode = header.mode().map_err(read_err)? & 0o7777;
        let dest = join(&spec.dest, &name);
        if dest.is_empty() && !matches!(entry_type, EntryType::Directory | EntryType::XGlobalHeader)
        {
            return Err(Error::PlaceEntry {
                layer: b.layer.name.clone(),
                what: format!("archive member `{name_str}`"),
            });
        }
        match entry_type {
            EntryType::Regular | EntryType::Continuous => {
                let (offset, size) = (member.raw_file_position(), member.size());
                files.insert(name, (offset, size));
                let source = FileSource::Archive {
                    archive: archive.clone(),
                    offset,
                };
                let mode = spec.mode.map_or(mode, mask);
                b.insert(index, &dest, spec, EntryKind::File { source, size }, mode)?;
            }
            EntryType::Link => {
                let target_raw = member.link_name_bytes().unwrap_or_default();
                let target_str = String::from_utf8_lossy(&target_raw).into_owned();
                let target = normalise_member(&target_str).ok_or_else(|| Error::ImportMember {
                    archive: rel.to_path_buf(),
                    member: target_str.clone(),
                })?;
                let &(offset, size) = files.get(&target).ok_or_else(|| Error::ResolveHardLink {
                    archive: rel.to_path_buf(),
                    member: name_str.clone(),
                    target: target_str.clone(),
                })?;
                files.insert(name, (offset, size));
                let source = FileSource::Archive {
                    archive: archive.clone(),
                    offset,
                };
                let mode = spec.mode.map_or(mode, mask);
                b.insert(index, &dest, spec, EntryKind::File { source, size }, mode)?;
            }
            EntryType::Directory => {
                if !dest.is_empty() {
                    let mode = spec.dir_mode.map_or(mode, mask);
                    b.insert(index, &dest, spec, EntryKind::Dir, mode)?;
                }
            }
            EntryType::Symlink => {
                let target = member.link_name_bytes().unwrap_or_default();
                let target =
                    String::from_utf8(target.into_owned()).map_err(|_| Error::DecodePath {
                        path: rel.join(&name_str),
                    })?;
                b.insert(
                    index,
                    &dest,
                    spec,
                    EntryKind::Symlink { target },
                    SYMLINK_MODE,
                )?;
            }
            // Global PAX headers carry defaults for later members (the tar crate applies the
            // per-member ones); nothing to import.
            EntryType::XGlobalHeader => {}
            other => {
                return Err(Error::AddSpecialFile {
                    path: rel.join(&name_str),
                    kind: member_kind(other),
                });
            }
        }
    }
    if next_header > len {
        return Err(truncated(format!(
            "inside the padding {}",
            after_last(&last_member)
        )));
    }
    Ok(())
}

/// A member name relative to the archive root: `./` and leading `/` dropped, `.` and empty
/// components removed. `None` when a component is `..`.
pub(crate) fn normalise_member(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    Some(out)
}

fn member_kind(t: EntryType) -> &'static str {
    match t {
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "named pipe (fifo)",
        EntryType::GNUSparse => "sparse file (not supported: repack without --sparse)",
        _ => "tar member of an unsupported type",
    }
}

/// The archive as an uncompressed tar: itself when plain, else a decompressed temporary copy.
/// A compressed stream that ends early is [`Error::TruncatedArchive`].
fn open_plain(resolved: &Path, rel: &Path) -> Result<ImportedArchive, Error> {
    let read_err = |source: io::Error| Error::ReadArchive {
        path: rel.to_path_buf(),
        source,
    };
    let mut file = File::open(resolved).map_err(read_err)?;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(read_err)?;
    let format = detect(&magic[..n]);
    decompress(resolved, rel, format).map_err(|e| {
        if format != ArchiveFormat::Plain && e.kind() == io::ErrorKind::UnexpectedEof {
            let len = std::fs::metadata(resolved).map_or(0, |m| m.len());
            let name = if format == ArchiveFormat::Gzip {
                "gzip"
            } else {
                "zstd"
            };
            Error::TruncatedArchive {
                path: rel.to_path_buf(),
                offset: len,
                detail: format!("before the end of its {name} stream ({e})"),
            }
        } else {
            read_err(e)
        }
    })
}

/// [`open_plain`] once the compression is known.
fn decompress(resolved: &Path, rel: &Path, format: ArchiveFormat) -> io::Result<ImportedArchive> {
    if format == ArchiveFormat::Plain {
        return Ok(ImportedArchive {
            tar: resolved.to_path_buf(),
            source: rel.to_path_buf(),
            _temp: None,
        });
    }
    let file = File::open(resolved)?;
    let reader = BufReader::with_capacity(BUF_SIZE, file);
    let temp = tempfile::Builder::new()
        .prefix(".cargo-image-import-")
        .suffix(".tar")
        .tempfile()?;
    let mut out = BufWriter::with_capacity(BUF_SIZE, temp);
    match format {
        ArchiveFormat::Gzip => {
            io::copy(&mut flate2::bufread::MultiGzDecoder::new(reader), &mut out)?;
        }
        ArchiveFormat::Zstd => {
            io::copy(
                &mut zstd::stream::read::Decoder::with_buffer(reader)?,
                &mut out,
            )?;
        }
        ArchiveFormat::Plain => unreachable!("handled above"),
    }
    out.flush()?;
    let temp = out.into_inner().map_err(|e| e.into_error())?;
    let path = temp.into_temp_path();
    Ok(ImportedArchive {
        tar: path.to_path_buf(),
        source: rel.to_path_buf(),
        _temp: Some(path),
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalised() {
        assert_eq!(normalise_member("./a/b").as_deref(), Some("a/b"));
        assert_eq!(
            normalise_member("/etc//passwd").as_deref(),
            Some("etc/passwd")
        );
        assert_eq!(normalise_member("dir/").as_deref(), Some("dir"));
        assert_eq!(normalise_member("./").as_deref(), Some(""));
        assert_eq!(normalise_member("a/../../b"), None);
        assert_eq!(normalise_member(".."), None);
    }

    #[test]
    fn compression_is_detected_by_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), ArchiveFormat::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), ArchiveFormat::Zstd);
        assert_eq!(detect(b"etc/"), ArchiveFormat::Plain);
        assert_eq!(detect(b""), ArchiveFormat::Plain);
    }
}
