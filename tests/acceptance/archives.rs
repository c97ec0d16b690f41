//! `--output-format oci-archive|docker-archive`: tarballs that skopeo and podman accept, with the
//! same image digest as the layout, byte-identical from build to build.

use std::path::Path;

use cargo_oci_image_acceptance::*;

#[test]
fn oci_archive_is_read_by_skopeo_with_the_layout_digest() {
    let (tmp, dir) = example_copy("import-tar");
    let layout = tmp.path().join("layout");
    let digest = build(&dir, Path::new("image.toml"), &layout);
    let archive = tmp.path().join("image.tar");
    cargo_image(&dir)
        .args([
            "build",
            "--quiet",
            "--output-format",
            "oci-archive",
            "--output",
        ])
        .arg_path(&archive)
        .run()
        .ok();
    require("skopeo");
    let r = run(
        "skopeo",
        [
            "inspect".to_string(),
            format!("oci-archive:{}:vendor-1.0", archive.display()),
        ],
        tmp.path(),
    )
    .ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["Digest"], digest.as_str());

    // Deterministic: a second archive (from the cache) has the same bytes.
    let again = tmp.path().join("again.tar");
    cargo_image(&dir)
        .args([
            "build",
            "--quiet",
            "--output-format",
            "oci-archive",
            "--output",
        ])
        .arg_path(&again)
        .run()
        .ok();
    assert!(std::fs::read(&archive).unwrap() == std::fs::read(&again).unwrap());
}

#[test]
fn docker_archive_loads_with_podman() {
    let (tmp, dir) = example_copy("static-site");
    let archive = tmp.path().join("site.docker.tar");
    cargo_image(&dir)
        .args([
            "build",
            "--quiet",
            "--output-format",
            "docker-archive",
            "--output",
        ])
        .arg_path(&archive)
        .run()
        .ok();
    require("skopeo");
    let tags = run(
        "skopeo",
        [
            "list-tags".to_string(),
            format!("docker-archive:{}", archive.display()),
        ],
        tmp.path(),
    )
    .ok();
    assert!(
        tags.stdout.contains("static-site:latest"),
        "{}",
        tags.stdout
    );

    require("podman");
    let root = tmp.path().join("podman-root");
    let runroot = tmp.path().join("podman-runroot");
    let r = run(
        "podman",
        [
            "--storage-driver=vfs".to_string(),
            format!("--root={}", root.display()),
            format!("--runroot={}", runroot.display()),
            "load".to_string(),
            "-i".to_string(),
            archive.display().to_string(),
        ],
        tmp.path(),
    );
    assert_eq!(
        r.code,
        Some(0),
        "podman load failed: {}\n{}",
        r.stdout,
        r.stderr
    );
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(out.contains("Loaded image"), "{out}");
    assert!(out.contains("static-site:latest"), "{out}");
}
