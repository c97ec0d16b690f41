//! Base images are untrusted input: an endless, blocking or lying base ends in a clear error,
//! within bounded time, memory and disk, and leaves no temporary file behind.
//!
//! Each test runs the binary under `timeout` and `prlimit` (address space and file size), so a
//! regression fails the test (killed, or a timeout exit code) instead of hanging or filling the
//! machine.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_oci_image_test_support::*;

/// Wall-clock limit of one run, in seconds: a hang ends as exit code 124.
const TIME_LIMIT: &str = "60";
/// Address-space limit of one run: an unbounded read aborts on allocation instead of eating the
/// machine (a sound build of these small images needs far less).
const MEMORY_LIMIT: &str = "--as=3221225472";
/// File-size limit of one run: an unbounded copy dies of SIGXFSZ instead of filling the disk.
const FILE_LIMIT: &str = "--fsize=268435456";

/// The base: one gzip layer with one file, built by cargo-image itself.
const BASE_SPEC: &str = r#"
name = "base"
tags = ["latest"]
[config]
cmd = ["/bin/true"]
[[layer]]
name = "files"
[[layer.add]]
content = "from the base\n"
dest = "/etc/base"
"#;

/// The image built on the base.
const APP_SPEC: &str = r#"
name = "app"
from = "oci:../base-layout:latest"
[[layer]]
name = "top"
[[layer.add]]
content = "on top\n"
dest = "/etc/top"
"#;

/// A temporary directory with a base layout (`base-layout`), an app project (`app`) on it and
/// a store (`store`).
struct World {
    tmp: TempDir,
}

