//! The raw spec: `image.toml` exactly as written, before any validation.
//!
//! These types mirror the TOML one to one: every table is a struct with
//! `deny_unknown_fields`, keys are kebab-case, optional keys are `Option`s without defaults
//! applied, and every value a later check may reject keeps its byte span ([`Spanned`]) so the
//! error can point at it. Their doc comments are the user documentation: they become the
//! `description`s of the JSON schema ([`crate::spec::json_schema`]) and of the generated
//! reference (`schema/REFERENCE.md`).
//!
//! Nothing outside the spec module should consume these types for building: the validated
//! [`ImageSpec`](crate::spec::ImageSpec) is the pipeline's input.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::cargo::Strip;
use crate::types::{Compression, SbomFormat};

/// Pattern of an image name (the repository part of a reference).
pub(crate) const NAME_PATTERN: &str = r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$";
/// Pattern of a tag.
/// Pattern of a tag as written in a spec: a tag that may hold templates (`{version}`).
const TAG_TEMPLATE_PATTERN: &str = r"^(?:[A-Za-z0-9_]|\{(?:version|git_sha|git_short_sha)\})(?:[A-Za-z0-9_.-]|\{(?:version|git_sha|git_short_sha)\})*$";
/// Pattern of a `from` value this version accepts.
pub(crate) const FROM_PATTERN: &str =
    r"^(?:scratch|builtin:static|oci:.+|oci-archive:.+|docker-archive:.+|[a-z0-9][^\s]*)$";
/// Pattern of a layer name.
pub(crate) const LAYER_NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$";
/// Pattern of an environment variable name.
pub(crate) const ENV_NAME_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
/// Pattern of an exposed port.
pub(crate) const PORT_PATTERN: &str = r"^[0-9]{1,5}(?:/(?:tcp|udp|sctp))?$";
/// Pattern of an absolute path in the image.
pub(crate) const ABSOLUTE_PATTERN: &str = r"^/";
/// Pattern of a numeric owner.
pub(crate) const OWNER_PATTERN: &str = r"^[0-9]+(?::[0-9]+)?$";
/// Pattern of a mode written as a string.
pub(crate) const MODE_STRING_PATTERN: &str = r"^(?:0o)?[0-7]{1,5}$";
/// Pattern of a Debian suite, component or package name.
pub(crate) const DEBIAN_NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9+._/-]*$";
/// Pattern of a Debian mirror URL.
pub(crate) const URL_PATTERN: &str = r"^(?:https?://[^\s]+|file:[^\s]+)$";
/// Pattern of a stop signal.
pub(crate) const SIGNAL_PATTERN: &str = r"^(?:SIG[A-Z0-9+-]+|[0-9]+)$";

/// An image spec (`image.toml`): one OCI image made of a base, ordered layers and a runtime
/// config.
///
/// Host paths are relative to the build context (`context`), which is relative to the spec
/// file's directory. Built with `cargo image build`; every digest depends only on this file,
/// the files it names and `SOURCE_DATE_EPOCH`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "cargo-image spec (image.toml)")]
pub struct RawSpec {
    /// The image name: the repository part of a reference, lower-case (`hello`,
    /// `acme/hello`, `ghcr.io/acme/hello`, `localhost:5000/hello`). Path components are
    /// `[a-z0-9]+` joined by `.`, `_`, `__` or `-`, separated by `/`; an optional registry
    /// `host[:port]/` may come first. Required in `image.toml`; in `[package.metadata.image]`
    /// of a Cargo.toml it defaults to the package's name.
    #[serde(default)]
    #[schemars(with = "String", regex(pattern = NAME_PATTERN), length(max = 255))]
    pub name: Option<Spanned<String>>,

    /// A registry and namespace put in front of `name` (`ghcr.io/acme` and `api` make
    /// `ghcr.io/acme/api`). Mostly set once for every image of a cargo workspace, in
    /// `[workspace.metadata.image]`.
    #[serde(default)]
    #[schemars(with = "String")]
    pub registry: Option<Spanned<String>>,

    /// Tags of the image, written as `org.opencontainers.image.ref.name` in the output layout.
    /// Each is 1 to 128 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`, once its
    /// templates are replaced: `{version}` (the cargo package's version), `{git_sha}` and
    /// `{git_short_sha}` (the commit checked out in the build context), so
    /// `tags = ["{version}", "latest"]` works.
    #[serde(default)]
    #[schemars(with = "Vec<String>", transform = tag_list, extend("default" = ["latest"]))]
    pub tags: Option<Spanned<Vec<Spanned<String>>>>,

