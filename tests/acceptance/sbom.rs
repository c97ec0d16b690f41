//! SBOMs: each image's CycloneDX document (and SPDX one, on request), attached as an OCI 1.1
//! referrer in the layout, checked with cyclonedx-python-lib's strict 1.6 validator
//! (`cyclonedx-validate`) and spdx-tools' SPDX 2.3 validator (`pyspdxtools`), both installed
//! by `just deps`, against `cargo tree`, from two checkouts, and with skopeo.

use std::collections::BTreeSet;
use std::path::Path;

use cargo_oci_image_test_support::{
    build_events, build_two_checkouts, build_two_checkouts_with, cargo_image, example_copy,
    manifest_digest, read_json, require, run_command, sbom_referrers, skopeo_inspect,
    spdx_referrers, Project, TempDir, Value,
};

/// Validates `sbom` with cyclonedx-python-lib (a tool nobody here wrote).
pub(crate) fn validate(sbom: &Path) {
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
    // It has no SPDX document, and `--format spdx` says so.
    let r = cargo_image(&dir)
        .args(["sbom", "--format", "spdx"])
        .arg_path(&out)
        .run();
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("no SPDX SBOM refers to the image")
            && r.stderr.contains("it has a CycloneDX one")
            && r.stderr.contains(r#"sbom = "spdx""#),
        "{}",
        r.stderr
    );
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

/// A workspace whose binary (with the feature `extra`) has a path dependency behind that
/// feature, a dev-dependency, a build-dependency and a dependency for another OS, and whose
/// image adds a host file and a host directory; `sbom` is the spec's `sbom` line.
fn crates_project(sbom: &str) -> Project {
    let p = Project::new(&format!(
        r#"name = "app"
from = "scratch"
{sbom}
[config]
entrypoint = ["/app"]
[[layer]]
name = "app"
[[layer.add]]
cargo = {{ bin = "app", features = ["extra"] }}
dest = "/app"
[[layer.add]]
path = "data.txt"
dest = "/data.txt"
[[layer.add]]
path = "static"
dest = "/srv/static"
"#
    ));
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
    .file("data.txt", "data\n")
    .file("static/index.html", "<p>hi</p>\n");
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
    p
}

/// A workspace whose binary has a path dependency behind a feature, a dev-dependency, a
/// build-dependency and a dependency for another OS: only the crates compiled into the
/// binary for its target and features are listed.
#[test]
fn the_sbom_lists_the_crates_cargo_tree_lists_for_the_binary() {
    let p = crates_project("");
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

/// Validates `sbom` with spdx-tools' SPDX 2.3 validator (a tool nobody here wrote).
pub(crate) fn validate_spdx(sbom: &Path) {
    require("pyspdxtools");
    // pyspdxtools tells the format by the file's name; a blob's name is its digest.
    let tmp = TempDir::new().unwrap();
    let named = tmp.path().join("sbom.spdx.json");
    std::fs::copy(sbom, &named).unwrap();
    let r = run_command(
        std::process::Command::new("pyspdxtools")
            .arg("-i")
            .arg(&named),
    );
    assert_eq!(
        r.code,
        Some(0),
        "invalid SPDX 2.3: {}{}",
        r.stdout,
        r.stderr
    );
}

/// The one SPDX SBOM of a single-platform layout, checked to describe its image.
fn the_spdx(layout: &Path) -> (Vec<u8>, Value) {
    let referrers = spdx_referrers(layout);
    assert_eq!(referrers.len(), 1, "one SPDX SBOM per image");
    let (subject, path) = &referrers[0];
    assert_eq!(
        *subject,
        manifest_digest(layout),
        "the SBOM's subject is the image"
    );
    validate_spdx(path);
    let bytes = std::fs::read(path).unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    let image = spdx_package(&doc, "SPDXRef-Image");
    assert_eq!(image["versionInfo"], *subject);
    assert_eq!(image["primaryPackagePurpose"], "CONTAINER");
    assert!(relationships(&doc).contains(&"SPDXRef-DOCUMENT DESCRIBES SPDXRef-Image".into()));
    (bytes, doc)
}

fn spdx_package<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == id)
        .unwrap_or_else(|| panic!("no package {id}: {doc}"))
}

/// `(name, version)` of the SPDX document's crates: the packages with a `pkg:cargo` purl.
fn spdx_crates(doc: &Value) -> BTreeSet<(String, String)> {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let purl = p["externalRefs"].as_array()?.iter().find(|r| {
                r["referenceType"] == "purl"
                    && r["referenceLocator"]
                        .as_str()
                        .is_some_and(|l| l.starts_with("pkg:cargo/"))
            })?;
            let name = p["name"].as_str().unwrap().to_string();
            let version = p["versionInfo"].as_str().unwrap().to_string();
            assert_eq!(
                purl["referenceLocator"],
                format!("pkg:cargo/{name}@{version}")
            );
            Some((name, version))
        })
        .collect()
}

