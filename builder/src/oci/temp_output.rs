//! Temporary outputs beside their destination, and the leftovers of builds that were killed.
//!
//! Every sink writes under a temporary name in its destination's directory (same filesystem, so
//! the final rename is atomic) and removes that temporary name when it fails or is dropped. A
//! build killed with SIGKILL (or by a power cut) cannot: its temporary output, up to the size of
//! the image, stays. The next build to the same place, and `cargo image cache prune` for the
//! default output directory, remove such leftovers with [`remove_leftovers`], but only those
//! that are provably dead, since a concurrent build to the same place may be writing its own:
//!
//! - each writer holds a shared `flock` on its temporary output (a directory or a file) for the
//!   output's whole life ([`TempDirBeside`], [`lock_file`]); the kernel drops the lock when the
//!   process dies, whatever killed it;
//! - creating a temporary output and locking it happen under a shared `flock` of the directory
//!   that holds it, and a clean-up holds that directory's exclusive lock, so a clean-up never
//!   sees a temporary output between its creation and its lock;
//! - a clean-up removes a leftover only if it gets the exclusive lock of that leftover, and it
//!   never waits for a lock: a directory or leftover somebody holds is skipped (left to a later
//!   clean-up). Holders only ever take shared locks, so a build never waits for itself (an
//!   archive's layout is written inside its locked temporary directory).
//!
//! The names: `.<destination name>.tmp-XXXXXX` for a layout directory or an archive file being
//! written; scratch directories are `.cargo-image-archive-XXXXXX` for the layout an archive is
//! made from, `.cargo-image-base-XXXXXX` for an archive base unpacked beside the store, and
//! `.cargo-image-stage-XXXXXX` for a stage's filesystem opened in the store,
//! `.cargo-image-import-XXXXXX` for the compressed archives and `.deb` files a build decompresses
//! in the store while it writes layers (`XXXXXX`: six
//! random letters and digits). Scratch directories are made with [`scratch_dir`], which first
//! removes the dead ones of its kind in the same directory.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The prefix of the temporary directory an archive's layout is written in.
pub(super) const ARCHIVE_SCRATCH_PREFIX: &str = ".cargo-image-archive-";

/// What a scratch directory made by [`scratch_dir`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scratch {
    /// An `oci-archive:` or `docker-archive:` base, unpacked.
    Base,
    /// A stage's merged filesystem, opened for `from-stage` copies.
    Stage,
    /// The archive `--load` hands to a container engine.
    Load,
    /// The layout of a build that only pushes (`--no-output`).
    Push,
    /// Compressed `tar` sources and `.deb` data decompressed while layers are written.
    Import,
}

impl Scratch {
    const fn prefix(self) -> &'static str {
        match self {
            Scratch::Base => ".cargo-image-base-",
            Scratch::Stage => ".cargo-image-stage-",
            Scratch::Load => ".cargo-image-load-",
            Scratch::Push => ".cargo-image-push-",
            Scratch::Import => ".cargo-image-import-",
        }
    }
}

/// Every scratch prefix: names starting with one of them (and [`RANDOM_LEN`] random characters)
/// are ours wherever they are.
pub const SCRATCH_PREFIXES: [&str; 6] = [
    ARCHIVE_SCRATCH_PREFIX,
    Scratch::Base.prefix(),
    Scratch::Stage.prefix(),
    Scratch::Load.prefix(),
    Scratch::Push.prefix(),
    Scratch::Import.prefix(),
];
/// How many random characters (ASCII letters and digits) `tempfile` appends to a prefix.
pub const RANDOM_LEN: usize = 6;

/// A temporary directory beside a destination, locked for its whole life; removed when dropped
/// (unless `keep` took it over).
#[derive(Debug)]
pub struct TempDirBeside {
    // Dropped first: the directory is removed while still locked.
    dir: TempDir,
    _lock: File,
}

