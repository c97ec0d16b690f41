//! `cargo image schema`: print the JSON Schema of `image.toml`, for editors.

use clap::Args;

use super::Failure;

/// Print the JSON Schema (draft-07) of the image spec.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image schema > image.schema.json\n\n\
    Then make `#:schema ./image.schema.json` the first line of image.toml: taplo and VS Code's \
    Even Better TOML complete and check the spec as you type.")]
pub struct SchemaArgs {}

pub fn run(_args: SchemaArgs) -> Result<(), Failure> {
    let schema = cargo_oci_image::spec::json_schema();
    let text = serde_json::to_string_pretty(&schema).map_err(Failure::build)?;
    println!("{text}");
    Ok(())
}