/// Every relationship of the document, as `FROM TYPE TO`.
fn relationships(doc: &Value) -> Vec<String> {
    doc["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["spdxElementId"].as_str().unwrap(),
                r["relationshipType"].as_str().unwrap(),
                r["relatedSpdxElement"].as_str().unwrap()
            )
        })
        .collect()
}

/// The hex digest `coreutils_tool` (`sha1sum`, `sha256sum`) prints for `file`.
fn digest_of(coreutils_tool: &str, file: &Path) -> String {
    let r = run_command(std::process::Command::new(coreutils_tool).arg(file));
    assert_eq!(r.code, Some(0), "{coreutils_tool}: {}", r.stderr);
    r.stdout.split_whitespace().next().unwrap().to_string()
}

/// `sbom = ["cyclonedx", "spdx"]`: both documents, each valid by its own tool, listing the
/// crates `cargo tree` lists; licenses as SPDX expressions where valid, NOASSERTION otherwise;
/// `cargo image sbom` prints either.
#[test]
fn sbom_spdx_and_cyclonedx_together_list_the_same_crates() {
    let p = crates_project(r#"sbom = ["spdx", "cyclonedx"]"#);
    // An old-style `/` alternative, and a license that is no SPDX expression.
    p.file(
        "crates/always/Cargo.toml",
        "[package]\nname = \"always\"\nversion = \"0.2.0\"\nedition = \"2021\"\nlicense = \"MIT/Apache-2.0\"\n",
    )
    .file(
        "crates/with-feature/Cargo.toml",
        "[package]\nname = \"with-feature\"\nversion = \"0.2.0\"\nedition = \"2021\"\nlicense = \"Acme internal use only\"\n",
    );
    p.builds();
    let out = p.out();
    let (cyclonedx_bytes, cyclonedx) = the_sbom(&out);
    let (spdx_bytes, spdx) = the_spdx(&out);
    let tree = cargo_tree(
        &p.dir,
        "x86_64-unknown-linux-musl",
        &["--features", "extra"],
    );
    assert_eq!(spdx_crates(&spdx), tree);
    assert_eq!(sbom_crates(&cyclonedx), tree);

    let app = spdx_package(&spdx, "SPDXRef-Crate-app-1.0.0");
    assert_eq!(app["primaryPackagePurpose"], "APPLICATION");
    assert_eq!(app["licenseDeclared"], "Apache-2.0");
    assert_eq!(app["downloadLocation"], "NONE");
    assert_eq!(app["sourceInfo"], "path+.");
    assert_eq!(
        app["comment"],
        "cargo-image:build: bin=app target=x86_64-unknown-linux-musl profile=release features=extra"
    );
    let always = spdx_package(&spdx, "SPDXRef-Crate-always-0.2.0");
    assert_eq!(always["primaryPackagePurpose"], "LIBRARY");
    assert_eq!(always["licenseDeclared"], "MIT OR Apache-2.0");
    assert_eq!(always["sourceInfo"], "path+crates/always");
    let with_feature = spdx_package(&spdx, "SPDXRef-Crate-with-feature-0.2.0");
    assert_eq!(with_feature["licenseDeclared"], "NOASSERTION");

    // The host file with the digests coreutils computes; the host directory as a package.
    let data = spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"] == "./data.txt")
        .unwrap();
    let file = p.dir.join("data.txt");
    assert_eq!(
        data["checksums"],
        serde_json::json!([
            {"algorithm": "SHA1", "checksumValue": digest_of("sha1sum", &file)},
            {"algorithm": "SHA256", "checksumValue": digest_of("sha256sum", &file)},
        ])
    );
    assert_eq!(
        spdx_package(&spdx, "SPDXRef-Directory-static")["name"],
        "static"
    );
    let rels = relationships(&spdx);
    for expected in [
        "SPDXRef-Image CONTAINS SPDXRef-Crate-app-1.0.0",
        "SPDXRef-Crate-app-1.0.0 DEPENDS_ON SPDXRef-Crate-always-0.2.0",
        "SPDXRef-Crate-app-1.0.0 DEPENDS_ON SPDXRef-Crate-with-feature-0.2.0",
        "SPDXRef-Image GENERATED_FROM SPDXRef-File-data.txt",
        "SPDXRef-Image GENERATED_FROM SPDXRef-Directory-static",
    ] {
        assert!(rels.contains(&expected.to_string()), "{expected}: {rels:?}");
    }
    // Both documents name the image the same way: one UUID of its manifest digest.
    let uuid = cyclonedx["serialNumber"]
        .as_str()
        .unwrap()
        .strip_prefix("urn:uuid:")
        .unwrap();
    assert_eq!(
        spdx["documentNamespace"],
        format!("https://spdx.org/spdxdocs/cargo-image/app-{uuid}")
    );

    // `cargo image sbom` prints the CycloneDX one unless `--format` asks for the other.
    let printed = |args: &[&str]| {
        cargo_image(&p.dir)
            .args(["sbom"])
            .arg_path(&out)
            .args(args)
            .run()
            .ok()
            .stdout
    };
    assert_eq!(printed(&[]).as_bytes(), &cyclonedx_bytes[..]);
    assert_eq!(
        printed(&["--format", "cyclonedx"]).as_bytes(),
        &cyclonedx_bytes[..]
    );
    assert_eq!(printed(&["--format", "spdx"]).as_bytes(), &spdx_bytes[..]);
    // `cargo image inspect` lists the three referrers.
    let inspected = cargo_image(&p.dir)
        .args(["inspect", "--json"])
        .arg_path(&out)
        .run()
        .ok();
    let images: Value = serde_json::from_str(&inspected.stdout).unwrap();
    let types: Vec<&str> = images[0]["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["artifact_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.cyclonedx+json",
            "application/spdx+json",
            "application/vnd.in-toto+json"
        ]
    );
}

