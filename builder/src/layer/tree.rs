//! [`LayerTree`]: the merged, sorted set of entries of one layer.
//!
//! The tree is what the sources produce and what the tar writer consumes. It keys entries by
//! their image path (relative, normalised, without a leading `/`) in a `BTreeMap`, so iterating it
//! yields paths in byte order, and every parent directory comes before its children (a parent is
//! a prefix of its children, and `a` < `a-b` < `a/b`). Inserting an entry adds its missing parent
//! directories (0755, owned by 0:0). Two directories at one path merge; any other pair of entries
//! at one path is a conflict.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempPath;

pub use crate::tarball::DeviceKind;

/// Permission bits of implicit parent directories.
pub(crate) const IMPLICIT_DIR_MODE: u32 = 0o755;

/// The merged, sorted entries of one layer.
#[derive(Debug, Clone, Default)]
pub struct LayerTree {
    entries: BTreeMap<String, Entry>,
    /// The parent directory of the last entry inserted (a directory of the tree: an entry
    /// that is a directory stays one), so that the files of one directory, inserted one after
    /// the other by a walk, do not each look it up again.
    last_parent: String,
    /// The directories and symlinks the walks of host directories took, in walk order (see
    /// [`Self::walked`]). Boxed: a hasher's state is a few KiB, and trees are moved around.
    walked: Box<blake3::Hasher>,
}

/// One entry of a layer: what it is, its permission bits and its numeric owner.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: EntryKind,
    /// Permission bits (`0o7777` at most: setuid, setgid and sticky only when the spec set them).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Which `add` entry of the layer produced this entry (for messages).
    pub origin: Origin,
}

impl Entry {
    /// A regular file holding `bytes`, mode 0644, owned by root, from the layer's first `add`
    /// entry: the file the tests of several modules build trees from.
    #[cfg(test)]
    pub(crate) fn inline_file(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes: Arc<[u8]> = bytes.into();
        Entry {
            kind: EntryKind::File {
                size: bytes.len() as u64,
                source: FileSource::Inline(bytes),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            origin: Origin {
                entry: 0,
                implicit: false,
            },
        }
    }

    /// The tar header of this entry at `path` (its content, for a file, follows it).
    pub(crate) fn tar_header<'a>(&'a self, path: &'a str) -> crate::tarball::EntryHeader<'a> {
        use crate::tarball::EntryKind as Tar;
        let kind = match &self.kind {
            EntryKind::File { size, .. } => Tar::File { size: *size },
            EntryKind::Dir => Tar::Dir,
            EntryKind::Symlink { target } => Tar::Symlink { target },
            EntryKind::Device { kind, major, minor } => Tar::Device {
                kind: *kind,
                major: *major,
                minor: *minor,
            },
        };
        crate::tarball::EntryHeader {
            path,
            kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone)]
pub enum EntryKind {
    /// A regular file of `size` bytes whose content is read from `source` when the layer is
    /// written.
    File { source: FileSource, size: u64 },
    /// A directory.
    Dir,
    /// A symbolic link (stored, never followed).
    Symlink { target: String },
    /// A character or block device or a fifo, with its device numbers (imported tarballs
    /// only: host trees never give one).
    Device {
        kind: DeviceKind,
        major: u32,
        minor: u32,
    },
}

/// Where the content of a file entry is.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// A file on the host, with the metadata the tree was read with (the walk's one `lstat`
    /// of it, or the `stat` of a named file): the size and mode of the entry come from it, and
    /// planning keys the file by it (stat index, git's index, the stamp the build compares
    /// again after writing) without asking the file system a second time.
    Host { path: PathBuf, stat: Arc<Metadata> },
    /// Bytes given in the spec.
    Inline(Arc<[u8]>),
    /// The data of a member of an (uncompressed) tar archive, starting at `offset`.
    Archive {
        archive: Arc<ImportedArchive>,
        offset: u64,
    },
}

/// A tar archive whose members a layer imports. Compressed archives are decompressed into a
/// temporary file that lives as long as the last tree entry that refers to it.
#[derive(Debug)]
pub struct ImportedArchive {
    /// The uncompressed tar to read member data from.
    pub(crate) tar: PathBuf,
    /// The archive as the spec names it (relative to the context), for messages.
    pub(crate) source: PathBuf,
    /// Keeps the decompressed copy alive (deleted on drop).
    pub(crate) _temp: Option<TempPath>,
}

impl FileSource {
    /// The `size` bytes of content (for the few files a layer derives from others, such as
    /// the CA bundle of a `debian` entry; the tar writer streams instead). Errors name the
    /// host file or the archive.
    pub(crate) fn read(&self, size: u64) -> Result<Vec<u8>, super::Error> {
        use std::io::{Read, Seek, SeekFrom};
        let (path, opened) = match self {
            FileSource::Inline(bytes) => return Ok(bytes.to_vec()),
            FileSource::Host { path, .. } => (path, std::fs::File::open(path)),
            FileSource::Archive { archive, offset } => (
                &archive.source,
                std::fs::File::open(&archive.tar).and_then(|mut f| {
                    f.seek(SeekFrom::Start(*offset))?;
                    Ok(f)
                }),
            ),
        };
        let mut buf = Vec::with_capacity(size as usize);
        let read = opened.and_then(|f| f.take(size).read_to_end(&mut buf));
        match read {
            Ok(n) if n as u64 == size => Ok(buf),
            Ok(_) => Err(super::Error::ReadSource {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file ends before its recorded size",
                ),
            }),
            Err(source) => Err(super::Error::ReadSource {
                path: path.clone(),
                source,
            }),
        }
    }
}

