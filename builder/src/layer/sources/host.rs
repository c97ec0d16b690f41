//! Host paths: a file, or a directory tree filtered by include/exclude globs.
//!
//! The top-level source path is resolved (symlinks followed, `..` applied) and must stay inside
//! the build context. Inside a copied tree nothing is followed: symlinks are stored as symlinks,
//! hard links become independent regular files (whether two files share an inode is host history,
//! not content), and sockets, fifos and devices are errors. A directory source copies its
//! *contents* into `dest`.
//!
//! Globs are `.gitignore` patterns relative to the source root ([`Globs`]): a pattern without
//! `/` (other than a trailing one) matches at any depth, a pattern with one is anchored at the
//! root, a trailing `/` matches directories only, and the last pattern that matches a path
//! decides, so a later `!pattern` takes back what an earlier one matched. An excluded directory
//! prunes its subtree (as in git, a `!` cannot bring back a file inside it). With `include`
//! non-empty only the files it takes are added, with their parent directories: a path its last
//! matching pattern includes, or one no pattern matches inside a directory that is included
//! (`include = ["docs/", "!docs/draft.md"]` takes `docs/` without the draft).
//!
//! Before the entry's own globs, the build's [`HostFilter`] (module `filter`) applies: a
//! reserved path met in the tree (cargo's target directory, the store, an output or a scratch
//! directory of cargo-image) is skipped silently with everything below it, and so is what the
//! context's ignore file (`.dockerignore`) leaves out, matched on the path relative to the
//! context. A left-out directory is not walked unless an exception of the ignore file may take
//! back something below it; it is then written only as the parent of what is taken back. A
//! top-level path that is a reserved path, or that the ignore file leaves out (a directory:
//! with nothing taken back below it), is an error.
//!
//! A tree is read in parallel, a task per directory, and each file is `lstat`ed once, relative
//! to its directory's descriptor; the entry carries that metadata, so planning keys the file
//! without asking the file system again. The entries are inserted while the rest of the tree
//! is still being read, in the order a serial depth-first walk meets them, so the tree, and the
//! first error when there is one, do not depend on the threads (see `walk`). The directories
//! and symlinks taken are noted, in that order, in the tree's walk digest
//! ([`LayerTree::walked`](crate::layer::LayerTree::walked)), which checks a tree read again
//! against the one planned.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use rayon::prelude::*;

use super::filter::{HostFilter, IgnoreFile, Reserved};
use super::{
    file_kind, mask, normalise_file_mode, utf8_file_name, Builder, DIR_MODE, SYMLINK_MODE,
};
use crate::layer::tree::{join, EntryKind};
use crate::layer::Error;
use crate::spec::EntrySpec;

/// Adds a host file or directory tree.
pub(super) fn add(
    b: &mut Builder<'_>,
    index: usize,
    spec: &EntrySpec,
    rel: &Path,
    include: &[String],
    exclude: &[String],
) -> Result<(), Error> {
    let resolved = b.resolve(rel)?;
    let filter = b.ctx.host_filter;
    if let Some(reserved) = filter.and_then(|f| f.reserved(&resolved)) {
        return Err(Error::ReservedSource {
            path: rel.to_path_buf(),
            what: reserved.what().to_owned(),
        });
    }
    let ignore = filter.and_then(HostFilter::ignore_file);
    // Where the source is in the context, as the ignore file's patterns see it.
    let mut in_context = String::new();
    if ignore.is_some() {
        let below = resolved.strip_prefix(b.context).unwrap_or(Path::new(""));
        relative(below, Path::new(""), &mut in_context)?;
    }
    let ignored = |file: &IgnoreFile| Error::IgnoredSource {
        path: rel.to_path_buf(),
        file: file.path().to_path_buf(),
    };
    let meta = fs::metadata(&resolved).map_err(|source| Error::ReadSource {
        path: resolved.clone(),
        source,
    })?;
    let root_ignored = ignore.filter(|f| f.excludes(&in_context));
    if meta.is_file() {
        if let Some(file) = root_ignored {
            return Err(ignored(file));
        }
        // The name as the user wrote it, not the name of a symlink's target.
        let dest = if spec.dest_is_dir || spec.dest.is_empty() {
            join(&spec.dest, utf8_file_name(rel)?)
        } else {
            spec.dest.clone()
        };
        let mode = spec
            .mode
            .map_or_else(|| normalise_file_mode(host_mode(&meta)), mask);
        let kind = EntryKind::host_file(resolved, meta);
        return b.insert(index, &dest, spec, kind, mode);
    }
    if !meta.is_dir() {
        return Err(Error::AddSpecialFile {
            path: resolved,
            kind: file_kind(&meta.file_type()),
        });
    }
    if let Some(file) = root_ignored {
        if !file.may_take_below(&in_context) {
            return Err(ignored(file));
        }
    }
    let include = Globs::new(&b.layer.name, include)?;
    let exclude = Globs::new(&b.layer.name, exclude)?;
    let reserved = filter.map_or_else(Vec::new, |f| f.reserved_below(&resolved));
    let filters = Filters {
        include: include.as_ref(),
        exclude: exclude.as_ref(),
        reserved: &reserved,
        ignore: ignore.map(|file| (file, in_context.as_str())),
        root_ignored: root_ignored.is_some(),
    };
    let took_any = walk(b, index, spec, &resolved, &filters)?;
    match root_ignored {
        // A left-out directory whose exceptions take nothing back: there is nothing to copy.
        Some(file) if !took_any => Err(ignored(file)),
        _ => Ok(()),
    }
}

