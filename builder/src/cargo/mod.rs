//! Cargo builds: the binaries that `cargo = { ... }` layer entries put into an image.
//!
//! # Brief overview
//! For each distinct [`CargoSource`] of a spec, [`build`] runs `cargo build` for the source's
//! target triple and profile (by default `x86_64-unknown-linux-musl`, `release`, so the binary is
//! static and runs on `scratch`) and returns the path of the finished executable, read from cargo's
//! own JSON messages (never guessed from the target directory layout).
//!
//! # Reproducibility
//! A binary embeds the paths of the sources it was built from (panic locations, debug info). So the
//! image digest does not depend on where the workspace was checked out or on the user's home, the
//! build remaps those prefixes the way reproducible Rust builds do:
//! the workspace root to `/build`, cargo's home (registry sources) to `/cargo` and the rustup home to
//! `/rustup`, through `CARGO_ENCODED_RUSTFLAGS` (after any flags the user set). The builds go to their
//! own target directory (`<target-dir>/image/.cargo`) so these flags never invalidate the user's
//! ordinary `cargo build` artifacts, and vice versa.
//!
//! Binaries are stripped of symbols unless the source says otherwise ([`Strip`]), through cargo's
//! profile setting `strip` (`CARGO_PROFILE_<PROFILE>_STRIP`, which wins over the profile's own
//! `strip` in `Cargo.toml`); [`DebugSize`] measures what a built binary still holds.
//!
//! The cargo program is `$CARGO` when set (cargo sets it for `cargo image`), else `cargo` on `PATH`.
//!
//! # Platforms
//! A source's `target` is the triple of the platform the image is built for ([`default_target`]
//! maps `linux/arm64` to `aarch64-unknown-linux-musl`); a cross build gets its linker from
//! [`resolve_linker`] (the spec's, cargo's own configuration, or the usual cross gcc), passed as
//! `CARGO_TARGET_<TRIPLE>_LINKER`, and its build scripts' C compiler from [`resolve_cc`]
//! (`CC_<target>`; a build script that finds none ends in [`Error::CcMissing`], naming the
//! package to install). A platform may build with `cargo zigbuild` instead ([`Builder`]), where
//! zig compiles and links. Each triple has its own directory under cargo's target
//! directory, so two platforms never share a binary's path.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod cc;
mod metadata_cache;
mod resolve;
mod strip;
mod targets;
mod zigbuild;

pub use cc::{ar_env, cc_env, default_cc, resolve_cc, CCompiler};
pub use resolve::{crates, Crate, CrateSource, Resolved};
pub use strip::{profile_env, DebugSize, Strip};
pub use targets::{
    default_linker, default_target, is_host_arch, linker_env, platform_of_target, resolve_linker,
    DEFAULT_TARGETS,
};
pub use zigbuild::{rust_triple, Builder};

/// A binary to build with cargo: what a spec's `cargo = { ... }` entry asks for (the spec
/// validates it; this module builds it and depends on no spec type).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CargoSource {
    /// The package that owns the binary (`-p`); `None` means the package of the context.
    pub package: Option<String>,
    /// The `[[bin]]` target name; `None` means the package's only binary.
    pub bin: Option<String>,
    /// The cargo profile (`release` by default).
    pub profile: String,
    /// Features to enable.
    pub features: Vec<String>,
    pub all_features: bool,
    pub no_default_features: bool,
    /// The rust target triple (`x86_64-unknown-linux-musl` by default, so the binary is static;
    /// set per platform by the spec, `ImageSpec::for_platform`).
    pub target: String,
    /// Whether the spec's entry set `target` itself (it then stays as written on every
    /// platform, which validation allows only for a single platform).
    pub target_pinned: bool,
    /// The linker cargo links with (`CARGO_TARGET_<TRIPLE>_LINKER`); `None` leaves it to
    /// cargo's configuration or the usual cross gcc ([`resolve_linker`]).
    pub linker: Option<String>,
    /// The C compiler build scripts compile C with (`CC_<target>` for the `cc` crate); `None`
    /// leaves it to the environment or the usual compiler ([`resolve_cc`]).
    pub cc: Option<String>,
    /// How much debug information the binary keeps (cargo's `strip`, symbols by default).
    pub strip: Strip,
    /// `cargo build` or `cargo zigbuild`.
    pub builder: Builder,
}

