//! The checked-in JSON schema and reference of `image.toml`, and the examples.
//!
//! - `schema/image.schema.json` and `schema/REFERENCE.md` must be what the code generates from
//!   the raw spec types' doc comments; `UPDATE_SCHEMA=1 cargo test -p cargo-oci-image --test
//!   schema` regenerates them.
//! - every `examples/*/image.toml` starts with a `#:schema` comment pointing at the schema,
//!   validates against it, and is accepted by `spec::parse`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cargo_oci_image::spec;
use cargo_oci_image_test_support::repo_root;
use serde_json::Value;

const REGENERATE: &str =
    "run `UPDATE_SCHEMA=1 cargo test -p cargo-oci-image --test schema` to regenerate";

fn schema_file() -> PathBuf {
    repo_root().join("schema/image.schema.json")
}

/// Compare `generated` with the checked-in `path`, or write it when `UPDATE_SCHEMA` is set.
fn check_generated(path: &Path, generated: &str) {
    if std::env::var_os("UPDATE_SCHEMA").is_some_and(|v| v != "0" && !v.is_empty()) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, generated)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current != generated {
        let first_difference = current
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(generated.lines().count()));
        panic!(
            "{} is out of date (first difference at line {}): {REGENERATE}",
            path.display(),
            first_difference + 1
        );
    }
}

fn generated_schema() -> String {
    let mut text = serde_json::to_string_pretty(&spec::json_schema()).expect("schema serialises");
    text.push('\n');
    text
}

#[test]
fn schema_is_up_to_date() {
    check_generated(&schema_file(), &generated_schema());
}

#[test]
fn reference_is_up_to_date() {
    check_generated(
        &repo_root().join("schema/REFERENCE.md"),
        &reference(&spec::json_schema()),
    );
}

#[test]
fn schema_is_draft07_and_describes_every_key() {
    let schema = spec::json_schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert!(schema["title"].is_string());
    jsonschema::draft7::new(&schema).expect("the schema compiles");
    fn walk(node: &Value, path: &str) {
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            for (key, value) in properties {
                assert!(
                    value.get("description").is_some(),
                    "`{path}{key}` has no description"
                );
                walk(value, &format!("{path}{key}."));
            }
        }
        if let Some(definitions) = node.get("definitions").and_then(Value::as_object) {
            for (name, def) in definitions {
                walk(def, &format!("{name}."));
            }
        }
    }
    walk(&schema, "");
}

// --- Examples -------------------------------------------------------------------------------

/// Check one example directory: `#:schema` first line, schema validation, `spec::parse`.
fn check_example(dir: &Path, schema_path: &Path) -> Result<(), String> {
    let spec_path = dir.join("image.toml");
    let text =
        std::fs::read_to_string(&spec_path).map_err(|e| format!("{}: {e}", spec_path.display()))?;

    let first = text.lines().next().unwrap_or_default();
    let target = first
        .strip_prefix("#:schema ")
        .ok_or_else(|| {
            format!(
                "{}: the first line must be `#:schema <relative path to image.schema.json>`",
                spec_path.display()
            )
        })?
        .trim();
    if Path::new(target).is_absolute() || target.contains("://") {
        return Err(format!(
            "{}: `#:schema {target}` must be a relative path",
            spec_path.display()
        ));
    }
    let points_at = dir.join(target).canonicalize().ok();
    if points_at.as_deref() != Some(&*schema_path.canonicalize().map_err(|e| e.to_string())?) {
        return Err(format!(
            "{}: `#:schema {target}` does not point at {}",
            spec_path.display(),
            schema_path.display()
        ));
    }

    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let validator = jsonschema::draft7::new(&schema).map_err(|e| e.to_string())?;
    let document: toml::Value =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let instance = serde_json::to_value(&document).map_err(|e| e.to_string())?;
    let problems: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if !problems.is_empty() {
        return Err(format!(
            "{} does not match the schema:\n  {}",
            spec_path.display(),
            problems.join("\n  ")
        ));
    }

    spec::parse(&text, &spec_path).map_err(|e| format!("{e}"))?;
    Ok(())
}

