//! Signing as cosign does, checked with tools nobody here wrote: openssl verifies the stored
//! simple-signing payloads and the DSSE pre-authentication encodings of the attestations
//! against the public key; Python's scrypt (OpenSSL's) and PyNaCl (libsodium's secretbox) open
//! the encrypted key `generate-key-pair` writes, with its password only; skopeo reads the
//! `.sig` / `.att` tags a signed push leaves in a loopback `docker-registry`. Our `verify`
//! passes on what we signed and fails, saying why, on a tampered payload, another key and an
//! unsigned image.

use std::path::{Path, PathBuf};

use cargo_oci_image_test_support::registry::Registry;
use cargo_oci_image_test_support::*;

const SIGS: &str = "dev.cosignproject.cosign/sigs";
const ATTS: &str = "dev.cosignproject.cosign/atts";
const SIGNATURE: &str = "dev.cosignproject.cosign/signature";
const PASSWORD: &str = "correct horse";
/// Debian's python, which has Debian's python3-nacl (`just deps`).
const PYTHON: &str = "/usr/bin/python3";

/// Decrypts cosign's encrypted private key file with scrypt (hashlib) and NaCl's secretbox
/// (PyNaCl), writing the PKCS#8 DER inside to stdout.
const DECRYPT_KEY: &str = r#"
import base64, hashlib, json, sys
import nacl.secret
pem = open(sys.argv[1]).read().splitlines()
assert pem[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", pem[0]
env = json.loads(base64.b64decode("".join(l for l in pem if not l.startswith("-----"))))
assert env["kdf"]["name"] == "scrypt" and env["cipher"]["name"] == "nacl/secretbox"
p = env["kdf"]["params"]
key = hashlib.scrypt(sys.argv[2].encode(), salt=base64.b64decode(env["kdf"]["salt"]),
                     n=p["N"], r=p["r"], p=p["p"], maxmem=256 * 1024 * 1024, dklen=32)
der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(env["ciphertext"]),
                                         base64.b64decode(env["cipher"]["nonce"]))
sys.stdout.buffer.write(der)
"#;

/// `cargo image generate-key-pair` in `dir`: `(cosign.key, cosign.pub)`.
fn generate_key_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let r = cargo_image(dir)
        .args(["generate-key-pair"])
        .env("COSIGN_PASSWORD", PASSWORD)
        .run()
        .ok();
    assert!(r.stdout.contains("cosign.key"), "{}", r.stdout);
    (dir.join("cosign.key"), dir.join("cosign.pub"))
}

/// A plain PKCS#8 P-256 key made by openssl, and its public key: `(key.pem, key.pub)`.
fn openssl_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    let (k, p) = (key.to_str().unwrap(), public.to_str().unwrap());
    let genpkey = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        k,
    ];
    run("openssl", genpkey, dir).ok();
    run("openssl", ["pkey", "-in", k, "-pubout", "-out", p], dir).ok();
    (key, public)
}

/// `openssl dgst -sha256 -verify PUB -signature SIG MESSAGE`, the signature given in base64
/// (decoded by coreutils' `base64 -d`): whether openssl accepts it.
fn openssl_verifies(dir: &Path, public: &Path, message: &[u8], signature_b64: &str) -> bool {
    let scratch = tempfile::tempdir_in(dir).unwrap();
    let (msg, sig) = (
        scratch.path().join("payload"),
        scratch.path().join("sig.der"),
    );
    std::fs::write(&msg, message).unwrap();
    let r = run_command(
        std::process::Command::new("sh")
            .args([
                "-c",
                "printf %s \"$1\" | base64 -d > \"$2\" && \
                 openssl dgst -sha256 -verify \"$3\" -signature \"$2\" \"$4\"",
                "sh",
                signature_b64,
                sig.to_str().unwrap(),
                public.to_str().unwrap(),
                msg.to_str().unwrap(),
            ])
            .current_dir(dir),
    );
    r.code == Some(0) && r.stdout.contains("Verified OK")
}

/// Decodes base64 text (a JSON statement) with coreutils' `base64 -d`.
fn b64_text(text: &str) -> String {
    run_command(
        std::process::Command::new("sh")
            .args(["-c", "printf %s \"$1\" | base64 -d", "sh", text])
            .current_dir("/"),
    )
    .ok()
    .stdout
}

