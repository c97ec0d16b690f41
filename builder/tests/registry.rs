//! Pull and push against a real `docker-registry` (CNCF distribution) on 127.0.0.1, checked
//! with skopeo and umoci, with htpasswd auth over TLS, and through a fault-injecting proxy.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cargo_oci_image::oci::{Digest, Platform, ResolvedImage};
use cargo_oci_image::registry::{
    CredentialLookup, Credentials, Error, PullPolicy, PushEvent, Reference, RegistryClient,
    RegistryOptions, RetryPolicy,
};
use cargo_oci_image::store::Store;
use cargo_oci_image_test_support::registry::{push_umoci_image, Fault, Proxy, Registry, Seen};
use cargo_oci_image_test_support::{error_chain, read_json, skopeo};

const PASSWORD: &str = "s3cret-pa55word";

/// Options for tests: no ambient credentials, fast retries.
fn options() -> RegistryOptions {
    RegistryOptions {
        credentials: CredentialLookup::default(),
        retry: RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        ..RegistryOptions::default()
    }
}

fn reference(text: &str) -> Reference {
    text.parse().unwrap()
}

/// Pushes an image made by umoci (`/hello-from-umoci`) with skopeo; returns the reference.
fn push_umoci(dir: &Path, registry: &str) -> Reference {
    reference(&push_umoci_image(
        dir,
        &format!("{registry}/base/umoci:1"),
        "/hello-from-umoci",
        "made by umoci\n",
    ))
}

fn assert_pulled_into_store(store: &Store, image: &ResolvedImage) {
    assert_eq!(
        image.layout,
        store.root(),
        "a pulled image reads its blobs from the store"
    );
    for blob in std::iter::once(image.manifest.config()).chain(image.layers()) {
        let digest = Digest::parse(blob.digest().as_ref()).unwrap();
        let path = store.blob_path(&digest);
        let (actual, size) = Digest::of_file(&path).unwrap();
        assert_eq!(actual, digest);
        assert_eq!(size, blob.size());
    }
    assert_eq!(
        Digest::of(&image.manifest_bytes).to_string(),
        image.digest()
    );
}

#[test]
fn push_then_skopeo_copies_it_back_with_the_same_digest() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let digest = build_image(tmp.path(), &layout, &tmp.path().join("store"), "pushed");

    let client = RegistryClient::new(options()).unwrap();
    let target = reference(&format!("{}/app/regtest:v1", registry.host()));
    let events = std::sync::Mutex::new(Vec::new());
    let report = client
        .push_layout(
            &layout,
            Some("v1"),
            &target,
            &["v1".into(), "latest".into()],
            None,
            &|e| events.lock().unwrap().push(e),
        )
        .unwrap();
    assert_eq!(report.digest, digest);
    assert_eq!(
        report.uploaded_blobs, 6,
        "config and two layers, the referrers' empty config, the SBOM and the provenance: {report:?}"
    );
    assert_eq!(
        report.referrers, 2,
        "the SBOM and the provenance: {report:?}"
    );
    let events = events.into_inner().unwrap();
    let manifests: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, PushEvent::ManifestPushed { .. }))
        .collect();
    assert_eq!(manifests.len(), 2, "{events:?}");
    // docker-registry has no referrers API: the SBOM and the provenance are listed under the
    // fallback tag.
    let fallback = format!("sha256-{}", digest.trim_start_matches("sha256:"));
    let referrers_pushed = events
        .iter()
        .filter(|e| matches!(e, PushEvent::ReferrerPushed { subject, .. } if *subject == digest))
        .count();
    assert_eq!(referrers_pushed, 2, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, PushEvent::ReferrersIndexed { tag, .. } if *tag == fallback)),
        "{events:?}"
    );

    for tag in ["v1", "latest"] {
        let out = tmp.path().join(format!("copy-{tag}"));
        skopeo([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{}/app/regtest:{tag}", registry.host()),
            &format!("oci:{}:{tag}", out.display()),
        ]);
        let index = read_json(&out.join("index.json"));
        assert_eq!(
            index["manifests"][0]["digest"],
            digest.as_str(),
            "tag {tag}"
        );
    }
}

