//! OCI archives: an OCI image layout as one tar file (`oci-archive:FILE`), written as a sink
//! and read back as a base image source. Also the tar plumbing the Docker archive
//! ([`super::docker_archive`]) shares: the archive form of the toolkit's deterministic writer
//! ([`crate::tarball::TarWriter`]), the atomic file replacement and the safe extractor.
//!
//! # Brief overview
//!
//! - **Sink**: [`write_oci_archive`] packs a finished layout directory (what
//!   [`super::LayoutWriter`] produced) into an uncompressed tar, the form `skopeo`, `podman` and
//!   `buildah` read as `oci-archive:`. The bytes depend only on the layout's content: entries in
//!   byte order of their path components (a directory before what it holds), mtime = the given
//!   epoch, owner `0:0` with no user or group names, modes `0644`/`0755`, ustar headers filled
//!   field by field. Every `blobs/sha256/<hex>` blob is hashed while it is copied and must match
//!   its name. The archive is written to a temporary file beside the destination, fsynced and
//!   renamed over it, so a failure leaves a previous archive as it was. Only an archive of ours
//!   ([`check_archive_output`]) or an empty file is ever replaced; the temporary file is locked
//!   while it is written, so a killed build's is removed by the next build to the same place
//!   ([`super::temp_output`]).
//! - **Source**: [`open_oci_archive`] extracts an archive into a scratch directory the caller
//!   owns and opens it as a [`Layout`], so `oci-archive:FILE[:TAG]` bases resolve like
//!   `oci:DIR[:TAG]` ones (same verification of every blob). Extraction trusts nothing: entry
//!   names must be relative and stay inside the archive (no `..`, no absolute names), only files,
//!   directories and links are accepted, and links are never created as links: a link whose
//!   target (resolved inside the archive) is a regular file of the archive becomes a hard link
//!   to the extracted file, anything else is refused. gzip- or zstd-compressed archives are
//!   recognised by their magic bytes and read too.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::layout_reader::Layout;
use super::model::Digest;
use super::temp_output::{
    create_locked_file, existing, parent_dir, remove_leftovers, temp_prefix, TempDirBeside,
    ARCHIVE_SCRATCH_PREFIX,
};
use super::Error;
use crate::tarball::{
    self, CopyError, EntryHeader, EntryKind, Format, HeaderFormat, Kind, Members, NamePolicy,
    TarWriter,
};

/// Mode of files in the archives we write.
pub(super) const FILE_MODE: u32 = 0o644;
/// Mode of directories in the archives we write.
const DIR_MODE: u32 = 0o755;
/// How many links a link may go through before it is refused (as the kernel's `ELOOP`).
const MAX_LINK_HOPS: usize = 40;
/// Size of the buffer blobs are copied through.
const COPY_BUF: usize = 256 * 1024;

/// Writes the OCI image layout at `layout_dir` as an uncompressed tar at `dest`, every entry
/// dated `mtime` (seconds since the epoch; the image's epoch or 0). See the
/// module docs for the exact form; the same layout content always gives the same
/// bytes, whatever the layout's file dates, owners or directory order.
///
/// The archive holds `oci-layout`, `index.json` and every blob under `blobs/` (names starting
/// with `.`, in-progress files of layout writers, are left out). `dest`'s parent directories
/// are created if needed; `dest` is replaced atomically if it is a file already.
pub fn write_oci_archive(layout_dir: &Path, dest: &Path, mtime: u64) -> Result<(), Error> {
    let entries = layout_entries(layout_dir)?;
    write_atomically(dest, |out| {
        let mut tar = archive_writer(out, mtime);
        for entry in &entries {
            let name = entry.name.join("/");
            let write_err = |source| Error::WriteArchive {
                path: dest.to_path_buf(),
                source,
            };
            match &entry.kind {
                LayoutEntry::Dir => tar.header(&dir_header(&name)).map_err(write_err)?,
                LayoutEntry::File { path, size, digest } => {
                    let read_err = |source| Error::ReadLayout {
                        path: path.clone(),
                        source,
                    };
                    let mut file = File::open(path).map_err(read_err)?;
                    let mut hasher = Sha256::new();
                    tar.header(&file_header(&name, *size)).map_err(write_err)?;
                    let copied = tar
                        .copy_content(&mut file, *size, &mut |b| hasher.update(b))
                        .map_err(|e| match e {
                            CopyError::Read(source) => read_err(source),
                            CopyError::Write(source) => write_err(source),
                        })?;
                    // Short content is padded with zeros (the archive stays well formed) and
                    // reported below.
                    tar.end_content(*size, copied).map_err(write_err)?;
                    if copied != *size {
                        return Err(Error::BlobSize {
                            path: path.clone(),
                            digest: digest
                                .as_ref()
                                .map_or_else(|| name.clone(), Digest::to_string),
                            expected: *size,
                            actual: copied,
                        });
                    }
                    if let Some(digest) = digest {
                        let actual = Digest::from_hasher(hasher);
                        if &actual != digest {
                            return Err(Error::BlobDigest {
                                path: path.clone(),
                                digest: digest.to_string(),
                                actual: actual.to_string(),
                            });
                        }
                    }
                }
            }
        }
        tar.finish().map_err(|source| Error::WriteArchive {
            path: dest.to_path_buf(),
            source,
        })?;
        Ok(())
    })
}

