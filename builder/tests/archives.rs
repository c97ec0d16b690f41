//! OCI and Docker archives, written and read, checked with tools nobody here wrote (`skopeo`,
//! `podman`, `umoci`): images built by the library (gzip and zstd layers) go out as archives the
//! tools read and load; archives the tools write open as layouts; hostile archives are refused.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use cargo_oci_image::build::{self, BuildOptions, BuildOutput};
use cargo_oci_image::oci::*;
use cargo_oci_image_test_support::run_command;

/// Runs a peer tool, which must succeed, and returns its stdout.
fn tool(name: &str, args: &[&str]) -> String {
    run_command(Command::new(name).args(args)).ok().stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

const EPOCH: u64 = 1_700_000_000;

/// Builds a two-layer image with `compression`, tagged `latest` and `1.0`, into `dir/out`.
fn build_image(dir: &Path, compression: &str) -> BuildOutput {
    let spec = dir.join("image.toml");
    fs::write(
        &spec,
        format!(
            r#"name = "archive-test"
tags = ["latest", "1.0"]
epoch = {EPOCH}
compression = "{compression}"

[config]
entrypoint = ["/bin/hello"]
env = {{ GREETING = "hi" }}

[[layer]]
name = "etc"
[[layer.add]]
content = "first layer\n"
dest = "/etc/one.txt"

[[layer]]
name = "srv"
[[layer.add]]
content = "second layer, {compression}\n"
dest = "/srv/two.txt"
[[layer.add]]
dir = true
dest = "/data"
"#
        ),
    )
    .unwrap();
    let opts = BuildOptions {
        output: Some(dir.join("out")),
        store: Some(dir.join("store")),
        ..BuildOptions::default()
    };
    build::build(&spec, &opts, &|_| {}).expect("build the test image")
}

/// The names of the entries of a tar, with their mode, owner and mtime, in archive order.
fn tar_listing(path: &Path) -> Vec<(String, u32, u64, u64, u64)> {
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
            )
        })
        .collect()
}

/// Every file and directory under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Copies a layout, files in reverse order, each with a different mtime.
fn shuffled_copy(src: &Path, dest: &Path) {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(src)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.reverse();
    for (i, file) in files.iter().enumerate() {
        let to = dest.join(file.strip_prefix(src).unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(file, &to).unwrap();
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + i as u64 * 7919);
        fs::File::options()
            .write(true)
            .open(&to)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    // A writer's in-progress file is left out of the archive.
    fs::write(dest.join("blobs/sha256/.blob-in-progress"), b"partial").unwrap();
}

#[test]
fn oci_archive_is_read_by_skopeo_and_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path(), "gzip");
    let archive = dir.path().join("image.tar");
    write_oci_archive(&image.path, &archive, EPOCH).unwrap();

    let spec = format!("oci-archive:{}:latest", s(&archive));
    let inspect = json(&tool("skopeo", &["inspect", &spec]));
    assert_eq!(inspect["Digest"], image.manifest_digest.as_str());

    let copy = dir.path().join("copy");
    tool(
        "skopeo",
        &["copy", "--quiet", &spec, &format!("oci:{}:t", s(&copy))],
    );
    let copied = json(&tool(
        "skopeo",
        &["inspect", &format!("oci:{}:t", s(&copy))],
    ));
    assert_eq!(copied["Digest"], image.manifest_digest.as_str());

    // Entries: sorted, parents first, owner 0:0, fixed modes and mtime.
    let listing = tar_listing(&archive);
    let names: Vec<&str> = listing.iter().map(|e| e.0.as_str()).collect();
    let mut expected = vec!["blobs/".to_string(), "blobs/sha256/".to_string()];
    let mut blobs = tree(&image.path.join("blobs/sha256"));
    blobs.sort();
    expected.extend(blobs.iter().map(|b| format!("blobs/sha256/{b}")));
    expected.extend(["index.json".to_string(), "oci-layout".to_string()]);
    assert_eq!(names, expected);
    for (name, mode, uid, gid, mtime) in &listing {
        let want = if name.ends_with('/') { 0o755 } else { 0o644 };
        assert_eq!((*mode, *uid, *gid, *mtime), (want, 0, 0, EPOCH), "{name}");
    }

    // Our source reads it back: the same image.
    let scratch = dir.path().join("scratch");
    let layout = open_oci_archive(&archive, &scratch).unwrap();
    assert_eq!(layout.path(), scratch);
    let resolved = layout
        .resolve(Some("1.0"), &Platform::linux_amd64())
        .unwrap();
    assert_eq!(resolved.digest(), image.manifest_digest);
    for layer in resolved.layers() {
        resolved
            .verify_blob(layer.digest().as_ref(), layer.size())
            .unwrap();
    }
}