#[test]
fn pull_an_image_skopeo_pushed_into_the_store() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let base = push_umoci(tmp.path(), &registry.host());
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let client = RegistryClient::new(options()).unwrap();
    let platform = Platform::parse(&format!("linux/{}", host_arch())).unwrap();

    let pulled = client
        .pull(&base, &platform, &store, PullPolicy::IfNotPresent)
        .unwrap();
    let image = &pulled.image;
    assert!(pulled.from_network);
    assert_eq!(image.layers().len(), 1);
    assert_eq!(pulled.downloaded_blobs, 2, "config and one layer");
    assert_pulled_into_store(&store, image);
    assert_eq!(image.reference.as_ref(), Some(&base));
    // The same model as an `oci:` base: blob paths resolve into the store.
    let layer = image.layers()[0].clone();
    image
        .verify_blob(layer.digest().as_ref(), layer.size())
        .unwrap();

    // The manifest digest is the one skopeo sees.
    let inspect = skopeo(["inspect", "--tls-verify=false", &format!("docker://{base}")]).stdout;
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], image.digest().as_str());

    // Always re-resolves, but downloads nothing it holds.
    let again = client
        .pull(&base, &platform, &store, PullPolicy::Always)
        .unwrap();
    assert!(again.from_network);
    assert_eq!(again.downloaded_blobs, 0);
    assert_eq!(again.image.digest(), image.digest());

    // By digest, from the store.
    let pinned = base.with_digest(Digest::parse(&image.digest()).unwrap());
    let by_digest = client
        .pull(&pinned, &platform, &store, PullPolicy::Never)
        .unwrap();
    assert!(!by_digest.from_network);
    assert_eq!(by_digest.image.digest(), image.digest());

    // Another platform is a clear error.
    let err = client
        .pull(
            &base,
            &Platform::parse("linux/s390x").unwrap(),
            &store,
            PullPolicy::Always,
        )
        .unwrap_err();
    assert!(matches!(err, Error::PlatformMismatch { .. }), "{err}");
}

#[test]
fn pull_selects_the_platform_of_an_index_with_variants() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    // Two images (our builds) in one index: amd64 and arm/v7, pushed as an index by skopeo.
    let amd = tmp.path().join("amd");
    build_image(tmp.path(), &amd, &tmp.path().join("store-b"), "amd64 image");
    let client = RegistryClient::new(options()).unwrap();
    let image_ref = reference(&format!("{}/multi/img:amd", registry.host()));
    client
        .push_layout(&amd, Some("v1"), &image_ref, &[], None, &|_| {})
        .unwrap();
    // An index made by hand that points at the pushed manifest twice, for two platforms:
    // the second entry claims arm/v7 (selection is by the index entry).
    let layout = cargo_oci_image::oci::Layout::open(&amd).unwrap();
    let desc = layout.find(Some("v1")).unwrap().clone();
    let entry = |platform: serde_json::Value| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": desc.digest().to_string(),
            "size": desc.size(),
            "platform": platform,
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            entry(serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v6"})),
            entry(serde_json::json!({"os": "linux", "architecture": "amd64"})),
        ],
    });
    let status = Command::new("curl")
        .args(["-sS", "-f", "-X", "PUT", "-H"])
        .arg("Content-Type: application/vnd.oci.image.index.v1+json")
        .arg("--data-binary")
        .arg(index.to_string())
        .arg(format!(
            "http://{}/v2/multi/img/manifests/multi",
            registry.host()
        ))
        .status()
        .expect("curl (run `just deps`)");
    assert!(status.success());
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let multi = reference(&format!("{}/multi/img:multi", registry.host()));
    let image = client
        .pull(
            &multi,
            &Platform::linux_amd64(),
            &store,
            PullPolicy::IfNotPresent,
        )
        .unwrap()
        .image;
    assert_eq!(image.digest(), desc.digest().to_string());
    assert!(image.index.is_some());
    let err = client
        .pull(
            &multi,
            &Platform::parse("linux/arm/v7").unwrap(),
            &store,
            PullPolicy::IfNotPresent,
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::PlatformNotFound { .. }), "{text}");
    assert!(
        text.contains("linux/arm/v6") && text.contains("linux/amd64"),
        "{text}"
    );
}

