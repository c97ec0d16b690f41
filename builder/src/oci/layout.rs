//! The OCI image layout sink: a directory with `oci-layout`, `index.json` and `blobs/sha256/`,
//! written beside its destination and swapped into place only when complete.
//!
//! [`LayoutWriter::create`] makes a temporary directory next to the target (same filesystem,
//! so the final rename is atomic). Blobs go into it: layers streamed by the layer module into
//! [`LayoutWriter::blobs_dir`], JSON documents through [`LayoutWriter::write_json`], base layers
//! linked in by [`LayoutWriter::import_blob`]. [`LayoutWriter::finish`] writes `oci-layout` and
//! `index.json`, fsyncs, then replaces the target in one step. Until then the previous output
//! is untouched, and dropping the writer (an error, a panic, Ctrl-C unwinding) removes the
//! temporary directory.
//!
//! # An output that is already what this build writes
//!
//! A warm build writes the same layout as the build before it. So [`LayoutWriter::finish`]
//! compares the layout it made with the one at the target and, when they are the same, leaves
//! the target as it is (no `fsync`, no swap: its files keep their inodes and times) and
//! removes its own. "The same" is checked, never assumed, so a layout someone changed is
//! written again:
//!
//! - the target is a layout of ours ([`is_our_layout`]: our `oci-layout` file byte for byte,
//!   `index.json`, `blobs/sha256/` holding only blob files);
//! - its `index.json` has exactly the bytes this build writes;
//! - its `blobs/sha256/` has exactly the blobs this build's layout has, by name, none missing
//!   and none more;
//! - each of those blobs is the same file as this build's (the same inode: both are hard
//!   links of one store blob), or has the same bytes.
//!
//! So that the small blobs (SBOMs, provenance, their manifests) cost no `fsync` either,
//! [`LayoutWriter::write_blob`] takes a blob the target already holds with the same bytes by
//! a hard link to it instead of writing it again.
//!
//! The target is only ever replaced when it is an output of ours, a layout this module wrote
//! ([`is_our_layout`]), or an empty directory: a user's directory given as `--output` by mistake
//! (a project that happens to hold an `oci-layout` file, a layout another tool wrote) is refused
//! and left untouched, never deleted. The temporary directory is locked for its whole life, so
//! the leftovers of a killed build are told from a concurrent build's work and removed by the
//! next build to the same place ([`super::temp_output`]).
//!
//! # Durability
//! Nothing in the temporary directory is visible under the target's name until
//! [`LayoutWriter::finish`] has made all of it durable, so files are not synced one by one as
//! they are written: `finish` syncs every blob, `oci-layout`, `index.json` and the three
//! directories at once, on several threads (a journaling filesystem commits concurrent syncs
//! together, where one after another each waits for its own commit), and only then renames.
//! A blob hard-linked from the store ([`LayoutWriter::durable`]) is not synced again: the
//! store synced its content before naming it, and the new link is made durable by the sync of
//! its directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, MediaType};
use serde::Serialize;

use super::model::{descriptor, image_index, Digest};
use super::temp_output::{existing, parent_dir, remove_leftovers, temp_prefix, TempDirBeside};
use super::{to_canonical_json, Error};

/// The content of the `oci-layout` file.
pub const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout being written; see the module docs.
#[derive(Debug)]
pub struct LayoutWriter {
    target: PathBuf,
    tmp: TempDirBeside,
    blobs: PathBuf,
    /// Blobs (hex digests) whose content is known to be on disk already (see the module docs).
    durable: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl LayoutWriter {
    /// Starts a layout that [`finish`](Self::finish) will move to `target`. Creates `target`'s
    /// parent directories if needed, and a temporary directory beside `target` (after removing
    /// the dead temporary directories of earlier builds of `target`). Fails early, touching
    /// nothing, if `target` exists and is neither a layout of ours nor an empty directory.
    pub fn create(target: &Path) -> Result<Self, Error> {
        let name = target
            .file_name()
            .ok_or_else(|| Error::InvalidOutput {
                path: target.to_path_buf(),
            })?
            .to_owned();
        check_replaceable(target)?;
        let parent = parent_dir(target);
        fs::create_dir_all(&parent).map_err(|source| Error::CreateDir {
            path: parent.clone(),
            source,
        })?;
        remove_leftovers(&parent, Some(&name));
        let tmp = TempDirBeside::create(&parent, &temp_prefix(&name)).map_err(|source| {
            Error::CreateDir {
                path: parent.clone(),
                source,
            }
        })?;
        let blobs = tmp.path().join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|source| Error::CreateDir {
            path: blobs.clone(),
            source,
        })?;
        Ok(Self {
            target: target.to_path_buf(),
            tmp,
            blobs,
            durable: Default::default(),
        })
    }

