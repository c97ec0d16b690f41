//! Multi-platform images (`platforms = [...]`, `--platform`): one OCI image index with a
//! manifest per platform, checked with skopeo, umoci, runc, qemu-aarch64-static and a real
//! `docker-registry` on loopback.

use std::path::{Path, PathBuf};

use cargo_oci_image_test_support::registry::Registry;
use cargo_oci_image_test_support::*;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Golden digest of the image index of [`CONTENT_ONLY`] (no cargo build, outside any git work
/// tree, no `SOURCE_DATE_EPOCH`): pins the index format as the other golden digests pin the
/// manifest format. Never update it to make a test pass.
const GOLDEN_CONTENT_ONLY_INDEX: &str =
    "sha256:4eeeb1764d5cb239de2f8232d665ddc9fa7a1ca36db4ee0462f2b84befc4223c";

/// A two-platform spec without cargo: a shared layer and one file per platform.
const CONTENT_ONLY: &str = r#"
name = "two-platforms"
platforms = ["linux/amd64", "linux/arm64"]

[config]
cmd = ["/bin/true"]

[[layer]]
name = "shared"
[[layer.add]]
content = "the same bytes on every platform\n"
dest = "/etc/shared"

[[layer]]
name = "own"
[[layer.add]]
content = "amd64\n"
dest = "/etc/arch"
platforms = ["linux/amd64"]
[[layer.add]]
content = "arm64\n"
dest = "/etc/arch"
platforms = ["linux/arm64"]
"#;

/// The multi-arch example built into `<tmp>/out`; returns (tmp, example dir, layout).
fn build_multi_arch() -> (TempDir, PathBuf, PathBuf) {
    let (tmp, dir) = example_copy("multi-arch");
    let out = tmp.path().join("out");
    cargo_image(&dir)
        .args(["build", "--quiet", "--output"])
        .arg_path(&out)
        .run()
        .ok();
    (tmp, dir, out)
}

/// The manifests of the image index a layout's `latest` tag points at, by architecture.
fn platform_manifests(layout: &Path) -> Vec<(String, String)> {
    let index = skopeo_inspect(layout, "latest", Some("--raw"));
    assert_eq!(index["mediaType"], INDEX, "{index}");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            assert_eq!(m["mediaType"], MANIFEST, "{m}");
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `skopeo copy --override-arch ARCH SRC oci:DEST:latest`.
fn copy_arch(src: &str, arch: &str, dest: &Path) {
    skopeo([
        "copy".to_string(),
        "--quiet".to_string(),
        "--src-tls-verify=false".to_string(),
        "--override-arch".to_string(),
        arch.to_string(),
        src.to_string(),
        format!("oci:{}:latest", dest.display()),
    ]);
}

/// The digest of the manifest (or index) `reference` names, per skopeo: the sha256 of the
/// bytes it reads.
fn skopeo_raw_digest(reference: &str) -> String {
    sha256(skopeo(["inspect", "--raw", reference]).stdout.as_bytes())
}

/// The digest of the manifest a (single-image) layout's `latest` points at, per skopeo.
fn skopeo_manifest_digest(layout: &Path) -> String {
    skopeo_raw_digest(&format!("oci:{}:latest", layout.display()))
}

#[test]
fn amd64_and_arm64_make_one_index_with_a_shared_assets_layer() {
    let (_tmp, _dir, out) = build_multi_arch();

    // index.json points at one image index; the index has one manifest per platform.
    let layout_index = read_json(&out.join("index.json"));
    assert_eq!(layout_index["manifests"][0]["mediaType"], INDEX);
    assert_eq!(
        layout_index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    let raw = skopeo_inspect(&out, "latest", Some("--raw"));
    let manifests = raw["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{raw}");
    assert_eq!(
        manifests[0]["platform"],
        serde_json::json!({"architecture": "amd64", "os": "linux"})
    );
    assert_eq!(
        manifests[1]["platform"],
        serde_json::json!({"architecture": "arm64", "os": "linux"})
    );
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.created"],
        "1970-01-01T00:00:00Z"
    );
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.description"],
        "One program for amd64 and arm64"
    );

    // Each manifest's config says its platform; the assets layer is one blob in both.
    let mut layers = Vec::new();
    for (m, arch) in manifests.iter().zip(["amd64", "arm64"]) {
        let manifest = blob_json(&out, m["digest"].as_str().unwrap());
        let config = blob_json(&out, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["os"], "linux");
        assert!(config.get("variant").is_none(), "{config}");
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.created"],
            "1970-01-01T00:00:00Z"
        );
        let digests: Vec<String> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(digests.len(), 2, "assets and app");
        layers.push(digests);
    }
    assert_eq!(layers[0][0], layers[1][0], "the assets layer is shared");
    assert_ne!(layers[0][1], layers[1][1], "the app layers differ");

    // skopeo picks each platform's manifest.
    for (arch, expected) in [("amd64", &layers[0]), ("arm64", &layers[1])] {
        let r = skopeo([
            "inspect".to_string(),
            "--override-arch".to_string(),
            arch.to_string(),
            format!("oci:{}:latest", out.display()),
        ]);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["Architecture"], arch, "{v}");
        assert_eq!(v["Os"], "linux");
        let got: Vec<&str> = v["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(got, *expected, "{arch}");
    }
}

