//! Registries over TLS the way people run them, and registry errors that name the operation,
//! the reference and the fix: `--registry-ca` files that hold no certificate.

use cargo_oci_image_acceptance::*;

/// stdout and stderr of a run, as one text.
fn output(r: &Run) -> String {
    format!("{}{}", r.stdout, r.stderr)
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
