//! `[[layer]]` tables and their `add` entries: names, exactly one source per entry, where it
//! goes (`dest`), modes, owners, globs, symlink targets and an entry's platforms.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

use super::paths::{check_absolute, check_dest, host_path, whiteout_component};
use super::{Checker, ContextDir, Problem};
use crate::spec::error::ErrorKind;
use crate::spec::model::{EntrySpec, LayerSpec, Owner, Source};
use crate::spec::raw::{RawAdd, RawLayer, RawMode, SOURCES};

impl Checker<'_> {
    pub(super) fn layers(
        &mut self,
        raw: Vec<RawLayer>,
        prefix: &str,
        context: Option<&ContextDir>,
    ) -> Option<Vec<LayerSpec>> {
        let mut names: HashMap<String, Range<usize>> = HashMap::new();
        let mut layers = Vec::new();
        let mut ok = true;
        for (i, layer) in raw.into_iter().enumerate() {
            let key = format!("{prefix}layer[{i}]");
            let name_key = format!("{key}.name");
            ok &= self
                .check(&layer.name, &name_key, check_layer_name)
                .is_some();
            if let Some(first) = names.get(layer.name.get_ref()) {
                let diagnostic = self
                    .src
                    .diagnostic(
                        ErrorKind::Duplicate,
                        layer.name.span(),
                        &name_key,
                        format!(
                            "duplicate layer name {:?} in `{name_key}`",
                            layer.name.get_ref()
                        ),
                        "used again here",
                    )
                    .with_label(self.src, first.clone(), "first used here")
                    .with_help(
                        "layer names are unique: rename one of the layers, or merge their entries",
                    );
                self.push(diagnostic);
                ok = false;
            } else {
                names.insert(layer.name.get_ref().clone(), layer.name.span());
            }
            let adds: &[Spanned<RawAdd>] = layer.add.as_ref().map_or(&[], |a| a.get_ref());
            let mut remove = Vec::new();
            for (j, path) in layer
                .remove
                .as_ref()
                .map_or(&[][..], |r| r.get_ref())
                .iter()
                .enumerate()
            {
                match self.check(path, &format!("{key}.remove[{j}]"), |s| {
                    let (p, _) = check_dest(s, Some("remove"))?;
                    if p.is_empty() {
                        return Err(Problem::invalid("cannot remove the image root")
                            .help("name a path below `/`"));
                    }
                    if let Some(name) = whiteout_component(&p) {
                        return Err(Problem::invalid(format!(
                            "`{name}` starts with `.wh.`, the prefix of OCI whiteouts, \
                             so no image can hold such a path"
                        ))
                        .help("name the path to delete itself: `remove` writes its whiteout"));
                    }
                    Ok(p)
                }) {
                    Some(p) => remove.push(p),
                    None => ok = false,
                }
            }
            if adds.is_empty() && remove.is_empty() {
                let span = layer
                    .add
                    .as_ref()
                    .map(Spanned::span)
                    .unwrap_or_else(|| layer.name.span());
                self.error(
                    ErrorKind::InvalidValue,
                    span,
                    &format!("{key}.add"),
                    format!(
                        "invalid `{key}.add`: layer {:?} has no entries",
                        layer.name.get_ref()
                    ),
                    "no entries",
                )
                .help = Some(
                    "add at least one `[[layer.add]]` entry or a `remove`, or remove the layer"
                        .to_owned(),
                );
                ok = false;
            }
            let mut entries = Vec::new();
            for (j, add) in adds.iter().enumerate() {
                match self.entry(add, &format!("{key}.add[{j}]"), context) {
                    Some(entry) => entries.push(entry),
                    None => ok = false,
                }
            }
            layers.push(LayerSpec {
                name: layer.name.into_inner(),
                entries,
                remove,
            });
        }
        ok.then_some(layers)
    }

    pub(super) fn entry(
        &mut self,
        add: &Spanned<RawAdd>,
        key: &str,
        context: Option<&ContextDir>,
    ) -> Option<EntrySpec> {
        let raw = add.get_ref();
        let errors_before = self.errors.len();

        // Exactly one source.
        let present: Vec<(&str, Range<usize>)> = [
            ("path", raw.path.as_ref().map(Spanned::span)),
            ("content", raw.content.as_ref().map(Spanned::span)),
            ("dir", raw.dir.as_ref().map(Spanned::span)),
            ("symlink", raw.symlink.as_ref().map(Spanned::span)),
            ("tar", raw.tar.as_ref().map(Spanned::span)),
            ("cargo", raw.cargo.as_ref().map(Spanned::span)),
            ("debian", raw.debian.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(name, span)| span.map(|s| (name, s)))
        .collect();
        let source_name = match present.as_slice() {
            [] => {
                let list = SOURCES.map(|s| format!("`{s}`")).join(", ");
                self.error(
                    ErrorKind::MissingSource,
                    add.span(),
                    key,
                    format!("`{key}` has no content source"),
                    "no source in this entry",
                )
                .help = Some(format!("set exactly one of {list}"));
                None
            }
            [(name, _)] => Some(*name),
            [(first, first_span), (second, second_span), ..] => {
                let all = present
                    .iter()
                    .map(|(n, _)| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let diagnostic = self
                    .src
                    .diagnostic(
                        ErrorKind::ConflictingKeys,
                        second_span.clone(),
                        key,
                        format!("`{key}` has several content sources: {all}"),
                        format!("`{second}` is a second source"),
                    )
                    .with_label(self.src, first_span.clone(), &format!("`{first}` is the first"))
                    .with_help("each `[[layer.add]]` has exactly one source: split this one into an entry per source");
                self.push(diagnostic);
                None
            }
        };

        // Keys that only go with some sources.
        if let Some(source) = source_name {
            for (option, span) in [
                ("include", raw.include.as_ref().map(Spanned::span)),
                ("exclude", raw.exclude.as_ref().map(Spanned::span)),
            ] {
                if let (Some(span), false) = (span, matches!(source, "path" | "tar")) {
                    self.error(
                        ErrorKind::ConflictingKeys,
                        span,
                        &format!("{key}.{option}"),
                        format!("`{key}.{option}` only applies to `path` and `tar` sources, and this entry's source is `{source}`"),
                        "only for `path` and `tar`",
                    )
                    .help = Some(format!("remove `{option}`"));
                }
            }
            if source == "debian" {
                for (option, span) in [
                    (
                        "dest",
                        raw.dest
                            .as_ref()
                            .filter(|d| d.get_ref() != "/")
                            .map(Spanned::span),
                    ),
                    ("mode", raw.mode.as_ref().map(Spanned::span)),
                    ("dir-mode", raw.dir_mode.as_ref().map(Spanned::span)),
                ] {
                    if let Some(span) = span {
                        self.error(
                            ErrorKind::ConflictingKeys,
                            span,
                            &format!("{key}.{option}"),
                            format!("`{key}.{option}` does not apply to a `debian` entry: packages are installed at `/` with the modes they ship"),
                            "not for this source",
                        )
                        .help = Some(format!("remove `{option}`"));
                    }
                }
            }
            if let (Some(mode), "dir" | "symlink") = (&raw.mode, source) {
                let help = if source == "dir" {
                    "a directory's permissions are its `dir-mode`: rename `mode` to `dir-mode`"
                } else {
                    "symbolic links have no permissions of their own (always 0777): remove `mode`"
                };
                self.error(
                    ErrorKind::ConflictingKeys,
                    mode.span(),
                    &format!("{key}.mode"),
                    format!("`{key}.mode` does not apply to a `{source}` entry"),
                    "not for this source",
                )
                .help = Some(help.to_owned());
            }
        }

        // The destination.
        let dest_key = format!("{key}.dest");
        let dest = match (&raw.dest, source_name) {
            (Some(dest), _) => self.check(dest, &dest_key, |s| check_dest(s, source_name)),
            (None, Some("tar" | "debian")) => Some((String::new(), true)),
            (None, _) => {
                self.error(
                    ErrorKind::MissingKey,
                    add.span(),
                    &dest_key,
                    format!("missing required key `{dest_key}`"),
                    "`dest` is missing in this entry",
                )
                .help = Some(
                    r#"say where the source goes in the image, e.g. `dest = "/usr/local/bin/app"`"#
                        .to_owned(),
                );
                None
            }
        };

        let mode = raw
            .mode
            .as_ref()
            .and_then(|m| self.mode(m, &format!("{key}.mode")));
        let dir_mode = raw
            .dir_mode
            .as_ref()
            .and_then(|m| self.mode(m, &format!("{key}.dir-mode")));
        let owner = match &raw.owner {
            Some(owner) => self.check(owner, &format!("{key}.owner"), check_owner),
            None => Some(Owner::default()),
        };
        let include = self.globs(raw.include.as_ref(), &format!("{key}.include"));
        let exclude = self.globs(raw.exclude.as_ref(), &format!("{key}.exclude"));
        let platforms = self.entry_platforms(raw.platforms.as_ref(), &format!("{key}.platforms"));

        if let (Some(stage), Some(source)) = (&raw.from_stage, source_name) {
            if source != "path" {
                self.error(
                    ErrorKind::ConflictingKeys,
                    stage.span(),
                    &format!("{key}.from-stage"),
                    format!("`{key}.from-stage` only applies to `path` sources, and this entry's source is `{source}`"),
                    "only for `path`",
                )
                .help = Some("copy out of a stage with `from-stage = \"NAME\"` and `path = \"/in/the/stage\"`".to_owned());
            }
        }
        let source = match source_name? {
            "path" if raw.from_stage.is_some() => {
                let stage = raw.from_stage.as_ref()?;
                self.check(stage, &format!("{key}.from-stage"), check_layer_name)?;
                let path = raw.path.as_ref()?;
                let (path, _) = self.check(path, &format!("{key}.path"), |s| {
                    check_absolute(s, "a path in the stage")?;
                    check_dest(s, Some("path"))
                })?;
                Source::Stage {
                    stage: stage.get_ref().clone(),
                    path,
                    include,
                    exclude,
                }
            }
            "path" => {
                let path = raw.path.as_ref()?;
                let path = self.check(path, &format!("{key}.path"), |s| {
                    host_path(s, context, false)
                })?;
                Source::Path {
                    path,
                    include,
                    exclude,
                }
            }
            "content" => Source::Content(raw.content.as_ref()?.get_ref().clone().into_bytes()),
            "dir" => {
                let dir = raw.dir.as_ref()?;
                if !dir.get_ref() {
                    self.error(
                        ErrorKind::InvalidValue,
                        dir.span(),
                        &format!("{key}.dir"),
                        format!("invalid `{key}.dir` false: only `dir = true` means something"),
                        "not allowed",
                    )
                    .help = Some("remove `dir = false` and set the entry's source, or write `dir = true` for an empty directory".to_owned());
                    return None;
                }
                Source::Dir
            }
            "symlink" => {
                let target = raw.symlink.as_ref()?;
                self.check(target, &format!("{key}.symlink"), check_symlink_target)?;
                Source::Symlink(target.get_ref().clone())
            }
            "tar" => {
                let tar = raw.tar.as_ref()?;
                Source::Tar {
                    path: self
                        .check(tar, &format!("{key}.tar"), |s| host_path(s, context, true))?,
                    include,
                    exclude,
                }
            }
            "cargo" => {
                Source::Cargo(self.cargo(raw.cargo.as_ref()?.get_ref(), &format!("{key}.cargo"))?)
            }
            "debian" => Source::Debian(
                self.debian(raw.debian.as_ref()?.get_ref(), &format!("{key}.debian"))?,
            ),
            other => unreachable!("unknown source {other}"),
        };

        let (dest, dest_is_dir) = dest?;
        if self.errors.len() > errors_before {
            return None;
        }
        Some(EntrySpec {
            dest,
            dest_is_dir,
            source,
            owner: owner?,
            mode,
            dir_mode,
            platforms,
        })
    }

    pub(super) fn mode(&mut self, mode: &Spanned<RawMode>, key: &str) -> Option<u32> {
        let written = self
            .src
            .text
            .get(mode.span())
            .unwrap_or_default()
            .to_owned();
        let last = key.rsplit('.').next().unwrap_or(key);
        let result = match mode.get_ref() {
            RawMode::Integer(value) => {
                let octal = written.trim_start_matches('+').starts_with("0o");
                if *value < 0 {
                    Err(Problem::invalid("negative"))
                } else if !octal && *value > 7 {
                    let help = if written.chars().all(|c| ('0'..='7').contains(&c)) {
                        format!(
                            "write it in octal: `{last} = 0o{value}` or `{last} = \"{value:0>4}\"`"
                        )
                    } else {
                        format!("write it in octal, e.g. `{last} = 0o755` or `{last} = \"0755\"`")
                    };
                    Err(Problem::invalid("a decimal integer; modes are octal").help(help))
                } else if *value > 0o7777 {
                    Err(Problem::invalid("larger than 0o7777").help(
                        "a mode is the permission bits plus setuid, setgid and sticky: at most 4 octal digits",
                    ))
                } else {
                    Ok(*value as u32)
                }
            }
            RawMode::String(s) => {
                let digits = s.strip_prefix("0o").unwrap_or(s);
                if digits.is_empty()
                    || digits.len() > 6
                    || !digits.chars().all(|c| ('0'..='7').contains(&c))
                {
                    Err(Problem::invalid("not an octal number").help(format!(
                        "write the permission bits in octal, e.g. `{last} = \"0755\"`"
                    )))
                } else {
                    let value = u32::from_str_radix(digits, 8).expect("checked octal digits");
                    if value > 0o7777 {
                        Err(Problem::invalid("larger than 0o7777")
                            .help("a mode is the permission bits plus setuid, setgid and sticky: at most 4 octal digits"))
                    } else {
                        Ok(value)
                    }
                }
            }
        };
        match result {
            Ok(mode) => Some(mode),
            Err(problem) => {
                self.problem(mode.span(), key, &written, problem);
                None
            }
        }
    }

    pub(super) fn globs(
        &mut self,
        globs: Option<&Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for (i, glob) in globs
            .map(Spanned::get_ref)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if self
                .check(glob, &format!("{key}[{i}]"), check_glob)
                .is_some()
            {
                out.push(glob.get_ref().clone());
            }
        }
        out
    }
}

