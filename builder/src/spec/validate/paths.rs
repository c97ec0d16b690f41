//! Paths: the build context, host paths (`path`, `tar`, `ignore-file`) relative to it and never
//! leaving it (symlinks followed), and image paths (`dest`, `workdir`, `volumes`), all normalised
//! lexically.

use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::{Checker, ContextDir, Problem};
use crate::spec::error::ErrorKind;
use crate::spec::model::IgnoreFileSetting;
use crate::spec::raw::RawIgnoreFile;
use crate::types::WHITEOUT_PREFIX;

impl Checker<'_> {
    pub(super) fn context(
        &mut self,
        context: Option<&Spanned<String>>,
        spec_dir: &Path,
    ) -> Option<ContextDir> {
        let spec_dir = normalize(spec_dir)?;
        let (lexical, span, shown) = match context {
            None => (spec_dir.clone(), 0..0, None),
            Some(context) => {
                let lexical = normalize(&spec_dir.join(context.get_ref()))
                    .filter(|p| p.starts_with(&spec_dir));
                let Some(lexical) = lexical else {
                    self.problem(
                        context.span(),
                        "context",
                        &format!("{:?}", context.get_ref()),
                        Problem {
                            kind: ErrorKind::EscapesContext,
                            reason: "outside the spec file's directory".to_owned(),
                            help: Some(
                                "the build context is the spec file's directory or a directory below it: \
                                 move `image.toml` up to the directory that holds everything the image needs"
                                    .to_owned(),
                            ),
                        },
                    );
                    return None;
                };
                (
                    lexical,
                    context.span(),
                    Some(format!("{:?}", context.get_ref())),
                )
            }
        };
        let found = std::fs::canonicalize(&lexical).and_then(|canonical| {
            if canonical.is_dir() {
                Ok(canonical)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "not a directory",
                ))
            }
        });
        match found {
            Ok(canonical) => {
                let within = lexical.strip_prefix(&spec_dir).unwrap_or(Path::new(""));
                let real_spec_dir = std::fs::canonicalize(&spec_dir).unwrap_or(spec_dir);
                if let Some((link, target)) = escaping_link(&real_spec_dir, within) {
                    self.problem(
                        span,
                        "context",
                        shown.as_deref().unwrap_or_default(),
                        Problem {
                            kind: ErrorKind::EscapesContext,
                            reason: format!(
                                "`{}` is a symlink to `{}`, outside the spec file's directory",
                                link.display(),
                                target.display()
                            ),
                            help: Some(
                                "the build context is the spec file's directory or a directory below it, \
                                 symlinks followed: point `context` at a real directory below the spec, \
                                 or move `image.toml` up to the directory that holds everything the image needs"
                                    .to_owned(),
                            ),
                        },
                    );
                    return None;
                }
                Some(ContextDir { lexical, canonical })
            }
            Err(e) => {
                let (message, help) = match &shown {
                    Some(shown) => (
                        format!("invalid `context` {shown}: not an existing directory"),
                        "`context` is relative to the spec file's directory; create the directory or fix the path",
                    ),
                    None => (
                        "the spec file's directory, the default `context`, cannot be read".to_owned(),
                        "set `context` to an existing directory",
                    ),
                };
                let diagnostic = self
                    .src
                    .diagnostic(
                        ErrorKind::ContextNotFound,
                        span,
                        "context",
                        message,
                        match e.kind() {
                            std::io::ErrorKind::NotFound => "no such directory",
                            std::io::ErrorKind::NotADirectory => "not a directory",
                            _ => "cannot be read",
                        },
                    )
                    .with_help(help)
                    .with_cause(e);
                self.push(diagnostic);
                None
            }
        }
    }
}

