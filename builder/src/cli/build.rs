//! `cargo image build`: build the image a spec describes into an OCI layout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cargo_oci_image::build::{self, BuildOptions, LoadEngine, OutputFormat, PushOptions};
use cargo_oci_image::cargo::{CargoOptions, CargoOverrides};
use cargo_oci_image::oci::Platform;
use cargo_oci_image::registry::{read_ca_file, Credentials, RegistryOptions};
use cargo_oci_image::spec::{self, ImageSpec, Selection};
use clap::{Args, ValueEnum};

use super::output::{status, warning, Verbosity};
use super::reporter::Reporter;
use super::Failure;

/// Build an image from a spec into an OCI image layout.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image build                                  ./image.toml -> target/image/<name>\n  \
    cargo image build --spec examples/hello/image.toml --output out/hello\n  \
    cargo image build --tag v1.2.3 --tag latest        tag the image (instead of the spec's tags)\n  \
    cargo image build --workspace                      every image of a cargo workspace\n  \
    cargo image build -p api --features tls            one workspace package ([package.metadata.image])\n  \
    cargo image build --output-format docker-archive -o hello.tar && podman load -i hello.tar\n  \
    cargo image build --push-to ghcr.io/acme/hello   build, then push every tag\n  \
    cargo image push --push-to r.example/a --push-to r.example/b   push to both (b mounts a's blobs)\n  \
    cargo image build --cache-from r.example/cache --cache-to r.example/cache   share layers between machines\n  \
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) cargo image build\n\n\
    Layers whose inputs did not change are reused from the store (`Fresh`); the rest are built \
    in parallel. The output is an OCI image layout: check it with `skopeo inspect oci:DIR:TAG`, \
    copy it anywhere with `skopeo copy`, or run it with `umoci unpack` + `runc run`.")]
pub struct BuildArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where to write the OCI image layout [default: <target-dir>/image/<name>]. An existing
    /// layout there is replaced only once the build has succeeded.
    #[arg(long, short, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Tag the image with TAG instead of the spec's `tags` (repeatable).
    #[arg(long, short, value_name = "TAG")]
    tag: Vec<String>,
    /// What to write: an OCI layout directory, an OCI archive (tar of a layout, for
    /// `skopeo copy oci-archive:FILE ...`), or a docker archive (for `docker load` /
    /// `podman load`).
    #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
    output_format: FormatArg,
    /// Push the image to its registry after building it (to the spec's `name`, or --push-to).
    #[arg(long)]
    pub push: bool,
    /// Push to this repository (`registry/name`) instead of the spec's `name`; implies --push.
    /// Repeatable: pushed in order, a later repository of the same registry mounting the blobs
    /// an earlier one got instead of uploading them again.
    #[arg(long, value_name = "REPOSITORY", value_parser = parse_repository)]
    push_to: Vec<String>,
    /// Sign the image with this key the way cosign does (cosign's encrypted `cosign.key`,
    /// password in COSIGN_PASSWORD, or a PKCS#8 PEM key), and attest its SBOM and provenance:
    /// in the layout, and in the registry (`sha256-<hex>.sig` / `.att` tags) when pushing.
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    /// A remote layer cache (`registry/repository`) to take layers from: every layer the store
    /// lacks is looked up there before it is built (repeatable, tried in order; comma separated
    /// in CARGO_IMAGE_CACHE_FROM). A cache that fails gives one warning and a local build.
    #[arg(long, value_name = "REPOSITORY", value_parser = parse_repository, env = "CARGO_IMAGE_CACHE_FROM", value_delimiter = ',')]
    cache_from: Vec<String>,
    /// A remote layer cache to record every layer of the build in (repeatable; comma separated
    /// in CARGO_IMAGE_CACHE_TO): other machines take them with --cache-from.
    #[arg(long, value_name = "REPOSITORY", value_parser = parse_repository, env = "CARGO_IMAGE_CACHE_TO", value_delimiter = ',')]
    cache_to: Vec<String>,
    /// Write no local image, only push it (needs --push or --push-to): layers found with
    /// --cache-from in the registry pushed to are then mounted there, never downloaded.
    #[arg(long, conflicts_with_all = ["output", "load"])]
    no_output: bool,
    /// Load the image for this machine's platform into podman or docker (`ENGINE load`), to run
    /// it with `podman run` / `docker run`; --load alone takes podman if installed, else docker.
    #[arg(long, value_name = "ENGINE", num_args = 0..=1, default_missing_value = "auto", require_equals = true)]
    load: Option<LoadArg>,
    /// Say nothing but errors (cargo's output too).
    #[arg(long, short, conflicts_with = "verbose")]
    quiet: bool,
    /// Say more: every cargo build and every layer's digests.
    #[arg(long, short)]
    verbose: bool,
    /// `human` status lines on stderr, or `json`: one JSON object per event on stdout.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

