//! What host `path` sources leave out besides their own `include` and `exclude` globs
//! ([`HostFilter`]): the directories and files of cargo and cargo-image ([`Reserved`]), and the
//! patterns of the build context's ignore file ([`IgnoreFile`], `.dockerignore`).
//!
//! Both are applied where a host tree is walked (`host::walk`), so the tree a layer's key is
//! computed from and the tree it is built from are the same tree, and a layer's key changes
//! exactly when the files it takes change: neither the ignore file's text nor the reserved paths
//! are keyed themselves.
//!
//! # The ignore file
//!
//! Docker's `.dockerignore` syntax and meaning (moby's `patternmatcher` and `ignorefile`, which
//! BuildKit uses), compiled into the `.gitignore` matcher the spec's globs use ([`Globs`]):
//!
//! - a line starting with `#` is a comment; blank lines are skipped; leading and trailing white
//!   space is dropped (a UTF-8 byte order mark too);
//! - a pattern is cleaned as Go's `filepath.Clean` does (`./a//b/` is `a/b`, `a/../b` is `b`)
//!   and its leading `/` dropped: every pattern is relative to the build context's root, never
//!   matched at any depth (`*.log` is the logs at the root; `**/*.log` the logs everywhere); a
//!   trailing `/` changes nothing;
//! - `*` matches within one path component, `?` one character but `/`, `[a-z]` a class,
//!   `**` any number of components (`**/x`, `a/**/b`, `a/**`), `\` escapes the next character;
//! - a pattern matches a path when it matches the path or one of its parent directories (so
//!   `target` leaves out `target/x/y`), and the last pattern that matches decides: `!pattern`
//!   is an exception that takes back what earlier patterns left out, also inside a left-out
//!   directory (`target` then `!target/keep` keeps `target/keep` and its parent directory);
//! - `!` alone is an error, as in Docker.
//!
//! Each pattern `p` becomes the two anchored gitignore lines `/p` and `/p/**` (the path itself,
//! or anything below a directory it matches), so the gitignore matcher's "last matching line
//! decides" is Docker's "last pattern that matches the path or a parent decides".
//!
//! Where the matching differs from Docker's (corner cases, pinned by a test): a `**` glued to
//! other characters is a `*` here, where Docker lets it match across `/` (Docker's `**a`
//! matches `x/ya`, ours only `ya`); `[!a]` is a negated class here (as in gitignore and
//! shells), a class of `!` and `a` in Docker (whose negation `[^a]` works in both). A pattern
//! Docker refuses (an unclosed `[`, `!` alone) is an error naming the file and line, and so is
//! a file that is not UTF-8.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::host::Globs;
use crate::layer::Error;

/// What host `path` sources leave out besides their own globs (see the module docs). The
/// default leaves out nothing.
#[derive(Debug, Clone, Default)]
pub struct HostFilter {
    reserved: Vec<Reserved>,
    ignore: Option<IgnoreFile>,
}

impl HostFilter {
    /// A filter that leaves out `reserved` paths and what `ignore` excludes.
    pub fn new(reserved: Vec<Reserved>, ignore: Option<IgnoreFile>) -> Self {
        HostFilter { reserved, ignore }
    }

    /// The ignore file honoured, if any.
    pub fn ignore_file(&self) -> Option<&IgnoreFile> {
        self.ignore.as_ref()
    }

    /// The reserved path or name that `path` (absolute, canonical) is, if it is one.
    pub(crate) fn reserved(&self, path: &Path) -> Option<&Reserved> {
        self.reserved.iter().find(|r| r.matches(path))
    }

    /// The reserved paths and names that may be met below `root` (absolute, canonical).
    pub(crate) fn reserved_below(&self, root: &Path) -> Vec<&Reserved> {
        self.reserved
            .iter()
            .filter(|r| match &r.kind {
                Kind::Path(p) => p.starts_with(root) && p != root,
                Kind::Name { dir: None, .. } => true,
                Kind::Name { dir: Some(d), .. } => d.starts_with(root),
            })
            .collect()
    }
}

/// A path a host tree never contributes, or a kind of temporary name: cargo's target
/// directory, the store, an output and the scratch directories of cargo-image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    kind: Kind,
    what: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// This path (absolute, canonical), and everything below it.
    Path(PathBuf),
    /// Names made of `prefix` and `random` ASCII letters and digits: in directory `dir`, or in
    /// any directory.
    Name {
        dir: Option<PathBuf>,
        prefix: String,
        random: usize,
    },
}

