//! Git's index as a stat cache: the object id of a checked-out file, known without reading it.
//!
//! # Why
//! A CI machine's sources are a fresh git checkout, and the clone wrote `.git/index`: for every
//! tracked path, the stat data of the file it checked out and the id of the blob it came from.
//! When a file's stat data still matches its entry, its content is that blob (this is how
//! `git status` avoids reading unchanged files). The remote layer cache uses it to key a layer
//! by its files' blob ids (an *alias key*, see `plan`'s module docs and the cache record format
//! in `registry/client/cache.rs`), so a new machine finds a layer another machine built without
//! reading and hashing the layer's inputs.
//!
//! # Brief overview
//! [`GitIndex::discover`] finds the repository of a directory (a `.git` directory, or a `.git`
//! file pointing to a worktree's git directory), reads its object format (`sha1`, or `sha256`
//! with `extensions.objectFormat`) and parses its index: versions 2, 3 and 4 (prefix-compressed
//! paths), with its trailing checksum verified (SHA-1 through the collision-detecting `SHA-1DC`
//! of `sha1-checked`, as git computes it, or SHA-256). [`GitIndex::clean_id`] answers for one
//! file and its `lstat`: the blob id when the file is *clean*, `None` when anything is in doubt.
//!
//! # When a file is clean
//! Only when all of these hold (anything else: `None`, and the caller reads the file):
//! - the path (below the worktree, `/`-separated) has a stage-0 entry of a regular file
//!   (`100644`/`100755`; not a symlink, a submodule, a sparse directory) and the file is a
//!   regular file now;
//! - the entry is not flagged assume-unchanged, skip-worktree or intent-to-add (git then keeps
//!   no stat data or no blob for the file's content);
//! - mtime and ctime (seconds and nanoseconds), inode, uid, gid and size (git keeps the low 32
//!   bits of those) match the file's `lstat` now: a write, a `touch`, a rename over it, a
//!   `chmod` all move one of them;
//! - the entry is not *racy*: its mtime is strictly before the index file's mtime. A file
//!   written again in the same timestamp tick as git's look at it keeps its mtime; git's rule
//!   (Documentation/technical/racy-git.txt) is that only an entry older than the index that
//!   recorded it is trusted. [`GitIndex::id`] reads a racy file and computes its blob id
//!   ([`blob_id`]), as git re-reads it: a fresh clone's last files share the index's tick.
//!
//! # What the blob id says, and what it does not
//! A blob id names the *clean* content (what `git add` stored), which is the file's bytes
//! unless a conversion applies at checkout. End-of-line conversion (`core.autocrlf`, `text`,
//! `eol`) only inserts `\r` before `\n`, so it always changes the size when it changes the
//! bytes; the alias key covers the file's size, so a converted checkout never shares an alias
//! with an unconverted one. Conversions that can keep the size (`filter` drivers such as LFS,
//! `ident`, `working-tree-encoding`) are refused: an index whose repository has a
//! `.gitattributes` file, an `info/attributes` file or a user or system attributes file that
//! names any of them is not used at all ([`Error::Conversions`]), nor is one whose config sets
//! `core.attributesFile` or `core.worktree`, or that is a split index (`link` extension).
//!
//! Blob ids are SHA-1 in most repositories. The ids in the index were computed by git, which
//! has detected SHA-1 collision attacks (SHA-1DC) when hashing objects since 2.13; every SHA-1
//! this module computes (a racy file's blob id, the index checksum) uses the same detection
//! (`sha1-checked`), and a detected attack is never an id.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

/// The object format of a repository: how long its object ids are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectFormat {
    Sha1,
    Sha256,
}

impl ObjectFormat {
    /// The name git gives it (`extensions.objectFormat`).
    pub fn name(self) -> &'static str {
        match self {
            ObjectFormat::Sha1 => "sha1",
            ObjectFormat::Sha256 => "sha256",
        }
    }

    /// The length of an object id in bytes.
    pub fn id_len(self) -> usize {
        match self {
            ObjectFormat::Sha1 => 20,
            ObjectFormat::Sha256 => 32,
        }
    }
}

/// A git object id (the bytes, not hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub format: ObjectFormat,
    bytes: [u8; 32],
}

impl ObjectId {
    /// The id's bytes (20 or 32 of them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.format.id_len()]
    }

    /// The id as lower-case hex, as git prints it.
    pub fn hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

