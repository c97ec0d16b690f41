//! The remote layer cache between machines: two copies of a workspace with their own stores
//! ("machine A" and "machine B") and one loopback `docker-registry` (htpasswd auth over TLS)
//! as the cache; B builds nothing A built, pushing from B downloads no layer (the registry's
//! log), records are OCI artifacts skopeo reads, and every fault of the cache (down, 401, 500,
//! a record whose blob is gone or altered, through a fault-injecting proxy) is one warning and
//! a local build of the same digest.

use std::path::Path;

use cargo_oci_image_test_support::registry::{free_port, Fault, Proxy, Registry, Request};
use cargo_oci_image_test_support::*;

const PASSWORD: &str = "cache-Pa55word";

/// `build`/`push` of `dir` with JSON events, `args` after the command.
pub(crate) fn events(dir: &Path, command: &str, args: &[&str]) -> Vec<Value> {
    let r = cargo_image(dir)
        .args([command, "--message-format", "json"])
        .args(args)
        .run()
        .ok();
    json_events(&r.stdout)
}

/// The `layer-finished` events that built their layer.
pub(crate) fn built(events: &[Value]) -> Vec<&Value> {
    of_kind(events, "layer-finished")
        .into_iter()
        .filter(|e| e["cached"] == false)
        .collect()
}

/// Image name -> manifest digest, from `image-finished` events.
pub(crate) fn digests(events: &[Value]) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = of_kind(events, "image-finished")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