impl BuildArgs {
    /// Whether events go out as JSON.
    pub fn json(&self) -> bool {
        self.message_format == MessageFormat::Json
    }
}

/// Arguments shared by the commands that read a spec and plan it (`build`, `plan`).
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The image spec [default: ./image.toml].
    #[arg(long, value_name = "PATH")]
    pub spec: Option<PathBuf>,
    /// The store (layer cache) directory [default: <target-dir>/image/.store].
    #[arg(long, value_name = "DIR", env = "CARGO_IMAGE_STORE")]
    pub store: Option<PathBuf>,
    /// Build this stage of the spec as the image (default: the spec's image stage).
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,
    /// Deprecated spelling of --stage (to cargo users `--target` means a rust target triple,
    /// which `[platform."os/arch"] target` and --platform choose here).
    #[arg(long, value_name = "STAGE", conflicts_with = "stage", hide = true)]
    pub target: Option<String>,
    /// Parallel jobs: layers at once and compressor threads (0: one per CPU). The output bytes
    /// never depend on it.
    #[arg(long, short, value_name = "N", default_value_t = 0, value_parser = parse_jobs)]
    pub jobs: usize,
    /// Require Cargo.lock and image.lock to be up to date: passed to cargo, and a registry base
    /// that image.lock lacks is an error (`cargo image update` adds it) instead of being added.
    #[arg(long)]
    pub locked: bool,
    /// Passed to cargo: build without touching the network.
    #[arg(long)]
    pub offline: bool,
    /// Passed to cargo: --locked and --offline (image.lock must be up to date too).
    #[arg(long)]
    pub frozen: bool,
    /// Build the image of this workspace package (repeatable): its `[package.metadata.image]`,
    /// or a zero-config image of its binary. Used when there is no ./image.toml and no --spec.
    #[arg(long, short = 'p', value_name = "PACKAGE", conflicts_with = "spec")]
    pub package: Vec<String>,
    /// Build the images of every workspace package with image metadata or a binary.
    #[arg(long, conflicts_with = "spec")]
    pub workspace: bool,
    /// Leave this workspace package out (repeatable).
    #[arg(long, value_name = "PACKAGE", conflicts_with = "spec")]
    pub exclude: Vec<String>,
    /// Passed to cargo: build every binary with this profile instead of the spec's.
    #[arg(long, value_name = "PROFILE", value_parser = parse_profile)]
    pub profile: Option<String>,
    /// Passed to cargo: the `release` profile (the spec's default already), as `--profile
    /// release`.
    #[arg(long, short = 'r', conflicts_with = "profile")]
    pub release: bool,
    /// The binary of a zero-config image (a package with several binaries); without -p it also
    /// picks the workspace package that has it, as cargo's `--bin` does.
    #[arg(long, value_name = "NAME", conflicts_with = "spec")]
    pub bin: Option<String>,
    /// Passed to cargo: features to enable besides the spec's (comma or space separated,
    /// repeatable).
    #[arg(long, short = 'F', value_name = "FEATURES")]
    pub features: Vec<String>,
    /// Passed to cargo: enable every feature.
    #[arg(long)]
    pub all_features: bool,
    /// Passed to cargo: do not enable the default features.
    #[arg(long)]
    pub no_default_features: bool,
    /// Passed to cargo, and where outputs and the store go by default (`DIR/image/...`).
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Build for these platforms (`os/arch[/variant]`, comma separated or repeated) instead of
    /// the spec's `platforms`; several give one image index with a manifest per platform.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<String>,
    /// Write an image index even for a single platform.
    #[arg(long)]
    pub index: bool,
}

