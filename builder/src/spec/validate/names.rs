//! The image's name (`name`, behind `registry` when there is one) and its `tags` (templates
//! such as `{version}` expanded first). Both are checked by the reference grammar of
//! [`crate::types::reference`]; the spec only words the rule broken as its own message, with a
//! hint.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::{Checker, Problem};
use crate::spec::error::ErrorKind;
use crate::spec::parse::missing_key_help;
use crate::types::reference::{self, ComponentError, NameError, TagError};

impl Checker<'_> {
    /// The image name: `name` (or the inherited one), behind `registry` if there is one.
    pub(super) fn name(
        &mut self,
        name: Option<&Spanned<String>>,
        registry: Option<&Spanned<String>>,
    ) -> Option<String> {
        let given = match (name, &self.inherited.name) {
            (Some(name), _) => Some((name.get_ref().clone(), name.span(), "name")),
            (None, Some(default)) => Some((default.clone(), 0..0, "name")),
            (None, None) => None,
        };
        let Some((name, span, key)) = given else {
            self.error(
                ErrorKind::MissingKey,
                0..0,
                "name",
                "missing required key `name`".to_owned(),
                "`name` is required",
            )
            .help = missing_key_help("name");
            return None;
        };
        let spanned = Spanned::new(span, name.clone());
        self.check(&spanned, key, check_name)?;
        let registry = match registry {
            Some(r) => Some((r.get_ref().trim_end_matches('/').to_owned(), r.span())),
            None => self
                .inherited
                .registry
                .clone()
                .map(|r| (r.trim_end_matches('/').to_owned(), 0..0)),
        };
        let Some((registry, span)) = registry else {
            return Some(name);
        };
        let full = format!("{registry}/{name}");
        let spanned = Spanned::new(span, registry.clone());
        self.check(&spanned, "registry", |_| {
            check_name(&full).map_err(|p| {
                Problem::invalid(format!("`{full}` is not a valid image name: {}", p.reason)).help(
                    "`registry` is a registry host with an optional namespace, e.g. \"ghcr.io/acme\"",
                )
            })
        })?;
        Some(full)
    }

    /// `cache-from` / `cache-to`: registry repositories (`registry/repository`), each read
    /// with the one reference grammar; an error for each bad one.
    pub(super) fn repositories(
        &mut self,
        list: Option<&Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Vec<String> {
        let Some(list) = list else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in list.get_ref().iter().enumerate() {
            let checked = self.check(item, &format!("{key}[{i}]"), |s| {
                crate::types::Reference::parse(s)
                    .map(|_| s.to_owned())
                    .map_err(|e| {
                        Problem::invalid(format!("not a registry repository: {e}")).help(
                            r#"give a repository like "ghcr.io/acme/cache" or "127.0.0.1:5000/cache""#,
                        )
                    })
            });
            out.extend(checked);
        }
        out
    }

    pub(super) fn tags(
        &mut self,
        tags: Option<&Spanned<Vec<Spanned<String>>>>,
        dir: &Path,
    ) -> Option<Vec<String>> {
        let Some(tags) = tags else {
            return Some(vec!["latest".to_owned()]);
        };
        // Expand templates (`{version}`) first; each tag is then checked as written.
        let mut expanded = Vec::new();
        let mut ok = true;
        for (i, tag) in tags.get_ref().iter().enumerate() {
            let key = format!("tags[{i}]");
            if !tag.get_ref().contains('{') {
                expanded.push(tag.clone());
                continue;
            }
            let result = self.inherited.vars.expand(tag.get_ref(), dir);
            match self.check(tag, &key, |_| result.map_err(Problem::invalid)) {
                Some(value) => {
                    let spanned = Spanned::new(tag.span(), value.clone());
                    let template = tag.get_ref().clone();
                    ok &= self
                        .check(&spanned, &key, |t| {
                            check_tag(t).map_err(|p| Problem {
                                reason: format!("{template:?} expands to {t:?}: {}", p.reason),
                                ..p
                            })
                        })
                        .is_some();
                    expanded.push(spanned);
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let tags = &Spanned::new(tags.span(), expanded);
        if tags.get_ref().is_empty() {
            self.error(
                ErrorKind::InvalidValue,
                tags.span(),
                "tags",
                "invalid `tags`: the list is empty".to_owned(),
                "no tags",
            )
            .help =
                Some(r#"list at least one tag, or remove `tags` to get `["latest"]`"#.to_owned());
            return None;
        }
        let mut ok = true;
        let mut seen: HashMap<&str, Range<usize>> = HashMap::new();
        for (i, tag) in tags.get_ref().iter().enumerate() {
            let key = format!("tags[{i}]");
            ok &= self.check(tag, &key, check_tag).is_some();
            if let Some(first) = seen.get(tag.get_ref().as_str()) {
                let diagnostic = self
                    .src
                    .diagnostic(
                        ErrorKind::Duplicate,
                        tag.span(),
                        &key,
                        format!("duplicate tag {:?} in `tags`", tag.get_ref()),
                        "listed again here",
                    )
                    .with_label(self.src, first.clone(), "first listed here")
                    .with_help("remove the repeated tag");
                self.push(diagnostic);
                ok = false;
            } else {
                seen.insert(tag.get_ref(), tag.span());
            }
        }
        ok.then(|| tags.get_ref().iter().map(|t| t.get_ref().clone()).collect())
    }
}

/// An image name (`name`, or `registry/name`), by the reference grammar of [`reference`].
pub(super) fn check_name(name: &str) -> Result<(), Problem> {
    reference::check_name(name).map_err(|e| match e {
        NameError::Empty => {
            Problem::invalid("empty").help(r#"name the image, e.g. `name = "hello"`"#)
        }
        NameError::TooLong => Problem::invalid(format!(
            "longer than {} characters",
            reference::MAX_NAME_LENGTH
        )),
        NameError::Registry(domain) => {
            Problem::invalid(format!("`{domain}` is not a registry host[:port]"))
        }
        NameError::Component(_, ComponentError::Empty) => {
            Problem::invalid("empty path component (`//`, or a `/` at the start or end)")
        }
        NameError::Component(_, ComponentError::Uppercase) => {
            Problem::invalid("upper-case letters are not allowed").help(format!(
                "image names are lower-case: `name = {:?}`",
                name.to_ascii_lowercase()
            ))
        }
        NameError::Component(_, ComponentError::Char(c)) => Problem::invalid(format!(
            "`{c}` is not allowed"
        ))
        .help("path components are lower-case letters and digits joined by `.`, `_`, `__` or `-`"),
        NameError::Component(component, ComponentError::Separator) => Problem::invalid(format!(
            "`{component}` is not a valid path component"
        ))
        .help(
            "path components are lower-case letters and digits joined by single `.`, `_`, `__` or \
             runs of `-`, and start and end with a letter or digit",
        ),
    })
}

/// A tag (`tags`, the tag of an `oci:` base, `--tag`), by the reference grammar of
/// [`reference`].
pub(super) fn check_tag(tag: &str) -> Result<(), Problem> {
    reference::check_tag(tag).map_err(|e| match e {
        TagError::Empty => Problem::invalid("empty"),
        TagError::TooLong => Problem::invalid(format!(
            "longer than {} characters",
            reference::MAX_TAG_LENGTH
        )),
        TagError::Char(c) => Problem::invalid(format!("`{c}` is not allowed in a tag"))
            .help("tags are letters, digits, `_`, `.` and `-`, e.g. \"1.2.0\" or \"latest\""),
        TagError::Start => Problem::invalid("starts with `.` or `-`"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_distribution_grammar() {
        for good in [
            "hello",
            "acme/hello",
            "ghcr.io/acme/hello",
            "localhost:5000/a/b",
            "a.b_c__d---e",
            "registry.example.com:443/x",
            "0",
        ] {
            assert!(check_name(good).is_ok(), "{good} should be valid");
        }
        for bad in [
            "",
            "Hello",
            "a//b",
            "a/",
            "-a",
            "a-",
            "a___b",
            "a..b",
            "a:b",
            "a b",
            "ex ample.com/x",
            "a._b",
        ] {
            assert!(check_name(bad).is_err(), "{bad} should be invalid");
        }
    }
}