impl ImportedArchive {
    /// An archive read from the uncompressed tar `tar`, named `source` in messages; `temp`, when
    /// given, is deleted when the last entry referring to the archive is dropped.
    pub(crate) fn new(tar: PathBuf, source: PathBuf, temp: Option<TempPath>) -> Self {
        ImportedArchive {
            tar,
            source,
            _temp: temp,
        }
    }

    /// The uncompressed tar file member data is read from.
    pub fn tar_path(&self) -> &Path {
        &self.tar
    }

    /// The archive as the spec names it.
    pub fn source(&self) -> &Path {
        &self.source
    }
}

impl EntryKind {
    /// A host file at `path` whose metadata is `stat` (its size is the entry's size).
    pub(crate) fn host_file(path: PathBuf, stat: impl Into<Arc<Metadata>>) -> Self {
        let stat = stat.into();
        EntryKind::File {
            size: stat.len(),
            source: FileSource::Host { path, stat },
        }
    }
}

/// The attributes (path, mode, uid, gid) [`LayerTree::inherit_implicit_dirs`] replaced.
#[derive(Debug, Default)]
pub struct Replaced(Vec<(String, u32, u64, u64)>);

/// Which `add` entry of a layer an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Index of the `add` entry in the layer spec.
    pub entry: usize,
    /// `true` for a parent directory the tree added for the entry's content.
    pub implicit: bool,
}

/// Two entries at one path (the tree reports it; the caller names the sources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub path: String,
    pub existing: Origin,
    pub new: Origin,
    /// The host files of the two entries, when they are host files.
    pub existing_host: Option<PathBuf>,
    pub new_host: Option<PathBuf>,
}

fn host_file(entry: &Entry) -> Option<PathBuf> {
    match &entry.kind {
        EntryKind::File {
            source: FileSource::Host { path, .. },
            ..
        } => Some(path.clone()),
        _ => None,
    }
}