impl TempDirBeside {
    /// Creates `<parent>/<prefix>XXXXXX` and locks it. `parent` must exist.
    pub(super) fn create(parent: &Path, prefix: &OsStr) -> io::Result<Self> {
        with_dir_shared(parent, || {
            let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
            let lock = File::open(dir.path())?;
            lock.lock_shared()?;
            Ok(Self { dir, _lock: lock })
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Removes the directory (and what it holds) now.
    pub(super) fn close(self) -> io::Result<()> {
        self.dir.close()
    }

    /// Stops removing the directory on drop (it was renamed to become an output).
    pub(super) fn keep(self) {
        let _ = self.dir.keep();
    }
}

/// A locked scratch directory `<parent>/<prefix of kind>XXXXXX`, removed when dropped, after
/// removing the dead scratch directories a killed build left in `parent`. Creates `parent`.
pub fn scratch_dir(parent: &Path, kind: Scratch) -> io::Result<TempDirBeside> {
    fs::create_dir_all(parent)?;
    remove_dead(parent, |name| scratch_name(name).is_some());
    TempDirBeside::create(parent, OsStr::new(kind.prefix()))
}

/// Creates a temporary file `<parent>/<prefix>XXXXXX` (removed when dropped) and locks it; the
/// lock lasts as long as the returned handle or a clone of its file stays open.
pub(super) fn create_locked_file(
    parent: &Path,
    prefix: &OsStr,
) -> io::Result<tempfile::NamedTempFile> {
    with_dir_shared(parent, || {
        let file = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(parent)?;
        file.as_file().lock_shared()?;
        Ok(file)
    })
}

/// The prefix of the temporary names of the output `name`: `.<name>.tmp-` (followed by
/// [`RANDOM_LEN`] random characters, in the output's directory).
pub fn temp_prefix(name: &OsStr) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".tmp-");
    prefix
}

/// Runs `f` holding a shared lock of directory `dir`: clean-ups (which take it exclusively)
/// wait meanwhile. Without the lock (a directory that cannot be opened) `f` still runs.
fn with_dir_shared<T>(dir: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let guard = File::open(dir).and_then(|d| d.lock_shared().map(|()| d));
    let result = f();
    drop(guard);
    result
}

/// What [`remove_leftovers`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemovedLeftovers {
    /// Number of temporary outputs removed.
    pub count: u64,
    /// Their size in bytes.
    pub bytes: u64,
}

/// Removes the dead temporary outputs in `dir` (see the module docs): those of the output
/// `name` (`.<name>.tmp-XXXXXX`), or of any output when `name` is `None`, and scratch
/// directories (`.cargo-image-archive-XXXXXX`, ...). Best effort, never fails: what cannot be
/// removed now (still locked by a live build, or not removable) stays for a later clean-up.
pub fn remove_leftovers(dir: &Path, name: Option<&OsStr>) -> RemovedLeftovers {
    remove_dead(dir, |file_name| is_leftover_name(file_name, name))
}

/// Removes the dead scratch directories in `dir` only (names no user picks by chance), for
/// directories that may hold other files named like temporary outputs (a store's parent).
pub fn remove_scratch_leftovers(dir: &Path) -> RemovedLeftovers {
    remove_dead(dir, |file_name| scratch_name(file_name).is_some())
}

/// Removes the entries of `dir` whose names `is_ours` and that nobody holds locked.
fn remove_dead(dir: &Path, is_ours: impl Fn(&OsStr) -> bool) -> RemovedLeftovers {
    let mut removed = RemovedLeftovers::default();
    let Ok(guard) = File::open(dir) else {
        return removed;
    };
    // A creation under way, or `dir` is itself a live temporary output: clean up another time.
    if guard.try_lock().is_err() {
        return removed;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.filter_map(Result::ok) {
        if !is_ours(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        // Held by a live writer: not a leftover.
        let Ok(lock) = File::open(&path) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue;
        }
        let bytes = if meta.is_dir() {
            tree_size(&path)
        } else {
            meta.len()
        };
        let gone = if meta.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed.count += 1;
            removed.bytes += bytes;
        }
    }
    removed
}

/// Whether `file_name` is a temporary output name of the output `name` (any output if `None`)
/// or of an archive's layout.
fn is_leftover_name(file_name: &OsStr, name: Option<&OsStr>) -> bool {
    let Some(file_name) = file_name.to_str() else {
        // Temporary names of outputs with non-UTF-8 names are only matched by exact name.
        return name.is_some_and(|n| {
            let prefix = temp_prefix(n);
            let (f, p) = (file_name.as_encoded_bytes(), prefix.as_encoded_bytes());
            f.len() == p.len() + RANDOM_LEN && f.starts_with(p)
        });
    };
    if scratch_name(OsStr::new(file_name)).is_some() {
        return true;
    }
    match name {
        Some(name) => temp_prefix(name)
            .to_str()
            .and_then(|p| file_name.strip_prefix(p))
            .is_some_and(random),
        None => file_name
            .strip_prefix('.')
            .and_then(|f| f.rsplit_once(".tmp-"))
            .is_some_and(|(output, rest)| !output.is_empty() && random(rest)),
    }
}

/// Whether `rest` is what `tempfile` appends to a prefix: six letters and digits.
fn random(rest: &str) -> bool {
    rest.len() == RANDOM_LEN && rest.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The scratch prefix `file_name` is made of, if it is a scratch directory's name.
fn scratch_name(file_name: &OsStr) -> Option<&'static str> {
    let file_name = file_name.to_str()?;
    SCRATCH_PREFIXES
        .into_iter()
        .find(|prefix| file_name.strip_prefix(prefix).is_some_and(random))
}