    /// The base the layers go on top of: `scratch` (nothing); `builtin:static`, a base
    /// cargo-image makes itself with what distroless/static has (`root` and `nonroot` (65532) in
    /// `/etc/passwd` and `/etc/group`, `/home/nonroot`, `/tmp`, `/etc/nsswitch.conf`, Mozilla's
    /// CA bundle at `/etc/ssl/certs/ca-certificates.crt`; runs as `65532:65532`), the same bytes
    /// on every machine (`builtin:` is never a registry reference: an image called `builtin`
    /// is `docker.io/library/builtin:TAG`); an image in a registry by
    /// reference (`alpine:3.20` = `docker.io/library/alpine:3.20`, `ghcr.io/acme/base@sha256:...`,
    /// `localhost:5000/base:1`); `oci:PATH[:TAG]`, an image in a local OCI image layout
    /// directory; `oci-archive:FILE[:TAG]`, a tar of a layout; or `docker-archive:FILE[:TAG]`, a
    /// `docker save` tarball. Paths are relative to the spec file's directory; without a tag, a
    /// layout's or archive's only image. The base's layers are reused as they are and its config
    /// is inherited as Docker's `FROM` does.
    #[serde(default)]
    #[schemars(with = "String", regex(pattern = FROM_PATTERN), extend("default" = "scratch"))]
    pub from: Option<Spanned<String>>,

    /// When to contact the registry for a registry base: `if-not-present` (use the store when it
    /// holds the reference: a digest, or a tag resolved before), `always` (resolve the tag again;
    /// blobs already held are not downloaded again) or `never` (offline; fail if not held).
    #[serde(default)]
    #[schemars(with = "String", extend("enum" = ["if-not-present", "always", "never"], "default" = "if-not-present"))]
    pub pull: Option<Spanned<String>>,

    /// Seconds since the Unix epoch used as the mtime of every file and as the image's
    /// `created` time. `SOURCE_DATE_EPOCH` overrides it at build time. Default: 0
    /// (1970-01-01T00:00:00Z).
    #[serde(default)]
    #[schemars(with = "u64", range(max = 253_402_300_799u64), extend("default" = 0))]
    pub epoch: Option<Spanned<u64>>,

    /// Compression of every layer: `gzip` (read by every runtime), `zstd` (smaller and
    /// faster, needs a recent runtime) or `none`.
    #[serde(default)]
    #[schemars(with = "Compression", extend("default" = "gzip"))]
    pub compression: Option<Spanned<Compression>>,

    /// The build context: the directory host paths (`path`, `tar`) are relative to, itself
    /// relative to the spec file's directory and inside it. It must exist. Default: the spec
    /// file's directory.
    #[serde(default)]
    #[schemars(with = "String", extend("default" = "."))]
    pub context: Option<Spanned<String>>,

    /// The ignore file host `path` sources honour: `true` (the default) reads `.dockerignore`
    /// in the build context when there is one, `false` reads none, and a path (relative to the
    /// build context and inside it) names another file, which must exist. Its syntax and
    /// meaning are Docker's: patterns relative to the build context's root, `*`, `?`, `**`,
    /// `!` exceptions, `#` comments; a pattern leaves out a path it or one of its parent
    /// directories matches, and the last matching pattern decides. Cargo's target directory,
    /// the store and the outputs of cargo-image are left out of host trees whatever it says.
    #[serde(default)]
    #[schemars(with = "RawIgnoreFile", extend("default" = true))]
    pub ignore_file: Option<Spanned<RawIgnoreFile>>,

    /// The platforms to build the image for, as `os/arch[/variant]`: `linux/amd64`,
    /// `linux/arm64`, `linux/arm/v7`, `linux/arm/v6`, `linux/386`, `linux/riscv64`,
    /// `linux/s390x`, `linux/ppc64le` (others need a `target` in `[platform."..."]`). With
    /// several, the build writes one OCI image index with a manifest per platform: each
    /// platform's base is that platform's image of the `from` index, each `cargo` entry is
    /// cross-compiled for the platform's rust target, and a layer with the same inputs on every
    /// platform is built once and shared by digest (over a base that differs per platform it is
    /// built per platform, as its directories take the base's attributes, and still stored and
    /// pushed once when its bytes are the same). `cargo image build --platform`
    /// overrides this list. Default: `["linux/amd64"]`, written as a plain image manifest.
    #[serde(default)]
    #[schemars(with = "Vec<String>", transform = platform_list, extend("default" = ["linux/amd64"]))]
    pub platforms: Option<Spanned<Vec<Spanned<String>>>>,

    /// Write an OCI image index even when the image is built for one platform (with several
    /// platforms there is always one). `cargo image build --index` sets it too.
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub index: Option<bool>,

