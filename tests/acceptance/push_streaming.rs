//! `cargo image push` of big layers, against a real `docker-registry` on 127.0.0.1: the
//! layers are uploaded at the same time (the registry's access log shows their uploads
//! overlapping), each streamed from disk (GNU time's peak RSS of the push stays far under the
//! 200 MiB layer), two requests per upload; skopeo reads the image back.

use std::path::Path;

use cargo_oci_image_test_support::registry::{Registry, Request};
use cargo_oci_image_test_support::*;

const MIB: usize = 1024 * 1024;

/// `mib` MiB that do not repeat within a MiB and differ from file to file (`seed`).
fn write_big(path: &Path, mib: usize, seed: u8) {
    let mut piece: Vec<u8> = (0..MIB)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for n in 0..mib {
        piece[..8].copy_from_slice(&(n as u64).to_le_bytes());
        std::io::Write::write_all(&mut file, &piece).unwrap();
    }
    std::io::Write::flush(&mut file).unwrap();
}

const SPEC: &str = r#"name = "big"
compression = "none"

[[layer]]
name = "big"
[[layer.add]]
path = "big.bin"
dest = "/data/"

[[layer]]
name = "second"
[[layer.add]]
path = "second.bin"
dest = "/data/"
"#;

/// The log lines' indexes of the `HEAD` of blob `hex` in `repo` and of the `PUT` (201) that
/// finished its upload.
fn upload_span(requests: &[Request], repo: &str, hex: &str) -> (usize, usize) {
    let head = requests
        .iter()
        .position(|r| r.method == "HEAD" && r.uri == format!("/v2/{repo}/blobs/sha256:{hex}"))
        .unwrap_or_else(|| panic!("no HEAD of {hex}: {requests:#?}"));
    let put = requests
        .iter()
        .position(|r| {
            r.method == "PUT"
                && r.status == 201
                && r.in_repository(repo)
                && r.uri.contains("/blobs/uploads/")
                && r.uri.contains(&format!("digest=sha256%3A{hex}"))
        })
        .unwrap_or_else(|| panic!("no finished upload of {hex}: {requests:#?}"));
    (head, put)
}

#[test]
fn big_layers_are_uploaded_at_once_streamed_from_disk() {
    require("/usr/bin/time");
    let registry = Registry::start();
    let project = Project::new(SPEC);
    write_big(&project.dir.join("big.bin"), 200, 1);
    write_big(&project.dir.join("second.bin"), 64, 2);
    project.builds();
    let out = project.out();
    let local = manifest_digest(&out);
    let manifest = blob_json(&out, &local);
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_owned()
        })
        .collect();
    assert_eq!(layers.len(), 2, "{manifest}");
    let big_size = manifest["layers"][0]["size"].as_u64().unwrap();
    assert!(big_size > 200 * MIB as u64, "{manifest}");

    // A push (its warm build included) under GNU time.
    let repo_path = "bench/big";
    let repo = format!("{}/{repo_path}", registry.host());
    let rss_file = project.root().join("rss");
    let r = cargo_image(&project.dir)
        .args(["push", "--quiet", "--output"])
        .arg_path(&out)
        .args(["--push-to", &repo])
        .run_under([
            "/usr/bin/time",
            "-f",
            "%M",
            "-o",
            rss_file.to_str().unwrap(),
        ])
        .ok();
    assert_eq!(r.stdout.trim(), format!("{repo}@{local}"));
    let rss_kib: u64 = std::fs::read_to_string(&rss_file)
        .unwrap()
        .lines()
        .rev()
        .find_map(|l| l.trim().parse().ok())
        .expect("GNU time's peak RSS");
    // Streamed: the whole push holds far less than the 200 MiB layer it sends.
    assert!(
        rss_kib < 100 * 1024,
        "peak RSS {rss_kib} KiB while pushing a {big_size}-byte layer"
    );

    let requests = registry.requests();
    let (big, second) = (&layers[0], &layers[1]);
    let (big_head, big_put) = upload_span(&requests, repo_path, big);
    let (second_head, second_put) = upload_span(&requests, repo_path, second);
    // At once: each layer was checked before the other's upload finished (one after the
    // other, the second's HEAD would come after the first's PUT).
    assert!(
        big_head < second_put && second_head < big_put,
        "the uploads overlap: {requests:#?}"
    );
    // Two requests per upload (the POST that opens it, the PUT that carries the bytes), no
    // chunked PATCHes.
    let of_repo: Vec<&Request> = requests
        .iter()
        .filter(|r| r.in_repository(repo_path))
        .collect();
    let posts = of_repo
        .iter()
        .filter(|r| r.method == "POST" && r.uri.ends_with("/blobs/uploads/"))
        .count();
    let puts = of_repo
        .iter()
        .filter(|r| r.method == "PUT" && r.uri.contains("/blobs/uploads/"))
        .count();
    assert!(!of_repo.iter().any(|r| r.method == "PATCH"), "{of_repo:#?}");
    assert_eq!(posts, puts, "{of_repo:#?}");
    assert!(puts >= 3, "config and two layers at least: {of_repo:#?}");

    // skopeo reads it from the registry: the same digest, the same layers.
    let inspect = skopeo([
        "inspect".to_string(),
        "--tls-verify=false".to_string(),
        format!("docker://{repo}:latest"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v["Digest"], local.as_str(), "{v}");
    let remote_layers: Vec<&str> = v["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().trim_start_matches("sha256:"))
        .collect();
    assert_eq!(remote_layers, layers, "{v}");
}