#[test]
fn a_layer_built_on_one_machine_is_never_built_on_another() {
    let registry = Registry::start_with(Some(("ci", PASSWORD)), true);
    let ca = registry.tls.as_ref().expect("tls").ca.clone();
    let ca = ca.to_str().unwrap();
    let creds = format!("ci:{PASSWORD}");
    let cache = format!("{}/ci/layers", registry.host());
    let auth = ["--registry-ca", ca, "--creds", &creds];
    let (_a_tmp, a) = example_copy("workspace");
    let (_b_tmp, b) = example_copy("workspace");

    // Machine A builds every image and records its layers.
    let mut args = vec!["--workspace", "--cache-to", &cache];
    args.extend(auth);
    let on_a = events(&a, "build", &args);
    assert!(!built(&on_a).is_empty());
    let exported = of_kind(&on_a, "cache-exported");
    assert!(
        exported.iter().any(|e| e["records"].as_u64().unwrap() > 0),
        "{exported:?}"
    );
    assert!(of_kind(&on_a, "cache-warning").is_empty(), "{on_a:?}");

    // A record is an OCI artifact another tool reads: skopeo lists the tags and reads one.
    let tags = skopeo([
        "list-tags".to_string(),
        format!("--cert-dir={}", registry.cert_dir().display()),
        format!("--creds={creds}"),
        format!("docker://{cache}"),
    ])
    .ok();
    let tags: Value = serde_json::from_str(&tags.stdout).unwrap();
    let tag = tags["Tags"][0].as_str().unwrap().to_owned();
    assert!(tag.starts_with("key-") && tag.len() == 68, "{tags}");
    let record = skopeo([
        "inspect".to_string(),
        "--raw".to_string(),
        format!("--cert-dir={}", registry.cert_dir().display()),
        format!("--creds={creds}"),
        format!("docker://{cache}:{tag}"),
    ])
    .ok();
    let record: Value = serde_json::from_str(&record.stdout).unwrap();
    assert_eq!(
        record["artifactType"], "application/vnd.cargo-image.layer-cache.v1+json",
        "{record}"
    );
    assert_eq!(record["annotations"]["dev.cargo-image.cache.format"], "1");
    assert_eq!(
        record["annotations"]["dev.cargo-image.cache.key"].as_str(),
        tag.strip_prefix("key-")
    );

    // What B would do, for CI to split the work: per image, every layer is in the remote
    // cache (and nothing is downloaded to say so).
    let mut args = vec!["--workspace", "--cache-from", &cache];
    args.extend(auth);
    let before = registry.requests().len();
    let planned = events(&b, "plan", &args);
    assert!(
        !registry.requests()[before..]
            .iter()
            .any(Request::is_blob_download),
        "planning downloads no blob"
    );
    let plans = of_kind(&planned, "plan");
    assert_eq!(plans.len(), 3, "{planned:?}");
    for plan in &plans {
        for node in plan["graph"]["nodes"].as_array().unwrap() {
            if node["kind"] == "build-layer" {
                assert_eq!(node["cached"], false, "{node}");
                assert_eq!(node["remote"], cache.as_str(), "{node}");
            }
        }
    }

    // Machine B, an empty store: zero layers built, every one fresh from the remote cache,
    // the same digests, and layouts oci-image-tool accepts.
    let mut args = vec!["--workspace", "--cache-from", &cache];
    args.extend(auth);
    let on_b = events(&b, "build", &args);
    assert_eq!(built(&on_b), Vec::<&Value>::new(), "B built nothing");
    assert!(of_kind(&on_b, "layer-started").is_empty());
    let layers = of_kind(&on_b, "layer-finished");
    assert!(!layers.is_empty());
    // Each layer came from the cache once (a layer the images share is then in B's store).
    for layer in &layers {
        assert!(
            layers
                .iter()
                .any(|e| e["digest"] == layer["digest"] && e["remote"] == cache.as_str()),
            "{layer} did not come from the cache: {layers:#?}"
        );
    }
    assert!(of_kind(&on_b, "cache-warning").is_empty(), "{on_b:?}");
    assert_eq!(digests(&on_b), digests(&on_a));
    for image in of_kind(&on_b, "image-finished") {
        oci_image_tool_validate(
            Path::new(image["path"].as_str().unwrap()),
            image["tags"][0].as_str().unwrap(),
        );
    }

    // Machine D keeps the cache in the workspace's `[workspace.metadata.image]`, as CI config
    // would: no flag, nothing built, the same digests.
    let (_d_tmp, d) = example_copy("workspace");
    let manifest = d.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "[workspace.metadata.image]\n",
        &format!("[workspace.metadata.image]\ncache-from = [\"{cache}\"]\n"),
    );
    std::fs::write(&manifest, text).unwrap();
    let mut args = vec!["--workspace"];
    args.extend(auth);
    let on_d = events(&d, "build", &args);
    assert_eq!(built(&on_d), Vec::<&Value>::new(), "D built nothing");
    assert_eq!(digests(&on_d), digests(&on_a));

    // A third machine only pushes one image: its layers are mounted from the cache, and the
    // registry's log shows no blob downloaded; skopeo reads the image back, same digest.
    let (_c_tmp, c) = example_copy("workspace");
    let target = format!("{}/team/api", registry.host());
    let before = registry.requests().len();
    let mut args = vec![
        "-p",
        "api",
        "--no-output",
        "--push-to",
        &target,
        "--cache-from",
        &cache,
    ];
    args.extend(auth);
    let on_c = events(&c, "push", &args);
    assert_eq!(built(&on_c), Vec::<&Value>::new(), "nothing built");
    let requests: Vec<Request> = registry.requests()[before..].to_vec();
    let downloads: Vec<_> = requests.iter().filter(|r| r.is_blob_download()).collect();
    assert_eq!(
        downloads,
        Vec::<&Request>::new(),
        "no layer byte downloaded"
    );
    let mounts = requests
        .iter()
        .filter(|r| r.is_mount() && r.status == 201 && r.in_repository("team/api"))
        .count();
    let remote_layers = of_kind(&on_c, "layer-finished").len();
    assert_eq!(mounts, remote_layers, "{requests:#?}");
    assert!(
        !c.join("target/image/api").exists(),
        "--no-output writes no layout"
    );
    let pushed = *of_kind(&on_c, "pushed").first().expect("pushed");
    let api = digests(&on_a)
        .into_iter()
        .find(|(name, _)| name.ends_with("/api"))
        .unwrap()
        .1;
    assert_eq!(pushed["reference"], format!("{target}@{api}").as_str());
    let copy = c.join("copy");
    skopeo([
        "copy".to_string(),
        "--quiet".to_string(),
        format!("--src-cert-dir={}", registry.cert_dir().display()),
        format!("--src-creds={creds}"),
        format!("docker://{target}:latest"),
        format!("oci:{}:latest", copy.display()),
    ]);
    assert_eq!(
        skopeo_inspect(&copy, "latest", None)["Digest"],
        api.as_str()
    );

    // One crate changed on B: exactly that crate's top layer is built.
    let main = b.join("worker/src/main.rs");
    let code = std::fs::read_to_string(&main).unwrap();
    assert!(code.contains("println!(\""), "{}", main.display());
    std::fs::write(&main, code.replacen("println!(\"", "println!(\"[B] ", 1)).unwrap();
    let mut args = vec![
        "--workspace",
        "--store",
        "fresh-store",
        "--cache-from",
        &cache,
    ];
    args.extend(auth);
    let planned = events(&b, "plan", &args);
    let to_build: Vec<&Value> = of_kind(&planned, "plan")
        .iter()
        .flat_map(|p| p["graph"]["nodes"].as_array().unwrap())
        .filter(|n| n["kind"] == "build-layer" && n["cached"] == false && n.get("remote").is_none())
        .collect();
    assert_eq!(
        to_build.len(),
        1,
        "the plan says one layer to build: {to_build:?}"
    );
    let changed = events(&b, "build", &args);
    let rebuilt = built(&changed);
    assert_eq!(rebuilt.len(), 1, "one layer built: {rebuilt:?}");
    assert!(
        rebuilt[0]["image"].as_str().unwrap().ends_with("/worker"),
        "{rebuilt:?}"
    );
}