#[test]
fn auth_over_tls_right_and_wrong_credentials() {
    let registry = Registry::start_with(Some(("alice", PASSWORD)), true);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let digest = build_image(
        tmp.path(),
        &layout,
        &tmp.path().join("store-b"),
        "secret image",
    );
    let ca = registry.tls.as_ref().unwrap().ca.clone();
    let target = reference(&format!("{}/private/app:v1", registry.host()));

    // Right credentials from a docker config.json.
    let docker_config = tmp.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let auth = base64_encode(&format!("alice:{PASSWORD}"));
    std::fs::write(
        docker_config.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let client = RegistryClient::new(RegistryOptions {
        ca_file: Some(ca.clone()),
        credentials: CredentialLookup::docker_config_dir(&docker_config),
        ..options()
    })
    .unwrap();
    let report = client
        .push_layout(&layout, None, &target, &[], None, &|_| {})
        .unwrap();
    assert_eq!(report.digest, digest);

    // Right explicit credentials pull it back over TLS.
    let client = RegistryClient::new(RegistryOptions {
        ca_file: Some(ca.clone()),
        credentials: CredentialLookup::default()
            .with_explicit(Credentials::parse_user_password(&format!("alice:{PASSWORD}")).unwrap()),
        ..options()
    })
    .unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let image = client
        .pull(
            &target,
            &Platform::linux_amd64(),
            &store,
            PullPolicy::Always,
        )
        .unwrap()
        .image;
    assert_eq!(image.digest(), digest);
    assert_pulled_into_store(&store, &image);

    // skopeo agrees with the same CA and credentials.
    let inspect = skopeo([
        "inspect",
        "--cert-dir",
        registry.cert_dir().to_str().unwrap(),
        "--creds",
        &format!("alice:{PASSWORD}"),
        &format!("docker://{target}"),
    ])
    .stdout;
    assert!(inspect.contains(&digest));

    // Wrong credentials: a clear 401 naming the registry, no secret anywhere.
    let wrong = "wr0ng-pa55word";
    let client = RegistryClient::new(RegistryOptions {
        ca_file: Some(ca.clone()),
        credentials: CredentialLookup::default()
            .with_explicit(Credentials::parse_user_password(&format!("alice:{wrong}")).unwrap()),
        ..options()
    })
    .unwrap();
    let store2 = Store::open(&tmp.path().join("store2")).unwrap();
    let err = client
        .pull(
            &target,
            &Platform::linux_amd64(),
            &store2,
            PullPolicy::Always,
        )
        .unwrap_err();
    let text = error_chain(&err);
    let debug = format!("{err:?}");
    assert!(matches!(err, Error::Authenticate { .. }), "{text}");
    assert!(text.contains("401"), "{text}");
    assert!(text.contains(&registry.host()), "{text}");
    assert!(text.contains("alice"), "{text}");
    for secret in [wrong, PASSWORD] {
        assert!(!text.contains(secret), "secret in error: {text}");
        assert!(!debug.contains(secret), "secret in debug: {debug}");
    }
    let err = client
        .push_layout(&layout, None, &target, &[], None, &|_| {})
        .unwrap_err();
    let text = error_chain(&err);
    assert!(matches!(err, Error::Authenticate { .. }), "{text}");
    assert!(!text.contains(wrong) && !format!("{err:?}").contains(wrong));

    // No credentials at all: 401 too, saying none were found.
    let client = RegistryClient::new(RegistryOptions {
        ca_file: Some(ca),
        ..options()
    })
    .unwrap();
    let err = client
        .pull(
            &target,
            &Platform::linux_amd64(),
            &store2,
            PullPolicy::Always,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("no credentials"),
        "{}",
        error_chain(&err)
    );

    // Without the CA, TLS fails (and plain HTTP is not silently used instead).
    let client = RegistryClient::new(options()).unwrap();
    let err = client
        .pull(
            &target,
            &Platform::linux_amd64(),
            &store2,
            PullPolicy::Always,
        )
        .unwrap_err();
    assert!(
        error_chain(&err).to_lowercase().contains("certificate"),
        "{}",
        error_chain(&err)
    );
}

#[test]
fn second_push_uploads_no_blob() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port, |_, _, _| Fault::Pass);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    build_image(tmp.path(), &layout, &tmp.path().join("store"), "twice");
    let client = RegistryClient::new(options()).unwrap();
    let target = reference(&format!("{}/twice/app:v1", proxy.host()));

    let first = client
        .push_layout(&layout, None, &target, &[], None, &|_| {})
        .unwrap();
    // Config, two layers, the referrers' empty config, the SBOM and the provenance.
    assert_eq!(first.uploaded_blobs, 6);
    let uploads = |seen: &[Seen]| {
        seen.iter()
            .filter(|s| s.path.contains("/blobs/uploads/") && s.method != "HEAD")
            .count()
    };
    let before = proxy.seen();
    assert!(uploads(&before) >= 5, "{before:?}");

    let second = client
        .push_layout(&layout, None, &target, &[], None, &|_| {})
        .unwrap();
    assert_eq!(second.uploaded_blobs, 0);
    assert_eq!(second.skipped_blobs, 6);
    let after = proxy.seen();
    assert_eq!(
        uploads(&after[before.len()..]),
        0,
        "{:?}",
        &after[before.len()..]
    );

    // Mounting into another repository of the same registry uploads nothing either.
    let other = reference(&format!("{}/other/app:v1", proxy.host()));
    let mounted = client
        .push_layout(&layout, None, &other, &[], Some(&target), &|_| {})
        .unwrap();
    assert_eq!(mounted.mounted_blobs, 6, "{mounted:?}");
    assert_eq!(mounted.uploaded_blobs, 0);
}

