//! The stat index: host path + stat data -> blake3 content hash (see the module docs).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use super::keys::nanos;
use super::lock::lock_file;
use super::{write_atomic, Error, Store};

const MAGIC: &[u8; 8] = b"CIMGSIDX";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8;
const CHECKSUM_LEN: usize = 32;
/// Bytes of an entry besides its path: recorded, size, mtime, ctime, inode, dev (8 each),
/// mode (4), hash (32), path length (4).
const ENTRY_FIXED_LEN: usize = 6 * 8 + 4 + 32 + 4;

/// An entry is trusted only if the file's mtime is this much older than the entry.
const RACY_MARGIN_NS: i64 = 2_000_000_000;

/// Entries by path bytes. Paths are hashed with FxHash: loading 50,000 entries is dominated by
/// hashing their paths, and the keys are the user's own paths (no denial-of-service concern).
type Entries = HashMap<Box<[u8]>, StatEntry, BuildHasherDefault<FxHasher>>;

/// The hasher of rustc (`rustc-hash`), for byte strings: 8 bytes per step.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// When the reading of files whose hashes go into the index started
/// ([`StatIndex::reading_starts`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadStart(i64);

/// The stat data an entry is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStat {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
    dev: u64,
    mode: u32,
}

impl FileStat {
    fn of(meta: &Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            dev: meta.dev(),
            mode: meta.mode(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatEntry {
    stat: FileStat,
    /// When the entry was recorded (ns since the epoch), for the racy-git rule.
    recorded_ns: i64,
    hash: [u8; 32],
}

impl StatEntry {
    /// Whether the entry can be trusted for a file whose stat data is `stat` now.
    fn valid_for(&self, stat: &FileStat) -> bool {
        self.stat == *stat && self.stat.mtime_ns < self.recorded_ns.saturating_sub(RACY_MARGIN_NS)
    }
}

/// Host files' content hashes by path and stat data, so unchanged files are not re-read; see
/// the [module docs](super). Paths are absolute (relative ones are made absolute against the
/// current directory).
///
/// Lookups and inserts are in memory; [`save`](Self::save) writes the index back, merged with
/// what other processes saved meanwhile. To hash in parallel, wrap it in a mutex and hash
/// outside it: [`lookup`](Self::lookup), else [`hash_file`] and [`insert`](Self::insert).
#[derive(Debug, Default, Clone)]
pub struct StatIndex {
    entries: Entries,
    dirty: bool,
}

impl StatIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the store's stat index. A missing, truncated, corrupt or other-version index file
    /// loads as an empty index (everything is re-hashed once).
    pub fn load(store: &Store) -> Result<Self, Error> {
        let entries = read_index(&store.stat_index_path())?.unwrap_or_default();
        Ok(Self {
            entries,
            dirty: false,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The content hash of `path` if its entry matches `meta` (the file's metadata now) and is
    /// not racy; `None` means the file must be hashed.
    pub fn lookup(&self, path: &Path, meta: &Metadata) -> Option<[u8; 32]> {
        let path = absolute(path)?;
        let entry = self.entries.get(path.as_os_str().as_bytes())?;
        entry.valid_for(&FileStat::of(meta)).then_some(entry.hash)
    }

    /// Records that `path`, with metadata `meta`, has content hash `hash`. Call it right after
    /// hashing: the entry's recorded time (now) decides whether it is racy.
    pub fn insert(&mut self, path: &Path, meta: &Metadata, hash: [u8; 32]) {
        self.insert_at(path, meta, hash, now_ns());
    }

    /// Whether the index has an entry for `path`, whatever its stat data.
    pub fn has_path(&self, path: &Path) -> bool {
        absolute(path).is_some_and(|p| self.entries.contains_key(p.as_os_str().as_bytes()))
    }

    /// The time to give [`Self::insert_read_since`]: taken before a file is read.
    pub fn reading_starts() -> ReadStart {
        ReadStart(now_ns())
    }

    /// Records that `path`, with metadata `meta`, has content hash `hash`, read after `since`
    /// (the entry's recorded time, for the racy rule: a write during the read then has an mtime
    /// after it, and the entry is not trusted).
    pub fn insert_read_since(
        &mut self,
        path: &Path,
        meta: &Metadata,
        hash: [u8; 32],
        since: ReadStart,
    ) {
        self.insert_at(path, meta, hash, since.0);
    }

    fn insert_at(&mut self, path: &Path, meta: &Metadata, hash: [u8; 32], recorded_ns: i64) {
        let Some(path) = absolute(path) else {
            return;
        };
        let entry = StatEntry {
            stat: FileStat::of(meta),
            recorded_ns,
            hash,
        };
        let key = path.as_os_str().as_bytes();
        if self.entries.get(key) != Some(&entry) {
            self.entries.insert(key.into(), entry);
            self.dirty = true;
        }
    }

    /// The blake3 hash of `path`'s content: from the index when `meta` (its metadata now)
    /// matches a trusted entry, else read and hashed, and recorded.
    pub fn content_hash(&mut self, path: &Path, meta: &Metadata) -> io::Result<[u8; 32]> {
        if let Some(hash) = self.lookup(path, meta) {
            return Ok(hash);
        }
        // The recorded time is taken before reading: a write during hashing then always has an
        // mtime after it, and the entry is not trusted.
        let recorded_ns = now_ns();
        let hash = hash_file(path)?;
        self.insert_at(path, meta, hash, recorded_ns);
        Ok(hash)
    }

    /// Writes the index to the store, merged with the index on disk (entries other processes
    /// saved since this one was loaded are kept; for a path in both, the newer entry wins).
    /// Does nothing if nothing was inserted since the last load or save.
    pub fn save(&mut self, store: &Store) -> Result<(), Error> {
        if !self.dirty {
            return Ok(());
        }
        let path = store.stat_index_path();
        let _lock = lock_file(&store.locks_dir().join("stat-index.lock"), true)?;
        let mut merged = read_index(&path)?.unwrap_or_default();
        for (file, entry) in self.entries.drain() {
            match merged.entry(file) {
                Entry::Occupied(mut theirs) => {
                    if theirs.get().recorded_ns <= entry.recorded_ns {
                        theirs.insert(entry);
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(entry);
                }
            }
        }
        self.entries = merged;
        write_index(store, &self.entries)?;
        self.dirty = false;
        Ok(())
    }

    /// Drops the entries of paths that no longer exist and writes the index (no merge: the
    /// caller holds the store's exclusive lock, so no build is saving). Returns how many went.
    pub(crate) fn prune_missing(store: &Store) -> Result<usize, Error> {
        let path = store.stat_index_path();
        let _lock = lock_file(&store.locks_dir().join("stat-index.lock"), true)?;
        let Some(mut entries) = read_index(&path)? else {
            super::remove_if_exists(&path)?;
            return Ok(0);
        };
        let before = entries.len();
        entries.retain(|file, _| fs::symlink_metadata(std::ffi::OsStr::from_bytes(file)).is_ok());
        let removed = before - entries.len();
        if removed > 0 {
            write_index(store, &entries)?;
        }
        Ok(removed)
    }
}

/// The absolute, lexically normal form of `path` (borrowed when it already is): relative paths
/// are joined to the current directory, `.` and `..` folded. Folding `..` lexically is safe here:
/// an entry is only used if the file's inode, device and stat data match too.
fn absolute(path: &Path) -> Option<Cow<'_, Path>> {
    // An absolute path's components are never `.` (they are skipped), so it is normal when
    // none is `..`: checked on the bytes, as this runs once per file of every warm build.
    let normal = path.is_absolute()
        && !path
            .as_os_str()
            .as_bytes()
            .split(|&b| b == b'/')
            .any(|c| c == b"..");
    if normal {
        return Some(Cow::Borrowed(path));
    }
    let joined = std::path::absolute(path).ok()?;
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(Cow::Owned(out))
}

fn now_ns() -> i64 {
    match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// The blake3 hash of a file's content, streamed through a reused 1 MiB buffer per thread.
pub fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let mut file = File::open(path)?;
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.is_empty() {
            buf.resize(1 << 20, 0);
        }
        let mut hasher = blake3::Hasher::new();
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(*hasher.finalize().as_bytes())
    })
}

/// Reads the index file: `None` if it is missing or not a valid index of this format.
fn read_index(path: &Path) -> Result<Option<Entries>, Error> {
    match fs::read(path) {
        Ok(bytes) => Ok(decode(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::ReadStatIndex {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_index(store: &Store, entries: &Entries) -> Result<(), Error> {
    let path = store.stat_index_path();
    write_atomic(store.root(), &path, &encode(entries), None)
        .map_err(|source| Error::WriteStatIndex { path, source })
}

fn encode(entries: &Entries) -> Vec<u8> {
    let paths_len: usize = entries.keys().map(|p| p.len()).sum();
    let mut out =
        Vec::with_capacity(HEADER_LEN + entries.len() * ENTRY_FIXED_LEN + paths_len + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (path, entry) in entries {
        out.extend_from_slice(&entry.recorded_ns.to_le_bytes());
        out.extend_from_slice(&entry.stat.size.to_le_bytes());
        out.extend_from_slice(&entry.stat.mtime_ns.to_le_bytes());
        out.extend_from_slice(&entry.stat.ctime_ns.to_le_bytes());
        out.extend_from_slice(&entry.stat.inode.to_le_bytes());
        out.extend_from_slice(&entry.stat.dev.to_le_bytes());
        out.extend_from_slice(&entry.stat.mode.to_le_bytes());
        out.extend_from_slice(&entry.hash);
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
    }
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

/// Parses an index file; `None` on any inconsistency.
fn decode(bytes: &[u8]) -> Option<Entries> {
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return None;
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if blake3::hash(body).as_bytes() != checksum {
        return None;
    }
    let mut r = Cursor(body);
    if r.take(8)? != MAGIC || r.u32()? != FORMAT_VERSION {
        return None;
    }
    let count = usize::try_from(r.u64()?).ok()?;
    if count > r.0.len() / ENTRY_FIXED_LEN {
        return None;
    }
    let mut entries = Entries::with_capacity_and_hasher(count, Default::default());
    for _ in 0..count {
        let recorded_ns = r.i64()?;
        let stat = FileStat {
            size: r.u64()?,
            mtime_ns: r.i64()?,
            ctime_ns: r.i64()?,
            inode: r.u64()?,
            dev: r.u64()?,
            mode: r.u32()?,
        };
        let hash: [u8; 32] = r.take(32)?.try_into().ok()?;
        let len = r.u32()? as usize;
        let path: Box<[u8]> = r.take(len)?.into();
        entries.insert(
            path,
            StatEntry {
                stat,
                recorded_ns,
                hash,
            },
        );
    }
    r.0.is_empty().then_some(entries)
}

/// A little-endian reader over a byte slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}