    /// Where the finished layout will be.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary layout directory (gone after [`finish`](Self::finish) or drop).
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// `blobs/sha256` of the layout being written: blobs are files named by their hex digest.
    /// Writers streaming a blob here should write a temporary name in this directory and
    /// rename it to the hex digest once complete and synced.
    pub fn blobs_dir(&self) -> PathBuf {
        self.blobs.clone()
    }

    /// The path of blob `digest` in the layout being written.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Writes `bytes` as a blob (temp file, rename; [`finish`](Self::finish) syncs it) and
    /// returns its digest and size. Writing a blob that is already there is a no-op.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<(Digest, u64), Error> {
        let digest = Digest::of(bytes);
        let dest = self.blob_path(&digest);
        if !dest.exists() && !self.link_from_target(&digest, bytes, &dest) {
            let write_err = |source| Error::WriteBlob {
                path: dest.clone(),
                source,
            };
            let mut file = tempfile::Builder::new()
                .prefix(".blob-")
                .tempfile_in(&self.blobs)
                .map_err(write_err)?;
            file.write_all(bytes).map_err(write_err)?;
            file.persist(&dest).map_err(|e| write_err(e.error))?;
        }
        Ok((digest, bytes.len() as u64))
    }

    /// Hard-links the target's blob `digest` to `dest` when it holds exactly `bytes` (an
    /// earlier build's layout at the target: see the module docs); whether it did.
    fn link_from_target(&self, digest: &Digest, bytes: &[u8], dest: &Path) -> bool {
        let theirs = self.target.join("blobs").join("sha256").join(digest.hex());
        let same = fs::symlink_metadata(&theirs)
            .is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64)
            && fs::read(&theirs).is_ok_and(|b| b == bytes);
        same && fs::hard_link(&theirs, dest).is_ok()
    }

    /// Writes `value` as a [canonical JSON](to_canonical_json) blob and returns its descriptor.
    pub fn write_json<T: Serialize>(
        &self,
        media_type: MediaType,
        value: &T,
    ) -> Result<Descriptor, Error> {
        let bytes = to_canonical_json(value)?;
        let (digest, size) = self.write_blob(&bytes)?;
        Ok(descriptor(media_type, &digest, size))
    }

    /// Adds the blob at `src` (from another layout or the store) as blob `digest`: hard-linked
    /// when possible, else copied (temp file, rename; [`finish`](Self::finish) syncs it either
    /// way). Verifies nothing: the source's reader verifies its blobs. A blob already present is
    /// left alone.
    pub fn import_blob(&self, src: &Path, digest: &str) -> Result<(), Error> {
        let digest = Digest::parse(digest)?;
        let dest = self.blob_path(&digest);
        if dest.exists() {
            return Ok(());
        }
        if fs::hard_link(src, &dest).is_ok() {
            return Ok(());
        }
        let import_err = |source| Error::ImportBlob {
            src: src.to_path_buf(),
            digest: digest.to_string(),
            source,
        };
        let mut input = File::open(src).map_err(import_err)?;
        let mut file = tempfile::Builder::new()
            .prefix(".blob-")
            .tempfile_in(&self.blobs)
            .map_err(import_err)?;
        io::copy(&mut input, file.as_file_mut()).map_err(import_err)?;
        file.persist(&dest).map_err(|e| import_err(e.error))?;
        Ok(())
    }

    /// Says that blob `digest` (in [`blobs_dir`](Self::blobs_dir)) is a hard link of a file
    /// whose content is already on disk (a store blob): [`finish`](Self::finish) does not sync
    /// it again.
    pub fn durable(&self, digest: &Digest) {
        self.durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.hex().to_string());
    }

    /// What [`finish`](Self::finish) syncs: every blob but those known to be on disk, in name
    /// order, then `oci-layout`, `index.json` and the directories.
    fn to_sync(&self) -> Result<Vec<PathBuf>, Error> {
        let root = self.tmp.path();
        let durable = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        let mut paths = Vec::new();
        let entries = fs::read_dir(&self.blobs).map_err(|source| Error::Sync {
            path: self.blobs.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Sync {
                path: self.blobs.clone(),
                source,
            })?;
            if !entry
                .file_name()
                .to_str()
                .is_some_and(|n| durable.contains(n))
            {
                paths.push(entry.path());
            }
        }
        paths.sort();
        paths.extend([
            root.join("oci-layout"),
            root.join("index.json"),
            self.blobs.clone(),
            root.join("blobs"),
            root.to_path_buf(),
        ]);
        Ok(paths)
    }

    /// Completes the layout: writes `oci-layout` and a canonical `index.json` listing
    /// `index_entries`, fsyncs every file and directory (at once, see the module docs), then
    /// replaces the target with it atomically. Returns the target path.
    ///
    /// The target must not exist, or be a layout of ours, or be an empty directory; anything
    /// else is refused and left as it was (and this layout is discarded).
    pub fn finish(self, index_entries: Vec<Descriptor>) -> Result<PathBuf, Error> {
        let root = self.tmp.path();
        let index = to_canonical_json(&image_index(index_entries))?;
        if self.target_is_the_same(&index) {
            // Nothing to do: the temporary directory goes when the writer is dropped.
            return Ok(self.target.clone());
        }
        write_file(&root.join("oci-layout"), OCI_LAYOUT_FILE)?;
        write_file(&root.join("index.json"), &index)?;

        sync_all_at_once(&self.to_sync()?)?;

        let replace_err = |source| Error::ReplaceOutput {
            path: self.target.clone(),
            source,
        };
        // Another process may put a layout at the target between the check and the rename
        // (several builds of one spec at once): then check again and swap with it instead.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match check_replaceable(&self.target)? {
                Existing::Nothing => match fs::rename(root, &self.target) {
                    Ok(()) => {
                        // The temporary directory is the target now: do not let the drop
                        // remove it.
                        self.tmp.keep();
                        break;
                    }
                    Err(e) if attempts < 5 && target_appeared(&e) => continue,
                    Err(e) => return Err(replace_err(e)),
                },
                Existing::Replaceable => {
                    swap(root, &self.target).map_err(replace_err)?;
                    // The temporary path now holds the previous output; dropping removes it.
                    // Failing to clean up is not failing to write the layout.
                    let _ = self.tmp.close();
                    break;
                }
            }
        }
        sync_path(&parent_dir(&self.target))?;
        Ok(self.target)
    }
}