impl CommonArgs {
    /// The stage to build: `--stage`, or the deprecated `--target` (with a warning).
    fn stage(&self) -> Option<String> {
        if let Some(stage) = &self.target {
            warning(&format!(
                "`--target {stage}` names a stage and is deprecated: use `--stage {stage}` (a \
                 later release gives --target cargo's meaning, a rust target triple)"
            ));
        }
        self.stage.clone().or_else(|| self.target.clone())
    }

    /// The build options these arguments give (output and tags are the caller's).
    pub fn options(
        &self,
        show_cargo_output: bool,
        quiet_cargo: bool,
    ) -> Result<BuildOptions, Failure> {
        let mut extra_args = Vec::new();
        for (on, flag) in [
            (self.locked, "--locked"),
            (self.offline, "--offline"),
            (self.frozen, "--frozen"),
        ] {
            if on {
                extra_args.push(flag.to_string());
            }
        }
        if quiet_cargo {
            extra_args.push("--quiet".to_string());
        }
        Ok(BuildOptions {
            output_format: Default::default(),
            output: None,
            store: self.store.clone(),
            tags: Vec::new(),
            source_date_epoch: source_date_epoch()?,
            jobs: self.jobs,
            cargo: CargoOptions {
                show_output: show_cargo_output,
                extra_args,
                install_targets: true,
                overrides: CargoOverrides {
                    profile: self
                        .profile
                        .clone()
                        .or_else(|| self.release.then(|| "release".to_owned())),
                    features: self
                        .features
                        .iter()
                        .flat_map(|f| f.split([',', ' ']))
                        .filter(|f| !f.is_empty())
                        .map(str::to_string)
                        .collect(),
                    all_features: self.all_features,
                    no_default_features: self.no_default_features,
                    target_dir: self.target_dir.clone(),
                },
            },
            registry: self.registry.options()?,
            push: None,
            sign: None,
            load: None,
            target: self.stage(),
            platforms: self.platforms()?,
            index: self.index,
            locked: self.locked || self.frozen,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            no_output: false,
        })
    }

    /// The `--platform` values, parsed.
    fn platforms(&self) -> Result<Vec<Platform>, Failure> {
        self.platform
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::trim)
            .map(|p| {
                if p.is_empty() {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "invalid --platform {:?}: an empty platform; give `os/arch[/variant]` \
                         (e.g. --platform linux/amd64,linux/arm64), or leave --platform out \
                         to build the spec's `platforms`",
                        self.platform.join(",")
                    )));
                }
                Platform::parse(p)
                    .map_err(|e| Failure::usage(anyhow::anyhow!("invalid --platform: {e}")))
            })
            .collect()
    }
}

/// How registries are reached: shared by the commands that talk to one.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Registry credentials as USER:PASSWORD (else CARGO_IMAGE_REGISTRY_USER and
    /// CARGO_IMAGE_REGISTRY_PASSWORD, docker's config.json and credential helpers, podman's
    /// auth.json). Never printed.
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "CARGO_IMAGE_CREDS",
        hide_env_values = true
    )]
    pub creds: Option<String>,
    /// A registry host[:port] that may be reached over plain HTTP (loopback hosts always may).
    /// Repeatable.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// A PEM file of CA certificates to trust for registries, besides the system roots.
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
}