/// What a walk leaves out, besides what it cannot hold.
struct Filters<'a> {
    include: Option<&'a Globs>,
    exclude: Option<&'a Globs>,
    /// Cargo's and cargo-image's paths below the root, skipped silently.
    reserved: &'a [&'a Reserved],
    /// The context's ignore file, and where the root is in the context (`""`: the context).
    ignore: Option<(&'a IgnoreFile, &'a str)>,
    /// Whether the ignore file leaves out the root itself (an exception may take back a path
    /// below it).
    root_ignored: bool,
}

/// A directory of the walk whose entry may not be written yet (with `include`, or when the
/// ignore file leaves it out, only once something inside it is taken).
struct Pending {
    dest: String,
    written: bool,
}

/// Walks the tree at `root` into the layer; returns whether it took anything (a file, a link
/// or a directory of its own).
///
/// Two passes at once. The first reads the tree in parallel (rayon, a task per directory): each
/// directory's entries in the order `read_dir` gives them, what the filters leave out dropped
/// there (a left-out directory is not read), and each taken file's metadata from one `lstat`
/// relative to its directory's descriptor (not a lookup of its whole path). The second replays
/// that listing in walk order (a directory before its contents, depth first) on the calling
/// thread and inserts the entries, following the first: it takes a directory's listing once
/// its task has read it, and meanwhile runs the pool's pending tasks (see [`Slot::take`]). The
/// tree, and the first error met, are those a serial walk gives.
fn walk(
    b: &mut Builder<'_>,
    index: usize,
    spec: &EntrySpec,
    root: &Path,
    filters: &Filters<'_>,
) -> Result<bool, Error> {
    let dir_mode = spec.dir_mode.map_or(DIR_MODE, mask);
    let reader = Reader { spec, filters };
    rayon::in_place_scope(|scope| {
        let listing = reader.list(scope, root, "", filters.include.is_none());
        replay(b, index, spec, dir_mode, filters, listing)
    })
}

/// The second pass of [`walk`]: inserts `listing` (the root's) and what it leads to.
fn replay(
    b: &mut Builder<'_>,
    index: usize,
    spec: &EntrySpec,
    dir_mode: u32,
    filters: &Filters<'_>,
    listing: Listing,
) -> Result<bool, Error> {
    // Ancestors of the current walk entry, root first: `pending[d]` is at depth `d`.
    let mut pending = vec![Pending {
        dest: spec.dest.clone(),
        written: false,
    }];
    let mut took_any = false;
    if filters.include.is_none() && !filters.root_ignored {
        write_pending(b, index, spec, &mut pending, dir_mode)?;
        took_any = true;
    }
    let mut replay = Replay {
        b,
        index,
        spec,
        dir_mode,
        pending,
        took_any,
    };
    replay.listing(listing)?;
    Ok(replay.took_any)
}