    /// Remote layer caches (`registry/repository`) to take layers from: every layer the store
    /// lacks is looked up there, in order, before it is built (see the README's "A registry as
    /// the shared layer cache"). `--cache-from` (or `CARGO_IMAGE_CACHE_FROM`) replaces the
    /// list. Default: none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub cache_from: Option<Spanned<Vec<Spanned<String>>>>,

    /// Remote layer caches to record every layer of the build in, for other machines'
    /// `cache-from`. `--cache-to` (or `CARGO_IMAGE_CACHE_TO`) replaces the list. Default: none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub cache_to: Option<Spanned<Vec<Spanned<String>>>>,

    /// Attach a software bill of materials to each platform's image (an OCI 1.1 referrer in
    /// the layout: every crate of every cargo binary, the base image, the tarballs and host
    /// files). `true` (the default) or `"cyclonedx"` attaches a CycloneDX 1.6 JSON document,
    /// `"spdx"` an SPDX 2.3 JSON one, `["cyclonedx", "spdx"]` both; `sbom = false` writes none.
    #[serde(default)]
    #[schemars(with = "RawSbom", extend("default" = true))]
    pub sbom: Option<RawSbom>,

    /// Attach a SLSA v1 provenance statement (an in-toto Statement v1) to each platform's
    /// image (an OCI 1.1 referrer in the layout: the spec and its digest, the git commit, the
    /// `Cargo.lock` digest, the base images by digest and the toolchain). On by default;
    /// `provenance = false` writes none.
    #[serde(default)]
    #[schemars(extend("default" = true))]
    pub provenance: Option<bool>,

    /// How `cargo` entries build for each platform, keyed by `os/arch[/variant]`
    /// (`[platform."linux/arm64"]`): the rust target triple and the linker. A platform without
    /// an entry here uses the default musl target (`linux/amd64` ->
    /// `x86_64-unknown-linux-musl`, `linux/arm64` -> `aarch64-unknown-linux-musl`,
    /// `linux/arm/v7` -> `armv7-unknown-linux-musleabihf`, `linux/arm/v6` ->
    /// `arm-unknown-linux-musleabihf`, `linux/386` -> `i686-unknown-linux-musl`,
    /// `linux/riscv64` -> `riscv64gc-unknown-linux-musl`, `linux/s390x` ->
    /// `s390x-unknown-linux-musl`, `linux/ppc64le` -> `powerpc64le-unknown-linux-musl`) and
    /// the linker cargo's own configuration names (`CARGO_TARGET_<TRIPLE>_LINKER`,
    /// `target.<triple>.linker` in `.cargo/config.toml`), else the usual cross gcc when it is
    /// on `PATH` (`aarch64-linux-gnu-gcc` for `aarch64`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawPlatform>")]
    pub platform: Option<BTreeMap<Spanned<String>, RawPlatform>>,

    /// The runtime configuration of the image (the OCI image config).
    #[serde(default)]
    #[schemars(with = "RawConfig")]
    pub config: Option<RawConfig>,

    /// Annotations of the image manifest (string to string), such as
    /// `"org.opencontainers.image.source"`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub annotations: Option<BTreeMap<Spanned<String>, String>>,

    /// The layers of the image, bottom first. Each `[[layer]]` becomes one layer blob, cached
    /// and pushed on its own: put what changes rarely first.
    #[serde(default)]
    #[schemars(with = "Vec<RawLayer>")]
    pub layer: Option<Vec<RawLayer>>,

    /// Named source stages (multi-stage builds): images that are built only when the image (the
    /// top-level `from`, `config` and `layer`) or another needed stage uses them, as a base
    /// (`from = "stage:NAME"`) or through `from-stage` entries (like Dockerfile's
    /// `COPY --from=NAME`). When the top level has no `from`, `config` or `layer`, the last
    /// stage is the image. `cargo image build --target NAME` builds a stage as the image.
    #[serde(default)]
    #[schemars(with = "Vec<RawStage>")]
    pub stage: Option<Vec<RawStage>>,

    /// Where `debian` entries take packages from. Without it (or without `mirrors`), the
    /// mirrors of the build machine's apt configuration (`/etc/apt/sources.list`,
    /// `sources.list.d/*.list` and `*.sources`) are used, those listing the entry's suite
    /// first, with their `Signed-By` keyring.
    #[serde(default)]
    #[schemars(with = "RawDebianSettings")]
    pub debian: Option<RawDebianSettings>,
}

/// Where `debian` entries take packages from (`[debian]`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "DebianSettings")]
pub struct RawDebianSettings {
    /// Mirror root URLs, tried in order for each suite (`http://deb.debian.org/debian`,
    /// `https://...`, or `file:/srv/mirror`): the first that serves `dists/SUITE/InRelease` is
    /// used. Default: the build machine's apt mirrors.
    #[serde(default)]
    #[schemars(with = "Vec<String>", transform = url_list)]
    pub mirrors: Option<Spanned<Vec<Spanned<String>>>>,

