//! Round trips through the layout sink and source, checked with tools nobody here wrote
//! (`oci-image-tool`, `skopeo`).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::image::{Config, Descriptor, ImageManifest, MediaType};

use super::*;

/// Runs a peer tool; fails naming `just deps` when it is not installed.
fn tool(name: &str, args: &[&str]) -> String {
    let out = Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{name}` ({e}); install the test tools with `just deps`")
    });
    assert!(
        out.status.success(),
        "`{name} {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A tar with one file, gzip-compressed; returns (blob, diff_id).
fn gzip_layer(file: &str, content: &[u8]) -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_path(file).unwrap();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append(&header, content).unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = Digest::of(&tar).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Streams a layer into the writer's blobs dir the way the layer module does: a temporary
/// name, then a rename to the hex digest.
fn stream_layer(writer: &LayoutWriter, blob: &[u8], media_type: MediaType) -> Descriptor {
    let digest = Digest::of(blob);
    let tmp = writer.blobs_dir().join(".layer-in-progress");
    fs::write(&tmp, blob).unwrap();
    fs::rename(&tmp, writer.blobs_dir().join(digest.hex())).unwrap();
    descriptor(media_type, &digest, blob.len() as u64)
}

struct Written {
    dir: PathBuf,
    manifest: Descriptor,
    config: Descriptor,
    layer: Descriptor,
    diff_id: String,
}

/// A runtime config as a spec gives it (`env` as `NAME=value` in name order).
fn runtime() -> Config {
    let mut config = Config::default();
    config.set_entrypoint(Some(vec!["/hello".into()]));
    config.set_cmd(Some(vec!["--greet".into()]));
    config.set_env(Some(vec!["APP=1".into(), "PATH=/bin".into()]));
    config.set_working_dir(Some("/".into()));
    config.set_user(Some("1000:1000".into()));
    config.set_labels(Some(
        [("org.opencontainers.image.title".into(), "hello".into())].into(),
    ));
    config.set_exposed_ports(Some(vec!["8080/tcp".into()]));
    config.set_volumes(Some(vec!["/data".into()]));
    config.set_stop_signal(Some("SIGTERM".into()));
    config
}

/// Writes a one-layer image tagged `1.0` and `latest` to `dir`.
fn write_image(dir: &Path) -> Written {
    let writer = LayoutWriter::create(dir).unwrap();
    let (blob, diff_id) = gzip_layer("hello.txt", b"hello, world\n");
    let layer = stream_layer(&writer, &blob, MediaType::ImageLayerGzip);
    let platform = Platform::linux_amd64();
    let config = image_config(
        &platform,
        None,
        runtime(),
        std::slice::from_ref(&diff_id),
        &["app".to_string()],
        1_700_000_000,
    );
    let config = writer.write_json(MediaType::ImageConfig, &config).unwrap();
    let annotations = BTreeMap::from([(
        "org.opencontainers.image.created".to_string(),
        rfc3339(1_700_000_000),
    )]);
    let manifest = image_manifest(
        config.clone(),
        None,
        std::slice::from_ref(&layer),
        &annotations,
    );
    let manifest = writer
        .write_json(MediaType::ImageManifest, &manifest)
        .unwrap();
    let tags = ["1.0".to_string(), "latest".to_string()];
    let out = writer
        .finish(index_entries(&manifest, Some(&platform), &tags))
        .unwrap();
    Written {
        dir: out,
        manifest,
        config,
        layer,
        diff_id,
    }
}

fn validate(dir: &Path, tag: &str) {
    let out = tool(
        "oci-image-tool",
        &[
            "validate",
            "--type",
            "image",
            "--ref",
            &format!("name={tag}"),
            path_str(dir),
        ],
    );
    assert!(
        out.contains("Validation succeeded"),
        "oci-image-tool said:\n{out}"
    );
}

fn skopeo_inspect(dir: &Path, tag: &str) -> serde_json::Value {
    let out = tool(
        "skopeo",
        &["inspect", &format!("oci:{}:{tag}", path_str(dir))],
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn round_trip_checked_by_real_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_image(&tmp.path().join("image"));

    for tag in ["1.0", "latest"] {
        validate(&w.dir, tag);
        let info = skopeo_inspect(&w.dir, tag);
        assert_eq!(info["Digest"], w.manifest.digest().to_string(), "{info}");
        assert_eq!(
            info["Layers"],
            serde_json::json!([w.layer.digest().to_string()])
        );
        assert_eq!(info["Architecture"], "amd64");
        assert_eq!(info["Os"], "linux");
        assert_eq!(info["Created"], "2023-11-14T22:13:20Z");
        assert_eq!(info["Env"], serde_json::json!(["APP=1", "PATH=/bin"]));
    }
    // skopeo serves the manifest as the exact bytes we digested.
    let raw = tool(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:1.0", path_str(&w.dir))],
    );
    let stored = fs::read(
        w.dir
            .join("blobs/sha256")
            .join(w.manifest.digest().digest()),
    )
    .unwrap();
    assert_eq!(raw.as_bytes(), &stored[..]);
    assert_eq!(
        Digest::of(raw.as_bytes()).to_string(),
        w.manifest.digest().to_string()
    );

    // Our reader agrees.
    let layout = Layout::open(&w.dir).unwrap();
    assert_eq!(layout.tags(), ["1.0", "latest"]);
    let platform = Platform::linux_amd64();
    for tag in [Some("1.0"), Some("latest"), None] {
        let image = layout.resolve(tag, &platform).unwrap();
        assert_eq!(image.digest(), w.manifest.digest().to_string());
        assert_eq!(image.manifest.config(), &w.config);
        assert_eq!(image.config.rootfs().diff_ids(), &vec![w.diff_id.clone()]);
        let layer = &image.layers()[0];
        image
            .verify_blob(layer.digest().as_ref(), layer.size())
            .unwrap();
    }

    // Inspection: one image, both tags.
    let inspections = inspect(&w.dir, None).unwrap();
    assert_eq!(inspections.len(), 1);
    let i = &inspections[0];
    assert_eq!(i.tags, ["1.0", "latest"]);
    assert_eq!(i.manifest.digest, w.manifest.digest().to_string());
    assert_eq!(
        i.manifest.media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(i.config_digest, w.config.digest().to_string());
    assert_eq!(i.platform, platform);
    assert_eq!(i.created.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(i.entrypoint, Some(vec!["/hello".to_string()]));
    assert_eq!(i.cmd, Some(vec!["--greet".to_string()]));
    assert_eq!(i.env, ["APP=1", "PATH=/bin"]);
    assert_eq!(i.user.as_deref(), Some("1000:1000"));
    assert_eq!(i.exposed_ports, ["8080/tcp"]);
    assert_eq!(i.volumes, ["/data"]);
    assert_eq!(i.stop_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(i.labels["org.opencontainers.image.title"], "hello");
    assert_eq!(
        i.annotations["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(i.layers.len(), 1);
    assert_eq!(i.layers[0].digest, w.layer.digest().to_string());
    assert_eq!(i.layers[0].size, w.layer.size());
    assert_eq!(i.layers[0].diff_id.as_deref(), Some(w.diff_id.as_str()));
    assert_eq!(
        i.layers[0].created_by.as_deref(),
        Some("cargo-image layer app")
    );
    assert_eq!(inspect(&w.dir, Some("latest")).unwrap(), inspections);
    let json = serde_json::to_value(&inspections).unwrap();
    assert_eq!(json[0]["layers"][0]["created_by"], "cargo-image layer app");
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_image(&tmp.path().join("a"));
    let b = write_image(&tmp.path().join("b"));
    assert_eq!(a.manifest, b.manifest);
    assert_eq!(
        fs::read(a.dir.join("index.json")).unwrap(),
        fs::read(b.dir.join("index.json")).unwrap()
    );
}

#[test]
fn image_on_a_base_from_a_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write_image(&tmp.path().join("base"));
    let platform = Platform::linux_amd64();
    let resolved = Layout::open(&base.dir)
        .unwrap()
        .resolve(Some("1.0"), &platform)
        .unwrap();

    let target = tmp.path().join("app");
    let writer = LayoutWriter::create(&target).unwrap();
    for layer in resolved.layers() {
        let digest = layer.digest().to_string();
        resolved.verify_blob(&digest, layer.size()).unwrap();
        writer
            .import_blob(&resolved.blob_path(&digest).unwrap(), &digest)
            .unwrap();
    }
    let (blob, diff_id) = gzip_layer("app.txt", b"app\n");
    let ours = stream_layer(&writer, &blob, MediaType::ImageLayerGzip);
    let mut runtime = Config::default();
    runtime.set_entrypoint(Some(vec!["/app".into()]));
    runtime.set_env(Some(vec!["PATH=/app/bin".into()]));
    let config = image_config(
        &platform,
        Some(&resolved.config),
        runtime,
        std::slice::from_ref(&diff_id),
        &["app2".to_string()],
        0,
    );
    let config = writer.write_json(MediaType::ImageConfig, &config).unwrap();
    let manifest = image_manifest(
        config,
        Some(&resolved.manifest),
        std::slice::from_ref(&ours),
        &BTreeMap::new(),
    );
    let manifest = writer
        .write_json(MediaType::ImageManifest, &manifest)
        .unwrap();
    writer
        .finish(index_entries(
            &manifest,
            Some(&platform),
            &["v2".to_string()],
        ))
        .unwrap();

    validate(&target, "v2");
    let info = skopeo_inspect(&target, "v2");
    assert_eq!(info["Digest"], manifest.digest().to_string());
    assert_eq!(
        info["Layers"],
        serde_json::json!([base.layer.digest().to_string(), ours.digest().to_string()])
    );
    assert_eq!(info["Env"], serde_json::json!(["APP=1", "PATH=/app/bin"]));

    let i = &inspect(&target, None).unwrap()[0];
    assert_eq!(i.entrypoint, Some(vec!["/app".to_string()]));
    assert_eq!(i.cmd, None, "our entrypoint resets the base cmd");
    let created_by: Vec<_> = i
        .layers
        .iter()
        .map(|l| l.created_by.clone().unwrap())
        .collect();
    assert_eq!(
        created_by,
        ["cargo-image layer app", "cargo-image layer app2"]
    );
    let diff_ids: Vec<_> = i
        .layers
        .iter()
        .map(|l| l.diff_id.clone().unwrap())
        .collect();
    assert_eq!(diff_ids, [base.diff_id.clone(), diff_id]);
}

#[test]
fn missing_tag_lists_available_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_image(&tmp.path().join("image"));
    let layout = Layout::open(&w.dir).unwrap();
    let err = layout
        .resolve(Some("2.0"), &Platform::linux_amd64())
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::TagNotFound { .. }), "{err:?}");
    assert!(msg.contains("`2.0`"), "{msg}");
    assert!(msg.contains("available tags: 1.0, latest"), "{msg}");
    assert!(msg.contains(&w.dir.display().to_string()), "{msg}");
    assert!(matches!(
        inspect(&w.dir, Some("2.0")),
        Err(Error::TagNotFound { .. })
    ));

    let err = layout
        .resolve(Some("1.0"), &Platform::parse("linux/arm64").unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::PlatformMismatch { .. }), "{err:?}");
}

#[test]
fn several_images_without_a_tag_is_ambiguous() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_image(&tmp.path().join("image"));
    // Add a second, different image under another tag.
    let writer = LayoutWriter::create(&w.dir).unwrap();
    let old = Layout::open(&w.dir).unwrap();
    for entry in fs::read_dir(w.dir.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let digest = format!("sha256:{}", entry.file_name().to_str().unwrap());
        writer.import_blob(&entry.path(), &digest).unwrap();
    }
    let config = image_config(
        &Platform::linux_amd64(),
        None,
        Config::default(),
        &[],
        &[],
        0,
    );
    let config = writer.write_json(MediaType::ImageConfig, &config).unwrap();
    let manifest = image_manifest(config, None, &[], &BTreeMap::new());
    let manifest = writer
        .write_json(MediaType::ImageManifest, &manifest)
        .unwrap();
    let mut entries = old.index().manifests().clone();
    entries.extend(index_entries(&manifest, None, &["empty".to_string()]));
    writer.finish(entries).unwrap();

    let layout = Layout::open(&w.dir).unwrap();
    let err = layout.resolve(None, &Platform::linux_amd64()).unwrap_err();
    assert!(matches!(err, Error::AmbiguousImage { .. }), "{err:?}");
    assert!(err.to_string().contains("1.0, empty, latest"), "{err}");
    assert_eq!(inspect(&w.dir, None).unwrap().len(), 2);
    let empty = layout
        .resolve(Some("empty"), &Platform::linux_amd64())
        .unwrap();
    assert!(empty.layers().is_empty());
}

#[test]
fn corrupted_blobs_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_image(&tmp.path().join("image"));
    let blob = |d: &Descriptor| w.dir.join("blobs/sha256").join(d.digest().digest());
    let platform = Platform::linux_amd64();

    // Same size, one byte changed: the config.
    let config_path = blob(&w.config);
    let mut bytes = fs::read(&config_path).unwrap();
    let good = bytes.clone();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    fs::write(&config_path, &bytes).unwrap();
    let err = Layout::open(&w.dir)
        .unwrap()
        .resolve(Some("1.0"), &platform)
        .unwrap_err();
    match &err {
        Error::BlobDigest { digest, path, .. } => {
            assert_eq!(digest, &w.config.digest().to_string());
            assert_eq!(path, &config_path);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&w.config.digest().to_string()) && msg.contains(path_str(&config_path)),
        "{msg}"
    );
    fs::write(&config_path, &good).unwrap();

    // Truncated manifest.
    let manifest_path = blob(&w.manifest);
    let bytes = fs::read(&manifest_path).unwrap();
    fs::write(&manifest_path, &bytes[..bytes.len() - 1]).unwrap();
    let err = Layout::open(&w.dir)
        .unwrap()
        .resolve(None, &platform)
        .unwrap_err();
    assert!(matches!(err, Error::BlobSize { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&w.manifest.digest().to_string()),
        "{err}"
    );
    fs::write(&manifest_path, &bytes).unwrap();

    // A corrupted layer: resolve reads only manifest and config, verify_blob streams the layer.
    let image = Layout::open(&w.dir)
        .unwrap()
        .resolve(None, &platform)
        .unwrap();
    let layer_path = blob(&w.layer);
    let mut bytes = fs::read(&layer_path).unwrap();
    bytes[20] ^= 0xff;
    fs::write(&layer_path, &bytes).unwrap();
    let err = image
        .verify_blob(w.layer.digest().as_ref(), w.layer.size())
        .unwrap_err();
    assert!(matches!(err, Error::BlobDigest { .. }), "{err:?}");
    fs::remove_file(&layer_path).unwrap();
    let err = image
        .verify_blob(w.layer.digest().as_ref(), w.layer.size())
        .unwrap_err();
    assert!(matches!(err, Error::ReadBlob { .. }), "{err:?}");
}

#[test]
fn not_a_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Layout::open(tmp.path()).unwrap_err();
    assert!(matches!(err, Error::NotALayout { .. }), "{err:?}");
    assert!(err.to_string().contains(path_str(tmp.path())));
    fs::write(
        tmp.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    assert!(matches!(
        Layout::open(tmp.path()).unwrap_err(),
        Error::LayoutVersion { .. }
    ));
}

/// Writes a blob by hand into a finished layout (for documents our builders never make).
fn put_json(dir: &Path, value: &serde_json::Value) -> (Digest, u64) {
    let bytes = to_canonical_json(value).unwrap();
    let digest = Digest::of(&bytes);
    fs::write(dir.join("blobs/sha256").join(digest.hex()), &bytes).unwrap();
    (digest, bytes.len() as u64)
}

#[test]
fn index_is_followed_to_the_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_image(&tmp.path().join("image"));
    // An arm64 image sharing the amd64 layer, and an index of both.
    let arm = Platform::parse("linux/arm64/v8").unwrap();
    let config = image_config(
        &arm,
        None,
        Config::default(),
        std::slice::from_ref(&w.diff_id),
        &["app".to_string()],
        0,
    );
    let config = serde_json::to_value(&config).unwrap();
    let (cd, cs) = put_json(&w.dir, &config);
    let manifest = image_manifest(
        descriptor(MediaType::ImageConfig, &cd, cs),
        None,
        std::slice::from_ref(&w.layer),
        &BTreeMap::new(),
    );
    let (md, ms) = put_json(&w.dir, &serde_json::to_value(&manifest).unwrap());
    let mut amd_entry = w.manifest.clone();
    amd_entry.set_platform(Some(Platform::linux_amd64().to_oci()));
    let mut arm_entry = descriptor(MediaType::ImageManifest, &md, ms);
    arm_entry.set_platform(Some(arm.to_oci()));
    let index = image_index(vec![amd_entry, arm_entry]);
    let (id, is) = put_json(&w.dir, &serde_json::to_value(&index).unwrap());
    let top = index_entries(
        &descriptor(MediaType::ImageIndex, &id, is),
        None,
        &["multi".into()],
    );
    let top = to_canonical_json(&image_index(top)).unwrap();
    fs::write(w.dir.join("index.json"), top).unwrap();

    let layout = Layout::open(&w.dir).unwrap();
    let amd = layout
        .resolve(Some("multi"), &Platform::linux_amd64())
        .unwrap();
    assert_eq!(amd.digest(), w.manifest.digest().to_string());
    assert_eq!(
        amd.index.as_ref().unwrap().digest().to_string(),
        id.to_string()
    );
    let arm64 = layout
        .resolve(Some("multi"), &Platform::parse("linux/arm64").unwrap())
        .unwrap();
    assert_eq!(arm64.digest(), md.to_string());
    let err = layout
        .resolve(Some("multi"), &Platform::parse("linux/s390x").unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::PlatformNotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains("linux/amd64, linux/arm64/v8"),
        "{err}"
    );

    let all = inspect(&w.dir, None).unwrap();
    let platforms: Vec<String> = all.iter().map(|i| i.platform.to_string()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert!(all
        .iter()
        .all(|i| i.index_digest.as_deref() == Some(&id.to_string()[..])));
    assert!(all.iter().all(|i| i.tags == ["multi"]));
}

#[test]
fn docker_media_types_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_image(&tmp.path().join("image"));
    // The same image, described with Docker v2 schema 2 media types.
    let config_bytes =
        fs::read(w.dir.join("blobs/sha256").join(w.config.digest().digest())).unwrap();
    let config = Digest::of(&config_bytes);
    let mut layer = w.layer.clone();
    layer.set_media_type(MediaType::Other(DOCKER_LAYER_GZIP.into()));
    let mut manifest: ImageManifest = image_manifest(
        descriptor(
            MediaType::Other(DOCKER_CONFIG.into()),
            &config,
            config_bytes.len() as u64,
        ),
        None,
        &[layer],
        &BTreeMap::new(),
    );
    manifest.set_media_type(Some(MediaType::Other(DOCKER_MANIFEST.into())));
    let (md, ms) = put_json(&w.dir, &serde_json::to_value(&manifest).unwrap());
    let entries = index_entries(
        &descriptor(MediaType::Other(DOCKER_MANIFEST.into()), &md, ms),
        None,
        &["docker".into()],
    );
    fs::write(
        w.dir.join("index.json"),
        to_canonical_json(&image_index(entries)).unwrap(),
    )
    .unwrap();

    let image = Layout::open(&w.dir)
        .unwrap()
        .resolve(Some("docker"), &Platform::linux_amd64())
        .unwrap();
    assert_eq!(image.digest(), md.to_string());
    assert_eq!(
        layer_compression(image.layers()[0].media_type()),
        Some(crate::types::Compression::Gzip)
    );
    // (skopeo's `oci:` transport only considers index entries of OCI media types, so it
    // cannot be the peer here; buildx writes such layouts with `oci-mediatypes=false`.)
}