#[test]
fn oci_archive_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path(), "zstd");
    let first = dir.path().join("first.tar");
    write_oci_archive(&image.path, &first, 0).unwrap();

    let copy = dir.path().join("shuffled");
    shuffled_copy(&image.path, &copy);
    let second = dir.path().join("second.tar");
    write_oci_archive(&copy, &second, 0).unwrap();
    assert!(
        fs::read(&first).unwrap() == fs::read(&second).unwrap(),
        "two archives of the same layout differ"
    );
    // Rewriting in place gives the same bytes too, and leaves no temporary file.
    write_oci_archive(&copy, &second, 0).unwrap();
    assert!(fs::read(&first).unwrap() == fs::read(&second).unwrap());
    let leftovers: Vec<String> = tree(dir.path())
        .into_iter()
        .filter(|n| !n.contains('/') && n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // The mtime is the only thing the caller chooses.
    let dated = dir.path().join("dated.tar");
    write_oci_archive(&image.path, &dated, EPOCH).unwrap();
    assert!(fs::read(&first).unwrap() != fs::read(&dated).unwrap());
    assert!(tar_listing(&dated).iter().all(|e| e.4 == EPOCH));

    // zstd layers are archived as they are: skopeo reads the image.
    let inspect = json(&tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}:latest", s(&dated))],
    ));
    assert_eq!(inspect["Digest"], image.manifest_digest.as_str());
}

#[test]
fn failed_oci_archive_keeps_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path(), "gzip");
    let archive = dir.path().join("archives").join("image.tar");
    write_oci_archive(&image.path, &archive, 0).unwrap();
    let before = fs::read(&archive).unwrap();

    // A corrupt blob: the archive is not replaced, and no temporary file stays.
    let layout = dir.path().join("corrupt");
    shuffled_copy(&image.path, &layout);
    let resolved = Layout::open(&layout)
        .unwrap()
        .resolve(Some("latest"), &Platform::linux_amd64())
        .unwrap();
    let layer = resolved.layers()[0].digest().to_string();
    let blob = resolved.blob_path(&layer).unwrap();
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    let err = write_oci_archive(&layout, &archive, 0).unwrap_err();
    assert!(matches!(err, Error::BlobDigest { .. }), "{err:?}");
    assert!(err.to_string().contains(&layer), "{err}");
    assert_eq!(fs::read(&archive).unwrap(), before);
    assert_eq!(tree(&dir.path().join("archives")), ["image.tar"]);

    // A directory is never replaced by an archive.
    let err = write_oci_archive(&image.path, &image.path, 0).unwrap_err();
    assert!(matches!(err, Error::RefuseArchiveOutput { .. }), "{err:?}");
    assert!(image.path.join("oci-layout").is_file());
    // Not a layout.
    let err = write_oci_archive(&dir.path().join("archives"), &archive, 0).unwrap_err();
    assert!(matches!(err, Error::NotALayout { .. }), "{err:?}");
}

fn podman(root: &Path, args: &[&str]) -> String {
    let (store, run) = (root.join("root"), root.join("runroot"));
    let storage = [
        "--storage-driver=vfs",
        "--root",
        s(&store),
        "--runroot",
        s(&run),
    ];
    let all: Vec<&str> = storage.iter().chain(args).copied().collect();
    tool("podman", &all)
}

