//! SLSA v1 provenance: an in-toto Statement v1 per image saying how it was built, attached to
//! the image as an OCI 1.1 referrer (`artifactType` [`MEDIA_TYPE`]) the way the [`crate::sbom`]
//! is.
//!
//! # The statement
//! - `subject`: the image (its name) and its manifest digest.
//! - `predicateType`: `https://slsa.dev/provenance/v1`.
//! - `buildDefinition.buildType`: [`BUILD_TYPE`]. Its `externalParameters` are what the user
//!   chose: the spec (`spec.path`, relative to the build context, `/`-separated, and its
//!   sha256), the target stage (`null` for the spec's image stage), this image's platform and
//!   every platform of the build, the tags, and the cargo arguments (`cargo.args`: flags passed
//!   through, such as `--locked`, but not those that only change what cargo prints;
//!   `cargo.profile`, `cargo.features`, `cargo.allFeatures`,
//!   `cargo.noDefaultFeatures`: the command-line overrides). `internalParameters` holds the
//!   build's `sourceDateEpoch`.
//! - `resolvedDependencies`: the git commit of the context's checkout (`uri`
//!   `git+<repository>@<commit>` when the `org.opencontainers.image.source` annotation names
//!   the repository, `digest.gitCommit`), the `Cargo.lock` (path relative to the context,
//!   sha256), every outside base image the image was built from, its own and those of the
//!   stages it copies out of (its name and manifest digest, annotated
//!   `cargo-image:role: base`) and, for an image with
//!   cargo binaries, the toolchain: `rustc -vV` as a resource named `rustc` whose sha256 is
//!   that output's and whose `annotations` are its `key: value` lines.
//! - `runDetails.builder.id`: [`BUILDER_ID`], with `version.cargo-image` the builder's version;
//!   `metadata.startedOn`/`finishedOn` are the build's epoch, never the wall clock.
//!
//! # Deterministic
//! Canonical JSON (sorted keys, no whitespace), no clock, no randomness and no absolute path:
//! two checkouts of the same commit write the same bytes.

use std::collections::BTreeMap;

use serde_json::{json, Map};
use sha2::{Digest as _, Sha256};

use crate::oci;

/// The media type (and `artifactType`) of an in-toto statement.
pub const MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// The `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The `predicateType` of SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The `buildType` of a cargo-image build: what `externalParameters` and
/// `internalParameters` mean is documented in this module.
pub const BUILD_TYPE: &str = "https://github.com/cargo-image/cargo-image/build/v1";
/// The `runDetails.builder.id` of cargo-image.
pub const BUILDER_ID: &str = "https://github.com/cargo-image/cargo-image/builder/v1";

/// The cargo arguments of the build (from the command line).
#[derive(Debug, Clone, Default)]
pub struct CargoArgs {
    pub args: Vec<String>,
    pub profile: Option<String>,
    pub features: Vec<String>,
    pub all_features: bool,
    pub no_default_features: bool,
}

/// What an image's provenance is made of.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The image's name (`hello`), the subject's name.
    pub name: String,
    /// The digest of the image's manifest (`sha256:...`).
    pub manifest_digest: String,
    /// The spec file, relative to the build context, `/`-separated.
    pub spec_path: String,
    /// The spec file's sha256 (hex).
    pub spec_sha256: String,
    /// `--target`: the stage built (`None`: the spec's image stage).
    pub target: Option<String>,
    /// This image's platform, `os/arch[/variant]`.
    pub platform: String,
    /// Every platform of the build.
    pub platforms: Vec<String>,
    pub tags: Vec<String>,
    pub cargo: CargoArgs,
    pub epoch: u64,
    /// The repository (`org.opencontainers.image.source`), when known.
    pub repository: Option<String>,
    /// The commit of the context's git checkout, when it is in one.
    pub commit: Option<String>,
    /// `Cargo.lock`: its path relative to the context and its sha256 (hex).
    pub cargo_lock: Option<(String, String)>,
    /// Every outside base the image was built from (its own and those of the stages it
    /// copies out of): its name (reference or path relative to the spec, when it has one) and
    /// manifest digest.
    pub bases: Vec<(Option<String>, String)>,
    /// `rustc -vV`, for an image with cargo binaries.
    pub rustc: Option<String>,
}

