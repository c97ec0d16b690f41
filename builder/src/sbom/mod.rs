//! Software bills of materials: a CycloneDX 1.6 JSON document per image, made of what went into
//! it, and the OCI 1.1 artifact manifest that attaches it to the image as a referrer.
//!
//! # What it lists
//! - `metadata.component`: the image itself (`type: container`, its manifest digest).
//! - every crate compiled into each cargo binary of the image, as [`cargo::crates`] resolves
//!   them for the binary's target triple and features (normal dependencies only, not the
//!   whole lock file): a `pkg:cargo/NAME@VERSION` purl, the sha256 `Cargo.lock` holds for a
//!   registry crate, the `license` expression, and where it came from (registry, git with its
//!   commit, or a path relative to the workspace root) as a `cargo-image:source` property (and a
//!   `vcs` reference for git). The binaries' own packages are `application`s (with a
//!   `cargo-image:build` property per binary: its name, target, profile and features), the
//!   rest `library`s; `dependencies` holds the graph.
//! - the base image (`type: container`) with its digest, when the image has an outside base.
//! - tarballs and host files added by the image's layers (`type: file`) with their sha256;
//!   host directories are listed by path (their content is in the layers' diff ids).
//!
//! # Deterministic
//! No clock and no randomness: `metadata.timestamp` is the build's epoch, `serialNumber` a
//! UUID (version 5 layout) made of the sha256 of the image's manifest digest, components are
//! sorted and paths are relative to the context or the workspace, so two checkouts on two
//! machines write the same bytes.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::cargo::{self, CrateSource};
use crate::oci;

/// The media type (and `artifactType`) of a CycloneDX JSON document.
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
/// The media type of the empty config of an artifact manifest.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty JSON object every artifact manifest's config points at.
pub const EMPTY_BLOB: &[u8] = b"{}";

/// A cargo binary of the image and the crates compiled into it.
#[derive(Debug, Clone)]
pub struct Binary {
    pub source: cargo::CargoSource,
    pub crates: cargo::Resolved,
}

/// A file the image's layers were made of: a tarball or a host path, relative to the context.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct File {
    pub path: String,
    /// The file's sha256 (hex); `None` for a directory.
    pub sha256: Option<String>,
}

/// What an image's SBOM is made of.
#[derive(Debug, Clone)]
pub struct Input {
    /// The image's name (`hello`).
    pub name: String,
    /// The digest of the image's manifest (the SBOM's subject).
    pub manifest_digest: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The build's epoch (`metadata.timestamp`).
    pub epoch: u64,
    /// The outside base: its name (reference or path) and manifest digest.
    pub base: Option<(String, String)>,
    pub binaries: Vec<Binary>,
    pub files: Vec<File>,
}

/// The CycloneDX 1.6 JSON document of `input` (pretty, ending in a newline).
pub fn cyclonedx(input: &Input) -> Vec<u8> {
    // Crates of every binary, merged: one component per (name, version, source).
    let mut crates: BTreeMap<(String, String, CrateSource), CrateEntry> = BTreeMap::new();
    for bin in &input.binaries {
        let key = |c: &cargo::Crate| (c.name.clone(), c.version.clone(), c.source.clone());
        for (i, c) in bin.crates.crates.iter().enumerate() {
            let entry = crates.entry(key(c)).or_insert_with(|| CrateEntry {
                krate: c.clone(),
                application: false,
                builds: Default::default(),
                depends_on: Default::default(),
            });
            if i == bin.crates.root {
                entry.application = true;
                entry.builds.insert(build_of(&bin.source));
            }
            for &d in &c.dependencies {
                entry.depends_on.insert(key(&bin.crates.crates[d]));
            }
        }
    }
    let mut refs: BTreeMap<(String, String, CrateSource), String> = BTreeMap::new();
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
        "serialNumber": serial_number(&input.manifest_digest),
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

struct CrateEntry {
    krate: cargo::Crate,
    application: bool,
    /// How each binary of the package was built ([`build_of`]).
    builds: std::collections::BTreeSet<String>,
    depends_on: std::collections::BTreeSet<(String, String, CrateSource)>,
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
    let source = match &c.source {
        CrateSource::Registry(index) => format!("registry+{index}"),
        CrateSource::Git { url, commit } => {
            v["externalReferences"] = json!([{"type": "vcs", "url": format!("{url}#{commit}")}]);
            format!("git+{url}#{commit}")
        }
        CrateSource::Path(path) => format!("path+{path}"),
    };
    v["properties"] = json!([{"name": "cargo-image:source", "value": source}]);
    v
}

/// How a binary was built: `bin=NAME target=TRIPLE profile=P features=A,B` (with
/// `all-features` / `no-default-features` when set).
fn build_of(src: &cargo::CargoSource) -> String {
    let mut s = format!(
        "bin={} target={} profile={}",
        src.bin.as_deref().unwrap_or("(default)"),
        src.target,
        src.profile
    );
    if !src.features.is_empty() {
        s.push_str(&format!(" features={}", src.features.join(",")));
    }
    if src.all_features {
        s.push_str(" all-features");
    }
    if src.no_default_features {
        s.push_str(" no-default-features");
    }
    s
}

/// `pkg:cargo/NAME@VERSION`, percent-encoded as the purl spec asks (a version's `+` is `%2B`).
pub fn purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{}@{}", percent(name), percent(version))
}

fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `urn:uuid:` of the sha256 of `cargo-image sbom <digest>`, with the version (5) and variant
/// bits of a name-based UUID set.
fn serial_number(manifest_digest: &str) -> String {
    let hash = Sha256::digest(format!("cargo-image sbom {manifest_digest}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The artifact manifest that attaches a blob (`artifact`, of media type `artifact_type`) to
/// the image `subject`: an OCI 1.1 image manifest with that `artifactType`, the empty config
/// and the blob as its only layer.
pub fn artifact_manifest(
    artifact_type: &str,
    artifact: Descriptor,
    subject: Descriptor,
) -> ImageManifest {
    let empty = oci::descriptor(
        MediaType::Other(EMPTY_MEDIA_TYPE.into()),
        &oci::Digest::of(EMPTY_BLOB),
        EMPTY_BLOB.len() as u64,
    );
    let mut subject = subject;
    subject.set_platform(None);
    subject.set_annotations(None);
    ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(artifact_type.into()))
        .config(empty)
        .layers(vec![artifact])
        .subject(subject)
        .build()
        .expect("every required manifest field is set")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_escape_what_the_spec_reserves() {
        assert_eq!(purl("serde", "1.0.200"), "pkg:cargo/serde@1.0.200");
        assert_eq!(purl("a_b", "1.0.0+x.1"), "pkg:cargo/a_b@1.0.0%2Bx.1");
    }

    #[test]
    fn serial_numbers_are_version_5_uuids_of_the_digest() {
        let s = serial_number("sha256:00");
        assert_eq!(s, serial_number("sha256:00"));
        assert_ne!(s, serial_number("sha256:01"));
        let uuid = s.strip_prefix("urn:uuid:").unwrap();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "5");
        assert!("89ab".contains(&uuid[19..20]));
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let krate = |name: &str, deps: Vec<usize>| cargo::Crate {
            name: name.into(),
            version: "1.0.0".into(),
            source: CrateSource::Registry("https://github.com/rust-lang/crates.io-index".into()),
            license: Some("MIT/Apache-2.0".into()),
            checksum: Some("ab".repeat(32)),
            dependencies: deps,
        };
        let input = Input {
            name: "app".into(),
            manifest_digest: format!("sha256:{}", "cd".repeat(32)),
            platform: "linux/amd64".into(),
            epoch: 0,
            base: None,
            binaries: vec![Binary {
                source: cargo::CargoSource {
                    package: None,
                    bin: None,
                    profile: "release".into(),
                    features: vec![],
                    all_features: false,
                    no_default_features: false,
                    target: "x86_64-unknown-linux-musl".into(),
                    target_pinned: false,
                    linker: None,
                    cc: None,
                    strip: Default::default(),
                    builder: Default::default(),
                },
                crates: cargo::Resolved {
                    crates: vec![krate("app", vec![1]), krate("dep", vec![])],
                    root: 0,
                },
            }],
            files: vec![],
        };
        let a = cyclonedx(&input);
        assert_eq!(a, cyclonedx(&input));
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
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