/// A directory's entries as the first pass read them, in `read_dir` order, without what the
/// filters leave out; `Err` when the directory cannot be read. Errors are boxed here and in
/// [`Item`]: an item per walked entry is held until the replay, and an unboxed error would make
/// every item twice its size.
type Listing = Result<Vec<Item>, Box<Error>>;

/// A directory's [`Listing`], put by the task that reads it and taken by the replay, which may
/// get there first.
#[derive(Default)]
struct Slot {
    listing: Mutex<Option<Listing>>,
    filled: Condvar,
}

impl Slot {
    fn fill(&self, listing: Listing) {
        *self.listing.lock().unwrap_or_else(|p| p.into_inner()) = Some(listing);
        self.filled.notify_all();
    }

    /// The listing, once it is there. Until then the waiting thread runs the pool's pending
    /// tasks: when it is one of the pool's threads the task that reads this directory may be
    /// in its own queue (with one thread, nothing else would run it). With nothing to run, it
    /// waits for the fill (a millisecond at a time, so that it helps again with tasks spawned
    /// meanwhile).
    fn take(&self) -> Listing {
        loop {
            let mut listing = self.listing.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(listing) = listing.take() {
                return listing;
            }
            drop(listing);
            if let Some(rayon::Yield::Executed) = rayon::yield_now() {
                continue;
            }
            let listing = self.listing.lock().unwrap_or_else(|p| p.into_inner());
            if listing.is_none() {
                let _ = self
                    .filled
                    .wait_timeout(listing, std::time::Duration::from_millis(1));
            }
        }
    }
}

/// One entry the walk takes (or the error met at its place in the walk).
enum Item {
    Error(Box<Error>),
    Dir {
        dest: String,
        path: PathBuf,
        /// Where the path relative to the walk's root starts in `dest`.
        rel_at: usize,
        /// Whether the include globs take it (or it lies inside what they take).
        included: bool,
        /// Whether the ignore file leaves it out (it is walked for its exceptions).
        ignored: bool,
        /// Filled by the task that reads the directory.
        listing: Arc<Slot>,
    },
    File {
        dest: String,
        path: PathBuf,
        /// Shared with the tree's entry (made on the reading thread, not the replaying one).
        meta: Result<Arc<fs::Metadata>, Box<Error>>,
    },
    Symlink {
        dest: String,
        target: Result<String, Box<Error>>,
    },
    Special {
        path: PathBuf,
        kind: &'static str,
    },
}

/// The first pass: reads a tree into [`Listing`]s.
struct Reader<'a> {
    spec: &'a EntrySpec,
    filters: &'a Filters<'a>,
}

