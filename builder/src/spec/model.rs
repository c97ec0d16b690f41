//! The resolved image spec: what the rest of the pipeline consumes.
//!
//! These types are produced by [`crate::spec::load`] from the raw TOML types in
//! [`crate::spec::raw`] once every path is normalised, every reference parsed and every default
//! applied. Nothing downstream of this module ever sees raw TOML.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A `cargo = { ... }` entry: the request [`crate::cargo`] builds (it is cargo's type; the spec
/// only fills it in).
pub use crate::cargo::CargoSource;
use crate::types::{Compression, Platform, PullPolicy, SbomFormat};

/// The default image mtime and `created` time when neither `SOURCE_DATE_EPOCH` nor the spec's
/// `epoch` is set: 1970-01-01T00:00:00Z.
pub const DEFAULT_EPOCH: u64 = 0;

/// The latest epoch (spec `epoch` or `SOURCE_DATE_EPOCH`) accepted: 9999-12-31T23:59:59Z, the
/// last time RFC 3339 (the config's `created`) can write.
pub const MAX_EPOCH: u64 = 253_402_300_799;

/// A fully validated image spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSpec {
    /// The spec file this was read from (absolute), for messages.
    pub spec_path: PathBuf,
    /// The build context: host paths in `add` entries are relative to it (absolute, canonical).
    pub context: PathBuf,
    /// The image name (repository part of a reference, e.g. `hello` or `ghcr.io/acme/hello`).
    pub name: String,
    /// Tags written as `org.opencontainers.image.ref.name` in the layout's `index.json`.
    /// Never empty (defaults to `["latest"]`).
    pub tags: Vec<String>,
    /// Seconds since the Unix epoch used for tar mtimes, `created` and history, unless
    /// `SOURCE_DATE_EPOCH` overrides it at build time.
    pub epoch: u64,
    /// Compression of every layer blob.
    pub compression: Compression,
    /// Manifest annotations given in the spec (the builder adds `created` and VCS ones).
    pub annotations: BTreeMap<String, String>,
    /// The stage that becomes the image.
    pub stage: Stage,
    /// Named source stages, in the order the spec declares them. Only those the image needs
    /// (transitively) are built.
    pub stages: Vec<Stage>,
    /// The platforms the spec lists, in its order; empty when it lists none (the image is then
    /// built for `linux/amd64` as a plain manifest).
    pub platforms: Vec<Platform>,
    /// Whether the spec asks for an image index even for one platform (`index = true`).
    pub index: bool,
    /// The SBOM formats each platform's image gets a referrer of (`sbom`): CycloneDX by
    /// default, none for `sbom = false`; sorted, without repeats.
    pub sbom: Vec<SbomFormat>,
    /// Whether each platform's image gets a provenance referrer (`provenance`, true by default).
    pub provenance: bool,
    /// Remote layer caches to take layers from (`cache-from`), in order.
    pub cache_from: Vec<String>,
    /// Remote layer caches to record layers in (`cache-to`).
    pub cache_to: Vec<String>,
    /// How cargo builds for each platform the spec has a `[platform."..."]` table for.
    pub platform_settings: BTreeMap<Platform, PlatformSettings>,
    /// Which ignore file host `path` sources honour (`ignore-file`).
    pub ignore_file: IgnoreFileSetting,
    /// Where `debian` entries take packages from (`[debian]`).
    pub debian: DebianSettings,
}

/// Where `debian` entries take packages from (the spec's `[debian]` table); what it leaves
/// empty comes from the build machine's apt configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DebianSettings {
    /// Mirror root URLs, without a trailing `/`; empty: apt's.
    pub mirrors: Vec<String>,
    /// The keyring file (absolute); `None`: apt's `Signed-By` or `debian-archive-keyring`.
    pub keyring: Option<PathBuf>,
}

/// A `debian` entry: packages of a suite, installed with their dependencies at `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DebianSource {
    pub suite: String,
    /// The packages as the spec lists them.
    pub packages: Vec<String>,
    /// The components resolved from, in order (default `["main"]`).
    pub components: Vec<String>,
}

/// Which ignore file host `path` sources honour (the spec's `ignore-file`). Its patterns are
/// always relative to the build context.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IgnoreFileSetting {
    /// `.dockerignore` in the build context, when there is one (the default,
    /// `ignore-file = true`).
    #[default]
    Default,
    /// None (`ignore-file = false`).
    Off,
    /// This file, relative to the build context (`ignore-file = "PATH"`); it must exist.
    File(PathBuf),
}

impl IgnoreFileSetting {
    /// The name of the default ignore file, in the build context.
    pub const DEFAULT_NAME: &'static str = ".dockerignore";
}

/// How `cargo` entries build for one platform (a `[platform."os/arch"]` table).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlatformSettings {
    /// The rust target triple; `None` means the platform's default musl target.
    pub target: Option<String>,
    /// The linker; `None` means cargo's own configuration or the usual cross gcc.
    pub linker: Option<String>,
    /// The C compiler of build scripts; `None` means the `cc` crate's environment or the usual
    /// compiler.
    pub cc: Option<String>,
    /// `cargo build` or `cargo zigbuild`.
    pub builder: crate::cargo::Builder,
}

