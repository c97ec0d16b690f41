//! `debian` entries (suite, packages, components) and the `[debian]` table (mirrors, keyring).

use super::{Checker, ContextDir, ErrorKind, Problem};
use crate::spec::model::{DebianSettings, DebianSource};
use crate::spec::raw::{RawDebian, RawDebianSettings};
use toml::Spanned;

impl Checker<'_> {
    pub(super) fn debian(&mut self, raw: &RawDebian, key: &str) -> Option<DebianSource> {
        let suite = self
            .check(&raw.suite, &format!("{key}.suite"), |s| {
                check_debian_name(s, "suite")
            })
            .map(|()| raw.suite.get_ref().clone());
        let packages =
            self.debian_names(Some(&raw.packages), &format!("{key}.packages"), "package");
        let components = match &raw.components {
            Some(list) => self.debian_names(Some(list), &format!("{key}.components"), "component"),
            None => Some(vec!["main".to_string()]),
        };
        Some(DebianSource {
            suite: suite?,
            packages: packages?,
            components: components?,
        })
    }

    /// A non-empty list of distinct Debian names.
    fn debian_names(
        &mut self,
        list: Option<&Spanned<Vec<Spanned<String>>>>,
        key: &str,
        what: &str,
    ) -> Option<Vec<String>> {
        let list = list?;
        if list.get_ref().is_empty() {
            self.error(
                ErrorKind::InvalidValue,
                list.span(),
                key,
                format!("`{key}` is empty"),
                "no names",
            )
            .help = Some(format!(
                "name at least one {what}, e.g. `[\"ca-certificates\"]`"
            ));
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        let mut ok = true;
        for (i, name) in list.get_ref().iter().enumerate() {
            let item = format!("{key}[{i}]");
            match self.check(name, &item, |s| check_debian_name(s, what)) {
                Some(()) if out.contains(name.get_ref()) => {
                    self.error(
                        ErrorKind::Duplicate,
                        name.span(),
                        &item,
                        format!("`{item}` repeats {:?}", name.get_ref()),
                        "listed twice",
                    )
                    .help = Some("remove the repeated name".into());
                    ok = false;
                }
                Some(()) => out.push(name.get_ref().clone()),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn debian_settings(
        &mut self,
        raw: Option<&RawDebianSettings>,
        context: Option<&ContextDir>,
    ) -> Option<DebianSettings> {
        let Some(raw) = raw else {
            return Some(DebianSettings::default());
        };
        let mut ok = true;
        let mut mirrors = Vec::new();
        if let Some(list) = &raw.mirrors {
            for (i, url) in list.get_ref().iter().enumerate() {
                match self.check(url, &format!("debian.mirrors[{i}]"), check_mirror) {
                    Some(url) => mirrors.push(url),
                    None => ok = false,
                }
            }
        }
        let keyring = match &raw.keyring {
            Some(path) => {
                let base = context.map(|c| c.canonical.clone());
                let checked = self.check(path, "debian.keyring", |s| {
                    if s.is_empty() || s.contains('\0') {
                        return Err(Problem::invalid("empty path"));
                    }
                    let p = std::path::Path::new(s);
                    Ok(if p.is_absolute() {
                        p.to_path_buf()
                    } else {
                        base.clone().unwrap_or_default().join(p)
                    })
                });
                match checked {
                    Some(p) => Some(p),
                    None => {
                        ok = false;
                        None
                    }
                }
            }
            None => None,
        };
        ok.then_some(DebianSettings { mirrors, keyring })
    }
}

/// A suite, component or package name: `[A-Za-z0-9][A-Za-z0-9+._/-]*` (Debian package names
/// are lower-case; suites may hold `/` as `bookworm/updates` once did).
pub(super) fn check_debian_name(s: &str, what: &str) -> Result<(), Problem> {
    let help = || {
        format!("a Debian {what} name is letters, digits and `+._-`, e.g. `bookworm`, `main`, `ca-certificates`")
    };
    let mut chars = s.chars();
    match chars.next() {
        None => Err(Problem::invalid("empty").help(help())),
        Some(c) if !c.is_ascii_alphanumeric() => {
            Err(Problem::invalid(format!("starts with `{c}`")).help(help()))
        }
        _ => match chars.find(|c| !(c.is_ascii_alphanumeric() || "+._/-".contains(*c))) {
            Some(c) => Err(Problem::invalid(format!("contains `{c}`")).help(help())),
            None if s.contains("..") => Err(Problem::invalid("contains `..`").help(help())),
            None => Ok(()),
        },
    }
}

/// A mirror URL: `http://`, `https://` or `file:`, without a trailing `/`.
fn check_mirror(s: &str) -> Result<String, Problem> {
    let ok = (s.starts_with("http://") && s.len() > 7)
        || (s.starts_with("https://") && s.len() > 8)
        || (s.starts_with("file:") && s.len() > 5);
    if !ok || s.contains(char::is_whitespace) {
        return Err(Problem::invalid("not an http, https or file URL")
            .help("a mirror is the archive's root URL, e.g. `http://deb.debian.org/debian`"));
    }
    Ok(s.trim_end_matches('/').to_string())
}
