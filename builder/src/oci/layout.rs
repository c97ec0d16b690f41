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
//! The target is only ever replaced when it is an OCI layout already or an empty directory: a
//! user's unrelated directory given as `--output` by mistake is refused, never deleted.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, MediaType};
use serde::Serialize;
use tempfile::TempDir;

use super::model::{descriptor, image_index, Digest};
use super::{to_canonical_json, Error};

/// The content of the `oci-layout` file.
pub const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout being written; see the module docs.
#[derive(Debug)]
pub struct LayoutWriter {
    target: PathBuf,
    tmp: TempDir,
    blobs: PathBuf,
}

impl LayoutWriter {
    /// Starts a layout that [`finish`](Self::finish) will move to `target`. Creates `target`'s
    /// parent directories if needed, and a temporary directory beside `target`. Fails early
    /// if `target` exists and is neither an OCI layout nor an empty directory.
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
        let mut prefix = OsString::from(".");
        prefix.push(&name);
        prefix.push(".tmp-");
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)
            .map_err(|source| Error::CreateDir {
                path: parent.clone(),
                source,
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

    /// Writes `bytes` as a blob (temp file, fsync, rename) and returns its digest and size.
    /// Writing a blob that is already there is a no-op.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<(Digest, u64), Error> {
        let digest = Digest::of(bytes);
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            let write_err = |source| Error::WriteBlob {
                path: dest.clone(),
                source,
            };
            let mut file = tempfile::Builder::new()
                .prefix(".blob-")
                .tempfile_in(&self.blobs)
                .map_err(write_err)?;
            file.write_all(bytes).map_err(write_err)?;
            file.as_file().sync_all().map_err(write_err)?;
            file.persist(&dest).map_err(|e| write_err(e.error))?;
        }
        Ok((digest, bytes.len() as u64))
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
    /// when possible, else copied (temp file, fsync, rename). Verifies nothing: the source's
    /// reader verifies its blobs. A blob already present is left alone.
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
        file.as_file().sync_all().map_err(import_err)?;
        file.persist(&dest).map_err(|e| import_err(e.error))?;
        Ok(())
    }

    /// Completes the layout: writes `oci-layout` and a canonical `index.json` listing
    /// `index_entries`, fsyncs every file and directory, then replaces the target with it
    /// atomically. Returns the target path.
    ///
    /// The target must not exist, or be an OCI layout, or be an empty directory; anything else
    /// is refused and left as it was (and this layout is discarded).
    pub fn finish(self, index_entries: Vec<Descriptor>) -> Result<PathBuf, Error> {
        let root = self.tmp.path();
        write_synced(&root.join("oci-layout"), OCI_LAYOUT_FILE)?;
        let index = to_canonical_json(&image_index(index_entries))?;
        write_synced(&root.join("index.json"), &index)?;

        // Blobs streamed in by other writers, or copied: make sure they are on disk.
        let entries = fs::read_dir(&self.blobs).map_err(|source| Error::Sync {
            path: self.blobs.clone(),
            source,
        })?;
        for entry in entries {
            let path = entry
                .map_err(|source| Error::Sync {
                    path: self.blobs.clone(),
                    source,
                })?
                .path();
            sync_path(&path)?;
        }
        sync_path(&self.blobs)?;
        sync_path(&root.join("blobs"))?;
        sync_path(root)?;

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
                        let _ = self.tmp.keep();
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

/// Whether a rename onto a missing target failed because the target exists now.
fn target_appeared(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
    )
}

/// The directory that holds `path` (`.` for a bare relative name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What is at a layout's target before it is replaced.
enum Existing {
    Nothing,
    /// An OCI layout or an empty directory.
    Replaceable,
}

fn check_replaceable(target: &Path) -> Result<Existing, Error> {
    let refuse = |what: &'static str| Error::RefuseReplace {
        path: target.to_path_buf(),
        what,
    };
    let meta = match fs::symlink_metadata(target) {
        Ok(meta) => meta,
        // NotADirectory: a parent is a file; creating the parent reports that clearly.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Existing::Nothing)
        }
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
    if fs::symlink_metadata(target.join("oci-layout")).is_ok_and(|m| m.is_file()) {
        return Ok(Existing::Replaceable);
    }
    let mut entries = fs::read_dir(target).map_err(|source| Error::ReplaceOutput {
        path: target.to_path_buf(),
        source,
    })?;
    if entries.next().is_none() {
        Ok(Existing::Replaceable)
    } else {
        Err(refuse("is a directory that is not an OCI image layout"))
    }
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

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |source| Error::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::create(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
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

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

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
}