/// Errors from cargo builds.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "failed to run `{program}`: {source}; is cargo installed and on PATH (or $CARGO set)?"
    )]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not read {path}: {source}")]
    ReadLock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid Cargo.lock: {message}")]
    ParseLock { path: PathBuf, message: String },
    #[error(
        "`cargo metadata` in {dir} lists no workspace member {}",
        match package { Some(p) => format!("named `{p}`"), None => "whose Cargo.toml is there".into() }
    )]
    NoPackage {
        dir: PathBuf,
        package: Option<String>,
    },
    #[error(
        "{dir} is in no cargo project: there is no Cargo.toml in it or in a directory above it"
    )]
    NoProject { dir: PathBuf },
    #[error("`cargo metadata` failed in {dir}:\n{stderr}")]
    Metadata { dir: PathBuf, stderr: String },
    #[error("could not read the output of `cargo metadata` in {dir}: {source}")]
    MetadataParse {
        dir: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the rust target `{target}` is not installed; install it with `rustup target add {target}` \
         (or set another `target` for the platform in the spec: `[platform.\"OS/ARCH\"] target = \"...\"`)"
    )]
    TargetMissing { target: String },
    #[error(
        "no linker for the rust target `{target}`: `{linker}` is not on PATH; {hint}set \
         `{key}` in the spec, or `{env}` for cargo",
        env = linker_env(target)
    )]
    LinkerMissing {
        target: String,
        linker: String,
        /// How to install the usual linker (`install it (apt-get install ...), or `).
        hint: String,
        /// The spec key that names another linker.
        key: String,
    },
    #[error(
        "no C compiler for the rust target `{target}`: `{tool}` is not on PATH; {hint}set \
         `{key}` in the spec, or `{env}` for cargo",
        env = cc_env(target)
    )]
    CcMissing {
        target: String,
        /// The compiler that is missing.
        tool: String,
        /// How to install it (`install it (apt-get install ...), or `).
        hint: String,
        /// The spec key that names another compiler.
        key: String,
    },
    #[error(
        "`cargo zigbuild` is not installed (a platform of the spec sets `builder = \"zigbuild\"`); \
         install it with `pip install cargo-zigbuild ziglang` (or `just deps`), or remove `builder`"
    )]
    ZigbuildMissing,
    #[error("cargo build of {what} failed (exit status {status})\n{stderr}")]
    Build {
        what: String,
        status: String,
        stderr: String,
    },
    #[error(
        "cargo build of {what} produced no executable{hint}; set `bin` in the cargo entry of the spec \
         to one of the package's binaries"
    )]
    NoExecutable { what: String, hint: String },
    #[error(
        "cargo build of {what} produced several executables ({names}); set `bin` in the cargo entry \
         of the spec to pick one"
    )]
    SeveralExecutables { what: String, names: String },
}

/// How to run cargo, besides what each [`CargoSource`] says.
#[derive(Debug, Clone, Default)]
pub struct CargoOptions {
    /// Let cargo's own progress and diagnostics through to this process's stderr (the CLI sets it
    /// unless `--quiet`); when false they are captured and shown only if the build fails. Either
    /// way cargo writes to a pipe this module reads (to recognise a build script that found no C
    /// compiler), so cargo draws no progress bar; its colours are kept on a terminal.
    pub show_output: bool,
    /// Extra flags passed through to every `cargo build` (e.g. `--locked`, `--offline`).
    pub extra_args: Vec<String>,
    /// When a target's standard library is missing and `rustup` is there, install it with
    /// `rustup target add` (as `cross` and `cargo-zigbuild` do) instead of failing.
    pub install_targets: bool,
    /// Overrides from the command line (`--profile`, `--features`, ...), applied to every cargo
    /// source of the spec on top of what the spec says.
    pub overrides: CargoOverrides,
}