impl Reader<'_> {
    /// The entries of the directory `dir` (at `rel` below the root, `""` for the root), whose
    /// entries are included by default when `included` (the include globs' verdict on the
    /// directory).
    /// Its subdirectories are read by tasks of their own, spawned in `scope`, which fill their
    /// items' [`Slot`]s.
    fn list<'s>(
        &'s self,
        scope: &rayon::Scope<'s>,
        dir: &Path,
        rel: &str,
        included: bool,
    ) -> Listing {
        // The path is copied into the error only when there is one (not once per entry).
        let read_error = |source| {
            Box::new(Error::ReadSource {
                path: dir.to_path_buf(),
                source,
            })
        };
        let entries = fs::read_dir(dir).map_err(read_error)?;
        let entries: Vec<_> = entries.map(|entry| entry.map_err(read_error)).collect();
        // The directory's own entries first (its descriptor is closed when they are done),
        // then its subdirectories: only the directories being read are open.
        let items: Vec<Item> = entries
            .into_par_iter()
            .filter_map(|entry| match entry {
                Ok(entry) => self.item(entry, rel, included),
                Err(e) => Some(Item::Error(e)),
            })
            .collect();
        for item in &items {
            if let Item::Dir {
                dest,
                path,
                rel_at,
                included,
                listing,
                ..
            } = item
            {
                let (path, rel, included) = (path.clone(), dest[*rel_at..].to_owned(), *included);
                let slot = listing.clone();
                scope.spawn(move |scope| slot.fill(self.list(scope, &path, &rel, included)));
            }
        }
        Ok(items)
    }

    /// What the walk does with `entry` of a directory whose verdict is `inherited`; `None`
    /// when it leaves it out.
    fn item(&self, entry: fs::DirEntry, parent: &str, inherited: bool) -> Option<Item> {
        let Filters {
            include,
            exclude,
            reserved,
            ignore,
            ..
        } = *self.filters;
        let path = entry.path();
        let ft = match entry.file_type() {
            Ok(ft) => ft,
            Err(source) => {
                return Some(Item::Error(Box::new(Error::ReadSource { path, source })));
            }
        };
        let is_dir = ft.is_dir();
        if reserved.iter().any(|r| r.matches(&path)) {
            return None;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Some(Item::Error(Box::new(Error::DecodePath { path })));
        };
        // The destination, whose tail is the path relative to the root (one string for both).
        let dest_prefix = &self.spec.dest;
        let mut dest = String::with_capacity(dest_prefix.len() + 2 + parent.len() + name.len());
        for part in [dest_prefix.as_str(), parent] {
            if !part.is_empty() {
                dest.push_str(part);
                dest.push('/');
            }
        }
        let rel_at = if dest_prefix.is_empty() {
            0
        } else {
            dest_prefix.len() + 1
        };
        dest.push_str(name);
        let rel = &dest[rel_at..];
        let mut ignored = false;
        if let Some((file, root_in_context)) = ignore {
            let mut in_context = String::with_capacity(root_in_context.len() + 1 + rel.len());
            if !root_in_context.is_empty() {
                in_context.push_str(root_in_context);
                in_context.push('/');
            }
            in_context.push_str(rel);
            ignored = file.excludes(&in_context);
            if ignored && !(is_dir && file.may_take_below(&in_context)) {
                return None;
            }
        }
        if exclude.is_some_and(|g| g.matches(rel, is_dir)) {
            return None;
        }
        let included = Globs::includes(include, rel, is_dir, inherited);
        if is_dir {
            return Some(Item::Dir {
                dest,
                path,
                rel_at,
                included,
                ignored,
                // Read once the directory holding it is done.
                listing: Arc::default(),
            });
        }
        if !included {
            return None;
        }
        Some(if ft.is_file() {
            // `lstat` relative to the directory's descriptor.
            let meta = entry.metadata().map(Arc::new).map_err(|source| {
                Box::new(Error::ReadSource {
                    path: path.clone(),
                    source,
                })
            });
            Item::File { dest, path, meta }
        } else if ft.is_symlink() {
            let target = fs::read_link(&path)
                .map_err(|source| Error::ReadSource {
                    path: path.clone(),
                    source,
                })
                .and_then(|target| {
                    target
                        .into_os_string()
                        .into_string()
                        .map_err(|_| Error::DecodePath { path: path.clone() })
                })
                .map_err(Box::new);
            Item::Symlink { dest, target }
        } else {
            Item::Special {
                path,
                kind: file_kind(&ft),
            }
        })
    }
}

/// The second pass: inserts what the first read, in walk order.
struct Replay<'a, 'b> {
    b: &'a mut Builder<'b>,
    index: usize,
    spec: &'a EntrySpec,
    dir_mode: u32,
    pending: Vec<Pending>,
    took_any: bool,
}

impl Replay<'_, '_> {
    fn listing(&mut self, listing: Listing) -> Result<(), Error> {
        for item in listing.map_err(|e| *e)? {
            self.item(item)?;
        }
        Ok(())
    }

    /// Writes the directories above a leaf that is taken.
    fn take(&mut self) -> Result<(), Error> {
        write_pending(
            self.b,
            self.index,
            self.spec,
            &mut self.pending,
            self.dir_mode,
        )?;
        self.took_any = true;
        Ok(())
    }