#[test]
fn each_platform_unpacks_and_runs() {
    let (tmp, _dir, out) = build_multi_arch();
    let by_arch = platform_manifests(&out);

    // amd64: unpacked by umoci, run by runc.
    let amd64 = tmp.path().join("amd64");
    copy_arch(&format!("oci:{}:latest", out.display()), "amd64", &amd64);
    assert_eq!(skopeo_manifest_digest(&amd64), by_arch[0].1, "our manifest");
    let bundle = tmp.path().join("bundle-amd64");
    umoci_unpack(&amd64, "latest", &bundle);
    let r = runc_run(&bundle).ok();
    assert_eq!(
        r.stdout,
        "Hello from x86_64!\nThese assets are the same bytes on every platform: one layer, shared by digest.\nplatform: linux/amd64\n"
    );

    // arm64: an aarch64 ELF that runs under qemu.
    let arm64 = tmp.path().join("arm64");
    copy_arch(&format!("oci:{}:latest", out.display()), "arm64", &arm64);
    assert_eq!(skopeo_manifest_digest(&arm64), by_arch[1].1, "our manifest");
    let bundle = tmp.path().join("bundle-arm64");
    umoci_unpack(&arm64, "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    let bin = rootfs.join("usr/local/bin/multi-arch");
    let elf = std::fs::read(&bin).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF file");
    assert_eq!(elf[4], 2, "64-bit");
    assert_eq!(elf[5], 1, "little-endian");
    assert_eq!(
        u16::from_le_bytes([elf[18], elf[19]]),
        183,
        "e_machine EM_AARCH64"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/platform")).unwrap(),
        "platform: linux/arm64\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("usr/share/multi-arch/greeting.txt")).unwrap(),
        "These assets are the same bytes on every platform: one layer, shared by digest.\n"
    );
    require("qemu-aarch64-static");
    let r = run("qemu-aarch64-static", [bin.as_os_str()], &rootfs).ok();
    assert!(
        r.stdout.starts_with("Hello from aarch64!\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn the_index_is_pushed_and_pulled_back_per_architecture() {
    let registry = Registry::start();
    let (tmp, dir) = example_copy("multi-arch");
    let repo = format!("{}/multi/arch", registry.host());
    let layout = tmp.path().join("out");
    let r = cargo_image(&dir)
        .args(["push", "--quiet", "--push-to", &repo, "--output"])
        .arg_path(&layout)
        .run()
        .ok();
    let index_digest = manifest_digest(&layout);
    assert_eq!(r.stdout.trim(), format!("{repo}@{index_digest}"));

    // The registry serves our index bytes.
    let raw = skopeo([
        "inspect".to_string(),
        "--raw".to_string(),
        "--tls-verify=false".to_string(),
        format!("docker://{repo}:latest"),
    ])
    .stdout;
    let ours = std::fs::read(blob_path(&layout, &index_digest)).unwrap();
    assert_eq!(raw.as_bytes(), ours.as_slice(), "the index, byte for byte");

    for (arch, digest) in platform_manifests(&layout) {
        let copy = tmp.path().join(format!("pulled-{arch}"));
        copy_arch(&format!("docker://{repo}:latest"), &arch, &copy);
        assert_eq!(skopeo_manifest_digest(&copy), digest, "{arch}");
        let config = skopeo_inspect(&copy, "latest", Some("--config"));
        assert_eq!(config["architecture"], arch.as_str());
    }
}

#[test]
fn a_registry_base_index_resolves_to_each_platform() {
    let registry = Registry::start();
    let tmp = TempDir::new().unwrap();
    write_spec(tmp.path(), CONTENT_ONLY);
    let base = tmp.path().join("base");
    let repo = format!("{}/base/two", registry.host());
    cargo_image(tmp.path())
        .args(["push", "--quiet", "--push-to", &repo, "--output"])
        .arg_path(&base)
        .run()
        .ok();
    let base_manifests = platform_manifests(&base);

    let app = write_spec(
        &tmp.path().join("app"),
        &format!(
            "name = \"app\"\nfrom = \"{repo}:latest\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
             [[layer]]\nname = \"top\"\n[[layer.add]]\ncontent = \"top\"\ndest = \"/top\"\n"
        ),
    );
    let out = tmp.path().join("out");
    cargo_image(&app)
        .args(["build", "--quiet", "--store"])
        .arg_path(&tmp.path().join("app-store"))
        .args(["--output"])
        .arg_path(&out)
        .run()
        .ok();
    for ((arch, digest), (base_arch, base_digest)) in
        platform_manifests(&out).iter().zip(&base_manifests)
    {
        assert_eq!(arch, base_arch);
        let manifest = blob_json(&out, digest);
        let base_manifest = blob_json(&base, base_digest);
        let base_layers = base_manifest["layers"].as_array().unwrap();
        assert_eq!(
            &manifest["layers"].as_array().unwrap()[..base_layers.len()],
            base_layers.as_slice(),
            "{arch}: the base's {arch} layers"
        );
        let config = blob_json(&out, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"], arch.as_str());
    }
}

#[test]
fn the_index_is_identical_from_two_checkouts() {
    let tmp = TempDir::new().unwrap();
    let (out_a, out_b) = build_two_checkouts("multi-arch", tmp.path());
    assert_eq!(manifest_digest(&out_a), manifest_digest(&out_b));
    assert_eq!(platform_manifests(&out_a), platform_manifests(&out_b));
}

#[test]
fn content_only_index_golden_digest() {
    let tmp = TempDir::new().unwrap();
    write_spec(tmp.path(), CONTENT_ONLY);
    let out = tmp.path().join("out");
    let digest = build(tmp.path(), Path::new("image.toml"), &out);
    assert_eq!(
        digest, GOLDEN_CONTENT_ONLY_INDEX,
        "the image index digest drifted: a change to the index, manifest or config JSON, the tar \
         writer or the compressor changed the bytes. If intended, bump the format version, note \
         it in CHANGELOG.md and pin the new digest here."
    );
}

#[test]
fn a_multi_platform_base_resolves_to_each_platform() {
    let tmp = TempDir::new().unwrap();
    // The base: a two-platform index built by cargo-image.
    let base = build_base_layout(tmp.path(), CONTENT_ONLY);
    let base_manifests = platform_manifests(&base);

    let app = write_spec(
        &tmp.path().join("app"),
        r#"
name = "on-a-base"
from = "oci:../base-layout:latest"
platforms = ["linux/arm64", "linux/amd64"]
[[layer]]
name = "top"
[[layer.add]]
content = "on top\n"
dest = "/etc/top"
"#,
    );
    let out = tmp.path().join("out");
    build(&app, Path::new("image.toml"), &out);
    let ours = platform_manifests(&out);
    assert_eq!(
        ours.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["arm64", "amd64"],
        "in the spec's order"
    );
    for (arch, digest) in &ours {
        let manifest = blob_json(&out, digest);
        let base_digest = &base_manifests.iter().find(|(a, _)| a == arch).unwrap().1;
        let base_manifest = blob_json(&base, base_digest);
        let layers = manifest["layers"].as_array().unwrap();
        let base_layers = base_manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), base_layers.len() + 1, "{arch}");
        assert_eq!(
            &layers[..base_layers.len()],
            base_layers.as_slice(),
            "{arch}"
        );
        let config = blob_json(&out, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"], arch.as_str());
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/true"]));
        // The OCI base annotations: the base as the spec names it, and its manifest for this
        // platform.
        let annotations = &manifest["annotations"];
        assert_eq!(
            annotations["org.opencontainers.image.base.name"], "oci:../base-layout:latest",
            "{manifest}"
        );
        assert_eq!(
            annotations["org.opencontainers.image.base.digest"],
            base_digest.as_str(),
            "{manifest}"
        );

        // What runs: the base's file of that platform under ours.
        let copy = tmp.path().join(format!("copy-{arch}"));
        copy_arch(&format!("oci:{}:latest", out.display()), arch, &copy);
        let bundle = tmp.path().join(format!("bundle-{arch}"));
        umoci_unpack(&copy, "latest", &bundle);
        assert_eq!(
            std::fs::read_to_string(bundle.join("rootfs/etc/arch")).unwrap(),
            format!("{arch}\n")
        );
        assert_eq!(
            std::fs::read_to_string(bundle.join("rootfs/etc/top")).unwrap(),
            "on top\n"
        );
    }

    // A platform the base index lacks is a clear error.
    let r = cargo_image(&app)
        .args(["build", "--quiet", "--platform", "linux/s390x", "--output"])
        .arg_path(&tmp.path().join("s390x"))
        .run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("no image for linux/s390x") && r.stderr.contains("linux/arm64"),
        "{}",
        r.stderr
    );
}

#[test]
fn one_platform_is_a_plain_manifest_unless_an_index_is_asked_for() {
    let tmp = TempDir::new().unwrap();
    write_spec(tmp.path(), CONTENT_ONLY);

    let plain = tmp.path().join("plain");
    cargo_image(tmp.path())
        .args(["build", "--quiet", "--platform", "linux/arm64", "--output"])
        .arg_path(&plain)
        .run()
        .ok();
    let index = read_json(&plain.join("index.json"));
    assert_eq!(index["manifests"][0]["mediaType"], MANIFEST);
    assert_eq!(
        index["manifests"][0]["platform"],
        serde_json::json!({"architecture": "arm64", "os": "linux"})
    );
    let config = skopeo_inspect(&plain, "latest", Some("--config"));
    assert_eq!(config["architecture"], "arm64");

    let indexed = tmp.path().join("indexed");
    cargo_image(tmp.path())
        .args([
            "build",
            "--quiet",
            "--platform",
            "linux/arm64",
            "--index",
            "--output",
        ])
        .arg_path(&indexed)
        .run()
        .ok();
    let arm64 = platform_manifests(&indexed);
    assert_eq!(arm64.len(), 1);
    assert_eq!(arm64[0], ("arm64".to_string(), manifest_digest(&plain)));

    // A comma list on the command line overrides the spec's platforms, in its order.
    let swapped = tmp.path().join("swapped");
    cargo_image(tmp.path())
        .args([
            "build",
            "--quiet",
            "--platform",
            "linux/arm64,linux/amd64",
            "--output",
        ])
        .arg_path(&swapped)
        .run()
        .ok();
    let archs: Vec<String> = platform_manifests(&swapped)
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(archs, ["arm64", "amd64"]);
}

#[test]
fn variants_are_written_in_the_index_and_the_config() {
    let tmp = TempDir::new().unwrap();
    write_spec(tmp.path(), CONTENT_ONLY);
    let out = tmp.path().join("out");
    cargo_image(tmp.path())
        .args([
            "build",
            "--quiet",
            "--platform",
            "linux/arm/v7",
            "--platform",
            "linux/amd64",
            "--output",
        ])
        .arg_path(&out)
        .run()
        .ok();
    let raw = skopeo_inspect(&out, "latest", Some("--raw"));
    assert_eq!(
        raw["manifests"][0]["platform"],
        serde_json::json!({"architecture": "arm", "os": "linux", "variant": "v7"})
    );
    let manifest = blob_json(&out, raw["manifests"][0]["digest"].as_str().unwrap());
    let config = blob_json(&out, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(
        (&config["os"], &config["architecture"], &config["variant"]),
        (&"linux".into(), &"arm".into(), &"v7".into())
    );
    // Only the entries for every platform: the spec limits `/etc/arch` to amd64 and arm64.
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        1,
        "{manifest}"
    );
    let v = skopeo([
        "inspect".to_string(),
        "--config".to_string(),
        "--override-arch".to_string(),
        "arm".to_string(),
        "--override-variant".to_string(),
        "v7".to_string(),
        format!("oci:{}:latest", out.display()),
    ]);
    // skopeo 1.9 shows no `Variant`: its pick is the config it reads.
    let v: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(v["architecture"], "arm");
    assert_eq!(v["variant"], "v7");
}

#[test]
fn archives_of_a_multi_platform_image() {
    let tmp = TempDir::new().unwrap();
    write_spec(tmp.path(), CONTENT_ONLY);
    let layout = tmp.path().join("layout");
    let index = build(tmp.path(), Path::new("image.toml"), &layout);

    // An OCI archive carries the index.
    let archive = tmp.path().join("image.tar");
    build_with_format(tmp.path(), "oci-archive", &archive)
        .run()
        .ok();
    assert_eq!(
        skopeo_raw_digest(&format!("oci-archive:{}:latest", archive.display())),
        index
    );

    // A docker archive holds one image: a clear error that says what to do.
    let r = build_with_format(tmp.path(), "docker-archive", &tmp.path().join("docker.tar")).run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("linux/amd64, linux/arm64") && r.stderr.contains("oci-archive"),
        "{}",
        r.stderr
    );
}

#[test]
fn inspect_shows_the_index_with_its_platforms() {
    let tmp = TempDir::new().unwrap();
    write_spec(tmp.path(), CONTENT_ONLY);
    let layout = tmp.path().join("layout");
    let index = build(tmp.path(), Path::new("image.toml"), &layout);
    let manifests = platform_manifests(&layout);

    let text = cargo_image(tmp.path())
        .arg_path(Path::new("inspect"))
        .arg_path(&layout)
        .run()
        .ok()
        .stdout;
    assert!(text.contains(&format!("Index        {index}")), "{text}");
    assert!(text.contains("2 platforms"), "{text}");
    for (arch, digest) in &manifests {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("linux/{arch} ")))
            .unwrap_or_else(|| panic!("no line for {arch}:\n{text}"));
        assert!(line.contains(digest.as_str()), "{line}");
    }

    let json: Value = serde_json::from_str(
        &cargo_image(tmp.path())
            .args(["inspect", "--json"])
            .arg_path(&layout)
            .run()
            .ok()
            .stdout,
    )
    .unwrap();
    let images = json.as_array().unwrap();
    assert_eq!(images.len(), 2);
    for (image, (arch, digest)) in images.iter().zip(&manifests) {
        assert_eq!(image["index_digest"], index.as_str());
        assert!(image["index_size"].as_u64().unwrap() > 0);
        assert_eq!(image["platform"]["architecture"], arch.as_str());
        assert_eq!(image["manifest"]["digest"], digest.as_str());
        assert!(image["manifest"]["size"].as_u64().unwrap() > 0);
    }
}