/// The directories of `examples/*/image.toml`.
fn example_dirs(examples: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(examples)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("image.toml").is_file());
    dirs.sort();
    dirs
}

#[test]
fn examples_match_the_schema_and_parse() {
    let examples = repo_root().join("examples");
    if !examples.is_dir() {
        return; // No examples yet.
    }
    let has_subdirs = std::fs::read_dir(&examples)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.path().is_dir());
    let dirs = example_dirs(&examples);
    if has_subdirs {
        assert!(
            !dirs.is_empty(),
            "{} has directories but no `*/image.toml`",
            examples.display()
        );
    }
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|dir| check_example(dir, &schema_file()).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The example checks themselves, on a throwaway example (the real ones live elsewhere).
#[test]
fn example_checks_catch_problems() {
    let root = tempfile::tempdir().unwrap();
    let schema_path = root.path().join("schema/image.schema.json");
    std::fs::create_dir_all(schema_path.parent().unwrap()).unwrap();
    std::fs::write(&schema_path, generated_schema()).unwrap();
    let dir = root.path().join("examples/hello");
    std::fs::create_dir_all(dir.join("static")).unwrap();
    let write = |text: &str| std::fs::write(dir.join("image.toml"), text).unwrap();

    let good = r#"#:schema ../../schema/image.schema.json
name = "hello"
tags = ["latest", "0.1.0"]

[config]
entrypoint = ["/usr/local/bin/hello"]
exposed-ports = ["8080"]

[[layer]]
name = "app"
[[layer.add]]
cargo = { bin = "hello" }
dest = "/usr/local/bin/hello"
mode = 0o755
[[layer.add]]
path = "static"
dest = "/srv/"
exclude = ["*.map"]
"#;
    write(good);
    assert_eq!(
        example_dirs(&root.path().join("examples")),
        vec![dir.clone()]
    );
    check_example(&dir, &schema_path).unwrap();

    write(&good.replace("#:schema ../../schema/image.schema.json\n", ""));
    assert!(check_example(&dir, &schema_path)
        .unwrap_err()
        .contains("first line"));

    write(&good.replace("../../schema/", "../schema/"));
    assert!(check_example(&dir, &schema_path)
        .unwrap_err()
        .contains("does not point at"));

    // Refused by the schema (two sources in one entry) before `spec::parse` sees it.
    write(&good.replace(
        "cargo = { bin = \"hello\" }",
        "cargo = { bin = \"hello\" }\ncontent = \"x\"",
    ));
    assert!(check_example(&dir, &schema_path)
        .unwrap_err()
        .contains("does not match the schema"));

    // Accepted by the schema, refused by validation (the context must hold `path`).
    write(&good.replace("path = \"static\"", "path = \"../static\""));
    let error = check_example(&dir, &schema_path).unwrap_err();
    assert!(error.contains("leaves the build context"), "{error}");
}

// --- The reference --------------------------------------------------------------------------