impl Checker<'_> {
    /// The spec's `ignore-file`: the default `.dockerignore`, none, or a file inside the
    /// context (whether it exists is the build's to say, as for other host paths).
    pub(super) fn ignore_file(
        &mut self,
        raw: Option<&Spanned<RawIgnoreFile>>,
        context: Option<&ContextDir>,
    ) -> Option<IgnoreFileSetting> {
        let Some(raw) = raw else {
            return Some(IgnoreFileSetting::Default);
        };
        match raw.get_ref() {
            RawIgnoreFile::Enabled(true) => Some(IgnoreFileSetting::Default),
            RawIgnoreFile::Enabled(false) => Some(IgnoreFileSetting::Off),
            RawIgnoreFile::Path(s) => {
                let checked = host_path(s, context, false).and_then(|p| {
                    if p.as_os_str().is_empty() {
                        Err(Problem::invalid("names the build context directory itself")
                            .help(r#"name a file, like ".dockerignore""#))
                    } else {
                        Ok(p)
                    }
                });
                match checked {
                    Ok(path) => Some(IgnoreFileSetting::File(path)),
                    Err(problem) => {
                        self.problem(raw.span(), "ignore-file", &format!("{s:?}"), problem);
                        None
                    }
                }
            }
        }
    }
}

/// Lexically normalise `path`: drop `.`, apply `..`. `None` when a relative path climbs above
/// its start; `..` at the root of an absolute path stays at the root.
pub(super) fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => out.push(component),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth > 0 {
                    out.pop();
                    depth -= 1;
                } else if !path.is_absolute() {
                    return None;
                }
            }
            Component::Normal(name) => {
                out.push(name);
                depth += 1;
            }
        }
    }
    Some(out)
}

/// A host path (`path`, `tar`) as a normalised path relative to the context.
pub(super) fn host_path(
    s: &str,
    context: Option<&ContextDir>,
    is_tar: bool,
) -> Result<PathBuf, Problem> {
    let escapes = |reason: &str| Problem {
        kind: ErrorKind::EscapesContext,
        reason: reason.to_owned(),
        help: Some(
            "host paths are relative to the build context and stay inside it; to use files from \
             elsewhere, set `context` to a directory that holds them all"
                .to_owned(),
        ),
    };
    if s.is_empty() {
        return Err(Problem::invalid("empty path").help(r#"use "." for the whole build context"#));
    }
    if s.contains('\0') {
        return Err(Problem::invalid("contains a NUL character"));
    }
    let path = Path::new(s);
    let relative = if path.is_absolute() {
        let normal = normalize(path).unwrap_or_default();
        match context {
            None => PathBuf::new(),
            Some(context) => match normal
                .strip_prefix(&context.canonical)
                .or_else(|_| normal.strip_prefix(&context.lexical))
            {
                Ok(relative) => relative.to_path_buf(),
                Err(_) => return Err(escapes("outside the build context")),
            },
        }
    } else {
        normalize(path).ok_or_else(|| escapes("`..` leaves the build context"))?
    };
    if is_tar && relative.as_os_str().is_empty() {
        return Err(Problem::invalid(
            "names the build context directory itself, not a tar file",
        ));
    }
    if let Some(context) = context {
        if let Some((link, target)) = escaping_link(&context.canonical, &relative) {
            return Err(Problem {
                kind: ErrorKind::EscapesContext,
                reason: format!(
                    "`{}` is a symlink to `{}`, outside the build context `{}`",
                    link.display(),
                    target.display(),
                    context.canonical.display()
                ),
                help: Some(
                    "only files inside the build context can be added: copy the file in, \
                     or set `context` to a directory that holds it"
                        .to_owned(),
                ),
            });
        }
    }
    Ok(relative)
}

/// The first symlink along `relative` (a normalised path below the canonical directory `root`)
/// that leads outside `root`, as the path of the link relative to `root` and its resolved
/// target. Missing paths, dangling links and unreadable directories are left to the reader of
/// the path (which reports them); `None` when every link stays inside.
pub(super) fn escaping_link(root: &Path, relative: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut prefix = PathBuf::new();
    for component in relative.components() {
        prefix.push(component);
        let full = root.join(&prefix);
        let meta = std::fs::symlink_metadata(&full).ok()?;
        if !meta.file_type().is_symlink() {
            continue;
        }
        let target = std::fs::canonicalize(&full).ok()?;
        if !target.starts_with(root) {
            return Some((prefix, target));
        }
    }
    None
}

/// An image path: normalised, without the leading `/`, and whether it was written with a
/// trailing `/`.
pub(super) fn check_dest(s: &str, source: Option<&str>) -> Result<(String, bool), Problem> {
    if !s.starts_with('/') {
        return Err(Problem::invalid("not an absolute path").help(format!(
            "paths in the image are absolute: `dest = \"/{}\"`",
            s.trim_start_matches("./")
        )));
    }
    if s.contains('\0') {
        return Err(Problem::invalid("contains a NUL character"));
    }
    check_no_control(s)?;
    let mut parts: Vec<&str> = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(Problem::invalid("`..` climbs above the image root")
                        .help("remove the `..`: `dest` is an absolute path inside the image"));
                }
            }
            part => parts.push(part),
        }
    }
    let dest = parts.join("/");
    let is_dir = s.ends_with('/') || s.ends_with("/.") || s.ends_with("/..");
    let what = match source {
        Some("content") => "an inline file",
        Some("symlink") => "a symlink",
        Some("cargo") => "a binary",
        _ => return Ok((dest, is_dir)),
    };
    if dest.is_empty() {
        return Err(
            Problem::invalid(format!("{what} cannot replace the image root directory"))
                .help(r#"give the file's full path, e.g. `dest = "/usr/local/bin/app"`"#),
        );
    }
    if is_dir && source != Some("cargo") {
        return Err(Problem::invalid(format!(
            "ends with `/` (a directory), but {what} needs a file name"
        ))
        .help(format!("name the file: `dest = \"/{dest}/NAME\"`")));
    }
    Ok((dest, is_dir))
}