impl RegistryArgs {
    /// The registry options these arguments give.
    pub fn options(&self) -> Result<RegistryOptions, Failure> {
        // A bad --registry-ca fails every command, not only those that reach a registry.
        if let Some(path) = &self.registry_ca {
            read_ca_file(path).map_err(Failure::usage)?;
        }
        let mut registry = RegistryOptions {
            insecure: self.insecure_registry.clone(),
            ca_file: self.registry_ca.clone(),
            ..RegistryOptions::default()
        };
        if let Some(creds) = &self.creds {
            let creds = Credentials::parse_user_password(creds).map_err(|_| {
                Failure::usage(anyhow::anyhow!(
                    "--creds takes USER:PASSWORD (the value is not shown here)"
                ))
            })?;
            registry.credentials = registry.credentials.with_explicit(creds);
        }
        Ok(registry)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Oci,
    OciArchive,
    DockerArchive,
}

/// `--load=ENGINE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LoadArg {
    /// podman if installed, else docker.
    Auto,
    Podman,
    Docker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
}

/// The specs a command works on.
pub enum Specs {
    /// One spec file: `--spec`, or ./image.toml.
    File(PathBuf),
    /// The images of a cargo workspace, from Cargo.toml metadata.
    Workspace(Vec<ImageSpec>, Box<build::KnownWorkspace>),
}

impl CommonArgs {
    /// `--spec`, else ./image.toml (unless a package selection is given), else the images of the
    /// cargo workspace the current directory is in.
    pub fn specs(&self) -> Result<Specs, Failure> {
        let selecting = !self.package.is_empty()
            || self.workspace
            || !self.exclude.is_empty()
            || self.bin.is_some();
        if self.spec.is_some() || (!selecting && Path::new("image.toml").is_file()) {
            return find_spec(self.spec.as_deref()).map(Specs::File);
        }
        let cwd = std::env::current_dir().map_err(Failure::build)?;
        let selection = Selection {
            packages: self.package.clone(),
            exclude: self.exclude.clone(),
            all: self.workspace,
            bin: self.bin.clone(),
        };
        // The answer a build kept, while it holds: a warm build runs no cargo.
        let specs = build::workspace_metadata(&cwd, self.store.as_deref())
            .map_err(spec::SpecError::from)
            .and_then(|known| {
                let specs = spec::workspace_specs_from(&known.metadata, &cwd, &selection)?;
                Ok((specs, known))
            });
        match specs {
            Ok((specs, known)) => Ok(Specs::Workspace(specs, Box::new(known))),
            Err(spec::SpecError::Cargo(e)) if !selecting => Err(Failure::usage(anyhow::anyhow!(
                "no image.toml in {} and no cargo project here ({}); pass --spec PATH or create \
                 an image.toml (see examples/hello/image.toml)",
                cwd.display(),
                e.to_string().lines().next().unwrap_or_default()
            ))),
            Err(e @ spec::SpecError::Workspace { .. }) => Err(Failure::usage(e)),
            Err(e) => Err(Failure::build(e)),
        }
    }
}

/// Finds the spec to use: `--spec`, else `image.toml` in the current directory.
pub fn find_spec(given: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    let default = PathBuf::from("image.toml");
    if default.is_file() {
        return Ok(default);
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    Err(Failure::usage(anyhow::anyhow!(
        "no image.toml in {}; pass --spec PATH or create one (see examples/hello/image.toml)",
        cwd.display()
    )))
}

/// The most `--jobs`: more threads than this only cost memory and start-up time (100000 took
/// over a minute to fail to start its threads).
const MAX_JOBS: usize = 1024;

/// `--jobs N`: 0 (one per CPU) up to [`MAX_JOBS`].
fn parse_jobs(s: &str) -> Result<usize, String> {
    let jobs: usize = s
        .parse()
        .map_err(|_| "not a whole number of jobs (0: one per CPU)".to_owned())?;
    if jobs > MAX_JOBS {
        return Err(format!(
            "at most {MAX_JOBS} jobs; give the number of CPUs to use, or 0 for one per CPU"
        ));
    }
    Ok(jobs)
}

/// `--push-to REPOSITORY`: an image reference, checked before anything is built.
fn parse_repository(s: &str) -> Result<String, String> {
    cargo_oci_image::registry::Reference::parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("{e}; give a repository like ghcr.io/acme/hello"))
}

