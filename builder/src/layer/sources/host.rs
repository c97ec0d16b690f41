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

use std::fs;
use std::path::{Component, Path};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use walkdir::WalkDir;

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
    /// Whether it matched an include glob itself (or lies inside one that did).
    included: bool,
    written: bool,
}

/// Walks the tree at `root` into the layer; returns whether it took anything (a file, a link
/// or a directory of its own).
fn walk(
    b: &mut Builder<'_>,
    index: usize,
    spec: &EntrySpec,
    root: &Path,
    filters: &Filters<'_>,
) -> Result<bool, Error> {
    let Filters {
        include, exclude, ..
    } = *filters;
    let dir_mode = spec.dir_mode.map_or(DIR_MODE, mask);
    // Ancestors of the current walk entry, root first: `pending[d]` is at depth `d`.
    let mut pending: Vec<Pending> = Vec::new();
    let mut rel = String::new();
    // The entry's path relative to the context, for the ignore file.
    let mut in_context = String::new();
    let mut took_any = false;
    let mut it = WalkDir::new(root).follow_links(false).into_iter();
    while let Some(next) = it.next() {
        let de = next.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            Error::ReadSource {
                path,
                source: e.into(),
            }
        })?;
        let depth = de.depth();
        let ft = de.file_type();
        pending.truncate(depth);
        if depth == 0 {
            pending.push(Pending {
                dest: spec.dest.clone(),
                included: include.is_none(),
                written: false,
            });
            if include.is_none() && !filters.root_ignored {
                write_pending(b, index, spec, &mut pending, dir_mode)?;
                took_any = true;
            }
            continue;
        }
        let is_dir = ft.is_dir();
        if filters.reserved.iter().any(|r| r.matches(de.path())) {
            if is_dir {
                it.skip_current_dir();
            }
            continue;
        }
        relative(de.path(), root, &mut rel)?;
        let mut ignored = false;
        if let Some((file, root_in_context)) = filters.ignore {
            in_context.clear();
            if !root_in_context.is_empty() {
                in_context.push_str(root_in_context);
                in_context.push('/');
            }
            in_context.push_str(&rel);
            ignored = file.excludes(&in_context);
            if ignored && !(is_dir && file.may_take_below(&in_context)) {
                if is_dir {
                    it.skip_current_dir();
                }
                continue;
            }
        }
        if exclude.is_some_and(|g| g.matches(&rel, is_dir)) {
            if is_dir {
                it.skip_current_dir();
            }
            continue;
        }
        let inherited = pending.last().is_some_and(|p| p.included);
        let included = Globs::includes(include, &rel, is_dir, inherited);
        let dest = join(&spec.dest, &rel);
        if is_dir {
            pending.push(Pending {
                dest,
                included,
                written: false,
            });
            // A left-out directory walked for its exceptions is written only as the parent
            // of what they take back.
            if included && !ignored {
                write_pending(b, index, spec, &mut pending, dir_mode)?;
                took_any = true;
            }
            continue;
        }
        if !included {
            continue;
        }
        write_pending(b, index, spec, &mut pending, dir_mode)?;
        took_any = true;
        let path = de.path();
        if ft.is_file() {
            let meta = de.metadata().map_err(|e| Error::ReadSource {
                path: path.to_path_buf(),
                source: e.into(),
            })?;
            let mode = spec
                .mode
                .map_or_else(|| normalise_file_mode(host_mode(&meta)), mask);
            let kind = EntryKind::host_file(path.to_path_buf(), meta);
            b.insert(index, &dest, spec, kind, mode)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|source| Error::ReadSource {
                path: path.to_path_buf(),
                source,
            })?;
            let target = target
                .into_os_string()
                .into_string()
                .map_err(|_| Error::DecodePath {
                    path: path.to_path_buf(),
                })?;
            b.insert(
                index,
                &dest,
                spec,
                EntryKind::Symlink { target },
                SYMLINK_MODE,
            )?;
        } else {
            return Err(Error::AddSpecialFile {
                path: path.to_path_buf(),
                kind: file_kind(&ft),
            });
        }
    }
    Ok(took_any)
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
