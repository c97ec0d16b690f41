//! Step 1 of reading a spec: TOML text into [`RawSpec`], with the TOML library's errors
//! (syntax, unknown key, wrong type, missing key) turned into located diagnostics.
//!
//! The text is parsed once into a spanned document tree; the raw types are deserialized from
//! that tree; when deserialization fails, the tree turns the error's byte span back into the
//! dotted key path (`layer[0].add[1].mode`) that the message names.

use std::ops::Range;

use serde::Deserialize;
use serde_json::Value;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{ErrorKind, SpecDiagnostic, SpecSource};
use super::raw::RawSpec;

/// Parse and deserialize the spec text. Errors are [`ErrorKind::Syntax`], `UnknownKey`,
/// `WrongType`, `MissingKey` or `InvalidValue` (a value the raw types themselves refuse).
pub(crate) fn parse_raw(src: &SpecSource<'_>) -> Result<RawSpec, Box<SpecDiagnostic>> {
    let root = DeTable::parse(src.text).map_err(|e| Box::new(syntax_error(src, &e)))?;
    RawSpec::deserialize(toml::de::Deserializer::from(root.clone()))
        .map_err(|e| Box::new(shape_error(src, &root, &e)))
}

/// Like [`parse_raw`], for the spec in the table at `path` of a TOML file (`package.metadata.
/// image` of a Cargo.toml); `None` when the file has no such table. Messages name keys below
/// the table with `src.prefix` in front.
pub(crate) fn parse_raw_at(
    src: &SpecSource<'_>,
    path: &[&str],
) -> Result<Option<RawSpec>, Box<SpecDiagnostic>> {
    let root = DeTable::parse(src.text).map_err(|e| Box::new(syntax_error(src, &e)))?;
    let mut table = root.clone();
    for (i, part) in path.iter().enumerate() {
        let Some(value) = table.get_ref().get(*part) else {
            return Ok(None);
        };
        let span = value.span();
        match value.get_ref() {
            DeValue::Table(t) => table = Spanned::new(span, t.clone()),
            _ => {
                let key = path[..=i].join(".");
                return Err(Box::new(
                    SpecSource { prefix: "", ..*src }
                        .diagnostic(
                            ErrorKind::WrongType,
                            span,
                            key.clone(),
                            format!("wrong type for `{key}`: expected a table"),
                            "expected a table",
                        )
                        .with_help(format!("write the image spec as a `[{key}]` table")),
                ));
            }
        }
    }
    RawSpec::deserialize(toml::de::Deserializer::from(table.clone()))
        .map(Some)
        .map_err(|e| Box::new(shape_error(src, &table, &e)))
}

fn syntax_error(src: &SpecSource<'_>, e: &toml::de::Error) -> SpecDiagnostic {
    let span = e.span().unwrap_or(0..0);
    let what = e.message().trim_end().replace('\n', "; ");
    let help = if what.contains("duplicate key") {
        Some("each key may appear only once in a table".to_owned())
    } else if what.contains("invalid basic string") || what.contains("invalid literal string") {
        Some(r#"close the string on the same line; multi-line strings use `"""`"#.to_owned())
    } else if what.contains("must be quoted") {
        Some(r#"strings are quoted in TOML: `key = "value"`"#.to_owned())
    } else {
        None
    };
    src.diagnostic(
        ErrorKind::Syntax,
        span,
        "",
        format!("invalid TOML: {what}"),
        "here",
    )
    .with_help_opt(help)
}

fn shape_error(
    src: &SpecSource<'_>,
    root: &Spanned<DeTable<'_>>,
    e: &toml::de::Error,
) -> SpecDiagnostic {
    let span = e.span().unwrap_or(0..0);
    let msg = e.message();
    let key = key_at(root, &span);

    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let allowed = backticked(expected);
        let table = parent_table(&key);
        let help = unknown_key_help(field, &table, &allowed);
        return src
            .diagnostic(
                ErrorKind::UnknownKey,
                span,
                key.clone(),
                format!("unknown key `{key}`"),
                "unknown key",
            )
            .with_help(help);
    }

    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        let key = join(&key, field);
        let help = missing_key_help(&key);
        let (span, label) = if span.is_empty() || span.start == 0 && span.end >= src.text.len() {
            (0..0, format!("`{field}` is required"))
        } else {
            (span, format!("`{field}` is missing in this table"))
        };
        return src
            .diagnostic(
                ErrorKind::MissingKey,
                span,
                key.clone(),
                format!("missing required key `{key}`"),
                label,
            )
            .with_help_opt(help);
    }

    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let (found, expected) = (humanize(found), humanize(expected));
        let help = wrong_type_help(&key, &found, &expected);
        return src
            .diagnostic(
                ErrorKind::WrongType,
                span,
                key.clone(),
                format!("wrong type for `{key}`: expected {expected}, found {found}"),
                format!("expected {expected}"),
            )
            .with_help_opt(help);
    }

    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let (value, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let allowed = backticked(expected);
        let list = allowed
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let help = match closest(value, &allowed) {
            Some(best) => format!("did you mean `{best}`? `{key}` is one of {list}"),
            None => format!("`{key}` is one of {list}"),
        };
        return src
            .diagnostic(
                ErrorKind::InvalidValue,
                span,
                key.clone(),
                format!("invalid `{key}` {value:?}: not one of {list}"),
                "unknown value",
            )
            .with_help(help);
    }

    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another value"));
        let (found, expected) = (humanize(found), humanize(expected));
        return src
            .diagnostic(
                ErrorKind::InvalidValue,
                span,
                key.clone(),
                format!("invalid `{key}`: expected {expected}, found {found}"),
                format!("expected {expected}"),
            )
            .with_help_opt(key_doc(&key).map(|doc| format!("`{}`: {doc}", last_segment(&key))));
    }

    src.diagnostic(
        ErrorKind::InvalidValue,
        span,
        key.clone(),
        format!("invalid `{key}`: {msg}"),
        "here",
    )
    .with_help_opt(key_doc(&key).map(|doc| format!("`{}`: {doc}", last_segment(&key))))
}