/// The in-toto Statement v1 of `input`, as canonical JSON.
pub fn statement(input: &Input) -> Vec<u8> {
    let mut deps = Vec::new();
    if let Some(commit) = &input.commit {
        let mut d = json!({"digest": {"gitCommit": commit}});
        if let Some(repo) = &input.repository {
            d["uri"] = json!(format!("git+{repo}@{commit}"));
        } else {
            d["name"] = json!("source");
        }
        deps.push(d);
    }
    if let Some((path, sha256)) = &input.cargo_lock {
        deps.push(json!({"name": path, "digest": {"sha256": sha256}}));
    }
    let mut bases = input.bases.clone();
    bases.sort();
    bases.dedup();
    for (name, digest) in &bases {
        let mut d = json!({
            "digest": digest_map(digest),
            "annotations": {"cargo-image:role": "base"},
        });
        if let Some(name) = name {
            d["name"] = json!(name);
        }
        deps.push(d);
    }
    if let Some(out) = &input.rustc {
        let mut annotations = Map::new();
        for (i, line) in out.lines().enumerate() {
            match line.split_once(": ") {
                Some((k, v)) => annotations.insert(k.trim().into(), json!(v.trim())),
                None if i == 0 => annotations.insert("version".into(), json!(line.trim())),
                None => None,
            };
        }
        deps.push(json!({
            "name": "rustc",
            "digest": {"sha256": hex::encode(Sha256::digest(out.as_bytes()))},
            "annotations": annotations,
        }));
    }
    let c = &input.cargo;
    let time = oci::rfc3339(input.epoch);
    let doc = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{
            "name": input.name,
            "digest": digest_map(&input.manifest_digest),
        }],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "spec": {"path": input.spec_path, "digest": {"sha256": input.spec_sha256}},
                    "target": input.target,
                    "platform": input.platform,
                    "platforms": input.platforms,
                    "tags": input.tags,
                    "cargo": {
                        "args": c.args,
                        "profile": c.profile,
                        "features": c.features,
                        "allFeatures": c.all_features,
                        "noDefaultFeatures": c.no_default_features,
                    },
                },
                "internalParameters": {"sourceDateEpoch": input.epoch},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {"cargo-image": env!("CARGO_PKG_VERSION")},
                },
                "metadata": {"startedOn": time, "finishedOn": time},
            },
        },
    });
    let mut bytes = oci::to_canonical_json(&doc).expect("a JSON value always serializes");
    bytes.push(b'\n');
    bytes
}

/// `{"sha256": hex}` of an `algorithm:hex` digest.
fn digest_map(digest: &str) -> BTreeMap<String, String> {
    let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    BTreeMap::from([(alg.to_string(), hex.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn input() -> Input {
        Input {
            name: "hello".into(),
            manifest_digest: format!("sha256:{}", "ab".repeat(32)),
            spec_path: "image.toml".into(),
            spec_sha256: "cd".repeat(32),
            platform: "linux/amd64".into(),
            platforms: vec!["linux/amd64".into()],
            tags: vec!["latest".into()],
            epoch: 1_700_000_000,
            repository: Some("https://example.com/acme/hello".into()),
            commit: Some("ef".repeat(20)),
            cargo_lock: Some(("Cargo.lock".into(), "12".repeat(32))),
            bases: vec![(
                Some("builtin:static".into()),
                format!("sha256:{}", "34".repeat(32)),
            )],
            rustc: Some("rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n".into()),
            ..Input::default()
        }
    }

    fn parse(input: &Input) -> Value {
        serde_json::from_slice(&statement(input)).unwrap()
    }

    #[test]
    fn is_an_in_toto_statement_of_slsa_provenance() {
        let doc = parse(&input());
        assert_eq!(doc["_type"], STATEMENT_TYPE);
        assert_eq!(doc["predicateType"], PREDICATE_TYPE);
        assert_eq!(doc["subject"][0]["name"], "hello");
        assert_eq!(doc["subject"][0]["digest"]["sha256"], "ab".repeat(32));
        let def = &doc["predicate"]["buildDefinition"];
        assert_eq!(def["buildType"], BUILD_TYPE);
        assert_eq!(def["externalParameters"]["spec"]["path"], "image.toml");
        assert_eq!(def["externalParameters"]["target"], Value::Null);
        let deps = def["resolvedDependencies"].as_array().unwrap();
        assert_eq!(deps.len(), 4);
        assert_eq!(
            deps[0]["uri"],
            format!("git+https://example.com/acme/hello@{}", "ef".repeat(20))
        );
        assert_eq!(deps[0]["digest"]["gitCommit"], "ef".repeat(20));
        assert_eq!(deps[1]["name"], "Cargo.lock");
        assert_eq!(deps[2]["digest"]["sha256"], "34".repeat(32));
        assert_eq!(deps[3]["annotations"]["release"], "1.95.0");
        assert_eq!(
            deps[3]["annotations"]["version"],
            "rustc 1.95.0 (59807616e 2026-04-14)"
        );
        let run = &doc["predicate"]["runDetails"];
        assert_eq!(run["builder"]["id"], BUILDER_ID);
        assert_eq!(run["metadata"]["startedOn"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn without_git_lock_base_or_rustc_lists_no_dependency() {
        let doc = parse(&Input {
            commit: None,
            cargo_lock: None,
            bases: vec![],
            rustc: None,
            ..input()
        });
        let deps = &doc["predicate"]["buildDefinition"]["resolvedDependencies"];
        assert_eq!(deps, &json!([]));
    }

    #[test]
    fn a_commit_without_a_repository_is_named_source() {
        let doc = parse(&Input {
            repository: None,
            ..input()
        });
        let dep = &doc["predicate"]["buildDefinition"]["resolvedDependencies"][0];
        assert_eq!(dep["name"], "source");
        assert!(dep.get("uri").is_none());
    }

    #[test]
    fn is_canonical_json_and_the_same_bytes_every_time() {
        let a = statement(&input());
        assert_eq!(a, statement(&input()));
        let text = std::str::from_utf8(&a).unwrap();
        assert!(
            !text.trim_end().contains('\n'),
            "one line of canonical JSON"
        );
        assert!(text.find("\"_type\"").unwrap() < text.find("\"predicate\"").unwrap());
    }
}