impl LayoutWriter {
    /// Whether the layout at the target is the one this writer would put there, `index`
    /// being its `index.json` (see the module docs for what is compared).
    fn target_is_the_same(&self, index: &[u8]) -> bool {
        let target = &self.target;
        let is_dir = existing(target).is_ok_and(|m| m.is_some_and(|m| m.is_dir()));
        if !is_dir || is_our_layout(target).is_err() {
            return false;
        }
        if fs::read(target.join("index.json")).ok().as_deref() != Some(index) {
            return false;
        }
        let names = |dir: &Path| -> Option<Vec<std::ffi::OsString>> {
            let mut names = fs::read_dir(dir)
                .ok()?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            names.sort();
            Some(names)
        };
        let theirs_dir = target.join("blobs").join("sha256");
        let (Some(ours), Some(theirs)) = (names(&self.blobs), names(&theirs_dir)) else {
            return false;
        };
        ours == theirs
            && ours
                .iter()
                .all(|name| same_file_content(&self.blobs.join(name), &theirs_dir.join(name)))
    }
}

/// Whether the files at `a` and `b` are one file (one inode) or hold the same bytes.
fn same_file_content(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let (Ok(ma), Ok(mb)) = (fs::symlink_metadata(a), fs::symlink_metadata(b)) else {
        return false;
    };
    if !ma.is_file() || !mb.is_file() || ma.len() != mb.len() {
        return false;
    }
    if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
        return true;
    }
    let (Ok(mut fa), Ok(mut fb)) = (File::open(a), File::open(b)) else {
        return false;
    };
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = match fa.read(&mut ba) {
            Ok(0) => return fb.read(&mut bb).is_ok_and(|m| m == 0),
            Ok(n) => n,
            Err(_) => return false,
        };
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Whether a rename onto a missing target failed because the target exists now.
fn target_appeared(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
    )
}