#[test]
fn docker_archive_is_loaded_by_podman_and_skopeo() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path(), "gzip");
    let archive = dir.path().join("docker.tar");
    let tags = vec![
        "archive-test:latest".to_string(),
        "archive-test:1.0".to_string(),
    ];
    write_docker_archive(&image.path, Some("latest"), &tags, &archive, EPOCH).unwrap();

    let resolved = Layout::open(&image.path)
        .unwrap()
        .resolve(Some("latest"), &Platform::linux_amd64())
        .unwrap();
    let config_digest = resolved.manifest.config().digest().to_string();
    let diff_ids = resolved.config.rootfs().diff_ids().clone();

    // skopeo: the tags, the layers (uncompressed: named by their diff_ids), the same config.
    let listed = json(&tool(
        "skopeo",
        &["list-tags", &format!("docker-archive:{}", s(&archive))],
    ));
    assert_eq!(
        listed["Tags"],
        serde_json::json!(["archive-test:latest", "archive-test:1.0"])
    );
    let spec = format!("docker-archive:{}", s(&archive));
    let inspect = json(&tool("skopeo", &["inspect", &spec]));
    assert_eq!(inspect["Layers"], serde_json::json!(diff_ids));
    let raw = json(&tool("skopeo", &["inspect", "--raw", &spec]));
    assert_eq!(raw["config"]["digest"], config_digest.as_str());
    let config = tool("skopeo", &["inspect", "--config", "--raw", &spec]);
    assert_eq!(config.as_bytes(), resolved.config_bytes);

    // podman load: the image id is the config digest, both tags point at it.
    let out = podman(dir.path(), &["load", "-i", s(&archive)]);
    assert!(out.contains("Loaded image"), "{out}");
    for tag in &tags {
        let id = podman(
            dir.path(),
            &["image", "inspect", "--format", "{{.Id}}", tag],
        );
        assert_eq!(
            format!("sha256:{}", id.trim()),
            config_digest,
            "podman image {tag}"
        );
    }

    // Our source reads the archive back: same config, layers now uncompressed.
    let scratch = dir.path().join("scratch");
    let layout = open_docker_archive(&archive, &scratch).unwrap();
    let back = layout
        .resolve(Some("archive-test:1.0"), &Platform::linux_amd64())
        .unwrap();
    assert_eq!(back.config_bytes, resolved.config_bytes);
    let by_tag = layout
        .resolve(Some("latest"), &Platform::linux_amd64())
        .unwrap();
    assert_eq!(by_tag.digest(), back.digest());
    for (layer, diff_id) in back.layers().iter().zip(&diff_ids) {
        assert_eq!(layer.media_type(), &oci_spec::image::MediaType::ImageLayer);
        assert_eq!(layer.digest().as_ref(), diff_id);
        back.verify_blob(layer.digest().as_ref(), layer.size())
            .unwrap();
    }
    assert!(!scratch.join(".docker-archive").exists());
}

