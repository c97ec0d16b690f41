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
//!
//! # Layout
//!
//! This file holds the [`Checker`] (which collects problems with their spans) and the walk over
//! a whole spec ([`Checker::spec`]); each concern has its own file, which adds its methods to
//! the `Checker` and holds the rules of its values:
//!
//! - `names`: the image `name`, `registry` and `tags`, by the reference grammar of
//!   [`crate::types::reference`];
//! - `stages`: `from`, `pull`, and the stages a stage uses;
//! - `platforms`: `platforms`, `[platform."os/arch"]`, pinned targets, entry platforms;
//! - `config`: `[config]` and `annotations`;
//! - `layers`: `[[layer]]` and its `add` entries;
//! - `cargo`: `cargo` entries;
//! - `paths`: the context, host paths and image paths.
//!
//! It depends on the rest of the spec module (raw types in, model out, errors) and on
//! [`crate::types`] (references, platforms, pull policies, whiteout names).

mod cargo;
mod config;
mod debian;
mod layers;
mod names;
mod paths;
mod platforms;
mod stages;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use self::cargo::check_profile;
use self::layers::check_layer_name;
use self::names::check_tag;
use super::error::{ErrorKind, SpecDiagnostic, SpecSource};
use super::model::{ImageSpec, Stage, DEFAULT_EPOCH, MAX_EPOCH};
use super::raw::{RawSbom, RawSpec};
use super::template::Vars;
use crate::types::{Platform, SbomFormat};

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
        let ignore_file = self.ignore_file(raw.ignore_file.as_ref(), context.as_ref());
        let debian = self.debian_settings(raw.debian.as_ref(), context.as_ref());
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
            sbom: raw
                .sbom
                .as_ref()
                .map_or(vec![SbomFormat::CycloneDx], RawSbom::formats),
            provenance: raw.provenance.unwrap_or(true),
            cache_from: self.repositories(raw.cache_from.as_ref(), "cache-from"),
            cache_to: self.repositories(raw.cache_to.as_ref(), "cache-to"),
            platform_settings,
            ignore_file: ignore_file?,
            debian: debian?,
        })
    }
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