    /// The OpenPGP keyring (binary or ASCII-armoured) the suites' `InRelease` signatures must
    /// verify with: a path relative to the build context, or absolute. Default: the apt
    /// source's `Signed-By`, else the `debian-archive-keyring` package's keyring.
    #[serde(default)]
    #[schemars(with = "String")]
    pub keyring: Option<Spanned<String>>,
}

/// Debian packages installed into the layer (`debian = { suite = "bookworm", packages = [...] }`):
/// the packages and everything their `Pre-Depends` and `Depends` need, resolved for each
/// platform's architecture, verified (the suite's signature, each index's and each `.deb`'s
/// SHA-256), their files unpacked at `/` and dpkg's database written
/// (`/var/lib/dpkg/status`, `/var/lib/dpkg/info/PKG.list` and `.md5sums`). No maintainer
/// script runs; a layer that installs `ca-certificates` gets the CA bundle its `postinst`
/// would make (`/etc/ssl/certs/ca-certificates.crt`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Debian")]
pub struct RawDebian {
    /// The suite (`bookworm`, `stable`, `bookworm-security`...): `dists/SUITE` on the mirror.
    #[schemars(with = "String", regex(pattern = DEBIAN_NAME_PATTERN))]
    pub suite: Spanned<String>,

    /// The packages to install, by name; their dependencies come with them.
    #[schemars(with = "Vec<String>", transform = package_list)]
    pub packages: Spanned<Vec<Spanned<String>>>,

    /// The archive components to resolve from, in order.
    #[serde(default)]
    #[schemars(with = "Vec<String>", extend("default" = ["main"]))]
    pub components: Option<Spanned<Vec<Spanned<String>>>>,
}

/// How `cargo` entries build for one platform (`[platform."linux/arm64"]`). Every key is
/// optional.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Platform")]
pub struct RawPlatform {
    /// The rust target triple cargo builds for on this platform (`cargo build --target`).
    /// Default: the platform's musl target (see `platform`).
    #[serde(default)]
    #[schemars(with = "String")]
    pub target: Option<Spanned<String>>,

    /// The linker cargo links this platform's binaries with (a program on `PATH` or a path),
    /// passed to cargo as `CARGO_TARGET_<TRIPLE>_LINKER`. Default: cargo's own configuration,
    /// else the usual cross gcc when it is on `PATH` (`aarch64-linux-gnu-gcc`,
    /// `arm-linux-gnueabihf-gcc`, `riscv64-linux-gnu-gcc`, `s390x-linux-gnu-gcc`,
    /// `powerpc64le-linux-gnu-gcc`); none for the host's own architecture.
    #[serde(default)]
    #[schemars(with = "String")]
    pub linker: Option<Spanned<String>>,

    /// The C compiler build scripts compile C with on this platform (crates that use the `cc`
    /// crate: a program on `PATH` or a path), passed to cargo as `CC_<target>`. Default: the
    /// `cc` crate's own environment (`CC_<target>`, `TARGET_CC`) when set, else `musl-gcc`
    /// (Debian `musl-tools`) for a musl target of the host's architecture, else the usual
    /// cross gcc (the same as `linker`, with its `ar`); none for a gnu target of the host's
    /// architecture.
    #[serde(default)]
    #[schemars(with = "String")]
    pub cc: Option<Spanned<String>>,

    /// What builds this platform's `cargo` entries: `"cargo"` (`cargo build`) or `"zigbuild"`
    /// (`cargo zigbuild`, from the PyPI packages `cargo-zigbuild` and `ziglang`), which links
    /// and compiles C with `zig cc` for any target without a cross gcc, and lets a gnu
    /// `target` pin the glibc version it links against (`x86_64-unknown-linux-gnu.2.31`).
    /// With `"zigbuild"`, `linker` and `cc` are zig's and cannot be set.
    #[serde(default)]
    #[schemars(with = "String", extend("enum" = ["cargo", "zigbuild"], "default" = "cargo"))]
    pub builder: Option<Spanned<String>>,
}

/// A named stage: a base, layers and a config, like the top level of the spec.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Stage")]
pub struct RawStage {
    /// The stage's name, unique among the stages: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
    #[schemars(with = "String", regex(pattern = LAYER_NAME_PATTERN))]
    pub name: Spanned<String>,

    /// The stage's base, in the same forms as the top-level `from`, or `stage:NAME` (another
    /// stage). Default: `scratch`.
    #[serde(default)]
    #[schemars(with = "String", extend("default" = "scratch"))]
    pub from: Option<Spanned<String>>,