/// Cargo arguments given on the command line that override the spec's `cargo` entries.
#[derive(Debug, Clone, Default)]
pub struct CargoOverrides {
    /// `--profile`: replaces the spec's profile.
    pub profile: Option<String>,
    /// `--features`: added to the spec's features.
    pub features: Vec<String>,
    /// `--all-features`.
    pub all_features: bool,
    /// `--no-default-features`.
    pub no_default_features: bool,
    /// `--target-dir`: the target directory whose `image/.cargo` holds cargo-image's builds.
    pub target_dir: Option<PathBuf>,
}

impl CargoOverrides {
    /// `src` with these overrides applied.
    pub fn apply(&self, src: &CargoSource) -> CargoSource {
        let mut src = src.clone();
        if let Some(profile) = &self.profile {
            src.profile = profile.clone();
        }
        for f in &self.features {
            if !src.features.contains(f) {
                src.features.push(f.clone());
            }
        }
        src.features.sort();
        src.all_features |= self.all_features;
        src.no_default_features |= self.no_default_features;
        src
    }
}

/// What `cargo metadata` says about the workspace a context belongs to.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_directory: PathBuf,
    /// The `repository` of the package whose manifest is in the directory asked about, if any.
    pub repository: Option<String>,
}

fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A package of a workspace, as `cargo metadata` describes it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub manifest_path: PathBuf,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub homepage: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    /// `default-run`: the binary `cargo run` picks when there are several.
    #[serde(default)]
    pub default_run: Option<String>,
    #[serde(default)]
    pub targets: Vec<Target>,
    /// `[package.metadata]`, as JSON (`null` when absent).
    #[serde(default)]
    pub metadata: serde_json::Value,
}

impl Package {
    /// The names of the package's binary targets, in cargo's order.
    pub fn bins(&self) -> Vec<&str> {
        self.targets
            .iter()
            .filter(|t| t.kind.iter().any(|k| k == "bin"))
            .map(|t| t.name.as_str())
            .collect()
    }

    /// The directory of the package's `Cargo.toml`.
    pub fn dir(&self) -> &Path {
        self.manifest_path.parent().unwrap_or(Path::new("."))
    }
}

/// A build target of a package (`lib`, `bin`, `example`...).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Target {
    pub name: String,
    pub kind: Vec<String>,
}

/// What `cargo metadata --no-deps` says about the workspace a directory belongs to.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Metadata {
    pub workspace_root: PathBuf,
    pub target_directory: PathBuf,
    /// The workspace members (and the root package), in cargo's order.
    pub packages: Vec<Package>,
    /// `[workspace.metadata]`, as JSON (`null` when absent).
    #[serde(default)]
    pub metadata: serde_json::Value,
}

impl Metadata {
    /// Whether `cargo metadata` run in `dir` says what this metadata says, when this metadata
    /// was got in a directory it describes too (the caller checks that). `dir` is then the workspace root or the directory of one of its packages, and no
    /// directory from `dir` up to the root (the root excluded) holds a cargo configuration
    /// file: cargo reads `.cargo/config.toml` in the directory it runs in and in every parent,
    /// so one below the root could change what it says (the target directory).
    pub fn describes(&self, dir: &Path) -> bool {
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let (dir, root) = (canonical(dir), canonical(&self.workspace_root));
        let member = dir == root || self.package_in(&dir).is_some();
        member
            && dir
                .ancestors()
                .take_while(|d| *d != root)
                .all(|d| !has_cargo_config(d))
    }

    /// The package whose `Cargo.toml` is in `dir`, if any.
    pub fn package_in(&self, dir: &Path) -> Option<&Package> {
        let here = dir.join("Cargo.toml");
        let canonical = here.canonicalize().ok();
        self.packages
            .iter()
            .find(|p| p.manifest_path == here || Some(&p.manifest_path) == canonical.as_ref())
    }
}

