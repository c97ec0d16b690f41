//! Templates in tags: `{version}`, `{git_sha}`, `{git_short_sha}`.
//!
//! A tag such as `"{version}"` or `"v{version}-{git_short_sha}"` is expanded while the spec is
//! validated, with the values of the cargo package the image belongs to and of the git commit
//! checked out in the build context. The values are found only when a tag uses them, so a spec
//! without templates never runs `cargo metadata` or `git`. The expanded tag must still be a valid
//! tag; a template whose value is unknown (no package, not a git checkout) is an error that says
//! why.

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
}

impl Vars {
    /// Values for a known package version (a workspace member); git is asked in `dir` if needed.
    pub fn with_version(version: &str) -> Vars {
        Vars {
            version: Some(Ok(version.to_owned())),
            git_sha: None,
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
                    sha.chars().take(7).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vars {
        Vars {
            version: Some(Ok("1.2.3".into())),
            git_sha: Some(Ok("0123456789abcdef0123456789abcdef01234567".into())),
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
        };
        let e = none.expand("{git_short_sha}", dir).unwrap_err();
        assert_eq!(e, "`{git_short_sha}` is unknown: not a checkout");
    }

    #[test]
    fn git_sha_outside_a_checkout_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Vars::default().expand("{git_sha}", tmp.path()).unwrap_err();
        assert!(e.contains("not in a git checkout"), "{e}");
    }
}
