//! `cargo image update`: resolve the registry bases again and rewrite `image.lock`.

use clap::Args;

use cargo_oci_image::{build, spec};

use super::build::{failure, CommonArgs, Specs};
use super::output::status;
use super::Failure;

/// Resolve registry bases again (all, or the named ones) and rewrite image.lock.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image update                       resolve every registry base again\n  \
    cargo image update debian:12             only this base (as the spec's `from` writes it)\n  \
    cargo image update --workspace           the bases of every image of a cargo workspace\n\n\
    A build takes a base the lock pins by its digest and never looks its tag up again; this \
    command is how a moved tag (a new debian:12) gets into the build. It prints what changed.")]
pub struct UpdateArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The bases to resolve again, as the spec's `from` writes them [default: every registry
    /// base of the spec].
    #[arg(value_name = "BASE")]
    bases: Vec<String>,
}

pub fn run(args: UpdateArgs) -> Result<(), Failure> {
    let specs = match args.common.specs()? {
        Specs::File(path) => vec![spec::load(&path).map_err(Failure::build)?],
        Specs::Workspace(specs, _) => specs,
    };
    let opts = args.common.options(false, true)?;
    let changes = build::update(&specs, &opts, &args.bases).map_err(failure)?;
    for change in &changes {
        let several = changes.iter().filter(|c| c.base == change.base).count() > 1;
        let platform = if several {
            format!(" ({})", change.platform)
        } else {
            String::new()
        };
        match &change.old {
            Some(old) => status(
                "Updating",
                &format!("{} {old} -> {}{platform}", change.base, change.new),
            ),
            None => status(
                "Adding",
                &format!("{} {}{platform}", change.base, change.new),
            ),
        }
    }
    if changes.is_empty() {
        let lock = specs.first().map(build::lock_path);
        status(
            "Unchanged",
            &format!(
                "every base is pinned to what its reference resolves to{}",
                lock.map(|l| format!(" ({})", l.display()))
                    .unwrap_or_default()
            ),
        );
    }
    Ok(())
}
