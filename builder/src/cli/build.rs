//! `cargo image build`: build the image a spec describes into an OCI layout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cargo_oci_image::build::{self, BuildOptions, OutputFormat, PushOptions};
use cargo_oci_image::cargo::{CargoOptions, CargoOverrides};
use cargo_oci_image::oci::Platform;
use cargo_oci_image::registry::{Credentials, RegistryOptions};
use clap::{Args, ValueEnum};

use super::output::{status, Verbosity};
use super::reporter::Reporter;
use super::Failure;

/// Build an image from a spec into an OCI image layout.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image build                                  ./image.toml -> target/image/<name>\n  \
    cargo image build --spec examples/hello/image.toml --output out/hello\n  \
    cargo image build --tag v1.2.3 --tag latest        tag the image (instead of the spec's tags)\n  \
    cargo image build --output-format docker-archive -o hello.tar && podman load -i hello.tar\n  \
    cargo image build --push-to ghcr.io/acme/hello   build, then push every tag\n  \
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
    #[arg(long, value_name = "REPOSITORY")]
    push_to: Option<String>,
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
    pub target: Option<String>,
    /// Parallel jobs: layers at once and compressor threads (0: one per CPU). The output bytes
    /// never depend on it.
    #[arg(long, short, value_name = "N", default_value_t = 0)]
    pub jobs: usize,
    /// Passed to cargo: require Cargo.lock to be up to date.
    #[arg(long)]
    pub locked: bool,
    /// Passed to cargo: build without touching the network.
    #[arg(long)]
    pub offline: bool,
    /// Passed to cargo: --locked and --offline.
    #[arg(long)]
    pub frozen: bool,
    /// Passed to cargo: build every binary with this profile instead of the spec's.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
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
    /// Build for these platforms (`os/arch[/variant]`, comma separated or repeated) instead of
    /// the spec's `platforms`; several give one image index with a manifest per platform.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<String>,
    /// Write an image index even for a single platform.
    #[arg(long)]
    pub index: bool,
}

impl CommonArgs {
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
                    profile: self.profile.clone(),
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
            registry: self.registry()?,
            push: None,
            target: self.target.clone(),
            platforms: self.platforms()?,
            index: self.index,
        })
    }

    /// The `--platform` values, parsed.
    fn platforms(&self) -> Result<Vec<Platform>, Failure> {
        self.platform
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                Platform::parse(p)
                    .map_err(|e| Failure::usage(anyhow::anyhow!("invalid --platform: {e}")))
            })
            .collect()
    }

    fn registry(&self) -> Result<RegistryOptions, Failure> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
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

/// `SOURCE_DATE_EPOCH` from the environment: unset or empty means none; anything but a
/// non-negative integer is a usage error.
fn source_date_epoch() -> Result<Option<u64>, Failure> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            Failure::usage(anyhow::anyhow!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970; set it to an \
                 integer like $(git log -1 --format=%ct), or unset it"
            ))
        }),
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
    }
}

pub fn run(args: BuildArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let spec = find_spec(args.common.spec.as_deref())?;
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
    if args.push || args.push_to.is_some() {
        opts.push = Some(PushOptions {
            repository: args.push_to,
        });
    }
    opts.output_format = match args.output_format {
        FormatArg::Oci => OutputFormat::Oci,
        FormatArg::OciArchive => OutputFormat::OciArchive,
        FormatArg::DockerArchive => OutputFormat::DockerArchive,
    };

    let reporter = Reporter::new(verbosity, json);
    let result = build::build(&spec, &opts, &|event| reporter.event(event));
    reporter.finish();
    let out = result.map_err(failure)?;
    if !json && verbosity != Verbosity::Quiet {
        let fresh = out.cached_layers;
        let built = out.layers.len() - fresh;
        status(
            "Finished",
            &format!(
                "{} [{}] {} in {:.2}s ({built} built, {fresh} fresh)",
                out.name,
                out.tags.join(", "),
                out.manifest_digest,
                started.elapsed().as_secs_f64()
            ),
        );
        for image in &out.platforms {
            status(
                "Platform",
                &format!("{} {}", image.platform, image.manifest_digest),
            );
        }
        status("Output", &out.path.display().to_string());
    }
    if let (Some(pushed), false) = (&out.pushed, json) {
        // The one line a script wants, even with --quiet: where the image is.
        println!("{pushed}");
    }
    Ok(())
}
