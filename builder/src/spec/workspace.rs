//! The images of a cargo workspace: specs read from `Cargo.toml` metadata.
//!
//! A crate that ships an image puts its spec in `[package.metadata.image]` (the same keys as
//! `image.toml`, with `name` defaulting to the package name); the workspace's root `Cargo.toml`
//! may hold shared defaults in `[workspace.metadata.image]`. Packages are found with
//! `cargo metadata` (run as `$CARGO`, as cargo passes it to subcommands).
//!
//! Each table is parsed and validated on its own, against its own file, so every error names
//! the right `Cargo.toml`, line and key (`package.metadata.image.config.entrypoint`). The two
//! resolved specs are then merged, the package's over the workspace's:
//!
//! - `registry`, `tags`, `from`, `epoch`, `compression`, `platforms`, `index`, `ignore-file`:
//!   the package's when it sets them, else the workspace's (tag templates such as `{version}`
//!   are expanded with the package's values); `[platform."os/arch"]` tables merged by platform.
//!   The default ignore file is the `.dockerignore` of the merged build context;
//! - `config`: field by field; `env` and `labels` merged by key, `exposed-ports` and `volumes` united;
//! - `annotations`: merged by key, over defaults taken from the package (`title`, `version`,
//!   `description`, `licenses`, `source`, `url`, `authors` of `org.opencontainers.image.*`),
//!   which also become labels;
//! - layers: the workspace's first, then the package's, so shared rarely-changing content
//!   (certificates, assets) sits below each crate's binary and is built once for all images;
//! - stages: both sets (their names must differ).
//!
//! A package with no metadata (zero-config, picked with `-p` or `--workspace`) gets the
//! workspace's layers and its binary, a static musl build at `/usr/local/bin/<bin>`, as the top
//! layer, which is also the entrypoint. Its base is `builtin:static` (CA certificates, users,
//! `/tmp`; it runs as `nonroot`, 65532:65532) unless `[workspace.metadata.image]` sets `from`
//! (`from = "scratch"` gives the bare binary). The same top layer is added to a package whose layers
//! build no binary of it while it has one. Host paths keep their meaning: the workspace's are
//! relative to the workspace root, the package's to its own directory (the merged spec's build
//! context is the workspace root, and the package's paths are rebased onto it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::error::{SpecError, SpecSource};
use super::model::{
    Base, BuiltinBase, CargoSource, EntrySpec, IgnoreFileSetting, ImageSpec, LayerSpec, Owner,
    Source,
};
use super::parse::parse_raw_at;
use super::raw::RawSpec;
use super::template::Vars;
use super::validate::{validate_with, Inherited, DEFAULT_PROFILE, DEFAULT_TARGET};
use crate::cargo::Strip;
use crate::cargo::{self, Metadata, Package};

/// Which packages of a workspace become images (cargo's `-p`, `--exclude`, `--workspace`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `-p NAME`: these packages, with metadata or zero-config.
    pub packages: Vec<String>,
    /// `--exclude NAME`: not these.
    pub exclude: Vec<String>,
    /// `--workspace`: every package with image metadata or a binary.
    pub all: bool,
    /// `--bin NAME`: the binary a zero-config image holds; without `-p` or `--workspace` it
    /// also picks the package that has it, as cargo's `--bin` does.
    pub bin: Option<String>,
}

/// The specs of the images of the cargo workspace that `dir` belongs to, in cargo's package
/// order.
///
/// Without `-p` or `--workspace`, the images are: the package whose directory `dir` is (when
/// it is not the workspace root); else every package with `[package.metadata.image]`; else the
/// workspace's only binary package.
pub fn workspace_specs(dir: &Path, selection: &Selection) -> Result<Vec<ImageSpec>, SpecError> {
    workspace_specs_from(&cargo::metadata(dir)?, dir, selection)
}

