//! Registries through the command line, against a real `docker-registry` on 127.0.0.1:
//! `cargo image push` (checked by skopeo), bases pulled by reference from images another tool
//! made, pull policies offline, and htpasswd auth over TLS.

use std::path::Path;

use cargo_oci_image_test_support::registry::{push_umoci_image, Registry};
use cargo_oci_image_test_support::*;

#[test]
fn push_is_read_back_by_skopeo_and_a_second_push_uploads_nothing() {
    let registry = Registry::start();
    let (tmp, dir) = example_copy("import-tar");
    let repo = format!("{}/tools/import-tar", registry.host());
    let r = cargo_image(&dir)
        .args(["push", "--quiet", "--push-to", &repo])
        .run()
        .ok();
    let local = manifest_digest(&dir.join("target/image/import-tar"));
    assert_eq!(
        r.stdout.trim(),
        format!("{repo}@{local}"),
        "push prints name@digest"
    );

    for tag in ["latest", "vendor-1.0"] {
        let copy = tmp.path().join(format!("copy-{tag}"));
        skopeo_pull(&format!("docker://{repo}:{tag}"), &copy, tag);
        let v = skopeo_inspect(&copy, tag, None);
        assert_eq!(v["Digest"], local.as_str(), "{tag}");
    }

    let again = cargo_image(&dir)
        .args(["push", "--message-format", "json", "--push-to", &repo])
        .run()
        .ok();
    let events = json_events(&again.stdout);
    let event = *of_kind(&events, "pushed").first().expect("a pushed event");
    assert_eq!(event["uploaded_blobs"], 0, "{event}");
    assert!(event["skipped_blobs"].as_u64().unwrap() >= 3, "{event}");
}

#[test]
fn a_second_repository_mounts_our_blobs_and_each_tag_is_one_manifest_upload() {
    let registry = Registry::start();
    let (_tmp, dir) = example_copy("import-tar");
    let repo = |name: &str| format!("{}/team/{name}", registry.host());
    let r = cargo_image(&dir)
        .args([
            "push",
            "--quiet",
            "--push-to",
            &repo("one"),
            "--push-to",
            &repo("two"),
        ])
        .run()
        .ok();
    let layout = dir.join("target/image/import-tar");
    let local = manifest_digest(&layout);
    assert_eq!(
        r.stdout,
        format!("{}@{local}\n{}@{local}\n", repo("one"), repo("two")),
        "one line per repository"
    );
    // What a push sends: the image's config and layers and its referrers' (the SBOM and the
    // provenance, artifact manifests sharing the empty config), each blob once; and per
    // repository one manifest upload per tag, one per referrer and the referrers' fallback tag.
    let index = read_json(&layout.join("index.json"));
    let mut all_blobs = std::collections::BTreeSet::new();
    let mut referrer_manifests = std::collections::BTreeSet::new();
    for entry in index["manifests"].as_array().unwrap() {
        let digest = entry["digest"].as_str().unwrap();
        if entry.get("artifactType").is_some() {
            referrer_manifests.insert(digest.to_owned());
        }
        let manifest = blob_json(&layout, digest);
        all_blobs.insert(manifest["config"]["digest"].as_str().unwrap().to_owned());
        for layer in manifest["layers"].as_array().unwrap() {
            all_blobs.insert(layer["digest"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(referrer_manifests.len(), 2, "{index}");
    let blobs = all_blobs.len();
    let manifest_uploads = 2 + referrer_manifests.len() + 1;

    // A later process, with the same store, pushing to a third repository mounts too.
    let again = cargo_image(&dir)
        .args([
            "push",
            "--message-format",
            "json",
            "--push-to",
            &repo("three"),
        ])
        .run()
        .ok();
    let events = json_events(&again.stdout);
    let pushed = *of_kind(&events, "pushed").first().expect("a pushed event");
    assert_eq!(pushed["uploaded_blobs"], 0, "{pushed}");
    assert_eq!(pushed["mounted_blobs"], blobs, "{pushed}");

    let requests = registry.requests();
    for name in ["one", "two", "three"] {
        let path = format!("team/{name}");
        let of_repo: Vec<_> = requests.iter().filter(|r| r.in_repository(&path)).collect();
        // Each tag is one manifest upload (two tags), each referrer one and the fallback tag
        // one; each blob sent once.
        let manifest_puts = of_repo
            .iter()
            .filter(|r| r.method == "PUT" && r.uri.contains("/manifests/"))
            .count();
        assert_eq!(manifest_puts, manifest_uploads, "{path}: {of_repo:#?}");
        let mounted = of_repo
            .iter()
            .filter(|r| r.is_mount() && r.status == 201)
            .count();
        let uploads = of_repo.iter().filter(|r| r.is_blob_upload()).count();
        if name == "one" {
            assert_eq!(mounted, 0, "{of_repo:#?}");
            assert!(uploads >= blobs, "{of_repo:#?}");
        } else {
            assert_eq!(
                mounted, blobs,
                "{path}: the registry log shows a mount per blob: {of_repo:#?}"
            );
            assert_eq!(uploads, 0, "{path}: nothing uploaded: {of_repo:#?}");
        }
        assert!(
            !of_repo.iter().any(|r| r.is_blob_download()),
            "{of_repo:#?}"
        );
    }

    // And skopeo reads the mounted image back, the same digest.
    let copy = dir.join("copy");
    skopeo_pull(
        &format!("docker://{}:vendor-1.0", repo("three")),
        &copy,
        "v",
    );
    assert_eq!(skopeo_inspect(&copy, "v", None)["Digest"], local.as_str());
}

/// Pushes an image made by umoci holding `/etc/motd` as `REGISTRY/base:1`.
fn push_umoci_base(registry: &Registry, dir: &Path) -> String {
    push_umoci_image(
        dir,
        &format!("{}/base:1", registry.host()),
        "/etc/motd",
        "base motd, made by umoci\n",
    )
}

#[test]
fn a_base_pulled_by_reference_runs_under_our_program() {
    let registry = Registry::start();
    let (tmp, dir) = example_copy("hello");
    let base = push_umoci_base(&registry, tmp.path());
    // The example's own motd goes: the base provides /etc/motd.
    edit_spec(&dir, |spec| {
        let spec = spec.replace("from = \"scratch\"", &format!("from = \"{base}\""));
        let cut = spec.find("[[layer.add]]\ncontent").expect("motd entry");
        spec[..cut].to_string()
    });

    let out = tmp.path().join("out");
    let r = cargo_image(&dir)
        .args(["build", "--output"])
        .arg_path(&out)
        .run()
        .ok();
    assert!(r.stderr.contains(&base), "{}", r.stderr);
    let raw = skopeo_inspect(&out, "latest", Some("--raw"));
    assert_eq!(
        raw["layers"].as_array().unwrap().len(),
        2,
        "base layer + ours"
    );
    // The OCI base annotations: the reference, and the digest skopeo finds in the registry.
    let pushed = skopeo([
        "inspect".to_string(),
        "--tls-verify=false".to_string(),
        format!("docker://{base}"),
    ])
    .ok();
    let pushed: Value = serde_json::from_str(&pushed.stdout).unwrap();
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.base.name"],
        base.as_str(),
        "{raw}"
    );
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.base.digest"], pushed["Digest"],
        "{raw}"
    );
    oci_image_tool_validate(&out, "latest");

    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "latest", &bundle);
    let ran = runc_run(&bundle);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        ran.stdout,
        "Hello, OCI! (from a cargo-image built image)\nbase motd, made by umoci\n"
    );
}