/// Whether `dir` holds a cargo configuration file (`.cargo/config.toml` or `.cargo/config`).
fn has_cargo_config(dir: &Path) -> bool {
    let cargo = dir.join(".cargo");
    cargo.join("config.toml").exists() || cargo.join("config").exists()
}

/// Runs `cargo metadata --no-deps` (with `$CARGO`, as cargo passes it to subcommands) in `dir`.
pub fn metadata(dir: &Path) -> Result<Metadata, Error> {
    run_metadata(dir, &["--no-deps"])
}

/// `cargo metadata --no-deps` in `dir`, as [`metadata`] runs it, unless one of `places` keeps
/// an answer for `dir` that still holds (the builds keep them in their store; see
/// `metadata_cache.rs` for what "holds" checks). A fresh answer comes back with a
/// [`FreshMetadata`], which keeps it for the next process.
pub fn metadata_kept(
    dir: &Path,
    places: &[PathBuf],
) -> Result<(Metadata, Option<FreshMetadata>), Error> {
    let env = metadata_cache::environment();
    for place in places {
        if let Some(kept) = env
            .as_ref()
            .and_then(|env| metadata_cache::cached(place, dir, env))
        {
            return Ok((kept, None));
        }
    }
    let recorded_ns = metadata_cache::now_ns();
    let meta = metadata(dir)?;
    let fresh = env.map(|env| FreshMetadata {
        dir: dir.to_path_buf(),
        env,
        recorded_ns,
    });
    Ok((meta, fresh))
}

/// The subdirectory of a store in which builds keep `cargo metadata` answers.
pub const KEPT_ANSWERS_DIR: &str = metadata_cache::DIR_NAME;

/// Whether the file `name` at `path` in a [`KEPT_ANSWERS_DIR`] is a kept answer, and whether a
/// build can still take it: `None` for a name that is not an answer's (not ours; leave it),
/// `Some(false)` for an answer of a directory that is gone, of another version, or unreadable
/// (what `cache prune` removes).
pub(crate) fn kept_answer_of_use(name: &str, path: &Path) -> Option<bool> {
    metadata_cache::is_answer_name(name).then(|| metadata_cache::is_of_use(path))
}

/// What keeps a fresh answer of `cargo metadata` for later processes ([`metadata_kept`]).
#[derive(Debug, Clone)]
pub struct FreshMetadata {
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// When cargo was started.
    recorded_ns: i64,
}

impl FreshMetadata {
    /// The directory cargo ran in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps `metadata` (what cargo answered) in `place`'s `cargo-metadata/` directory.
    pub fn keep(&self, place: &Path, metadata: &Metadata) -> std::io::Result<()> {
        metadata_cache::remember(place, &self.dir, &self.env, metadata, self.recorded_ns)
    }
}