/// Fills `cache` with the layers of `hello` built by "machine A"; returns its image digest.
fn fill_cache(cache: &str) -> String {
    let (_tmp, a) = example_copy("hello");
    let on_a = events(&a, "build", &["--cache-to", cache]);
    assert!(of_kind(&on_a, "cache-warning").is_empty(), "{on_a:?}");
    digests(&on_a)[0].1.clone()
}

/// Builds `hello` on an empty store with `--cache-from cache` (and `extra`): asserts a local
/// build of `digest` with exactly one warning, whose text holds `why`, and a store `cache
/// verify` finds clean.
fn falls_back(dir: &Path, store: &str, cache: &str, extra: &[&str], digest: &str, why: &str) {
    let mut args = vec!["--store", store, "--cache-from", cache];
    args.extend(extra);
    let on_b = events(dir, "build", &args);
    let warnings = of_kind(&on_b, "cache-warning");
    assert_eq!(warnings.len(), 1, "one warning: {on_b:#?}");
    let message = warnings[0]["message"].as_str().unwrap();
    assert!(message.contains(why), "{why}: {message}");
    assert!(!built(&on_b).is_empty(), "built locally");
    assert_eq!(digests(&on_b)[0].1, digest, "the same digest");
    let verify = cargo_image(dir)
        .args(["cache", "verify", "--store", store])
        .run()
        .ok();
    assert!(verify.stderr.contains(" 0 corrupt"), "{}", verify.stderr);
}