/// Why a repository's index cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{}` is not a git index cargo-image can read: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("`{}`'s checksum does not match its content (a damaged or half-written index)", path.display())]
    Checksum { path: PathBuf },
    #[error("`{}`'s checksum hit a SHA-1 collision attack (SHA-1DC)", path.display())]
    Collision { path: PathBuf },
    #[error("the repository's object format `{format}` is unknown (in `{}`)", path.display())]
    ObjectFormat { path: PathBuf, format: String },
    #[error("`{}` may convert file contents at checkout ({what}): blob ids do not name the files' bytes", path.display())]
    Conversions { path: PathBuf, what: String },
    #[error("`{}` is a split index (`core.splitIndex`): not read", path.display())]
    SplitIndex { path: PathBuf },
}

/// One stage-0 entry: its stat data as git recorded it and its blob id.
#[derive(Debug, Clone)]
struct Entry {
    ctime: (u32, u32),
    mtime: (u32, u32),
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u32,
    id: ObjectId,
    /// assume-unchanged, skip-worktree or intent-to-add.
    untrusted: bool,
}

/// A repository's index, parsed (see the module docs).
#[derive(Debug)]
pub struct GitIndex {
    /// The canonical worktree directory.
    worktree: PathBuf,
    format: ObjectFormat,
    /// mtime of the index file, ns since the epoch: entries not older are racy.
    index_mtime: (i64, i64),
    entries: Entries,
}

/// Paths (`/`-separated bytes below the worktree), sorted, with their entries.
type Entries = Vec<(Box<[u8]>, Entry)>;

const CONVERTING_ATTRIBUTES: [&str; 3] = ["filter", "ident", "working-tree-encoding"];

impl GitIndex {
    /// The index of the repository whose worktree holds `dir` (searched upwards); `Ok(None)`
    /// when `dir` is in no git worktree, or the repository has no index yet.
    pub fn discover(dir: &Path) -> Result<Option<GitIndex>, Error> {
        let dir = fs::canonicalize(dir).map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        for worktree in dir.ancestors() {
            let dot_git = worktree.join(".git");
            let Ok(meta) = fs::symlink_metadata(&dot_git) else {
                continue;
            };
            let git_dir = if meta.is_dir() {
                dot_git
            } else {
                let text = read_text(&dot_git)?;
                let Some(target) = text.trim_end().strip_prefix("gitdir: ") else {
                    return Err(Error::Parse {
                        path: dot_git,
                        reason: "a `.git` file without a `gitdir:` line".into(),
                    });
                };
                worktree.join(target)
            };
            let common = match fs::read_to_string(git_dir.join("commondir")) {
                Ok(rel) => git_dir.join(rel.trim_end()),
                Err(_) => git_dir.clone(),
            };
            let index = git_dir.join("index");
            if !index.is_file() {
                return Ok(None);
            }
            return Self::open(worktree, &common, &index).map(Some);
        }
        Ok(None)
    }

    fn open(worktree: &Path, common: &Path, index: &Path) -> Result<GitIndex, Error> {
        let config_path = common.join("config");
        let config = read_text(&config_path)?;
        let format = object_format(&config, &config_path)?;
        for key in ["attributesfile", "worktree"] {
            if config_value(&config, "core", key).is_some() {
                return Err(Error::Conversions {
                    path: config_path,
                    what: format!("`core.{key}` is set"),
                });
            }
        }
        for global in global_configs() {
            if let Ok(text) = fs::read_to_string(&global) {
                if config_value(&text, "core", "attributesfile").is_some() {
                    return Err(Error::Conversions {
                        path: global,
                        what: "`core.attributesFile` is set".into(),
                    });
                }
            }
        }
        let mut attributes = vec![common.join("info/attributes")];
        attributes.extend(global_attributes());
        for path in attributes {
            check_attributes(&path, false)?;
        }
        let meta = fs::metadata(index).map_err(|source| Error::Read {
            path: index.to_path_buf(),
            source,
        })?;
        let bytes = fs::read(index).map_err(|source| Error::Read {
            path: index.to_path_buf(),
            source,
        })?;
        let entries = parse(&bytes, format, index)?;
        for (path, _) in &entries {
            if path.rsplit(|b| *b == b'/').next() == Some(b".gitattributes") {
                let file = worktree.join(std::ffi::OsStr::from_bytes(path));
                check_attributes(&file, true)?;
            }
        }
        Ok(GitIndex {
            worktree: worktree.to_path_buf(),
            format,
            index_mtime: (meta.mtime(), meta.mtime_nsec()),
            entries,
        })
    }