/// Runs `cargo metadata --format-version 1 ARGS` in `dir` and parses what it prints.
fn run_metadata<T: serde::de::DeserializeOwned>(dir: &Path, args: &[&str]) -> Result<T, Error> {
    let program = cargo_program();
    let output = Command::new(&program)
        .args(["metadata", "--format-version", "1"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Metadata {
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_string(),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|source| Error::MetadataParse {
        dir: dir.to_path_buf(),
        source,
    })
}

/// Reads the workspace root and target directory of the cargo project that `dir` belongs to.
///
/// `cargo metadata` (some 40 ms through rustup's proxy) is run only when it can answer, and
/// once per directory and process while what it reads is unchanged: a directory with no
/// `Cargo.toml` in it or above it is in no cargo project ([`Error::NoProject`], cargo is not
/// run), and an answer is reused while the [`ManifestChain`] of the directory (every
/// `Cargo.toml` and `.cargo/config` cargo's discovery could read, and the environment that
/// redirects it) is the same.
pub fn workspace(dir: &Path) -> Result<Workspace, Error> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static KNOWN: Mutex<Option<HashMap<PathBuf, (ManifestChain, Workspace)>>> = Mutex::new(None);

    if !in_project(dir) {
        return Err(Error::NoProject {
            dir: dir.to_path_buf(),
        });
    }
    let Some(chain) = ManifestChain::of(dir) else {
        return workspace_uncached(dir);
    };
    let lock = || KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((known, ws)) = lock().get_or_insert_with(HashMap::new).get(&chain.dir) {
        if *known == chain {
            return Ok(ws.clone());
        }
    }
    let ws = workspace_uncached(dir)?;
    lock()
        .get_or_insert_with(HashMap::new)
        .insert(chain.dir.clone(), (chain, ws.clone()));
    Ok(ws)
}

/// Whether `dir` is in a cargo project: a `Cargo.toml` in it or in a directory above it, as
/// cargo searches for one (upwards from the physical path). `true` when `dir` cannot be
/// resolved: cargo then reports what is wrong.
pub fn in_project(dir: &Path) -> bool {
    dir.canonicalize().map_or(true, |dir| {
        dir.ancestors().any(|a| a.join("Cargo.toml").exists())
    })
}

fn workspace_uncached(dir: &Path) -> Result<Workspace, Error> {
    Ok(Workspace::of(&metadata(dir)?, dir))
}

impl Workspace {
    /// The workspace `meta` describes, as seen from `dir` (whose package gives `repository`).
    pub fn of(meta: &Metadata, dir: &Path) -> Workspace {
        Workspace {
            root: meta.workspace_root.clone(),
            target_directory: meta.target_directory.clone(),
            repository: meta.package_in(dir).and_then(|p| p.repository.clone()),
        }
    }
}

/// A file's size, mtime and ctime (seconds, nanoseconds) and inode.
type FileStamp = (u64, i64, i64, i64, i64, u64);

/// What `cargo metadata --no-deps` run in a directory can read to find its workspace root,
/// target directory and the package there: the `Cargo.toml`, `.cargo/config.toml` and
/// `.cargo/config` of the directory and of each of its ancestors (cargo searches upwards from
/// the physical path), cargo's home configuration, and the environment variables that move
/// them; each file by its stat data (size, mtime, ctime, inode) or its absence.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ManifestChain {
    /// The directory, canonical (cargo's current directory is the physical path).
    dir: PathBuf,
    files: Vec<Option<FileStamp>>,
    env: Vec<Option<OsString>>,
}

impl ManifestChain {
    /// `None` when `dir` cannot be resolved (cargo then reports what is wrong).
    fn of(dir: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        const ENV: [&str; 5] = [
            "CARGO",
            "CARGO_HOME",
            "HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET_DIR",
        ];
        let dir = dir.canonicalize().ok()?;
        let stat = |p: &Path| {
            std::fs::metadata(p).ok().map(|m| {
                (
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.ino(),
                )
            })
        };
        let mut files = Vec::new();
        for a in dir.ancestors() {
            files.push(stat(&a.join("Cargo.toml")));
            files.push(stat(&a.join(".cargo/config.toml")));
            files.push(stat(&a.join(".cargo/config")));
        }
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
        if let Some(home) = home {
            files.push(stat(&home.join("config.toml")));
            files.push(stat(&home.join("config")));
        }
        Some(ManifestChain {
            dir,
            files,
            env: ENV.iter().map(std::env::var_os).collect(),
        })
    }
}

/// The target directory cargo-image's own builds use inside a workspace's target directory
/// (`target/image/.cargo`: image names cannot start with a dot, so it never meets an output).
pub fn image_target_dir(ws: &Workspace) -> PathBuf {
    ws.target_directory.join("image").join(".cargo")
}

/// Makes sure the standard library for `target` is installed, with `rustup target add` if allowed.
fn ensure_target(target: &str, opts: &CargoOptions) -> Result<(), Error> {
    match check_target_installed(target) {
        Err(Error::TargetMissing { .. }) if opts.install_targets => {
            let status = Command::new("rustup")
                .args(["target", "add", target])
                .stdin(Stdio::null())
                .stdout(if opts.show_output {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                })
                .stderr(if opts.show_output {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                })
                .status();
            match status {
                Ok(s) if s.success() => check_target_installed(target),
                _ => Err(Error::TargetMissing {
                    target: target.to_string(),
                }),
            }
        }
        other => other,
    }
}

