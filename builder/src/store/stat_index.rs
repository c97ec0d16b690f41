//! The stat index: host path + stat data -> blake3 content hash (see the module docs).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use hashbrown::HashTable;

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

/// The hash of a path in the index's table: rustc's FxHash (`rustc-hash`), 8 bytes per step.
/// Loading 50,000 entries is dominated by hashing their paths, and the keys are the user's own
/// paths (no denial-of-service concern).
fn fx(bytes: &[u8]) -> u64 {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let add = |state: u64, word: u64| (state.rotate_left(5) ^ word).wrapping_mul(SEED);
    let mut chunks = bytes.chunks_exact(8);
    let mut state = add(0, bytes.len() as u64);
    for chunk in &mut chunks {
        state = add(
            state,
            u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
        );
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    add(state, u64::from_le_bytes(tail))
}

/// A stat index loading on a thread of its own ([`StatIndex::load_in_background`]). Dropping it
/// waits for the load and drops its error.
#[derive(Debug)]
pub struct Loading(Option<std::thread::JoinHandle<Result<(), Error>>>);

impl Loading {
    /// Waits for the load; its error, if it failed. A panic of the loading thread goes on here.
    pub fn finish(mut self) -> Result<(), Error> {
        match self.0.take().map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(loaded)) => loaded,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
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
/// what other processes saved meanwhile. To hash in parallel, share it in a read-write lock
/// (lookups from several threads at once) and hash outside it: [`lookup`](Self::lookup), else
/// [`hash_file`] and [`insert`](Self::insert).
///
/// In memory the index is the bytes of the file it was loaded from, records appended for what
/// was inserted since, and a hash table of each path's live record by its offset: loading is a
/// read, a checksum and one pass over the records (no allocation per entry, as a warm build
/// loads ~50,000 of them to look each up once), and a lookup hashes the path and compares it
/// with its record's bytes.
#[derive(Default, Clone)]
pub struct StatIndex {
    /// Records back to back (after the header of the file they were loaded from, if any).
    records: Vec<u8>,
    /// The offset in `records` of each path's live record, by the hash of the path.
    table: HashTable<usize>,
    dirty: bool,
    /// The index file as this index last read or wrote it, so that
    /// [`merge_saved`](Self::merge_saved) reads it again only when another process saved.
    file: Option<FileId>,
}

/// What tells one index file from another: a save renames a new file over the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    inode: u64,
    size: u64,
    mtime_ns: i64,
}

impl FileId {
    fn of(meta: &Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            inode: meta.ino(),
            size: meta.len(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
        }
    }
}

impl std::fmt::Debug for StatIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatIndex")
            .field("entries", &self.table.len())
            .field("dirty", &self.dirty)
            .finish()
    }
}

