//! Pushing through the library against a real `docker-registry` on 127.0.0.1: a layout whose
//! blob is corrupt fails the push naming the file and the registry keeps nothing of it; a
//! registry (or proxy) that refuses monolithic uploads gets chunked ones. skopeo reads back
//! what was pushed.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cargo_oci_image::registry::{
    CredentialLookup, Error, Reference, RegistryClient, RegistryOptions, RetryPolicy,
};
use cargo_oci_image_test_support::registry::{Fault, Proxy, Registry};
use cargo_oci_image_test_support::{blob_path, error_chain, read_json, skopeo};

fn options() -> RegistryOptions {
    RegistryOptions {
        credentials: CredentialLookup::default(),
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        ..RegistryOptions::default()
    }
}

/// Builds an image of one layer holding `files/` (a 300 KB file and a small one) into `out`;
/// returns the manifest digest and the layer's digest.
fn build_image(dir: &Path, out: &Path) -> (String, String) {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(files.join("big.bin"), big).unwrap();
    std::fs::write(files.join("small.txt"), "small\n").unwrap();
    let spec = dir.join("image.toml");
    std::fs::write(
        &spec,
        "name = \"pushtest\"\ntags = [\"v1\"]\nfrom = \"scratch\"\n\n[[layer]]\nname = \"files\"\n\
         [[layer.add]]\npath = \"files\"\ndest = \"/srv/\"\n",
    )
    .unwrap();
    let opts = cargo_oci_image::build::BuildOptions {
        output: Some(out.to_path_buf()),
        store: Some(dir.join("store")),
        ..Default::default()
    };
    let digest = cargo_oci_image::build::build(&spec, &opts, &|_| {})
        .expect("build the test image")
        .manifest_digest;
    let manifest = read_json(&blob_path(out, &digest));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    (digest, layer)
}

#[test]
fn a_corrupt_blob_fails_the_push_naming_its_file_and_the_registry_keeps_nothing() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let (_, layer) = build_image(tmp.path(), &layout);
    // The same size, one byte changed: only hashing it finds out (a new file, not the
    // store's, which may share its inode).
    let path = blob_path(&layout, &layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();

    let client = RegistryClient::new(options()).unwrap();
    let target: Reference = format!("{}/corrupt/app:v1", registry.host())
        .parse()
        .unwrap();
    let err = client
        .push_layout(&layout, None, &target, &[], None, &|_| {})
        .unwrap_err();
    let text = error_chain(&err);
    assert!(matches!(err, Error::ReadLayout { .. }), "{text}");
    assert!(
        text.contains(&path.display().to_string()),
        "names the file: {text}"
    );
    assert!(text.contains(&layer), "names the blob: {text}");
    assert!(text.contains("the layout is corrupt"), "{text}");

    // The registry committed no upload of it and no manifest; and it was tried once at most (a
    // corrupt file is not retried).
    let requests = registry.requests();
    let hex = layer.trim_start_matches("sha256:");
    assert!(
        !requests.iter().any(|r| r.method == "PUT"
            && r.status == 201
            && r.uri.contains(&format!("digest=sha256%3A{hex}"))),
        "{requests:#?}"
    );
    assert!(
        !requests.iter().any(|r| r.uri.contains("/manifests/")),
        "{requests:#?}"
    );
    let tries = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.uri.contains(&format!("digest=sha256%3A{hex}")))
        .count();
    assert!(tries <= 1, "{requests:#?}");
}

#[test]
fn a_registry_refusing_monolithic_uploads_gets_chunks() {
    let registry = Registry::start();
    // Like a proxy with a body-size limit: a PUT that carries a blob's bytes (to a session
    // no PATCH went to) is answered 413.
    let patched: Arc<Mutex<Vec<String>>> = Arc::default();
    let sessions = patched.clone();
    let proxy = Proxy::start(registry.port, move |_, method, path| {
        let Some((_, rest)) = path.split_once("/blobs/uploads/") else {
            return Fault::Pass;
        };
        let session = rest.split('?').next().unwrap_or("").to_owned();
        match method {
            "PATCH" => {
                sessions.lock().unwrap().push(session);
                Fault::Pass
            }
            "PUT" if !sessions.lock().unwrap().contains(&session) => Fault::Status(413),
            _ => Fault::Pass,
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let (digest, _) = build_image(tmp.path(), &layout);
    let client = RegistryClient::new(options()).unwrap();
    let target: Reference = format!("{}/chunked/app:v1", proxy.host()).parse().unwrap();
    let report = client
        .push_layout(&layout, None, &target, &[], None, &|_| {})
        .unwrap();
    assert_eq!(report.digest, digest);
    let seen = proxy.seen();
    let refused = proxy.count(Fault::Status(413));
    assert_eq!(
        refused, report.uploaded_blobs,
        "each blob tried monolithic once: {seen:#?}"
    );
    assert!(
        seen.iter().filter(|s| s.method == "PATCH").count() >= report.uploaded_blobs,
        "{seen:#?}"
    );

    let out = tmp.path().join("copy");
    skopeo([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/chunked/app:v1", registry.host()),
        &format!("oci:{}:v1", out.display()),
    ]);
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
}
