//! `cargo image sbom`: print the SBOM (CycloneDX or SPDX) attached to an image of an OCI layout.

use std::io::Write as _;
use std::path::PathBuf;

use cargo_oci_image::oci;
use cargo_oci_image::types::SbomFormat;
use clap::Args;

use super::Failure;

/// Print the SBOM a build attached to an image (the referrer whose subject is the image's
/// manifest), as the layout holds it: CycloneDX or SPDX JSON, whichever the spec's `sbom` asked
/// for (the CycloneDX one when it asked for both, unless --format says otherwise).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image sbom target/image/hello\n  \
    cargo image sbom target/image/app --tag 1.0 --platform linux/arm64\n  \
    cargo image sbom target/image/hello | jq -r '.components[].purl'\n  \
    cargo image sbom target/image/hello --format spdx | jq -r '.packages[].name'")]
pub struct SbomArgs {
    /// The OCI layout directory [default: the default output of the spec].
    #[arg(value_name = "LAYOUT")]
    layout: Option<PathBuf>,
    /// The image with this tag [default: the layout's only image].
    #[arg(long, short, value_name = "TAG")]
    tag: Option<String>,
    /// The platform of a multi-platform image (`os/arch[/variant]`).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Which SBOM to print when the image has several [default: the image's first SBOM,
    /// CycloneDX when it has both].
    #[arg(long, value_name = "FORMAT", value_parser = ["cyclonedx", "spdx"])]
    format: Option<String>,
    /// The spec whose default output to read when no LAYOUT is given [default: ./image.toml].
    #[arg(long, value_name = "PATH", conflicts_with = "layout")]
    spec: Option<PathBuf>,
}

pub fn run(args: SbomArgs) -> Result<(), Failure> {
    let layout = super::inspect::existing_layout(args.layout, args.spec.as_deref())?;
    let platform = args
        .platform
        .as_deref()
        .map(oci::Platform::parse)
        .transpose()
        .map_err(Failure::usage)?;
    let format = args
        .format
        .as_deref()
        .map(str::parse::<SbomFormat>)
        .transpose()
        .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    let bytes = oci::sbom(&layout, args.tag.as_deref(), platform.as_ref(), format)
        .map_err(Failure::build)?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(Failure::build)?;
    Ok(())
}