    /// The repository's object format.
    pub fn format(&self) -> ObjectFormat {
        self.format
    }

    /// The canonical directory of the worktree.
    pub fn worktree(&self) -> &Path {
        &self.worktree
    }

    /// How many stage-0 entries the index has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The blob id of the file at `path` (absolute, canonical directories) whose metadata now
    /// is `meta` (of the file itself, not followed), when the file is clean (see the module
    /// docs); `None` otherwise.
    pub fn clean_id(&self, path: &Path, meta: &Metadata) -> Option<ObjectId> {
        match self.state(path, meta) {
            State::Clean(id) => Some(id),
            State::Racy | State::Unknown => None,
        }
    }

    /// The blob id of the file at `path`, as [`clean_id`](Self::clean_id) gives it, or, for a
    /// racy entry whose stat data match (a file checked out in the timestamp tick the index
    /// was written in), computed from the file's bytes ([`blob_id`]): a fresh clone's last
    /// few files are racy, and reading them is what git itself does. `None` for anything else,
    /// and when reading fails or meets a SHA-1 collision attack.
    pub fn id(&self, path: &Path, meta: &Metadata) -> Option<ObjectId> {
        match self.state(path, meta) {
            State::Clean(id) => Some(id),
            State::Racy => blob_id(path, meta.len(), self.format).ok().flatten(),
            State::Unknown => None,
        }
    }

    fn state(&self, path: &Path, meta: &Metadata) -> State {
        let Ok(rel) = path.strip_prefix(&self.worktree) else {
            return State::Unknown;
        };
        let rel = rel.as_os_str().as_bytes();
        let Ok(at) = self.entries.binary_search_by(|(p, _)| p.as_ref().cmp(rel)) else {
            return State::Unknown;
        };
        let e = &self.entries[at].1;
        let trunc = |v: u64| v as u32;
        let matches = !e.untrusted
            && e.mode & 0o170000 == 0o100000
            && meta.file_type().is_file()
            && e.mtime == (meta.mtime() as u32, meta.mtime_nsec() as u32)
            && e.ctime == (meta.ctime() as u32, meta.ctime_nsec() as u32)
            && e.ino == trunc(meta.ino())
            && e.uid == meta.uid()
            && e.gid == meta.gid()
            && e.size == trunc(meta.len())
            // The index keeps 32-bit seconds: a file dated past 2106 is never taken.
            && meta.mtime() == i64::from(e.mtime.0);
        if !matches {
            State::Unknown
        } else if (i64::from(e.mtime.0), i64::from(e.mtime.1)) < self.index_mtime {
            State::Clean(e.id)
        } else {
            // Racy: not strictly older than the index (seconds, then nanoseconds).
            State::Racy
        }
    }
}

/// What the index says of one file.
enum State {
    Clean(ObjectId),
    /// The stat data match, but the entry is not older than the index.
    Racy,
    Unknown,
}

/// The git blob id of the `size` bytes of the file at `path`, computed as git does (the
/// object header `blob <size>\0`, then the bytes) with SHA-1DC (`sha1-checked`) or SHA-256;
/// `Ok(None)` when SHA-1DC detects a collision attack in them, or the file's length is not
/// `size` (it changed meanwhile).
pub fn blob_id(path: &Path, size: u64, format: ObjectFormat) -> io::Result<Option<ObjectId>> {
    use std::io::Read as _;
    let mut file = fs::File::open(path)?;
    let header = format!("blob {size}\0");
    let mut sha1 = sha1_checked::Sha1::new();
    let mut sha256 = sha2::Sha256::new();
    let mut update = |bytes: &[u8]| match format {
        ObjectFormat::Sha1 => sha1_checked::Digest::update(&mut sha1, bytes),
        ObjectFormat::Sha256 => sha256.update(bytes),
    };
    update(header.as_bytes());
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        read += n as u64;
        update(&buf[..n]);
    }
    if read != size {
        return Ok(None);
    }
    let mut bytes = [0u8; 32];
    match format {
        ObjectFormat::Sha1 => {
            let result = sha1.try_finalize();
            if result.has_collision() {
                return Ok(None);
            }
            bytes[..20].copy_from_slice(result.hash().as_slice());
        }
        ObjectFormat::Sha256 => bytes.copy_from_slice(sha256.finalize().as_slice()),
    }
    Ok(Some(ObjectId { format, bytes }))
}

