//! `--output-format oci-archive|docker-archive`: tarballs that skopeo and podman accept, with the
//! same image digest as the layout, byte-identical from build to build.

use std::path::Path;

use cargo_oci_image_test_support::*;

#[test]
fn oci_archive_is_read_by_skopeo_with_the_layout_digest() {
    let (tmp, dir) = example_copy("import-tar");
    let layout = tmp.path().join("layout");
    let digest = build(&dir, Path::new("image.toml"), &layout);
    let archive = tmp.path().join("image.tar");
    build_with_format(&dir, "oci-archive", &archive).run().ok();
    let r = skopeo([
        "inspect".to_string(),
        format!("oci-archive:{}:vendor-1.0", archive.display()),
    ]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["Digest"], digest.as_str());

    // Deterministic: a second archive (from the cache) has the same bytes.
    let again = tmp.path().join("again.tar");
    build_with_format(&dir, "oci-archive", &again).run().ok();
    assert!(std::fs::read(&archive).unwrap() == std::fs::read(&again).unwrap());
}

#[test]
fn docker_archive_loads_with_podman() {
    let (tmp, dir) = example_copy("static-site");
    let archive = tmp.path().join("site.docker.tar");
    build_with_format(&dir, "docker-archive", &archive)
        .run()
        .ok();
    let tags = skopeo([
        "list-tags".to_string(),
        format!("docker-archive:{}", archive.display()),
    ]);
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
    let out = r.output();
    assert!(out.contains("Loaded image"), "{out}");
    assert!(out.contains("static-site:latest"), "{out}");
}