/// DSSE's pre-authentication encoding, written out from the spec.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The index.json entry of a layout with cosign `kind`.
fn kind_entry(layout: &Path, kind: &str) -> Option<Value> {
    read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"]["kind"] == kind)
        .cloned()
}

/// Checks every signature and attestation stored in a layout with openssl against `public`:
/// the payload signs `digest`, the attestations are about `subject`; returns the attested
/// predicate types.
fn openssl_checks_layout(
    dir: &Path,
    layout: &Path,
    public: &Path,
    digest: &str,
    subject: &str,
) -> Vec<String> {
    let sigs = kind_entry(layout, SIGS).expect("a signature image entry");
    let manifest = blob_json(layout, sigs["digest"].as_str().unwrap());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer = &layers[0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = std::fs::read(blob_path(layout, layer["digest"].as_str().unwrap())).unwrap();
    let signature = layer["annotations"][SIGNATURE].as_str().unwrap();
    assert!(
        openssl_verifies(dir, public, &payload, signature),
        "openssl verifies the simple-signing payload"
    );
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims["critical"]["image"]["docker-manifest-digest"],
        digest
    );
    assert_eq!(
        claims["critical"]["type"],
        "cosign container image signature"
    );

    let atts = kind_entry(layout, ATTS).expect("an attestation image entry");
    let manifest = blob_json(layout, atts["digest"].as_str().unwrap());
    let mut types = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], "application/vnd.dsse.envelope.v1+json");
        let envelope = blob_json(layout, layer["digest"].as_str().unwrap());
        assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
        let statement = b64_text(envelope["payload"].as_str().unwrap()).into_bytes();
        let signature = envelope["signatures"][0]["sig"].as_str().unwrap();
        assert!(
            openssl_verifies(
                dir,
                public,
                &pae("application/vnd.in-toto+json", &statement),
                signature
            ),
            "openssl verifies the DSSE PAE of {layer}"
        );
        let statement: Value = serde_json::from_slice(&statement).unwrap();
        assert_eq!(
            statement["predicateType"],
            layer["annotations"]["predicateType"]
        );
        assert_eq!(
            format!(
                "sha256:{}",
                statement["subject"][0]["digest"]["sha256"]
                    .as_str()
                    .unwrap()
            ),
            subject
        );
        types.push(statement["predicateType"].as_str().unwrap().to_string());
    }
    types
}

