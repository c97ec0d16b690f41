//! The image spec: `image.toml` read into raw serde types, validated into an [`ImageSpec`].
//!
//! This is step 1 of the pipeline. Reading a spec is two steps, with two kinds of types:
//!
//! 1. **parse** ([`raw`]): the TOML text is deserialized into [`raw::RawSpec`], types that
//!    mirror the file one to one (`deny_unknown_fields`, kebab-case keys, nothing defaulted),
//!    keeping the byte span of every value a rule may refuse. Malformed TOML, unknown keys
//!    (with a "did you mean"), wrong types and missing keys stop here.
//! 2. **validate**: every value is checked (image name, tags, ports, modes, owners, globs,
//!    exactly one source per entry, unique layer names), image paths are normalised against
//!    the image root, host paths against the build context (which must exist; nothing may
//!    leave it), defaults are applied, and the result is the resolved [`ImageSpec`] in
//!    [`model`](self#types) that the rest of the pipeline consumes.
//!
//! A spec may also live in a `Cargo.toml`: [`workspace_specs`] reads `[package.metadata.image]`
//! of the packages of a cargo workspace over the defaults of `[workspace.metadata.image]` (see
//! the `workspace` module), and tags may hold templates (`{version}`, `{git_sha}`) expanded
//! during validation.
//!
//! Every problem is a [`SpecDiagnostic`] naming file, line, column and key, with a hint; as a
//! [`miette::Diagnostic`] it renders the offending snippet. The raw types' doc comments are
//! also the user documentation: [`json_schema`] turns them into the JSON schema editors use
//! (`#:schema` on a spec's first line), from which the reference `schema/REFERENCE.md` is made.
//!
//! # Example
//!
//! ```
//! use std::path::Path;
//! use cargo_oci_image::spec::{self, Source};
//!
//! let text = r#"
//! name = "hello"
//!
//! [config]
//! entrypoint = ["/usr/local/bin/hello"]
//!
//! [[layer]]
//! name = "app"
//! [[layer.add]]
//! cargo = {}
//! dest = "/usr/local/bin/"
//! "#;
//! // Relative paths are resolved against the spec file's directory (here the current one).
//! let spec = spec::parse(text, Path::new("image.toml"))?;
//! assert_eq!(spec.tags, ["latest"]);
//! assert!(matches!(spec.stage.layers[0].entries[0].source, Source::Cargo(_)));
//!
//! let error = spec::parse("name = \"Hello\"\n", Path::new("image.toml")).unwrap_err();
//! assert!(error.to_string().starts_with("image.toml:1:8: invalid `name`"));
//! # Ok::<(), spec::SpecError>(())
//! ```
//!
//! # Types
//!
//! The resolved types ([`ImageSpec`], [`Stage`], [`LayerSpec`], [`EntrySpec`], [`Source`]...)
//! are re-exported here from the `model` module.

mod error;
mod model;
mod parse;
pub mod raw;
mod template;
pub use template::expand_tag;
pub(crate) use template::git_head;
mod validate;
mod workspace;

use std::path::Path;

pub use error::{ErrorKind, SpecDiagnostic, SpecError};
pub use model::*;
pub use validate::{validate_profile, validate_tag};
pub use workspace::{workspace_specs, workspace_specs_from, Selection};

use error::SpecSource;

/// Read and validate the spec file at `path`.
///
/// Relative paths in the spec are resolved against the file's directory.
pub fn load(path: &Path) -> Result<ImageSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::ReadSpec {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validate spec `text` read from `spec_path`.
///
/// `spec_path` names the file in messages and is the base of relative paths (`context`,
/// `oci:` bases); the build context must exist on disk.
pub fn parse(text: &str, spec_path: &Path) -> Result<ImageSpec, SpecError> {
    let src = SpecSource {
        file: spec_path,
        text,
        prefix: "",
    };
    let raw = parse::parse_raw(&src).map_err(SpecError::ParseSpec)?;
    let absolute = std::path::absolute(spec_path).map_err(|source| SpecError::ReadSpec {
        path: spec_path.to_path_buf(),
        source,
    })?;
    validate::validate(raw, &src, &absolute).map_err(SpecError::ValidateSpec)
}

/// The JSON schema (draft-07) of `image.toml`, generated from the raw types and their doc
/// comments. Editors use it through a `#:schema PATH` comment on the spec's first line.
pub fn json_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<raw::RawSpec>().to_value();
    tomlify(&mut schema);
    schema
}

/// Make a generated schema speak TOML: TOML has no null, so optional keys are absent rather
/// than null (drop `"default": null` and `"null"` types), and integer formats are Rust's, not
/// JSON Schema's.
fn tomlify(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(object) => {
            if object.get("default").is_some_and(Value::is_null) {
                object.remove("default");
            }
            if object
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with(['u', 'i']))
            {
                object.remove("format");
            }
            if let Some(Value::Array(types)) = object.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    object.insert("type".to_owned(), only);
                }
            }
            object.values_mut().for_each(tomlify);
        }
        Value::Array(items) => items.iter_mut().for_each(tomlify),
        _ => {}
    }
}
#[cfg(test)]
mod tests;
