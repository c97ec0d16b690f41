//! The requests of a push, counted in the registry's own access log: machine B (an empty
//! store, a fresh git clone) pushing only, its layers keyed by alias records and mounted from
//! the cache, to two repositories of one loopback `docker-registry` (CNCF distribution, which
//! has no referrers API). Each question whose answer holds for the process is asked once:
//! the `/v2/` probe (the cache's and the push's clients share it, and no request is preceded
//! by another `/v2/`), the referrers API (the second repository does not ask again), the
//! fallback tag of each repository (read once, not twice); the alias records name the layers,
//! so no key record is read. What lands is unchanged: A's digest, both referrers listed under
//! the fallback tag, each referrer pushed after the image it refers to.

use std::collections::BTreeMap;

use cargo_oci_image_test_support::registry::{Registry, Request};
use cargo_oci_image_test_support::*;

use super::remote_cache::{built, clone, digests, events, git_origin, keyed_by_alias};

/// What a request of the push is, for counting: `repository` is where the image goes.
fn kind(r: &Request, cache: &str, repositories: &[&str]) -> String {
    let method = r.method.as_str();
    if r.uri == "/v2/" {
        return format!("{method} /v2/");
    }
    let repo = std::iter::once(cache)
        .chain(repositories.iter().copied())
        .find(|repo| r.in_repository(repo))
        .unwrap_or("?");
    let rest = &r.uri[format!("/v2/{repo}/").len().min(r.uri.len())..];
    let what = if rest.starts_with("manifests/alias-") {
        "alias record"
    } else if rest.starts_with("manifests/key-") {
        "key record"
    } else if rest.starts_with("manifests/sha256-") {
        "fallback tag"
    } else if rest.starts_with("manifests/sha256:") {
        "manifest by digest"
    } else if rest.starts_with("manifests/") {
        "manifest by tag"
    } else if rest.starts_with("referrers/") {
        "referrers API"
    } else if r.is_mount() {
        "mount"
    } else if rest.starts_with("blobs/uploads/") {
        "upload"
    } else if rest.starts_with("blobs/sha256:") {
        "blob"
    } else {
        rest
    };
    format!("{method} {repo} {what}")
}

#[test]
fn a_push_only_build_asks_each_registry_question_once() {
    let registry = Registry::start();
    let host = registry.host();
    let cache_repo = "ci/layers";
    let cache = format!("{host}/{cache_repo}");
    let tmp = TempDir::new().unwrap();
    let origin = git_origin(tmp.path());

    // Machine A builds and fills the cache.
    let a = tmp.path().join("a");
    clone(&origin, &a);
    let on_a = events(&a, "build", &["--store", "store-a", "--cache-to", &cache]);
    assert_eq!(built(&on_a).len(), 2, "{on_a:?}");

    // Machine B, a fresh clone and an empty store, pushes to two repositories.
    let b = tmp.path().join("b");
    clone(&origin, &b);
    let repositories = ["team/site", "team/mirror"];
    let targets: Vec<String> = repositories.iter().map(|r| format!("{host}/{r}")).collect();
    let before = registry.requests().len();
    let on_b = events(
        &b,
        "push",
        &[
            "--store",
            "store-b",
            "--no-output",
            "--push-to",
            &targets[0],
            "--push-to",
            &targets[1],
            "--cache-from",
            &cache,
        ],
    );
    let requests = registry.requests()[before..].to_vec();
    assert_eq!(
        keyed_by_alias(&on_b),
        [("vendor".to_owned(), true), ("app".to_owned(), true)]
    );
    assert_eq!(built(&on_b), Vec::<&Value>::new(), "B built nothing");
    assert!(of_kind(&on_b, "cache-warning").is_empty(), "{on_b:?}");
    assert_eq!(digests(&on_b), digests(&on_a));
    let digest = digests(&on_a)[0].1.clone();

    // Every request of B, by kind.
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests {
        *counted
            .entry(kind(r, cache_repo, &repositories))
            .or_default() += 1;
    }
    // What it must be: the pushes' own reports say how each blob got there.
    let pushed = of_kind(&on_b, "pushed");
    assert_eq!(pushed.len(), 2, "{on_b:?}");
    let layers = 2;
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    let mut expect = |k: String, n: usize| {
        if n > 0 {
            *expected.entry(k).or_default() += n;
        }
    };
    // One probe of the registry for the whole process: the cache's client asks it, the
    // push's client knows the answer, and no request waits on a `/v2/` of its own.
    expect("GET /v2/".into(), 1);
    // Planning reads each layer's alias record; its layer is taken from there (no key
    // record), and the cache is asked that it still has the blob.
    expect(format!("GET {cache_repo} alias record"), layers);
    expect(format!("HEAD {cache_repo} blob"), layers);
    for (repo, report) in repositories.iter().zip(&pushed) {
        let count = |field: &str| report[field].as_u64().unwrap() as usize;
        let (uploaded, mounted, skipped) = (
            count("uploaded_blobs"),
            count("mounted_blobs"),
            count("skipped_blobs"),
        );
        assert_eq!(skipped, 0, "a new repository has no blob: {report}");
        expect(format!("HEAD {repo} blob"), uploaded + mounted);
        expect(format!("POST {repo} mount"), mounted);
        expect(format!("POST {repo} upload"), uploaded);
        expect(format!("PUT {repo} upload"), uploaded);
        expect(format!("PUT {repo} manifest by tag"), 1);
        // The SBOM and the provenance, by digest.
        let referrers = count("referrers");
        assert_eq!(referrers, 2, "{report}");
        expect(format!("PUT {repo} manifest by digest"), referrers);
        // Their list under the fallback tag: read once (absent), written once.
        expect(format!("GET {repo} fallback tag"), 1);
        expect(format!("PUT {repo} fallback tag"), 1);
    }
    // The registry has no referrers API: the first repository finds that out, the second
    // does not ask again.
    expect(format!("GET {} referrers API", repositories[0]), 1);
    assert_eq!(counted, expected, "B's requests: {requests:#?}");
    // The layers were mounted in the first repository and every blob in the second: nothing
    // downloaded, only the image's config and the referrers' small blobs uploaded, once.
    assert!(!requests.iter().any(Request::is_blob_download));
    assert_eq!(pushed[1]["uploaded_blobs"], 0, "{}", pushed[1]);

    // What landed: each repository holds A's image, and its fallback tag lists both
    // referrers, each pushed after the image it refers to.
    let fallback = digest.replace(':', "-");
    for (repo, target) in repositories.iter().zip(&targets) {
        let inspect = skopeo([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}:latest"),
        ])
        .ok();
        let inspected: Value = serde_json::from_str(&inspect.stdout).unwrap();
        assert_eq!(inspected["Digest"], digest.as_str());
        let index = skopeo([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{target}:{fallback}"),
        ])
        .ok();
        let index: Value = serde_json::from_str(&index.stdout).unwrap();
        let listed: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        assert_eq!(listed.len(), 2, "{index}");
        let at = |pred: &dyn Fn(&Request) -> bool| {
            requests
                .iter()
                .position(|r| r.in_repository(repo) && pred(r))
                .unwrap_or_else(|| panic!("not found in {requests:#?}"))
        };
        let tagged = at(&|r| r.method == "PUT" && r.uri.ends_with("/manifests/latest"));
        for referrer in listed {
            let put =
                at(&|r| r.method == "PUT" && r.uri.ends_with(&format!("/manifests/{referrer}")));
            assert!(tagged < put, "the image before its referrer {referrer}");
        }
    }
}
