//! SBOMs: each image's CycloneDX document, attached as an OCI 1.1 referrer in the layout,
//! checked with cyclonedx-python-lib's strict 1.6 validator (`cyclonedx-validate`, installed by
//! `just deps`), against `cargo tree`, from two checkouts, and with skopeo.

use std::collections::BTreeSet;
use std::path::Path;

use cargo_oci_image_test_support::{
    build_two_checkouts, cargo_image, example_copy, manifest_digest, read_json, require,
    run_command, sbom_referrers, skopeo_inspect, Project, TempDir, Value,
};

/// Validates `sbom` with cyclonedx-python-lib (a tool nobody here wrote).
fn validate(sbom: &Path) {
    require("cyclonedx-validate");
    let r = run_command(std::process::Command::new("cyclonedx-validate").arg(sbom));
    assert_eq!(
        r.code,
        Some(0),
        "invalid CycloneDX 1.6: {}{}",
        r.stdout,
        r.stderr
    );
}

/// The one SBOM of a single-platform layout, checked to describe its image.
fn the_sbom(layout: &Path) -> (Vec<u8>, Value) {
    let referrers = sbom_referrers(layout);
    assert_eq!(referrers.len(), 1, "one SBOM per image");
    let (subject, path) = &referrers[0];
    assert_eq!(
        *subject,
        manifest_digest(layout),
        "the SBOM's subject is the image"
    );
    validate(path);
    let bytes = std::fs::read(path).unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["metadata"]["component"]["version"], *subject);
    (bytes, doc)
}

/// `(name, version)` of the SBOM's crates.
fn sbom_crates(doc: &Value) -> BTreeSet<(String, String)> {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["purl"]
                .as_str()
                .is_some_and(|p| p.starts_with("pkg:cargo/"))
        })
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let version = c["version"].as_str().unwrap().to_string();
            assert_eq!(c["purl"], format!("pkg:cargo/{name}@{version}"));
            (name, version)
        })
        .collect()
}

/// `(name, version)` of what `cargo tree -e normal --target TRIPLE --prefix none ARGS` lists
/// in `dir`, `(*)` repeats merged.
fn cargo_tree(dir: &Path, target: &str, args: &[&str]) -> BTreeSet<(String, String)> {
    let r = run_command(
        std::process::Command::new("cargo")
            .args([
                "tree", "-e", "normal", "--target", target, "--prefix", "none",
            ])
            .args(args)
            .current_dir(dir),
    );
    assert_eq!(r.code, Some(0), "cargo tree: {}", r.stderr);
    r.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap().to_string();
            let version = words.next().unwrap().trim_start_matches('v').to_string();
            (name, version)
        })
        .collect()
}

#[test]
fn hello_has_a_valid_sbom_of_its_crates_and_skopeo_still_reads_the_tag() {
    let (_tmp, dir) = example_copy("hello");
    let out = dir.join("out");
    cargo_oci_image_test_support::build(&dir, &dir.join("image.toml"), &out);
    let (bytes, doc) = the_sbom(&out);
    // `cargo image sbom` prints it, found through the referrer of the tagged image.
    for tag in [&[][..], &["--tag", "0.1.0"][..]] {
        let printed = cargo_image(&dir)
            .args(["sbom"])
            .arg_path(&out)
            .args(tag)
            .run()
            .ok();
        assert_eq!(printed.stdout.as_bytes(), &bytes[..]);
    }
    // `cargo image inspect` lists it under the image.
    let inspected = cargo_image(&dir)
        .args(["inspect", "--json"])
        .arg_path(&out)
        .run()
        .ok();
    let images: Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(
        images.as_array().unwrap().len(),
        1,
        "the SBOM is not an image"
    );
    // The SBOM, then the provenance statement (`provenance.rs`).
    let referrers = images[0]["referrers"].as_array().unwrap();
    let types: Vec<&str> = referrers
        .iter()
        .map(|r| r["artifact_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.cyclonedx+json",
            "application/vnd.in-toto+json"
        ]
    );
    let table = cargo_image(&dir)
        .args(["inspect"])
        .arg_path(&out)
        .run()
        .ok();
    assert!(
        table.stdout.contains("Referrers    2\n"),
        "{}",
        table.stdout
    );
    assert_eq!(
        sbom_crates(&doc),
        cargo_tree(&dir, "x86_64-unknown-linux-musl", &[])
    );
    assert_eq!(doc["specVersion"], "1.6");
    // The tag names the image, not the SBOM.
    let inspected = skopeo_inspect(&out, "latest", None);
    assert_eq!(inspected["Digest"], manifest_digest(&out));
}

