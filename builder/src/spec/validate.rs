//! Step 2 of reading a spec: [`RawSpec`] into the resolved [`ImageSpec`].
//!
//! Every value is checked against its rule (names, tags, ports, modes, owners, globs), paths
//! are normalised lexically (image paths against the image root, host paths against the build
//! context, which must exist), defaults are applied, and every problem found is reported with
//! the span of the value at fault. Checking goes on after a problem so one run shows them all.
//!
//! Symlinks: the context and every host path (`path`, `tar`) that exists must resolve inside
//! the spec file's directory (the context inside it, host paths inside the context) with every
//! symlink followed, and a refusal names the link and where it leads. The build checks host
//! paths again when it reads them (they may change in between); what lies *inside* a copied
//! directory is stored as it is, symlinks as symlinks, never followed.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::error::{ErrorKind, SpecDiagnostic, SpecSource};
use super::model::{
    Base, CargoSource, EntrySpec, ImageConfig, ImageSpec, LayerSpec, Owner, PlatformSettings,
    Source, Stage, DEFAULT_EPOCH, MAX_EPOCH,
};
use super::parse::missing_key_help;
use super::raw::{RawAdd, RawCargo, RawConfig, RawLayer, RawMode, RawPlatform, RawSpec, SOURCES};
use super::template::Vars;
use crate::types::reference::{self, ComponentError, NameError, Reference, TagError};
use crate::types::{Platform, PullPolicy, WHITEOUT_PREFIX};

/// The default cargo profile.
pub(crate) const DEFAULT_PROFILE: &str = "release";
/// The default target triple: static binaries that run on `scratch`.
pub(crate) const DEFAULT_TARGET: &str = "x86_64-unknown-linux-musl";

/// What a spec takes from where it was found rather than from its own text: a spec in a
/// Cargo.toml's `[package.metadata.image]` is named after its package and expands `{version}`
/// to the package's version.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    /// The image name when the spec has none (the cargo package's name).
    pub name: Option<String>,
    /// The `registry` when the spec has none (from the workspace's defaults).
    pub registry: Option<String>,
    /// Values of tag templates found so far (the rest are looked up in the context).
    pub vars: Vars,
}

/// Validate `raw` (read from `src`, whose absolute path is `spec_path`) into an [`ImageSpec`].
pub(crate) fn validate(
    raw: RawSpec,
    src: &SpecSource<'_>,
    spec_path: &Path,
) -> Result<ImageSpec, Box<SpecDiagnostic>> {
    validate_with(raw, src, spec_path, Inherited::default())
}

/// [`validate`], with what the spec inherits from where it was found.
pub(crate) fn validate_with(
    raw: RawSpec,
    src: &SpecSource<'_>,
    spec_path: &Path,
    inherited: Inherited,
) -> Result<ImageSpec, Box<SpecDiagnostic>> {
    let mut checker = Checker {
        src,
        errors: Vec::new(),
        inherited,
        platforms: Vec::new(),
    };
    let spec = checker.spec(raw, spec_path);
    let mut errors = checker.errors.into_iter();
    match (spec, errors.next()) {
        (Some(spec), None) => Ok(spec),
        (_, Some(mut first)) => {
            first.others = errors.collect();
            Err(Box::new(first))
        }
        (None, None) => unreachable!("validation failed without reporting an error"),
    }
}

/// Why a value is refused.
struct Problem {
    kind: ErrorKind,
    reason: String,
    help: Option<String>,
}

impl Problem {
    fn invalid(reason: impl Into<String>) -> Self {
        Problem {
            kind: ErrorKind::InvalidValue,
            reason: reason.into(),
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The reason and the hint as one message, for values given outside a spec.
    fn into_message(self) -> String {
        match self.help {
            Some(help) => format!("{}; {help}", self.reason),
            None => self.reason,
        }
    }
}

/// The build context, as written (lexically normalised) and on disk (canonical).
struct ContextDir {
    lexical: PathBuf,
    canonical: PathBuf,
}

/// Collects problems while resolving a spec.
struct Checker<'a> {
    src: &'a SpecSource<'a>,
    errors: Vec<SpecDiagnostic>,
    inherited: Inherited,
    /// The spec's `platforms` (valid ones), for the checks of entries.
    platforms: Vec<Platform>,
}

impl Checker<'_> {
    fn push(&mut self, diagnostic: SpecDiagnostic) {
        self.errors.push(diagnostic);
    }