/// `--profile NAME`: a cargo profile name, as the spec's `cargo.profile` takes it.
fn parse_profile(s: &str) -> Result<String, String> {
    spec::validate_profile(s).map(|()| s.to_owned())
}

/// `SOURCE_DATE_EPOCH` from the environment: unset or empty means none; anything but an
/// integer from 0 to the end of the year 9999 is a usage error.
fn source_date_epoch() -> Result<Option<u64>, Failure> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => {
            let epoch: u64 = v.trim().parse().map_err(|_| {
                Failure::usage(anyhow::anyhow!(
                    "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970; set it to an \
                     integer like $(git log -1 --format=%ct), or unset it"
                ))
            })?;
            if epoch > spec::MAX_EPOCH {
                return Err(Failure::usage(anyhow::anyhow!(
                    "SOURCE_DATE_EPOCH={v:?} is after the year 9999 (the latest is {}, \
                     9999-12-31T23:59:59Z, the last time an image's `created` can hold); it is \
                     in seconds, not milliseconds: set it like $(git log -1 --format=%ct)",
                    spec::MAX_EPOCH
                )));
            }
            Ok(Some(epoch))
        }
        _ => Ok(None),
    }
}

/// Maps a build error to the CLI's failure (usage errors exit 2).
pub fn failure(e: build::Error) -> Failure {
    let code = match e {
        build::Error::InvalidTag { .. } => super::EXIT_USAGE,
        _ => super::EXIT_FAILURE,
    };
    Failure {
        error: e.into(),
        code,
        event_sent: false,
    }
}

pub fn run(args: BuildArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let specs = args.common.specs()?;
    let verbosity = if args.quiet {
        Verbosity::Quiet
    } else if args.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let json = args.message_format == MessageFormat::Json;
    let mut opts = args.common.options(
        verbosity != Verbosity::Quiet,
        verbosity == Verbosity::Quiet || json,
    )?;
    opts.output = args.output;
    opts.tags = args.tag;
    opts.cache_from = args.cache_from;
    opts.cache_to = args.cache_to;
    opts.no_output = args.no_output;
    opts.load = args.load.map(|engine| match engine {
        LoadArg::Auto => LoadEngine::Auto,
        LoadArg::Podman => LoadEngine::Podman,
        LoadArg::Docker => LoadEngine::Docker,
    });
    if args.push || !args.push_to.is_empty() {
        opts.push = Some(PushOptions {
            repositories: args.push_to,
        });
    }
    if let Some(key) = &args.sign_key {
        opts.sign = Some(super::sign::signer(key)?);
    }
    opts.output_format = match args.output_format {
        FormatArg::Oci => OutputFormat::Oci,
        FormatArg::OciArchive => OutputFormat::OciArchive,
        FormatArg::DockerArchive => OutputFormat::DockerArchive,
    };

    let reporter = Reporter::new(verbosity, json);
    let spec = match specs {
        Specs::File(spec) => spec,
        Specs::Workspace(specs, workspace) => {
            return run_many(
                &specs, &workspace, &opts, &reporter, verbosity, json, started,
            )
        }
    };
    let result = build::build(&spec, &opts, &|event| reporter.event(event));
    reporter.finish();
    let out = result.map_err(failure)?;
    if !json && verbosity != Verbosity::Quiet {
        let (image, counts) = finished(&out);
        let secs = started.elapsed().as_secs_f64();
        status("Finished", &format!("{image} in {secs:.2}s {counts}"));
        platform_lines(&out);
        if !opts.no_output {
            status("Output", &out.path.display().to_string());
        }
    }
    if !json {
        // The one line a script wants, even with --quiet: where the image is (per repository).
        for pushed in &out.pushed {
            println!("{pushed}");
        }
    }
    Ok(())
}

