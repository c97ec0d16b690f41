//! `cargo image export`: an image's merged filesystem as a tar or a directory, as `docker
//! export` writes a container's (the library's [`cargo_oci_image::rootfs::export_tar`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use cargo_oci_image::oci::{self, Layout, Platform, ResolvedImage};
use cargo_oci_image::registry::{PullPolicy, Reference, RegistryClient};
use cargo_oci_image::rootfs;
use cargo_oci_image::store::Store;
use clap::Args;

use super::build::RegistryArgs;
use super::Failure;

/// Write an image's filesystem (every layer applied, whiteouts honoured) as one tar, or into a
/// new directory, the way `docker export` does.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image export -o rootfs.tar                     the spec's image\n  \
    cargo image export target/image/app --platform linux/arm64 -o arm64.tar\n  \
    cargo image export oci-archive:app.tar -o rootfs/\n  \
    cargo image export docker.io/library/debian:12 -o - | tar -t\n\n\
    IMAGE is an OCI layout directory (`oci:DIR[:TAG]` too), `oci-archive:FILE[:TAG]`, \
    `docker-archive:FILE[:TAG]`, or else a registry reference (pulled, verified, into a \
    temporary store). The tar is deterministic: entries sorted, numeric owners, every entry \
    dated the image's `created` time; `tar = \"rootfs.tar\"` imports it back as one layer.")]
