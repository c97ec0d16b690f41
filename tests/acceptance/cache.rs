//! The layer cache: keys change exactly when the bytes may change, cached and clean builds are
//! byte-identical, a damaged store is detected and repaired, concurrent builds share a store,
//! and a build killed mid-layer leaves nothing corrupt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cargo_oci_image_test_support::*;

const SPEC: &str = r#"name = "cachetest"
epoch = 1000

[config]
env = { MODE = "one" }

[[layer]]
name = "assets"
[[layer.add]]
path = "assets"
dest = "/srv/assets/"
exclude = ["*.tmp"]

[[layer]]
name = "config"
[[layer.add]]
content = "port = 8080\n"
dest = "/etc/app.toml"
"#;

/// A project with two layers over a few asset files.
fn project() -> Project {
    let p = Project::new(SPEC);
    p.file("assets/a.txt", "alpha\n")
        .file("assets/b.txt", "beta\n")
        .file("assets/css/site.css", "body{}\n")
        .file("assets/scratch.tmp", "ignored\n");
    p
}

/// The node keys of the project's plan, by node label (`layer assets`, `image cachetest`...).
fn keys(dir: &Path, env: &[(&str, &str)]) -> BTreeMap<String, (String, Option<bool>)> {
    let mut cmd = cargo_image(dir).args(["plan", "--format", "json"]);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let r = cmd.run().ok();
    let graph: Value = serde_json::from_str(&r.stdout).expect("plan --format json prints JSON");
    graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let label = match n["kind"].as_str().unwrap() {
                "build-layer" => format!("layer {}", n["layer"].as_str().unwrap()),
                "assemble-image" => "image".to_string(),
                "assemble-index" => "index".to_string(),
                other => other.to_string(),
            };
            (
                label,
                (
                    n["key"].as_str().unwrap().to_string(),
                    n["cached"].as_bool(),
                ),
            )
        })
        .collect()
}

fn key(keys: &BTreeMap<String, (String, Option<bool>)>, label: &str) -> String {
    keys[label].0.clone()
}

/// Asserts which of the layer keys changed between two plans.
fn assert_changed(
    what: &str,
    before: &BTreeMap<String, (String, Option<bool>)>,
    after: &BTreeMap<String, (String, Option<bool>)>,
    assets: bool,
    config: bool,
    image: bool,
) {
    for (label, expect) in [
        ("layer assets", assets),
        ("layer config", config),
        ("image", image),
    ] {
        let changed = key(before, label) != key(after, label);
        assert_eq!(
            changed,
            expect,
            "{what}: `{label}` key {} but should {}",
            if changed { "changed" } else { "stayed" },
            if expect { "change" } else { "stay" }
        );
    }
}

fn build_quiet(dir: &Path) -> Run {
    cargo_image(dir)
        .args(["build", "--output", "out"])
        .run()
        .ok()
}

fn set_spec(dir: &Path, from: &str, to: &str) {
    edit_spec(dir, |spec| {
        assert!(spec.contains(from), "spec has {from:?}");
        spec.replacen(from, to, 1)
    });
}