impl LayerTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries (including implicit parent directories).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at `path` (relative, without a leading `/`).
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Entries in the order they are written: byte order of their path, parents first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Entry)> + '_ {
        self.entries
            .iter()
            .map(|(path, entry)| (path.as_str(), entry))
    }

    /// The host files of the tree, in tree order: each one's path on the host and the `stat`
    /// it was read with.
    pub fn host_files(&self) -> impl Iterator<Item = (&Path, &Metadata)> + '_ {
        self.entries.values().filter_map(|entry| match &entry.kind {
            EntryKind::File {
                source: FileSource::Host { path, stat },
                ..
            } => Some((path.as_path(), &**stat)),
            _ => None,
        })
    }

    /// A digest of the directories and symlinks (with their targets) that the walks of the
    /// layer's host directories took, in walk order. Two reads of the same host trees give the
    /// same digest whatever else the layer holds (inline files, imported archives, stage copies
    /// and their merges with the walked directories do not enter it), so a tree read again
    /// when its layer is written can be checked against the tree planning keyed for what
    /// the host files' stamps do not cover: a directory or symlink that came, went, or was
    /// pointed elsewhere in between.
    pub fn walked(&self) -> [u8; 32] {
        *self.walked.finalize().as_bytes()
    }

    /// Notes a directory (`target` `None`) or symlink a host walk took at `path`, for
    /// [`Self::walked`].
    pub(crate) fn note_walked(&mut self, path: &str, target: Option<&str>) {
        // Length-prefixed, so no two sequences of paths and targets give the same bytes.
        let field = |h: &mut blake3::Hasher, s: &str| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        match target {
            None => {
                self.walked.update(b"d");
                field(&mut self.walked, path);
            }
            Some(target) => {
                self.walked.update(b"l");
                field(&mut self.walked, path);
                field(&mut self.walked, target);
            }
        }
    }

    /// Total size of the file contents, in bytes.
    pub fn content_size(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match &e.kind {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum()
    }

    /// Gives every implicit parent directory the mode and owner `lower` reports for its path
    /// (`(mode, uid, gid)` of a directory the layers below have there), so that a layer that only
    /// adds into (or removes from) an existing directory such as `/tmp` (1777) does not reset
    /// it to 0755 0:0. Paths `lower` knows nothing of keep 0755 0:0. The layer's bytes then
    /// depend on the lower layers: a caller that uses this must key the layer on them.
    ///
    /// Returns the attributes it replaced, which [`Self::put_back`] restores: a layer's key
    /// covers its tree as planned (its implicit directories 0755 0:0, and the base below), so a
    /// layer keyed after it is written is keyed over the tree as it was.
    pub fn inherit_implicit_dirs(
        &mut self,
        lower: impl Fn(&str) -> Option<(u32, u64, u64)>,
    ) -> Replaced {
        let mut replaced = Vec::new();
        for (path, entry) in &mut self.entries {
            if entry.origin.implicit && matches!(entry.kind, EntryKind::Dir) {
                if let Some((mode, uid, gid)) = lower(path) {
                    replaced.push((path.clone(), entry.mode, entry.uid, entry.gid));
                    entry.mode = mode & 0o7777;
                    entry.uid = uid;
                    entry.gid = gid;
                }
            }
        }
        Replaced(replaced)
    }

    /// Gives the entries [`Self::inherit_implicit_dirs`] changed their attributes back.
    pub fn put_back(&mut self, replaced: Replaced) {
        for (path, mode, uid, gid) in replaced.0 {
            if let Some(entry) = self.entries.get_mut(&path) {
                (entry.mode, entry.uid, entry.gid) = (mode, uid, gid);
            }
        }
    }

    /// Adds `entry` at `path` (relative, normalised: no leading or trailing `/`, no `.`, `..` or
    /// empty component), with its missing parent directories. A directory at the path of another
    /// directory merges with it (explicit attributes win over implicit ones, a later explicit
    /// directory over an earlier one); any other pair at one path is an error.
    pub fn insert(&mut self, path: &str, entry: Entry) -> Result<(), super::Error> {
        self.try_insert(path, entry)
            .map_err(|c| super::Error::MergeEntries {
                layer: String::new(),
                path: c.path,
                first: format!("add entry #{}", c.existing.entry + 1),
                second: format!("add entry #{}", c.new.entry + 1),
            })
    }

    pub(crate) fn try_insert(&mut self, path: &str, entry: Entry) -> Result<(), Conflict> {
        self.try_insert_owned(path.to_owned(), entry)
    }

    /// [`try_insert`](Self::try_insert) with the path given as an owned string, which becomes
    /// the entry's key (no copy of it is made).
    pub(crate) fn try_insert_owned(&mut self, path: String, entry: Entry) -> Result<(), Conflict> {
        use std::collections::btree_map::Entry as Slot;
        debug_assert!(is_normalised(&path), "unnormalised layer path {path:?}");
        if let Err(mut c) = self.ensure_parents(&path, entry.origin) {
            c.new_host = host_file(&entry);
            return Err(c);
        }
        match self.entries.entry(path) {
            Slot::Vacant(slot) => {
                slot.insert(entry);
                Ok(())
            }
            Slot::Occupied(mut slot) => {
                let existing = slot.get_mut();
                match (&existing.kind, &entry.kind) {
                    (EntryKind::Dir, EntryKind::Dir) => {
                        if !entry.origin.implicit {
                            *existing = entry;
                        }
                        Ok(())
                    }
                    _ => Err(Conflict {
                        existing: existing.origin,
                        new: entry.origin,
                        existing_host: host_file(existing),
                        new_host: host_file(&entry),
                        path: slot.key().clone(),
                    }),
                }
            }
        }
    }

    /// Adds the missing parent directories of `path`. Every directory in the tree already has all
    /// its parents, so the walk up stops at the first existing one.
    fn ensure_parents(&mut self, path: &str, origin: Origin) -> Result<(), Conflict> {
        let Some(last_slash) = path.rfind('/') else {
            return Ok(());
        };
        let parent = &path[..last_slash];
        if parent == self.last_parent {
            return Ok(());
        }
        self.add_parents(path, origin)?;
        self.last_parent.clear();
        self.last_parent.push_str(parent);
        Ok(())
    }

    fn add_parents(&mut self, path: &str, origin: Origin) -> Result<(), Conflict> {
        let mut missing: Vec<usize> = Vec::new();
        let mut end = path.len();
        while let Some(slash) = path[..end].rfind('/') {
            let parent = &path[..slash];
            match self.entries.get(parent) {
                Some(e) if matches!(e.kind, EntryKind::Dir) => break,
                Some(e) => {
                    return Err(Conflict {
                        path: parent.to_owned(),
                        existing: e.origin,
                        new: Origin {
                            entry: origin.entry,
                            implicit: true,
                        },
                        existing_host: host_file(e),
                        new_host: None,
                    })
                }
                None => missing.push(slash),
            }
            end = slash;
        }
        for &slash in missing.iter().rev() {
            self.entries.insert(
                path[..slash].to_owned(),
                Entry {
                    kind: EntryKind::Dir,
                    mode: IMPLICIT_DIR_MODE,
                    uid: 0,
                    gid: 0,
                    origin: Origin {
                        entry: origin.entry,
                        implicit: true,
                    },
                },
            );
        }
        Ok(())
    }
}

