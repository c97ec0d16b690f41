//! `cargo image inspect`: show what a built OCI layout holds.

use std::fmt::Write as _;
use std::path::PathBuf;

use cargo_oci_image::oci::{self, Inspection};
use clap::Args;

use super::output::human_size;
use super::Failure;

/// Why `cargo image inspect` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("`{}` does not exist: build the image first with `cargo image build` (it prints where the image went), or give the path of an OCI image layout", path.display())]
    Missing { path: PathBuf },
}

/// Show the manifest, config and layers of an image in an OCI layout.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image inspect target/image/hello              every tag of the layout\n  \
    cargo image inspect target/image/hello --tag 0.1.0  one tag\n  \
    cargo image inspect --spec examples/hello/image.toml  the spec's default output\n  \
    cargo image inspect target/image/hello --json | jq '.[0].layers'")]
pub struct InspectArgs {
    /// The OCI layout directory [default: the default output of the spec].
    #[arg(value_name = "LAYOUT")]
    layout: Option<PathBuf>,
    /// Show only the image with this tag.
    #[arg(long, short, value_name = "TAG")]
    tag: Option<String>,
    /// The spec whose default output to inspect when no LAYOUT is given [default: ./image.toml].
    #[arg(long, value_name = "PATH", conflicts_with = "layout")]
    spec: Option<PathBuf>,
    /// Print JSON (an array, one object per image) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<(), Failure> {
    let layout = existing_layout(args.layout, args.spec.as_deref())?;
    let images = oci::inspect(&layout, args.tag.as_deref()).map_err(Failure::build)?;
    if args.json {
        let text = serde_json::to_string_pretty(&images).map_err(Failure::build)?;
        println!("{text}");
    } else {
        let mut out = String::new();
        for (i, image) in images.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            // An image index is shown once, with its platforms, before its images.
            let first_of_index = image.index_digest.is_some()
                && (i == 0 || images[i - 1].index_digest != image.index_digest);
            if first_of_index {
                index_table(&mut out, &layout, &images[i..]);
                out.push('\n');
            }
            table(&mut out, &layout, image);
        }
        print!("{out}");
    }
    Ok(())
}

/// The layout given, or the default output of the spec (`--spec`, else `./image.toml`); it
/// must exist.
pub(super) fn existing_layout(
    layout: Option<PathBuf>,
    spec: Option<&std::path::Path>,
) -> Result<PathBuf, Failure> {
    let layout = match layout {
        Some(layout) => layout,
        None => {
            let spec = super::build::find_spec(spec)?;
            cargo_oci_image::build::default_output(&spec).map_err(Failure::build)?
        }
    };
    if !layout.exists() {
        return Err(Failure::build(InspectError::Missing { path: layout }));
    }
    Ok(layout)
}

/// Appends the summary of the image index `images[0]` belongs to: its digest and size, and one
/// line per platform with the manifest digest, the manifest size and the image's layer bytes.
fn index_table(out: &mut String, layout: &std::path::Path, images: &[Inspection]) {
    let first = &images[0];
    let platforms: Vec<&Inspection> = images
        .iter()
        .take_while(|i| i.index_digest == first.index_digest)
        .collect();
    let _ = writeln!(out, "{:<13}{}", "Layout", layout.display());
    let _ = writeln!(out, "{:<13}{}", "Tags", first.tags.join(", "));
    let _ = writeln!(
        out,
        "{:<13}{}  {}  {} platform{}",
        "Index",
        first.index_digest.as_deref().unwrap_or_default(),
        human_size(first.index_size.unwrap_or_default()),
        platforms.len(),
        if platforms.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        out,
        "  {:<16}  {:<71}  {:>10}  {:>10}",
        "PLATFORM", "MANIFEST", "SIZE", "LAYERS"
    );
    for image in platforms {
        let layers: u64 = image.layers.iter().map(|l| l.size).sum();
        let _ = writeln!(
            out,
            "  {:<16}  {:<71}  {:>10}  {:>10}",
            image.platform.to_string(),
            image.manifest.digest,
            human_size(image.manifest.size),
            human_size(layers)
        );
    }
}

/// Appends the human form of one image: key/value lines, then a layer table.
fn table(out: &mut String, layout: &std::path::Path, image: &Inspection) {
    let mut row = |key: &str, value: String| {
        if !value.is_empty() {
            let _ = writeln!(out, "{key:<13}{value}");
        }
    };
    row("Layout", layout.display().to_string());
    row("Tags", image.tags.join(", "));
    if let Some(index) = &image.index_digest {
        row("Index", index.clone());
    }
    row(
        "Manifest",
        format!(
            "{}  {}  {}",
            image.manifest.digest,
            image.manifest.media_type,
            human_size(image.manifest.size)
        ),
    );
    row("Config", image.config_digest.clone());
    row("Platform", image.platform.to_string());
    row("Created", image.created.clone().unwrap_or_default());
    let list = |v: &Option<Vec<String>>| {
        v.as_ref()
            .map(|v| serde_json::to_string(v).unwrap_or_default())
            .unwrap_or_default()
    };
    row("Entrypoint", list(&image.entrypoint));
    row("Cmd", list(&image.cmd));
    row("Workdir", image.workdir.clone().unwrap_or_default());
    row("User", image.user.clone().unwrap_or_default());
    row("StopSignal", image.stop_signal.clone().unwrap_or_default());
    row("Ports", image.exposed_ports.join(", "));
    row("Volumes", image.volumes.join(", "));
    for (i, env) in image.env.iter().enumerate() {
        row(if i == 0 { "Env" } else { "" }, env.clone());
    }
    for (i, (k, v)) in image.labels.iter().enumerate() {
        row(if i == 0 { "Labels" } else { "" }, format!("{k}={v}"));
    }
    for (i, (k, v)) in image.annotations.iter().enumerate() {
        row(if i == 0 { "Annotations" } else { "" }, format!("{k}={v}"));
    }
    if !image.referrers.is_empty() {
        let _ = writeln!(out, "Referrers    {}", image.referrers.len());
        let _ = writeln!(
            out,
            "  {:<32}  {:<71}  {:>10}",
            "ARTIFACT TYPE", "DIGEST", "SIZE"
        );
        for r in &image.referrers {
            let _ = writeln!(
                out,
                "  {:<32}  {:<71}  {:>10}",
                r.artifact_type,
                r.digest,
                human_size(r.size)
            );
        }
    }
    let total: u64 = image.layers.iter().map(|l| l.size).sum();
    let _ = writeln!(
        out,
        "Layers       {} ({})",
        image.layers.len(),
        human_size(total)
    );
    let _ = writeln!(
        out,
        "  {:>3}  {:<71}  {:>10}  {:<6}  CREATED BY",
        "#", "DIGEST", "SIZE", "TYPE"
    );
    for (i, layer) in image.layers.iter().enumerate() {
        let kind = match oci::layer_compression(&layer.media_type.as_str().into()) {
            Some(c) => format!("{c:?}").to_lowercase(),
            None => "?".to_string(),
        };
        let _ = writeln!(
            out,
            "  {:>3}  {:<71}  {:>10}  {:<6}  {}",
            i + 1,
            layer.digest,
            human_size(layer.size),
            kind,
            layer.created_by.clone().unwrap_or_default()
        );
    }
}