#[test]
fn keys_change_exactly_as_they_must() {
    let p = project();
    let dir = p.dir.clone();
    let base = keys(&dir, &[]);
    assert_eq!(
        base["layer assets"].1,
        Some(false),
        "empty store: nothing cached"
    );

    // Build it: now everything is cached and a rebuild is all Fresh.
    build_quiet(&dir);
    let built = keys(&dir, &[]);
    assert_eq!(built["layer assets"].1, Some(true));
    assert_eq!(built["image"].1, Some(true));
    assert_changed("a build", &base, &built, false, false, false);

    // touch: no content change, same keys, a Fresh rebuild with the same digest.
    let d0 = manifest_digest(&dir.join("out"));
    std::thread::sleep(Duration::from_millis(20));
    for f in ["assets/a.txt", "assets/b.txt", "image.toml"] {
        Command::new("touch").arg(dir.join(f)).status().unwrap();
    }
    assert_changed("touch", &base, &keys(&dir, &[]), false, false, false);
    let r = build_quiet(&dir);
    assert!(r.stderr.contains("Fresh layer assets"), "{}", r.stderr);
    assert!(r.stderr.contains("Fresh layer config"), "{}", r.stderr);
    assert_eq!(manifest_digest(&dir.join("out")), d0);

    // Permission bits that normalisation drops (group write) change nothing.
    Command::new("chmod")
        .args(["g+w"])
        .arg(dir.join("assets/a.txt"))
        .status()
        .unwrap();
    assert_changed("chmod g+w", &base, &keys(&dir, &[]), false, false, false);

    // A file excluded by a glob changes nothing.
    std::fs::write(dir.join("assets/scratch.tmp"), "still ignored, new bytes\n").unwrap();
    assert_changed(
        "excluded file edit",
        &base,
        &keys(&dir, &[]),
        false,
        false,
        false,
    );

    // Content.
    std::fs::write(dir.join("assets/a.txt"), "ALPHA\n").unwrap();
    let k = keys(&dir, &[]);
    assert_changed("content", &base, &k, true, false, true);
    std::fs::write(dir.join("assets/a.txt"), "alpha\n").unwrap();
    assert_changed(
        "content restored",
        &base,
        &keys(&dir, &[]),
        false,
        false,
        false,
    );

    // Exec bit (a mode the image keeps).
    Command::new("chmod")
        .args(["+x"])
        .arg(dir.join("assets/a.txt"))
        .status()
        .unwrap();
    assert_changed("chmod +x", &base, &keys(&dir, &[]), true, false, true);
    Command::new("chmod")
        .args(["-x"])
        .arg(dir.join("assets/a.txt"))
        .status()
        .unwrap();

    // Name.
    std::fs::rename(dir.join("assets/b.txt"), dir.join("assets/c.txt")).unwrap();
    assert_changed("rename", &base, &keys(&dir, &[]), true, false, true);
    std::fs::rename(dir.join("assets/c.txt"), dir.join("assets/b.txt")).unwrap();
    assert_changed("rename back", &base, &keys(&dir, &[]), false, false, false);

    // Owner, in the spec.
    set_spec(
        &dir,
        "exclude = [\"*.tmp\"]",
        "exclude = [\"*.tmp\"]\nowner = \"1000:1000\"",
    );
    assert_changed("owner", &base, &keys(&dir, &[]), true, false, true);
    set_spec(
        &dir,
        "exclude = [\"*.tmp\"]\nowner = \"1000:1000\"",
        "exclude = [\"*.tmp\"]",
    );

    // An exclude glob that now leaves out a file that is there.
    set_spec(
        &dir,
        "exclude = [\"*.tmp\"]",
        "exclude = [\"*.tmp\", \"css/\"]",
    );
    assert_changed("exclude glob", &base, &keys(&dir, &[]), true, false, true);
    set_spec(
        &dir,
        "exclude = [\"*.tmp\", \"css/\"]",
        "exclude = [\"*.tmp\"]",
    );

    // A config field: no layer changes, the image does.
    set_spec(&dir, "MODE = \"one\"", "MODE = \"two\"");
    assert_changed("config env", &base, &keys(&dir, &[]), false, false, true);
    set_spec(&dir, "MODE = \"two\"", "MODE = \"one\"");

    // Inline content of the other layer.
    set_spec(&dir, "port = 8080", "port = 9090");
    assert_changed("inline content", &base, &keys(&dir, &[]), false, true, true);
    set_spec(&dir, "port = 9090", "port = 8080");

    // SOURCE_DATE_EPOCH: every mtime in every layer.
    let k = keys(&dir, &[("SOURCE_DATE_EPOCH", "1234567890")]);
    assert_changed("SOURCE_DATE_EPOCH", &base, &k, true, true, true);

    // And everything restored is all cached again.
    let back = keys(&dir, &[]);
    assert_changed("all restored", &base, &back, false, false, false);
    assert!(back.values().all(|(_, c)| *c != Some(false)), "{back:?}");
}