/// What is at a layout's target before it is replaced.
enum Existing {
    Nothing,
    /// A layout of ours or an empty directory.
    Replaceable,
}

fn check_replaceable(target: &Path) -> Result<Existing, Error> {
    let refuse = |what: &str| Error::RefuseReplace {
        path: target.to_path_buf(),
        what: what.to_string(),
    };
    let meta = match existing(target) {
        Ok(Some(meta)) => meta,
        Ok(None) => return Ok(Existing::Nothing),
        Err(source) => {
            return Err(Error::ReplaceOutput {
                path: target.to_path_buf(),
                source,
            })
        }
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symbolic link"));
    }
    if !meta.is_dir() {
        return Err(refuse("is not a directory"));
    }
    let mut entries = fs::read_dir(target).map_err(|source| Error::ReplaceOutput {
        path: target.to_path_buf(),
        source,
    })?;
    if entries.next().is_none() {
        return Ok(Existing::Replaceable);
    }
    is_our_layout(target)
        .map(|()| Existing::Replaceable)
        .map_err(|why| refuse(&why))
}

/// Whether directory `dir` is a layout of ours: the `oci-layout` file we write, byte for byte,
/// an `index.json` file and a `blobs/sha256/` directory of files named by their digest, and
/// nothing else. Anything more is somebody's data (a project with an `oci-layout` file, notes
/// put beside the blobs), and a layout another tool wrote may hold images we would lose: both
/// are refused with the reason (a phrase following "it"), naming the entry at fault.
pub(super) fn is_our_layout(dir: &Path) -> Result<(), String> {
    let is_file = |path: &Path| fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
    let is_dir = |path: &Path| fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if !is_file(&dir.join("oci-layout")) {
        return Err("is a directory that is not an OCI image layout".to_string());
    }
    if fs::read(dir.join("oci-layout")).ok().as_deref() != Some(OCI_LAYOUT_FILE) {
        return Err("is an OCI image layout that cargo-image did not write".to_string());
    }
    let foreign = |entry: &Path| {
        format!(
            "holds `{}`, which is not part of an OCI image layout cargo-image wrote",
            entry.display()
        )
    };
    let listing = |path: &Path| -> Result<Vec<std::ffi::OsString>, String> {
        let mut names: Vec<_> = fs::read_dir(path)
            .map_err(|e| format!("cannot be listed ({e})"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot be listed ({e})"))?;
        names.sort();
        Ok(names)
    };
    for name in listing(dir)? {
        let path = dir.join(&name);
        let expected = match name.to_str() {
            Some("oci-layout" | "index.json") => is_file(&path),
            Some("blobs") => is_dir(&path),
            _ => false,
        };
        if !expected {
            return Err(foreign(&path));
        }
    }
    let blobs = dir.join("blobs");
    for name in listing(&blobs)? {
        let path = blobs.join(&name);
        if name != "sha256" || !is_dir(&path) {
            return Err(foreign(&path));
        }
    }
    let sha256 = blobs.join("sha256");
    if is_dir(&sha256) {
        for name in listing(&sha256)? {
            let path = sha256.join(&name);
            let hex = name.to_str().is_some_and(|n| {
                n.len() == 64 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            });
            if !hex || !is_file(&path) {
                return Err(foreign(&path));
            }
        }
    }
    Ok(())
}

/// Puts directory `new` at `target` and the previous `target` at `new`.
#[cfg(target_os = "linux")]
fn swap(new: &Path, target: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, new, CWD, target, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_EXCHANGE: fall back to two renames.
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            swap_by_renames(new, target)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn swap(new: &Path, target: &Path) -> io::Result<()> {
    swap_by_renames(new, target)
}

/// `target -> backup`, `new -> target`, `backup -> new`: not atomic, but `target` is only
/// missing between the first two renames, and is restored if the second fails.
fn swap_by_renames(new: &Path, target: &Path) -> io::Result<()> {
    let mut backup = new.as_os_str().to_owned();
    backup.push(".old");
    let backup = PathBuf::from(backup);
    fs::rename(target, &backup)?;
    if let Err(e) = fs::rename(new, target) {
        let _ = fs::rename(&backup, target);
        return Err(e);
    }
    fs::rename(&backup, new)
}

/// Writes `bytes` to a new file at `path` (not synced: [`LayoutWriter::finish`] syncs it).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |source| Error::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::create(path).map_err(err)?;
    file.write_all(bytes).map_err(err)
}

/// fsyncs every path, several at once; the first failure in `paths` order is the error.
fn sync_all_at_once(paths: &[PathBuf]) -> Result<(), Error> {
    const THREADS: usize = 8;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..THREADS.min(paths.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                if let Err(e) = sync_path(path) {
                    failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((i, e));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    match failures.into_iter().min_by_key(|(i, _)| *i) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// fsync a file or directory.
fn sync_path(path: &Path) -> Result<(), Error> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| Error::Sync {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::oci::temp_output::tests::names as entries;

    #[test]
    fn writes_a_layout_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let writer = LayoutWriter::create(&target).unwrap();
        let (digest, size) = writer.write_blob(b"hello").unwrap();
        assert_eq!(size, 5);
        assert_eq!(fs::read(writer.blob_path(&digest)).unwrap(), b"hello");
        // Same blob twice is fine.
        writer.write_blob(b"hello").unwrap();
        let out = writer.finish(vec![]).unwrap();
        assert_eq!(out, target);
        assert_eq!(entries(dir.path()), ["out"]);
        assert_eq!(entries(&target), ["blobs", "index.json", "oci-layout"]);
        assert_eq!(
            fs::read(target.join("oci-layout")).unwrap(),
            OCI_LAYOUT_FILE
        );
        assert_eq!(
            fs::read_to_string(target.join("index.json")).unwrap(),
            r#"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#
        );
        assert_eq!(entries(&target.join("blobs/sha256")), [digest.hex()]);
    }

    #[test]
    fn replaces_a_previous_layout() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let first = LayoutWriter::create(&target).unwrap();
        first.write_blob(b"one").unwrap();
        first.finish(vec![]).unwrap();

        let second = LayoutWriter::create(&target).unwrap();
        let (digest, _) = second.write_blob(b"two").unwrap();
        second.finish(vec![]).unwrap();
        assert_eq!(entries(&target.join("blobs/sha256")), [digest.hex()]);
        assert_eq!(
            entries(dir.path()),
            ["out"],
            "old layout or temp dir left behind"
        );
    }

    #[test]
    fn replaces_an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        fs::create_dir(&target).unwrap();
        LayoutWriter::create(&target)
            .unwrap()
            .finish(vec![])
            .unwrap();
        assert!(target.join("oci-layout").is_file());
        assert_eq!(entries(dir.path()), ["out"]);
    }

    #[test]
    fn dropped_writer_keeps_previous_output() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let first = LayoutWriter::create(&target).unwrap();
        let (kept, _) = first.write_blob(b"kept").unwrap();
        first.finish(vec![]).unwrap();
        let before = fs::read(target.join("index.json")).unwrap();

        let second = LayoutWriter::create(&target).unwrap();
        let tmp = second.path().to_path_buf();
        second.write_blob(b"lost").unwrap();
        assert!(tmp.is_dir());
        drop(second);
        assert!(!tmp.exists(), "temp dir not removed on drop");
        assert_eq!(entries(dir.path()), ["out"]);
        assert_eq!(entries(&target.join("blobs/sha256")), [kept.hex()]);
        assert_eq!(fs::read(target.join("index.json")).unwrap(), before);
    }

    #[test]
    fn refuses_to_replace_a_directory_that_is_not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("src");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("main.rs"), "fn main() {}").unwrap();

        let err = LayoutWriter::create(&target).unwrap_err();
        assert!(matches!(err, Error::RefuseReplace { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&target.display().to_string()), "{msg}");
        assert!(msg.contains("--output"), "{msg}");

        // Also when the directory appears while the layout is being written.
        let late = dir.path().join("late");
        let writer = LayoutWriter::create(&late).unwrap();
        fs::create_dir(&late).unwrap();
        fs::write(late.join("notes.txt"), "mine").unwrap();
        let err = writer.finish(vec![]).unwrap_err();
        assert!(matches!(err, Error::RefuseReplace { .. }), "{err:?}");
        assert_eq!(entries(&late), ["notes.txt"]);
        assert_eq!(
            fs::read_to_string(target.join("main.rs")).unwrap(),
            "fn main() {}"
        );
        assert_eq!(entries(dir.path()), ["late", "src"], "temp dir left behind");

        // A regular file is refused too.
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(matches!(
            LayoutWriter::create(&file).unwrap_err(),
            Error::RefuseReplace { .. }
        ));
    }

    #[test]
    fn refuses_a_directory_that_holds_more_than_a_layout_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("proj");
        LayoutWriter::create(&target)
            .unwrap()
            .finish(vec![])
            .unwrap();
        // A layout of ours with somebody's files put beside or inside it.
        for (extra, named) in [
            ("notes.txt", "notes.txt"),
            ("src/main.rs", "src"),
            ("blobs/notes.txt", "blobs/notes.txt"),
            ("blobs/sha256/notes.txt", "blobs/sha256/notes.txt"),
        ] {
            let path = target.join(extra);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "mine").unwrap();
            let err = LayoutWriter::create(&target).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::RefuseReplace { .. }), "{err:?}");
            assert!(
                msg.contains(&format!("`{}`", target.join(named).display())),
                "{msg}"
            );
            assert!(msg.contains("nothing was changed"), "{msg}");
            assert_eq!(fs::read_to_string(&path).unwrap(), "mine");
            fs::remove_file(&path).unwrap();
            if named == "src" {
                fs::remove_dir(target.join("src")).unwrap();
            }
        }
        // A layout another tool wrote (its own `oci-layout` bytes).
        fs::write(
            target.join("oci-layout"),
            r#"{"imageLayoutVersion": "1.0.0"}"#,
        )
        .unwrap();
        let err = LayoutWriter::create(&target).unwrap_err();
        assert!(err.to_string().contains("did not write"), "{err}");
        fs::write(target.join("oci-layout"), OCI_LAYOUT_FILE).unwrap();
        // Cleaned up again, it is ours and replaced.
        LayoutWriter::create(&target)
            .unwrap()
            .finish(vec![])
            .unwrap();
        assert_eq!(entries(&target), ["blobs", "index.json", "oci-layout"]);
        assert_eq!(entries(dir.path()), ["proj"]);
    }

    #[test]
    fn removes_the_temporary_directory_a_killed_writer_left() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        // As a SIGKILLed build leaves it: nobody holds its lock.
        let leftover = dir.path().join(".out.tmp-Ab12Cd");
        fs::create_dir_all(leftover.join("blobs/sha256")).unwrap();
        fs::write(leftover.join("blobs/sha256/big"), "layer").unwrap();
        // A live writer's is left alone.
        let live = LayoutWriter::create(&target).unwrap();
        assert!(!leftover.exists(), "leftover not removed");
        let second = LayoutWriter::create(&target).unwrap();
        assert!(live.path().is_dir(), "a live writer's temp dir was removed");
        second.finish(vec![]).unwrap();
        live.finish(vec![]).unwrap();
        assert_eq!(entries(dir.path()), ["out"]);
    }

    #[test]
    fn unwritable_parent_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, "").unwrap();
        let target = file.join("sub").join("out");
        let err = LayoutWriter::create(&target).unwrap_err();
        match &err {
            Error::CreateDir { path, .. } => assert_eq!(path, &file.join("sub")),
            other => panic!("unexpected error {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&file.join("sub").display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn finish_syncs_everything_but_blobs_known_to_be_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let writer = LayoutWriter::create(&dir.path().join("out")).unwrap();
        let (written, _) = writer.write_blob(b"config").unwrap();
        let (linked, _) = writer.write_blob(b"a store blob").unwrap();
        writer.durable(&linked);
        let root = writer.path().to_path_buf();
        assert_eq!(
            writer.to_sync().unwrap(),
            [
                writer.blob_path(&written),
                root.join("oci-layout"),
                root.join("index.json"),
                root.join("blobs/sha256"),
                root.join("blobs"),
                root.clone(),
            ]
        );
        writer.finish(vec![]).unwrap();
    }

    #[test]
    fn a_failed_sync_names_the_first_path_that_failed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let missing: Vec<PathBuf> = (0..20)
            .map(|i| dir.path().join(format!("m{i:02}")))
            .collect();
        sync_all_at_once(std::slice::from_ref(&file)).unwrap();
        let paths = [vec![file.clone()], missing.clone()].concat();
        match sync_all_at_once(&paths) {
            Err(Error::Sync { path, .. }) => assert_eq!(path, missing[0]),
            other => panic!("expected a sync error, got {other:?}"),
        }
    }

    #[test]
    fn import_blob_links_or_copies() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("blob");
        fs::write(&src, b"layer").unwrap();
        let digest = Digest::of(b"layer");
        let writer = LayoutWriter::create(&dir.path().join("out")).unwrap();
        writer.import_blob(&src, &digest.to_string()).unwrap();
        assert_eq!(fs::read(writer.blob_path(&digest)).unwrap(), b"layer");
        assert!(writer.import_blob(&src, "sha256:nope").is_err());
        let missing =
            writer.import_blob(&dir.path().join("missing"), &Digest::of(b"x").to_string());
        assert!(matches!(missing, Err(Error::ImportBlob { .. })));
    }

    /// A layout at `target` of one imported "store" blob and one written blob, indexed by one
    /// entry: what a build writes.
    fn build_into(target: &Path, store_blob: &Path) -> PathBuf {
        let writer = LayoutWriter::create(target).unwrap();
        let layer = Digest::of(&fs::read(store_blob).unwrap());
        writer.import_blob(store_blob, &layer.to_string()).unwrap();
        let (config, size) = writer.write_blob(b"{\"config\":1}").unwrap();
        let entry = descriptor(MediaType::ImageManifest, &config, size);
        writer.finish(vec![entry]).unwrap()
    }

    fn stat(path: &Path) -> (u64, std::time::SystemTime) {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::symlink_metadata(path).unwrap();
        (meta.ino(), meta.modified().unwrap())
    }

    #[test]
    fn an_output_that_is_already_the_same_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let store_blob = dir.path().join("layer");
        fs::write(&store_blob, b"layer bytes").unwrap();
        let target = dir.path().join("out");
        build_into(&target, &store_blob);
        let index = stat(&target.join("index.json"));
        let root = stat(&target);
        let config = Digest::of(b"{\"config\":1}");
        let config_blob = stat(&target.join("blobs/sha256").join(config.hex()));

        build_into(&target, &store_blob);
        assert_eq!(
            stat(&target.join("index.json")),
            index,
            "index.json rewritten"
        );
        assert_eq!(stat(&target).0, root.0, "the layout was swapped");
        assert_eq!(
            stat(&target.join("blobs/sha256").join(config.hex())),
            config_blob
        );
        assert_eq!(
            entries(dir.path()),
            ["layer", "out"],
            "temp dir left behind"
        );
    }

    #[test]
    fn an_output_someone_changed_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store_blob = dir.path().join("layer");
        fs::write(&store_blob, b"layer bytes").unwrap();
        let target = dir.path().join("out");
        build_into(&target, &store_blob);
        let blobs = target.join("blobs/sha256");
        let layer = blobs.join(Digest::of(b"layer bytes").hex());
        let config = blobs.join(Digest::of(b"{\"config\":1}").hex());
        let pristine: Vec<(String, Vec<u8>)> = [target.join("index.json"), layer.clone()]
            .iter()
            .chain([&config])
            .map(|p| (p.display().to_string(), fs::read(p).unwrap()))
            .collect();
        let rewritten = |what: &str| {
            let before = stat(&target).0;
            build_into(&target, &store_blob);
            assert_ne!(stat(&target).0, before, "{what}: not written again");
            for (path, bytes) in &pristine {
                assert_eq!(&fs::read(path).unwrap(), bytes, "{what}: {path}");
            }
            assert_eq!(entries(&blobs).len(), 2, "{what}");
        };

        // index.json edited.
        fs::write(target.join("index.json"), b"{}").unwrap();
        rewritten("index.json edited");
        // A blob removed.
        fs::remove_file(&config).unwrap();
        rewritten("a blob removed");
        // A blob replaced by another file of the same size and other bytes.
        fs::remove_file(&layer).unwrap();
        fs::write(&layer, b"LAYER BYTES").unwrap();
        rewritten("a blob's bytes changed");
        // A blob added.
        fs::write(blobs.join(Digest::of(b"extra").hex()), b"extra").unwrap();
        rewritten("a blob added");
        // A blob replaced by a copy of its bytes (another inode) is still the same layout.
        fs::remove_file(&layer).unwrap();
        fs::write(&layer, b"layer bytes").unwrap();
        let before = stat(&target).0;
        build_into(&target, &store_blob);
        assert_eq!(stat(&target).0, before, "same bytes: left as it is");
    }
}