#[test]
fn docker_archive_of_a_zstd_image_is_uncompressed_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path(), "zstd");
    let archive = dir.path().join("docker.tar");
    let tags = vec!["registry.example:5000/team/archive-test:zstd".to_string()];
    write_docker_archive(&image.path, Some("1.0"), &tags, &archive, 0).unwrap();

    // Deterministic, whatever the layout's dates and order.
    let copy = dir.path().join("shuffled");
    shuffled_copy(&image.path, &copy);
    let again = dir.path().join("again.tar");
    write_docker_archive(&copy, Some("1.0"), &tags, &again, 0).unwrap();
    assert!(fs::read(&archive).unwrap() == fs::read(&again).unwrap());

    let listing = tar_listing(&archive);
    let names: Vec<&str> = listing.iter().map(|e| e.0.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| {
        let parts = |s: &str| -> Vec<String> {
            s.trim_end_matches('/')
                .split('/')
                .map(String::from)
                .collect()
        };
        parts(a).cmp(&parts(b))
    });
    assert_eq!(names, sorted);
    assert_eq!(listing.len(), 2 * 4 + 3, "{names:?}");
    assert!(names.contains(&"manifest.json") && names.contains(&"repositories"));
    for (name, mode, uid, gid, mtime) in &listing {
        let want = if name.ends_with('/') { 0o755 } else { 0o644 };
        assert_eq!((*mode, *uid, *gid, *mtime), (want, 0, 0, 0), "{name}");
    }
    let mut tar = tar::Archive::new(fs::File::open(&archive).unwrap());
    let mut docs = std::collections::BTreeMap::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" || name == "repositories" {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            docs.insert(name, json(&text));
        }
    }
    let manifest = &docs["manifest.json"][0];
    assert_eq!(manifest["RepoTags"], serde_json::json!(tags));
    let top = manifest["Layers"][1].as_str().unwrap();
    let top_id = top.strip_suffix("/layer.tar").unwrap();
    assert_eq!(
        docs["repositories"],
        serde_json::json!({"registry.example:5000/team/archive-test": {"zstd": top_id}})
    );

    // skopeo reads it; its copy unpacks with umoci and holds our files.
    let spec = format!("docker-archive:{}", s(&archive));
    let inspect = json(&tool("skopeo", &["inspect", &spec]));
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    let copy = dir.path().join("copy");
    tool(
        "skopeo",
        &["copy", "--quiet", &spec, &format!("oci:{}:t", s(&copy))],
    );
    let bundle = dir.path().join("bundle");
    tool(
        "umoci",
        &["unpack", "--image", &format!("{}:t", s(&copy)), s(&bundle)],
    );
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/one.txt")).unwrap(),
        "first layer\n"
    );
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/srv/two.txt")).unwrap(),
        "second layer, zstd\n"
    );
    assert!(bundle.join("rootfs/data").is_dir());

    // podman loads it too (zstd would not load in older podman releases).
    let out = podman(dir.path(), &["load", "-i", s(&archive)]);
    assert!(out.contains("Loaded image"), "{out}");
}

#[test]
fn docker_archive_names_must_have_tags() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path(), "gzip");
    let dest = dir.path().join("d.tar");
    for bad in [
        "hello",
        "localhost:5000/hello",
        "hello@sha256:00",
        "hello:",
        "a b:c",
    ] {
        let err = write_docker_archive(&image.path, Some("latest"), &[bad.to_string()], &dest, 0)
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidRepoTag { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains(bad), "{err}");
    }
    assert!(!dest.exists());
    // No names at all is a valid (untagged) archive: `RepoTags` null, no `repositories`.
    write_docker_archive(&image.path, Some("latest"), &[], &dest, 0).unwrap();
    let names: Vec<String> = tar_listing(&dest).into_iter().map(|e| e.0).collect();
    assert!(!names.contains(&"repositories".to_string()), "{names:?}");
    let layout = open_docker_archive(&dest, &dir.path().join("scratch")).unwrap();
    assert_eq!(layout.tags(), ["latest"]);
}

/// A layout written by skopeo from ours, for the source tests.
fn skopeo_layout(dir: &Path) -> (BuildOutput, PathBuf) {
    let image = build_image(dir, "gzip");
    let layout = dir.join("skopeo-layout");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{}:latest", s(&image.path)),
            &format!("oci:{}:latest", s(&layout)),
        ],
    );
    (image, layout)
}

#[test]
fn archives_made_by_skopeo_open_as_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let (image, layout) = skopeo_layout(dir.path());
    let platform = Platform::linux_amd64();
    let original = Layout::open(&image.path)
        .unwrap()
        .resolve(Some("latest"), &platform)
        .unwrap();

    // oci-archive: the very same image.
    let oci = dir.path().join("oci.tar");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{}:latest", s(&layout)),
            &format!("oci-archive:{}", s(&oci)),
        ],
    );
    let opened = open_oci_archive(&oci, &dir.path().join("scratch-oci")).unwrap();
    let resolved = opened.resolve(None, &platform).unwrap();
    assert_eq!(resolved.digest(), image.manifest_digest);
    for layer in resolved.layers() {
        resolved
            .verify_blob(layer.digest().as_ref(), layer.size())
            .unwrap();
    }

    // docker-archive (layers uncompressed, behind symlinks): the same config and diff_ids.
    let docker = dir.path().join("docker.tar");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{}:latest", s(&layout)),
            &format!("docker-archive:{}:name:tag", s(&docker)),
        ],
    );
    let opened = open_docker_archive(&docker, &dir.path().join("scratch-docker")).unwrap();
    assert_eq!(opened.tags(), ["docker.io/library/name:tag"]);
    for tag in ["tag", "docker.io/library/name:tag"] {
        let resolved = opened.resolve(Some(tag), &platform).unwrap();
        assert_eq!(resolved.config.rootfs(), original.config.rootfs());
        assert_eq!(
            resolved.manifest.config().digest(),
            original.manifest.config().digest()
        );
        for layer in resolved.layers() {
            resolved
                .verify_blob(layer.digest().as_ref(), layer.size())
                .unwrap();
        }
    }

    // And what podman would save: a compressed archive of it opens the same.
    let gz = dir.path().join("docker.tar.gz");
    let mut encoder =
        flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut fs::File::open(&docker).unwrap(), &mut encoder).unwrap();
    encoder.finish().unwrap();
    let opened = open_docker_archive(&gz, &dir.path().join("scratch-gz")).unwrap();
    let resolved = opened.resolve(Some("tag"), &platform).unwrap();
    assert_eq!(resolved.config.rootfs(), original.config.rootfs());
}