/// Whether `path` is a normalised relative image path.
pub(crate) fn is_normalised(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// `dest` joined with a relative path (either may be empty).
pub(crate) fn join(dest: &str, rel: &str) -> String {
    match (dest.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_owned(),
        (false, true) => dest.to_owned(),
        (false, false) => {
            let mut s = String::with_capacity(dest.len() + 1 + rel.len());
            s.push_str(dest);
            s.push('/');
            s.push_str(rel);
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(entry: usize, mode: u32) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            mode,
            uid: 0,
            gid: 0,
            origin: Origin {
                entry,
                implicit: false,
            },
        }
    }

    fn file(entry: usize) -> Entry {
        Entry {
            origin: Origin {
                entry,
                implicit: false,
            },
            ..Entry::inline_file(&b"x"[..])
        }
    }

    #[test]
    fn byte_order_with_parents_first() {
        let mut t = LayerTree::new();
        t.try_insert("a/b/c", file(0)).unwrap();
        t.try_insert("a-b", file(0)).unwrap();
        t.try_insert("a.txt", file(0)).unwrap();
        t.try_insert("A", file(0)).unwrap();
        let paths: Vec<&str> = t.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["A", "a", "a-b", "a.txt", "a/b", "a/b/c"]);
        assert!(t.get("a").unwrap().origin.implicit);
        assert_eq!(t.get("a/b").unwrap().mode, 0o755);
    }

    #[test]
    fn explicit_dir_attributes_win_over_implicit() {
        let mut t = LayerTree::new();
        t.try_insert("d/f", file(0)).unwrap();
        t.try_insert("d", dir(1, 0o700)).unwrap();
        assert_eq!(t.get("d").unwrap().mode, 0o700);
        // A later implicit parent does not undo the explicit mode.
        t.try_insert("d/g", file(2)).unwrap();
        assert_eq!(t.get("d").unwrap().mode, 0o700);
        assert_eq!(
            t.get("d").unwrap().origin,
            Origin {
                entry: 1,
                implicit: false
            }
        );
    }

    #[test]
    fn conflicts_are_reported_with_both_origins() {
        let mut t = LayerTree::new();
        t.try_insert("x", file(0)).unwrap();
        assert_eq!(
            t.try_insert("x", file(1)).unwrap_err(),
            Conflict {
                path: "x".into(),
                existing: Origin {
                    entry: 0,
                    implicit: false
                },
                new: Origin {
                    entry: 1,
                    implicit: false
                },
                existing_host: None,
                new_host: None,
            }
        );
        // A file where a later entry needs a directory.
        let c = t.try_insert("x/y", file(2)).unwrap_err();
        assert_eq!(c.path, "x");
        assert!(c.new.implicit);
        // A directory where a file already is.
        assert!(t.try_insert("x", dir(3, 0o755)).is_err());
        // A file where an implicit directory already is.
        t.try_insert("p/q", file(4)).unwrap();
        let c = t.try_insert("p", file(5)).unwrap_err();
        assert!(c.existing.implicit);
    }

    #[test]
    fn join_and_normalised() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("usr", ""), "usr");
        assert_eq!(join("usr", "bin/x"), "usr/bin/x");
        assert!(is_normalised("a/b"));
        for bad in ["", "/a", "a/", "a//b", "./a", "a/../b"] {
            assert!(!is_normalised(bad), "{bad}");
        }
    }
}
