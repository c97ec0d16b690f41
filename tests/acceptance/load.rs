//! `--load`: the image for this machine's platform handed to a container engine's own `load`
//! (podman here, with its storage in a temporary directory on the vfs driver), which then shows
//! our config digest as the image id; and a clear error when no engine is installed.

use std::path::Path;

use cargo_oci_image_test_support::*;

const SPEC: &str = r#"
name = "loaded"
tags = ["1.0", "latest"]
platforms = ["linux/amd64", "linux/arm64"]
[config]
cmd = ["/hello.txt"]
[[layer]]
name = "files"
[[layer.add]]
content = "loaded by podman\n"
dest = "/hello.txt"
"#;

/// A podman storage configuration in `dir` (vfs: no fuse-overlayfs or root storage needed).
fn storage_conf(dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("graph").display(),
            dir.join("run").display()
        ),
    )
    .unwrap();
    conf
}

#[test]
fn load_hands_the_host_platform_image_to_podman() {
    require("podman");
    let p = Project::new(SPEC);
    let engine = TempDir::new().unwrap();
    let conf = storage_conf(engine.path());
    let r = p
        .cli()
        .args(["--load=podman", "--message-format", "json"])
        .env("CONTAINERS_STORAGE_CONF", &conf)
        .run()
        .ok();
    let events = json_events(&r.stdout);
    let loaded = of_kind(&events, "loaded");
    assert_eq!(loaded.len(), 1, "{}", r.stdout);
    let loaded = loaded[0];
    assert_eq!(loaded["engine"], "podman");
    assert_eq!(loaded["platform"], "linux/amd64");
    assert_eq!(
        loaded["references"],
        serde_json::json!(["loaded:1.0", "loaded:latest"])
    );

    // Our image id is the amd64 image's config digest, as skopeo reads it from the layout.
    let raw = skopeo_inspect(&p.out(), "latest", Some("--raw"));
    let amd64 = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .expect("an amd64 image");
    let manifest = blob_json(&p.out(), amd64["digest"].as_str().unwrap());
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(loaded["image_id"], config_digest);

    // podman sees it under both names, with that id and our config.
    for name in ["loaded:1.0", "loaded:latest"] {
        let inspect = run_command(
            std::process::Command::new("podman")
                .args(["image", "inspect", name])
                .env("CONTAINERS_STORAGE_CONF", &conf),
        )
        .ok();
        let inspect: Value = serde_json::from_str(&inspect.stdout).unwrap();
        assert_eq!(
            format!("sha256:{}", inspect[0]["Id"].as_str().unwrap()),
            config_digest,
            "{name}"
        );
        assert_eq!(inspect[0]["Architecture"], "amd64", "{name}");
        assert_eq!(
            inspect[0]["Config"]["Cmd"],
            serde_json::json!(["/hello.txt"]),
            "{name}"
        );
    }

    // People are told how to run it.
    let r = p
        .cli()
        .args(["--load"])
        .env("CONTAINERS_STORAGE_CONF", &conf)
        .run()
        .ok();
    assert!(
        r.stderr
            .contains("Loaded loaded:1.0, loaded:latest into podman")
            && r.stderr.contains("podman run --rm loaded:1.0"),
        "{}",
        r.stderr
    );
}

#[test]
fn load_without_an_engine_says_what_to_install_and_keeps_the_layout() {
    let p = Project::new(SPEC);
    let empty = TempDir::new().unwrap();
    let r = p.cli().args(["--load"]).env("PATH", empty.path()).run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--load: podman or docker is not installed")
            && r.stderr.contains("apt install podman"),
        "{}",
        r.stderr
    );
    let r = p
        .cli()
        .args(["--load=docker"])
        .env("PATH", empty.path())
        .run();
    assert!(
        r.stderr.contains("--load: docker is not installed"),
        "{}",
        r.stderr
    );
    // Found before the build: nothing was written.
    assert!(!p.out().exists(), "the build did not start");
}