#[test]
fn pull_never_fails_clearly_and_a_held_base_builds_offline() {
    let mut registry = Registry::start();
    let tmp = TempDir::new().unwrap();
    let base = push_umoci_base(&registry, tmp.path());
    let spec = |pull: &str| spec_on_base(&base, pull);
    let dir = write_spec(&tmp.path().join("p"), &spec("pull = \"never\""));
    let r = cargo_image(&dir).args(["build"]).run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("base:1"), "{}", r.stderr);
    assert!(r.stderr.contains("never"), "{}", r.stderr);

    write_spec(&dir, &spec(""));
    cargo_image(&dir).args(["build", "--quiet"]).run().ok();
    let online = manifest_digest(&dir.join("target/image/onbase"));

    registry.stop();
    for pull in ["", "pull = \"never\""] {
        write_spec(&dir, &spec(pull));
        cargo_image(&dir)
            .args(["build", "--quiet", "--output", "offline"])
            .run()
            .ok();
        assert_eq!(manifest_digest(&dir.join("offline")), online, "{pull}");
    }
    write_spec(&dir, &spec("pull = \"always\""));
    let r = cargo_image(&dir)
        .args(["build", "--output", "always"])
        .run();
    assert_eq!(
        r.code,
        Some(1),
        "pull = always needs the registry: {}",
        r.stderr
    );
}

#[test]
fn htpasswd_over_tls_right_and_wrong_credentials() {
    const PASSWORD: &str = "Sup3r-secret-pw";
    let registry = Registry::start_with(Some(("alice", PASSWORD)), true);
    let ca = registry.tls.as_ref().expect("tls").ca.clone();
    let (_tmp, dir) = example_copy("import-tar");
    let repo = format!("{}/secure/import-tar", registry.host());

    let ok = cargo_image(&dir)
        .args(["push", "--quiet", "--push-to", &repo, "--registry-ca"])
        .arg_path(&ca)
        .args(["--creds", &format!("alice:{PASSWORD}")])
        .run()
        .ok();
    assert!(
        ok.stdout.contains(&format!("{repo}@sha256:")),
        "{}",
        ok.stdout
    );
    assert!(!ok.stdout.contains(PASSWORD) && !ok.stderr.contains(PASSWORD));

    let bad = cargo_image(&dir)
        .args(["push", "--push-to", &repo, "--registry-ca"])
        .arg_path(&ca)
        .args(["--creds", "alice:wrong-password-here"])
        .run();
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    let text = bad.output();
    assert!(
        text.contains(&registry.host()),
        "names the registry: {text}"
    );
    assert!(
        text.to_lowercase().contains("401") || text.to_lowercase().contains("unauthorized"),
        "says why: {text}"
    );
    assert!(
        !text.contains("wrong-password-here"),
        "never prints the password: {text}"
    );

    // The same through the environment, as CI would.
    let env = cargo_image(&dir)
        .args(["push", "--quiet", "--push-to", &repo, "--registry-ca"])
        .arg_path(&ca)
        .env("CARGO_IMAGE_REGISTRY_USER", "alice")
        .env("CARGO_IMAGE_REGISTRY_PASSWORD", PASSWORD)
        .run()
        .ok();
    assert!(
        env.stdout.contains(&format!("{repo}@sha256:")),
        "{}",
        env.stdout
    );
}
