//! Registries over TLS the way people run them, and registry errors that name the operation,
//! the reference and the fix: a real `docker-registry` on 127.0.0.1 with a self-signed
//! certificate made as Docker's docs make one (the certificate is its own CA and the server's
//! certificate), `--registry-ca` files that hold no certificate, and pushes refused for want of
//! credentials.

use cargo_oci_image_test_support::registry::{Registry, TlsSetup};
use cargo_oci_image_test_support::*;

/// Docker's docs: one self-signed certificate for `IP:127.0.0.1`.
const DOCKER_STYLE: TlsSetup = TlsSetup::SelfSigned {
    subject_alt_name: "IP:127.0.0.1",
};

#[test]
fn a_registry_with_a_docker_style_self_signed_certificate_takes_pushes_and_serves_bases_with_registry_ca(
) {
    let registry = Registry::start_with_tls(None, Some(DOCKER_STYLE));
    let cert = registry.tls.as_ref().expect("tls").ca.clone();
    let (tmp, dir) = example_copy("import-tar");
    let repo = format!("{}/lab/import-tar", registry.host());

    let pushed = cargo_image(&dir)
        .args(["push", "--quiet", "--push-to", &repo, "--registry-ca"])
        .arg_path(&cert)
        .run()
        .ok();
    let local = manifest_digest(&dir.join("target/image/import-tar"));
    assert_eq!(pushed.stdout.trim(), format!("{repo}@{local}"));

    // skopeo, trusting the same certificate, reads back what we pushed.
    let inspected = skopeo([
        "inspect".to_string(),
        "--cert-dir".to_string(),
        registry.cert_dir().display().to_string(),
        format!("docker://{repo}:latest"),
    ]);
    let v: Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(v["Digest"], local.as_str());

    // The pushed image as a base, pulled over the same TLS.
    let onbase = tmp.path().join("onbase");
    write_spec(&onbase, &spec_on_base(&format!("{repo}:latest"), ""));
    let out = tmp.path().join("out");
    cargo_image(&onbase)
        .args(["build", "--quiet", "--output"])
        .arg_path(&out)
        .args(["--registry-ca"])
        .arg_path(&cert)
        .run()
        .ok();
    let raw = skopeo_inspect(&out, "latest", Some("--raw"));
    let base_layers = skopeo_inspect(
        &dir.join("target/image/import-tar"),
        "latest",
        Some("--raw"),
    )["layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        raw["layers"].as_array().unwrap().len(),
        base_layers + 1,
        "the base's layers + ours: {raw}"
    );
}

#[test]
fn without_registry_ca_a_self_signed_registry_is_refused_as_not_trusted_naming_registry_ca() {
    let registry = Registry::start_with_tls(None, Some(DOCKER_STYLE));
    let (tmp, dir) = example_copy("import-tar");
    let repo = format!("{}/lab/import-tar", registry.host());

    let push = cargo_image(&dir).args(["push", "--push-to", &repo]).run();
    assert_eq!(push.code, Some(1), "{}", push.output());
    let text = push.output();
    assert!(text.contains("not trusted"), "says what is wrong: {text}");
    assert!(text.contains("--registry-ca"), "says what to do: {text}");
    assert!(
        text.contains(&registry.host()),
        "names the registry: {text}"
    );
    assert!(text.contains(&format!("pushing image {repo}")), "{text}");
    assert!(
        !text.contains("UnknownIssuer"),
        "in words, not a Debug dump: {text}"
    );

    let onbase = tmp.path().join("onbase");
    let base = format!("{repo}:latest");
    write_spec(&onbase, &spec_on_base(&base, ""));
    let pull = cargo_image(&onbase).args(["build"]).run();
    assert_eq!(pull.code, Some(1), "{}", pull.output());
    let text = pull.output();
    assert!(text.contains("not trusted"), "{text}");
    assert!(text.contains("--registry-ca"), "{text}");
    assert!(
        text.contains(&format!("pulling base image {base}")),
        "{text}"
    );
}

#[test]
fn a_trusted_self_signed_certificate_for_another_name_is_refused_naming_the_names_it_is_valid_for()
{
    let registry = Registry::start_with_tls(
        None,
        Some(TlsSetup::SelfSigned {
            subject_alt_name: "DNS:registry.example.test,IP:10.9.8.7",
        }),
    );
    let cert = registry.tls.as_ref().expect("tls").ca.clone();
    let (_tmp, dir) = example_copy("import-tar");
    let repo = format!("{}/lab/import-tar", registry.host());

    let push = cargo_image(&dir)
        .args(["push", "--push-to", &repo, "--registry-ca"])
        .arg_path(&cert)
        .run();
    assert_eq!(push.code, Some(1), "{}", push.output());
    let text = push.output();
    assert!(
        text.contains("is not valid for `127.0.0.1`"),
        "names the host asked for: {text}"
    );
    assert!(
        text.contains("it is valid for registry.example.test, 10.9.8.7"),
        "names the names the certificate is valid for: {text}"
    );
    assert!(
        !text.contains("NotValidForName"),
        "in words, not a Debug dump: {text}"
    );
    assert!(text.contains(&format!("pushing image {repo}")), "{text}");
}

#[test]
fn a_push_without_credentials_says_it_is_pushing_the_image_and_how_to_log_in() {
    let registry = Registry::start_with(Some(("alice", "s3cret-pw")), true);
    let ca = registry.tls.as_ref().expect("tls").ca.clone();
    let (_tmp, dir) = example_copy("import-tar");
    let repo = format!("{}/secure/import-tar", registry.host());
    let empty = tempfile::tempdir().unwrap();

    let push = cargo_image(&dir)
        .args(["push", "--push-to", &repo, "--registry-ca"])
        .arg_path(&ca)
        // No credentials anywhere: no docker config.json, no podman auth.json.
        .env("DOCKER_CONFIG", empty.path())
        .env("REGISTRY_AUTH_FILE", empty.path().join("auth.json"))
        .env("XDG_RUNTIME_DIR", empty.path())
        .env("HOME", empty.path())
        .run();
    assert_eq!(push.code, Some(1), "{}", push.output());
    let text = push.output();
    assert!(text.contains(&format!("pushing image {repo}")), "{text}");
    assert!(
        !text.contains("base image"),
        "it is not a base image: {text}"
    );
    assert!(text.contains("401"), "says the status: {text}");
    assert!(
        text.contains("docker login") && text.contains("--creds"),
        "says how to give credentials: {text}"
    );
}

#[test]
fn a_registry_ca_file_without_a_certificate_is_refused_naming_the_file_and_the_flag() {
    let (tmp, dir) = example_copy("import-tar");
    let not_a_cert = tmp.path().join("passwd");
    std::fs::write(&not_a_cert, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let missing = tmp.path().join("no-such-ca.pem");
    for ca in [&not_a_cert, &missing] {
        let r = cargo_image(&dir)
            .args(["build", "--registry-ca"])
            .arg_path(ca)
            .run();
        let text = r.output();
        assert_eq!(r.code, Some(2), "a bad flag is a usage error: {text}");
        assert!(
            text.contains(&ca.display().to_string()),
            "names the file: {text}"
        );
        assert!(text.contains("--registry-ca"), "names the flag: {text}");
    }
    let r = cargo_image(&dir)
        .args(["build", "--registry-ca"])
        .arg_path(&not_a_cert)
        .run();
    assert!(r.output().contains("no PEM certificate"), "{}", r.output());
}