/// Extracts the OCI archive at `path` into `scratch` (created if missing; it must be empty if
/// it exists) and opens it as a layout. The caller owns `scratch` and removes it when done.
///
/// Entries that would land outside `scratch` (absolute names, `..`, links pointing out of the
/// archive), device files and the like are refused with an error naming the archive and the
/// entry; see the module docs.
pub fn open_oci_archive(path: &Path, scratch: &Path) -> Result<Layout, Error> {
    prepare_scratch(scratch)?;
    let extracted = extract(path, scratch)?;
    if !extracted.is_file("oci-layout") {
        return Err(Error::NotAnArchive {
            archive: path.to_path_buf(),
            kind: "an OCI archive",
            missing: "oci-layout",
        });
    }
    Layout::open(scratch)
}

/// One entry of a layout, to be archived.
struct ArchiveEntry {
    /// Path components inside the archive.
    name: Vec<String>,
    kind: LayoutEntry,
}

enum LayoutEntry {
    Dir,
    File {
        path: PathBuf,
        size: u64,
        /// The digest a `blobs/sha256/` blob must have.
        digest: Option<Digest>,
    },
}

/// The entries of the layout at `dir`, sorted for the archive.
fn layout_entries(dir: &Path) -> Result<Vec<ArchiveEntry>, Error> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::ReadLayout { path, source }
    };
    let file = |rel: &[&str]| -> Result<ArchiveEntry, Error> {
        let path = rel.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
        let meta = fs::metadata(&path).map_err(read_err(&path))?;
        if !meta.is_file() {
            return Err(Error::UnexpectedLayoutEntry {
                path,
                what: "is not a regular file",
            });
        }
        let digest = match rel {
            ["blobs", "sha256", hex] => {
                Some(
                    Digest::from_hex(hex).map_err(|_| Error::UnexpectedLayoutEntry {
                        path: path.clone(),
                        what: "is in `blobs/sha256` but is not named by 64 lowercase hex digits",
                    })?,
                )
            }
            _ => None,
        };
        Ok(ArchiveEntry {
            name: rel.iter().map(|c| c.to_string()).collect(),
            kind: LayoutEntry::File {
                path,
                size: meta.len(),
                digest,
            },
        })
    };

    if !dir.join("oci-layout").is_file() {
        return Err(Error::NotALayout {
            path: dir.to_path_buf(),
        });
    }
    let mut entries = vec![file(&["oci-layout"])?, file(&["index.json"])?];
    let blobs = dir.join("blobs");
    if blobs.is_dir() {
        entries.push(ArchiveEntry {
            name: vec!["blobs".into()],
            kind: LayoutEntry::Dir,
        });
        for algorithm in sorted_names(&blobs)? {
            let alg_dir = blobs.join(&algorithm);
            if !fs::metadata(&alg_dir).map_err(read_err(&alg_dir))?.is_dir() {
                return Err(Error::UnexpectedLayoutEntry {
                    path: alg_dir,
                    what: "is not a directory (`blobs/` holds one directory per digest algorithm)",
                });
            }
            entries.push(ArchiveEntry {
                name: vec!["blobs".into(), algorithm.clone()],
                kind: LayoutEntry::Dir,
            });
            for blob in sorted_names(&alg_dir)? {
                entries.push(file(&["blobs", &algorithm, &blob])?);
            }
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// The names in directory `dir` that are UTF-8 and do not start with `.`, sorted.
fn sorted_names(dir: &Path) -> Result<Vec<String>, Error> {
    let read_err = |source| Error::ReadLayout {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let name = entry.map_err(read_err)?.file_name();
        let Some(name) = name.to_str() else {
            return Err(Error::UnexpectedLayoutEntry {
                path: dir.join(name),
                what: "has a name that is not UTF-8",
            });
        };
        if !name.starts_with('.') {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes a file at `dest` through `write`: into a temporary file beside `dest` (mode 0644),
/// then flushed, fsynced and renamed over `dest`, and the directory fsynced. On any error the
/// temporary file is removed and `dest` is untouched. `dest` must be free, empty or an archive
/// of ours ([`check_archive_output`]), before and after the writing; the dead temporary files of
/// earlier writes to `dest` are removed first.
pub(super) fn write_atomically(
    dest: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), Error>,
) -> Result<(), Error> {
    let name = dest.file_name().ok_or_else(|| Error::InvalidOutput {
        path: dest.to_path_buf(),
    })?;
    check_archive_output(dest)?;
    let parent = parent_dir(dest);
    fs::create_dir_all(&parent).map_err(|source| Error::CreateDir {
        path: parent.clone(),
        source,
    })?;
    let write_err = |source| Error::WriteArchive {
        path: dest.to_path_buf(),
        source,
    };
    remove_leftovers(&parent, Some(name));
    let tmp = create_locked_file(&parent, &temp_prefix(name)).map_err(write_err)?;
    set_file_mode(tmp.as_file()).map_err(write_err)?;
    // Keeps the temporary file locked until it is renamed (the lock belongs to the open file,
    // shared by its clones).
    let _lock = tmp.as_file().try_clone().map_err(write_err)?;
    let (file, tmp_path) = tmp.into_parts();
    let mut out = BufWriter::with_capacity(COPY_BUF, file);
    write(&mut out)?;
    let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(|source| Error::Sync {
        path: tmp_path.to_path_buf(),
        source,
    })?;
    drop(file);
    // Something may have appeared at `dest` while the archive was written.
    check_archive_output(dest)?;
    tmp_path.persist(dest).map_err(|e| write_err(e.error))?;
    File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::Sync {
            path: parent,
            source,
        })
}

/// Makes ready to write an archive at `dest`, before any long work: checks `dest` as
/// [`check_archive_output`] does, creates its parent directories, removes the dead leftovers of
/// earlier writes there (see `temp_output.rs`) and returns a locked temporary directory
/// beside `dest` (`.cargo-image-archive-XXXXXX`) for the layout the archive is made from.
pub fn prepare_archive_output(dest: &Path) -> Result<TempDirBeside, Error> {
    let name = dest.file_name().ok_or_else(|| Error::InvalidOutput {
        path: dest.to_path_buf(),
    })?;
    check_archive_output(dest)?;
    let parent = parent_dir(dest);
    let create_err = |source| Error::CreateDir {
        path: parent.clone(),
        source,
    };
    fs::create_dir_all(&parent).map_err(create_err)?;
    remove_leftovers(&parent, Some(name));
    TempDirBeside::create(&parent, OsStr::new(ARCHIVE_SCRATCH_PREFIX)).map_err(create_err)
}

/// Checks that an archive may be written at `dest`: nothing is there, or an empty file, or an
/// archive cargo-image wrote (an OCI or a Docker archive: `is_our_archive`). Anything else
/// (a directory, a link, somebody's file or tarball) is refused, naming `dest` and the way out.
pub fn check_archive_output(dest: &Path) -> Result<(), Error> {
    let refuse = |what: &'static str| Error::RefuseArchiveOutput {
        path: dest.to_path_buf(),
        what,
    };
    let meta = match existing(dest) {
        Ok(Some(meta)) => meta,
        Ok(None) => return Ok(()),
        Err(source) => {
            return Err(Error::WriteArchive {
                path: dest.to_path_buf(),
                source,
            })
        }
    };
    if meta.is_dir() {
        Err(refuse("is a directory"))
    } else if meta.file_type().is_symlink() {
        Err(refuse("is a symbolic link"))
    } else if !meta.is_file() {
        Err(refuse("is not a regular file"))
    } else if meta.len() == 0 || is_our_archive(dest) {
        Ok(())
    } else {
        Err(refuse("is a file that is not an archive cargo-image wrote"))
    }
}

/// Whether the file at `path` is an archive of ours: a tar whose every header is the kind
/// [`archive_writer`] writes (ustar, owner `0:0` without names, mode `0644` or `0755`, one
/// mtime for all), whose names the extraction rules accept, and that holds the files of an OCI
/// archive (`oci-layout`, `index.json`) or of a Docker archive (`manifest.json`). Only the headers are read: the content is skipped over.
fn is_our_archive(path: &Path) -> bool {
    /// More entries than any archive of ours holds: a tarball of somebody's tree.
    const MAX_ENTRIES: usize = 100_000;
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut archive = tar::Archive::new(BufReader::new(file));
    let Ok(entries) = archive.entries_with_seek() else {
        return false;
    };
    let (mut mtime, mut oci_layout, mut index, mut manifest) = (None, false, false, false);
    for (n, member) in Members::new(entries, NamePolicy::Extract).enumerate() {
        let Ok(member) = member else {
            return false;
        };
        let header = member.entry.header();
        let ours = n < MAX_ENTRIES
            && header.as_ustar().is_some()
            && header.uid().ok() == Some(0)
            && header.gid().ok() == Some(0)
            && header.username_bytes().is_none_or(<[u8]>::is_empty)
            && header.groupname_bytes().is_none_or(<[u8]>::is_empty)
            && matches!(header.mode(), Ok(FILE_MODE | DIR_MODE))
            && header.mtime().is_ok_and(|m| *mtime.get_or_insert(m) == m);
        if !ours {
            return false;
        }
        match member.raw_name.as_str() {
            "oci-layout" => oci_layout = true,
            "index.json" => index = true,
            "manifest.json" => manifest = true,
            _ => {}
        }
    }
    (oci_layout && index) || manifest
}

#[cfg(unix)]
fn set_file_mode(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_file_mode(_file: &File) -> io::Result<()> {
    Ok(())
}

/// A writer of the archives we write: [`HeaderFormat::Ustar`] headers (the bytes OCI and Docker
/// archives have always had), every entry dated `mtime`.
pub(super) fn archive_writer<W: Write>(out: W, mtime: u64) -> TarWriter<W> {
    TarWriter::new(out, mtime, HeaderFormat::Ustar)
}

/// The header of directory `name` in an archive of ours: mode `0755`, owner `0:0`.
pub(super) fn dir_header(name: &str) -> EntryHeader<'_> {
    EntryHeader {
        path: name,
        kind: EntryKind::Dir,
        mode: DIR_MODE,
        uid: 0,
        gid: 0,
    }
}

/// The header of a file `name` of `size` bytes in an archive of ours: mode `0644`, owner `0:0`.
fn file_header(name: &str, size: u64) -> EntryHeader<'_> {
    EntryHeader {
        path: name,
        kind: EntryKind::File { size },
        mode: FILE_MODE,
        uid: 0,
        gid: 0,
    }
}

/// Creates `scratch` if missing; refuses a non-empty directory or anything else.
pub(super) fn prepare_scratch(scratch: &Path) -> Result<(), Error> {
    match fs::read_dir(scratch) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::ScratchNotEmpty {
                    path: scratch.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(scratch).map_err(|source| Error::CreateDir {
                path: scratch.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(Error::CreateDir {
            path: scratch.to_path_buf(),
            source,
        }),
    }
}

/// What [`extract`] put on disk: every regular file (links included, as hard links), by its
/// normalised name in the archive.
#[derive(Debug)]
pub(super) struct Extracted {
    pub(super) archive: PathBuf,
    pub(super) root: PathBuf,
    files: BTreeSet<String>,
}

impl Extracted {
    /// Whether the archive has a regular file (or a link to one) named `name` (normalised).
    pub(super) fn is_file(&self, name: &str) -> bool {
        self.files.contains(name)
    }

    /// The extracted path of file `name` as another entry of the archive refers to it
    /// (`manifest.json`'s `Config` and `Layers`): normalised like entry names, and refused the
    /// same way when unsafe; `None` when the archive has no such file.
    pub(super) fn file(&self, name: &str) -> Result<Option<(String, PathBuf)>, Error> {
        let normal = tarball::normalise(name, NamePolicy::Extract).map_err(|reason| {
            Error::ArchiveEntry {
                archive: self.archive.clone(),
                entry: name.to_string(),
                reason: reason.to_string(),
            }
        })?;
        Ok(self.files.contains(&normal).then(|| {
            let path = self.root.join(&normal);
            (normal, path)
        }))
    }
}

/// How the file at `path` (a regular file) is compressed, by its magic bytes.
pub(super) fn sniff(path: &Path) -> io::Result<Format> {
    let (magic, n) = tarball::read_magic(&mut super::bounded::open_regular(path)?)?;
    Ok(Format::sniff(&magic[..n]))
}

/// A reader of `path`'s content (a regular file), decompressed when it is gzip or zstd.
pub(super) fn open_decompressed(path: &Path) -> io::Result<Box<dyn Read>> {
    let file = BufReader::with_capacity(COPY_BUF, super::bounded::open_regular(path)?);
    Ok(tarball::decompress(file)?.1)
}

/// Extracts the archive at `archive` (plain, gzip or zstd tar) into the empty directory `root`;
/// see the module docs for what is refused. Links become hard links to the regular
/// file they lead to.
pub(super) fn extract(archive: &Path, root: &Path) -> Result<Extracted, Error> {
    let read_err = |source| Error::ReadArchive {
        archive: archive.to_path_buf(),
        source,
    };
    let refuse = |entry: &str, reason: &str| Error::ArchiveEntry {
        archive: archive.to_path_buf(),
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    let reader = open_decompressed(archive).map_err(read_err)?;
    let mut tar = tar::Archive::new(reader);
    let mut files = BTreeSet::new();
    // Link name -> the normalised name it points at.
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let mut buf = vec![0u8; COPY_BUF];
    let entries = tar.entries().map_err(read_err)?;
    for member in Members::new(entries, NamePolicy::Extract) {
        let member = member.map_err(|e| match e {
            tarball::Error::Read(source) => read_err(source),
            tarball::Error::Name { name, reason } => refuse(&name, &reason.to_string()),
            // Neither happens under `NamePolicy::Extract` without a length.
            e @ (tarball::Error::NotUtf8 { .. } | tarball::Error::Truncated { .. }) => {
                read_err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
            }
        })?;
        let (raw, name, kind) = (member.raw_name, member.name, member.kind);
        let mut entry = member.entry;
        if kind == Kind::GlobalHeader {
            continue;
        }
        if name.is_empty() {
            if kind == Kind::Dir {
                continue;
            }
            return Err(refuse(
                &raw,
                "it names the archive's root but is not a directory",
            ));
        }
        let dest = root.join(&name);
        let extract_err = |source| Error::ExtractEntry {
            archive: archive.to_path_buf(),
            entry: raw.clone(),
            path: dest.clone(),
            source,
        };
        let link_target = || -> Result<String, Error> {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| refuse(&raw, "it is a link without a target"))?;
            Ok(String::from_utf8_lossy(&target).into_owned())
        };
        match kind {
            Kind::Dir => {
                fs::create_dir_all(&dest).map_err(extract_err)?;
            }
            Kind::File => {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(extract_err)?;
                }
                links.remove(&name);
                let mut file = File::create(&dest).map_err(extract_err)?;
                loop {
                    let n = match entry.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(read_err(e)),
                    };
                    file.write_all(&buf[..n]).map_err(extract_err)?;
                }
                files.insert(name);
            }
            Kind::Symlink => {
                let target = link_target()?;
                let resolved = tarball::resolve_symlink(&name, &target)
                    .map_err(|r| refuse(&raw, &r.to_string()))?;
                forget_file(&mut files, &name, &dest).map_err(extract_err)?;
                links.insert(name, resolved);
            }
            Kind::HardLink => {
                let target = link_target()?;
                let resolved = tarball::normalise(&target, NamePolicy::Extract)
                    .map_err(|_| refuse(&raw, "it is a hard link to a name outside the archive"))?;
                forget_file(&mut files, &name, &dest).map_err(extract_err)?;
                links.insert(name, resolved);
            }
            Kind::GlobalHeader | Kind::Device(_) | Kind::Other(_) => {
                return Err(refuse(
                    &raw,
                    &format!(
                        "it is a {:?} entry; only files, directories and links are accepted",
                        entry.header().entry_type()
                    ),
                ))
            }
        }
    }

    // Links: each becomes a hard link to the regular file it leads to.
    for (name, first) in &links {
        let mut target = first.clone();
        let mut hops = 0;
        while let Some(next) = links.get(&target) {
            hops += 1;
            if hops > MAX_LINK_HOPS {
                return Err(refuse(name, "it is a link in a loop of links"));
            }
            target = next.clone();
        }
        if !files.contains(&target) {
            return Err(refuse(
                name,
                &format!("it is a link to `{target}`, which is not a file of the archive"),
            ));
        }
        let dest = root.join(name);
        let extract_err = |source| Error::ExtractEntry {
            archive: archive.to_path_buf(),
            entry: name.clone(),
            path: dest.clone(),
            source,
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(extract_err)?;
        }
        let src = root.join(&target);
        if fs::hard_link(&src, &dest).is_err() {
            fs::copy(&src, &dest).map_err(extract_err)?;
        }
    }
    files.extend(links.into_keys());
    Ok(Extracted {
        archive: archive.to_path_buf(),
        root: root.to_path_buf(),
        files,
    })
}

/// A later entry of the same name replaces an earlier file: remove it from disk and the set.
fn forget_file(files: &mut BTreeSet<String>, name: &str, path: &Path) -> io::Result<()> {
    if files.remove(name) {
        fs::remove_file(path)?;
    }
    Ok(())
}