/// The dotted key path (`layer[0].add[1].mode`) of the key whose span is `span`, or else of
/// the smallest value whose span holds `span`; `""` for the document itself.
///
/// The whole tree is searched: a `[table]` header's span covers the header, not the keys
/// below it, so containment cannot guide the descent.
fn key_at(root: &Spanned<DeTable<'_>>, span: &Range<usize>) -> String {
    struct Best {
        path: String,
        width: usize,
        exact_key: bool,
    }

    fn visit_value(
        value: &Spanned<DeValue<'_>>,
        path: String,
        span: &Range<usize>,
        best: &mut Best,
    ) {
        let here = value.span();
        if !best.exact_key
            && here.start <= span.start
            && span.end <= here.end
            && here.len() <= best.width
        {
            best.width = here.len();
            best.path.clone_from(&path);
        }
        match value.get_ref() {
            DeValue::Table(table) => visit_table(table, &path, span, best),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    visit_value(item, format!("{path}[{i}]"), span, best);
                }
            }
            _ => {}
        }
    }

    fn visit_table(table: &DeTable<'_>, prefix: &str, span: &Range<usize>, best: &mut Best) {
        for (key, value) in table {
            let path = join(prefix, key.get_ref());
            if key.span() == *span {
                *best = Best {
                    path: path.clone(),
                    width: 0,
                    exact_key: true,
                };
            }
            visit_value(value, path, span, best);
        }
    }

    let mut best = Best {
        path: String::new(),
        width: usize::MAX,
        exact_key: false,
    };
    visit_table(root.get_ref(), "", span, &mut best);
    best.path
}

/// `prefix.key`, quoting keys that are not bare TOML keys.
fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// The last segment of a key path, without its index.
fn last_segment(key: &str) -> &str {
    let last = key.rsplit('.').next().unwrap_or(key);
    last.split('[').next().unwrap_or(last)
}