#[test]
fn a_generated_key_signs_a_layout_that_openssl_verifies_and_opens_with_its_password_only() {
    let (tmp, dir) = example_copy("hello");
    let (key, public) = generate_key_pair(tmp.path());
    // The encrypted key: scrypt + secretbox by Python and libsodium, PKCS#8 read by openssl.
    let decrypt = |password: &str| {
        run(
            PYTHON,
            ["-c", DECRYPT_KEY, key.to_str().unwrap(), password],
            tmp.path(),
        )
    };
    let wrong = decrypt("wrong password");
    assert_ne!(
        wrong.code,
        Some(0),
        "a wrong password must not open the key"
    );
    assert!(wrong.stderr.contains("CryptoError"), "{}", wrong.stderr);
    let opened = run_command(
        std::process::Command::new("sh")
            .args([
                "-c",
                "\"$0\" -c \"$1\" \"$2\" \"$3\" | openssl pkey -inform DER -pubout",
                PYTHON,
                DECRYPT_KEY,
                key.to_str().unwrap(),
                PASSWORD,
            ])
            .current_dir(tmp.path()),
    )
    .ok();
    assert_eq!(
        opened.stdout,
        std::fs::read_to_string(&public).unwrap(),
        "the decrypted private key's public half is cosign.pub"
    );

    let layout = dir.join("target/image/hello");
    cargo_image(&dir).args(["build", "--quiet"]).run().ok();
    let digest = manifest_digest(&layout);
    // Unsigned: verify says so.
    let unsigned = cargo_image(&dir)
        .args(["verify", "--key"])
        .arg_path(&public)
        .arg_path(&layout)
        .run();
    assert_eq!(unsigned.code, Some(1), "{}", unsigned.output());
    assert!(
        unsigned.stderr.contains("is not signed"),
        "{}",
        unsigned.stderr
    );

    // Without the password, the encrypted key is refused naming what to set.
    let no_password = cargo_image(&dir)
        .args(["sign", "--key"])
        .arg_path(&key)
        .arg_path(&layout)
        .env_remove("COSIGN_PASSWORD")
        .run();
    assert_eq!(no_password.code, Some(2), "{}", no_password.output());
    assert!(
        no_password.stderr.contains("COSIGN_PASSWORD") && no_password.stderr.contains("cosign.key"),
        "{}",
        no_password.stderr
    );
    let bad_password = cargo_image(&dir)
        .args(["sign", "--key"])
        .arg_path(&key)
        .arg_path(&layout)
        .env("COSIGN_PASSWORD", "nope")
        .run();
    assert_eq!(bad_password.code, Some(2), "{}", bad_password.output());
    assert!(
        bad_password.stderr.contains("does not open it"),
        "{}",
        bad_password.stderr
    );

    let sign = || {
        cargo_image(&dir)
            .args(["sign", "--key"])
            .arg_path(&key)
            .arg_path(&layout)
            .env("COSIGN_PASSWORD", PASSWORD)
            .run()
            .ok()
    };
    let signed = sign();
    assert!(signed.stdout.contains(&digest), "{}", signed.stdout);
    let index = std::fs::read(layout.join("index.json")).unwrap();
    let mut types = openssl_checks_layout(tmp.path(), &layout, &public, &digest, &digest);
    types.sort();
    assert_eq!(
        types,
        [
            "https://cyclonedx.org/bom",
            "https://slsa.dev/provenance/v1"
        ],
        "the SBOM and the provenance are attested"
    );
    // The signed image's entries carry cosign's kind; skopeo still reads the image by tag.
    let image = kind_entry(&layout, "dev.cosignproject.cosign/image").expect("kind image");
    assert_eq!(image["digest"], digest.as_str());
    assert_eq!(
        skopeo_inspect(&layout, "latest", None)["Digest"],
        digest.as_str()
    );

    // The signature entries are not images: the layout still has one image, with its SBOM.
    let inspected = cargo_image(&dir)
        .args(["inspect", "--json"])
        .arg_path(&layout)
        .run()
        .ok();
    let images: Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(images.as_array().unwrap().len(), 1, "{images}");
    let sbom = cargo_image(&dir)
        .args(["sbom"])
        .arg_path(&layout)
        .run()
        .ok();
    assert!(sbom.stdout.contains("CycloneDX"), "{}", sbom.stdout);

    // RFC 6979: signing again writes the same bytes.
    sign();
    assert_eq!(std::fs::read(layout.join("index.json")).unwrap(), index);

    let verified = cargo_image(&dir)
        .args(["verify", "--key"])
        .arg_path(&public)
        .arg_path(&layout)
        .run()
        .ok();
    assert!(
        verified.stdout.contains("Verified") && verified.stdout.contains(&digest),
        "{}",
        verified.stdout
    );
    assert!(
        verified
            .stdout
            .contains("attestation https://slsa.dev/provenance/v1"),
        "{}",
        verified.stdout
    );

    // Another key: openssl and our verify both refuse.
    let (_, other) = openssl_key(tmp.path(), "other");
    let wrong_key = cargo_image(&dir)
        .args(["verify", "--key"])
        .arg_path(&other)
        .arg_path(&layout)
        .run();
    assert_eq!(wrong_key.code, Some(1), "{}", wrong_key.output());
    assert!(
        wrong_key.stderr.contains("fails verification")
            && wrong_key.stderr.contains("signature does not match"),
        "{}",
        wrong_key.stderr
    );

    // A tampered attestation (the SBOM's envelope carrying the provenance's signature) fails,
    // naming it.
    let atts = kind_entry(&layout, ATTS).unwrap();
    let manifest = blob_json(&layout, atts["digest"].as_str().unwrap());
    let provenance = blob_json(&layout, manifest["layers"][1]["digest"].as_str().unwrap());
    let sig = provenance["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_string();
    tamper(&layout, ATTS, |envelope| {
        let mut envelope: Value = serde_json::from_str(&envelope).unwrap();
        envelope["signatures"][0]["sig"] = sig.into();
        envelope.to_string()
    });
    let tampered = cargo_image(&dir)
        .args(["verify", "--key"])
        .arg_path(&public)
        .arg_path(&layout)
        .run();
    assert_eq!(tampered.code, Some(1), "{}", tampered.output());
    assert!(
        tampered
            .stderr
            .contains("attestation https://cyclonedx.org/bom")
            && tampered.stderr.contains("signature does not match"),
        "{}",
        tampered.stderr
    );

    // A tampered payload (the same image under another name) fails.
    tamper(&layout, SIGS, |payload| {
        payload.replace(
            "\"docker-reference\":\"hello\"",
            "\"docker-reference\":\"evil\"",
        )
    });
    let tampered = cargo_image(&dir)
        .args(["verify", "--key"])
        .arg_path(&public)
        .arg_path(&layout)
        .run();
    assert_eq!(tampered.code, Some(1), "{}", tampered.output());
    assert!(
        tampered.stderr.contains("signature 1")
            && tampered.stderr.contains("signature does not match"),
        "{}",
        tampered.stderr
    );
}

/// Rewrites the first layer of the layout's signature image of `kind` with `edit`, keeping
/// the blob, the signature manifest and the index.json entry consistent: only the signature
/// can tell.
fn tamper(layout: &Path, kind: &str, edit: impl FnOnce(String) -> String) {
    let write_blob = |bytes: &[u8]| -> (String, usize) {
        let digest = sha256(bytes);
        std::fs::write(blob_path(layout, &digest), bytes).unwrap();
        (digest, bytes.len())
    };
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path);
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["annotations"]["kind"] == kind)
        .unwrap();
    let mut manifest = blob_json(layout, entry["digest"].as_str().unwrap());
    let layer = &mut manifest["layers"][0];
    let blob = std::fs::read(blob_path(layout, layer["digest"].as_str().unwrap())).unwrap();
    let blob = edit(String::from_utf8(blob).unwrap());
    let (digest, size) = write_blob(blob.as_bytes());
    layer["digest"] = digest.into();
    layer["size"] = size.into();
    let (digest, size) = write_blob(&serde_json::to_vec(&manifest).unwrap());
    entry["digest"] = digest.into();
    entry["size"] = size.into();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A multi-platform image (an index, here of one platform) is signed as the index; the SBOM