/// Checks that the standard library for `target` is installed in the active toolchain.
fn check_target_installed(target: &str) -> Result<(), Error> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", target])
        .stdin(Stdio::null())
        .output()
    else {
        // No rustc to ask: let cargo report whatever is wrong.
        return Ok(());
    };
    if !out.status.success() {
        return Ok(());
    }
    let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if libdir.is_dir() {
        Ok(())
    } else {
        Err(Error::TargetMissing {
            target: target.to_string(),
        })
    }
}

/// The path-remapping rustflags that make a binary independent of where things live on this host.
fn remap_flags(ws: &Workspace, target_dir: &Path) -> Vec<String> {
    let mut flags = Vec::new();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".rustup")));
    // rustc applies the *last* matching remapping, so the most specific prefixes come last.
    if let Some(h) = rustup_home {
        flags.push(format!("--remap-path-prefix={}=/rustup", h.display()));
    }
    if let Some(h) = cargo_home {
        flags.push(format!("--remap-path-prefix={}=/cargo", h.display()));
    }
    flags.push(format!("--remap-path-prefix={}=/build", ws.root.display()));
    flags.push(format!(
        "--remap-path-prefix={}=/build/target",
        target_dir.display()
    ));
    flags
}

/// A human name of what is being built, for messages: `bin hello of package hello (release, x86_64-unknown-linux-musl)`.
pub fn describe(src: &CargoSource) -> String {
    let mut s = String::new();
    match &src.bin {
        Some(b) => s.push_str(&format!("bin `{b}`")),
        None => s.push_str("the binary"),
    }
    match &src.package {
        Some(p) => s.push_str(&format!(" of package `{p}`")),
        None => s.push_str(" of the context's package"),
    }
    s.push_str(&format!(" ({}, {})", src.profile, src.target));
    if let Some(linker) = &src.linker {
        s.push_str(&format!(" linked by `{linker}`"));
    }
    if let Some(cc) = &src.cc {
        s.push_str(&format!(" with C compiler `{cc}`"));
    }
    if src.builder == Builder::Zigbuild {
        s.push_str(" with cargo zigbuild");
    }
    s
}