pub(super) fn check_layer_name(name: &str) -> Result<(), Problem> {
    let help = r#"layer names are letters, digits, `_`, `.` and `-`, starting with a letter or digit, e.g. `name = "app"`"#;
    match name.chars().next() {
        None => Err(Problem::invalid("empty").help(help)),
        Some(c) if !c.is_ascii_alphanumeric() => {
            Err(Problem::invalid(format!("starts with `{c}`")).help(help))
        }
        _ => match name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            Some(c) => Err(Problem::invalid(format!("`{c}` is not allowed")).help(help)),
            None => Ok(()),
        },
    }
}

pub(super) fn check_owner(owner: &str) -> Result<Owner, Problem> {
    let (uid, gid) = owner.split_once(':').unwrap_or((owner, owner));
    let id = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    match (id(uid), id(gid)) {
        (Some(uid), Some(gid)) => Ok(Owner { uid: uid.into(), gid: gid.into() }),
        _ => Err(Problem::invalid("not a numeric `UID:GID`").help(
            "owners are numeric ids (there is no user database at build time), e.g. `owner = \"65532:65532\"` or `owner = \"1000\"`",
        )),
    }
}

pub(super) fn check_symlink_target(target: &str) -> Result<(), Problem> {
    if target.is_empty() {
        return Err(Problem::invalid("empty target"));
    }
    if target.contains('\0') {
        return Err(Problem::invalid("contains a NUL character"));
    }
    Ok(())
}

pub(super) fn check_glob(glob: &str) -> Result<(), Problem> {
    let pattern = glob.strip_prefix('!').unwrap_or(glob);
    let pattern = pattern.strip_prefix('/').unwrap_or(pattern);
    let pattern = pattern.strip_suffix('/').unwrap_or(pattern);
    if pattern.is_empty() {
        return Err(Problem::invalid("empty pattern"));
    }
    globset::Glob::new(pattern).map(drop).map_err(|e| {
        Problem::invalid(format!("not a valid glob: {}", e.kind()))
            .help("globs use `*`, `**`, `?`, `[abc]` and `{a,b}`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_numeric() {
        assert_eq!(
            check_owner("1000").ok(),
            Some(Owner {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(check_owner("1:2").ok(), Some(Owner { uid: 1, gid: 2 }));
        assert!(check_owner("root").is_err());
        assert!(check_owner("1:").is_err());
        assert!(check_owner("-1").is_err());
    }
}
