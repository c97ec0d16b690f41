//! Command-line interface: one file per subcommand, each calling one library operation.

mod build;
mod cache;
mod export;
mod inspect;
mod output;
mod plan;
mod reporter;
mod sbom;
mod schema;
mod sign;
mod update;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

/// Exit code of a failed build, inspect or other operation.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error (bad arguments); clap uses it too.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "cargo-image",
    bin_name = "cargo image",
    version,
    about = "Build reproducible OCI images from Rust projects, without a daemon",
    long_about = "Build reproducible OCI images from Rust projects, without a daemon.\n\n\
        A TOML image spec (image.toml) says what goes into the image: cargo-built binaries, files, \
        directories, symlinks, tarballs, and the image config. The same inputs give the same \
        digests, bit for bit, on any machine.",
    after_help = "Examples:\n  cargo image build                       build ./image.toml into target/image/<name>\n  \
        cargo image build --spec examples/hello/image.toml\n  \
        cargo image inspect target/image/hello  show what a built image holds\n  \
        cargo image sign --key cosign.key target/image/hello   sign it as cosign does"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Build(build::BuildArgs),
    /// Build the image (reusing the cache) and push it to its registry: the spec's `name`, or
    /// --push-to REPOSITORY; prints `repository@sha256:...`.
    Push(build::BuildArgs),
    Plan(plan::PlanArgs),
    Inspect(inspect::InspectArgs),
    Sbom(sbom::SbomArgs),
    Export(export::ExportArgs),
    Sign(sign::SignArgs),
    Verify(sign::VerifyArgs),
    GenerateKeyPair(sign::GenerateKeyPairArgs),
    Cache(cache::CacheArgs),
    Schema(schema::SchemaArgs),
    Update(update::UpdateArgs),
}

impl Command {
    /// Whether the command prints its events as JSON (`--message-format json`).
    fn json_events(&self) -> bool {
        match self {
            Command::Build(args) | Command::Push(args) => args.json(),
            Command::Plan(args) => args.json(),
            Command::Inspect(_)
            | Command::Sbom(_)
            | Command::Export(_)
            | Command::Sign(_)
            | Command::Verify(_)
            | Command::GenerateKeyPair(_)
            | Command::Cache(_)
            | Command::Schema(_)
            | Command::Update(_) => false,
        }
    }
}

/// Parses `args` and runs the subcommand; the one place that maps outcomes to exit codes.
pub fn run(args: Vec<OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let json = cli.command.json_events();
    let result = match cli.command {
        Command::Build(args) => build::run(args),
        Command::Push(mut args) => {
            args.push = true;
            build::run(args)
        }
        Command::Plan(args) => plan::run(args),
        Command::Cache(args) => cache::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Sbom(args) => sbom::run(args),
        Command::Export(args) => export::run(args),
        Command::Sign(args) => sign::run_sign(args),
        Command::Verify(args) => sign::run_verify(args),
        Command::GenerateKeyPair(args) => sign::run_generate(args),
        Command::Schema(args) => schema::run(args),
        Command::Update(args) => update::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(failure) => {
            // A JSON event stream ends with the error, for tools; people read stderr.
            if json && !failure.event_sent {
                println!("{}", output::error_event(&failure.error, None));
            }
            output::report_error(&failure.error);
            failure.code
        }
    }
}

/// A failed command: the error to show and the exit code.
pub struct Failure {
    pub error: anyhow::Error,
    pub code: u8,
    /// Its `error` events are already in the JSON stream (a multi-image build sends one per
    /// failed image).
    pub event_sent: bool,
}

impl Failure {
    pub fn build(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            error: error.into(),
            code: EXIT_FAILURE,
            event_sent: false,
        }
    }
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            error: error.into(),
            code: EXIT_USAGE,
            event_sent: false,
        }
    }
}
