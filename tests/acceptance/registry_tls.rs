//! Registries over TLS the way people run them, and registry errors that name the operation,
//! the reference and the fix: `--registry-ca` files that hold no certificate, and pushes
//! refused for want of credentials.

use cargo_oci_image_acceptance::registry::Registry;
use cargo_oci_image_acceptance::*;

/// stdout and stderr of a run, as one text.
fn output(r: &Run) -> String {
    format!("{}{}", r.stdout, r.stderr)
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
    assert_eq!(push.code, Some(1), "{}", output(&push));
    let text = output(&push);
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
        let text = output(&r);
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
    assert!(output(&r).contains("no PEM certificate"), "{}", output(&r));
}