    fn error(
        &mut self,
        kind: ErrorKind,
        span: Range<usize>,
        key: &str,
        message: String,
        label: &str,
    ) -> &mut SpecDiagnostic {
        let diagnostic = self.src.diagnostic(kind, span, key, message, label);
        self.errors.push(diagnostic);
        self.errors.last_mut().expect("just pushed")
    }

    /// Report `problem` with the value at `span`, written `shown` in messages.
    fn problem(&mut self, span: Range<usize>, key: &str, shown: &str, problem: Problem) {
        let message = format!("invalid `{key}` {shown}: {}", problem.reason);
        let diagnostic = self
            .src
            .diagnostic(problem.kind, span, key, message, problem.reason)
            .with_help_opt(problem.help);
        self.push(diagnostic);
    }

    /// Check a spanned string with `check`; report and return `None` if it fails.
    fn check<T>(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        check: impl FnOnce(&str) -> Result<T, Problem>,
    ) -> Option<T> {
        match check(value.get_ref()) {
            Ok(t) => Some(t),
            Err(problem) => {
                self.problem(
                    value.span(),
                    key,
                    &format!("{:?}", value.get_ref()),
                    problem,
                );
                None
            }
        }
    }

    fn spec(&mut self, raw: RawSpec, spec_path: &Path) -> Option<ImageSpec> {
        let spec_dir = spec_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();

        let name = self.name(raw.name.as_ref(), raw.registry.as_ref());
        let context = self.context(raw.context.as_ref(), &spec_dir);
        let tags_dir = context
            .as_ref()
            .map_or(spec_dir.as_path(), |c| c.canonical.as_path());
        let tags_dir = tags_dir.to_path_buf();
        let tags = self.tags(raw.tags.as_ref(), &tags_dir);
        let base = self.base(raw.from.as_ref(), raw.pull.as_ref(), "", &spec_dir);
        let epoch = match raw.epoch {
            Some(epoch) if *epoch.get_ref() > MAX_EPOCH => {
                self.problem(
                    epoch.span(),
                    "epoch",
                    &epoch.get_ref().to_string(),
                    Problem::invalid("after the year 9999")
                        .help("`epoch` is in seconds since 1970-01-01T00:00:00Z"),
                );
                None
            }
            Some(epoch) => Some(epoch.into_inner()),
            None => Some(DEFAULT_EPOCH),
        };
        let compression = raw.compression.map(Spanned::into_inner).unwrap_or_default();
        let annotations = self.string_map(raw.annotations.unwrap_or_default(), "annotations");
        let platform_settings = self.platform_settings(raw.platform.unwrap_or_default());
        let platforms = self.platforms(raw.platforms.as_ref(), &platform_settings);
        self.platforms = platforms.clone().unwrap_or_default();
        let top_level_used = raw.from.is_some() || raw.config.is_some() || raw.layer.is_some();
        let config = self.config(raw.config.unwrap_or_default());
        let layers = self.layers(raw.layer.unwrap_or_default(), "", context.as_ref());

        // Named stages.
        let mut stages = Vec::new();
        let mut stage_names: HashMap<String, Range<usize>> = HashMap::new();
        let mut stages_ok = true;
        for (i, raw_stage) in raw.stage.unwrap_or_default().into_iter().enumerate() {
            let key = format!("stage[{i}]");
            let name_key = format!("{key}.name");
            stages_ok &= self
                .check(&raw_stage.name, &name_key, check_layer_name)
                .is_some();
            if let Some(first) = stage_names.get(raw_stage.name.get_ref()) {
                let diagnostic = self
                    .src
                    .diagnostic(
                        ErrorKind::Duplicate,
                        raw_stage.name.span(),
                        &name_key,
                        format!(
                            "duplicate stage name {:?} in `{name_key}`",
                            raw_stage.name.get_ref()
                        ),
                        "used again here",
                    )
                    .with_label(self.src, first.clone(), "first used here")
                    .with_help("stage names are unique: rename one of the stages");
                self.push(diagnostic);
                stages_ok = false;
            } else {
                stage_names.insert(raw_stage.name.get_ref().clone(), raw_stage.name.span());
            }
            let base = self.base(
                raw_stage.from.as_ref(),
                raw_stage.pull.as_ref(),
                &format!("{key}."),
                &spec_dir,
            );
            let config = self.config(raw_stage.config.unwrap_or_default());
            let layers = self.layers(
                raw_stage.layer.unwrap_or_default(),
                &format!("{key}."),
                context.as_ref(),
            );
            match (base, layers) {
                (Some(base), Some(layers)) => stages.push(Stage {
                    name: raw_stage.name.into_inner(),
                    base,
                    layers,
                    config,
                }),
                _ => stages_ok = false,
            }
        }
        let (stage, stages) = match (base, layers) {
            (Some(base), Some(layers)) if stages_ok => {
                if !top_level_used && !stages.is_empty() {
                    // No top-level stage: the last named stage is the image.
                    let last = stages.pop().expect("not empty");
                    (last, stages)
                } else {
                    let image = Stage {
                        name: "image".to_owned(),
                        base,
                        layers,
                        config,
                    };
                    (image, stages)
                }
            }
            _ => return None,
        };
        self.stage_references(&stage, &stages);
        let platforms = platforms?;
        self.pinned_targets(raw.platforms.as_ref(), &platforms, &stage, &stages);

        Some(ImageSpec {
            spec_path: spec_path.to_path_buf(),
            context: context?.canonical,
            name: name?,
            tags: tags?,
            epoch: epoch?,
            compression,
            annotations,
            stage,
            stages,
            platforms,
            index: raw.index.unwrap_or(false),
            platform_settings,
        })
    }