#[test]
fn cached_and_clean_builds_are_byte_identical() {
    let p = project();
    let dir = p.dir.clone();
    let warm_store = p.root().join("store");
    let run = |out: &str, store: &Path| {
        cargo_image(&dir)
            .args(["build", "--quiet", "--output", out, "--store"])
            .arg_path(store)
            .run()
            .ok();
        dir.join(out)
    };
    let cold = run("cold", &warm_store);
    let warm = run("warm", &warm_store);
    let clean = run("clean", &p.root().join("other-store"));
    assert!(
        tree_bytes(&cold) == tree_bytes(&warm),
        "cold and warm layouts differ"
    );
    assert!(
        tree_bytes(&cold) == tree_bytes(&clean),
        "cached and clean layouts differ"
    );
    oci_image_tool_validate(&warm, "latest");
}

/// The inode and modification time of `path`.
fn inode_and_mtime(path: &Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.ino(), meta.modified().unwrap())
}

#[test]
fn a_warm_build_leaves_an_identical_output_untouched_and_repairs_a_changed_one() {
    let p = project();
    let dir = p.dir.clone();
    let out = dir.join("out");
    build_quiet(&dir);
    let index = inode_and_mtime(&out.join("index.json"));
    let layout = inode_and_mtime(&out);
    let bytes = tree_bytes(&out);

    // Nothing changed: the layout is left as it is (no new index.json, no swap)...
    let r = build_quiet(&dir);
    assert!(r.stderr.contains("Fresh layer assets"), "{}", r.stderr);
    assert_eq!(inode_and_mtime(&out.join("index.json")), index);
    assert_eq!(inode_and_mtime(&out).0, layout.0, "the layout was swapped");
    assert!(tree_bytes(&out) == bytes);
    assert!(
        std::fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp")),
        "a temporary layout was left beside the output"
    );
    // ... and it is still a valid image to the peer tools.
    oci_image_tool_validate(&out, "latest");
    let inspected = skopeo_inspect(&out, "latest", None);
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);

    // A layout someone changed is written again: here its index lost its entries, and a
    // blob of it was removed.
    std::fs::write(
        out.join("index.json"),
        "{\"schemaVersion\":2,\"manifests\":[]}",
    )
    .unwrap();
    let blobs = out.join("blobs/sha256");
    let first = std::fs::read_dir(&blobs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&first).unwrap();
    build_quiet(&dir);
    assert_ne!(
        inode_and_mtime(&out).0,
        layout.0,
        "the changed layout was kept"
    );
    assert!(tree_bytes(&out) == bytes, "the rewritten layout differs");
    oci_image_tool_validate(&out, "latest");
}