    /// When to contact the registry for a registry base (as the top-level `pull`).
    #[serde(default)]
    #[schemars(with = "String", extend("enum" = ["if-not-present", "always", "never"], "default" = "if-not-present"))]
    pub pull: Option<Spanned<String>>,

    /// The stage's runtime configuration (used when the stage is built as the image).
    #[serde(default)]
    #[schemars(with = "RawConfig")]
    pub config: Option<RawConfig>,

    /// The stage's layers, bottom first.
    #[serde(default)]
    #[schemars(with = "Vec<RawLayer>")]
    pub layer: Option<Vec<RawLayer>>,
}

/// The runtime configuration of the image: what a container started from it runs, and how.
/// Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Config")]
pub struct RawConfig {
    /// The program a container runs, and its first arguments, as a list (exec form; no
    /// shell). Example: `["/usr/local/bin/hello"]`.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,

    /// Arguments appended to `entrypoint` (or the command itself when there is no
    /// entrypoint); a container's command line replaces them.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,

    /// Environment variables, name to value. Names are `[A-Za-z_][A-Za-z0-9_]*`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>", transform = env_names)]
    pub env: Option<BTreeMap<Spanned<String>, String>>,

    /// The working directory of the container's process: an absolute path.
    #[serde(default)]
    #[schemars(with = "String", regex(pattern = ABSOLUTE_PATTERN))]
    pub workdir: Option<Spanned<String>>,

    /// The user the process runs as: `user` or `user:group`, each a name or a numeric id
    /// (`65532:65532`).
    #[serde(default)]
    #[schemars(with = "String")]
    pub user: Option<Spanned<String>>,

    /// Labels of the image config (string to string).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub labels: Option<BTreeMap<Spanned<String>, String>>,

    /// Ports the container listens on: `PORT/PROTO` with `PROTO` one of `tcp`, `udp`,
    /// `sctp`; a bare `PORT` means `PORT/tcp`. Ports are 1 to 65535.
    #[serde(default)]
    #[schemars(with = "Vec<String>", transform = port_list)]
    pub exposed_ports: Option<Vec<Spanned<String>>>,

    /// Directories (absolute paths) a runtime should mount a volume on.
    #[serde(default)]
    #[schemars(with = "Vec<String>", transform = absolute_list)]
    pub volumes: Option<Vec<Spanned<String>>>,

    /// The signal that stops the container: a name (`SIGTERM`, `SIGINT`) or a number.
    #[serde(default)]
    #[schemars(with = "String", regex(pattern = SIGNAL_PATTERN))]
    pub stop_signal: Option<Spanned<String>>,
}

/// One layer: a name and the entries it adds to the image.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Layer")]
pub struct RawLayer {
    /// The layer's name, unique among the layers: `[A-Za-z0-9][A-Za-z0-9_.-]*`. Shown in
    /// messages and in the image history.
    #[schemars(with = "String", regex(pattern = LAYER_NAME_PATTERN))]
    pub name: Spanned<String>,

    /// The entries of the layer (`[[layer.add]]`). Two entries may not write the same path.
    /// A layer has at least one entry or one `remove`.
    #[serde(default)]
    #[schemars(with = "Vec<RawAdd>")]
    pub add: Option<Spanned<Vec<Spanned<RawAdd>>>>,

    /// Absolute paths that lower layers (the base's, or earlier layers) provide and this layer
    /// deletes: written as OCI whiteouts (`.wh.NAME`), or as an opaque directory
    /// (`.wh..wh..opq`) when this layer adds a directory at the same path (replacing it).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub remove: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One entry of a layer: exactly one content source (`path`, `content`, `dir`, `symlink`,
/// `tar`, `cargo` or `debian`) placed at `dest` in the image.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Add", transform = one_source)]
pub struct RawAdd {
    /// Source: a host file or directory, relative to the build context and inside it. A
    /// directory is copied with everything below it (see `include` and `exclude`). With
    /// `from-stage`, an absolute path in that stage's filesystem instead.
    #[serde(default)]
    #[schemars(with = "String")]
    pub path: Option<Spanned<String>>,

    /// With `path`: copy out of this stage's merged filesystem (all its layers applied,
    /// whiteouts respected, the top-level path's symlinks resolved inside the stage) instead of
    /// the host, like Dockerfile's `COPY --from=NAME`. Ownership and modes are kept from the
    /// stage unless `owner` / `mode` / `dir-mode` are set.
    #[serde(default)]
    #[schemars(with = "String")]
    pub from_stage: Option<Spanned<String>>,

    /// Source: a file with this content (UTF-8 text, written as is).
    #[serde(default)]
    #[schemars(with = "String")]
    pub content: Option<Spanned<String>>,