impl Reserved {
    /// The directory or file at `path`, described as `what` in messages ("the store"). A
    /// relative path is taken from the current directory; the path need not exist yet (the
    /// longest part of it that exists is resolved, symlinks followed, and the rest appended).
    pub fn path(path: &Path, what: impl Into<String>) -> Reserved {
        Reserved {
            kind: Kind::Path(resolve_existing(path)),
            what: what.into(),
        }
    }

    /// Names made of `prefix` and `random` ASCII letters and digits (what `tempfile` makes), in
    /// directory `dir` only, or anywhere when `dir` is `None`.
    pub fn temporary_name(
        dir: Option<&Path>,
        prefix: impl Into<String>,
        random: usize,
        what: impl Into<String>,
    ) -> Reserved {
        Reserved {
            kind: Kind::Name {
                dir: dir.map(resolve_existing),
                prefix: prefix.into(),
                random,
            },
            what: what.into(),
        }
    }

    /// What it is, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Whether `path` (absolute, canonical) is this path, or has this kind of name.
    ///
    /// Both paths are canonical, so they are compared as bytes (this runs for every entry of
    /// every walk; `Path`'s own comparison parses components).
    pub(crate) fn matches(&self, path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        match &self.kind {
            Kind::Path(p) => p.as_os_str().as_bytes() == bytes,
            Kind::Name {
                dir,
                prefix,
                random,
            } => {
                // Such a name has exactly `prefix.len() + random` bytes: only the end of the
                // path is looked at, without searching it for its last `/`.
                let Some(at) = bytes.len().checked_sub(prefix.len() + random) else {
                    return false;
                };
                let (parent, name) = match at {
                    0 => (&b""[..], bytes),
                    _ if bytes[at - 1] == b'/' => (&bytes[..(at - 1).max(1)], &bytes[at..]),
                    _ => return false,
                };
                let named = name
                    .strip_prefix(prefix.as_bytes())
                    .is_some_and(|rest| rest.iter().all(u8::is_ascii_alphanumeric));
                named
                    && dir
                        .as_ref()
                        .is_none_or(|d| d.as_os_str().as_bytes() == parent)
            }
        }
    }
}

/// `path` made absolute (from the current directory), its longest existing ancestor resolved.
fn resolve_existing(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => path.to_path_buf(),
        }
    };
    let mut tail = Vec::new();
    let mut at = absolute.as_path();
    loop {
        if let Ok(mut resolved) = fs::canonicalize(at) {
            resolved.extend(tail.iter().rev());
            return resolved;
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_owned());
                at = parent;
            }
            _ => return absolute,
        }
    }
}

/// The compiled patterns of an ignore file (`.dockerignore`), matched against paths relative
/// to the build context (see the module docs).
#[derive(Debug, Clone)]
pub struct IgnoreFile {
    path: PathBuf,
    /// `None` when the file has no pattern.
    globs: Option<Globs>,
    /// The cleaned exception patterns, split into components: what may take back a path below
    /// a left-out directory.
    exceptions: Vec<Vec<String>>,
}

