//! Each example builds, validates with oci-image-tool, inspects with skopeo as the spec says,
//! unpacks with umoci to the expected files, modes, owners and symlinks, and (hello) runs with runc.

use std::path::Path;

use cargo_oci_image_test_support::*;

#[test]
fn hello_builds_validates_and_runs() {
    let (tmp, dir) = example_copy("hello");
    let out = tmp.path().join("layout");
    let digest = build(&dir, Path::new("image.toml"), &out);

    oci_image_tool_validate(&out, "latest");
    oci_image_tool_validate(&out, "0.1.0");

    let inspect = skopeo_inspect(&out, "latest", None);
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(inspect["Labels"]["org.opencontainers.image.title"], "hello");
    let config = skopeo_inspect(&out, "latest", Some("--config"));
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/hello"])
    );
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["GREETING_TARGET=OCI"])
    );
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let raw = skopeo_inspect(&out, "0.1.0", Some("--raw"));
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.created"],
        "1970-01-01T00:00:00Z"
    );
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.description"],
        "A tiny Rust binary on scratch"
    );

    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(stat(&rootfs.join("usr/local/bin/hello")), (0o755, 0, 0));
    assert_eq!(stat(&rootfs.join("usr/local/bin")), (0o755, 0, 0));
    assert_eq!(stat(&rootfs.join("etc/motd")), (0o644, 0, 0));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/motd")).unwrap(),
        "This image was built by cargo-image.\n"
    );
    let mut names: Vec<_> = std::fs::read_dir(&rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["etc", "usr"], "scratch image holds only our files");

    let ran = runc_run(&bundle);
    assert_eq!(ran.code, Some(0), "runc run failed: {}", ran.stderr);
    assert_eq!(
        ran.stdout,
        "Hello, OCI! (from a cargo-image built image)\nThis image was built by cargo-image.\n"
    );
}

#[test]
fn static_site_has_its_files_excludes_owners_and_config() {
    let (tmp, dir) = example_copy("static-site");
    let out = tmp.path().join("layout");
    build(&dir, Path::new("image.toml"), &out);

    // zstd layers: check the media type, then convert with skopeo for the gzip-only tools.
    let raw = skopeo_inspect(&out, "latest", Some("--raw"));
    let layers = raw["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let gz = tmp.path().join("gz");
    skopeo_copy_gzip(&out, "latest", &gz);
    oci_image_tool_validate(&gz, "latest");

    let config = skopeo_inspect(&out, "latest", Some("--config"));
    let c = &config["config"];
    assert_eq!(c["WorkingDir"], "/srv/www");
    assert_eq!(c["User"], "101:101");
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(
        c["Env"],
        serde_json::json!(["LANG=C.UTF-8", "SITE_ROOT=/srv/www"])
    );
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(c["Volumes"], serde_json::json!({"/var/cache/site": {}}));
    assert_eq!(c["Labels"]["org.example.tier"], "web");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");

    let bundle = tmp.path().join("bundle");
    umoci_unpack(&gz, "latest", &bundle);
    let www = bundle.join("rootfs/srv/www");
    for f in [
        "index.html",
        "about.html",
        "css/site.css",
        "js/site.js",
        "img/pixel.gif",
    ] {
        assert_eq!(stat(&www.join(f)), (0o644, 101, 101), "{f}");
    }
    assert_eq!(stat(&www.join("css")), (0o755, 101, 101));
    assert!(!www.join("drafts").exists(), "drafts/ is excluded");
    assert!(!www.join("js/site.js.map").exists(), "*.map is excluded");
    let link = www.join("home.html");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("/srv/www/index.html")
    );
    assert_eq!(
        stat(&bundle.join("rootfs/var/cache/site")),
        (0o750, 101, 101)
    );
    assert_eq!(stat(&bundle.join("rootfs/var/cache")), (0o755, 0, 0));
}

#[test]
fn import_tar_normalises_the_vendor_tarball() {
    let (tmp, dir) = example_copy("import-tar");
    let out = tmp.path().join("layout");
    build(&dir, Path::new("image.toml"), &out);
    oci_image_tool_validate(&out, "vendor-1.0");

    let raw = skopeo_inspect(&out, "latest", Some("--raw"));
    let layers = raw["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);

    // The vendor layer, read by GNU tar: sorted, parents first, numeric 0:0, epoch mtimes,
    // hard links turned into regular files.
    let blob = blob_path(&out, layers[0]["digest"].as_str().unwrap());
    let names = tar_list(&blob);
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| a.trim_end_matches('/').cmp(b.trim_end_matches('/')));
    assert_eq!(names, sorted, "entries in byte order of their path");
    assert!(names.contains(
        &"opt/tool/share/doc/a-rather-long-directory-name-that-goes-on/and-on-beyond-the-hundred-byte-ustar-name-field/notes.txt".to_string()
    ));
    let verbose = tar_list_verbose(&blob);
    for line in verbose.lines() {
        assert!(line.contains(" 0/0 "), "numeric owner 0/0: {line}");
        assert!(line.contains("1970-01-01 00:00:00"), "epoch mtime: {line}");
        assert!(!line.starts_with('h'), "no hard links: {line}");
        assert!(!line.contains("alice") && !line.contains("staff"));
    }

    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "latest", &bundle);
    let doc = bundle.join("rootfs/opt/tool/share/doc");
    assert_eq!(
        std::fs::read_to_string(doc.join("LICENSE")).unwrap(),
        "MIT licensed tool\n"
    );
    assert_eq!(
        std::fs::read_to_string(doc.join("COPYING")).unwrap(),
        "MIT licensed tool\n"
    );
    assert_eq!(stat(&doc.join("LICENSE")), (0o644, 0, 0));
    assert_eq!(
        stat(&bundle.join("rootfs/opt/tool/bin/tool")),
        (0o755, 0, 0)
    );
    assert_eq!(
        std::fs::read_link(bundle.join("rootfs/opt/tool/bin/license")).unwrap(),
        Path::new("../share/doc/LICENSE")
    );
    let conf = bundle.join("rootfs/etc/tool/config.toml");
    assert_eq!(stat(&conf), (0o640, 0, 1000));
    assert_eq!(
        std::fs::read_to_string(conf).unwrap(),
        "mode = \"production\"\n"
    );
}