/// The store blob of the first layer of the image built into `out`, and its digest.
fn layer_blob(dir: &Path, out: &str) -> (PathBuf, String) {
    let (digest, blob) = first_layer_blob(&dir.join(out), &dir.join("target/image/.store"));
    (blob, digest)
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn corrupt_or_truncated_store_blobs_are_rebuilt_never_copied() {
    let p = project();
    let dir = p.dir.clone();
    build_quiet(&dir);
    let (blob, digest) = layer_blob(&dir, "out");
    assert_eq!(sha256_file(&blob), digest);

    // Same size, other bytes (the write changes the mtime): detected on lookup.
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    make_writable(&blob);
    std::fs::write(&blob, &bytes).unwrap();
    let r = cargo_image(&dir)
        .args(["build", "--output", "out2"])
        .run()
        .ok();
    assert!(r.stderr.contains("Built layer assets"), "{}", r.stderr);
    let (blob2, digest2) = layer_blob(&dir, "out2");
    assert_eq!(digest2, digest, "same inputs, same layer");
    assert_eq!(sha256_file(&blob_path(&dir.join("out2"), &digest)), digest);
    assert_eq!(sha256_file(&blob2), digest, "store repaired");

    // Truncated.
    make_writable(&blob2);
    std::fs::write(&blob2, &bytes[..n / 3]).unwrap();
    let r = cargo_image(&dir)
        .args(["build", "--output", "out3"])
        .run()
        .ok();
    assert!(r.stderr.contains("Built layer assets"), "{}", r.stderr);
    assert_eq!(sha256_file(&blob_path(&dir.join("out3"), &digest)), digest);

    // Corrupted with its mtime put back (bit rot): `cache verify` finds it and drops it, and the
    // next build rebuilds it.
    let (blob3, _) = layer_blob(&dir, "out3");
    let meta = std::fs::metadata(&blob3).unwrap();
    let mut bytes = std::fs::read(&blob3).unwrap();
    bytes[10] ^= 0x01;
    make_writable(&blob3);
    std::fs::write(&blob3, &bytes).unwrap();
    let mtime = filetime_of(&meta);
    Command::new("touch")
        .args(["-d", &mtime])
        .arg(&blob3)
        .status()
        .unwrap();
    let v = cargo_image(&dir).args(["cache", "verify"]).run();
    assert_eq!(v.code, Some(1), "verify reports corruption: {}", v.stderr);
    assert!(v.stderr.contains(&digest), "{}", v.stderr);
    let v = cargo_image(&dir).args(["cache", "verify"]).run().ok();
    assert!(v.stderr.contains("0 corrupt"), "{}", v.stderr);
    let r = cargo_image(&dir)
        .args(["build", "--output", "out4"])
        .run()
        .ok();
    assert!(r.stderr.contains("Built layer assets"), "{}", r.stderr);
    assert_eq!(sha256_file(&blob_path(&dir.join("out4"), &digest)), digest);
}

/// `@SECONDS.NANOS` for `touch -d`.
fn filetime_of(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("@{}.{:09}", meta.mtime(), meta.mtime_nsec())
}

#[test]
fn four_concurrent_builds_share_one_store_and_one_output() {
    let p = project();
    let dir = p.dir.clone();
    // Enough content that the builds overlap.
    write_noise(&dir.join("assets/noise"), 8, 1 << 20);
    let children: Vec<_> = (0..4)
        .map(|_| {
            cargo_image(&dir)
                .args(["build", "--quiet", "--output", "shared-out"])
                .spawn()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a concurrent build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let shared = manifest_digest(&dir.join("shared-out"));
    oci_image_tool_validate(&dir.join("shared-out"), "latest");
    // The same as a build on its own, in a fresh store.
    let alone = dir.join("alone");
    cargo_image(&dir)
        .args(["build", "--quiet", "--output"])
        .arg_path(&alone)
        .args(["--store"])
        .arg_path(&dir.join("fresh-store"))
        .run()
        .ok();
    assert_eq!(manifest_digest(&alone), shared);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary outputs left: {leftovers:?}"
    );
}

/// Writes `files` files of `size` bytes of poorly compressible deterministic noise.
fn write_noise(dir: &Path, files: usize, size: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut noise = Noise::new(0x9e37_79b9_7f4a_7c15);
    for i in 0..files {
        std::fs::write(dir.join(format!("n{i:03}.bin")), noise.bytes(size)).unwrap();
    }
}

#[test]
fn a_build_killed_mid_layer_leaves_nothing_corrupt() {
    let p = project();
    let dir = p.dir.clone();
    write_noise(&dir.join("assets/noise"), 96, 1 << 20);
    let store = dir.join("target/image/.store");
    let blobs = store.join("blobs/sha256");
    let mut child = cargo_image(&dir)
        .args(["build", "--quiet", "--jobs", "1", "--output", "out"])
        .spawn();
    // Wait until the big layer is being written, then kill the build.
    let started = Instant::now();
    let mut killed_mid_layer = false;
    while started.elapsed() < Duration::from_secs(60) {
        let writing = std::fs::read_dir(&blobs)
            .map(|rd| {
                rd.filter_map(Result::ok).any(|e| {
                    e.file_name().to_string_lossy().starts_with(".tmp")
                        && e.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false)
                })
            })
            .unwrap_or(false);
        if writing {
            child.kill().unwrap(); // SIGKILL
            killed_mid_layer = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.wait();
    assert!(
        killed_mid_layer,
        "the build finished before it could be killed mid-layer"
    );
    assert!(!dir.join("out").exists(), "a killed build left an output");

    let v = cargo_image(&dir).args(["cache", "verify"]).run().ok();
    assert!(v.stderr.contains("0 corrupt"), "{}", v.stderr);
    let r = cargo_image(&dir)
        .args(["build", "--output", "out"])
        .run()
        .ok();
    assert!(r.stderr.contains("Built layer assets"), "{}", r.stderr);
    oci_image_tool_validate(&dir.join("out"), "latest");
    let v = cargo_image(&dir).args(["cache", "verify"]).run().ok();
    assert!(v.stderr.contains("0 corrupt"), "{}", v.stderr);
}