fn read_text(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The user's and the system's git config files, which may name an attributes file.
fn global_configs() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/etc/gitconfig")];
    if let Some(home) = std::env::var_os("HOME") {
        out.push(Path::new(&home).join(".gitconfig"));
    }
    out.extend(xdg_git().map(|d| d.join("config")));
    out
}

/// The user's and the system's attributes files.
fn global_attributes() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/etc/gitattributes")];
    out.extend(xdg_git().map(|d| d.join("attributes")));
    out
}

/// `$XDG_CONFIG_HOME/git`, else `$HOME/.config/git`.
fn xdg_git() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(xdg) => Some(Path::new(&xdg).join("git")),
        None => std::env::var_os("HOME").map(|h| Path::new(&h).join(".config/git")),
    }
}

/// Refuses an attributes file that may name a size-keeping conversion (see the module docs):
/// any mention of one of them, even in a comment, refuses it. A missing file is fine unless it
/// is `required` (a tracked `.gitattributes` that cannot be read).
fn check_attributes(path: &Path, required: bool) -> Result<(), Error> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => return Ok(()),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let text = String::from_utf8_lossy(&text);
    match CONVERTING_ATTRIBUTES.iter().find(|a| text.contains(*a)) {
        Some(what) => Err(Error::Conversions {
            path: path.to_path_buf(),
            what: format!("it mentions `{what}`"),
        }),
        None => Ok(()),
    }
}

/// The value of `key` in `[section]` of a git config text (names compared without case, the
/// last one wins); `None` when not set. Enough of git's syntax for the keys read here.
fn config_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        let mut rest = line;
        if let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else {
                continue;
            };
            current = inner[..end].trim().to_ascii_lowercase();
            rest = inner[end + 1..].trim();
            if rest.is_empty() {
                continue;
            }
        }
        if current != section {
            continue;
        }
        let (name, value) = match rest.split_once('=') {
            Some((n, v)) => (n.trim(), v.trim()),
            None => (rest, "true"),
        };
        if name.eq_ignore_ascii_case(key) {
            let value = value.split(['#', ';']).next().unwrap_or("").trim();
            found = Some(value.trim_matches('"').to_owned());
        }
    }
    found
}

fn object_format(config: &str, path: &Path) -> Result<ObjectFormat, Error> {
    match config_value(config, "extensions", "objectformat").as_deref() {
        None => Ok(ObjectFormat::Sha1),
        Some(v) if v.eq_ignore_ascii_case("sha1") => Ok(ObjectFormat::Sha1),
        Some(v) if v.eq_ignore_ascii_case("sha256") => Ok(ObjectFormat::Sha256),
        Some(other) => Err(Error::ObjectFormat {
            path: path.to_path_buf(),
            format: other.to_owned(),
        }),
    }
}