#[test]
fn a_missing_linker_says_how_to_get_one() {
    let (tmp, dir) = example_copy("multi-arch");
    edit_spec(&dir, |spec| {
        spec.replace(
            "linker = \"aarch64-linux-gnu-gcc\"",
            "linker = \"no-such-aarch64-gcc\"",
        )
    });
    let r = cargo_image(&dir)
        .args(["build", "--quiet", "--output"])
        .arg_path(&tmp.path().join("out"))
        .run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    for needle in [
        "no-such-aarch64-gcc",
        "aarch64-unknown-linux-musl",
        "[platform.\"linux/arm64\"] linker",
        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
}

#[test]
fn a_layer_shared_by_the_platforms_is_built_once() {
    let tmp = TempDir::new().unwrap();
    write_spec(tmp.path(), CONTENT_ONLY);
    let events = build_events(tmp.path(), &["--output", "out"]);
    let started = |layer: &str| {
        of_kind(&events, "layer-started")
            .iter()
            .filter(|e| e["name"].as_str().unwrap().starts_with(layer))
            .count()
    };
    assert_eq!(started("shared ["), 1, "{events:?}");
    assert_eq!(started("own ["), 2, "{events:?}");
    let finished: Vec<&Value> = of_kind(&events, "layer-finished")
        .into_iter()
        .filter(|e| e["name"].as_str().unwrap().starts_with("shared ["))
        .collect();
    assert_eq!(finished.len(), 2);
    assert_eq!(finished[0]["digest"], finished[1]["digest"]);
    assert_eq!(
        finished.iter().filter(|e| e["cached"] == true).count(),
        1,
        "one platform built it, the other took it from the store"
    );
}

#[test]
fn the_plan_has_a_branch_per_platform_and_one_index() {
    let tmp = TempDir::new().unwrap();
    write_spec(tmp.path(), CONTENT_ONLY);
    let r = cargo_image(tmp.path())
        .args(["plan", "--format", "json"])
        .run()
        .ok();
    let plan: Value = serde_json::from_str(&r.stdout).unwrap();
    let nodes = plan["nodes"].as_array().unwrap();
    let layers: Vec<(&str, &str)> = nodes
        .iter()
        .filter(|n| n["kind"] == "build-layer")
        .map(|n| (n["layer"].as_str().unwrap(), n["key"].as_str().unwrap()))
        .collect();
    assert_eq!(layers.len(), 4, "{layers:?}");
    // The shared layer has one key on both platforms (one build, one blob).
    assert_eq!(layers[0].0, "shared [linux/amd64]");
    assert_eq!(layers[2].0, "shared [linux/arm64]");
    assert_eq!(layers[0].1, layers[2].1);
    assert_ne!(layers[1].1, layers[3].1);
    let index = nodes.last().unwrap();
    assert_eq!(index["kind"], "assemble-index");
    assert_eq!(
        index["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(index["inputs"].as_array().unwrap().len(), 2);
}
