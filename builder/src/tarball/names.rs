//! The path-safety rules for the names in a tar: member names, hard link targets and symbolic
//! link targets, normalised or refused here and nowhere else.
//!
//! Two policies exist, because a member lands in one of two places:
//! - [`NamePolicy::Layer`]: the member is a path of an image filesystem (a tarball imported as a
//!   layer, a layer of a stage). Layers are rooted at `/`, so a leading `/` is dropped like a
//!   leading `./`; `..` is refused; the name must be UTF-8.
//! - [`NamePolicy::Extract`]: the member is written to the host, under a scratch directory (an
//!   OCI or Docker archive unpacked as a base). Absolute names, `..` and NUL bytes are refused,
//!   and a symbolic link must resolve inside the archive ([`resolve_symlink`]); a name that is
//!   not UTF-8 is read lossily (its invalid bytes replaced).

use std::fmt;

/// Where the members of a tar land, and so which names are refused (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePolicy {
    /// Paths of an image filesystem: leading `/` dropped, `..` refused, UTF-8 required.
    Layer,
    /// Files written under a directory of the host: absolute names, `..` and NUL refused.
    Extract,
}

/// Why a name (or link target) is refused. Displayed as the reason of a refused archive entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// An absolute member name ([`NamePolicy::Extract`]).
    Absolute,
    /// A `..` component.
    ParentDir,
    /// A NUL byte ([`NamePolicy::Extract`]).
    Nul,
    /// A symbolic link to an absolute path ([`resolve_symlink`]).
    AbsoluteLink,
    /// A symbolic link whose `..` climb above the archive's root ([`resolve_symlink`]).
    LinkOutside,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Absolute => "its name is absolute",
            NameError::ParentDir => "its name climbs out of the archive with `..`",
            NameError::Nul => "its name holds a NUL byte",
            NameError::AbsoluteLink => "it is a symbolic link to an absolute path",
            NameError::LinkOutside => "it is a symbolic link pointing outside the archive",
        })
    }
}

/// Normalises a member name (or a hard link target) under `policy`: `/`-separated, `.` and empty
/// components dropped, so the root itself is `""`; what the policy refuses is an error.
pub fn normalise(name: &str, policy: NamePolicy) -> Result<String, NameError> {
    let extract = policy == NamePolicy::Extract;
    if extract && name.starts_with('/') {
        return Err(NameError::Absolute);
    }
    let mut out = String::with_capacity(name.len());
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(NameError::ParentDir),
            c if extract && c.contains('\0') => return Err(NameError::Nul),
            c => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    Ok(out)
}

/// A path of an image filesystem relative to its root ([`NamePolicy::Layer`]): `./` and leading
/// `/` dropped, `.` and empty components removed. `None` when a component is `..`.
pub fn normalise_member(name: &str) -> Option<String> {
    normalise(name, NamePolicy::Layer).ok()
}

/// Resolves a symbolic link's `target`, relative to the directory of `entry` (normalised), to a
/// normalised name inside the archive ([`NamePolicy::Extract`]): absolute targets and targets
/// that climb above the root are refused.
pub fn resolve_symlink(entry: &str, target: &str) -> Result<String, NameError> {
    if target.starts_with('/') {
        return Err(NameError::AbsoluteLink);
    }
    let mut parts: Vec<&str> = entry.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(NameError::LinkOutside);
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalised() {
        assert_eq!(normalise_member("./a/b").as_deref(), Some("a/b"));
        assert_eq!(
            normalise_member("/etc//passwd").as_deref(),
            Some("etc/passwd")
        );
        assert_eq!(normalise_member("dir/").as_deref(), Some("dir"));
        assert_eq!(normalise_member("./").as_deref(), Some(""));
        assert_eq!(normalise_member("a/../../b"), None);
        assert_eq!(normalise_member(".."), None);
    }

    #[test]
    fn extracted_names_must_stay_inside_the_archive() {
        let x = |n| normalise(n, NamePolicy::Extract);
        assert_eq!(x("./blobs//sha256/"), Ok("blobs/sha256".to_owned()));
        assert_eq!(x("/etc/passwd"), Err(NameError::Absolute));
        assert_eq!(x("a/../b"), Err(NameError::ParentDir));
        assert_eq!(x("a\0b"), Err(NameError::Nul));
        assert_eq!(
            normalise("a\0b", NamePolicy::Layer),
            Ok("a\0b".to_owned()),
            "layers keep what they always kept"
        );
    }

    #[test]
    fn symlinks_resolve_inside_the_archive() {
        assert_eq!(resolve_symlink("a/b/link", "../c"), Ok("a/c".to_owned()));
        assert_eq!(resolve_symlink("link", "./x/./y"), Ok("x/y".to_owned()));
        assert_eq!(
            resolve_symlink("a/link", "../../x"),
            Err(NameError::LinkOutside)
        );
        assert_eq!(
            resolve_symlink("link", "/etc"),
            Err(NameError::AbsoluteLink)
        );
    }
}