/// A tar entry: name, type, content, link target.
type RawEntry<'a> = (&'a str, tar::EntryType, &'a [u8], &'a str);

/// A tar with entries written field by field, names included as given (`tar::Builder` refuses
/// the hostile ones).
fn raw_tar(path: &Path, entries: &[RawEntry]) {
    let mut builder = tar::Builder::new(fs::File::create(path).unwrap());
    for (name, kind, content, link) in entries {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.set_size(content.len() as u64);
        header.set_cksum();
        builder.append(&header, *content).unwrap();
    }
    builder.finish().unwrap();
}

#[test]
fn hostile_archives_are_refused() {
    use tar::EntryType::{Block, Link, Regular, Symlink};
    let dir = tempfile::tempdir().unwrap();
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let cases: &[(&str, &[RawEntry], &str)] = &[
        (
            "dotdot",
            &[
                ("oci-layout", Regular, layout, ""),
                ("../x", Regular, b"evil", ""),
            ],
            "../x",
        ),
        (
            "nested",
            &[("blobs/../../x", Regular, b"evil", "")],
            "blobs/../../x",
        ),
        ("absolute", &[("/tmp/x", Regular, b"evil", "")], "/tmp/x"),
        (
            "symlink-out",
            &[("blobs/x", Symlink, b"", "../../etc/passwd")],
            "blobs/x",
        ),
        ("symlink-abs", &[("x", Symlink, b"", "/etc/passwd")], "x"),
        ("hardlink-out", &[("x", Link, b"", "../etc/passwd")], "x"),
        ("dangling", &[("x", Symlink, b"", "missing")], "x"),
        (
            "loop",
            &[("a", Symlink, b"", "b"), ("b", Symlink, b"", "a")],
            "a",
        ),
        ("device", &[("dev", Block, b"", "")], "dev"),
    ];
    for (case, entries, entry) in cases {
        let archive = dir.path().join(format!("{case}.tar"));
        raw_tar(&archive, entries);
        let scratch = dir.path().join(format!("scratch-{case}"));
        for open in [open_oci_archive, open_docker_archive] {
            let _ = fs::remove_dir_all(&scratch);
            let err = open(&archive, &scratch).unwrap_err();
            match &err {
                Error::ArchiveEntry {
                    archive: a,
                    entry: e,
                    ..
                } => {
                    assert_eq!((a, e.as_str()), (&archive, *entry), "{case}")
                }
                other => panic!("{case}: unexpected {other:?}"),
            }
            let msg = err.to_string();
            assert!(msg.contains(s(&archive)) && msg.contains(entry), "{msg}");
        }
    }
    assert!(!dir.path().join("x").exists(), "an entry escaped");
    // (Something else may own a `/tmp/x`, even a directory: only our content would be ours.)
    assert!(fs::read("/tmp/x").map_or(true, |content| content != b"evil"));

    // Links inside the archive are fine: they become files.
    let archive = dir.path().join("links.tar");
    raw_tar(
        &archive,
        &[
            ("oci-layout", Regular, layout, ""),
            (
                "real-index.json",
                Regular,
                br#"{"schemaVersion":2,"manifests":[]}"#,
                "",
            ),
            ("./index.json", Symlink, b"", "sub/../real-index.json"),
            ("copy", Link, b"", "real-index.json"),
        ],
    );
    let scratch = dir.path().join("scratch-links");
    let opened = open_oci_archive(&archive, &scratch).unwrap();
    assert!(opened.index().manifests().is_empty());
    assert!(!fs::symlink_metadata(scratch.join("index.json"))
        .unwrap()
        .is_symlink());

    // Not an archive of the right kind; a scratch directory in use.
    let err = open_oci_archive(&archive, &scratch).unwrap_err();
    assert!(matches!(err, Error::ScratchNotEmpty { .. }), "{err:?}");
    let err = open_docker_archive(&archive, &dir.path().join("s2")).unwrap_err();
    assert!(matches!(err, Error::NotAnArchive { .. }), "{err:?}");
    assert!(err.to_string().contains("manifest.json"), "{err}");
}

