//! Provenance: each image's SLSA v1 statement (an in-toto Statement v1), attached as an OCI 1.1
//! referrer in the layout: its shape, its subject against skopeo's digest, its dependencies
//! against git, sha256sum and rustc, from two checkouts, and with oci-image-tool.

use std::path::Path;

use cargo_oci_image_test_support::{
    build_two_checkouts, cargo_image, checkout, oci_image_tool_validate, read_json, referrers, run,
    sbom_referrers, sha256, sha256_file, skopeo_inspect, Project, TempDir, Value,
};

const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The one provenance statement of a single-platform layout: its bytes and JSON, checked to be
/// about the image the layout's first entry names and to have the in-toto Statement v1 shape.
fn the_statement(layout: &Path) -> (Vec<u8>, Value) {
    let found = referrers(layout, IN_TOTO);
    assert_eq!(found.len(), 1, "one provenance statement per image");
    let (subject, path) = &found[0];
    let bytes = std::fs::read(path).unwrap();
    let doc: Value = serde_json::from_slice(&bytes).expect("the statement is JSON");
    check_shape(&doc);
    let digest = &doc["subject"][0]["digest"]["sha256"];
    assert_eq!(
        format!("sha256:{}", digest.as_str().unwrap()),
        *subject,
        "the statement's subject is the artifact manifest's subject"
    );
    (bytes, doc)
}

