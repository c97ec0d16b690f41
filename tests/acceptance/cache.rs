//! The layer cache: keys change exactly when the bytes may change, cached and clean builds are
//! byte-identical, a damaged store is detected and repaired, concurrent builds share a store,
//! and a build killed mid-layer leaves nothing corrupt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cargo_oci_image_acceptance::*;

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
fn project() -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("p");
    std::fs::create_dir_all(dir.join("assets/css")).unwrap();
    std::fs::write(dir.join("image.toml"), SPEC).unwrap();
    std::fs::write(dir.join("assets/a.txt"), "alpha\n").unwrap();
    std::fs::write(dir.join("assets/b.txt"), "beta\n").unwrap();
    std::fs::write(dir.join("assets/css/site.css"), "body{}\n").unwrap();
    std::fs::write(dir.join("assets/scratch.tmp"), "ignored\n").unwrap();
    (tmp, dir)
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
    let spec = std::fs::read_to_string(dir.join("image.toml")).unwrap();
    assert!(spec.contains(from), "spec has {from:?}");
    std::fs::write(dir.join("image.toml"), spec.replacen(from, to, 1)).unwrap();
}

#[test]
fn keys_change_exactly_as_they_must() {
    let (_tmp, dir) = project();
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
    let (tmp, dir) = project();
    let warm_store = tmp.path().join("store");
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
    let clean = run("clean", &tmp.path().join("other-store"));
    let files = |p: &Path| {
        let mut v = Vec::new();
        for e in walk_files(p) {
            v.push((
                e.strip_prefix(p).unwrap().to_path_buf(),
                std::fs::read(&e).unwrap(),
            ));
        }
        v.sort();
        v
    };
    assert!(files(&cold) == files(&warm), "cold and warm layouts differ");
    assert!(
        files(&cold) == files(&clean),
        "cached and clean layouts differ"
    );
    oci_image_tool_validate(&warm, "latest");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The store blob of the first layer of the image built into `out`.
fn layer_blob(dir: &Path, out: &str) -> (PathBuf, String) {
    let layout = dir.join(out);
    let manifest = blob_json(&layout, &manifest_digest(&layout));
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = digest.trim_start_matches("sha256:").to_string();
    (
        dir.join("target/image/.store/blobs/sha256").join(hex),
        digest,
    )
}

fn sha256_file(path: &Path) -> String {
    let r = run("sha256sum", [path], Path::new("/")).ok();
    format!("sha256:{}", r.stdout.split_whitespace().next().unwrap())
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn corrupt_or_truncated_store_blobs_are_rebuilt_never_copied() {
    let (_tmp, dir) = project();
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
    assert_eq!(
        sha256_file(
            &dir.join("out2/blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        ),
        digest
    );
    assert_eq!(sha256_file(&blob2), digest, "store repaired");

    // Truncated.
    make_writable(&blob2);
    std::fs::write(&blob2, &bytes[..n / 3]).unwrap();
    let r = cargo_image(&dir)
        .args(["build", "--output", "out3"])
        .run()
        .ok();
    assert!(r.stderr.contains("Built layer assets"), "{}", r.stderr);
    assert_eq!(
        sha256_file(
            &dir.join("out3/blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        ),
        digest
    );

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
    assert_eq!(
        sha256_file(
            &dir.join("out4/blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        ),
        digest
    );
}

/// `@SECONDS.NANOS` for `touch -d`.
fn filetime_of(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("@{}.{:09}", meta.mtime(), meta.mtime_nsec())
}

#[test]
fn four_concurrent_builds_share_one_store_and_one_output() {
    let (_tmp, dir) = project();
    // Enough content that the builds overlap.
    write_noise(&dir.join("assets/noise"), 8, 1 << 20);
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(cargo_image_bin())
                .args(["build", "--quiet", "--output", "shared-out"])
                .current_dir(&dir)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
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
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..files {
        let mut buf = Vec::with_capacity(size);
        while buf.len() < size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            buf.extend_from_slice(&state.to_le_bytes());
        }
        std::fs::write(dir.join(format!("n{i:03}.bin")), &buf).unwrap();
    }
}

#[test]
fn a_build_killed_mid_layer_leaves_nothing_corrupt() {
    let (_tmp, dir) = project();
    write_noise(&dir.join("assets/noise"), 96, 1 << 20);
    let store = dir.join("target/image/.store");
    let blobs = store.join("blobs/sha256");
    let mut child = Command::new(cargo_image_bin())
        .args(["build", "--quiet", "--jobs", "1", "--output", "out"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