/// A key path without array indices (`layer.add.mode`), as the schema knows it.
fn schema_path(key: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in key.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The table holding the last key of `key` (`layer[0].add[1].cargo.pakage` -> `layer.add.cargo`).
fn parent_table(key: &str) -> String {
    let path = schema_path(key);
    match path.rsplit_once('.') {
        Some((parent, _)) => parent.to_owned(),
        None => String::new(),
    }
}

/// The tables of a spec, by schema path, with the name messages use for them.
const TABLES: [(&str, &str); 5] = [
    ("", "at the top level"),
    ("config", "in `[config]`"),
    ("layer", "in `[[layer]]`"),
    ("layer.add", "in `[[layer.add]]`"),
    ("layer.add.cargo", "in `cargo`"),
];

fn table_name(table: &str) -> String {
    TABLES
        .iter()
        .find(|(path, _)| *path == table)
        .map_or_else(|| format!("in `{table}`"), |(_, name)| (*name).to_owned())
}

fn unknown_key_help(field: &str, table: &str, allowed: &[String]) -> String {
    let list = allowed
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let allowed_here = if allowed.is_empty() {
        format!("no keys are allowed {}", table_name(table))
    } else {
        format!("keys allowed {}: {list}", table_name(table))
    };
    if let Some(best) = closest(field, allowed) {
        return format!("did you mean `{best}`? {allowed_here}");
    }
    // A key of another table: usually a key written below the wrong `[header]`.
    for (other, name) in TABLES {
        if other != table && table_keys(other).iter().any(|k| k == field) {
            let hint = if other.is_empty() {
                format!(
                    "`{field}` is a top-level key: TOML puts every key below a `[header]` into that \
                     table, so move it above the first header"
                )
            } else {
                format!("`{field}` belongs {name}")
            };
            return format!("{hint}; {allowed_here}");
        }
    }
    allowed_here
}

/// The hint for a missing required `key`.
pub(crate) fn missing_key_help(key: &str) -> Option<String> {
    let path = schema_path(key);
    let doc = key_doc(key).map(|doc| format!("`{}`: {doc}", last_segment(key)));
    match path.as_str() {
        "name" => {
            Some(r#"add the image name at the top of the file, e.g. `name = "hello"`"#.to_owned())
        }
        "layer.name" => Some(r#"give the layer a unique name, e.g. `name = "app"`"#.to_owned()),
        "layer.add" => Some(
            "a layer needs at least one entry: add a `[[layer.add]]` table below its `[[layer]]`, \
             or remove the empty layer"
                .to_owned(),
        ),
        _ => doc,
    }
}

fn wrong_type_help(key: &str, found: &str, expected: &str) -> Option<String> {
    let path = schema_path(key);
    let last = last_segment(key);
    if expected == "an array" && found.starts_with("a table") {
        if path == "layer" {
            return Some(
                "write each layer as an array of tables, `[[layer]]`, not `[layer]`".to_owned(),
            );
        }
        if path == "layer.add" {
            return Some("write each entry as `[[layer.add]]`, not `[layer.add]`".to_owned());
        }
    }
    if expected == "an array" {
        if let Some(value) = found.strip_prefix("a string ") {
            return Some(format!("write a list: `{last} = [{value}]`"));
        }
    }
    if expected == "a string" {
        if let Some(value) = found.strip_prefix("an integer (") {
            let value = value.trim_end_matches(')');
            let example = if key.ends_with(']') {
                format!("\"{value}\"")
            } else {
                format!("{last} = \"{value}\"")
            };
            return Some(format!("quote it: `{example}`"));
        }
    }
    key_doc(key).map(|doc| format!("`{last}`: {doc}"))
}

/// Serde's names of types and values, in TOML's words.
fn humanize(serde: &str) -> String {
    let serde = serde.trim();
    if let Some(value) = serde.strip_prefix("string ") {
        return format!("a string {value}");
    }
    for (prefix, name) in [
        ("integer ", "an integer"),
        ("floating point ", "a float"),
        ("boolean ", "a boolean"),
    ] {
        if let Some(value) = serde.strip_prefix(prefix) {
            return format!("{name} ({})", value.trim_matches('`'));
        }
    }
    match serde {
        "sequence" | "a sequence" => "an array".to_owned(),
        "map" | "a map" => "a table".to_owned(),
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_owned(),
        "f32" | "f64" => "a float".to_owned(),
        "unit value" | "unit" => "nothing".to_owned(),
        s if s.starts_with("struct ") => "a table".to_owned(),
        s => s.to_owned(),
    }
}

/// The words between backticks in a serde "expected" list.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The candidate closest to `word`, if it is close enough to be a typo.
pub(crate) fn closest<'a>(word: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

/// The schema of the table at `path` (schema path, no indices) or of the key at `path`.
fn schema_node(schema: &Value, path: &str) -> Option<Value> {
    let mut node = schema.clone();
    if !path.is_empty() {
        for segment in path.split('.') {
            let object = resolve(schema, &node);
            node = object
                .get("properties")?
                .get(segment.trim_matches('"'))?
                .clone();
        }
    }
    Some(node)
}

/// Follow `$ref`, single `allOf` wrappers and array `items` to the schema of a table.
fn resolve(schema: &Value, node: &Value) -> Value {
    let mut node = node.clone();
    for _ in 0..8 {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap_or_default();
            match schema.get("definitions").and_then(|d| d.get(name)) {
                Some(def) => node = def.clone(),
                None => break,
            }
        } else if let Some([only]) = node
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            node = only.clone();
        } else if let Some(items) = node.get("items") {
            node = items.clone();
        } else {
            break;
        }
    }
    node
}

/// The keys of the table at `table` (schema path).
fn table_keys(table: &str) -> Vec<String> {
    let schema = super::json_schema();
    schema_node(&schema, table)
        .map(|node| resolve(&schema, &node))
        .and_then(|node| {
            node.get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
        })
        .unwrap_or_default()
}

/// The first sentence of a key's documentation.
fn key_doc(key: &str) -> Option<String> {
    let schema = super::json_schema();
    let node = schema_node(&schema, &schema_path(key))?;
    let description = match node.get("description").and_then(Value::as_str) {
        Some(description) => description.to_owned(),
        None => resolve(&schema, &node)
            .get("description")
            .and_then(Value::as_str)?
            .to_owned(),
    };
    let flat = description.split_whitespace().collect::<Vec<_>>().join(" ");
    let first = match flat.find(". ") {
        Some(end) => &flat[..=end],
        None => flat.as_str(),
    };
    Some(first.trim_end().to_owned())
}