    /// Source: an empty directory (`dir = true`).
    #[serde(default)]
    #[schemars(with = "bool", extend("const" = true))]
    pub dir: Option<Spanned<bool>>,

    /// Source: a symbolic link pointing at this target (stored as written).
    #[serde(default)]
    #[schemars(with = "String")]
    pub symlink: Option<Spanned<String>>,

    /// Source: the entries of an existing tar archive (plain, gzip or zstd), relative to the
    /// build context and inside it, unpacked under `dest`: files, directories, symlinks, hard
    /// links (as files), character and block devices and fifos (with their device numbers), as
    /// a rootfs tarball has them. `include`/`exclude` pick members by their names in the
    /// archive (`exclude = ["dev/**"]`).
    #[serde(default)]
    #[schemars(with = "String")]
    pub tar: Option<Spanned<String>>,

    /// Source: a binary built by cargo. `cargo = {}` is the context package's only binary,
    /// built with the `release` profile for `x86_64-unknown-linux-musl`.
    #[serde(default)]
    #[schemars(with = "RawCargo")]
    pub cargo: Option<Spanned<RawCargo>>,

    /// Source: Debian packages and their dependencies, unpacked at `/` with dpkg's database
    /// (see `Debian`). Takes no `dest`, `mode`, `dir-mode`, `include` or `exclude`.
    #[serde(default)]
    #[schemars(with = "RawDebian")]
    pub debian: Option<Spanned<RawDebian>>,

    /// Only on these platforms (`os/arch[/variant]`, each one of the image's `platforms`):
    /// the entry is left out of the images of the other platforms (a layer left with no
    /// entries on a platform is left out of that platform's image). Default: every platform.
    #[serde(default)]
    #[schemars(with = "Vec<String>", transform = platform_list)]
    pub platforms: Option<Spanned<Vec<Spanned<String>>>>,

    /// Where the source goes in the image: an absolute path. A trailing `/` means "into this
    /// directory" (keeping the source's own name). Required, except for `tar` (default `/`) and
    /// `debian` (always `/`).
    #[serde(default)]
    #[schemars(with = "String", regex(pattern = ABSOLUTE_PATTERN))]
    pub dest: Option<Spanned<String>>,

    /// Permission bits of the files this entry produces: an octal string (`"755"`, `"0755"`,
    /// `"4755"`) or a TOML octal integer (`0o755`), at most `0o7777`. Default: the host's bits
    /// normalised to 0644, or 0755 if any execute bit is set (0755 for `cargo`, 0644 for
    /// `content`).
    #[serde(default)]
    #[schemars(with = "RawMode")]
    pub mode: Option<Spanned<RawMode>>,

    /// Permission bits of the directories this entry produces, in the same forms as `mode`.
    /// Default: 0755.
    #[serde(default)]
    #[schemars(with = "RawMode")]
    pub dir_mode: Option<Spanned<RawMode>>,

    /// Numeric owner of everything this entry produces: `"UID:GID"`, or `"UID"` for
    /// `UID:UID`. Default: `"0:0"`.
    #[serde(default)]
    #[schemars(with = "String", regex(pattern = OWNER_PATTERN), extend("default" = "0:0"))]
    pub owner: Option<Spanned<String>>,

    /// For `path` directories and `tar` archives: `.gitignore` patterns (relative to `path`,
    /// or to the archive's root) of the files to add,
    /// with their parent directories. The last pattern that matches a path decides, and a
    /// pattern starting with `!` takes back what an earlier one included; a path no pattern
    /// matches goes the way of its directory (`["docs/", "!docs/draft.md"]` adds `docs/`
    /// without the draft). `\!` starts a pattern with a literal `!`. Default: every file.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub include: Option<Spanned<Vec<Spanned<String>>>>,

    /// For `path` directories and `tar` archives: `.gitignore` patterns (relative to `path`,
    /// or to the archive's root) of files and directories to leave out (`"*.map"`, `"drafts/"`). A pattern without `/` matches at
    /// any depth, one with `/` is anchored at `path`, a trailing `/` matches directories only.
    /// The last pattern that matches a path decides: `["*.log", "!keep.log"]` leaves out every
    /// log but `keep.log`. As in git, nothing inside a left-out directory comes back.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub exclude: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A binary built by cargo. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Cargo")]
pub struct RawCargo {
    /// The package that owns the binary (`cargo build -p`). Default: the package in the
    /// build context.
    #[serde(default)]
    #[schemars(with = "String")]
    pub package: Option<Spanned<String>>,

    /// The binary target (`cargo build --bin`). Default: the package's only binary.
    #[serde(default)]
    #[schemars(with = "String")]
    pub bin: Option<Spanned<String>>,

    /// The cargo profile (`cargo build --profile`).
    #[serde(default)]
    #[schemars(with = "String", extend("default" = "release"))]
    pub profile: Option<Spanned<String>>,

