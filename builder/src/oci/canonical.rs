//! Canonical JSON: the exact bytes of every config, manifest and index we write.
//!
//! A digest is the sha256 of a document's bytes, so the bytes must not depend on anything but
//! the document: not on `HashMap` iteration order (oci-spec keeps labels, annotations, exposed
//! ports and volumes in `HashMap`s), not on a serde_json feature (`preserve_order`) that another
//! crate in the build may switch on. [`to_canonical_json`] therefore goes through a
//! [`serde_json::Value`] and writes every object with its keys sorted by their UTF-8 bytes
//! itself, compact, with no trailing newline.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use super::Error;

/// Serialises `value` as canonical JSON: compact (no whitespace), object keys sorted
/// byte-wise at every depth, no trailing newline. Equal values give equal bytes.
pub fn to_canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let what = std::any::type_name::<T>();
    let tree = serde_json::to_value(value).map_err(|source| Error::Serialize { what, source })?;
    serde_json::to_vec(&Sorted(&tree)).map_err(|source| Error::Serialize { what, source })
}

/// A JSON value that serialises its objects with sorted keys, whatever map type
/// `serde_json::Map` is in this build.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Sorted(item))?;
                }
                seq.end()
            }
            Value::Object(object) => {
                let sorted: BTreeMap<&str, &Value> =
                    object.iter().map(|(k, v)| (k.as_str(), v)).collect();
                let mut map = serializer.serialize_map(Some(sorted.len()))?;
                for (key, value) in sorted {
                    map.serialize_entry(key, &Sorted(value))?;
                }
                map.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use oci_spec::image::{Config, ImageConfiguration};

    use super::*;

    /// Positions of `needles` in `haystack`, in order; panics when one is missing.
    fn positions(haystack: &str, needles: &[&str]) -> Vec<usize> {
        needles
            .iter()
            .map(|n| {
                haystack
                    .find(n)
                    .unwrap_or_else(|| panic!("{n} not in {haystack}"))
            })
            .collect()
    }

    #[test]
    fn serde_json_map_is_not_insertion_ordered() {
        // The crate must not be built with serde_json's `preserve_order`: with it, `Value`
        // objects keep insertion order. (`to_canonical_json` sorts either way; this pins the
        // feature set so nobody relies on `serde_json::to_vec(&value)` being canonical by luck.)
        let mut map = serde_json::Map::new();
        map.insert("b".into(), Value::Null);
        map.insert("a".into(), Value::Null);
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["a", "b"],
            "serde_json's preserve_order feature is enabled"
        );
    }

    #[test]
    fn hashmap_backed_oci_types_come_out_sorted() {
        // Enough keys that a HashMap's random order is all but certain to differ from sorted
        // order in at least one of the runs below.
        let names: Vec<String> = (0..40).map(|i| format!("label.{:02}", 39 - i)).collect();
        let mut first: Option<Vec<u8>> = None;
        for _ in 0..5 {
            let labels: HashMap<String, String> =
                names.iter().map(|n| (n.clone(), "v".to_string())).collect();
            let mut config = Config::default();
            config.set_labels(Some(labels));
            config.set_exposed_ports(Some(names.iter().map(|n| format!("{n}/tcp")).collect()));
            let mut image = ImageConfiguration::default();
            image.set_config(Some(config));
            let bytes = to_canonical_json(&image).unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();

            let mut sorted = names.clone();
            sorted.sort();
            let quoted: Vec<String> = sorted.iter().map(|n| format!("\"{n}\":")).collect();
            let needles: Vec<&str> = quoted.iter().map(String::as_str).collect();
            let found = positions(&text, &needles);
            assert!(
                found.windows(2).all(|w| w[0] < w[1]),
                "labels not sorted: {text}"
            );
            let ports: Vec<String> = sorted.iter().map(|n| format!("\"{n}/tcp\":{{}}")).collect();
            let needles: Vec<&str> = ports.iter().map(String::as_str).collect();
            let found = positions(&text, &needles);
            assert!(
                found.windows(2).all(|w| w[0] < w[1]),
                "ports not sorted: {text}"
            );
            // Top-level keys sorted too.
            let top = positions(
                &text,
                &["\"architecture\"", "\"config\"", "\"os\"", "\"rootfs\""],
            );
            assert!(top.windows(2).all(|w| w[0] < w[1]), "{text}");

            match &first {
                None => first = Some(bytes),
                Some(first) => assert_eq!(first, &bytes, "canonical JSON is not byte-stable"),
            }
        }
    }

    #[test]
    fn compact_without_trailing_newline() {
        let value = serde_json::json!({"z": [1, {"y": "é\n", "x": true}], "a": null});
        let bytes = to_canonical_json(&value).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"a":null,"z":[1,{"x":true,"y":"é\n"}]}"#
        );
    }

    #[test]
    fn keys_sort_by_bytes() {
        let value = serde_json::json!({"b": 1, "B": 2, "a": 3, "ä": 4, "a.b": 5});
        let text = String::from_utf8(to_canonical_json(&value).unwrap()).unwrap();
        assert_eq!(text, r#"{"B":2,"a":3,"a.b":5,"b":1,"ä":4}"#);
    }
}
