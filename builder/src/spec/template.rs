//! Templates in tags: `{version}`, `{git_sha}`, `{git_short_sha}`.
//!
//! A tag such as `"{version}"` or `"v{version}-{git_short_sha}"` is expanded while the spec is
//! validated, with the values of the cargo package the image belongs to and of the git commit
//! checked out in the build context. The values are found only when a tag uses them, so a spec
//! without templates never runs `cargo metadata` or `git`. The expanded tag must still be a valid
//! tag; a template whose value is unknown (no package, not a git checkout) is an error that says
//! why.
//!
//! `{git_short_sha}` of a work tree whose tracked files differ from the commit (what
//! `git status --untracked-files=no` reports) gets a `-dirty` suffix, as `git describe --dirty`
//! does, so an image built from uncommitted changes is never tagged as the commit. `{git_sha}`
//! stays the bare commit id (it is also the revision annotation).
//!
//! `--tag` values on the command line are expanded the same way ([`expand_tag`]).

use std::path::Path;
use std::process::{Command, Stdio};

/// The names a template may use.
pub(crate) const NAMES: [&str; 3] = ["version", "git_sha", "git_short_sha"];

/// Values of the templates, found lazily.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vars {
    /// The cargo package's version, or why there is none.
    pub version: Option<Result<String, String>>,
    /// The full commit id checked out, or why there is none.
    pub git_sha: Option<Result<String, String>>,
    /// Whether the work tree's tracked files differ from that commit.
    pub dirty: Option<bool>,
}

impl Vars {
    /// Values for a known package version (a workspace member); git is asked in `dir` if needed.
    pub fn with_version(version: &str) -> Vars {
        Vars {
            version: Some(Ok(version.to_owned())),
            git_sha: None,
            dirty: None,
        }
    }

    fn version(&mut self, dir: &Path) -> Result<String, String> {
        self.version
            .get_or_insert_with(|| package_version(dir))
            .clone()
    }

    fn git_sha(&mut self, dir: &Path) -> Result<String, String> {
        self.git_sha.get_or_insert_with(|| git_head(dir)).clone()
    }

    fn dirty(&mut self, dir: &Path) -> bool {
        *self.dirty.get_or_insert_with(|| git_dirty(dir))
    }

    /// Expands every `{name}` in `text`; `dir` is where the package and the checkout are looked
    /// for. The error says which template failed and why.
    pub fn expand(&mut self, text: &str, dir: &Path) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err("a `{` is not closed by `}`".to_owned());
            };
            let name = &after[..close];
            let value = match name {
                "version" => self
                    .version(dir)
                    .map_err(|why| format!("`{{version}}` is unknown: {why}"))?,
                "git_sha" => self
                    .git_sha(dir)
                    .map_err(|why| format!("`{{git_sha}}` is unknown: {why}"))?,
                "git_short_sha" => {
                    let sha = self
                        .git_sha(dir)
                        .map_err(|why| format!("`{{git_short_sha}}` is unknown: {why}"))?;
                    let short: String = sha.chars().take(7).collect();
                    if self.dirty(dir) {
                        format!("{short}-dirty")
                    } else {
                        short
                    }
                }
                other => {
                    let known: Vec<String> = NAMES.iter().map(|n| format!("`{{{n}}}`")).collect();
                    return Err(format!(
                        "unknown template `{{{other}}}`; templates are {}",
                        known.join(", ")
                    ));
                }
            };
            out.push_str(&value);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Expands the templates of a tag given on the command line (`--tag`) for the image of `spec`:
/// `{version}` is the version its `Cargo.toml` gives (the `org.opencontainers.image.version`
/// annotation a workspace image carries, else the package in the spec's context), git is asked
/// in the context. The result is checked like a spec's tag.
pub fn expand_tag(spec: &crate::spec::ImageSpec, tag: &str) -> Result<String, String> {
    let mut vars = match spec.annotations.get("org.opencontainers.image.version") {
        Some(version) => Vars::with_version(version),
        None => Vars::default(),
    };
    let expanded = vars.expand(tag, &spec.context)?;
    crate::spec::validate_tag(&expanded)?;
    Ok(expanded)
}