#[test]
fn faults_in_transit_are_retried() {
    let registry = Registry::start();
    // Four faults, two requests apart: a dropped connection, a 500, a 429 and another drop.
    // Whatever order parallel transfers put their requests in, no operation can meet more
    // faults than it has tries (6), so success is deterministic, and every kind of fault is
    // met (a pull of this image makes fewer than ten requests). The pull goes through a
    // second proxy with the same schedule.
    let schedule = |n: usize, _: &str, _: &str| match n {
        0 | 6 => Fault::Drop,
        2 => Fault::Status(500),
        4 => Fault::Status(429),
        _ => Fault::Pass,
    };
    let proxy = Proxy::start(registry.port, schedule);
    let pull_proxy = Proxy::start(registry.port, schedule);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let digest = build_image(tmp.path(), &layout, &tmp.path().join("store-b"), "faulty");
    let client = RegistryClient::new(options()).unwrap();
    let target = reference(&format!("{}/faulty/app:v1", proxy.host()));
    let report = client
        .push_layout(&layout, None, &target, &[], None, &|_| {})
        .unwrap();
    assert_eq!(report.digest, digest);

    let store = Store::open(&tmp.path().join("store")).unwrap();
    let pull_target = reference(&format!("{}/faulty/app:v1", pull_proxy.host()));
    let image = client
        .pull(
            &pull_target,
            &Platform::linux_amd64(),
            &store,
            PullPolicy::Always,
        )
        .unwrap()
        .image;
    assert_eq!(image.digest(), digest);
    assert_pulled_into_store(&store, &image);
    for p in [&proxy, &pull_proxy] {
        assert_eq!(p.count(Fault::Drop), 2, "{:?}", p.seen());
        assert_eq!(p.count(Fault::Status(500)), 1, "{:?}", p.seen());
        assert_eq!(p.count(Fault::Status(429)), 1, "{:?}", p.seen());
    }

    // And skopeo sees the image the faulty push left.
    let out = tmp.path().join("copy");
    skopeo([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/faulty/app:v1", registry.host()),
        &format!("oci:{}:v1", out.display()),
    ]);
}