/// The required fields of an in-toto Statement v1 with a SLSA provenance v1 predicate, and
/// their types.
fn check_shape(doc: &Value) {
    let string = |v: &Value, what: &str| {
        assert!(v.is_string(), "{what} is a string: {v}");
    };
    assert_eq!(doc["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(doc["predicateType"], "https://slsa.dev/provenance/v1");
    let subjects = doc["subject"].as_array().expect("subject is an array");
    assert!(!subjects.is_empty());
    for s in subjects {
        string(&s["name"], "subject.name");
        let digest = s["digest"].as_object().expect("subject.digest is a map");
        assert!(!digest.is_empty());
        digest.values().for_each(|v| string(v, "a digest value"));
    }
    let def = &doc["predicate"]["buildDefinition"];
    string(&def["buildType"], "buildType");
    assert!(def["externalParameters"].is_object());
    assert!(def["internalParameters"].is_object());
    for dep in def["resolvedDependencies"]
        .as_array()
        .expect("resolvedDependencies is an array")
    {
        assert!(
            dep.get("uri").is_some() || dep.get("digest").is_some(),
            "a resource descriptor has a uri or a digest: {dep}"
        );
        if let Some(d) = dep.get("digest") {
            d.as_object()
                .expect("a digest is a map")
                .values()
                .for_each(|v| string(v, "a digest value"));
        }
    }
    let run = &doc["predicate"]["runDetails"];
    string(&run["builder"]["id"], "builder.id");
    assert!(run["metadata"].is_object());
}

/// The resolved dependency whose `field` is `value`.
fn dependency<'d>(doc: &'d Value, field: &str, value: &str) -> Option<&'d Value> {
    doc["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d[field] == value)
}

#[test]
fn hello_in_a_git_checkout_has_provenance_of_its_commit_lock_and_toolchain() {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("hello");
    checkout("hello", &dir, false, 0o644, "2001-02-03 04:05:06");
    let out = root.path().join("out");
    cargo_image(&dir)
        .args(["build", "--quiet", "--output"])
        .arg_path(&out)
        .run()
        .ok();
    let (_, doc) = the_statement(&out);
    // The subject is the manifest skopeo reads for the tag.
    let skopeo = skopeo_inspect(&out, "latest", None);
    assert_eq!(
        format!(
            "sha256:{}",
            doc["subject"][0]["digest"]["sha256"].as_str().unwrap()
        ),
        skopeo["Digest"].as_str().unwrap()
    );
    assert_eq!(doc["subject"][0]["name"], "hello");
    let params = &doc["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(params["spec"]["path"], "image.toml");
    assert_eq!(
        format!(
            "sha256:{}",
            params["spec"]["digest"]["sha256"].as_str().unwrap()
        ),
        sha256_file(&dir.join("image.toml"))
    );
    assert_eq!(params["tags"], serde_json::json!(["latest", "0.1.0"]));
    assert_eq!(params["platforms"], serde_json::json!(["linux/amd64"]));
    // `--quiet` changes what cargo prints, not what it builds.
    assert_eq!(params["cargo"]["args"], serde_json::json!([]));
    // The commit git reports for the checkout.
    let head = run("git", ["rev-parse", "HEAD"], &dir).ok().stdout;
    let source = dependency(&doc, "name", "source").expect("the git commit is a dependency");
    assert_eq!(source["digest"]["gitCommit"], head.trim());
    // Cargo.lock, by sha256sum.
    let lock = dependency(&doc, "name", "Cargo.lock").expect("Cargo.lock is a dependency");
    assert_eq!(
        format!("sha256:{}", lock["digest"]["sha256"].as_str().unwrap()),
        sha256_file(&dir.join("Cargo.lock"))
    );
    // The toolchain cargo built with, as rustc itself reports it.
    let rustc = run("rustc", ["-vV"], &dir).ok().stdout;
    let dep = dependency(&doc, "name", "rustc").expect("the toolchain is a dependency");
    let release = rustc
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .unwrap();
    assert_eq!(dep["annotations"]["release"], release);
    assert_eq!(
        format!("sha256:{}", dep["digest"]["sha256"].as_str().unwrap()),
        sha256(rustc.as_bytes())
    );
    // The build's epoch, never the clock; the builder's version.
    let run_details = &doc["predicate"]["runDetails"];
    assert_eq!(run_details["metadata"]["startedOn"], "1970-01-01T00:00:00Z");
    assert_eq!(
        run_details["builder"]["version"]["cargo-image"],
        env!("CARGO_PKG_VERSION")
    );
    // The SBOM is still there, the tag still names the image, the image is still valid.
    assert_eq!(sbom_referrers(&out).len(), 1);
    oci_image_tool_validate(&out, "latest");
    // `cargo image inspect` lists it.
    let r = cargo_image(&dir)
        .args(["inspect"])
        .arg_path(&out)
        .run()
        .ok();
    assert!(r.stdout.contains(IN_TOTO), "{}", r.stdout);
}

#[test]
fn an_image_on_a_base_names_the_base_digest_and_no_toolchain() {
    let p = Project::new(
        "name = \"onbase\"\nfrom = \"builtin:static\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"x\"\ndest = \"/x\"\n",
    );
    p.builds();
    let (_, doc) = the_statement(&p.out());
    let manifest = skopeo_inspect(&p.out(), "latest", Some("--raw"));
    let base = manifest["annotations"]["org.opencontainers.image.base.digest"]
        .as_str()
        .expect("the image names its base");
    let dep = dependency(&doc, "name", "builtin:static").expect("the base is a dependency");
    assert_eq!(
        format!("sha256:{}", dep["digest"]["sha256"].as_str().unwrap()),
        base
    );
    assert!(
        dependency(&doc, "name", "rustc").is_none(),
        "no cargo, no rustc"
    );

    // An image on scratch that copies out of a stage on the base still names the base.
    let p = Project::new(
        "name = \"copies\"\nfrom = \"scratch\"\n[[stage]]\nname = \"sys\"\nfrom = \"builtin:static\"\n\
         [[stage.layer]]\nname = \"s\"\n[[stage.layer.add]]\ncontent = \"y\"\ndest = \"/y\"\n\
         [[layer]]\nname = \"a\"\n[[layer.add]]\nfrom-stage = \"sys\"\npath = \"/y\"\ndest = \"/y\"\n",
    );
    p.builds();
    let (_, doc) = the_statement(&p.out());
    let dep = dependency(&doc, "name", "builtin:static").expect("the stage's base is a dependency");
    assert_eq!(
        format!("sha256:{}", dep["digest"]["sha256"].as_str().unwrap()),
        base
    );
}

#[test]
fn the_statement_has_the_same_bytes_from_two_checkouts() {
    let root = TempDir::new().unwrap();
    let (a, b) = build_two_checkouts("hello", root.path());
    let (bytes_a, doc) = the_statement(&a);
    let (bytes_b, _) = the_statement(&b);
    assert_eq!(bytes_a, bytes_b);
    assert_eq!(
        std::fs::read(a.join("index.json")).unwrap(),
        std::fs::read(b.join("index.json")).unwrap()
    );
    let text = String::from_utf8(bytes_a).unwrap();
    assert!(
        !text.contains(root.path().to_str().unwrap()),
        "no absolute path"
    );
    assert!(dependency(&doc, "name", "source").is_some());
}

#[test]
fn provenance_false_attaches_none() {
    let p = Project::new("name = \"plain\"\nfrom = \"scratch\"\nprovenance = false\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"x\"\ndest = \"/x\"\n");
    p.builds();
    assert!(referrers(&p.out(), IN_TOTO).is_empty());
    assert_eq!(
        sbom_referrers(&p.out()).len(),
        1,
        "the SBOM is still attached"
    );
    // The tagged image and its SBOM, nothing else.
    let index = read_json(&p.out().join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
}