#[test]
fn a_failing_cache_is_one_warning_and_a_local_build() {
    let mut registry = Registry::start();
    let cache = format!("{}/ci/layers", registry.host());
    let digest = fill_cache(&cache);
    let (_tmp, b) = example_copy("hello");

    // 500 on records.
    let proxy = Proxy::start(registry.port, |_, method, path| {
        if method == "GET" && path.contains("/manifests/key-") {
            Fault::Status(500)
        } else {
            Fault::Pass
        }
    });
    let via = format!("{}/ci/layers", proxy.host());
    falls_back(&b, "s-500", &via, &[], &digest, "500");

    // A record whose blob bytes were altered in transit: never stored, never used.
    let proxy = Proxy::start(registry.port, |_, method, path| {
        if method == "GET" && path.contains("/blobs/sha256:") {
            Fault::Corrupt
        } else {
            Fault::Pass
        }
    });
    let via = format!("{}/ci/layers", proxy.host());
    falls_back(&b, "s-corrupt", &via, &[], &digest, "failed verification");
    assert!(proxy.count(Fault::Corrupt) >= 1);

    // A record whose blob is gone from the registry.
    let layer = of_kind(
        &events(&b, "build", &["--store", "s-plain", "--cache-from", &cache]),
        "layer-finished",
    )[0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let hex = layer.strip_prefix("sha256:").unwrap();
    let data = registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    std::fs::remove_dir_all(&data).unwrap();
    falls_back(&b, "s-gone", &cache, &[], &digest, &layer);

    // Refused credentials (401).
    let mut secured = Registry::start_with(Some(("ci", PASSWORD)), true);
    let ca = secured.tls.as_ref().unwrap().ca.clone();
    let secured_cache = format!("{}/ci/layers", secured.host());
    falls_back(
        &b,
        "s-401",
        &secured_cache,
        &[
            "--registry-ca",
            ca.to_str().unwrap(),
            "--creds",
            "ci:wrong-password",
        ],
        &digest,
        "401",
    );
    secured.stop();

    // The registry down.
    registry.stop();
    falls_back(&b, "s-down", &cache, &[], &digest, "onnect");
    let nobody = format!("127.0.0.1:{}/ci/layers", free_port());
    falls_back(&b, "s-nobody", &nobody, &[], &digest, "onnect");
}

#[test]
fn a_push_only_build_to_another_registry_downloads_the_cached_layers() {
    let cache_registry = Registry::start();
    let other = Registry::start();
    let cache = format!("{}/ci/layers", cache_registry.host());
    let digest = fill_cache(&cache);
    let before = cache_registry.requests().len();
    let (_tmp, b) = example_copy("hello");
    let target = format!("{}/team/hello", other.host());
    let on_b = events(
        &b,
        "push",
        &["--no-output", "--push-to", &target, "--cache-from", &cache],
    );
    assert_eq!(built(&on_b), Vec::<&Value>::new(), "nothing built");
    assert!(of_kind(&on_b, "cache-warning").is_empty(), "{on_b:?}");
    let pushed = *of_kind(&on_b, "pushed").first().expect("pushed");
    assert_eq!(pushed["reference"], format!("{target}@{digest}").as_str());
    // No mount across registries: the layer is downloaded once, then uploaded.
    let downloads = cache_registry.requests()[before..]
        .iter()
        .filter(|r| r.is_blob_download())
        .count();
    assert_eq!(downloads, of_kind(&on_b, "layer-finished").len());
    let copy = b.join("copy");
    skopeo_pull(&format!("docker://{target}:latest"), &copy, "latest");
    assert_eq!(
        skopeo_inspect(&copy, "latest", None)["Digest"],
        digest.as_str()
    );
}

/// A spec of two layers of host files (a `vendor` tree, an `app` tree with an inline file and
/// a symlink), the files, and a `.gitignore` for the build's own directories.
const GIT_SPEC: &str = r#"name = "site"
tags = ["latest"]
epoch = 1700000000

[[layer]]
name = "vendor"

[[layer.add]]
path = "vendor"
dest = "/opt/vendor/"

[[layer]]
name = "app"

[[layer.add]]
path = "app"
dest = "/srv/app/"
exclude = ["*.tmp"]

[[layer.add]]
content = "built by ci\n"
dest = "/srv/app/VERSION"

[[layer.add]]
symlink = "/srv/app/main.txt"
dest = "/srv/app/current"
"#;

fn git(dir: &Path, args: &[&str]) -> String {
    let r = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        r.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8(r.stdout).unwrap()
}

/// A git repository holding [`GIT_SPEC`] and its files, committed, under `root/origin`.
pub(crate) fn git_origin(root: &Path) -> std::path::PathBuf {
    let origin = root.join("origin");
    let file = |path: &str, content: &[u8]| {
        let p = origin.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    file("image.toml", GIT_SPEC.as_bytes());
    file(".gitignore", b"target/\nstore-*/\nout/\n");
    let mut noise = Noise::new(14);
    for i in 0..40 {
        file(
            &format!("vendor/lib{}/part{i}.bin", i % 4),
            &noise.bytes(3000 + i * 17),
        );
    }
    file("app/main.txt", b"hello from the app\n");
    file("app/static/style.css", b"body { margin: 0 }\n");
    file("app/run.sh", b"#!/bin/sh\nexec cat /srv/app/main.txt\n");
    file("app/scratch.tmp", b"left out by the spec's exclude\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        origin.join("app/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    git(&origin, &["init", "-q", "-b", "main"]);
    git(&origin, &["add", "-A"]);
    git(&origin, &["commit", "-qm", "site"]);
    origin
}

/// A fresh clone of `origin` at `dest`, as a CI machine checks it out.
pub(crate) fn clone(origin: &Path, dest: &Path) {
    git(
        origin.parent().unwrap(),
        &[
            "clone",
            "-q",
            origin.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    );
    // The clone's last files may share the index's timestamp tick (racy: cargo-image would
    // read them, as git does); the index any later git command writes is past it.
    std::thread::sleep(std::time::Duration::from_millis(30));
    git(dest, &["status", "--porcelain"]);
}

/// The `plan` event's build-layer nodes: layer name -> whether its key came from an alias.
pub(crate) fn keyed_by_alias(events: &[Value]) -> Vec<(String, bool)> {
    let plan = *of_kind(events, "plan").last().expect("a plan event");
    plan["graph"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "build-layer")
        .map(|n| {
            let alias = n.get("keyed_by_alias") == Some(&Value::Bool(true));
            (n["layer"].as_str().unwrap().to_owned(), alias)
        })
        .collect()
}

#[test]
fn a_fresh_git_clone_takes_its_layers_from_the_cache_without_reading_its_files() {
    let registry = Registry::start();
    let cache = format!("{}/ci/layers", registry.host());
    let tmp = TempDir::new().unwrap();
    let origin = git_origin(tmp.path());

    // Machine A, a clone: builds, records each layer's key and its alias.
    let a = tmp.path().join("a");
    clone(&origin, &a);
    let on_a = events(&a, "build", &["--store", "store-a", "--cache-to", &cache]);
    assert_eq!(built(&on_a).len(), 2, "{on_a:?}");
    assert!(of_kind(&on_a, "cache-warning").is_empty(), "{on_a:?}");
    let tags = skopeo([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{cache}"),
    ])
    .ok();
    let tags: Value = serde_json::from_str(&tags.stdout).unwrap();
    let tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let aliases: Vec<&&str> = tags.iter().filter(|t| t.starts_with("alias-")).collect();
    assert_eq!(aliases.len(), 2, "{tags:?}");
    assert_eq!(tags.iter().filter(|t| t.starts_with("key-")).count(), 2);
    // An alias record is an OCI artifact skopeo reads, naming a key the cache has a record of.
    let record = skopeo([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{cache}:{}", aliases[0]),
    ])
    .ok();
    let record: Value = serde_json::from_str(&record.stdout).unwrap();
    assert_eq!(
        record["artifactType"],
        "application/vnd.cargo-image.layer-alias.v1+json"
    );
    let annotations = &record["annotations"];
    assert_eq!(annotations["dev.cargo-image.cache.format"], "1");
    assert_eq!(
        annotations["dev.cargo-image.cache.alias"].as_str(),
        aliases[0].strip_prefix("alias-")
    );
    let key = annotations["dev.cargo-image.cache.key"].as_str().unwrap();
    assert!(tags.contains(&format!("key-{key}").as_str()), "{tags:?}");

    // Machine B, another fresh clone, an empty store, only pushing: both layers keyed from
    // their aliases, zero built, nothing downloaded, and not one source file opened or read
    // (inotify), the same digest as A's.
    let b = tmp.path().join("b");
    clone(&origin, &b);
    let target = format!("{}/team/site", registry.host());
    let before = registry.requests().len();
    let mut on_b = Vec::new();
    let opened = files_opened(&[&b.join("vendor"), &b.join("app")], || {
        on_b = events(
            &b,
            "push",
            &[
                "--store",
                "store-b",
                "--no-output",
                "--push-to",
                &target,
                "--cache-from",
                &cache,
            ],
        );
    });
    assert_eq!(opened, Vec::<String>::new(), "B read no source file");
    assert_eq!(
        keyed_by_alias(&on_b),
        [("vendor".to_owned(), true), ("app".to_owned(), true)]
    );
    assert_eq!(built(&on_b), Vec::<&Value>::new(), "B built nothing");
    assert!(of_kind(&on_b, "cache-warning").is_empty(), "{on_b:?}");
    assert_eq!(digests(&on_b), digests(&on_a));
    assert!(!registry.requests()[before..]
        .iter()
        .any(Request::is_blob_download));

    // A file touched on C (content unchanged) is hashed, with its layer's other files: that
    // layer is keyed by content, which the cache also knows; the other still by its alias.
    let c = tmp.path().join("c");
    clone(&origin, &c);
    std::fs::File::options()
        .write(true)
        .open(c.join("app/main.txt"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let on_c = events(&c, "build", &["--store", "store-c", "--cache-from", &cache]);
    assert_eq!(
        keyed_by_alias(&on_c),
        [("vendor".to_owned(), true), ("app".to_owned(), false)]
    );
    assert_eq!(built(&on_c), Vec::<&Value>::new(), "C built nothing");
    assert_eq!(digests(&on_c), digests(&on_a));

    // A file changed on D (same size: only the content moved) is hashed: its layer is built,
    // the other taken by its alias.
    let d = tmp.path().join("d");
    clone(&origin, &d);
    std::fs::write(d.join("app/main.txt"), b"HELLO FROM THE APP\n").unwrap();
    let on_d = events(&d, "build", &["--store", "store-d", "--cache-from", &cache]);
    assert_eq!(
        keyed_by_alias(&on_d),
        [("vendor".to_owned(), true), ("app".to_owned(), false)]
    );
    let rebuilt = built(&on_d);
    assert_eq!(rebuilt.len(), 1, "{on_d:?}");
    assert_ne!(digests(&on_d), digests(&on_a));
    // And B's push is the image skopeo reads back, with A's digest.
    let copy = b.join("copy");
    skopeo_pull(&format!("docker://{target}:latest"), &copy, "latest");
    assert_eq!(
        skopeo_inspect(&copy, "latest", None)["Digest"],
        digests(&on_a)[0].1.as_str()
    );
}