#[test]
fn retry_after_is_waited_for() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let registry = Registry::start();
    // The first blob check gets 429 and the first manifest upload 503, each asking to come
    // back in 2 seconds: without `Retry-After` a 429 waits 1 s and a 503 the backoff (20 ms).
    let (blob_refused, manifest_refused) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let proxy = Proxy::start(registry.port, move |_, method, path| {
        let first = |flag: &AtomicBool| !flag.swap(true, Ordering::SeqCst);
        if method == "HEAD" && path.contains("/blobs/sha256:") && first(&blob_refused) {
            Fault::StatusRetryAfter(429, 2)
        } else if method == "PUT" && path.contains("/manifests/") && first(&manifest_refused) {
            Fault::StatusRetryAfter(503, 2)
        } else {
            Fault::Pass
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let digest = build_image(tmp.path(), &layout, &tmp.path().join("store"), "patient");
    let client = RegistryClient::new(options()).unwrap();
    let target = reference(&format!("{}/patient/app:v1", proxy.host()));
    let report = client
        .push_layout(&layout, None, &target, &[], None, &|_| {})
        .unwrap();
    assert_eq!(report.digest, digest);
    let seen = proxy.seen();
    for code in [429, 503] {
        let refused = seen
            .iter()
            .find(|s| s.fault == Fault::StatusRetryAfter(code, 2))
            .unwrap_or_else(|| panic!("no {code} was injected: {seen:?}"));
        let again = seen
            .iter()
            .find(|s| {
                s.fault == Fault::Pass
                    && s.method == refused.method
                    && s.path == refused.path
                    && s.at > refused.at
            })
            .unwrap_or_else(|| {
                panic!(
                    "{} {} was not tried again: {seen:?}",
                    refused.method, refused.path
                )
            });
        let waited = again.at - refused.at;
        assert!(
            waited >= Duration::from_secs(2),
            "{code}: tried {} {} again after {waited:?}, before its Retry-After of 2 s",
            refused.method,
            refused.path
        );
    }
}

#[test]
fn a_blob_corrupted_in_transit_is_rejected_and_not_stored() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port, |_, method, path| {
        if method == "GET" && path.contains("/blobs/sha256:") {
            Fault::Corrupt
        } else {
            Fault::Pass
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    build_image(tmp.path(), &layout, &tmp.path().join("store-b"), "corrupt");
    let client = RegistryClient::new(options()).unwrap();
    let target = reference(&format!("{}/corrupt/app:v1", registry.host()));
    client
        .push_layout(&layout, None, &target, &[], None, &|_| {})
        .unwrap();

    let via_proxy = reference(&format!("{}/corrupt/app:v1", proxy.host()));
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let err = client
        .pull(
            &via_proxy,
            &Platform::linux_amd64(),
            &store,
            PullPolicy::Always,
        )
        .unwrap_err();
    let text = error_chain(&err);
    assert!(matches!(err, Error::VerifyBlob { .. }), "{text}");
    assert!(text.contains("nothing was stored"), "{text}");
    // Only the manifest (verified against its digest) is in the store; no config, no layer.
    let manifest = cargo_oci_image::oci::Layout::open(&layout)
        .unwrap()
        .resolve(None, &Platform::linux_amd64())
        .unwrap();
    for blob in std::iter::once(manifest.manifest.config()).chain(manifest.layers()) {
        assert!(!store.has_blob(&Digest::parse(blob.digest().as_ref()).unwrap()));
    }
    let blobs: Vec<_> = std::fs::read_dir(store.blobs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        blobs,
        vec![manifest.digest().trim_start_matches("sha256:").to_string()]
    );
    // And with IfNotPresent the failed pull left nothing to be used offline.
    let err = client
        .pull(
            &via_proxy,
            &Platform::linux_amd64(),
            &store,
            PullPolicy::Never,
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotInStore { .. }));
}

#[test]
fn never_fails_clearly_and_if_not_present_works_offline() {
    let mut registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let digest = build_image(tmp.path(), &layout, &tmp.path().join("store-b"), "offline");
    let client = RegistryClient::new(options()).unwrap();
    let target = reference(&format!("{}/offline/app:v1", registry.host()));
    client
        .push_layout(&layout, None, &target, &[], None, &|_| {})
        .unwrap();

    let store = Store::open(&tmp.path().join("store")).unwrap();
    let err = client
        .pull(&target, &Platform::linux_amd64(), &store, PullPolicy::Never)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{target} is not in the store and pull = \"never\"; run once with network or pull = \"if-not-present\"")
    );

    let first = client
        .pull(
            &target,
            &Platform::linux_amd64(),
            &store,
            PullPolicy::IfNotPresent,
        )
        .unwrap();
    assert!(first.from_network);
    registry.stop();

    let offline = RegistryClient::new(options()).unwrap();
    for policy in [PullPolicy::IfNotPresent, PullPolicy::Never] {
        let pulled = offline
            .pull(&target, &Platform::linux_amd64(), &store, policy)
            .unwrap();
        assert!(!pulled.from_network);
        assert_eq!(pulled.image.digest(), digest);
        assert_eq!(pulled.image.config_bytes, first.image.config_bytes);
    }
    // Always needs the network: a clear fetch error naming the registry.
    let err = offline
        .pull(
            &target,
            &Platform::linux_amd64(),
            &store,
            PullPolicy::Always,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::FetchManifest { .. }),
        "{}",
        error_chain(&err)
    );
    assert!(err.to_string().contains(&registry.host()));
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Builds a small image with cargo-image itself (two inline-file layers on scratch) into
/// `out` (an OCI layout, tag `v1`), with its store in `store`. Returns the manifest digest.
pub fn build_image(dir: &Path, out: &Path, store: &Path, text: &str) -> String {
    let spec = dir.join("image.toml");
    std::fs::write(
        &spec,
        format!(
            r#"name = "regtest"
tags = ["v1"]
from = "scratch"

[config]
entrypoint = ["/bin/true"]

[[layer]]
name = "first"

[[layer.add]]
content = "{text}\n"
dest = "/etc/hello.txt"

[[layer]]
name = "second"

[[layer.add]]
content = "second layer of {text}\n"
dest = "/etc/second.txt"
"#
        ),
    )
    .unwrap();
    let opts = cargo_oci_image::build::BuildOptions {
        output: Some(out.to_path_buf()),
        store: Some(store.to_path_buf()),
        ..Default::default()
    };
    cargo_oci_image::build::build(&spec, &opts, &|_| {})
        .expect("build the test image")
        .manifest_digest
}

#[test]
fn concurrent_pulls_of_one_reference_download_it_once() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let base = push_umoci(tmp.path(), &registry.host());
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let client = RegistryClient::new(options()).unwrap();
    let platform = Platform::parse(&format!("linux/{}", host_arch())).unwrap();

    // The images of a workspace that share a base pull it at once: one downloads, the others
    // wait for it and find it in the store.
    let pulled: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| client.pull(&base, &platform, &store, PullPolicy::IfNotPresent)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    let downloaded: usize = pulled.iter().map(|p| p.downloaded_blobs).sum();
    assert_eq!(downloaded, 2, "config and one layer, once");
    assert_eq!(pulled.iter().filter(|p| p.from_network).count(), 1);
    assert!(pulled
        .windows(2)
        .all(|w| w[0].image.digest() == w[1].image.digest()));
}