impl World {
    fn new() -> World {
        let tmp = TempDir::new().unwrap();
        build_base_layout(tmp.path(), BASE_SPEC);
        write_spec(&tmp.path().join("app"), APP_SPEC);
        World { tmp }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn base(&self) -> PathBuf {
        self.path("base-layout")
    }

    fn manifest(&self) -> Value {
        blob_json(&self.base(), &manifest_digest(&self.base()))
    }

    /// The base's only layer: its descriptor and the path of its blob.
    fn layer(&self) -> (Value, PathBuf) {
        let layer = self.manifest()["layers"][0].clone();
        let path = blob_path(&self.base(), layer["digest"].as_str().unwrap());
        (layer, path)
    }

    /// `cargo-image build` of the app, bounded; the store is `store`.
    fn build_app(&self) -> Run {
        bounded(
            &self.path("app"),
            &[
                "build".as_ref(),
                "--output".as_ref(),
                self.path("out").as_os_str(),
                "--store".as_ref(),
                self.path("store").as_os_str(),
            ],
        )
    }

    /// Builds the app expecting an error; checks nothing was written and no temporary file
    /// is left in the store or beside it. Returns stderr.
    fn build_fails(&self) -> String {
        let r = self.build_app();
        assert_eq!(
            r.code,
            Some(1),
            "expected a clear error (exit code 1), not a crash, kill (memory/file limit) or timeout (124)\n{}\n{}",
            r.stdout,
            r.stderr
        );
        assert!(
            !self.path("out").exists(),
            "a failed build wrote its output"
        );
        assert_no_temp_files(self.tmp.path());
        r.stderr
    }

    /// Replaces the base's manifest with `edit` applied to it (the index points at the new one).
    fn edit_manifest(&self, edit: impl FnOnce(&mut Value)) {
        let mut manifest = self.manifest();
        edit(&mut manifest);
        let (digest, size) = write_blob(&self.base(), &manifest);
        let index_path = self.base().join("index.json");
        let mut index = read_json(&index_path);
        index["manifests"][0]["digest"] = digest.into();
        index["manifests"][0]["size"] = size.into();
        std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// Replaces the base's config with `edit` applied to it (a new manifest points at it).
    fn edit_config(&self, edit: impl FnOnce(&mut Value)) {
        let manifest = self.manifest();
        let mut config = blob_json(&self.base(), manifest["config"]["digest"].as_str().unwrap());
        edit(&mut config);
        let (digest, size) = write_blob(&self.base(), &config);
        self.edit_manifest(|m| {
            m["config"]["digest"] = digest.into();
            m["config"]["size"] = size.into();
        });
    }
}

/// Writes `doc` as a blob of `layout`; returns its digest and size.
fn write_blob(layout: &Path, doc: &Value) -> (String, u64) {
    let bytes = serde_json::to_vec(doc).unwrap();
    let tmp = layout.join("blob.json");
    std::fs::write(&tmp, &bytes).unwrap();
    let digest = sha256_file(&tmp);
    std::fs::rename(&tmp, blob_path(layout, &digest)).unwrap();
    (digest, bytes.len() as u64)
}

/// Replaces `path` by a symbolic link to `target`.
fn replace_with_link(path: &Path, target: &str) {
    std::fs::remove_file(path).unwrap();
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// Replaces `path` by a FIFO nobody writes to.
fn replace_with_fifo(path: &Path) {
    std::fs::remove_file(path).unwrap();
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Runs `cargo-image ARGS` in `dir` under `timeout` and `prlimit` (see the limits above).
fn bounded(dir: &Path, args: &[&std::ffi::OsStr]) -> Run {
    require("prlimit");
    require("timeout");
    cargo_image(dir).args(args).run_under([
        "timeout",
        "-k",
        "5",
        TIME_LIMIT,
        "prlimit",
        MEMORY_LIMIT,
        FILE_LIMIT,
        "--",
    ])
}

/// No `.tmp-*` file and no unpacked base (`.cargo-image-base-*`) anywhere under `root`.
fn assert_no_temp_files(root: &Path) {
    for path in walk(root) {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            !name.starts_with(".tmp-") && !name.starts_with(".cargo-image-base-"),
            "temporary file left behind: {}",
            path.display()
        );
    }
}

#[test]
fn a_sound_base_builds_under_the_limits_these_tests_use() {
    let w = World::new();
    let r = w.build_app();
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_no_temp_files(&w.path("store"));
}

#[test]
fn a_base_layer_blob_linked_to_dev_zero_is_refused_without_filling_the_disk() {
    let w = World::new();
    let (layer, path) = w.layer();
    replace_with_link(&path, "/dev/zero");
    let err = w.build_fails();
    assert!(err.contains("character device"), "{err}");
    assert!(
        err.contains(layer["digest"].as_str().unwrap())
            || err.contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_base_layer_blob_that_is_a_fifo_is_refused_without_blocking() {
    let w = World::new();
    let (_, path) = w.layer();
    replace_with_fifo(&path);
    let err = w.build_fails();
    assert!(err.contains("FIFO"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn a_base_index_json_linked_to_dev_zero_is_refused_without_eating_memory() {
    let w = World::new();
    replace_with_link(&w.base().join("index.json"), "/dev/zero");
    let err = w.build_fails();
    assert!(err.contains("index.json"), "{err}");
    assert!(err.contains("character device"), "{err}");
}

#[test]
fn a_base_index_json_larger_than_the_limit_is_refused() {
    let w = World::new();
    let index_path = w.base().join("index.json");
    let mut bytes = std::fs::read(&index_path).unwrap();
    // Still valid JSON: trailing white space past the 4 MiB limit.
    bytes.resize(5 << 20, b' ');
    std::fs::write(&index_path, bytes).unwrap();
    let err = w.build_fails();
    assert!(err.contains("index.json"), "{err}");
    assert!(err.contains("4194304 bytes"), "names the limit: {err}");
}

#[test]
fn inspect_of_a_layout_whose_index_json_is_dev_zero_fails_within_bounds() {
    let w = World::new();
    replace_with_link(&w.base().join("index.json"), "/dev/zero");
    let r = bounded(w.tmp.path(), &["inspect".as_ref(), w.base().as_os_str()]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("character device"), "{}", r.stderr);
}

#[test]
fn a_base_layer_whose_size_lies_is_refused_naming_the_layer() {
    let w = World::new();
    let (layer, _) = w.layer();
    let size = layer["size"].as_u64().unwrap();
    w.edit_manifest(|m| m["layers"][0]["size"] = (size + 1).into());
    let err = w.build_fails();
    assert!(err.contains(layer["digest"].as_str().unwrap()), "{err}");
    assert!(err.contains(&format!("{}", size + 1)), "{err}");
    assert!(err.contains("oci:"), "names the base: {err}");
}

#[test]
fn a_base_layer_whose_media_type_lies_is_refused_naming_the_layer() {
    for lie in [
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.v1.tar",
    ] {
        let w = World::new();
        let (layer, _) = w.layer();
        w.edit_manifest(|m| m["layers"][0]["mediaType"] = lie.into());
        let err = w.build_fails();
        assert!(
            err.contains(layer["digest"].as_str().unwrap()),
            "{lie}: {err}"
        );
        assert!(err.contains(lie), "{lie}: {err}");
        assert!(err.contains("gzip"), "says what the bytes are: {err}");
    }
}

#[test]
fn a_base_whose_diff_ids_do_not_match_its_layers_is_refused() {
    let w = World::new();
    let (layer, _) = w.layer();
    let wrong = format!("sha256:{}", "0".repeat(64));
    w.edit_config(|c| c["rootfs"]["diff_ids"][0] = wrong.clone().into());
    let err = w.build_fails();
    assert!(err.contains(layer["digest"].as_str().unwrap()), "{err}");
    assert!(err.contains(&wrong), "{err}");
    assert!(err.contains("oci:"), "names the base: {err}");
}

#[test]
fn a_base_with_more_diff_ids_than_layers_is_refused() {
    let w = World::new();
    let extra = format!("sha256:{}", "1".repeat(64));
    w.edit_config(|c| {
        c["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap()
            .push(extra.into())
    });
    let err = w.build_fails();
    assert!(err.contains("diff_ids"), "{err}");
}

#[test]
fn a_lying_diff_id_is_caught_on_a_warm_store_too() {
    let w = World::new();
    // A first, sound build puts the base layer in the store.
    assert_eq!(w.build_app().code, Some(0));
    std::fs::remove_dir_all(w.path("out")).unwrap();
    let wrong = format!("sha256:{}", "2".repeat(64));
    w.edit_config(|c| c["rootfs"]["diff_ids"][0] = wrong.clone().into());
    let err = w.build_fails();
    assert!(err.contains(&wrong), "{err}");
}

/// Pads the JSON file at `path` with trailing white space (still valid JSON) to 5 MiB, past the
/// 4 MiB limit of image documents.
fn pad_past_the_limit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.resize(5 << 20, b' ');
    std::fs::write(path, bytes).unwrap();
}

/// Builds the app on `from` (an archive base), expecting a clear error. Returns stderr.
fn build_on_archive_fails(w: &World, from: &str) -> String {
    write_spec(
        &w.path("app"),
        &APP_SPEC.replace("oci:../base-layout:latest", from),
    );
    w.build_fails()
}

#[test]
fn an_oci_archive_whose_index_json_is_larger_than_the_limit_is_refused() {
    let w = World::new();
    pad_past_the_limit(&w.base().join("index.json"));
    let archive = w.path("base.tar");
    run(
        "tar",
        [
            "-cf".as_ref(),
            archive.as_os_str(),
            "-C".as_ref(),
            w.base().as_os_str(),
            ".".as_ref(),
        ],
        w.tmp.path(),
    )
    .ok();
    let err = build_on_archive_fails(&w, "oci-archive:../base.tar:latest");
    assert!(err.contains("index.json"), "{err}");
    assert!(err.contains("4194304 bytes"), "names the limit: {err}");
}

#[test]
fn a_docker_archive_whose_manifest_json_is_larger_than_the_limit_is_refused() {
    let w = World::new();
    let base_dir = w.path("base");
    let docker = w.path("base.docker.tar");
    build_with_format(&base_dir, "docker-archive", &docker)
        .run()
        .ok();
    let unpacked = w.path("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run(
        "tar",
        [
            "-xf".as_ref(),
            docker.as_os_str(),
            "-C".as_ref(),
            unpacked.as_os_str(),
        ],
        w.tmp.path(),
    )
    .ok();
    pad_past_the_limit(&unpacked.join("manifest.json"));
    let repacked = w.path("padded.docker.tar");
    run(
        "tar",
        [
            "-cf".as_ref(),
            repacked.as_os_str(),
            "-C".as_ref(),
            unpacked.as_os_str(),
            ".".as_ref(),
        ],
        w.tmp.path(),
    )
    .ok();
    let err = build_on_archive_fails(&w, "docker-archive:../padded.docker.tar");
    assert!(err.contains("manifest.json"), "{err}");
    assert!(err.contains("4194304 bytes"), "names the limit: {err}");
}

/// A registry on loopback that answers every blob request with an endless body, and every
/// manifest request either with a manifest whose config descriptor claims 1 GiB or (with
/// `endless_manifest`) with an endless body too. Returns its `host:port`.
fn hostile_registry(endless_manifest: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve_hostile(stream, endless_manifest));
        }
    });
    addr
}

fn serve_hostile(stream: TcpStream, endless_manifest: bool) {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", "3".repeat(64)),
            "size": 1u64 << 30,
        },
        "layers": [],
    })
    .to_string();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0
            || !(request.starts_with("GET ") || request.starts_with("HEAD "))
        {
            return; // closed, or a TLS probe: not HTTP
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
        }
        let (content_type, body) = if request.contains("/manifests/") && !endless_manifest {
            (
                "application/vnd.oci.image.manifest.v1+json",
                manifest.as_str(),
            )
        } else if request.contains("/blobs/") || request.contains("/manifests/") {
            // An endless body: as much as the client reads.
            let content_type = if request.contains("/blobs/") {
                "application/octet-stream"
            } else {
                "application/vnd.oci.image.manifest.v1+json"
            };
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n");
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = [
                format!("{:x}\r\n", 1 << 20).into_bytes(),
                vec![0; 1 << 20],
                b"\r\n".to_vec(),
            ]
            .concat();
            while out.write_all(&chunk).is_ok() {}
            return;
        } else {
            ("application/json", "{}")
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(body.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn a_registry_image_whose_config_claims_a_gigabyte_is_refused_before_downloading_it() {
    refused_within_bounds(&hostile_registry(false), "huge-config");
}

#[test]
fn a_registry_answering_a_manifest_request_with_an_endless_body_is_refused_within_bounds() {
    refused_within_bounds(&hostile_registry(true), "endless-manifest");
}

/// Building on `REGISTRY/REPO:latest` fails with exit code 1 (not a kill by the limits, not a
/// timeout), naming the 4 MiB limit and the reference, and leaves no temporary file.
fn refused_within_bounds(registry: &str, repo: &str) {
    let tmp = TempDir::new().unwrap();
    let app = write_spec(
        &tmp.path().join("app"),
        &APP_SPEC.replace(
            "oci:../base-layout:latest",
            &format!("{registry}/{repo}:latest"),
        ),
    );
    let r = bounded(
        &app,
        &[
            "build".as_ref(),
            "--output".as_ref(),
            tmp.path().join("out").as_os_str(),
            "--store".as_ref(),
            tmp.path().join("store").as_os_str(),
        ],
    );
    assert_eq!(
        r.code,
        Some(1),
        "expected a clear error, not a kill (file-size limit) or timeout (124)\n{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains("4194304"),
        "names the limit: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("{registry}/{repo}")),
        "names the reference: {}",
        r.stderr
    );
    assert_no_temp_files(tmp.path());
}