/// `name [tags] digest` and `(N built, M fresh)` of a finished build.
fn finished(out: &build::BuildOutput) -> (String, String) {
    let fresh = out.cached_layers;
    let built = out.layers.len() - fresh;
    (
        format!(
            "{} [{}] {}",
            out.name,
            out.tags.join(", "),
            out.manifest_digest
        ),
        format!("({built} built, {fresh} fresh)"),
    )
}

/// A `Platform` line per platform of a multi-platform image, with its manifest digest.
fn platform_lines(out: &build::BuildOutput) {
    for image in &out.platforms {
        status(
            "Platform",
            &format!("{} {}", image.platform, image.manifest_digest),
        );
    }
}

/// Builds the images of a cargo workspace in parallel, sharing the store.
fn run_many(
    specs: &[ImageSpec],
    workspace: &build::KnownWorkspace,
    opts: &BuildOptions,
    reporter: &Reporter,
    verbosity: Verbosity,
    json: bool,
    started: Instant,
) -> Result<(), Failure> {
    if specs.len() > 1 {
        if opts.output.is_some() {
            return Err(Failure::usage(anyhow::anyhow!(
                "--output names one image's output, and {} images are built; select one with -p \
                 NAME, or leave --output out (each image goes to <target-dir>/image/<name>)",
                specs.len()
            )));
        }
        if opts
            .push
            .as_ref()
            .is_some_and(|p| !p.repositories.is_empty())
        {
            return Err(Failure::usage(anyhow::anyhow!(
                "--push-to names the repositories of one image, and {} images are built; \
                 select one with -p NAME, or use --push (each image goes to its own `name`)",
                specs.len()
            )));
        }
    }
    let results = build::build_many(specs, Some(workspace), opts, &|image, event| {
        reporter.image_event(Some(image), event)
    });
    reporter.finish();
    let mut failed = Vec::new();
    for (spec, result) in specs.iter().zip(results) {
        match result {
            Ok(out) => {
                if !json && verbosity != Verbosity::Quiet {
                    let (image, counts) = finished(&out);
                    let path = out.path.display();
                    status("Finished", &format!("{image} {counts} -> {path}"));
                    platform_lines(&out);
                }
                if !json {
                    for pushed in &out.pushed {
                        println!("{pushed}");
                    }
                }
            }
            Err(e) => failed.push((spec.name.clone(), e)),
        }
    }
    let count = specs.len();
    if failed.is_empty() {
        if !json && verbosity != Verbosity::Quiet {
            status(
                "Finished",
                &format!(
                    "{count} image{} in {:.2}s",
                    if count == 1 { "" } else { "s" },
                    started.elapsed().as_secs_f64()
                ),
            );
        }
        return Ok(());
    }
    let total = failed.len();
    let mut failures = failed.into_iter();
    let (last_name, last) = failures.next_back().expect("not empty");
    for (name, e) in failures {
        let e = anyhow::Error::new(e);
        if json {
            println!("{}", super::output::error_event(&e, Some(&name)));
        }
        super::output::report_error(&e.context(format!("image {name}")));
    }
    let mut last = failure(last);
    if json {
        println!(
            "{}",
            super::output::error_event(&last.error, Some(&last_name))
        );
        last.event_sent = true;
    }
    if total > 1 || count > 1 {
        last.error = last
            .error
            .context(format!("{total} of {count} images failed"));
    }
    Err(last)
}