impl StatIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the store's stat index. A missing, truncated, corrupt or other-version index file
    /// loads as an empty index (everything is re-hashed once).
    pub fn load(store: &Store) -> Result<Self, Error> {
        Ok(read_index(&store.stat_index_path())?.unwrap_or_default())
    }

    /// Starts [`load`](Self::load)ing the store's stat index on a thread of its own and
    /// returns it at once, so that the caller's work (a build's walk of its trees) goes on
    /// meanwhile. The loading thread holds the lock's write side until the index is in, so
    /// every reader and writer of the lock waits for it; [`Loading::finish`] waits too and
    /// gives the load's error (the lock then holds an empty index).
    pub fn load_in_background(store: &Store) -> (Arc<RwLock<StatIndex>>, Loading) {
        let index = Arc::new(RwLock::new(StatIndex::new()));
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (store, loading) = (store.clone(), index.clone());
        let thread = std::thread::spawn(move || {
            let mut guard = loading.write().unwrap_or_else(|p| p.into_inner());
            let _ = locked_tx.send(());
            *guard = StatIndex::load(&store)?;
            Ok(())
        });
        // Returns once the write side is taken (or the thread ended without taking it).
        let _ = locked_rx.recv();
        (index, Loading(Some(thread)))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the index has no entry.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The content hash of `path` if its entry matches `meta` (the file's metadata now) and is
    /// not racy; `None` means the file must be hashed.
    pub fn lookup(&self, path: &Path, meta: &Metadata) -> Option<[u8; 32]> {
        let path = absolute(path)?;
        let at = self.find(path.as_os_str().as_bytes())?;
        let entry = entry_at(&self.records, at);
        entry.valid_for(&FileStat::of(meta)).then_some(entry.hash)
    }

    /// Records that `path`, with metadata `meta`, has content hash `hash`. Call it right after
    /// hashing: the entry's recorded time (now) decides whether it is racy.
    pub fn insert(&mut self, path: &Path, meta: &Metadata, hash: [u8; 32]) {
        self.insert_at(path, meta, hash, now_ns());
    }

    /// Whether the index has an entry for `path`, whatever its stat data.
    pub fn has_path(&self, path: &Path) -> bool {
        absolute(path).is_some_and(|p| self.find(p.as_os_str().as_bytes()).is_some())
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
        if self.put(path.as_os_str().as_bytes(), &entry, |_| true) {
            self.dirty = true;
        }
    }

    /// The offset of the live record of `path` (absolute, normal), if there is one.
    fn find(&self, path: &[u8]) -> Option<usize> {
        let records = &self.records;
        self.table
            .find(fx(path), |&at| path_at(records, at) == path)
            .copied()
    }

    /// Makes `entry` the entry of `path` unless it already is, or the present one is kept
    /// because `replaces` says so of it; says whether the index changed. A replaced record
    /// stays in `records`, unreferenced (a save writes live records only).
    fn put(
        &mut self,
        path: &[u8],
        entry: &StatEntry,
        replaces: impl FnOnce(&StatEntry) -> bool,
    ) -> bool {
        let Self { records, table, .. } = self;
        let hash = fx(path);
        if let Some(at) = table.find_mut(hash, |&at| path_at(records, at) == path) {
            let present = entry_at(records, *at);
            if present == *entry || !replaces(&present) {
                return false;
            }
            *at = push_record(records, path, entry);
            return true;
        }
        let at = push_record(records, path, entry);
        table.insert_unique(hash, at, |&at| fx(path_at(records, at)));
        true
    }

    /// The offsets of the live records, in the order they are in `records` (the order they
    /// were loaded and inserted in: a save keeps the file in about the order a walk looks
    /// paths up, which keeps lookups near each other in memory).
    fn live(&self) -> Vec<usize> {
        let mut live: Vec<usize> = self.table.iter().copied().collect();
        live.sort_unstable();
        live
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
        for at in self.live() {
            let entry = entry_at(&self.records, at);
            merged.put(path_at(&self.records, at), &entry, |theirs| {
                theirs.recorded_ns <= entry.recorded_ns
            });
        }
        // `merged` is clean: `read_index` builds it so and `put` does not dirty it.
        *self = merged;
        write_index(store, &self.records, &self.live())?;
        // Still under the lock: the file is the one just written.
        self.file = fs::metadata(&path).ok().map(|m| FileId::of(&m));
        Ok(())
    }

    /// Takes in what other processes saved since this index last read or wrote the store's
    /// index file (for a path in both, the newer entry wins), when the file is another one
    /// now; a `stat` when it is not. What this index holds that is not saved stays unsaved.
    pub fn merge_saved(&mut self, store: &Store) -> Result<(), Error> {
        let path = store.stat_index_path();
        let now = match fs::metadata(&path) {
            Ok(meta) => FileId::of(&meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(Error::ReadStatIndex { path, source }),
        };
        if self.file == Some(now) {
            return Ok(());
        }
        let Some(saved) = read_index(&path)? else {
            return Ok(());
        };
        for at in saved.live() {
            let entry = entry_at(&saved.records, at);
            self.put(path_at(&saved.records, at), &entry, |ours| {
                ours.recorded_ns < entry.recorded_ns
            });
        }
        self.file = saved.file;
        Ok(())
    }

    /// Drops the entries of paths that no longer exist and writes the index (no merge: the
    /// caller holds the store's exclusive lock, so no build is saving). Returns how many went.
    pub(crate) fn prune_missing(store: &Store) -> Result<usize, Error> {
        let path = store.stat_index_path();
        let _lock = lock_file(&store.locks_dir().join("stat-index.lock"), true)?;
        let Some(index) = read_index(&path)? else {
            super::remove_if_exists(&path)?;
            return Ok(0);
        };
        let mut live = index.live();
        let before = live.len();
        live.retain(|&at| {
            fs::symlink_metadata(std::ffi::OsStr::from_bytes(path_at(&index.records, at))).is_ok()
        });
        let removed = before - live.len();
        if removed > 0 {
            write_index(store, &index.records, &live)?;
        }
        Ok(removed)
    }
}

/// The absolute, lexically normal form of `path` (borrowed when it already is): relative paths
/// are joined to the current directory, `.` and `..` folded. Folding `..` lexically is safe here:
/// an entry is only used if the file's inode, device and stat data match too.
fn absolute(path: &Path) -> Option<Cow<'_, Path>> {
    // An absolute path's components are never `.` (they are skipped), so it is normal when
    // none is `..`: checked on the bytes, as this runs once per file of every warm build
    // (`memchr` finds the dots, a few per path, many bytes at a time).
    let bytes = path.as_os_str().as_bytes();
    let normal = path.is_absolute()
        && !memchr::memchr_iter(b'.', bytes).any(|at| {
            at > 0
                && bytes[at - 1] == b'/'
                && bytes.get(at + 1) == Some(&b'.')
                && matches!(bytes.get(at + 2), None | Some(b'/'))
        });
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
/// The index remembers which file it read ([`FileId`], from the descriptor it read).
fn read_index(path: &Path) -> Result<Option<StatIndex>, Error> {
    let read = || -> io::Result<(Vec<u8>, FileId)> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes)?;
        Ok((bytes, FileId::of(&meta)))
    };
    match read() {
        Ok((bytes, id)) => Ok(decode(bytes).map(|index| StatIndex {
            file: Some(id),
            ..index
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::ReadStatIndex {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the records of `records` at offsets `live` as the store's index file.
fn write_index(store: &Store, records: &[u8], live: &[usize]) -> Result<(), Error> {
    let path = store.stat_index_path();
    write_atomic(store.root(), &path, &encode(records, live), None)
        .map_err(|source| Error::WriteStatIndex { path, source })
}

/// The index file of the records of `records` at offsets `live`, in that order.
fn encode(records: &[u8], live: &[usize]) -> Vec<u8> {
    let len = |at: usize| ENTRY_FIXED_LEN + path_at(records, at).len();
    let body: usize = live.iter().map(|&at| len(at)).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(live.len() as u64).to_le_bytes());
    for &at in live {
        out.extend_from_slice(&records[at..at + len(at)]);
    }
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

/// Appends the record of `path` and `entry` to `records`; returns its offset.
fn push_record(records: &mut Vec<u8>, path: &[u8], entry: &StatEntry) -> usize {
    let at = records.len();
    records.reserve(ENTRY_FIXED_LEN + path.len());
    records.extend_from_slice(&entry.recorded_ns.to_le_bytes());
    records.extend_from_slice(&entry.stat.size.to_le_bytes());
    records.extend_from_slice(&entry.stat.mtime_ns.to_le_bytes());
    records.extend_from_slice(&entry.stat.ctime_ns.to_le_bytes());
    records.extend_from_slice(&entry.stat.inode.to_le_bytes());
    records.extend_from_slice(&entry.stat.dev.to_le_bytes());
    records.extend_from_slice(&entry.stat.mode.to_le_bytes());
    records.extend_from_slice(&entry.hash);
    records.extend_from_slice(&(path.len() as u32).to_le_bytes());
    records.extend_from_slice(path);
    at
}

/// The entry of the record at `at` (a record `decode` checked or `push_record` wrote).
fn entry_at(records: &[u8], at: usize) -> StatEntry {
    let mut r = Cursor(&records[at..]);
    let (entry, _) = read_record(&mut r).expect("a checked record");
    entry
}

/// The path of the record at `at` (a record `decode` checked or `push_record` wrote).
fn path_at(records: &[u8], at: usize) -> &[u8] {
    let len_at = at + ENTRY_FIXED_LEN - 4;
    let len = u32::from_le_bytes(records[len_at..len_at + 4].try_into().expect("4 bytes"));
    &records[at + ENTRY_FIXED_LEN..at + ENTRY_FIXED_LEN + len as usize]
}

/// Reads one record: its entry and path; `None` if `r` ends before it does.
fn read_record<'a>(r: &mut Cursor<'a>) -> Option<(StatEntry, &'a [u8])> {
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
    let path = r.take(len)?;
    let entry = StatEntry {
        stat,
        recorded_ns,
        hash,
    };
    Some((entry, path))
}

/// Parses an index file into an index over its bytes; `None` on any inconsistency.
fn decode(mut bytes: Vec<u8>) -> Option<StatIndex> {
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return None;
    }
    let body_len = bytes.len() - CHECKSUM_LEN;
    let (body, checksum) = bytes.split_at(body_len);
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
    let mut table = HashTable::with_capacity(count);
    for _ in 0..count {
        let at = body_len - r.0.len();
        let (_, path) = read_record(&mut r)?;
        let hash = fx(path);
        // A path twice (never written so, but possible): the later record is the entry.
        match table.find_mut(hash, |&other| path_at(body, other) == path) {
            Some(other) => *other = at,
            None => {
                table.insert_unique(hash, at, |&other| fx(path_at(body, other)));
            }
        }
    }
    if !r.0.is_empty() {
        return None;
    }
    bytes.truncate(body_len);
    Some(StatIndex {
        records: bytes,
        table,
        dirty: false,
        file: None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_borrowed_unless_a_component_is_dot_dot_or_it_is_relative() {
        for normal in ["/a/b", "/a/..b", "/a/b..", "/a/.../b", "/a/.b/.", "/..a"] {
            let got = absolute(Path::new(normal)).unwrap();
            assert!(matches!(got, Cow::Borrowed(_)), "{normal} -> {got:?}");
        }
        for (path, folded) in [
            ("/a/../b", "/b"),
            ("/a/b/..", "/a"),
            ("/..", "/"),
            ("/a/..", "/"),
        ] {
            let got = absolute(Path::new(path)).unwrap();
            assert!(matches!(got, Cow::Owned(_)), "{path} -> {got:?}");
            assert_eq!(got, Path::new(folded), "{path}");
        }
        let relative = absolute(Path::new("x/../y")).unwrap();
        assert_eq!(relative, std::env::current_dir().unwrap().join("y"));
    }

    fn entry(hash: u8) -> StatEntry {
        StatEntry {
            stat: FileStat {
                size: 1,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: 7,
                dev: 8,
                mode: 0o100644,
            },
            recorded_ns: 1,
            hash: [hash; 32],
        }
    }

    #[test]
    fn a_path_recorded_twice_in_a_file_loads_as_its_later_record() {
        let mut records = Vec::new();
        let first = push_record(&mut records, b"/a", &entry(1));
        let other = push_record(&mut records, b"/b", &entry(2));
        let again = push_record(&mut records, b"/a", &entry(3));
        let index = decode(encode(&records, &[first, other, again])).expect("a valid index");
        assert_eq!(index.len(), 2);
        let at = index.find(b"/a").expect("/a is in the index");
        assert_eq!(entry_at(&index.records, at), entry(3));
        assert_eq!(path_at(&index.records, at), b"/a");
        let at = index.find(b"/b").expect("/b is in the index");
        assert_eq!(entry_at(&index.records, at), entry(2));
        // Saved again, only the live records are written.
        let live = index.live();
        assert_eq!(live.len(), 2);
        let once = decode(encode(&index.records, &live)).expect("a valid index");
        assert_eq!(once.len(), 2);
    }

    #[test]
    fn a_record_cut_short_or_a_count_too_large_loads_nothing() {
        let mut records = Vec::new();
        let at = push_record(&mut records, b"/some/path", &entry(1));
        let good = encode(&records, &[at]);
        assert!(decode(good.clone()).is_some());
        // The count says two records: the file ends after the first.
        let mut two = good[..good.len() - CHECKSUM_LEN].to_vec();
        two[12..20].copy_from_slice(&2u64.to_le_bytes());
        let checksum = blake3::hash(&two);
        two.extend_from_slice(checksum.as_bytes());
        assert!(decode(two).is_none());
        // A path length past the end of the file.
        let mut long = good[..good.len() - CHECKSUM_LEN].to_vec();
        let len_at = HEADER_LEN + ENTRY_FIXED_LEN - 4;
        long[len_at..len_at + 4].copy_from_slice(&1000u32.to_le_bytes());
        let checksum = blake3::hash(&long);
        long.extend_from_slice(checksum.as_bytes());
        assert!(decode(long).is_none());
    }
}