impl ImageSpec {
    /// The rust target triple `cargo` entries build for on `platform`: the spec's
    /// `[platform."..."] target`, else the platform's default musl target.
    pub fn cargo_target(&self, platform: &Platform) -> Option<String> {
        self.platform_settings
            .get(platform)
            .and_then(|s| s.target.clone())
            .or_else(|| crate::cargo::default_target(platform).map(str::to_string))
    }

    /// This spec as built for `platform`: entries limited to other platforms are left out (and
    /// layers left with nothing to do), and every `cargo` entry that does not pin its own
    /// `target` builds for `target` with the platform's linker.
    pub fn for_platform(&self, platform: &Platform, target: &str) -> ImageSpec {
        let settings = self.platform_settings.get(platform);
        let linker = settings.and_then(|s| s.linker.clone());
        let cc = settings.and_then(|s| s.cc.clone());
        let builder = settings.map(|s| s.builder).unwrap_or_default();
        let stage_for = |stage: &Stage| Stage {
            layers: stage
                .layers
                .iter()
                .filter_map(|layer| {
                    let entries: Vec<EntrySpec> = layer
                        .entries
                        .iter()
                        .filter(|e| e.platforms.is_empty() || e.platforms.contains(platform))
                        .map(|e| {
                            let mut e = e.clone();
                            if let Source::Cargo(src) = &mut e.source {
                                if !src.target_pinned {
                                    src.target = target.to_string();
                                }
                                src.linker = linker.clone();
                                src.cc = cc.clone();
                                src.builder = builder;
                            }
                            e
                        })
                        .collect();
                    (!entries.is_empty() || !layer.remove.is_empty()).then(|| LayerSpec {
                        name: layer.name.clone(),
                        entries,
                        remove: layer.remove.clone(),
                    })
                })
                .collect(),
            ..stage.clone()
        };
        ImageSpec {
            stage: stage_for(&self.stage),
            stages: self.stages.iter().map(stage_for).collect(),
            ..self.clone()
        }
    }

    /// Every stage: the source stages in order, then the image's own stage.
    pub fn all_stages(&self) -> impl Iterator<Item = &Stage> {
        self.stages.iter().chain(std::iter::once(&self.stage))
    }

    /// [`all_stages`](Self::all_stages), to change them.
    pub fn all_stages_mut(&mut self) -> impl Iterator<Item = &mut Stage> {
        self.stages
            .iter_mut()
            .chain(std::iter::once(&mut self.stage))
    }

    /// Every `add` entry of every layer of every stage.
    pub fn entries(&self) -> impl Iterator<Item = &EntrySpec> {
        self.all_stages()
            .flat_map(|s| &s.layers)
            .flat_map(|l| &l.entries)
    }

    /// [`entries`](Self::entries), to change them.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut EntrySpec> {
        self.all_stages_mut()
            .flat_map(|s| &mut s.layers)
            .flat_map(|l| &mut l.entries)
    }

    /// The last part of the image name (`hello` of `ghcr.io/acme/hello`): the output directory
    /// name.
    pub fn short_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }

    /// Whether some `cargo` entry pins its own `target` (so it cannot build several platforms).
    pub fn pinned_cargo_target(&self) -> Option<&str> {
        self.entries().find_map(|e| match &e.source {
            Source::Cargo(src) if src.target_pinned => Some(src.target.as_str()),
            _ => None,
        })
    }

    /// The stage called `name` (a source stage, or the image's own stage).
    pub fn find_stage(&self, name: &str) -> Option<&Stage> {
        self.all_stages().find(|s| s.name == name)
    }
}

/// A stage: a base, ordered layers on top of it, and the image config.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The stage name (`"image"` for the single-stage form).
    pub name: String,
    /// What the layers go on top of.
    pub base: Base,
    /// Layers in order, bottom first.
    pub layers: Vec<LayerSpec>,
    /// The runtime config of the image.
    pub config: ImageConfig,
}

/// The base of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// No base: the image has only its own layers.
    Scratch,
    /// An image in a local OCI image layout directory, selected by its
    /// `org.opencontainers.image.ref.name` (or the only image in the layout when `tag` is `None`).
    OciLayout { path: PathBuf, tag: Option<String> },
    /// An image in an OCI archive (a tar of a layout), selected like [`Base::OciLayout`].
    OciArchive { path: PathBuf, tag: Option<String> },
    /// An image in a `docker save` archive, selected by `name:tag` or tag (or its only image).
    DockerArchive { path: PathBuf, tag: Option<String> },
    /// Another stage of the spec, built first.
    Stage(String),
    /// An image in a registry, by its normalised reference (`docker.io/library/alpine:3.20`).
    Registry { reference: String, pull: PullPolicy },
    /// A base cargo-image makes itself (`builtin:NAME`), never looked up in a registry.
    Builtin(BuiltinBase),
}