/// Parses an index file's bytes (Documentation/gitformat-index.txt): its stage-0 entries,
/// sorted by path.
fn parse(bytes: &[u8], format: ObjectFormat, path: &Path) -> Result<Entries, Error> {
    let bad = |reason: &str| Error::Parse {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let hash_len = format.id_len();
    if bytes.len() < 12 + hash_len {
        return Err(bad("shorter than a header and a checksum"));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - hash_len);
    verify_checksum(body, trailer, format, path)?;
    if &body[..4] != b"DIRC" {
        return Err(bad("no `DIRC` signature"));
    }
    let version = be32(&body[4..8]);
    if !(2..=4).contains(&version) {
        return Err(bad(&format!("version {version} (2, 3 and 4 are read)")));
    }
    let count = be32(&body[8..12]) as usize;
    let mut at = 12;
    let mut entries: Vec<(Box<[u8]>, Entry)> = Vec::with_capacity(count.min(body.len() / 62));
    let mut previous: Vec<u8> = Vec::new();
    let mut empty_path = false;
    let fixed = 40 + hash_len + 2;
    for _ in 0..count {
        let start = at;
        let head = body
            .get(at..at + fixed)
            .ok_or_else(|| bad("an entry runs past the end"))?;
        let word = |i: usize| be32(&head[i * 4..i * 4 + 4]);
        let mut id = [0u8; 32];
        id[..hash_len].copy_from_slice(&head[40..40 + hash_len]);
        let flags = u16::from_be_bytes([head[40 + hash_len], head[41 + hash_len]]);
        at += fixed;
        let mut untrusted = flags & 0x8000 != 0;
        if flags & 0x4000 != 0 {
            if version < 3 {
                return Err(bad("an extended entry in a version 2 index"));
            }
            let extended = body
                .get(at..at + 2)
                .ok_or_else(|| bad("an entry runs past the end"))?;
            let extended = u16::from_be_bytes([extended[0], extended[1]]);
            untrusted |= extended & 0x6000 != 0;
            at += 2;
        }
        let stage = (flags >> 12) & 3;
        let name: Vec<u8> = if version == 4 {
            let (strip, used) = varint(&body[at..]).ok_or_else(|| bad("a bad path prefix"))?;
            at += used;
            let keep = previous
                .len()
                .checked_sub(strip)
                .ok_or_else(|| bad("a path prefix longer than the previous path"))?;
            let nul = body[at..]
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| bad("a path without its NUL"))?;
            let mut name = previous[..keep].to_vec();
            name.extend_from_slice(&body[at..at + nul]);
            at += nul + 1;
            name
        } else {
            let nul = body[at..]
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| bad("a path without its NUL"))?;
            let name = body[at..at + nul].to_vec();
            // Padded with 1 to 8 NULs to a multiple of 8 bytes from the entry's start.
            at = start + ((at - start + nul + 8) & !7);
            if at > body.len() {
                return Err(bad("an entry's padding runs past the end"));
            }
            name
        };
        previous.clone_from(&name);
        // A split index names its replaced entries by position (an empty path): its `link`
        // extension, below, refuses it.
        empty_path |= name.is_empty();
        if stage != 0 || name.is_empty() {
            continue;
        }
        let entry = Entry {
            ctime: (word(0), word(1)),
            mtime: (word(2), word(3)),
            ino: word(5),
            mode: word(6),
            uid: word(7),
            gid: word(8),
            size: word(9),
            id: ObjectId { format, bytes: id },
            untrusted,
        };
        entries.push((name.into_boxed_slice(), entry));
    }
    // Extensions: only a split index matters (its entries are in another file).
    while at + 8 <= body.len() {
        let signature = &body[at..at + 4];
        let size = be32(&body[at + 4..at + 8]) as usize;
        if signature == b"link" {
            return Err(Error::SplitIndex {
                path: path.to_path_buf(),
            });
        }
        at = at
            .checked_add(8 + size)
            .filter(|end| *end <= body.len())
            .ok_or_else(|| bad("an extension runs past the end"))?;
    }
    if at != body.len() {
        return Err(bad("bytes left after the extensions"));
    }
    if empty_path {
        return Err(bad("an empty path"));
    }
    // Git keeps entries sorted by path; a tool that did not is not trusted to have written
    // the rest right either, but sorting costs nothing when they are.
    if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
    }
    Ok(entries)
}

fn verify_checksum(
    body: &[u8],
    trailer: &[u8],
    format: ObjectFormat,
    path: &Path,
) -> Result<(), Error> {
    // `index.skipHash` (set by `feature.manyFiles`) writes a zero checksum.
    if trailer.iter().all(|b| *b == 0) {
        return Ok(());
    }
    let matches = match format {
        ObjectFormat::Sha1 => {
            let result = sha1_checked::Sha1::try_digest(body);
            if result.has_collision() {
                return Err(Error::Collision {
                    path: path.to_path_buf(),
                });
            }
            result.hash().as_slice() == trailer
        }
        ObjectFormat::Sha256 => sha2::Sha256::digest(body).as_slice() == trailer,
    };
    if matches {
        Ok(())
    } else {
        Err(Error::Checksum {
            path: path.to_path_buf(),
        })
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Git's offset varint (index version 4): each continuation adds one before shifting.
fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut used = 0;
    let mut byte = *b.first()?;
    used += 1;
    let mut value = usize::from(byte & 0x7f);
    while byte & 0x80 != 0 {
        byte = *b.get(used)?;
        used += 1;
        value = value.checked_add(1)?.checked_mul(128)? | usize::from(byte & 0x7f);
    }
    Some((value, used))
}

#[cfg(test)]
mod tests;