impl IgnoreFile {
    /// Reads and compiles the ignore file at `path`; `Ok(None)` when `optional` and there is no
    /// file there.
    pub fn read(path: &Path, optional: bool) -> Result<Option<IgnoreFile>, Error> {
        let read_error = |source| Error::ReadIgnoreFile {
            path: path.to_path_buf(),
            source,
        };
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if optional && e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_error(e)),
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            read_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
            ))
        })?;
        Self::parse(&text, path).map(Some)
    }

    /// Compiles the text of an ignore file; `path` names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<IgnoreFile, Error> {
        let error = |line: usize, pattern: &str, reason: String| Error::ParseIgnoreFile {
            path: path.to_path_buf(),
            line,
            pattern: pattern.to_owned(),
            reason,
        };
        let mut lines: Vec<(usize, String)> = Vec::new();
        let mut exceptions = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = if index == 0 {
                line.strip_prefix('\u{feff}').unwrap_or(line)
            } else {
                line
            };
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(error(
                        number,
                        line.trim(),
                        "`!` alone excepts nothing (write `!PATTERN`)".into(),
                    ));
                }
            }
            let mut cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            if cleaned == "." || cleaned == "/" {
                continue; // the context itself is never left out
            }
            // A trailing lone `\` is a literal backslash in Docker, a dangling escape in globs.
            if (cleaned.len() - cleaned.trim_end_matches('\\').len()) % 2 == 1 {
                cleaned.push('\\');
            }
            if exception {
                exceptions.push(cleaned.split('/').map(str::to_owned).collect());
            }
            let bang = if exception { "!" } else { "" };
            lines.push((number, format!("{bang}/{cleaned}")));
            lines.push((number, format!("{bang}/{cleaned}/**")));
        }
        let globs = Globs::compile(lines, |number, source| {
            let number = number.unwrap_or(1);
            let original = text.lines().nth(number - 1).unwrap_or_default().trim();
            error(number, original, source.to_string())
        })?;
        Ok(IgnoreFile {
            path: path.to_path_buf(),
            globs,
            exceptions,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path `rel` (relative to the build context, `/`-separated, not empty) is left
    /// out: the last pattern that matches it or one of its parents is not an exception.
    pub fn excludes(&self, rel: &str) -> bool {
        !rel.is_empty() && self.globs.as_ref().is_some_and(|g| g.matches(rel, false))
    }

    /// Whether an exception may take back a path strictly below the directory `dir` (relative
    /// to the context): when not, a left-out directory is not walked at all. Errs towards
    /// walking: an exception with a wildcard before its end may match anywhere.
    pub fn may_take_below(&self, dir: &str) -> bool {
        let dir: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
        self.exceptions.iter().any(|pattern| {
            for (i, component) in dir.iter().enumerate() {
                let Some(p) = pattern.get(i) else {
                    return false; // matches `dir` or one of its parents, nothing below
                };
                if p.contains(['*', '?', '[', '\\']) {
                    return true;
                }
                if p != component {
                    return false;
                }
            }
            pattern.len() > dir.len()
        })
    }
}

/// A path cleaned as Go's `filepath.Clean` does: repeated `/` and `.` components dropped, `..`
/// applied lexically, no trailing `/`; `.` when nothing is left.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> IgnoreFile {
        IgnoreFile::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn clean_is_go_filepath_clean() {
        for (input, cleaned) in [
            ("a/b", "a/b"),
            ("./a//b/", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/a/../..", "/"),
            ("/x/", "/x"),
            ("", "."),
            ("./", "."),
            ("a/./*/..", "a"),
        ] {
            assert_eq!(clean(input), cleaned, "{input:?}");
        }
    }

    #[test]
    fn a_directory_pattern_leaves_out_everything_below_it() {
        let f = ignore("target\nnode_modules/\n");
        for path in [
            "target",
            "target/debug",
            "target/debug/app",
            "node_modules/x/y.js",
        ] {
            assert!(f.excludes(path), "{path}");
        }
        // Anchored at the context root, never at any depth; a prefix is not a parent.
        for path in ["src/target", "targets", "target.txt", "x/node_modules"] {
            assert!(!f.excludes(path), "{path}");
        }
        assert!(!f.excludes(""), "the context itself is never left out");
    }

    #[test]
    fn an_exception_takes_back_a_path_inside_a_left_out_directory() {
        let f = ignore("target\n!target/keep\n*.md\n!README*.md\nREADME-secret.md\n");
        assert!(f.excludes("target"));
        assert!(f.excludes("target/other"));
        assert!(!f.excludes("target/keep"));
        assert!(!f.excludes("target/keep/inside"), "below an exception");
        assert!(f.excludes("notes.md"));
        assert!(!f.excludes("README.md"));
        // The last matching pattern decides.
        assert!(f.excludes("README-secret.md"));
        // Walking: only `target` may hold something taken back (a wildcard exception, as
        // `!README*.md`, may take back anything anywhere).
        assert!(f.may_take_below("other"));
        let f = ignore("target\n!target/keep\n");
        assert!(f.may_take_below("target"));
        assert!(
            !f.may_take_below("target/keep"),
            "all of it is kept already"
        );
        assert!(!f.may_take_below("other"));
        // A later pattern leaves the exception out again.
        let f = ignore("a\n!a/b\na/b/c\n");
        assert!(!f.excludes("a/b/x"));
        assert!(f.excludes("a/b/c"));
        assert!(f.excludes("a/b/c/d"));
    }

    #[test]
    fn double_star_crosses_components_and_star_does_not() {
        let f = ignore("**/*.log\ndocs/*.tmp\na/**/z\nbuild/**\n");
        for path in [
            "x.log",
            "a/b/c.log",
            "docs/1.tmp",
            "a/z",
            "a/b/c/z",
            "build/x",
            "build/x/y",
        ] {
            assert!(f.excludes(path), "{path}");
        }
        for path in ["docs/sub/1.tmp", "x/docs/1.tmp", "b/z", "build", "x.logs"] {
            assert!(!f.excludes(path), "{path}");
        }
        // `*` and `?` stop at `/`; a pattern without `/` is only at the root.
        let f = ignore("*.log\nfile?.txt\n");
        assert!(f.excludes("a.log") && f.excludes("file1.txt"));
        assert!(!f.excludes("sub/a.log") && !f.excludes("file/.txt"));
        // Exceptions with a wildcard may take back anything below.
        let f = ignore("vendor\n!**/LICENSE\n");
        assert!(f.may_take_below("vendor") && f.may_take_below("vendor/a/b"));
        assert!(!f.excludes("vendor/a/LICENSE"));
        assert!(f.excludes("vendor/a/lib.rs"));
    }

    #[test]
    fn comments_blanks_spaces_slashes_and_escapes() {
        let f = ignore(
            "\u{feff}# a comment\n\n   \n  spaced.txt  \n/rooted\n./dotted/\nsub/\n \
             # not a comment\n\\!bang\n! excepted\nexcepted\n!excepted\n",
        );
        assert!(!f.excludes("# a comment"));
        assert!(f.excludes("spaced.txt"), "white space trimmed");
        assert!(
            f.excludes("rooted") && !f.excludes("x/rooted"),
            "leading `/`"
        );
        assert!(f.excludes("dotted/x"), "cleaned like a path");
        assert!(
            f.excludes("sub") && f.excludes("sub/x"),
            "trailing `/` changes nothing"
        );
        assert!(
            f.excludes("# not a comment"),
            "`#` only starts a comment at column 0"
        );
        assert!(f.excludes("!bang"), "`\\!` is a literal `!`");
        assert!(!f.excludes("excepted"), "the last pattern decides");
        // CRLF line ends.
        let f = ignore("a.txt\r\n!b\r\n");
        assert!(f.excludes("a.txt"));
    }

    #[test]
    fn where_the_matching_differs_from_docker() {
        // `**` glued to other characters is a `*`: Docker's `**a` matches `x/ya` too.
        let f = ignore("**a\n");
        assert!(f.excludes("ya") && !f.excludes("x/ya"));
        // `a**` agrees: through its parent `ab`, `ab/c` is left out as in Docker.
        let f = ignore("a**\n");
        assert!(f.excludes("abc") && f.excludes("ab/c") && !f.excludes("xa"));
        // `[!a]` is a negated class (Docker: `!` or `a`); `[^a]` is one in both.
        for class in ["[!a]", "[^a]"] {
            let f = ignore(class);
            assert!(!f.excludes("a") && f.excludes("b"), "{class}");
        }
        // A trailing lone `\` is a literal backslash, as in Docker.
        assert!(ignore("a\\\n").excludes("a\\"));
    }

    #[test]
    fn bad_patterns_name_the_file_and_line() {
        let err = IgnoreFile::parse("ok\n!\n", Path::new("ctx/.dockerignore")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("line 2") && msg.contains("ctx/.dockerignore"),
            "{msg}"
        );
        let err = IgnoreFile::parse("a\n\n[z\n", Path::new(".dockerignore")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 3") && msg.contains("`[z`"), "{msg}");
        // An empty file (or only comments) leaves out nothing.
        assert!(!ignore("# nothing\n").excludes("a"));
    }

    #[test]
    fn reserved_paths_and_temporary_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("target")).unwrap();
        // Not there yet: resolved through the part that exists.
        let store = Reserved::path(&root.join("target/../cache/store"), "the store");
        assert!(store.matches(&root.join("cache/store")));
        let target = Reserved::path(&root.join("target"), "cargo's target directory");
        let scratch = Reserved::temporary_name(None, ".cargo-image-stage-", 6, "a scratch dir");
        let temp = Reserved::temporary_name(Some(&root), ".out.tmp-", 6, "a temporary output");
        let filter = HostFilter::new(vec![target.clone(), scratch, temp], None);
        assert_eq!(
            filter.reserved(&root.join("target")).map(Reserved::what),
            Some("cargo's target directory")
        );
        let reserved = |path: &str| filter.reserved(&root.join(path)).is_some();
        assert!(!reserved("target2"));
        assert!(reserved("x/.cargo-image-stage-a1B2c3"));
        assert!(!reserved("x/.cargo-image-stage-a1B2"));
        // Only a whole name: not one that ends in such a name, nor one with more letters.
        assert!(!reserved("x/y.cargo-image-stage-a1B2c3"));
        assert!(!reserved("x/.cargo-image-stage-a1B2c3d"));
        assert!(!reserved("x/.cargo-image-stage-a1B2c/"));
        assert!(reserved("/.cargo-image-stage-a1B2c3"));
        assert!(reserved(".out.tmp-a1B2c3"));
        assert!(!reserved("x/.out.tmp-a1B2c3"));
        assert_eq!(filter.reserved_below(&root).len(), 3);
        assert_eq!(
            filter.reserved_below(&root.join("target")).len(),
            1,
            "only the names that may be anywhere"
        );
    }
}