/// The bases cargo-image makes itself (`from = "builtin:NAME"`). Their content is generated
/// from pinned sources, so their digests are the same on every machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinBase {
    /// `builtin:static`: what distroless/static gives a static binary (users, `/tmp`, a CA
    /// bundle), see `build::builtin`.
    Static,
}

impl BuiltinBase {
    /// The scheme of built-in bases in `from`.
    pub const SCHEME: &'static str = "builtin:";
    /// Every built-in base.
    pub const ALL: [BuiltinBase; 1] = [BuiltinBase::Static];

    /// The base as written in `from` (`builtin:static`).
    pub fn name(self) -> &'static str {
        match self {
            BuiltinBase::Static => "builtin:static",
        }
    }
}

/// One layer: a name (for messages and the image history) and its content entries.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub name: String,
    pub entries: Vec<EntrySpec>,
    /// Paths (normalised, without the leading `/`) this layer deletes from lower layers.
    pub remove: Vec<String>,
}

/// One `[[layer.add]]` entry: a content source placed at a destination in the image.
#[derive(Debug, Clone, PartialEq)]
pub struct EntrySpec {
    /// Where the content goes: a normalised absolute path in the image without the leading `/`
    /// (`"usr/local/bin/hello"`); `""` is the image root.
    pub dest: String,
    /// Whether the spec wrote `dest` with a trailing `/` ("put the source inside this directory").
    pub dest_is_dir: bool,
    /// Where the content comes from.
    pub source: Source,
    /// Owner of every entry this source produces (default 0:0).
    pub owner: Owner,
    /// Permission bits for files (and symlink-free leaves); `None` normalises host bits
    /// (0644, or 0755 if any exec bit is set).
    pub mode: Option<u32>,
    /// Permission bits for directories this source produces; `None` means 0755.
    pub dir_mode: Option<u32>,
    /// The platforms whose images have this entry; empty means every platform.
    pub platforms: Vec<Platform>,
}

/// Numeric owner of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// Where an entry's content comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A host file or directory tree, relative to the context (normalised, never escaping it).
    Path {
        path: PathBuf,
        /// `.gitignore` patterns (relative to `path`) of the files to include, `!` negating;
        /// empty means everything.
        include: Vec<String>,
        /// `.gitignore` patterns (relative to `path`) of files and directories to leave out,
        /// `!` negating.
        exclude: Vec<String>,
    },
    /// A file whose content is given in the spec.
    Content(Vec<u8>),
    /// An empty directory.
    Dir,
    /// A symbolic link with this target (stored as written).
    Symlink(String),
    /// The entries of an existing tar archive (plain, gzip or zstd), relative to the context.
    Tar {
        path: PathBuf,
        /// `.gitignore` patterns (relative to the archive's root) of the members to import, as
        /// for [`Source::Path`].
        include: Vec<String>,
        /// `.gitignore` patterns (relative to the archive's root) of members to leave out.
        exclude: Vec<String>,
    },
    /// The binary produced by a cargo build.
    Cargo(CargoSource),
    /// Debian packages and their dependencies, with dpkg's database.
    Debian(DebianSource),
    /// A file or directory tree out of another stage's merged filesystem.
    Stage {
        stage: String,
        /// The path in the stage, normalised, without the leading `/` (`""` is the root).
        path: String,
        include: Vec<String>,
        exclude: Vec<String>,
    },
}

impl Source {
    /// A `tar` source that imports every member of the archive at `path`.
    pub fn tar(path: impl Into<PathBuf>) -> Source {
        Source::Tar {
            path: path.into(),
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

/// The runtime configuration of the image (the OCI image config's `config` object).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// Environment variables, sorted by name.
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Ports as `port/proto` (`8080/tcp`), sorted.
    pub exposed_ports: Vec<String>,
    /// Volume paths, sorted.
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
}

/// The runtime configuration as the OCI image config writes it (`env` as `NAME=value` in name
/// order, ports and volumes in their sorted order), ready for
/// the OCI model's `image_config` to apply on top of a base's. The conversion lives here so
/// that the OCI model needs nothing from the spec.
impl From<&ImageConfig> for oci_spec::image::Config {
    fn from(config: &ImageConfig) -> Self {
        let mut out = oci_spec::image::Config::default();
        out.set_env(Some(
            config
                .env
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect(),
        ));
        out.set_entrypoint(config.entrypoint.clone());
        out.set_cmd(config.cmd.clone());
        out.set_labels(Some(config.labels.clone().into_iter().collect()));
        out.set_exposed_ports(Some(config.exposed_ports.clone()));
        out.set_volumes(Some(config.volumes.clone()));
        out.set_working_dir(config.workdir.clone());
        out.set_user(config.user.clone());
        out.set_stop_signal(config.stop_signal.clone());
        out
    }
}
