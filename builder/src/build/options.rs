//! The options of a build resolved once, up front (what ripgrep calls HiArgs): tags, epoch,
//! threads, output and store paths, annotations, and the platforms with the spec as built for
//! each of them. Everything after this step reads these, never the raw [`BuildOptions`] and
//! spec defaults again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::shared::Shared;
use super::{BuildOptions, Error, OutputFormat};
use crate::cargo;
use crate::layer::{HostFilter, IgnoreFile, Reserved, WriteOptions};
use crate::oci;
use crate::spec::{self, Base, IgnoreFileSetting, ImageSpec, Stage};

/// One platform of a build, with the spec as built for it.
pub(super) struct PlatformSpec {
    pub platform: oci::Platform,
    pub spec: ImageSpec,
}

/// The platforms a build is for (`--platform`, else the spec's, else `linux/amd64`), each with
/// the spec as built for it, and whether the output is an image index.
pub(super) fn platform_specs(
    spec: &ImageSpec,
    opts: &BuildOptions,
) -> Result<(Vec<PlatformSpec>, bool), Error> {
    let mut platforms: Vec<oci::Platform> = Vec::new();
    let asked = if !opts.platforms.is_empty() {
        opts.platforms.clone()
    } else if !spec.platforms.is_empty() {
        spec.platforms.clone()
    } else {
        vec![oci::Platform::linux_amd64()]
    };
    for p in asked {
        if !platforms.contains(&p) {
            platforms.push(p);
        }
    }
    if platforms.len() > 1 {
        if let Some(target) = spec.pinned_cargo_target() {
            return Err(Error::PinnedTarget {
                target: target.to_string(),
                count: platforms.len(),
            });
        }
    }
    let has_cargo = spec
        .entries()
        .any(|e| matches!(&e.source, spec::Source::Cargo(src) if !src.target_pinned));
    let as_index = platforms.len() > 1 || spec.index || opts.index;
    let specs = platforms
        .into_iter()
        .map(|platform| {
            let target = match spec.cargo_target(&platform) {
                Some(t) => t,
                None if !has_cargo => String::new(),
                None => {
                    return Err(Error::UnknownPlatform {
                        platform: platform.to_string(),
                    })
                }
            };
            Ok(PlatformSpec {
                spec: spec.for_platform(&platform, &target),
                platform,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((specs, as_index))
}

/// The stages `target` needs (as bases or through `from-stage`), transitively, sources first
/// and `target` last; each once.
pub(super) fn needed_stages<'a>(spec: &'a ImageSpec, target: &'a Stage) -> Vec<&'a Stage> {
    fn visit<'a>(spec: &'a ImageSpec, stage: &'a Stage, out: &mut Vec<&'a Stage>) {
        if out.iter().any(|s| s.name == stage.name) {
            return;
        }
        let mut uses = Vec::new();
        if let Base::Stage(name) = &stage.base {
            uses.push(name.as_str());
        }
        for layer in &stage.layers {
            for entry in &layer.entries {
                if let spec::Source::Stage { stage, .. } = &entry.source {
                    uses.push(stage.as_str());
                }
            }
        }
        for name in uses {
            if let Some(used) = spec.find_stage(name) {
                visit(spec, used, out);
            }
        }
        if !out.iter().any(|s| s.name == stage.name) {
            out.push(stage);
        }
    }
    let mut out = Vec::new();
    visit(spec, target, &mut out);
    out
}

/// What one build decides once, up front (and per platform: `platform`, `label`).
#[derive(Clone)]
pub(super) struct Context {
    pub target: Option<String>,
    pub format: OutputFormat,
    pub tags: Vec<String>,
    pub epoch: u64,
    pub threads: usize,
    pub output: PathBuf,
    pub store_root: PathBuf,
    pub platform: oci::Platform,
    pub write: WriteOptions,
    pub annotations: BTreeMap<String, String>,
    /// The platform layer and image names carry in a multi-platform build.
    pub label: Option<String>,
    /// `--load`: the container engine program to load the image into.
    pub load: Option<&'static str>,
    /// What host `path` sources leave out: cargo's and our directories, and what the ignore
    /// file excludes. Made once, so planning and building walk host trees alike.
    pub host_filter: Arc<HostFilter>,
    /// What the registry clients of the invocation learnt of registries (shared by them).
    pub registry: crate::registry::Learnt,
}

impl Context {
    /// This context for one platform of the build; `multi` when there are several.
    pub fn for_platform(&self, platform: &oci::Platform, multi: bool) -> Context {
        Context {
            platform: platform.clone(),
            label: multi.then(|| platform.to_string()),
            ..self.clone()
        }
    }

    /// The stage that becomes the image: `--target`, else the spec's image stage.
    pub fn target_stage<'s>(&self, spec: &'s ImageSpec) -> Result<&'s Stage, Error> {
        match &self.target {
            None => Ok(&spec.stage),
            Some(name) => spec.find_stage(name).ok_or_else(|| Error::UnknownTarget {
                target: name.clone(),
                stages: spec
                    .all_stages()
                    .map(|s| format!("`{}`", s.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Resolves the options of `spec`; cargo and git are asked through `shared`.
    pub fn new(spec: &ImageSpec, opts: &BuildOptions, shared: &Shared) -> Result<Self, Error> {
        let tags = if opts.tags.is_empty() {
            spec.tags.clone()
        } else {
            // The same templates as the spec's tags (`{version}`, `{git_short_sha}`, ...).
            opts.tags
                .iter()
                .map(|tag| {
                    spec::expand_tag(spec, tag).map_err(|reason| Error::InvalidTag {
                        tag: tag.clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let epoch = opts.source_date_epoch.unwrap_or(spec.epoch);
        if epoch > spec::MAX_EPOCH {
            return Err(Error::InvalidEpoch { epoch });
        }
        let threads = threads(opts);
        let mut workspace = shared.workspace(&spec.context);
        let cargo_target = workspace.as_ref().map(|w| w.target_directory.clone());
        if let (Some(w), Some(dir)) = (workspace.as_mut(), &opts.cargo.overrides.target_dir) {
            w.target_directory = dir.clone();
        }
        let image_dir = image_dir(spec, workspace.as_ref());
        let output = opts.output.clone().unwrap_or_else(|| {
            let name = spec.short_name();
            image_dir.join(match opts.output_format {
                OutputFormat::Oci => name.to_string(),
                OutputFormat::OciArchive => format!("{name}.tar"),
                OutputFormat::DockerArchive => format!("{name}.docker.tar"),
            })
        });
        let store_root = opts
            .store
            .clone()
            .unwrap_or_else(|| image_dir.join(".store"));

        let host_filter = host_filter(
            spec,
            cargo_target.iter().chain(&opts.cargo.overrides.target_dir),
            &image_dir,
            &store_root,
            &output,
        )?;

        let mut annotations: BTreeMap<String, String> = BTreeMap::new();
        annotations.insert(
            "org.opencontainers.image.created".into(),
            oci::rfc3339(epoch),
        );
        if let Some(repo) = workspace.as_ref().and_then(|w| w.repository.clone()) {
            annotations.insert("org.opencontainers.image.source".into(), repo);
        }
        // Never fails a build: outside a git checkout there is no revision to record.
        if let Some(rev) = shared.revision(&spec.context) {
            annotations.insert("org.opencontainers.image.revision".into(), rev);
        }
        annotations.extend(spec.annotations.clone());

        Ok(Context {
            target: opts.target.clone(),
            format: opts.output_format,
            tags,
            epoch,
            threads,
            output,
            store_root,
            platform: oci::Platform::linux_amd64(),
            write: WriteOptions {
                compression: spec.compression,
                mtime: epoch,
                threads,
            },
            annotations,
            label: None,
            load: opts.load.map(|engine| engine.program()).transpose()?,
            host_filter: Arc::new(host_filter),
            registry: shared.registry.clone(),
        })
    }
}

/// What host trees leave out (see [`HostFilter`]): cargo's target directories (as cargo
/// metadata reports it, `CARGO_TARGET_DIR` and `build.target-dir` included, and `--target-dir`),
/// our image directory (`target/image`, outputs and store; beside the spec outside a
/// workspace), the store and output wherever they are, the temporary names of the output beside
/// it and our scratch directories anywhere; and the ignore file the spec names.
fn host_filter<'a>(
    spec: &ImageSpec,
    target_dirs: impl Iterator<Item = &'a PathBuf>,
    image_dir: &Path,
    store_root: &Path,
    output: &Path,
) -> Result<HostFilter, Error> {
    let mut reserved: Vec<Reserved> = target_dirs
        .map(|dir| Reserved::path(dir, "cargo's target directory"))
        .collect();
    reserved.push(Reserved::path(image_dir, "cargo-image's output directory"));
    reserved.push(Reserved::path(store_root, "the store of cargo-image"));
    reserved.push(Reserved::path(output, "the output of this build"));
    if let Some(name) = output.file_name().and_then(|n| n.to_str()) {
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let prefix = oci::temp_prefix(name.as_ref());
        reserved.push(Reserved::temporary_name(
            Some(parent),
            prefix.to_string_lossy(),
            oci::RANDOM_LEN,
            "a temporary output of cargo-image",
        ));
    }
    for prefix in oci::SCRATCH_PREFIXES {
        reserved.push(Reserved::temporary_name(
            None,
            prefix,
            oci::RANDOM_LEN,
            "a scratch directory of cargo-image",
        ));
    }
    let ignore = match &spec.ignore_file {
        IgnoreFileSetting::Off => None,
        IgnoreFileSetting::Default => {
            IgnoreFile::read(&spec.context.join(IgnoreFileSetting::DEFAULT_NAME), true)
                .map_err(|e| Error::IgnoreFile(Box::new(e)))?
        }
        IgnoreFileSetting::File(path) => IgnoreFile::read(&spec.context.join(path), false)
            .map_err(|e| Error::IgnoreFile(Box::new(e)))?,
    };
    Ok(HostFilter::new(reserved, ignore))
}

/// The threads of `--jobs` (0: one per CPU).
pub(super) fn threads(opts: &BuildOptions) -> usize {
    if opts.jobs == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.jobs
    }
}

/// `target/image` of the cargo workspace that holds the context, or `target/image` beside the
/// spec outside any workspace.
pub(super) fn image_dir(spec: &ImageSpec, workspace: Option<&cargo::Workspace>) -> PathBuf {
    let target = match workspace {
        Some(w) => w.target_directory.clone(),
        None => spec
            .spec_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("target"),
    };
    target.join("image")
}
