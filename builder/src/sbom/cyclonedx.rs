//! The CycloneDX 1.6 JSON document of an image (the default SBOM format).
//!
//! `metadata.component` is the image itself (`type: container`, its manifest digest and a
//! `cargo-image:platform` property); each crate is a component (`application` for the
//! binaries' packages, with a `cargo-image:build` property per binary, `library` for the rest)
//! with its purl, `Cargo.lock` sha256, `license` expression and a `cargo-image:source` property
//! (and a `vcs` reference for git); the base image is a `container` component with its digest;
//! each Debian package is a `library` component with its `pkg:deb` purl and the `.deb`'s
//! sha256; tarballs and host paths are `file` components. `dependencies` holds the graph: the image
//! depends on its binaries' packages, each crate on the crates it uses. `serialNumber` is the
//! `urn:uuid:` of the image's manifest digest, `metadata.timestamp` the build's epoch.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{merged_crates, purl, source_of, uuid_of, CrateKey, Input};
use crate::cargo::{self, CrateSource};
use crate::oci;

/// The CycloneDX 1.6 JSON document of `input` (pretty, ending in a newline).
pub fn cyclonedx(input: &Input) -> Vec<u8> {
    // Crates of every binary, merged: one component per (name, version, source).
    let crates = merged_crates(input);
    let mut refs: BTreeMap<CrateKey, String> = BTreeMap::new();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for key in crates.keys() {
        let purl = purl(&key.0, &key.1);
        let n = used.entry(purl.clone()).or_default();
        *n += 1;
        let r = if *n == 1 { purl } else { format!("{purl}#{n}") };
        refs.insert(key.clone(), r);
    }

    let image_ref = format!("image:{}", input.manifest_digest);
    let mut components: Vec<Value> = Vec::new();
    if let Some((name, digest)) = &input.base {
        let mut c = json!({
            "type": "container",
            "bom-ref": format!("base:{digest}"),
            "name": name,
            "version": digest,
        });
        if let Some(hex) = digest.strip_prefix("sha256:") {
            c["hashes"] = json!([{"alg": "SHA-256", "content": hex}]);
        }
        components.push(c);
    }
    for (key, entry) in &crates {
        let mut c = crate_component(&entry.krate, entry.application, &refs[key]);
        for build in &entry.builds {
            c["properties"]
                .as_array_mut()
                .expect("a crate has properties")
                .push(json!({"name": "cargo-image:build", "value": build}));
        }
        components.push(c);
    }
    for p in &input.debian {
        let purl = p.purl();
        components.push(json!({
            "type": "library",
            "bom-ref": purl,
            "name": p.name,
            "version": p.version,
            "purl": purl,
            "hashes": [{"alg": "SHA-256", "content": p.sha256}],
            "properties": [{"name": "cargo-image:source", "value": "debian"}],
        }));
    }
    for file in &input.files {
        let mut c = json!({
            "type": "file",
            "bom-ref": format!("file:{}", file.path),
            "name": file.path,
        });
        if let Some(hex) = &file.sha256 {
            c["hashes"] = json!([{"alg": "SHA-256", "content": hex}]);
        }
        components.push(c);
    }

    let mut dependencies: Vec<Value> = Vec::new();
    let roots: Vec<&String> = crates
        .iter()
        .filter(|(_, e)| e.application)
        .map(|(k, _)| &refs[k])
        .collect();
    let mut roots = roots;
    let debs: Vec<String> = input.debian.iter().map(|p| p.purl()).collect();
    roots.extend(debs.iter());
    dependencies.push(json!({"ref": image_ref, "dependsOn": roots}));
    for (key, entry) in &crates {
        let on: Vec<&String> = entry.depends_on.iter().map(|k| &refs[k]).collect();
        dependencies.push(json!({"ref": refs[key], "dependsOn": on}));
    }

    let mut image = json!({
        "type": "container",
        "bom-ref": image_ref,
        "name": input.name,
        "version": input.manifest_digest,
        "properties": [{"name": "cargo-image:platform", "value": input.platform}],
    });
    if let Some(hex) = input.manifest_digest.strip_prefix("sha256:") {
        image["hashes"] = json!([{"alg": "SHA-256", "content": hex}]);
    }
    let doc = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid_of(&input.manifest_digest)),
        "version": 1,
        "metadata": {
            "timestamp": oci::rfc3339(input.epoch),
            "tools": {"components": [{
                "type": "application",
                "name": "cargo-image",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": image,
        },
        "components": components,
        "dependencies": dependencies,
    });
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("a JSON value serialises");
    bytes.push(b'\n');
    bytes
}

fn crate_component(c: &cargo::Crate, application: bool, bom_ref: &str) -> Value {
    let mut v = json!({
        "type": if application { "application" } else { "library" },
        "bom-ref": bom_ref,
        "name": c.name,
        "version": c.version,
        "purl": purl(&c.name, &c.version),
    });
    if let Some(sum) = &c.checksum {
        v["hashes"] = json!([{"alg": "SHA-256", "content": sum}]);
    }
    if let Some(license) = &c.license {
        // Old manifests separate alternatives with `/`; SPDX says `OR`.
        let expression = license
            .split('/')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" OR ");
        v["licenses"] = json!([{"expression": expression}]);
    }
    if let CrateSource::Git { url, commit } = &c.source {
        v["externalReferences"] = json!([{"type": "vcs", "url": format!("{url}#{commit}")}]);
    }
    v["properties"] = json!([{"name": "cargo-image:source", "value": source_of(&c.source)}]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let input = super::super::tests::input("MIT/Apache-2.0", vec![]);
        let a = cyclonedx(&input);
        assert_eq!(a, cyclonedx(&input));
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
        assert!(v["serialNumber"].as_str().unwrap().starts_with("urn:uuid:"));
        assert_eq!(v["components"][0]["type"], "application");
        assert_eq!(
            v["components"][1]["licenses"][0]["expression"],
            "MIT OR Apache-2.0"
        );
        assert_eq!(v["dependencies"][1]["dependsOn"][0], "pkg:cargo/dep@1.0.0");
        assert_eq!(
            v["components"][0]["properties"][1]["value"],
            "bin=(default) target=x86_64-unknown-linux-musl profile=release"
        );
    }
}