    /// Features to enable (`cargo build --features`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub features: Option<Vec<Spanned<String>>>,

    /// Enable every feature (`cargo build --all-features`).
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub all_features: Option<bool>,

    /// Do not enable the `default` feature (`cargo build --no-default-features`).
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub no_default_features: Option<bool>,

    /// The Rust target triple to build for, fixed for this entry (only with a single
    /// platform). Default: the platform's target (see `platform`), which for `linux/amd64` is
    /// `x86_64-unknown-linux-musl`: a static binary that runs on `scratch`.
    #[serde(default)]
    #[schemars(with = "String", extend("default" = "x86_64-unknown-linux-musl"))]
    pub target: Option<Spanned<String>>,

    /// How much debug information the binary keeps in the image: cargo's profile setting
    /// `strip`, passed as `CARGO_PROFILE_<PROFILE>_STRIP` (it wins over the profile's `strip` in
    /// `Cargo.toml`). `true` or `"symbols"`: no debug information and no symbol table;
    /// `"debuginfo"`: symbols only; `false` or `"none"`: whatever the profile produces.
    /// Default: `"symbols"` (nothing in the image needs them at run time).
    #[serde(default)]
    #[schemars(with = "RawStrip", extend("default" = "symbols"))]
    pub strip: Option<RawStrip>,
}

/// A `strip` setting as cargo takes it: a boolean or one of cargo's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStrip(pub Strip);

impl<'de> Deserialize<'de> for RawStrip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StripVisitor;

        impl Visitor<'_> for StripVisitor {
            type Value = RawStrip;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"true, false, "none", "debuginfo" or "symbols""#)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawStrip, E> {
                Ok(RawStrip(if v { Strip::Symbols } else { Strip::None }))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStrip, E> {
                Strip::parse(v)
                    .map(RawStrip)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        deserializer.deserialize_any(StripVisitor)
    }
}

impl JsonSchema for RawStrip {
    fn schema_name() -> Cow<'static, str> {
        "Strip".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "boolean" },
                { "type": "string", "enum": ["none", "debuginfo", "symbols"] },
            ]
        })
    }
}

/// A permission mode as written: a TOML integer or a string of octal digits. Checked and
/// converted by validation, which can see how the integer was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawMode {
    /// `mode = 0o755`.
    Integer(i64),
    /// `mode = "0755"`.
    String(String),
}

impl<'de> Deserialize<'de> for RawMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;

        impl Visitor<'_> for ModeVisitor {
            type Value = RawMode;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"an octal mode: a string like "0755" or an integer like 0o755"#)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawMode, E> {
                Ok(RawMode::Integer(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawMode, E> {
                Ok(RawMode::Integer(i64::try_from(v).unwrap_or(i64::MAX)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawMode, E> {
                Ok(RawMode::String(v.to_owned()))
            }
        }

        deserializer.deserialize_any(ModeVisitor)
    }
}

impl JsonSchema for RawMode {
    fn schema_name() -> Cow<'static, str> {
        "Mode".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 0, "maximum": 0o7777 },
                { "type": "string", "pattern": MODE_STRING_PATTERN },
            ]
        })
    }
}

/// The spec's `ignore-file` as written: `true`, `false` or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawIgnoreFile {
    /// `ignore-file = true` or `false`.
    Enabled(bool),
    /// `ignore-file = "PATH"`.
    Path(String),
}

impl<'de> Deserialize<'de> for RawIgnoreFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IgnoreFileVisitor;

        impl Visitor<'_> for IgnoreFileVisitor {
            type Value = RawIgnoreFile;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    r#"`true`, `false` or the path of an ignore file, like ".dockerignore""#,
                )
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawIgnoreFile, E> {
                Ok(RawIgnoreFile::Enabled(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawIgnoreFile, E> {
                Ok(RawIgnoreFile::Path(v.to_owned()))
            }
        }

        deserializer.deserialize_any(IgnoreFileVisitor)
    }
}

/// The spec's `sbom`: on or off, one format, or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSbom {
    /// `sbom = true` (CycloneDX) or `false`.
    Enabled(bool),
    /// `sbom = "spdx"` or `sbom = ["cyclonedx", "spdx"]` (never empty).
    Formats(Vec<SbomFormat>),
}

impl<'de> Deserialize<'de> for RawSbom {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SbomVisitor;

