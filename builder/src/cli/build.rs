//! `cargo image build`: build the image a spec describes into an OCI layout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cargo_oci_image::build::{self, BuildOptions, Event};
use cargo_oci_image::cargo::CargoOptions;
use clap::{Args, ValueEnum};

use super::output::{human_size, short_digest, status, Verbosity};
use super::Failure;

/// Build an image from a spec into an OCI image layout.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image build                                  ./image.toml -> target/image/<name>\n  \
    cargo image build --spec examples/hello/image.toml --output out/hello\n  \
    cargo image build --tag v1.2.3 --tag latest        tag the image (instead of the spec's tags)\n  \
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) cargo image build\n\n\
    The output is an OCI image layout: check it with `skopeo inspect oci:DIR:TAG`, \
    copy it anywhere with `skopeo copy`, or run it with `umoci unpack` + `runc run`.")]
pub struct BuildArgs {
    /// The image spec to build [default: ./image.toml].
    #[arg(long, value_name = "PATH")]
    spec: Option<PathBuf>,
    /// Where to write the OCI image layout [default: <target-dir>/image/<name>]. An existing
    /// layout there is replaced only once the build has succeeded.
    #[arg(long, short, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Tag the image with TAG instead of the spec's `tags` (repeatable).
    #[arg(long, short, value_name = "TAG")]
    tag: Vec<String>,
    /// Compression threads (0: one per CPU). The output bytes never depend on it.
    #[arg(long, short, value_name = "N", default_value_t = 0)]
    jobs: usize,
    /// Say nothing but errors (cargo's output too).
    #[arg(long, short, conflicts_with = "verbose")]
    quiet: bool,
    /// Say more: every cargo build and every layer's digests.
    #[arg(long, short)]
    verbose: bool,
    /// `human` status lines on stderr, or `json`: one JSON object per event on stdout.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
    /// Passed to cargo: require Cargo.lock to be up to date.
    #[arg(long)]
    locked: bool,
    /// Passed to cargo: build without touching the network.
    #[arg(long)]
    offline: bool,
    /// Passed to cargo: --locked and --offline.
    #[arg(long)]
    frozen: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
}

/// Finds the spec to build: `--spec`, else `image.toml` in the current directory.
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

pub fn run(args: BuildArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let spec = find_spec(args.spec.as_deref())?;
    let verbosity = if args.quiet {
        Verbosity::Quiet
    } else if args.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let mut extra_args = Vec::new();
    for (on, flag) in [
        (args.locked, "--locked"),
        (args.offline, "--offline"),
        (args.frozen, "--frozen"),
    ] {
        if on {
            extra_args.push(flag.to_string());
        }
    }
    if verbosity == Verbosity::Quiet || args.message_format == MessageFormat::Json {
        extra_args.push("--quiet".to_string());
    }
    let opts = BuildOptions {
        output: args.output,
        tags: args.tag,
        source_date_epoch: source_date_epoch()?,
        jobs: args.jobs,
        cargo: CargoOptions {
            show_output: verbosity != Verbosity::Quiet,
            extra_args,
            install_targets: true,
        },
    };
    let json = args.message_format == MessageFormat::Json;
    let mut on_event = |event: Event| {
        if json {
            if let Ok(line) = serde_json::to_string(&event) {
                println!("{line}");
            }
            return;
        }
        if verbosity == Verbosity::Quiet {
            return;
        }
        print_event(&event, verbosity);
    };
    let result = build::build(&spec, &opts, &mut on_event);
    match result {
        Ok(out) => {
            if !json && verbosity != Verbosity::Quiet {
                let tags = out.tags.join(", ");
                status(
                    "Finished",
                    &format!(
                        "{} [{}] {} in {:.2}s",
                        out.name,
                        tags,
                        out.manifest_digest,
                        started.elapsed().as_secs_f64()
                    ),
                );
                status("Output", &out.path.display().to_string());
            }
            Ok(())
        }
        Err(e) => {
            let code = match e {
                build::Error::InvalidTag { .. } => super::EXIT_USAGE,
                _ => super::EXIT_FAILURE,
            };
            Err(Failure {
                error: e.into(),
                code,
            })
        }
    }
}

fn print_event(event: &Event, verbosity: Verbosity) {
    match event {
        Event::SpecLoaded { spec, name } => {
            status("Building", &format!("{name} ({})", spec.display()));
        }
        Event::CargoBuild { what } => status("Compiling", what),
        Event::CargoFinished { what, executable } => {
            if verbosity == Verbosity::Verbose {
                status("Compiled", &format!("{what} -> {}", executable.display()));
            }
        }
        Event::BaseResolved {
            base,
            digest,
            layers,
        } => status(
            "Base",
            &format!("{base} ({}, {layers} layers)", short_digest(digest)),
        ),
        Event::LayerStarted { name } => {
            if verbosity == Verbosity::Verbose {
                status("Packing", &format!("layer {name}"));
            }
        }
        Event::LayerFinished {
            name,
            digest,
            diff_id,
            size,
            ..
        } => {
            if verbosity == Verbosity::Verbose {
                status(
                    "Layer",
                    &format!("{name} {digest} (diff_id {diff_id}, {})", human_size(*size)),
                );
            } else {
                status(
                    "Layer",
                    &format!("{name} ({}, {})", short_digest(digest), human_size(*size)),
                );
            }
        }
        Event::ImageFinished { .. } => {}
    }
}