/// Builds the binary a cargo entry asks for, in the project that `context` belongs to, and returns
/// the path of the executable.
pub fn build(src: &CargoSource, context: &Path, opts: &CargoOptions) -> Result<PathBuf, Error> {
    let src = &opts.overrides.apply(src);
    src.builder.check_installed()?;
    let triple = rust_triple(&src.target);
    ensure_target(triple, opts)?;
    // zigbuild links and compiles C with zig: neither is ours to choose then.
    let (linker, c_compiler) = match src.builder {
        Builder::Cargo => (
            resolve_linker(&src.target, src.linker.as_deref(), context)?,
            resolve_cc(&src.target, src.cc.as_deref())?,
        ),
        Builder::Zigbuild => (None, CCompiler::default()),
    };
    let mut ws = workspace(context)?;
    if let Some(dir) = &opts.overrides.target_dir {
        ws.target_directory = dir.clone();
    }
    let target_dir = image_target_dir(&ws);
    let what = describe(src);

    let mut rustflags: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(s) if !s.is_empty() => s.split('\x1f').map(str::to_string).collect(),
        _ => std::env::var("RUSTFLAGS")
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    };
    rustflags.extend(remap_flags(&ws, &target_dir));

    let program = cargo_program();
    let mut cmd = Command::new(&program);
    cmd.current_dir(context)
        .arg(src.builder.subcommand())
        .arg("--message-format=json-render-diagnostics")
        .arg("--profile")
        .arg(&src.profile)
        .arg("--target")
        .arg(&src.target)
        .arg("--target-dir")
        .arg(&target_dir);
    if let Some(p) = &src.package {
        cmd.arg("--package").arg(p);
    }
    match &src.bin {
        Some(b) => {
            cmd.arg("--bin").arg(b);
        }
        None => {
            cmd.arg("--bins");
        }
    }
    if !src.features.is_empty() {
        cmd.arg("--features").arg(src.features.join(","));
    }
    if src.all_features {
        cmd.arg("--all-features");
    }
    if src.no_default_features {
        cmd.arg("--no-default-features");
    }
    cmd.args(&opts.extra_args);
    if let Some(linker) = &linker {
        cmd.env(linker_env(&src.target), linker);
    }
    if let Some(cc) = &c_compiler.cc {
        cmd.env(cc_env(&src.target), cc);
    }
    if let Some(ar) = &c_compiler.ar {
        cmd.env(ar_env(&src.target), ar);
    }
    if opts.show_output && std::io::stderr().is_terminal() {
        // cargo's stderr is a pipe (read below): keep its colours for the terminal it ends on.
        if std::env::var_os("CARGO_TERM_COLOR").is_none() {
            cmd.env("CARGO_TERM_COLOR", "always");
        }
    }
    cmd.env(profile_env(&src.profile), src.strip.as_str())
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"))
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    // Drain stderr on a thread so neither pipe can fill up and block cargo; with `show_output`
    // pass it through as it comes (it is read to recognise a build script's missing compiler).
    let show = opts.show_output;
    let stderr_reader = child
        .stderr
        .take()
        .map(|e| std::thread::spawn(move || read_stderr(e, show)));
    let mut executables: Vec<(String, PathBuf)> = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if msg["reason"] != "compiler-artifact" {
                continue;
            }
            if let Some(exe) = msg["executable"].as_str() {
                let name = msg["target"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                executables.push((name, PathBuf::from(exe)));
            }
        }
    }
    let status = child.wait().map_err(|source| Error::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    let stderr = stderr_reader
        .and_then(|h| h.join().ok())
        .unwrap_or_default();
    if !status.success() {
        if stderr.contains("target may not be installed") {
            return Err(Error::TargetMissing {
                target: triple.to_string(),
            });
        }
        if let Some(tool) = cc::tool_not_found(&stderr) {
            // The `cc` crate's guess when nothing was chosen: name the usual compiler instead.
            return Err(match c_compiler.missing {
                Some((usual, package)) => cc::cc_missing(&src.target, usual, Some(package)),
                None => cc::cc_missing(&src.target, &tool, None),
            });
        }
        return Err(Error::Build {
            what,
            status: status
                .code()
                .map_or_else(|| "signal".to_string(), |c| c.to_string()),
            // Already on this process's stderr when shown.
            stderr: if show {
                String::new()
            } else {
                stderr.trim_end().to_string()
            },
        });
    }
    if let Some(bin) = &src.bin {
        executables.retain(|(name, _)| name == bin);
    }
    match executables.len() {
        1 => Ok(executables.remove(0).1),
        0 => Err(Error::NoExecutable {
            what,
            hint: String::new(),
        }),
        _ => Err(Error::SeveralExecutables {
            what,
            names: executables
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Reads cargo's stderr to the end, copying it to this process's stderr as it comes when `show`.
fn read_stderr(mut from: impl Read, show: bool) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if show {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(&buf[..n]);
                    let _ = err.flush();
                }
                all.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> CargoSource {
        CargoSource {
            package: Some("svc".into()),
            bin: None,
            profile: "release".into(),
            features: vec!["tls".into()],
            all_features: false,
            no_default_features: false,
            target: "x86_64-unknown-linux-musl".into(),
            target_pinned: false,
            linker: None,
            cc: None,
            strip: Strip::Symbols,
            builder: Builder::Cargo,
        }
    }

    #[test]
    fn no_overrides_leave_the_spec_as_it_is() {
        assert_eq!(CargoOverrides::default().apply(&source()), source());
    }

    #[test]
    fn overrides_replace_the_profile_and_add_features() {
        let overrides = CargoOverrides {
            profile: Some("dist".into()),
            features: vec!["metrics".into(), "tls".into(), "audit".into()],
            all_features: false,
            no_default_features: true,
            target_dir: None,
        };
        let src = overrides.apply(&source());
        assert_eq!(src.profile, "dist");
        assert_eq!(src.features, ["audit", "metrics", "tls"]);
        assert!(src.no_default_features);
        assert!(!src.all_features);
        assert_eq!(src.package.as_deref(), Some("svc"));
    }

    #[test]
    fn workspace_is_asked_again_when_a_manifest_changes_and_not_outside_cargo() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = |repository: &str| {
            format!(
                "[package]\nname = \"p\"\nversion = \"0.1.0\"\nrepository = \"{repository}\"\n\
                 [lib]\npath = \"lib.rs\"\n"
            )
        };
        let pkg = dir.path().join("p");
        std::fs::create_dir(&pkg).unwrap();
        std::fs::write(pkg.join("lib.rs"), "").unwrap();
        std::fs::write(pkg.join("Cargo.toml"), manifest("https://a.example")).unwrap();
        let first = workspace(&pkg).unwrap();
        assert_eq!(first.repository.as_deref(), Some("https://a.example"));
        assert_eq!(workspace(&pkg).unwrap().repository, first.repository);
        std::fs::write(pkg.join("Cargo.toml"), manifest("https://bb.example")).unwrap();
        let second = workspace(&pkg).unwrap();
        assert_eq!(second.repository.as_deref(), Some("https://bb.example"));
        // No Cargo.toml in the directory or above it: cargo would fail; it is not asked.
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let err = workspace(&outside).unwrap_err();
        assert!(matches!(err, Error::NoProject { .. }), "{err}");
        assert!(!in_project(&outside));
        assert!(in_project(&pkg));
    }

    #[test]
    fn metadata_reads_packages_and_their_bins() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/workspace");
        let meta = metadata(&root).unwrap();
        let names: Vec<&str> = meta.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["api", "worker", "cli-tool"]);
        let api = meta.package_in(&root.join("api")).unwrap();
        assert_eq!(api.bins(), ["api"]);
        assert_eq!(api.version, "0.3.1");
        assert!(
            meta.package_in(&root).is_none(),
            "a virtual workspace's root"
        );
        assert!(meta.metadata["image"]["registry"].is_string());
    }

    #[test]
    fn metadata_describes_the_root_and_members_unless_a_cargo_config_is_between() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nresolver = \"2\"\nmembers = [\"a\", \"b\"]\n",
        )
        .unwrap();
        for name in ["a", "b"] {
            std::fs::create_dir_all(root.join(name).join("src")).unwrap();
            std::fs::write(
                root.join(name).join("Cargo.toml"),
                format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n"),
            )
            .unwrap();
            std::fs::write(root.join(name).join("src/lib.rs"), "").unwrap();
        }
        // `b` has a cargo configuration of its own: cargo run there may say something else
        // (here, another target directory), so the root's answer is not taken for it.
        std::fs::create_dir_all(root.join("b/.cargo")).unwrap();
        std::fs::write(
            root.join("b/.cargo/config.toml"),
            "[build]\ntarget-dir = \"elsewhere\"\n",
        )
        .unwrap();
        let meta = metadata(&root).unwrap();
        assert!(meta.describes(&root));
        assert!(meta.describes(&root.join("a")));
        assert_eq!(
            workspace(&root.join("a")).unwrap().target_directory,
            Workspace::of(&meta, &root.join("a")).target_directory
        );
        assert!(!meta.describes(&root.join("b")));
        assert_ne!(
            workspace(&root.join("b")).unwrap().target_directory,
            meta.target_directory,
            "the configuration below the root moves the target directory"
        );
        assert!(
            !meta.describes(&root.join("a/src")),
            "not a package directory"
        );
        assert!(!meta.describes(dir.path().parent().unwrap()));
    }
}