    fn item(&mut self, item: Item) -> Result<(), Error> {
        let (index, spec) = (self.index, self.spec);
        match item {
            Item::Error(e) => Err(*e),
            Item::Dir {
                dest,
                included,
                ignored,
                listing,
                ..
            } => {
                self.pending.push(Pending {
                    dest,
                    written: false,
                });
                // A left-out directory walked for its exceptions is written only as the
                // parent of what they take back.
                if included && !ignored {
                    self.take()?;
                }
                self.listing(listing.take())?;
                self.pending.pop();
                Ok(())
            }
            Item::File { dest, path, meta } => {
                self.take()?;
                let meta = meta.map_err(|e| *e)?;
                let mode = spec
                    .mode
                    .map_or_else(|| normalise_file_mode(host_mode(&meta)), mask);
                let kind = EntryKind::host_file(path, meta);
                self.b.insert_owned(index, dest, spec, kind, mode)
            }
            Item::Symlink { dest, target } => {
                self.take()?;
                let target = target.map_err(|e| *e)?;
                self.b.tree.note_walked(&dest, Some(&target));
                self.b.insert_owned(
                    index,
                    dest,
                    spec,
                    EntryKind::Symlink { target },
                    SYMLINK_MODE,
                )
            }
            Item::Special { path, kind } => {
                self.take()?;
                Err(Error::AddSpecialFile { path, kind })
            }
        }
    }
}

/// Writes the directories of the walk's ancestor chain that are not written yet.
fn write_pending(
    b: &mut Builder<'_>,
    index: usize,
    spec: &EntrySpec,
    pending: &mut [Pending],
    dir_mode: u32,
) -> Result<(), Error> {
    // Written directories are always a prefix of the chain (a parent is written before a child).
    let first_unwritten = pending
        .iter()
        .position(|p| !p.written)
        .unwrap_or(pending.len());
    for p in &mut pending[first_unwritten..] {
        p.written = true;
        if !p.dest.is_empty() {
            b.tree.note_walked(&p.dest, None);
            b.insert(index, &p.dest, spec, EntryKind::Dir, dir_mode)?;
        }
    }
    Ok(())
}

/// `path` relative to `root`, with `/` separators, into `out`.
fn relative(path: &Path, root: &Path, out: &mut String) -> Result<(), Error> {
    out.clear();
    let rel = path.strip_prefix(root).unwrap_or(path);
    for c in rel.components() {
        if let Component::Normal(name) = c {
            let name = name.to_str().ok_or_else(|| Error::DecodePath {
                path: path.to_path_buf(),
            })?;
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(name);
        }
    }
    Ok(())
}

#[cfg(unix)]
fn host_mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode()
}

#[cfg(not(unix))]
fn host_mode(_meta: &fs::Metadata) -> u32 {
    0o644
}

/// Compiled include or exclude globs, with `.gitignore` semantics (the `ignore` crate's
/// matcher, which ripgrep uses): the last pattern that matches a path decides, and a pattern
/// starting with `!` negates (takes the path back). `\!` and `\#` start a pattern with a
/// literal `!` or `#`; `#` does not start a comment here, and trailing spaces are kept.
#[derive(Debug, Clone)]
pub(crate) struct Globs {
    matcher: Gitignore,
}

impl Globs {
    /// Compiles `patterns`; `None` when there are none.
    pub(crate) fn new(layer: &str, patterns: &[String]) -> Result<Option<Globs>, Error> {
        let lines = patterns.iter().enumerate().map(|(i, pattern)| {
            let mut line = pattern.clone();
            // A spec's glob is one pattern, never a comment, and its spaces are its own.
            if line.starts_with('#') {
                line.insert(0, '\\');
            }
            if line.ends_with(' ') && !line.ends_with("\\ ") {
                line.insert(line.len() - 1, '\\');
            }
            (i, line)
        });
        Self::compile(lines, |index, source| Error::ParseGlob {
            layer: layer.to_owned(),
            pattern: match index {
                Some(i) => patterns[i].clone(),
                None => patterns.join(", "),
            },
            source,
        })
    }

