//! `cargo image plan`: show the layer graph of a spec and what the store already holds.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use cargo_oci_image::build;

use super::build::{failure, CommonArgs, MessageFormat, Specs};
use super::output::Verbosity;
use super::reporter::Reporter;
use super::Failure;

/// Show what a build would do: every node with its key, and whether it is cached.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image plan                         text: one node a line, `cached` or `to build`\n  \
    cargo image plan --format json | jq '.nodes[] | select(.cached == false)'\n  \
    cargo image plan --format dot | dot -Tsvg > plan.svg\n  \
    cargo image plan --workspace --cache-from ghcr.io/acme/cache --message-format json\n\n\
    Planning runs the spec's cargo builds (a binary's content decides its layer's key) and reads \
    the store (and the remote caches of --cache-from); it writes no image and changes no cache \
    entry.")]
pub struct PlanArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Tag the image with TAG instead of the spec's `tags` (repeatable), as `build --tag` does.
    #[arg(long, short, value_name = "TAG")]
    tag: Vec<String>,
    /// The output the build would write, as `build --output` names it: host paths leave it out
    /// (when it lies inside the build context), so the keys are the build's.
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// Also ask these remote layer caches (in order, as `build --cache-from`) for every layer
    /// the store lacks: such a node is `remote` (its `remote` names the cache), not `to build`.
    /// Nothing is downloaded.
    #[arg(
        long,
        value_name = "REPOSITORY",
        env = "CARGO_IMAGE_CACHE_FROM",
        value_delimiter = ','
    )]
    cache_from: Vec<String>,
    /// `json`: print the planning's events (cargo builds, bases, the `plan` with every node,
    /// or an `error`) as one JSON object a line on stdout, as `build` does, instead of the
    /// `--format` output.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

impl PlanArgs {
    /// Whether events go out as JSON.
    pub fn json(&self) -> bool {
        self.message_format == MessageFormat::Json
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    Text,
    Json,
    Dot,
}

pub fn run(args: PlanArgs) -> Result<(), Failure> {
    let json = args.json();
    let specs = args.common.specs()?;
    let mut opts = args.common.options(false, true)?;
    opts.tags = args.tag;
    opts.output = args.output;
    opts.cache_from = args.cache_from;
    let reporter = Reporter::new(Verbosity::Quiet, json);
    let graphs = match specs {
        Specs::File(spec) => {
            vec![build::plan(&spec, &opts, &|e| reporter.event(e)).map_err(failure)?]
        }
        // The images are planned together (a layer they share is keyed once); each event
        // names its image.
        Specs::Workspace(specs, workspace) => {
            build::plan_many(&specs, Some(&workspace), &opts, &|image, e| {
                reporter.image_event(Some(image), e)
            })
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(failure)?
        }
    };
    if json {
        return Ok(());
    }
    match args.format {
        PlanFormat::Text => {
            for graph in &graphs {
                print!("{}", graph.to_text());
            }
        }
        PlanFormat::Dot => {
            for graph in &graphs {
                print!("{}", graph.to_dot());
            }
        }
        PlanFormat::Json => {
            // One graph as before; a workspace's graphs as an array.
            let text = match graphs.as_slice() {
                [one] => serde_json::to_string_pretty(one),
                many => serde_json::to_string_pretty(many),
            }
            .map_err(Failure::build)?;
            println!("{text}");
        }
    }
    Ok(())
}