/// `schema/REFERENCE.md`: every key of the schema with its type, default and documentation.
fn reference(schema: &Value) -> String {
    let mut out = String::new();
    let title = schema["title"].as_str().unwrap_or("image.toml");
    writeln!(out, "# {title}: reference\n").unwrap();
    writeln!(
        out,
        "<!-- Generated from the JSON schema (`image.schema.json`, itself generated from the doc \
         comments of `builder/src/spec/raw.rs`). Do not edit: {REGENERATE}. -->\n"
    )
    .unwrap();
    writeln!(
        out,
        "{}\n",
        paragraph(schema["description"].as_str().unwrap_or_default())
    )
    .unwrap();
    writeln!(
        out,
        "Editors that read `#:schema` comments (Taplo, Even Better TOML) validate and complete a \
         spec whose first line points at the schema by a relative path:\n\n```toml\n\
         #:schema ../../schema/image.schema.json\nname = \"hello\"\n```\n"
    )
    .unwrap();

    let mut sections = Vec::new();
    collect_sections(schema, schema, String::new(), false, &mut sections);
    writeln!(out, "## Contents\n").unwrap();
    for (heading, _, _) in &sections {
        writeln!(out, "- [{heading}](#{})", anchor(heading)).unwrap();
    }
    writeln!(out).unwrap();
    for (heading, node, _) in &sections {
        writeln!(out, "## {heading}\n").unwrap();
        if heading != "Top level" {
            if let Some(description) = node.get("description").and_then(Value::as_str) {
                writeln!(out, "{}\n", paragraph(description)).unwrap();
            }
        }
        let required: Vec<&str> = node["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (key, property) in node["properties"].as_object().into_iter().flatten() {
            writeln!(out, "### `{key}`\n").unwrap();
            writeln!(out, "- type: {}", type_name(schema, property)).unwrap();
            if required.contains(&key.as_str()) {
                writeln!(out, "- required").unwrap();
            } else if let Some(default) = property.get("default") {
                writeln!(out, "- default: `{}`", toml_value(default)).unwrap();
            } else {
                writeln!(out, "- optional").unwrap();
            }
            if let Some(description) = property.get("description").and_then(Value::as_str) {
                writeln!(out, "\n{}", paragraph(description)).unwrap();
            }
            writeln!(out).unwrap();
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Every table of the spec, depth first: (heading, table schema, TOML path).
fn collect_sections(
    schema: &Value,
    node: &Value,
    path: String,
    array: bool,
    out: &mut Vec<(String, Value, String)>,
) {
    let heading = match (path.is_empty(), array) {
        (true, _) => "Top level".to_owned(),
        (false, true) => format!("`[[{path}]]`"),
        (false, false) => format!("`[{path}]`"),
    };
    out.push((heading, node.clone(), path.clone()));
    for (key, property) in node["properties"].as_object().into_iter().flatten() {
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let (target, is_array) = match property.get("items") {
            Some(items) => (resolve(schema, items), true),
            None => (resolve(schema, property), false),
        };
        if target.get("properties").is_some() {
            collect_sections(schema, &target, child, is_array, out);
        }
    }
}

/// Follow `$ref` and single-element `allOf` wrappers.
fn resolve(schema: &Value, node: &Value) -> Value {
    if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap();
        return resolve(schema, &schema["definitions"][name]);
    }
    if let Some([only]) = node
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        return resolve(schema, only);
    }
    node.clone()
}

/// A schema's type in TOML's words.
fn type_name(schema: &Value, node: &Value) -> String {
    let node = resolve(schema, node);
    if let Some(value) = node.get("const") {
        return format!("`{}`", toml_value(value));
    }
    for keyword in ["oneOf", "anyOf"] {
        if let Some(options) = node.get(keyword).and_then(Value::as_array) {
            let names: Vec<String> = options.iter().map(|o| type_name(schema, o)).collect();
            return match names.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => "any".to_owned(),
            };
        }
    }
    match node.get("type").and_then(Value::as_str) {
        Some("array") => {
            let items = resolve(schema, node.get("items").unwrap_or(&Value::Null));
            if items.get("properties").is_some() {
                "array of tables".to_owned()
            } else {
                format!("array of {}s", type_name(schema, &items))
            }
        }
        Some("object") if node.get("properties").is_some() => "table".to_owned(),
        Some("object") => {
            let values = node
                .get("additionalProperties")
                .map(|v| type_name(schema, v));
            format!("table of {}s", values.unwrap_or_else(|| "value".to_owned()))
        }
        Some(other) => other.to_owned(),
        None => "any".to_owned(),
    }
}

/// A JSON value written as TOML.
fn toml_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// A doc comment as one Markdown paragraph per blank-line-separated block.
fn paragraph(text: &str) -> String {
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// GitHub's anchor for a heading.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}