    /// Compiles `.gitignore` lines, each with a number the caller's `error` turns back into
    /// what it came from (`None`: the whole set failed); `None` when there are none.
    pub(crate) fn compile(
        lines: impl IntoIterator<Item = (usize, String)>,
        error: impl Fn(Option<usize>, ignore::Error) -> Error,
    ) -> Result<Option<Globs>, Error> {
        // The root only strips absolute paths; ours are always relative to the source root.
        let mut builder = GitignoreBuilder::new("");
        builder.allow_unclosed_class(false);
        let mut any = false;
        for (number, line) in lines {
            builder
                .add_line(None, &line)
                .map_err(|source| error(Some(number), source))?;
            any = true;
        }
        if !any {
            return Ok(None);
        }
        let matcher = builder.build().map_err(|source| error(None, source))?;
        Ok(Some(Globs { matcher }))
    }

    /// Whether the relative path `rel` (a directory when `is_dir`) is matched: its last
    /// matching pattern is not a negation.
    pub(crate) fn matches(&self, rel: &str, is_dir: bool) -> bool {
        self.decides(rel, is_dir) == Some(true)
    }

    /// What the last pattern matching `rel` says: `Some(true)` matched, `Some(false)` taken
    /// back by a `!` pattern, `None` when no pattern matches (the path then goes the way of
    /// its directory).
    pub(crate) fn decides(&self, rel: &str, is_dir: bool) -> Option<bool> {
        match self.matcher.matched(rel, is_dir) {
            Match::None => None,
            Match::Ignore(_) => Some(true),
            Match::Whitelist(_) => Some(false),
        }
    }

    /// Whether a path is taken under `include` (`None`: everything is): its own last matching
    /// pattern decides, else it goes the way of its directory (`inherited`).
    pub(crate) fn includes(
        include: Option<&Globs>,
        rel: &str,
        is_dir: bool,
        inherited: bool,
    ) -> bool {
        include.is_none_or(|g| g.decides(rel, is_dir).unwrap_or(inherited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(p: &[&str]) -> Globs {
        Globs::new("l", &p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn gitignore_style_globs() {
        let g = globs(&["*.log", "/build", "cache/", "docs/*.md"]);
        // No slash: any depth.
        assert!(g.matches("a.log", false));
        assert!(g.matches("x/y/a.log", false));
        // Leading slash: anchored at the root.
        assert!(g.matches("build", true));
        assert!(!g.matches("x/build", true));
        // Trailing slash: directories only, at any depth.
        assert!(g.matches("cache", true));
        assert!(g.matches("x/cache", true));
        assert!(!g.matches("cache", false));
        // A slash inside: anchored, `*` does not cross `/`.
        assert!(g.matches("docs/a.md", false));
        assert!(!g.matches("docs/x/a.md", false));
        assert!(!g.matches("x/docs/a.md", false));
        assert!(globs(&["**/*.rs"]).matches("a/b/c.rs", false));
    }

    #[test]
    fn the_last_matching_pattern_decides_and_bang_negates() {
        let g = globs(&["*.log", "!keep.log", "!/sub/*.log", "/sub/x.log"]);
        assert!(g.matches("a.log", false));
        assert!(!g.matches("keep.log", false));
        assert!(!g.matches("d/keep.log", false));
        assert!(!g.matches("sub/a.log", false));
        assert!(g.matches("sub/x.log", false));
        assert_eq!(g.decides("other.txt", false), None);
        // `\!` and `\#` are literal; `#` starts no comment; trailing spaces are kept.
        let g = globs(&["\\!lit", "#hash", "sp "]);
        assert!(g.matches("!lit", false));
        assert!(g.matches("#hash", false));
        assert!(g.matches("sp ", false));
        assert!(!g.matches("sp", false));
        // In `include`, a path's own match wins over its directory's.
        let inc = globs(&["docs/", "!docs/draft.md"]);
        assert!(Globs::includes(Some(&inc), "docs", true, false));
        assert!(Globs::includes(Some(&inc), "docs/a.md", false, true));
        assert!(!Globs::includes(Some(&inc), "docs/draft.md", false, true));
        assert!(Globs::includes(None, "anything", false, false));
    }

    #[test]
    fn bad_glob_names_the_pattern() {
        let err = Globs::new("app", &["a[".to_string()]).err().unwrap();
        assert!(err.to_string().contains("`a[`"), "{err}");
    }
}
