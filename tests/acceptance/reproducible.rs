//! Determinism: the same sources give the same digests whatever the checkout path, file creation
//! order, mtimes or umask; `SOURCE_DATE_EPOCH` is the one clock; golden digests pin the format.

use std::path::Path;
use std::process::Command;

use cargo_oci_image_test_support::*;

/// Golden manifest digests of examples built outside any git work tree with no
/// `SOURCE_DATE_EPOCH`. A change here is a format decision (tar writer, compressor, JSON): record
/// it in the CHANGELOG and bump the format version; never update it to make a test pass.
const GOLDEN_IMPORT_TAR: &str =
    "sha256:d09ee4392b665b8f35f3dab2e1926fa085ca76d464f32f1a807cd480c2d438aa";
const GOLDEN_STATIC_SITE: &str =
    "sha256:3f6f5546737615b467cfe1eeaf1b209ca3eb2661d8ceb257eb345257f15fc249";

#[test]
fn hello_is_identical_from_two_checkouts() {
    let tmp = TempDir::new().unwrap();
    let (out_a, out_b) = build_two_checkouts("hello", tmp.path());
    let (da, db) = (manifest_digest(&out_a), manifest_digest(&out_b));
    assert_eq!(da, db, "same sources, different checkouts: digests differ");

    // The commit is recorded, and it is the same commit in both checkouts.
    let manifest = blob_json(&out_a, &da);
    let rev = manifest["annotations"]["org.opencontainers.image.revision"]
        .as_str()
        .expect("revision annotation from git");
    assert_eq!(rev.len(), 40);
}

#[test]
fn source_date_epoch_sets_created_and_mtimes() {
    let (tmp, dir) = example_copy("import-tar");
    let plain = tmp.path().join("plain");
    let dated = tmp.path().join("dated");
    let d0 = build(&dir, Path::new("image.toml"), &plain);
    cargo_image(&dir)
        .args(["build", "--quiet", "--output"])
        .arg_path(&dated)
        .env("SOURCE_DATE_EPOCH", "1234567890")
        .run()
        .ok();
    let d1 = manifest_digest(&dated);
    assert_ne!(d0, d1, "SOURCE_DATE_EPOCH must change the digest");

    let config = skopeo_inspect(&dated, "latest", Some("--config"));
    assert_eq!(config["created"], "2009-02-13T23:31:30Z");
    for h in config["history"].as_array().unwrap() {
        assert_eq!(h["created"], "2009-02-13T23:31:30Z");
    }
    let manifest = blob_json(&dated, &d1);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.created"],
        "2009-02-13T23:31:30Z"
    );
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let listing = tar_list_verbose(&blob_path(&dated, layer));
    assert!(!listing.is_empty());
    for line in listing.lines() {
        assert!(line.contains("2009-02-13 23:31:30"), "tar mtime: {line}");
    }

    // An invalid value is a usage error, not a silent default.
    let bad = cargo_image(&dir)
        .args(["build", "--quiet", "--output"])
        .arg_path(&tmp.path().join("bad"))
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .run();
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("SOURCE_DATE_EPOCH"), "{}", bad.stderr);
}

#[test]
fn rebuild_gives_byte_identical_layouts() {
    let (tmp, dir) = example_copy("static-site");
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    let d1 = build(&dir, Path::new("image.toml"), &one);
    // Touch every source file: mtimes must not matter.
    for f in walk(&dir) {
        Command::new("touch").arg(&f).status().unwrap();
    }
    let d2 = build(&dir, Path::new("image.toml"), &two);
    assert_eq!(d1, d2);
    assert!(
        tree_bytes(&one) == tree_bytes(&two),
        "layouts differ byte for byte"
    );
}

#[test]
fn golden_digests() {
    for (example, golden) in [
        ("import-tar", GOLDEN_IMPORT_TAR),
        ("static-site", GOLDEN_STATIC_SITE),
    ] {
        let (tmp, dir) = example_copy(example);
        let out = tmp.path().join("out");
        let digest = build(&dir, Path::new("image.toml"), &out);
        assert_eq!(
            digest, golden,
            "the manifest digest of examples/{example} drifted: a change to the tar writer, the \
             compressor (library version or backend) or the JSON encoding changed the image bytes. \
             If that is intended, bump the format version, note it in CHANGELOG.md and pin the new \
             digest here."
        );
    }
}