/// and provenance attested are about its platform manifest.
#[test]
fn an_openssl_pkcs8_key_signs_a_build_and_openssl_verifies_it() {
    let (tmp, dir) = example_copy("hello");
    let (key, public) = openssl_key(tmp.path(), "release");
    let layout = dir.join("target/image/hello");
    let r = cargo_image(&dir)
        .args(["build", "--index", "--sign-key"])
        .arg_path(&key)
        .env_remove("COSIGN_PASSWORD")
        .run()
        .ok();
    assert!(r.stderr.contains("Signed"), "{}", r.stderr);
    let index = manifest_digest(&layout);
    let entry = kind_entry(&layout, "dev.cosignproject.cosign/imageIndex").expect("kind index");
    assert_eq!(entry["digest"], index.as_str());
    let platform = blob_json(&layout, &index)["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let types = openssl_checks_layout(tmp.path(), &layout, &public, &index, &platform);
    assert_eq!(types.len(), 2, "{types:?}");
    let verified = cargo_image(&dir)
        .args(["verify", "--key"])
        .arg_path(&public)
        .arg_path(&layout)
        .run()
        .ok();
    assert!(
        verified.stdout.contains(&format!("about {platform}")),
        "{}",
        verified.stdout
    );
}

/// The `predicateType` annotations of the `sha256-<hex>.att` tag of `repo`, as skopeo reads
/// the tag's manifest, sorted.
fn attested_types(repo: &str, hex: &str) -> Vec<String> {
    let att_ref = format!("docker://{repo}:sha256-{hex}.att");
    let raw: Value =
        serde_json::from_str(&skopeo(["inspect", "--raw", "--tls-verify=false", &att_ref]).stdout)
            .unwrap();
    let mut types: Vec<String> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["predicateType"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    types.sort();
    types
}

#[test]
fn a_signed_push_leaves_the_sig_and_att_tags_skopeo_reads_and_verify_checks() {
    let registry = Registry::start();
    let (tmp, dir) = example_copy("hello");
    let (key, public) = generate_key_pair(tmp.path());
    let repo = format!("{}/signed/hello", registry.host());
    let pushed = cargo_image(&dir)
        .args(["push", "--quiet", "--push-to", &repo, "--sign-key"])
        .arg_path(&key)
        .env("COSIGN_PASSWORD", PASSWORD)
        .run()
        .ok();
    let digest = manifest_digest(&dir.join("target/image/hello"));
    assert_eq!(pushed.stdout.trim(), format!("{repo}@{digest}"));
    let hex = digest.strip_prefix("sha256:").unwrap();

    // skopeo reads the signature image cosign would read, and openssl checks its payload.
    let sig_ref = format!("docker://{repo}:sha256-{hex}.sig");
    let raw: Value =
        serde_json::from_str(&skopeo(["inspect", "--raw", "--tls-verify=false", &sig_ref]).stdout)
            .unwrap();
    let layer = &raw["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let copy = tmp.path().join("sig-copy");
    skopeo_pull(&sig_ref, &copy, "sig");
    let payload = std::fs::read(blob_path(&copy, layer["digest"].as_str().unwrap())).unwrap();
    let signature = layer["annotations"][SIGNATURE].as_str().unwrap();
    assert!(openssl_verifies(tmp.path(), &public, &payload, signature));
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        claims["critical"]["identity"]["docker-reference"],
        repo.as_str()
    );

    assert_eq!(
        attested_types(&repo, hex),
        [
            "https://cyclonedx.org/bom",
            "https://slsa.dev/provenance/v1"
        ]
    );

    let verify = |reference: &str, key: &Path| {
        cargo_image(&dir)
            .args(["verify", "--key"])
            .arg_path(key)
            .args([reference])
            .run()
    };
    let ok = verify(&format!("{repo}:latest"), &public).ok();
    assert!(ok.stdout.contains(&digest), "{}", ok.stdout);
    assert!(
        ok.stdout.contains("https://cyclonedx.org/bom"),
        "{}",
        ok.stdout
    );

    let (other_key, other) = openssl_key(tmp.path(), "other");
    let wrong = verify(&format!("{repo}:latest"), &other);
    assert_eq!(wrong.code, Some(1), "{}", wrong.output());
    assert!(
        wrong.stderr.contains("signature does not match"),
        "{}",
        wrong.stderr
    );

    // An image pushed without signing is not signed; `sign` on the reference signs it there,
    // and keeps signatures of other keys when a second key signs.
    let unsigned_repo = format!("{}/plain/hello", registry.host());
    cargo_image(&dir)
        .args(["push", "--quiet", "--push-to", &unsigned_repo])
        .run()
        .ok();
    let unsigned = verify(&format!("{unsigned_repo}:latest"), &public);
    assert_eq!(unsigned.code, Some(1), "{}", unsigned.output());
    assert!(
        unsigned.stderr.contains("is not signed") && unsigned.stderr.contains(".sig"),
        "{}",
        unsigned.stderr
    );
    for key in [&key, &other_key] {
        cargo_image(&dir)
            .args(["sign", "--key"])
            .arg_path(key)
            .args([format!("{unsigned_repo}:latest")])
            .env("COSIGN_PASSWORD", PASSWORD)
            .run()
            .ok();
    }
    // Each key verifies its own signature and attestations, and counts the other key's.
    for key in [&public, &other] {
        let both = verify(&format!("{unsigned_repo}:latest"), key).ok();
        assert!(
            both.stdout
                .contains("1 signature(s) and 2 attestation(s) of other keys not checked"),
            "{}",
            both.stdout
        );
    }
    // `sign REF` attests the referrers the push listed under the image's fallback tag: the
    // `.att` tag holds the SBOM's and the provenance's envelopes, once per key.
    assert_eq!(
        attested_types(&unsigned_repo, hex),
        [
            "https://cyclonedx.org/bom",
            "https://cyclonedx.org/bom",
            "https://slsa.dev/provenance/v1",
            "https://slsa.dev/provenance/v1"
        ]
    );
}
