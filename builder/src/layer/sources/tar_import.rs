//! Tar archives: the members of an existing tar (plain, gzip or zstd) imported under `dest`.
//!
//! The archive is read with the tar toolkit ([`crate::tarball`]): the compression is detected
//! from the first bytes, not the file name, and the members are walked by its scanner under
//! [`NamePolicy::Layer`]. A compressed archive is decompressed once into a temporary file, so
//! that file members can be referenced by offset and streamed into the layer later without
//! holding them in memory. Member names are normalised (`./` and leading `/` dropped); a name
//! with `..` is an error. Hard links become regular files with the content of their target.
//! Character and block devices and fifos are kept with their device numbers, as `docker
//! import` keeps them (a rootfs tarball has `/dev/null`, `/dev/console`...). Modes are kept
//! (masked to `0o7777`) unless the spec sets one; owners come from the spec; mtimes and
//! user/group names are dropped.
//!
//! `include`/`exclude` pick members by their normalised names, with the gitignore-style
//! globs and the meaning `path` sources give them ([`MemberFilter`]): a member is left out when
//! it or a directory above it matches `exclude`; with `include`, a member is taken when its own
//! last matching pattern says so, else it goes the way of its directory. A directory member
//! that is not taken itself still gives its mode to the directories the layer needs above
//! what is taken. A hard link to a member left out keeps its content: the filter picks names,
//! not data.
//!
//! A damaged archive is an error, never a shorter import: an empty file, a compressed stream
//! that ends early, and a tar that ends inside a member's header, data or padding (which the
//! tar crate would take as the end of the archive) all name the file and the byte it ends at.
//! A tar without its two zero end blocks is still read, as GNU tar reads it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::sync::Arc;

use super::{mask, Builder, Globs, SYMLINK_MODE};
use crate::layer::tree::{join, EntryKind, FileSource, ImportedArchive};
use crate::layer::{Error, SourceContext};
use crate::spec::EntrySpec;
use crate::tarball::{self, Format, Kind, Members, NamePolicy};

/// Buffer size for reading archives.
const BUF_SIZE: usize = 1 << 20;

/// What [`MemberFilter::decide`] says of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Take,
    Skip,
    /// A directory not taken itself that may be above members that are (`include` only).
    DirAbove,
}

/// The `include` and `exclude` globs of a `tar` entry, applied to member names (see the
/// module docs).
pub(super) struct MemberFilter {
    include: Option<Globs>,
    exclude: Option<Globs>,
}

impl MemberFilter {
    /// A filter that takes every member.
    pub(super) fn all() -> MemberFilter {
        MemberFilter {
            include: None,
            exclude: None,
        }
    }

    fn decide(&self, name: &str, is_dir: bool) -> Decision {
        if name.is_empty() || (self.include.is_none() && self.exclude.is_none()) {
            return Decision::Take;
        }
        // The directories above the member, nearest last, then the member itself.
        let ancestors = name.match_indices('/').map(|(i, _)| &name[..i]);
        let mut included = self.include.is_none();
        for dir in ancestors {
            if self.exclude.as_ref().is_some_and(|g| g.matches(dir, true)) {
                return Decision::Skip;
            }
            included = Globs::includes(self.include.as_ref(), dir, true, included);
        }
        if self
            .exclude
            .as_ref()
            .is_some_and(|g| g.matches(name, is_dir))
        {
            return Decision::Skip;
        }
        match (
            Globs::includes(self.include.as_ref(), name, is_dir, included),
            is_dir,
        ) {
            (true, _) => Decision::Take,
            (false, true) => Decision::DirAbove,
            (false, false) => Decision::Skip,
        }
    }
}