/// `sbom = "spdx"` alone: two checkouts (paths, file order, modes, mtimes, umask all
/// different) write the same SPDX bytes, dated by the epoch; no CycloneDX document.
#[test]
fn the_spdx_sbom_has_the_same_bytes_from_two_checkouts() {
    let root = TempDir::new().unwrap();
    let edit = |dir: &Path| {
        let spec = dir.join("image.toml");
        let text = std::fs::read_to_string(&spec).unwrap();
        let text = text.replacen(
            "from = \"scratch\"\n",
            "from = \"scratch\"\nsbom = \"spdx\"\n",
            1,
        );
        assert!(text.contains("sbom = \"spdx\""), "{text}");
        std::fs::write(&spec, text).unwrap();
    };
    let (a, b) = build_two_checkouts_with("hello", root.path(), &edit);
    let (bytes_a, doc) = the_spdx(&a);
    let (bytes_b, _) = the_spdx(&b);
    assert_eq!(bytes_a, bytes_b);
    assert!(sbom_referrers(&a).is_empty(), "no CycloneDX document");
    assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    assert_eq!(
        spdx_crates(&doc),
        cargo_tree(
            &root.path().join("a/hello"),
            "x86_64-unknown-linux-musl",
            &[]
        )
    );
    // Asked for the format it lacks, `cargo image sbom` names the one it has.
    let r = cargo_image(&root.path().join("a/hello"))
        .args(["sbom", "--format", "cyclonedx"])
        .arg_path(&a)
        .run();
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("no CycloneDX SBOM") && r.stderr.contains("it has an SPDX one"),
        "{}",
        r.stderr
    );
}

/// `sbom` in `[workspace.metadata.image]` is a default of every image of the workspace.
#[test]
fn a_workspace_default_asks_for_spdx() {
    let (_tmp, dir) = example_copy("workspace");
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replacen(
        "epoch = 1700000000\n",
        "epoch = 1700000000\nsbom = \"spdx\"\n",
        1,
    );
    assert!(text.contains("sbom = \"spdx\""));
    std::fs::write(&manifest, text).unwrap();
    let events = build_events(&dir, &["-p", "api"]);
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "image-finished")
        .collect();
    assert_eq!(finished.len(), 1);
    let layout = Path::new(finished[0]["path"].as_str().unwrap());
    let (_, doc) = the_spdx(layout);
    assert!(sbom_referrers(layout).is_empty());
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        spdx_crates(&doc),
        cargo_tree(&dir, "x86_64-unknown-linux-musl", &["-p", "api"])
    );
    // The built-in base, by its digest, as the image's base annotations name it.
    let manifest = cargo_oci_image_test_support::blob_json(layout, &manifest_digest(layout));
    let annotations = &manifest["annotations"];
    let base = spdx_package(&doc, "SPDXRef-Base");
    assert_eq!(base["name"], "builtin:static");
    assert_eq!(
        base["versionInfo"],
        annotations["org.opencontainers.image.base.digest"]
    );
    assert!(relationships(&doc).contains(&"SPDXRef-Image DESCENDANT_OF SPDXRef-Base".into()));
}

/// A warm build takes the binary's crates from the store instead of `cargo metadata`: the
/// same SBOM bytes as a cold store gives, and a change to a path crate's manifest is seen.
#[test]
fn the_kept_crate_resolution_gives_the_bytes_of_a_fresh_one() {
    let p = crates_project("");
    let store = |name: &str| p.root().join(name);
    let build = |store_dir: &Path| {
        p.cli().args(["--store"]).arg_path(store_dir).run().ok();
        the_sbom(&p.out()).0
    };
    let cold = build(&store("warm"));
    assert_eq!(build(&store("warm")), cold, "kept crates, same bytes");
    // A license changed in a path crate's manifest (Cargo.lock stays as it is).
    p.file(
        "crates/always/Cargo.toml",
        "[package]\nname = \"always\"\nversion = \"0.2.0\"\nedition = \"2021\"\nlicense = \"MIT OR Apache-2.0\"\n",
    );
    let warm = build(&store("warm"));
    let doc: Value = serde_json::from_slice(&warm).unwrap();
    let always = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "always")
        .unwrap();
    assert_eq!(always["licenses"][0]["expression"], "MIT OR Apache-2.0");
    assert_eq!(warm, build(&store("cold")), "as a fresh store resolves it");
}