pub struct ExportArgs {
    /// The image [default: the default output of the spec].
    #[arg(value_name = "IMAGE")]
    image: Option<String>,
    /// Where to write: a tar file, `-` for standard output, or a directory (a path ending in
    /// `/`, or one that is not a `.tar`), which must not exist.
    #[arg(long, short, value_name = "PATH")]
    output: PathBuf,
    /// In a layout: the image with this tag [default: the layout's only image].
    #[arg(long, short, value_name = "TAG")]
    tag: Option<String>,
    /// The platform of a multi-platform image (`os/arch[/variant]`) [default: this machine's].
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// The spec whose default output to export when no IMAGE is given [default: ./image.toml].
    #[arg(long, value_name = "PATH", conflicts_with = "image")]
    spec: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Where the image comes from.
enum Source {
    Layout(PathBuf, Option<String>),
    OciArchive(PathBuf, Option<String>),
    DockerArchive(PathBuf, Option<String>),
    Registry(Reference),
}

/// `PATH[:TAG]` after a `oci:`-style prefix: a tag is what follows the last `:` when it has no
/// `/`.
fn path_and_tag(rest: &str) -> (PathBuf, Option<String>) {
    match rest.rsplit_once(':') {
        Some((path, tag)) if !path.is_empty() && !tag.contains('/') => {
            (PathBuf::from(path), Some(tag.to_owned()))
        }
        _ => (PathBuf::from(rest), None),
    }
}

fn source(args: &ExportArgs) -> Result<Source, Failure> {
    let Some(image) = &args.image else {
        let layout = super::inspect::existing_layout(None, args.spec.as_deref())?;
        return Ok(Source::Layout(layout, args.tag.clone()));
    };
    let with_tag = |(path, tag): (PathBuf, Option<String>)| -> Result<_, Failure> {
        match (tag, &args.tag) {
            (Some(_), Some(_)) => Err(Failure::usage(anyhow!(
                "{image} names a tag and so does --tag: give one of them"
            ))),
            (tag, flag) => Ok((path, tag.or_else(|| flag.clone()))),
        }
    };
    if let Some(rest) = image.strip_prefix("oci:") {
        let (path, tag) = with_tag(path_and_tag(rest))?;
        return Ok(Source::Layout(path, tag));
    }
    if let Some(rest) = image.strip_prefix("oci-archive:") {
        let (path, tag) = with_tag(path_and_tag(rest))?;
        return Ok(Source::OciArchive(path, tag));
    }
    if let Some(rest) = image.strip_prefix("docker-archive:") {
        let (path, tag) = with_tag(path_and_tag(rest))?;
        return Ok(Source::DockerArchive(path, tag));
    }
    if Path::new(image).is_dir() {
        return Ok(Source::Layout(image.into(), args.tag.clone()));
    }
    if args.tag.is_some() {
        return Err(Failure::usage(anyhow!(
            "--tag picks an image of a layout, and {image} is not a directory: put the tag in \
             the reference instead ({image}:TAG)"
        )));
    }
    let reference = Reference::parse(image).map_err(|e| {
        Failure::usage(anyhow!(
            "{image} is neither an OCI layout directory, an `oci-archive:`/`docker-archive:` \
             file nor a registry reference ({e})"
        ))
    })?;
    Ok(Source::Registry(reference))
}

/// The image of `layout` for `platform`; without `--platform`, a layout whose tag names one
/// image (not an index) gives that image whatever its platform.
fn resolve(
    layout: &Layout,
    tag: Option<&str>,
    platform: &Platform,
    chosen: bool,
) -> Result<ResolvedImage, Failure> {
    match layout.resolve(tag, platform) {
        Err(oci::Error::PlatformMismatch { found, .. }) if !chosen => {
            let found = Platform::parse(&found).map_err(Failure::build)?;
            layout.resolve(tag, &found).map_err(Failure::build)
        }
        other => other.map_err(Failure::build),
    }
}

pub fn run(args: ExportArgs) -> Result<(), Failure> {
    let chosen = args.platform.is_some();
    let platform = match &args.platform {
        Some(p) => {
            Platform::parse(p).map_err(|e| Failure::usage(anyhow!("invalid --platform: {e}")))?
        }
        None => Platform::host(),
    };
    let scratch = tempfile::Builder::new()
        .prefix("cargo-image-export-")
        .tempdir()
        .map_err(Failure::build)?;
    let unpacked = scratch.path().join("image");
    let image = match source(&args)? {
        Source::Layout(path, tag) => {
            let layout = Layout::open(&path).map_err(Failure::build)?;
            resolve(&layout, tag.as_deref(), &platform, chosen)?
        }
        Source::OciArchive(path, tag) => {
            let layout = oci::open_oci_archive(&path, &unpacked).map_err(Failure::build)?;
            resolve(&layout, tag.as_deref(), &platform, chosen)?
        }
        Source::DockerArchive(path, tag) => {
            let layout = oci::open_docker_archive(&path, &unpacked).map_err(Failure::build)?;
            resolve(&layout, tag.as_deref(), &platform, chosen)?
        }
        Source::Registry(reference) => {
            let client = RegistryClient::new(args.registry.options()?).map_err(Failure::build)?;
            let store = Store::open(&scratch.path().join("store")).map_err(Failure::build)?;
            let pulled = client
                .pull(&reference, &platform, &store, PullPolicy::Always)
                .map_err(Failure::build)?;
            pulled.image
        }
    };
    let layers = scratch.path().join("layers");
    std::fs::create_dir_all(&layers).map_err(Failure::build)?;
    let out = &args.output;
    let to_dir = out.as_os_str().to_string_lossy().ends_with('/')
        || out.is_dir()
        || !(out.as_os_str() == "-" || out.extension().is_some_and(|e| e == "tar" || e == "TAR"));
    let report = if out.as_os_str() == "-" {
        let mut stdout = std::io::BufWriter::new(std::io::stdout());
        let report = rootfs::export_tar(&image, &layers, &mut stdout).map_err(Failure::build)?;
        stdout.flush().map_err(Failure::build)?;
        report
    } else if to_dir {
        rootfs::export_dir(&image, &layers, out).map_err(Failure::build)?
    } else {
        rootfs::export_tar_file(&image, &layers, out).map_err(Failure::build)?
    };
    if out.as_os_str() != "-" {
        super::output::status(
            "Exported",
            &format!(
                "{} ({} entries, {} bytes of files) to {}",
                image.digest(),
                report.entries,
                report.content_bytes,
                out.display()
            ),
        );
    }
    Ok(())
}