        impl<'de> Visitor<'de> for SbomVisitor {
            type Value = RawSbom;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"`true`, `false`, "cyclonedx", "spdx" or a list of them"#)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawSbom, E> {
                Ok(RawSbom::Enabled(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSbom, E> {
                let format = v.parse().map_err(|_| {
                    E::invalid_value(de::Unexpected::Str(v), &r#""cyclonedx" or "spdx""#)
                })?;
                Ok(RawSbom::Formats(vec![format]))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawSbom, A::Error> {
                let mut formats = Vec::new();
                while let Some(format) = seq.next_element::<SbomFormat>()? {
                    formats.push(format);
                }
                if formats.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list of formats: name one, or write `sbom = false` to attach none",
                    ));
                }
                formats.sort();
                formats.dedup();
                Ok(RawSbom::Formats(formats))
            }
        }

        deserializer.deserialize_any(SbomVisitor)
    }
}

impl RawSbom {
    /// The formats it asks for, in the order a build attaches them (none for `false`).
    pub fn formats(&self) -> Vec<SbomFormat> {
        match self {
            RawSbom::Enabled(true) => vec![SbomFormat::CycloneDx],
            RawSbom::Enabled(false) => Vec::new(),
            RawSbom::Formats(formats) => formats.clone(),
        }
    }
}

impl JsonSchema for RawSbom {
    fn schema_name() -> Cow<'static, str> {
        "Sbom".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "boolean" },
                { "type": "string", "enum": ["cyclonedx", "spdx"] },
                {
                    "type": "array",
                    "items": { "type": "string", "enum": ["cyclonedx", "spdx"] },
                    "minItems": 1,
                    "uniqueItems": true,
                },
            ]
        })
    }
}

impl JsonSchema for RawIgnoreFile {
    fn schema_name() -> Cow<'static, str> {
        "IgnoreFile".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "boolean" },
                { "type": "string", "minLength": 1 },
            ]
        })
    }
}

/// Schema transform: a list of tags.
fn tag_list(schema: &mut Schema) {
    schema.insert(
        "items".into(),
        serde_json::json!({ "type": "string", "pattern": TAG_TEMPLATE_PATTERN }),
    );
    schema.insert("minItems".into(), 1.into());
    schema.insert("uniqueItems".into(), true.into());
}

/// Pattern of a platform (`os/arch[/variant]`).
pub(crate) const PLATFORM_PATTERN: &str = r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$";

/// Schema transform: a list of platforms.
fn platform_list(schema: &mut Schema) {
    schema.insert(
        "items".into(),
        serde_json::json!({ "type": "string", "pattern": PLATFORM_PATTERN }),
    );
    schema.insert("minItems".into(), 1.into());
    schema.insert("uniqueItems".into(), true.into());
}

/// Schema transform: a map whose keys are environment variable names.
fn env_names(schema: &mut Schema) {
    schema.insert(
        "propertyNames".into(),
        serde_json::json!({ "pattern": ENV_NAME_PATTERN }),
    );
}

/// Schema transform: a list of exposed ports.
fn port_list(schema: &mut Schema) {
    schema.insert(
        "items".into(),
        serde_json::json!({ "type": "string", "pattern": PORT_PATTERN }),
    );
}

/// Schema transform: a list of mirror URLs.
fn url_list(schema: &mut Schema) {
    schema.insert(
        "items".into(),
        serde_json::json!({ "type": "string", "pattern": URL_PATTERN }),
    );
    schema.insert("minItems".into(), 1.into());
}

/// Schema transform: a non-empty list of Debian package names.
fn package_list(schema: &mut Schema) {
    schema.insert(
        "items".into(),
        serde_json::json!({ "type": "string", "pattern": DEBIAN_NAME_PATTERN }),
    );
    schema.insert("minItems".into(), 1.into());
    schema.insert("uniqueItems".into(), true.into());
}

/// Schema transform: a list of absolute paths.
fn absolute_list(schema: &mut Schema) {
    schema.insert(
        "items".into(),
        serde_json::json!({ "type": "string", "pattern": ABSOLUTE_PATTERN }),
    );
}

/// The content sources of an `[[layer.add]]` entry (its keys, in the order messages list them).
pub(crate) const SOURCES: [&str; 7] = [
    "path", "content", "dir", "symlink", "tar", "cargo", "debian",
];

/// Schema transform: exactly one source per entry, `dest` required except for `tar`, and
/// `include`/`exclude` only with `path`.
fn one_source(schema: &mut Schema) {
    let branches: Vec<serde_json::Value> = SOURCES
        .iter()
        .map(|source| {
            let required: Vec<&str> = if matches!(*source, "tar" | "debian") {
                vec![source]
            } else {
                vec![source, "dest"]
            };
            serde_json::json!({ "required": required })
        })
        .collect();
    schema.insert("oneOf".into(), branches.into());
    schema.insert(
        "dependencies".into(),
        serde_json::json!({ "include": ["path"], "exclude": ["path"], "from-stage": ["path"] }),
    );
}
