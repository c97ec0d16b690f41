//! Referrers pushed with the image, against a real `docker-registry` (CNCF distribution 2.x,
//! which has no referrers API) on 127.0.0.1: each image's SBOM artifact goes by digest, and
//! the distribution spec's fallback tag `sha256-<hex of the image>` lists it; read back with
//! skopeo and a plain HTTP blob fetch.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use cargo_oci_image_test_support::registry::Registry;
use cargo_oci_image_test_support::{
    blob_json, blob_path, cargo_image, json_events, manifest_digest, of_kind, read_json, sha256,
    skopeo, Project, Value,
};

const CYCLONEDX: &str = "application/vnd.cyclonedx+json";

/// A two-platform spec without cargo.
const TWO_PLATFORMS: &str = r#"
name = "two"
platforms = ["linux/amd64", "linux/arm64"]

[[layer]]
name = "own"
[[layer.add]]
content = "amd64\n"
dest = "/etc/arch"
platforms = ["linux/amd64"]
[[layer.add]]
content = "arm64\n"
dest = "/etc/arch"
platforms = ["linux/arm64"]
"#;

/// `skopeo inspect --raw` of `reference` (`repo:tag` or `repo@digest`): the exact bytes.
fn raw(reference: &str) -> String {
    skopeo([
        "inspect".to_string(),
        "--raw".to_string(),
        "--tls-verify=false".to_string(),
        format!("docker://{reference}"),
    ])
    .stdout
}

/// An HTTP/1.0 request to the loopback registry: (status code, body).
fn http(host: &str, method: &str, path: &str, body: Option<(&str, &[u8])>) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(host).unwrap();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
    if let Some((content_type, bytes)) = body {
        request += &format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        );
    }
    request += "\r\n";
    stream.write_all(request.as_bytes()).unwrap();
    if let Some((_, bytes)) = body {
        stream.write_all(bytes).unwrap();
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, response[split + 4..].to_vec())
}

/// `GET /v2/<name>/blobs/<digest>`: the body.
fn fetch_blob(host: &str, name: &str, digest: &str) -> Vec<u8> {
    let (code, body) = http(host, "GET", &format!("/v2/{name}/blobs/{digest}"), None);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    body
}

/// `cargo image push` of the project to `repo`, with JSON events; returns the pushed event.
fn push(p: &Project, repo: &str) -> Value {
    let r = cargo_image(&p.root().join("project"))
        .args([
            "push",
            "--message-format",
            "json",
            "--push-to",
            repo,
            "--output",
        ])
        .arg_path(&p.out())
        .run()
        .ok();
    let events = json_events(&r.stdout);
    (*of_kind(&events, "pushed").first().expect("a pushed event")).clone()
}

/// The SBOM artifacts of the layout: (artifact manifest digest, its subject, its layer digest).
fn layout_sboms(layout: &Path) -> Vec<(String, String, String)> {
    read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["artifactType"] == CYCLONEDX)
        .map(|e| {
            let digest = e["digest"].as_str().unwrap().to_string();
            let manifest = blob_json(layout, &digest);
            let subject = manifest["subject"]["digest"].as_str().unwrap().to_string();
            let layer = manifest["layers"][0]["digest"]
                .as_str()
                .unwrap()
                .to_string();
            (digest, subject, layer)
        })
        .collect()
}