    /// The `[platform."os/arch"]` tables.
    fn platform_settings(
        &mut self,
        raw: BTreeMap<Spanned<String>, RawPlatform>,
    ) -> BTreeMap<Platform, PlatformSettings> {
        let mut out = BTreeMap::new();
        for (name, settings) in raw {
            let key = format!("platform.\"{}\"", name.get_ref());
            let Some(platform) = self.check(&name, "platform", check_platform) else {
                continue;
            };
            if let Some(target) = &settings.target {
                self.check(target, &format!("{key}.target"), |s| {
                    check_word(s, "a target triple")
                });
            }
            if let Some(linker) = &settings.linker {
                self.check(linker, &format!("{key}.linker"), |s| {
                    check_word(s, "a linker program")
                });
            }
            out.insert(
                platform,
                PlatformSettings {
                    target: settings.target.map(Spanned::into_inner),
                    linker: settings.linker.map(Spanned::into_inner),
                },
            );
        }
        out
    }

    /// The `platforms` list: valid, known (or given a target), each once.
    fn platforms(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        settings: &BTreeMap<Platform, PlatformSettings>,
    ) -> Option<Vec<Platform>> {
        let Some(raw) = raw else {
            return Some(Vec::new());
        };
        if raw.get_ref().is_empty() {
            self.error(
                ErrorKind::InvalidValue,
                raw.span(),
                "platforms",
                "invalid `platforms`: the list is empty".to_owned(),
                "no platforms",
            )
            .help = Some(
                r#"list at least one platform (`platforms = ["linux/amd64", "linux/arm64"]`), or remove `platforms` to build for linux/amd64"#
                    .to_owned(),
            );
            return None;
        }
        let mut ok = true;
        let mut out: Vec<Platform> = Vec::new();
        let mut seen: HashMap<Platform, Range<usize>> = HashMap::new();
        for (i, item) in raw.get_ref().iter().enumerate() {
            let key = format!("platforms[{i}]");
            let Some(platform) = self.check(item, &key, check_platform) else {
                ok = false;
                continue;
            };
            if let Some(first) = seen.get(&platform) {
                let diagnostic = self
                    .src
                    .diagnostic(
                        ErrorKind::Duplicate,
                        item.span(),
                        &key,
                        format!("duplicate platform {:?} in `platforms`", item.get_ref()),
                        "listed again here",
                    )
                    .with_label(self.src, first.clone(), "first listed here")
                    .with_help("remove the repeated platform");
                self.push(diagnostic);
                ok = false;
                continue;
            }
            let has_target = settings.get(&platform).is_some_and(|s| s.target.is_some());
            if crate::cargo::default_target(&platform).is_none() && !has_target {
                self.problem(
                    item.span(),
                    &key,
                    &format!("{:?}", item.get_ref()),
                    Problem::invalid("not a platform with a known rust target").help(format!(
                        "use one of {}, or give its rust target: `[platform.\"{platform}\"] target = \"...\"`",
                        known_platforms()
                    )),
                );
                ok = false;
                continue;
            }
            seen.insert(platform.clone(), item.span());
            out.push(platform);
        }
        ok.then_some(out)
    }