/// The first component of an image path that is reserved for whiteouts (`.wh.` prefix).
pub(super) fn whiteout_component(path: &str) -> Option<&str> {
    path.split('/').find(|c| c.starts_with(WHITEOUT_PREFIX))
}

/// Refuses a control character (a newline, a tab...) in an image path.
pub(super) fn check_no_control(s: &str) -> Result<(), Problem> {
    match s.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(Problem::invalid(format!(
            "contains the control character U+{:04X}",
            u32::from(c)
        ))
        .help("image paths are names a shell and a runtime can show: remove the character (in TOML, `\\n` or `\\t` in a \"...\" string is one)")),
    }
}

pub(super) fn check_absolute(s: &str, what: &str) -> Result<(), Problem> {
    check_no_control(s)?;
    if s.starts_with('/') {
        Ok(())
    } else {
        Err(Problem::invalid("not an absolute path").help(format!(
            "`{what}` paths are absolute in the image: \"/{s}\""
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(
            normalize(Path::new("a/./b/../c")),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(normalize(Path::new("../x")), None);
        assert_eq!(normalize(Path::new("a/../..")), None);
        assert_eq!(normalize(Path::new(".")), Some(PathBuf::new()));
        assert_eq!(
            normalize(Path::new("/a/../../b")),
            Some(PathBuf::from("/b"))
        );
    }

    #[test]
    fn dest_normalisation() {
        let dest = |s| check_dest(s, Some("path")).map_err(|p| p.reason);
        assert_eq!(dest("/a/../b").ok(), Some(("b".to_owned(), false)));
        assert_eq!(dest("/srv/www/").ok(), Some(("srv/www".to_owned(), true)));
        assert_eq!(
            dest("//usr//./bin").ok(),
            Some(("usr/bin".to_owned(), false))
        );
        assert_eq!(dest("/").ok(), Some((String::new(), true)));
        assert!(dest("/../etc").is_err());
        assert!(dest("etc").is_err());
    }
}