/// The version of the cargo package whose `Cargo.toml` is in `dir` (or the workspace's only
/// package).
fn package_version(dir: &Path) -> Result<String, String> {
    let meta = crate::cargo::metadata(dir).map_err(|e| {
        format!(
            "{} is not in a cargo project ({})",
            dir.display(),
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    if let Some(p) = meta.package_in(dir) {
        return Ok(p.version.clone());
    }
    match meta.packages.as_slice() {
        [only] => Ok(only.version.clone()),
        _ => Err(format!(
            "{} has no Cargo.toml and its workspace has several packages; set `context` to the \
             package's directory",
            dir.display()
        )),
    }
}

/// The commit checked out in the git work tree that holds `dir` (its full sha-1 or sha-256 id):
/// the one git lookup of the crate, for the `{git_sha}` templates and for the build's
/// `org.opencontainers.image.revision` annotation.
pub(crate) fn git_head(dir: &Path) -> Result<String, String> {
    let output = Command::new("git")
        .args(["rev-parse", "--verify", "HEAD"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("git could not be run ({e})"))?;
    let sha = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let full_id = sha.len() == 40 || sha.len() == 64;
    if output.status.success() && full_id && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha)
    } else {
        Err(format!(
            "{} is not in a git checkout with a commit",
            dir.display()
        ))
    }
}

/// Whether the tracked files of the git work tree holding `dir` differ from its commit (false
/// when git cannot tell: outside a checkout the `{git_*}` templates fail anyway).
fn git_dirty(dir: &Path) -> bool {
    Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && !out.stdout.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vars {
        Vars {
            version: Some(Ok("1.2.3".into())),
            git_sha: Some(Ok("0123456789abcdef0123456789abcdef01234567".into())),
            dirty: Some(false),
        }
    }

    #[test]
    fn expands_every_template() {
        let mut v = known();
        let dir = Path::new(".");
        assert_eq!(v.expand("latest", dir).unwrap(), "latest");
        assert_eq!(v.expand("{version}", dir).unwrap(), "1.2.3");
        assert_eq!(
            v.expand("v{version}-{git_short_sha}", dir).unwrap(),
            "v1.2.3-0123456"
        );
        assert_eq!(
            v.expand("{git_sha}", dir).unwrap(),
            "0123456789abcdef0123456789abcdef01234567"
        );
    }

    #[test]
    fn unknown_and_unavailable_templates_say_why() {
        let mut v = known();
        let dir = Path::new(".");
        let e = v.expand("{branch}", dir).unwrap_err();
        assert!(e.contains("unknown template `{branch}`"), "{e}");
        assert!(e.contains("`{version}`"), "{e}");
        assert!(v
            .expand("{version", dir)
            .unwrap_err()
            .contains("not closed"));
        let mut none = Vars {
            version: Some(Err("no package".into())),
            git_sha: Some(Err("not a checkout".into())),
            dirty: None,
        };
        let e = none.expand("{git_short_sha}", dir).unwrap_err();
        assert_eq!(e, "`{git_short_sha}` is unknown: not a checkout");
    }

    #[test]
    fn a_dirty_tree_gives_the_short_sha_a_suffix() {
        let mut v = Vars {
            dirty: Some(true),
            ..known()
        };
        let dir = Path::new(".");
        assert_eq!(v.expand("{git_short_sha}", dir).unwrap(), "0123456-dirty");
        assert_eq!(
            v.expand("{git_sha}", dir).unwrap(),
            "0123456789abcdef0123456789abcdef01234567"
        );
    }

    #[test]
    fn dirty_means_a_changed_tracked_file() {
        let tmp = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "commit.gpgsign=false",
                ])
                .args(args)
                .current_dir(tmp.path())
                .output()
                .expect("git runs");
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(tmp.path().join("a"), "1").unwrap();
        git(&["add", "a"]);
        git(&["commit", "-q", "-m", "one"]);
        assert!(!git_dirty(tmp.path()));
        std::fs::write(tmp.path().join("untracked"), "x").unwrap();
        assert!(!git_dirty(tmp.path()), "untracked files do not count");
        std::fs::write(tmp.path().join("a"), "2").unwrap();
        assert!(git_dirty(tmp.path()));
        let short = Vars::default()
            .expand("{git_short_sha}", tmp.path())
            .unwrap();
        assert!(short.ends_with("-dirty") && short.len() == 13, "{short}");
    }

    #[test]
    fn git_sha_outside_a_checkout_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Vars::default().expand("{git_sha}", tmp.path()).unwrap_err();
        assert!(e.contains("not in a git checkout"), "{e}");
    }
}