    /// `cargo` entries that pin their `target` cannot build several platforms.
    fn pinned_targets(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        platforms: &[Platform],
        image: &Stage,
        stages: &[Stage],
    ) {
        if platforms.len() < 2 {
            return;
        }
        let pinned = stages
            .iter()
            .chain(std::iter::once(image))
            .flat_map(|s| &s.layers)
            .flat_map(|l| &l.entries)
            .find_map(|e| match &e.source {
                Source::Cargo(src) if src.target_pinned => Some(src.target.clone()),
                _ => None,
            });
        if let (Some(target), Some(raw)) = (pinned, raw) {
            self.error(
                ErrorKind::ConflictingKeys,
                raw.span(),
                "platforms",
                format!(
                    "`platforms` lists {} platforms, but a cargo entry pins `target = {target:?}`, which builds for one",
                    platforms.len()
                ),
                "several platforms",
            )
            .help = Some(format!(
                "remove `target` from the cargo entry (each platform builds for its own target), or set it per platform: `[platform.\"{}\"] target = {target:?}`",
                platforms[0]
            ));
        }
    }

    /// The base of a stage (`from` and `pull`); `prefix` is the stage's key prefix (`stage[0].`).
    fn base(
        &mut self,
        from: Option<&Spanned<String>>,
        pull_raw: Option<&Spanned<String>>,
        prefix: &str,
        spec_dir: &Path,
    ) -> Option<Base> {
        let pull = match pull_raw {
            None => Some(PullPolicy::default()),
            Some(pull) => self.check(pull, &format!("{prefix}pull"), |s| {
                s.parse::<PullPolicy>().map_err(|_| {
                    Problem::invalid("not a pull policy")
                        .help(r#"use "if-not-present" (the default), "always" or "never""#)
                })
            }),
        };
        let base = match from {
            None => Some(Base::Scratch),
            Some(from) => self.check(from, &format!("{prefix}from"), |s| {
                check_from(s, spec_dir, pull.unwrap_or_default())
            }),
        };
        if let (Some(p), Some(base)) = (pull_raw, &base) {
            if !matches!(base, Base::Registry { .. }) {
                self.problem(
                    p.span(),
                    &format!("{prefix}pull"),
                    &format!("{:?}", p.get_ref()),
                    Problem::invalid("only applies to a registry base").help(
                        "remove `pull`, or set `from` to a registry reference like \"alpine:3.20\"",
                    ),
                );
            }
        }
        base
    }

    /// Every stage a stage uses (as its base or through `from-stage`) exists, and no stage
    /// needs itself.
    fn stage_references(&mut self, image: &Stage, stages: &[Stage]) {
        let all: Vec<&Stage> = stages.iter().chain(std::iter::once(image)).collect();
        let uses = |stage: &Stage| -> Vec<String> {
            let mut v = Vec::new();
            if let Base::Stage(name) = &stage.base {
                v.push(name.clone());
            }
            for layer in &stage.layers {
                for entry in &layer.entries {
                    if let Source::Stage { stage, .. } = &entry.source {
                        v.push(stage.clone());
                    }
                }
            }
            v
        };
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        for stage in &all {
            for used in uses(stage) {
                if !names.contains(&used.as_str()) {
                    let known = stages
                        .iter()
                        .map(|s| format!("`{}`", s.name))
                        .collect::<Vec<_>>()
                        .join(", ");
                    self.error(
                        ErrorKind::InvalidValue,
                        0..0,
                        "stage",
                        format!(
                            "stage `{}` uses stage `{used}`, which the spec does not declare",
                            stage.name
                        ),
                        "unknown stage",
                    )
                    .help = Some(if known.is_empty() {
                        "declare it with a `[[stage]]` table (`name`, `from`, `layer`)".to_owned()
                    } else {
                        format!("the declared stages are {known}")
                    });
                }
            }
        }
        // Cycles: walk each stage's uses; reaching the start again is a cycle.
        for start in &all {
            let mut stack: Vec<(String, Vec<String>)> = vec![(start.name.clone(), vec![])];
            let mut seen = std::collections::HashSet::new();
            while let Some((name, path)) = stack.pop() {
                let Some(stage) = all.iter().find(|s| s.name == name) else {
                    continue;
                };
                for used in uses(stage) {
                    let mut p = path.clone();
                    p.push(name.clone());
                    if used == start.name {
                        p.push(used.clone());
                        self.error(
                            ErrorKind::InvalidValue,
                            0..0,
                            "stage",
                            format!("stages use each other in a cycle: {}", p.join(" -> ")),
                            "cycle",
                        )
                        .help = Some("a stage can only use stages that do not use it".to_owned());
                        return;
                    }
                    if seen.insert(used.clone()) {
                        stack.push((used, p));
                    }
                }
            }
        }
    }

    /// The image name: `name` (or the inherited one), behind `registry` if there is one.
    fn name(
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

    fn tags(
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

    fn context(
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

    fn string_map(
        &mut self,
        map: BTreeMap<Spanned<String>, String>,
        table: &str,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, value) in map {
            if key.get_ref().is_empty() {
                self.error(
                    ErrorKind::InvalidValue,
                    key.span(),
                    table,
                    format!("invalid key \"\" in `{table}`: empty"),
                    "empty key",
                );
            }
            out.insert(key.into_inner(), value);
        }
        out
    }

    fn config(&mut self, raw: RawConfig) -> ImageConfig {
        let mut env = BTreeMap::new();
        for (name, value) in raw.env.unwrap_or_default() {
            if let Err(reason) = check_env_name(name.get_ref()) {
                let message = format!(
                    "invalid environment variable name {:?} in `config.env`: {reason}",
                    name.get_ref()
                );
                let fixed: String = name
                    .get_ref()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let help = if check_env_name(&fixed).is_ok() {
                    format!("names are letters, digits and `_`, not starting with a digit: did you mean `{fixed}`?")
                } else {
                    "names are letters, digits and `_`, not starting with a digit (`RUST_LOG`)"
                        .to_owned()
                };
                self.error(
                    ErrorKind::InvalidValue,
                    name.span(),
                    "config.env",
                    message,
                    reason,
                )
                .help = Some(help);
            }
            env.insert(name.into_inner(), value);
        }
        if let Some(workdir) = &raw.workdir {
            self.check(workdir, "config.workdir", |s| check_absolute(s, "workdir"));
        }
        if let Some(user) = &raw.user {
            self.check(user, "config.user", check_user);
        }
        let labels = self.string_map(raw.labels.unwrap_or_default(), "config.labels");
        let mut exposed_ports = Vec::new();
        for (i, port) in raw.exposed_ports.iter().flatten().enumerate() {
            if let Some(port) = self.check(port, &format!("config.exposed-ports[{i}]"), check_port)
            {
                exposed_ports.push(port);
            }
        }
        exposed_ports.sort();
        exposed_ports.dedup();
        let mut volumes = Vec::new();
        for (i, volume) in raw.volumes.iter().flatten().enumerate() {
            if self
                .check(volume, &format!("config.volumes[{i}]"), |s| {
                    check_absolute(s, "volumes")
                })
                .is_some()
            {
                volumes.push(volume.get_ref().clone());
            }
        }
        volumes.sort();
        volumes.dedup();
        if let Some(signal) = &raw.stop_signal {
            self.check(signal, "config.stop-signal", check_signal);
        }
        ImageConfig {
            entrypoint: raw.entrypoint,
            cmd: raw.cmd,
            env,
            workdir: raw.workdir.map(Spanned::into_inner),
            user: raw.user.map(Spanned::into_inner),
            labels,
            exposed_ports,
            volumes,
            stop_signal: raw.stop_signal.map(Spanned::into_inner),
        }
    }

    fn layers(
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

    fn entry(
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
                if let (Some(span), false) = (span, source == "path") {
                    self.error(
                        ErrorKind::ConflictingKeys,
                        span,
                        &format!("{key}.{option}"),
                        format!("`{key}.{option}` only applies to `path` sources, and this entry's source is `{source}`"),
                        "only for `path`",
                    )
                    .help = Some(format!("remove `{option}`"));
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
            (None, Some("tar")) => Some((String::new(), true)),
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
                Source::Tar(
                    self.check(tar, &format!("{key}.tar"), |s| host_path(s, context, true))?,
                )
            }
            "cargo" => {
                Source::Cargo(self.cargo(raw.cargo.as_ref()?.get_ref(), &format!("{key}.cargo"))?)
            }
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

    /// An entry's `platforms`: valid platforms, among the spec's `platforms` when it lists them.
    fn entry_platforms(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Vec<Platform> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        if raw.get_ref().is_empty() {
            self.error(
                ErrorKind::InvalidValue,
                raw.span(),
                key,
                format!("invalid `{key}`: the list is empty"),
                "no platforms",
            )
            .help = Some("remove `platforms` to add the entry on every platform".to_owned());
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, item) in raw.get_ref().iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            let Some(platform) = self.check(item, &item_key, check_platform) else {
                continue;
            };
            if !self.platforms.is_empty() && !self.platforms.contains(&platform) {
                let listed = self
                    .platforms
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.problem(
                    item.span(),
                    &item_key,
                    &format!("{:?}", item.get_ref()),
                    Problem::invalid("not one of the image's `platforms`")
                        .help(format!("the image is built for {listed}")),
                );
                continue;
            }
            if !out.contains(&platform) {
                out.push(platform);
            }
        }
        out
    }

    fn mode(&mut self, mode: &Spanned<RawMode>, key: &str) -> Option<u32> {
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

    fn globs(&mut self, globs: Option<&Spanned<Vec<Spanned<String>>>>, key: &str) -> Vec<String> {
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

    fn cargo(&mut self, raw: &RawCargo, key: &str) -> Option<CargoSource> {
        let mut ok = true;
        for (name, value) in [("package", &raw.package), ("bin", &raw.bin)] {
            if let Some(value) = value {
                ok &= self
                    .check(value, &format!("{key}.{name}"), |s| check_word(s, "a name"))
                    .is_some();
            }
        }
        if let Some(profile) = &raw.profile {
            ok &= self
                .check(profile, &format!("{key}.profile"), check_profile)
                .is_some();
        }
        if let Some(target) = &raw.target {
            ok &= self
                .check(target, &format!("{key}.target"), |s| {
                    check_word(s, "a target triple")
                })
                .is_some();
        }
        let mut features = Vec::new();
        for (i, feature) in raw.features.iter().flatten().enumerate() {
            ok &= self
                .check(feature, &format!("{key}.features[{i}]"), check_feature)
                .is_some();
            features.push(feature.get_ref().clone());
        }
        features.sort();
        features.dedup();
        ok.then(|| CargoSource {
            package: raw.package.as_ref().map(|p| p.get_ref().clone()),
            bin: raw.bin.as_ref().map(|b| b.get_ref().clone()),
            profile: raw
                .profile
                .as_ref()
                .map_or(DEFAULT_PROFILE, |p| p.get_ref())
                .to_owned(),
            features,
            all_features: raw.all_features.unwrap_or(false),
            no_default_features: raw.no_default_features.unwrap_or(false),
            target: raw
                .target
                .as_ref()
                .map_or(DEFAULT_TARGET, |t| t.get_ref())
                .to_owned(),
            target_pinned: raw.target.is_some(),
            linker: None,
        })
    }
}

/// Lexically normalise `path`: drop `.`, apply `..`. `None` when a relative path climbs above
/// its start; `..` at the root of an absolute path stays at the root.
fn normalize(path: &Path) -> Option<PathBuf> {
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
fn host_path(s: &str, context: Option<&ContextDir>, is_tar: bool) -> Result<PathBuf, Problem> {
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
fn escaping_link(root: &Path, relative: &Path) -> Option<(PathBuf, PathBuf)> {
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
fn check_dest(s: &str, source: Option<&str>) -> Result<(String, bool), Problem> {
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
fn whiteout_component(path: &str) -> Option<&str> {
    path.split('/').find(|c| c.starts_with(WHITEOUT_PREFIX))
}

/// An image name (`name`, or `registry/name`), by the reference grammar of [`reference`].
fn check_name(name: &str) -> Result<(), Problem> {
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
fn check_tag(tag: &str) -> Result<(), Problem> {
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

fn check_from(from: &str, spec_dir: &Path, pull: PullPolicy) -> Result<Base, Problem> {
    if from == "scratch" {
        return Ok(Base::Scratch);
    }
    if let Some(name) = from.strip_prefix("stage:") {
        check_layer_name(name)
            .map_err(|p| Problem::invalid(format!("bad stage name {name:?}: {}", p.reason)))?;
        return Ok(Base::Stage(name.to_owned()));
    }
    for prefix in ["oci:", "oci-archive:", "docker-archive:"] {
        let Some(rest) = from.strip_prefix(prefix) else {
            continue;
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((path, tag)) if !path.is_empty() && !tag.contains('/') => (path, Some(tag)),
            _ => (rest, None),
        };
        if path.is_empty() {
            return Err(Problem::invalid(format!("no path after `{prefix}`")).help(format!(
                r#"name the layout or archive, e.g. `from = "{prefix}base"` or `from = "{prefix}base:3.20"`"#
            )));
        }
        if let Some(tag) = tag {
            check_tag(tag)
                .map_err(|p| Problem::invalid(format!("bad tag {tag:?}: {}", p.reason)))?;
        }
        let path = normalize(&spec_dir.join(path)).unwrap_or_default();
        let tag = tag.map(str::to_owned);
        return Ok(match prefix {
            "oci:" => Base::OciLayout { path, tag },
            "oci-archive:" => Base::OciArchive { path, tag },
            _ => Base::DockerArchive { path, tag },
        });
    }
    match Reference::parse(from) {
        Ok(reference) => Ok(Base::Registry {
            reference: reference.to_string(),
            pull,
        }),
        Err(e) => Err(Problem::invalid(format!("not an image reference: {e}")).help(
            r#"use "scratch", a registry reference like "alpine:3.20" or "ghcr.io/acme/base@sha256:...", or oci:PATH / oci-archive:FILE / docker-archive:FILE"#,
        )),
    }
}

fn check_env_name(name: &str) -> Result<(), &'static str> {
    match name.chars().next() {
        None => Err("empty"),
        Some(c) if c.is_ascii_digit() => Err("starts with a digit"),
        _ if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => Ok(()),
        _ => Err("only letters, digits and `_` are allowed"),
    }
}

/// Refuses a control character (a newline, a tab...) in an image path.
fn check_no_control(s: &str) -> Result<(), Problem> {
    match s.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(Problem::invalid(format!(
            "contains the control character U+{:04X}",
            u32::from(c)
        ))
        .help("image paths are names a shell and a runtime can show: remove the character (in TOML, `\\n` or `\\t` in a \"...\" string is one)")),
    }
}

fn check_absolute(s: &str, what: &str) -> Result<(), Problem> {
    check_no_control(s)?;
    if s.starts_with('/') {
        Ok(())
    } else {
        Err(Problem::invalid("not an absolute path").help(format!(
            "`{what}` paths are absolute in the image: \"/{s}\""
        )))
    }
}

fn check_user(user: &str) -> Result<(), Problem> {
    let help = r#"write `user` or `user:group`, names or numeric ids, e.g. `user = "65532:65532"`"#;
    let (user_part, group) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    if !word(user_part) || group.is_some_and(|g| !word(g)) {
        return Err(Problem::invalid("not `user` or `user:group`").help(help));
    }
    Ok(())
}

fn check_port(port: &str) -> Result<String, Problem> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        let help = match proto.to_ascii_lowercase().as_str() {
            p @ ("tcp" | "udp" | "sctp") => format!("protocols are lower-case: \"{number}/{p}\""),
            _ => format!("write \"{number}/tcp\", \"{number}/udp\" or \"{number}/sctp\""),
        };
        return Err(
            Problem::invalid(format!("unknown protocol `{proto}` (tcp, udp or sctp)")).help(help),
        );
    }
    match number.parse::<u32>() {
        Ok(n @ 1..=65535) if number.chars().all(|c| c.is_ascii_digit()) => {
            Ok(format!("{n}/{proto}"))
        }
        _ => Err(Problem::invalid("the port is not a number from 1 to 65535")
            .help(r#"write `PORT` or `PORT/PROTO`, e.g. "8080" or "53/udp""#)),
    }
}

fn check_signal(signal: &str) -> Result<(), Problem> {
    if !signal.is_empty() && signal.chars().all(|c| c.is_ascii_digit()) {
        return match signal.parse::<u32>() {
            Ok(1..=64) => Ok(()),
            _ => Err(Problem::invalid("signal numbers are 1 to 64")),
        };
    }
    if let Some(name) = signal.strip_prefix("SIG") {
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '+' | '-'))
        {
            return Ok(());
        }
    }
    let upper = signal.to_ascii_uppercase();
    let suggestion = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Err(Problem::invalid("not a signal name (`SIGTERM`) or number")
        .help(format!("did you mean `stop-signal = {suggestion:?}`?")))
}

fn check_layer_name(name: &str) -> Result<(), Problem> {
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

fn check_owner(owner: &str) -> Result<Owner, Problem> {
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

fn check_symlink_target(target: &str) -> Result<(), Problem> {
    if target.is_empty() {
        return Err(Problem::invalid("empty target"));
    }
    if target.contains('\0') {
        return Err(Problem::invalid("contains a NUL character"));
    }
    Ok(())
}

fn check_glob(glob: &str) -> Result<(), Problem> {
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

/// Checks a platform: `os/arch[/variant]`, lower-case, for linux.
fn check_platform(s: &str) -> Result<Platform, Problem> {
    let platform = Platform::parse(s).ok().filter(Platform::is_canonical).ok_or_else(|| {
        Problem::invalid("not a platform: expected `os/arch` or `os/arch/variant`")
            .help(format!("for example `linux/amd64`, `linux/arm64` or `linux/arm/v7`; the known platforms are {}", known_platforms()))
    })?;
    if platform.os != "linux" {
        return Err(Problem::invalid("not a linux platform")
            .help("images are built for `linux/...` platforms"));
    }
    Ok(platform)
}

/// The platforms with a default rust target, for messages.
fn known_platforms() -> String {
    crate::cargo::DEFAULT_TARGETS
        .iter()
        .map(|(p, _)| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_word(s: &str, what: &str) -> Result<(), Problem> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(Problem::invalid(format!(
            "not {what}: empty or containing spaces"
        )))
    } else {
        Ok(())
    }
}

fn check_profile(profile: &str) -> Result<(), Problem> {
    if !profile.is_empty()
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        Ok(())
    } else {
        Err(Problem::invalid("not a profile name")
            .help(r#"cargo profiles are `release`, `dev` or one from `[profile.NAME]`"#))
    }
}

fn check_feature(feature: &str) -> Result<(), Problem> {
    if feature.contains([',', ' ']) {
        return Err(Problem::invalid("several features in one string")
            .help(r#"list features one per string: `features = ["a", "b"]`"#));
    }
    check_word(feature, "a feature name")
}

/// Checks a tag given outside a spec (e.g. `--tag`): `Err` holds the reason and the hint.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    check_tag(tag).map_err(Problem::into_message)
}

/// Checks a cargo profile name given outside a spec (`--profile`), by the rule of the spec's
/// `cargo.profile`: `Err` holds the reason and the hint.
pub fn validate_profile(profile: &str) -> Result<(), String> {
    check_profile(profile).map_err(Problem::into_message)
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

    #[test]
    fn ports_default_to_tcp() {
        assert_eq!(check_port("9000").ok(), Some("9000/tcp".to_owned()));
        assert_eq!(check_port("53/udp").ok(), Some("53/udp".to_owned()));
        assert!(check_port("0").is_err());
        assert!(check_port("65536").is_err());
        assert!(check_port("80/TCP").is_err());
        assert!(check_port("+80").is_err());
    }

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