/// Checks that the registry holds each SBOM of `layout` under its subject's fallback tag, by
/// digest, with its blob; returns the fallback indexes' bytes.
fn check_pushed(registry: &Registry, name: &str, layout: &Path) -> Vec<String> {
    let repo = format!("{}/{name}", registry.host());
    let mut fallbacks = Vec::new();
    for (digest, subject, layer) in layout_sboms(layout) {
        let tag = subject.replace(':', "-");
        let text = raw(&format!("{repo}:{tag}"));
        let index: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let listed = index["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{text}");
        assert_eq!(listed[0]["digest"], digest.as_str(), "{text}");
        assert_eq!(listed[0]["artifactType"], CYCLONEDX, "{text}");
        assert_eq!(
            listed[0]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        // The artifact manifest, byte for byte, about its image.
        let artifact = raw(&format!("{repo}@{digest}"));
        assert_eq!(sha256(artifact.as_bytes()), digest);
        assert_eq!(listed[0]["size"], artifact.len() as u64);
        let manifest: Value = serde_json::from_str(&artifact).unwrap();
        assert_eq!(manifest["subject"]["digest"], subject.as_str());
        // The SBOM the registry serves is the layout's.
        let sbom = fetch_blob(&registry.host(), name, &layer);
        assert_eq!(sbom, std::fs::read(blob_path(layout, &layer)).unwrap());
        fallbacks.push(text);
    }
    fallbacks
}

#[test]
fn a_push_lists_each_platforms_sbom_under_its_fallback_tag_and_a_second_changes_nothing() {
    let registry = Registry::start();
    let p = Project::new(TWO_PLATFORMS);
    let name = "referrers/two";
    let repo = format!("{}/{name}", registry.host());
    let first = push(&p, &repo);
    assert_eq!(first["referrers"], 2, "{first}");
    let layout = p.out();
    // This registry has no referrers API (so the fallback tag is what lists them).
    let (code, _) = http(
        &registry.host(),
        "GET",
        &format!("/v2/{name}/referrers/{}", manifest_digest(&layout)),
        None,
    );
    assert_eq!(code, 404, "docker-registry answers the referrers API");

    // One SBOM per platform manifest of the index, each under its own manifest's tag.
    let index = blob_json(&layout, &manifest_digest(&layout));
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    let mut subjects: Vec<String> = layout_sboms(&layout).into_iter().map(|s| s.1).collect();
    platforms.sort();
    subjects.sort();
    assert_eq!(subjects, platforms);
    let fallbacks = check_pushed(&registry, name, &layout);
    assert_eq!(fallbacks.len(), 2);

    // Again: nothing uploaded, the fallback indexes are the same bytes.
    let again = push(&p, &repo);
    assert_eq!(again["uploaded_blobs"], 0, "{again}");
    assert_eq!(again["referrers"], 2, "{again}");
    assert_eq!(check_pushed(&registry, name, &layout), fallbacks);
}

#[test]
fn a_single_image_push_says_it_carried_its_sbom() {
    let registry = Registry::start();
    let p = Project::new(
        "name = \"one\"\n[[layer]]\nname = \"etc\"\n[[layer.add]]\ncontent = \"hi\\n\"\ndest = \"/etc/hi\"\n",
    );
    let name = "referrers/one";
    let repo = format!("{}/{name}", registry.host());
    let r = cargo_image(&p.root().join("project"))
        .args(["push", "--push-to", &repo, "--output"])
        .arg_path(&p.out())
        .run()
        .ok();
    assert!(r.stderr.contains(" mounted, 1 referrer)"), "{}", r.stderr);
    let sboms = layout_sboms(&p.out());
    assert_eq!(sboms.len(), 1);
    assert_eq!(sboms[0].1, manifest_digest(&p.out()));
    assert_eq!(check_pushed(&registry, name, &p.out()).len(), 1);

    // Another tool's fallback index replaced ours: the next push merges ours back in, keeping
    // its entry, sorted by digest; the push after that leaves it alone.
    let image = manifest_digest(&p.out());
    let (sbom, _, _) = sboms[0].clone();
    let image_size = std::fs::metadata(blob_path(&p.out(), &image))
        .unwrap()
        .len();
    let foreign = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image,
            "size": image_size,
            "artifactType": "application/vnd.example.other"
        }]
    });
    let tag = image.replace(':', "-");
    let (code, body) = http(
        &registry.host(),
        "PUT",
        &format!("/v2/{name}/manifests/{tag}"),
        Some((
            "application/vnd.oci.image.index.v1+json",
            foreign.to_string().as_bytes(),
        )),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let merged_push = push(&p, &repo);
    assert_eq!(merged_push["referrers"], 1, "{merged_push}");
    let merged = raw(&format!("{repo}:{tag}"));
    let listed: Vec<(String, String)> = serde_json::from_str::<Value>(&merged).unwrap()
        ["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_string(),
                m["artifactType"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected = vec![
        (image.clone(), "application/vnd.example.other".to_string()),
        (sbom, CYCLONEDX.to_string()),
    ];
    expected.sort();
    assert_eq!(listed, expected, "{merged}");
    push(&p, &repo);
    assert_eq!(
        raw(&format!("{repo}:{tag}")),
        merged,
        "a push changes nothing"
    );
}
