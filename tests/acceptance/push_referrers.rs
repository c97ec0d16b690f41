//! Referrers pushed with the image, against a real `docker-registry` (CNCF distribution 2.x,
//! which has no referrers API) on 127.0.0.1: each image's SBOM and provenance artifacts go by
//! digest, and the distribution spec's fallback tag `sha256-<hex of the image>` lists them;
//! read back with skopeo and a plain HTTP blob fetch.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use cargo_oci_image_test_support::registry::Registry;
use cargo_oci_image_test_support::{
    blob_json, blob_path, cargo_image, json_events, manifest_digest, of_kind, read_json, sha256,
    skopeo, Project, Value,
};

const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";

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

/// An artifact of the layout: its manifest's digest, its subject, its layer's digest and its
/// `artifactType`.
#[derive(Debug, Clone)]
struct Artifact {
    digest: String,
    subject: String,
    layer: String,
    artifact_type: String,
}

/// The artifacts (SBOMs, provenance statements) of the layout, in `index.json` order.
fn layout_referrers(layout: &Path) -> Vec<Artifact> {
    read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let artifact_type = e["artifactType"].as_str()?.to_string();
            let digest = e["digest"].as_str().unwrap().to_string();
            let manifest = blob_json(layout, &digest);
            let subject = manifest["subject"]["digest"].as_str().unwrap().to_string();
            let layer = manifest["layers"][0]["digest"]
                .as_str()
                .unwrap()
                .to_string();
            Some(Artifact {
                digest,
                subject,
                layer,
                artifact_type,
            })
        })
        .collect()
}

/// The layout's SBOM artifacts.
fn layout_sboms(layout: &Path) -> Vec<Artifact> {
    let all = layout_referrers(layout);
    all.into_iter()
        .filter(|a| a.artifact_type == CYCLONEDX)
        .collect()
}

/// Checks that the registry lists exactly the artifacts of `layout` about each image under
/// that image's fallback tag (sorted by digest), holds each by digest, byte for byte, and
/// serves its blob; returns the fallback indexes' bytes, one per image.
fn check_pushed(registry: &Registry, name: &str, layout: &Path) -> Vec<String> {
    let repo = format!("{}/{name}", registry.host());
    let artifacts = layout_referrers(layout);
    let mut subjects: Vec<&str> = artifacts.iter().map(|a| a.subject.as_str()).collect();
    subjects.sort();
    subjects.dedup();
    let mut fallbacks = Vec::new();
    for subject in subjects {
        let mut expected: Vec<&Artifact> =
            artifacts.iter().filter(|a| a.subject == subject).collect();
        expected.sort_by(|a, b| a.digest.cmp(&b.digest));
        let types: Vec<&str> = expected.iter().map(|a| a.artifact_type.as_str()).collect();
        assert!(
            types.contains(&CYCLONEDX) && types.contains(&IN_TOTO),
            "each image has its SBOM and its provenance: {types:?}"
        );
        let tag = subject.replace(':', "-");
        let text = raw(&format!("{repo}:{tag}"));
        let index: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let listed = index["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), expected.len(), "{text}");
        for (entry, artifact) in listed.iter().zip(&expected) {
            assert_eq!(entry["digest"], artifact.digest.as_str(), "{text}");
            assert_eq!(
                entry["artifactType"],
                artifact.artifact_type.as_str(),
                "{text}"
            );
            assert_eq!(
                entry["mediaType"],
                "application/vnd.oci.image.manifest.v1+json"
            );
            // The artifact manifest, byte for byte, about its image.
            let manifest_bytes = raw(&format!("{repo}@{}", artifact.digest));
            assert_eq!(sha256(manifest_bytes.as_bytes()), artifact.digest);
            assert_eq!(entry["size"], manifest_bytes.len() as u64);
            let manifest: Value = serde_json::from_str(&manifest_bytes).unwrap();
            assert_eq!(manifest["subject"]["digest"], subject);
            // The document the registry serves is the layout's.
            let served = fetch_blob(&registry.host(), name, &artifact.layer);
            let local = std::fs::read(blob_path(layout, &artifact.layer)).unwrap();
            assert_eq!(served, local);
        }
        fallbacks.push(text);
    }
    fallbacks
}

#[test]
fn a_push_lists_each_platforms_referrers_under_its_fallback_tag_and_a_second_changes_nothing() {
    let registry = Registry::start();
    let p = Project::new(TWO_PLATFORMS);
    let name = "referrers/two";
    let repo = format!("{}/{name}", registry.host());
    let first = push(&p, &repo);
    assert_eq!(
        first["referrers"], 4,
        "an SBOM and a provenance per platform: {first}"
    );
    let layout = p.out();
    // This registry has no referrers API (so the fallback tag is what lists them).
    let (code, _) = http(
        &registry.host(),
        "GET",
        &format!("/v2/{name}/referrers/{}", manifest_digest(&layout)),
        None,
    );
    assert_eq!(code, 404, "docker-registry answers the referrers API");

    // One SBOM per platform manifest of the index, each under its own manifest's tag (with
    // that image's provenance, `check_pushed`).
    let index = blob_json(&layout, &manifest_digest(&layout));
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    let mut subjects: Vec<String> = (layout_sboms(&layout).into_iter())
        .map(|s| s.subject)
        .collect();
    platforms.sort();
    subjects.sort();
    assert_eq!(subjects, platforms);
    let fallbacks = check_pushed(&registry, name, &layout);
    assert_eq!(fallbacks.len(), 2);

    // Again: nothing uploaded, the fallback indexes are the same bytes.
    let again = push(&p, &repo);
    assert_eq!(again["uploaded_blobs"], 0, "{again}");
    assert_eq!(again["referrers"], 4, "{again}");
    assert_eq!(check_pushed(&registry, name, &layout), fallbacks);
}

#[test]
fn a_single_image_push_says_it_carried_its_sbom_and_provenance() {
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
    assert!(r.stderr.contains(" mounted, 2 referrers)"), "{}", r.stderr);
    let artifacts = layout_referrers(&p.out());
    assert_eq!(
        artifacts.len(),
        2,
        "its SBOM and its provenance: {artifacts:?}"
    );
    assert!(artifacts
        .iter()
        .all(|a| a.subject == manifest_digest(&p.out())));
    assert_eq!(check_pushed(&registry, name, &p.out()).len(), 1);

    // Another tool's fallback index replaced ours: the next push merges ours back in, keeping
    // its entry, sorted by digest; the push after that leaves it alone.
    let image = manifest_digest(&p.out());
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
    assert_eq!(merged_push["referrers"], 2, "{merged_push}");
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
    let mut expected = vec![(image.clone(), "application/vnd.example.other".to_string())];
    expected.extend(
        artifacts
            .iter()
            .map(|a| (a.digest.clone(), a.artifact_type.clone())),
    );
    expected.sort();
    assert_eq!(listed, expected, "{merged}");
    push(&p, &repo);
    assert_eq!(
        raw(&format!("{repo}:{tag}")),
        merged,
        "a push changes nothing"
    );
}