/// The bytes of the files under `dir` (best effort).
fn tree_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// What is at an output path: its metadata (of a link itself, not followed), or `None` if
/// nothing is there (also when a parent is a file: creating the parent reports that clearly).
pub(super) fn existing(path: &Path) -> io::Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The directory that holds `path` (`.` for a bare relative name).
pub(super) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The names in `dir`, sorted (the oci module's tests share it).
    pub(in crate::oci) fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn leftover_names_are_temporary_outputs_only() {
        let out = Some(OsStr::new("out"));
        assert!(is_leftover_name(OsStr::new(".out.tmp-a1B2c3"), out));
        assert!(is_leftover_name(
            OsStr::new(".cargo-image-archive-a1B2c3"),
            out
        ));
        assert!(is_leftover_name(OsStr::new(".image.tar.tmp-a1B2c3"), None));
        assert!(!is_leftover_name(OsStr::new(".image.tar.tmp-a1B2c3"), out));
        assert!(!is_leftover_name(OsStr::new(".out.tmp-a1B2c3d"), out));
        assert!(!is_leftover_name(OsStr::new(".out.tmp-a1B2c"), out));
        assert!(!is_leftover_name(OsStr::new("out.tmp-a1B2c3"), None));
        assert!(!is_leftover_name(OsStr::new("..tmp-a1B2c3"), None));
        assert!(!is_leftover_name(OsStr::new(".store"), None));
        assert!(!is_leftover_name(OsStr::new("notes.txt"), None));
        for scratch in [".cargo-image-base-a1B2c3", ".cargo-image-stage-a1B2c3"] {
            assert!(is_leftover_name(OsStr::new(scratch), out));
            assert!(scratch_name(OsStr::new(scratch)).is_some());
        }
        assert!(scratch_name(OsStr::new(".out.tmp-a1B2c3")).is_none());
        assert!(scratch_name(OsStr::new(".cargo-image-base-a1B2c3d")).is_none());
    }

    #[test]
    fn a_scratch_directory_removes_the_dead_ones_of_killed_builds_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(".cargo-image-base-dead01/blobs")).unwrap();
        fs::create_dir(dir.path().join(".cargo-image-stage-dead02")).unwrap();
        fs::create_dir(dir.path().join(".out.tmp-notmin")).unwrap();
        let live = scratch_dir(dir.path(), Scratch::Stage).unwrap();
        let other = scratch_dir(dir.path(), Scratch::Base).unwrap();
        let mut expected = vec![
            ".out.tmp-notmin".to_string(),
            live.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            other
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        ];
        expected.sort();
        // The live one is kept by the second call; the output-like name is not a scratch name.
        assert_eq!(names(dir.path()), expected);
        assert_eq!(
            remove_scratch_leftovers(dir.path()),
            RemovedLeftovers::default()
        );
        drop((live, other));
        assert_eq!(names(dir.path()), [".out.tmp-notmin"]);
    }

    #[test]
    fn removes_dead_temporary_outputs_and_keeps_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        // Dead: as a killed build leaves them (nobody holds their lock).
        let dead_dir = dir.path().join(".out.tmp-dead01");
        fs::create_dir_all(dead_dir.join("blobs")).unwrap();
        fs::write(dead_dir.join("blobs/x"), [0u8; 100]).unwrap();
        fs::write(dir.path().join(".out.tar.tmp-dead02"), [0u8; 10]).unwrap();
        fs::create_dir(dir.path().join(".cargo-image-archive-dead03")).unwrap();
        // Live: held by this process.
        let live_dir = TempDirBeside::create(dir.path(), OsStr::new(".out.tmp-")).unwrap();
        let live_file = create_locked_file(dir.path(), OsStr::new(".out.tar.tmp-")).unwrap();
        // Not ours.
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();

        let removed = remove_leftovers(dir.path(), None);
        assert_eq!(
            removed,
            RemovedLeftovers {
                count: 3,
                bytes: 110
            }
        );
        let mut expected = vec![
            live_dir
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            live_file
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            "notes.txt".to_string(),
        ];
        expected.sort();
        assert_eq!(names(dir.path()), expected);

        drop((live_dir, live_file));
        assert_eq!(names(dir.path()), ["notes.txt"]);
    }

    #[test]
    fn a_clean_up_inside_a_live_temporary_directory_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let scratch =
            TempDirBeside::create(dir.path(), OsStr::new(ARCHIVE_SCRATCH_PREFIX)).unwrap();
        fs::write(scratch.path().join(".layout.tmp-dead01"), "x").unwrap();
        // Does not wait for itself, and leaves the directory to its owner.
        assert_eq!(
            remove_leftovers(scratch.path(), None),
            RemovedLeftovers::default()
        );
        // A temporary output can still be made inside it.
        TempDirBeside::create(scratch.path(), OsStr::new(".layout.tmp-")).unwrap();
    }
}
