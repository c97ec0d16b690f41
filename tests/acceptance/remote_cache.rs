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
fn events(dir: &Path, command: &str, args: &[&str]) -> Vec<Value> {
    let r = cargo_image(dir)
        .args([command, "--message-format", "json"])
        .args(args)
        .run()
        .ok();
    json_events(&r.stdout)
}

/// The `layer-finished` events that built their layer.
fn built(events: &[Value]) -> Vec<&Value> {
    of_kind(events, "layer-finished")
        .into_iter()
        .filter(|e| e["cached"] == false)
        .collect()
}

/// Image name -> manifest digest, from `image-finished` events.
fn digests(events: &[Value]) -> Vec<(String, String)> {
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
    skopeo([
        "copy".to_string(),
        "--quiet".to_string(),
        "--src-tls-verify=false".to_string(),
        format!("docker://{target}:latest"),
        format!("oci:{}:latest", copy.display()),
    ]);
    assert_eq!(
        skopeo_inspect(&copy, "latest", None)["Digest"],
        digest.as_str()
    );
}