/// [`workspace_specs`] from `meta`, the `cargo metadata --no-deps` already run in `dir`
/// ([`cargo::metadata`]): a build of the specs can take cargo's answer from it too
/// (`build::build_many`).
pub fn workspace_specs_from(
    meta: &Metadata,
    dir: &Path,
    selection: &Selection,
) -> Result<Vec<ImageSpec>, SpecError> {
    let root_manifest = meta.workspace_root.join("Cargo.toml");
    let packages = select(meta, dir, selection, &root_manifest)?;

    let root_text = read(&root_manifest)?;
    let root_src = SpecSource {
        file: &root_manifest,
        text: &root_text,
        prefix: "workspace.metadata.image.",
    };
    let defaults = parse_raw_at(&root_src, &["workspace", "metadata", "image"])
        .map_err(SpecError::ParseSpec)?;
    if let Some(name) = defaults.as_ref().and_then(|d| d.name.as_ref()) {
        return Err(SpecError::Workspace {
            manifest: root_manifest.clone(),
            message: format!(
                "`workspace.metadata.image.name` = {:?}: a workspace's images are named by package",
                name.get_ref()
            ),
            help: Some(
                "remove it and set `name` in each package's `[package.metadata.image]` (the \
                 default is the package name), or a shared `registry` prefix"
                    .to_owned(),
            ),
        });
    }
    let shared_registry = defaults
        .as_ref()
        .and_then(|d| d.registry.as_ref())
        .map(|r| r.get_ref().clone());

    let mut specs: Vec<ImageSpec> = Vec::new();
    for package in packages {
        let manifest = package.manifest_path.clone();
        let text = read(&manifest)?;
        let src = SpecSource {
            file: &manifest,
            text: &text,
            prefix: "package.metadata.image.",
        };
        let own =
            parse_raw_at(&src, &["package", "metadata", "image"]).map_err(SpecError::ParseSpec)?;
        if own.is_none() && package.bins().is_empty() {
            return Err(SpecError::Workspace {
                manifest,
                message: format!(
                    "package `{}` has no binary target and no `[package.metadata.image]`",
                    package.name
                ),
                help: Some(
                    "add a `[package.metadata.image]` table that says what goes in its image, or \
                     leave the package out (`--exclude`)"
                        .to_owned(),
                ),
            });
        }
        let inherited = || Inherited {
            name: Some(package.name.clone()),
            registry: shared_registry.clone(),
            vars: Vars::with_version(&package.version),
        };
        let shared = match &defaults {
            Some(raw) => Some(
                validate_with(raw.clone(), &root_src, &root_manifest, inherited())
                    .map_err(SpecError::ValidateSpec)?,
            ),
            None => None,
        };
        let zero_config = own.is_none();
        let workspace_sets_from = defaults.as_ref().is_some_and(|d| Explicit::of(d).from);
        let own = own.unwrap_or_default();
        let set = Explicit::of(&own);
        let spec =
            validate_with(own, &src, &manifest, inherited()).map_err(SpecError::ValidateSpec)?;
        let mut spec = merge(shared, spec, &set, package, selection.bin.as_deref())?;
        if zero_config && !workspace_sets_from {
            spec.stage.base = Base::Builtin(BuiltinBase::Static);
        }
        if let Some(other) = specs.iter().find(|s| s.short_name() == spec.short_name()) {
            return Err(SpecError::Workspace {
                manifest: spec.spec_path.clone(),
                message: format!(
                    "the image `{}` would be written where the image `{}` of {} is",
                    spec.name,
                    other.name,
                    other.spec_path.display()
                ),
                help: Some("give the images names that end differently (`name`)".to_owned()),
            });
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Every binary of the workspace, as `bin (package)`, for messages.
fn all_bins(meta: &Metadata) -> String {
    meta.packages
        .iter()
        .flat_map(|p| {
            p.bins()
                .into_iter()
                .map(move |b| format!("{b} ({})", p.name))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The packages `selection` picks, in cargo's order.
fn select<'a>(
    meta: &'a Metadata,
    dir: &Path,
    selection: &Selection,
    root_manifest: &Path,
) -> Result<Vec<&'a Package>, SpecError> {
    let has_image = |p: &Package| p.metadata.get("image").is_some_and(|v| !v.is_null());
    let members = || {
        meta.packages
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unknown = |name: &str, flag: &str| SpecError::Workspace {
        manifest: root_manifest.to_path_buf(),
        message: format!("{flag} `{name}`: the workspace has no package of that name"),
        help: Some(format!("the workspace's packages are: {}", members())),
    };
    for name in selection.packages.iter().chain(&selection.exclude) {
        if !meta.packages.iter().any(|p| &p.name == name) {
            let flag = if selection.packages.contains(name) {
                "-p"
            } else {
                "--exclude"
            };
            return Err(unknown(name, flag));
        }
    }

    let mut picked: Vec<&Package> = if let (Some(bin), true, false) =
        (&selection.bin, selection.packages.is_empty(), selection.all)
    {
        let having: Vec<&Package> = meta
            .packages
            .iter()
            .filter(|p| p.bins().contains(&bin.as_str()))
            .collect();
        if having.is_empty() {
            return Err(SpecError::Workspace {
                manifest: root_manifest.to_path_buf(),
                message: format!(
                    "--bin `{bin}`: no package of the workspace has a binary of that name"
                ),
                help: Some(format!("the workspace's binaries are: {}", all_bins(meta))),
            });
        }
        having
    } else if !selection.packages.is_empty() {
        meta.packages
            .iter()
            .filter(|p| selection.packages.contains(&p.name))
            .collect()
    } else if selection.all {
        meta.packages
            .iter()
            .filter(|p| has_image(p) || !p.bins().is_empty())
            .collect()
    } else {
        let here = meta
            .package_in(dir)
            .filter(|_| !same_dir(dir, &meta.workspace_root));
        match here {
            Some(p) => vec![p],
            None => {
                let with_image: Vec<&Package> =
                    meta.packages.iter().filter(|p| has_image(p)).collect();
                let with_bins: Vec<&Package> = meta
                    .packages
                    .iter()
                    .filter(|p| !p.bins().is_empty())
                    .collect();
                match (with_image.is_empty(), with_bins.as_slice()) {
                    (false, _) => with_image,
                    (true, [only]) => vec![*only],
                    (true, _) => {
                        return Err(SpecError::Workspace {
                            manifest: root_manifest.to_path_buf(),
                            message: "no image.toml here and no package of the workspace has \
                                      `[package.metadata.image]`"
                                .to_owned(),
                            help: Some(format!(
                                "pass `-p NAME` (or `--workspace`) to build a zero-config image of \
                                 a binary package ({}), add `[package.metadata.image]` to the \
                                 packages that ship images, or pass `--spec PATH`",
                                with_bins
                                    .iter()
                                    .map(|p| p.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        })
                    }
                }
            }
        }
    };
    picked.retain(|p| !selection.exclude.contains(&p.name));
    if picked.is_empty() {
        return Err(SpecError::Workspace {
            manifest: root_manifest.to_path_buf(),
            message: "every package with an image is excluded: nothing to build".to_owned(),
            help: Some(format!("the workspace's packages are: {}", members())),
        });
    }
    Ok(picked)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn read(path: &Path) -> Result<String, SpecError> {
    std::fs::read_to_string(path).map_err(|source| SpecError::ReadSpec {
        path: path.to_path_buf(),
        source,
    })
}

/// Which keys a package's own table sets (where it overrides the workspace's defaults).
struct Explicit {
    tags: bool,
    platforms: bool,
    index: bool,
    sbom: bool,
    provenance: bool,
    cache_from: bool,
    cache_to: bool,
    from: bool,
    epoch: bool,
    compression: bool,
    ignore_file: bool,
}

impl Explicit {
    fn of(raw: &RawSpec) -> Explicit {
        let last_stage_from = raw.from.is_none()
            && raw.config.is_none()
            && raw.layer.is_none()
            && raw
                .stage
                .as_ref()
                .and_then(|s| s.last())
                .is_some_and(|s| s.from.is_some());
        Explicit {
            tags: raw.tags.is_some(),
            platforms: raw.platforms.is_some(),
            index: raw.index.is_some(),
            sbom: raw.sbom.is_some(),
            provenance: raw.provenance.is_some(),
            cache_from: raw.cache_from.is_some(),
            cache_to: raw.cache_to.is_some(),
            from: raw.from.is_some() || last_stage_from,
            epoch: raw.epoch.is_some(),
            compression: raw.compression.is_some(),
            ignore_file: raw.ignore_file.is_some(),
        }
    }
}

/// The package's spec over the workspace's defaults (see the module docs).
fn merge(
    shared: Option<ImageSpec>,
    mut own: ImageSpec,
    set: &Explicit,
    package: &Package,
    bin: Option<&str>,
) -> Result<ImageSpec, SpecError> {
    let manifest = own.spec_path.clone();
    let error = |message: String, help: &str| SpecError::Workspace {
        manifest: manifest.clone(),
        message,
        help: Some(help.to_owned()),
    };

    // One build context for both: the outer directory, the inner one's paths rebased.
    let mut stages_of_shared = Vec::new();
    if let Some(mut shared) = shared {
        let context = if own.context.starts_with(&shared.context) {
            let prefix = own
                .context
                .strip_prefix(&shared.context)
                .unwrap_or(Path::new(""))
                .to_path_buf();
            rebase(&mut own, &prefix);
            shared.context.clone()
        } else if shared.context.starts_with(&own.context) {
            let prefix = shared
                .context
                .strip_prefix(&own.context)
                .unwrap_or(Path::new(""))
                .to_path_buf();
            rebase(&mut shared, &prefix);
            own.context.clone()
        } else if !uses_host_paths(&shared) {
            own.context.clone()
        } else {
            return Err(error(
                format!(
                    "the package's build context {} and the workspace's {} do not contain one \
                     another, and the workspace's layers read host files",
                    own.context.display(),
                    shared.context.display()
                ),
                "set `context` so that one of them holds the other",
            ));
        };
        own.context = context;

        if !set.tags {
            own.tags = shared.tags;
        }
        if !set.epoch {
            own.epoch = shared.epoch;
        }
        if !set.compression {
            own.compression = shared.compression;
        }
        if !set.platforms {
            own.platforms = shared.platforms;
        }
        if !set.index {
            own.index = shared.index;
        }
        if !set.sbom {
            own.sbom = shared.sbom;
        }
        if !set.provenance {
            own.provenance = shared.provenance;
        }
        if !set.cache_from {
            own.cache_from = shared.cache_from;
        }
        if !set.cache_to {
            own.cache_to = shared.cache_to;
        }
        if !set.ignore_file {
            own.ignore_file = shared.ignore_file;
        }
        let mut settings = shared.platform_settings;
        settings.append(&mut own.platform_settings);
        own.platform_settings = settings;
        let mut annotations = shared.annotations;
        annotations.append(&mut own.annotations);
        own.annotations = annotations;

        let lower = shared.stage;
        if !set.from {
            own.stage.base = lower.base.clone();
        }
        let names: BTreeSet<&str> = own.stage.layers.iter().map(|l| l.name.as_str()).collect();
        if let Some(dup) = lower
            .layers
            .iter()
            .find(|l| names.contains(l.name.as_str()))
        {
            return Err(error(
                format!(
                    "layer `{}` is defined both here and in `[workspace.metadata.image]`",
                    dup.name
                ),
                "rename the package's layer: layer names are unique in an image",
            ));
        }
        let mut layers = lower.layers;
        layers.append(&mut own.stage.layers);
        own.stage.layers = layers;
        own.stage.config = merge_config(lower.config, std::mem::take(&mut own.stage.config));
        stages_of_shared = shared.stages;
    }
    for stage in &stages_of_shared {
        if own.find_stage(&stage.name).is_some() {
            return Err(error(
                format!(
                    "stage `{}` is defined both here and in `[workspace.metadata.image]`",
                    stage.name
                ),
                "rename one of them: stage names are unique in an image",
            ));
        }
    }
    stages_of_shared.append(&mut own.stages);
    own.stages = stages_of_shared;

    // Cargo entries that name no package build this one.
    for entry in own.entries_mut() {
        if let Source::Cargo(src) = &mut entry.source {
            src.package.get_or_insert_with(|| package.name.clone());
        }
    }
    if own.platforms.len() > 1 {
        if let Some(target) = own.pinned_cargo_target() {
            return Err(error(
                format!(
                    "the workspace's `platforms` lists {} platforms, but a cargo entry here pins \
                     `target = {target:?}`, which builds for one",
                    own.platforms.len()
                ),
                "remove `target` from the cargo entry (each platform gets its own), or set it per \
                 platform in `[package.metadata.image.platform.\"os/arch\"]`",
            ));
        }
    }
    add_binary(&mut own, package, bin).map_err(|m| {
        error(
            m,
            "add a layer with `cargo = { bin = \"NAME\" }` to `[package.metadata.image]`, or set \
             `default-run` in `[package]`",
        )
    })?;

    // Labels and annotations from Cargo.toml, under what the specs say.
    let from_cargo = package_annotations(package);
    let mut labels = from_cargo.clone();
    labels.append(&mut own.stage.config.labels);
    own.stage.config.labels = labels;
    let mut annotations = from_cargo;
    annotations.append(&mut own.annotations);
    own.annotations = annotations;
    Ok(own)
}

/// Adds the package's binary as the top layer when no layer builds it (and it has one), and
/// makes it the entrypoint when none is set. `wanted` (`--bin`) picks which binary.
fn add_binary(spec: &mut ImageSpec, package: &Package, wanted: Option<&str>) -> Result<(), String> {
    let builds_it = spec
        .entries()
        .any(|e| matches!(&e.source, Source::Cargo(c) if c.package.as_deref() == Some(package.name.as_str())));
    let bins = package.bins();
    if let Some(wanted) = wanted {
        if builds_it {
            return Err(format!(
                "--bin `{wanted}`: the image of package `{}` already says which binary it holds \
                 (a `cargo = {{ ... }}` entry); --bin picks the binary of a zero-config image",
                package.name
            ));
        }
        if !bins.contains(&wanted) {
            return Err(format!(
                "--bin `{wanted}`: package `{}` has no binary of that name (its binaries: {})",
                package.name,
                if bins.is_empty() {
                    "none".to_owned()
                } else {
                    bins.join(", ")
                }
            ));
        }
    }
    if builds_it || bins.is_empty() {
        return Ok(());
    }
    let bin = match (wanted, bins.as_slice(), &package.default_run) {
        (Some(wanted), _, _) => wanted.to_string(),
        (None, [only], _) => only.to_string(),
        (None, _, Some(run)) => run.clone(),
        (None, many, None) => {
            return Err(format!(
                "package `{}` has several binaries ({}) and no layer says which goes in the image",
                package.name,
                many.join(", ")
            ))
        }
    };
    let taken = |n: &str| spec.stage.layers.iter().any(|l| l.name == n);
    let name = ["bin", "app", "binary"]
        .into_iter()
        .find(|n| !taken(n))
        .map_or_else(|| format!("bin-{}", package.name), str::to_owned);
    spec.stage.layers.push(LayerSpec {
        name,
        entries: vec![EntrySpec {
            dest: "usr/local/bin".to_owned(),
            dest_is_dir: true,
            source: Source::Cargo(CargoSource {
                package: Some(package.name.clone()),
                bin: Some(bin.clone()),
                profile: DEFAULT_PROFILE.to_owned(),
                features: Vec::new(),
                all_features: false,
                no_default_features: false,
                target: DEFAULT_TARGET.to_owned(),
                target_pinned: false,
                linker: None,
                cc: None,
                strip: Strip::default(),
                builder: Default::default(),
            }),
            owner: Owner::default(),
            mode: None,
            dir_mode: None,
            platforms: Vec::new(),
        }],
        remove: Vec::new(),
    });
    let config = &mut spec.stage.config;
    if config.entrypoint.is_none() && config.cmd.is_none() {
        config.entrypoint = Some(vec![format!("/usr/local/bin/{bin}")]);
    }
    Ok(())
}

/// `org.opencontainers.image.*` values from the package's `Cargo.toml`.
fn package_annotations(package: &Package) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) {
            out.insert(format!("org.opencontainers.image.{key}"), v.to_owned());
        }
    };
    put("title", Some(&package.name));
    put("version", Some(&package.version));
    put("description", package.description.as_deref());
    put("licenses", package.license.as_deref());
    put("source", package.repository.as_deref());
    put("url", package.homepage.as_deref());
    let authors = package.authors.join(", ");
    put("authors", Some(&authors));
    out
}

/// The package's config over the workspace's: scalars replaced, maps merged, lists united.
fn merge_config(
    lower: super::model::ImageConfig,
    upper: super::model::ImageConfig,
) -> super::model::ImageConfig {
    let mut env = lower.env;
    env.extend(upper.env);
    let mut labels = lower.labels;
    labels.extend(upper.labels);
    let union = |a: Vec<String>, b: Vec<String>| {
        a.into_iter()
            .chain(b)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    super::model::ImageConfig {
        entrypoint: upper.entrypoint.or(lower.entrypoint),
        cmd: upper.cmd.or(lower.cmd),
        env,
        workdir: upper.workdir.or(lower.workdir),
        user: upper.user.or(lower.user),
        labels,
        exposed_ports: union(lower.exposed_ports, upper.exposed_ports),
        volumes: union(lower.volumes, upper.volumes),
        stop_signal: upper.stop_signal.or(lower.stop_signal),
    }
}

/// Puts `prefix` in front of every host path of `spec` (its context moves up by `prefix`).
/// Bases (`oci:` paths) are absolute already.
fn rebase(spec: &mut ImageSpec, prefix: &Path) {
    if prefix.as_os_str().is_empty() {
        return;
    }
    let join = |p: &mut PathBuf| {
        *p = if p.as_os_str().is_empty() {
            prefix.to_path_buf()
        } else {
            prefix.join(&*p)
        }
    };
    for entry in spec.entries_mut() {
        match &mut entry.source {
            Source::Path { path, .. } => join(path),
            Source::Tar { path, .. } => join(path),
            _ => {}
        }
    }
    if let IgnoreFileSetting::File(path) = &mut spec.ignore_file {
        join(path);
    }
}

fn uses_host_paths(spec: &ImageSpec) -> bool {
    spec.entries()
        .any(|e| matches!(e.source, Source::Path { .. } | Source::Tar { .. }))
}