/// Adds the members of the archive at `rel` (relative to the context) under `spec.dest`, those
/// `include` and `exclude` pick.
pub(super) fn add(
    b: &mut Builder<'_>,
    index: usize,
    spec: &EntrySpec,
    rel: &Path,
    include: &[String],
    exclude: &[String],
) -> Result<(), Error> {
    let filter = MemberFilter {
        include: Globs::new(&b.layer.name, include)?,
        exclude: Globs::new(&b.layer.name, exclude)?,
    };
    let resolved = b.resolve(rel)?;
    let archive = Arc::new(open_plain(&resolved, rel, b.ctx)?);
    let decompressed = archive.tar != resolved;
    add_members(b, index, spec, archive, decompressed, &filter, None)
}

/// Adds the members of the plain tar `archive` (named `archive.source` in messages) under
/// `spec.dest`, those `filter` picks; `decompressed` says whether offsets in messages are
/// into a decompressed copy. `names`, when given, receives the normalised name of every
/// member taken, in archive order (a `debian` entry's dpkg file list).
pub(super) fn add_members(
    b: &mut Builder<'_>,
    index: usize,
    spec: &EntrySpec,
    archive: Arc<ImportedArchive>,
    decompressed: bool,
    filter: &MemberFilter,
    mut names: Option<&mut Vec<String>>,
) -> Result<(), Error> {
    let rel = archive.source.clone();
    let rel = rel.as_path();
    let read_err = |source: io::Error| Error::ReadArchive {
        path: rel.to_path_buf(),
        source,
    };

    let file = File::open(&archive.tar).map_err(read_err)?;
    // The tar crate ends its walk quietly where the file ends, even inside a member: the
    // scanner checks each member's data (and padding) against the length.
    let len = file.metadata().map_err(read_err)?.len();
    if len == 0 {
        return Err(Error::EmptyArchive {
            path: rel.to_path_buf(),
        });
    }
    let scan_err = |e: tarball::Error| match e {
        tarball::Error::Read(source) => read_err(source),
        tarball::Error::Truncated { offset, detail } => Error::TruncatedArchive {
            path: rel.to_path_buf(),
            offset,
            detail: if decompressed {
                format!("{detail} (an offset into the decompressed tar)")
            } else {
                detail
            },
        },
        tarball::Error::NotUtf8 { name } => Error::DecodePath {
            path: rel.join(name),
        },
        tarball::Error::Name { name, .. } => Error::ImportMember {
            archive: rel.to_path_buf(),
            member: name,
        },
    };
    let mut tar = tar::Archive::new(BufReader::with_capacity(BUF_SIZE, file));
    let entries = tar.entries_with_seek().map_err(read_err)?;
    // Regular files seen so far (normalised name -> data offset and size), for hard links.
    let mut files: HashMap<String, (u64, u64)> = HashMap::new();
    // Directories not taken themselves (`include`): destination and mode.
    let mut dirs_above: Vec<(String, u32)> = Vec::new();
    for member in Members::with_length(entries, NamePolicy::Layer, len) {
        let member = member.map_err(scan_err)?;
        // Global PAX headers carry defaults for later members (the tar crate applies the
        // per-member ones); nothing to import.
        if member.kind == Kind::GlobalHeader {
            continue;
        }
        let name_str = &member.raw_name;
        let name = member.name.clone();
        let mode = member.entry.header().mode().map_err(read_err)? & 0o7777;
        let dest = join(&spec.dest, &name);
        let decision = filter.decide(&name, member.kind == Kind::Dir);
        if decision != Decision::Take {
            // A hard link may name a member left out: keep where its data is.
            if member.kind == Kind::File {
                files.insert(name, (member.data_offset(), member.size()));
            }
            if decision == Decision::DirAbove && !dest.is_empty() {
                dirs_above.push((dest, spec.dir_mode.map_or(mode, mask)));
            }
            continue;
        }
        if let Some(names) = names.as_deref_mut() {
            names.push(name.clone());
        }
        if dest.is_empty() && member.kind != Kind::Dir {
            return Err(Error::PlaceEntry {
                layer: b.layer.name.clone(),
                what: format!("archive member `{name_str}`"),
            });
        }
        match member.kind {
            Kind::File => {
                let (offset, size) = (member.data_offset(), member.size());
                files.insert(name, (offset, size));
                let source = FileSource::Archive {
                    archive: archive.clone(),
                    offset,
                };
                let mode = spec.mode.map_or(mode, mask);
                b.insert(index, &dest, spec, EntryKind::File { source, size }, mode)?;
            }
            Kind::HardLink => {
                let target_raw = member.link_target_bytes().unwrap_or_default();
                let target_str = String::from_utf8_lossy(&target_raw).into_owned();
                let target = tarball::normalise(&target_str, NamePolicy::Layer).map_err(|_| {
                    Error::ImportMember {
                        archive: rel.to_path_buf(),
                        member: target_str.clone(),
                    }
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
            Kind::Dir => {
                if !dest.is_empty() {
                    let mode = spec.dir_mode.map_or(mode, mask);
                    b.insert(index, &dest, spec, EntryKind::Dir, mode)?;
                }
            }
            Kind::Symlink => {
                let target = member.link_target_bytes().unwrap_or_default();
                let target =
                    String::from_utf8(target.into_owned()).map_err(|_| Error::DecodePath {
                        path: rel.join(name_str),
                    })?;
                b.insert(
                    index,
                    &dest,
                    spec,
                    EntryKind::Symlink { target },
                    SYMLINK_MODE,
                )?;
            }
            Kind::GlobalHeader => unreachable!("skipped above"),
            Kind::Device(kind) => {
                let (major, minor) = member.device_numbers().map_err(read_err)?;
                let device = EntryKind::Device { kind, major, minor };
                let mode = spec.mode.map_or(mode, mask);
                b.insert(index, &dest, spec, device, mode)?;
            }
            Kind::Other(other) => {
                return Err(Error::AddSpecialFile {
                    path: rel.join(name_str),
                    kind: if other == tar::EntryType::GNUSparse {
                        "sparse file (not supported: repack without --sparse)"
                    } else {
                        "tar member of an unsupported type"
                    },
                });
            }
        }
    }
    // A directory left out by `include` that the layer has anyway, above a member it took,
    // keeps the archive's mode rather than the default of an implicit one.
    for (dest, mode) in dirs_above {
        if b.tree.get(&dest).is_some_and(|e| e.origin.implicit) {
            b.insert(index, &dest, spec, EntryKind::Dir, mode)?;
        }
    }
    Ok(())
}

/// The archive as an uncompressed tar: itself when plain, else a decompressed temporary copy
/// in `ctx`'s scratch directory. A compressed stream that ends early is
/// [`Error::TruncatedArchive`].
fn open_plain(
    resolved: &Path,
    rel: &Path,
    ctx: &SourceContext<'_>,
) -> Result<ImportedArchive, Error> {
    let read_err = |source: io::Error| Error::ReadArchive {
        path: rel.to_path_buf(),
        source,
    };
    let format = Format::of_file(resolved).map_err(read_err)?;
    if format == Format::Plain {
        return Ok(ImportedArchive::new(
            resolved.to_path_buf(),
            rel.to_path_buf(),
            None,
        ));
    }
    let scratch = ctx.scratch_dir().map_err(read_err)?;
    let temp =
        tarball::decompress_to_temp(resolved, format, ".cargo-image-import-", Some(&scratch))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    let len = std::fs::metadata(resolved).map_or(0, |m| m.len());
                    Error::TruncatedArchive {
                        path: rel.to_path_buf(),
                        offset: len,
                        detail: format!("before the end of its {} stream ({e})", format.name()),
                    }
                } else {
                    read_err(e)
                }
            })?;
    Ok(ImportedArchive::new(
        temp.to_path_buf(),
        rel.to_path_buf(),
        Some(temp),
    ))
}