#[test]
fn corrupt_docker_archives_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layer = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("hello").unwrap();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"hi\n"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let diff_id = Digest::of(&layer);
    let config = |diff: &str| {
        format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
        )
    };
    let good = config(&diff_id.to_string());
    let good_hex = Digest::of(good.as_bytes()).hex().to_string();
    let manifest = |config_name: &str| {
        format!(r#"[{{"Config":"{config_name}","RepoTags":["x:1"],"Layers":["l/layer.tar"]}}]"#)
    };
    let write = |name: &str, config_name: &str, config: &str| {
        let archive = dir.path().join(name);
        raw_tar(
            &archive,
            &[
                (
                    "manifest.json",
                    tar::EntryType::Regular,
                    manifest(config_name).as_bytes(),
                    "",
                ),
                (config_name, tar::EntryType::Regular, config.as_bytes(), ""),
                ("l/layer.tar", tar::EntryType::Regular, &layer, ""),
            ],
        );
        archive
    };
    let scratch = |name: &str| dir.path().join(format!("scratch-{name}"));

    let ok = write("ok.tar", &format!("{good_hex}.json"), &good);
    let layout = open_docker_archive(&ok, &scratch("ok")).unwrap();
    let image = layout.resolve(Some("1"), &Platform::linux_amd64()).unwrap();
    assert_eq!(image.config_bytes, good.as_bytes());
    assert_eq!(image.layers()[0].digest().as_ref(), diff_id.to_string());

    // A config whose name is not its digest.
    let other_hex = Digest::of(b"other").hex().to_string();
    let bad = write("name.tar", &format!("{other_hex}.json"), &good);
    let err = open_docker_archive(&bad, &scratch("name")).unwrap_err();
    assert!(matches!(err, Error::ArchiveDigest { .. }), "{err:?}");
    assert!(err.to_string().contains(&other_hex), "{err}");

    // A layer that is not the one the config describes.
    let wrong = config(&Digest::of(b"another layer").to_string());
    let bad = write("diff.tar", "config.json", &wrong);
    let err = open_docker_archive(&bad, &scratch("diff")).unwrap_err();
    match &err {
        Error::ArchiveDigest { entry, .. } => assert_eq!(entry, "l/layer.tar"),
        other => panic!("unexpected {other:?}"),
    }

    // A missing layer, and manifest.json that is not JSON.
    let archive = dir.path().join("missing.tar");
    raw_tar(
        &archive,
        &[
            (
                "manifest.json",
                tar::EntryType::Regular,
                manifest("c.json").as_bytes(),
                "",
            ),
            ("c.json", tar::EntryType::Regular, good.as_bytes(), ""),
        ],
    );
    let err = open_docker_archive(&archive, &scratch("missing")).unwrap_err();
    assert!(err.to_string().contains("l/layer.tar"), "{err}");
    let archive = dir.path().join("garbage.tar");
    raw_tar(
        &archive,
        &[("manifest.json", tar::EntryType::Regular, b"{nope", "")],
    );
    let err = open_docker_archive(&archive, &scratch("garbage")).unwrap_err();
    assert!(matches!(err, Error::ArchiveJson { .. }), "{err:?}");
}