/// A workspace whose binary has a path dependency behind a feature, a dev-dependency, a
/// build-dependency and a dependency for another OS: only the crates compiled into the
/// binary for its target and features are listed.
#[test]
fn the_sbom_lists_the_crates_cargo_tree_lists_for_the_binary() {
    let p = Project::new(
        r#"name = "app"
from = "scratch"
[config]
entrypoint = ["/app"]
[[layer]]
name = "app"
[[layer.add]]
cargo = { bin = "app", features = ["extra"] }
dest = "/app"
[[layer.add]]
path = "data.txt"
dest = "/data.txt"
"#,
    );
    let lib = |name: &str| {
        format!("[package]\nname = \"{name}\"\nversion = \"0.2.0\"\nedition = \"2021\"\nlicense = \"MIT\"\n")
    };
    p.file(
        "Cargo.toml",
        r#"[package]
name = "app"
version = "1.0.0"
edition = "2021"
license = "Apache-2.0"

[workspace]
members = ["crates/*"]

[features]
extra = ["dep:with-feature"]

[dependencies]
always = { path = "crates/always" }
with-feature = { path = "crates/with-feature", optional = true }
unused-optional = { path = "crates/unused-optional", optional = true }

[target.'cfg(windows)'.dependencies]
windows-only = { path = "crates/windows-only" }

[build-dependencies]
build-only = { path = "crates/build-only" }

[dev-dependencies]
dev-only = { path = "crates/dev-only" }
"#,
    )
    .file("build.rs", "fn main() { build_only::f(); }\n")
    .file(
        "src/main.rs",
        "fn main() { always::f(); with_feature::f(); }\n",
    )
    .file("data.txt", "data\n");
    for name in [
        "always",
        "with-feature",
        "unused-optional",
        "windows-only",
        "build-only",
        "dev-only",
    ] {
        p.file(&format!("crates/{name}/Cargo.toml"), lib(name))
            .file(&format!("crates/{name}/src/lib.rs"), "pub fn f() {}\n");
    }
    p.builds();
    let (_, doc) = the_sbom(&p.out());
    let crates = sbom_crates(&doc);
    assert_eq!(
        crates,
        cargo_tree(
            &p.dir,
            "x86_64-unknown-linux-musl",
            &["--features", "extra"]
        )
    );
    let names: Vec<&str> = crates.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["always", "app", "with-feature"]);
    let components = doc["components"].as_array().unwrap();
    let app = components.iter().find(|c| c["name"] == "app").unwrap();
    assert_eq!(app["type"], "application");
    assert_eq!(app["licenses"][0]["expression"], "Apache-2.0");
    assert_eq!(
        app["properties"][1]["value"],
        "bin=app target=x86_64-unknown-linux-musl profile=release features=extra"
    );
    let always = components.iter().find(|c| c["name"] == "always").unwrap();
    assert_eq!(always["type"], "library");
    assert_eq!(always["properties"][0]["value"], "path+crates/always");
    let data = components.iter().find(|c| c["name"] == "data.txt").unwrap();
    assert_eq!(data["type"], "file");
    assert_eq!(
        data["hashes"][0]["content"],
        cargo_oci_image_test_support::sha256(b"data\n")
            .strip_prefix("sha256:")
            .unwrap()
    );
}

#[test]
fn the_sbom_has_the_same_bytes_from_two_checkouts() {
    let root = TempDir::new().unwrap();
    let (a, b) = build_two_checkouts("hello", root.path());
    let (bytes_a, doc) = the_sbom(&a);
    let (bytes_b, _) = the_sbom(&b);
    assert_eq!(bytes_a, bytes_b);
    assert_eq!(
        std::fs::read(a.join("index.json")).unwrap(),
        std::fs::read(b.join("index.json")).unwrap()
    );
    // The epoch, not the clock; a serial number of the image, not a random one.
    assert_eq!(doc["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
    assert!(doc["serialNumber"]
        .as_str()
        .unwrap()
        .starts_with("urn:uuid:"));
}

#[test]
fn sbom_false_attaches_none() {
    let p = Project::new("name = \"plain\"\nfrom = \"scratch\"\nsbom = false\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"x\"\ndest = \"/x\"\n");
    p.builds();
    assert!(sbom_referrers(&p.out()).is_empty());
    // The tagged image and its provenance statement, no SBOM.
    let index = read_json(&p.out().join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["artifactType"], "application/vnd.in-toto+json");
    let r = cargo_image(&p.dir).args(["sbom"]).arg_path(&p.out()).run();
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("no SBOM refers to the image"),
        "{}",
        r.stderr
    );
}
