//! The SPDX 2.3 JSON document of an image (`sbom = "spdx"`): the same facts as the CycloneDX
//! one, in SPDX's terms.
//!
//! # Elements
//! - `SPDXRef-Image`: a package (`primaryPackagePurpose: CONTAINER`) named after the image,
//!   its `versionInfo` and SHA256 checksum the manifest digest; the document `DESCRIBES` it.
//! - `SPDXRef-Base`: the outside base, a `CONTAINER` package with its digest; the image is its
//!   `DESCENDANT_OF`.
//! - `SPDXRef-Crate-NAME-VERSION`: each crate, a package with its `pkg:cargo` purl as a
//!   `PACKAGE-MANAGER` external reference, the SHA256 `Cargo.lock` holds, the manifest's
//!   `license` as `licenseDeclared` when it is a valid SPDX expression (old `/` alternatives
//!   read as `OR`; `NOASSERTION` otherwise), a `downloadLocation` (the crates.io download URL,
//!   `git+URL@COMMIT`, `NONE` for a path crate, `NOASSERTION` for another registry) and the
//!   source as `sourceInfo`. The binaries' packages are `APPLICATION`s, which the image
//!   `CONTAINS`, with how each binary was built in their `comment`; the rest `LIBRARY`s. Each
//!   crate `DEPENDS_ON` the crates it uses.
//! - `SPDXRef-Deb-NAME-VERSION-ARCH`: each Debian package a `debian` entry installed, a
//!   package with its `pkg:deb/debian` purl as a `PACKAGE-MANAGER` external reference and the
//!   `.deb`'s SHA256; the image `CONTAINS` it.
//! - `SPDXRef-File-PATH`: each tarball and host file (`./PATH`, relative to the context) with
//!   its SHA256 and the SHA1 SPDX requires; a host directory, which SPDX has no file element
//!   for, is a package (`SPDXRef-Directory-PATH`, `primaryPackagePurpose: OTHER`). The image
//!   is `GENERATED_FROM` them: they are the build's inputs (the image holds what its layers
//!   made of them, at other paths), and a package whose files were not analyzed may not
//!   `CONTAIN` files.
//!
//! Nothing is asserted that the build does not know: concluded licenses and copyright texts
//! are `NOASSERTION`, and `filesAnalyzed` is false.
//!
//! # Deterministic
//! `creationInfo.created` is the build's epoch; `documentNamespace` is
//! `https://spdx.org/spdxdocs/cargo-image/NAME-UUID`, the UUID made of the image's manifest
//! digest (the one the CycloneDX `serialNumber` holds). Identifiers are made of names and
//! versions, not of counters over a map's order.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{merged_crates, percent, purl, source_of, uuid_of, CrateKey, Input};
use crate::cargo::{Crate, CrateSource};
use crate::oci;

const NOASSERTION: &str = "NOASSERTION";
const IMAGE_ID: &str = "SPDXRef-Image";
const BASE_ID: &str = "SPDXRef-Base";

/// The SPDX 2.3 JSON document of `input` (pretty, ending in a newline).
pub fn spdx(input: &Input) -> Vec<u8> {
    let crates = merged_crates(input);
    let mut ids = Ids::default();
    let crate_ids: BTreeMap<&CrateKey, String> = crates
        .keys()
        .map(|k| (k, ids.take(&format!("SPDXRef-Crate-{}-{}", k.0, k.1))))
        .collect();

    let mut packages: Vec<Value> = Vec::new();
    let mut files: Vec<Value> = Vec::new();
    let mut relationships: Vec<Value> =
        vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID)];

    let mut image = container(IMAGE_ID, &input.name, &input.manifest_digest);
    image["comment"] = json!(format!("cargo-image:platform: {}", input.platform));
    packages.push(image);
    if let Some((name, digest)) = &input.base {
        packages.push(container(BASE_ID, name, digest));
        relationships.push(relationship(IMAGE_ID, "DESCENDANT_OF", BASE_ID));
    }
    for (key, entry) in &crates {
        let id = &crate_ids[key];
        let mut p = crate_package(&entry.krate, entry.application, id);
        if !entry.builds.is_empty() {
            let builds: Vec<String> = entry
                .builds
                .iter()
                .map(|b| format!("cargo-image:build: {b}"))
                .collect();
            p["comment"] = json!(builds.join("\n"));
        }
        packages.push(p);
    }
    for (key, entry) in &crates {
        if entry.application {
            relationships.push(relationship(IMAGE_ID, "CONTAINS", &crate_ids[key]));
        }
    }
    for (key, entry) in &crates {
        for dep in &entry.depends_on {
            relationships.push(relationship(&crate_ids[key], "DEPENDS_ON", &crate_ids[dep]));
        }
    }
    for p in &input.debian {
        let id = ids.take(&format!(
            "SPDXRef-Deb-{}-{}-{}",
            p.name, p.version, p.architecture
        ));
        packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": false,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "checksums": [{"algorithm": "SHA256", "checksumValue": p.sha256}],
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl(),
            }],
            "primaryPackagePurpose": "LIBRARY",
        }));
        relationships.push(relationship(IMAGE_ID, "CONTAINS", &id));
    }
    for file in &input.files {
        let kind = if file.sha256.is_some() {
            "File"
        } else {
            "Directory"
        };
        let id = ids.take(&format!("SPDXRef-{kind}-{}", file.path));
        match (&file.sha256, &file.sha1) {
            (Some(sha256), Some(sha1)) => files.push(json!({
                "SPDXID": id,
                "fileName": format!("./{}", file.path),
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": sha1},
                    {"algorithm": "SHA256", "checksumValue": sha256},
                ],
                "licenseConcluded": NOASSERTION,
                "copyrightText": NOASSERTION,
            })),
            _ => packages.push(json!({
                "SPDXID": id,
                "name": file.path,
                "downloadLocation": "NONE",
                "filesAnalyzed": false,
                "licenseConcluded": NOASSERTION,
                "licenseDeclared": NOASSERTION,
                "copyrightText": NOASSERTION,
                "primaryPackagePurpose": "OTHER",
                "comment": "a host directory; its files are in the image's layers",
            })),
        }
        relationships.push(relationship(IMAGE_ID, "GENERATED_FROM", &id));
    }

    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": input.name,
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/cargo-image/{}-{}",
            percent(&input.name),
            uuid_of(&input.manifest_digest)
        ),
        "creationInfo": {
            "created": oci::rfc3339(input.epoch),
            "creators": [format!("Tool: cargo-image-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !files.is_empty() {
        doc["files"] = json!(files);
    }
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("a JSON value serialises");
    bytes.push(b'\n');
    bytes
}

/// An image (the one described, or its base): a `CONTAINER` package of its manifest digest.
fn container(id: &str, name: &str, digest: &str) -> Value {
    let mut p = json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": digest,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "CONTAINER",
    });
    if let Some(hex) = digest.strip_prefix("sha256:") {
        p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": hex}]);
    }
    p
}

fn crate_package(c: &Crate, application: bool, id: &str) -> Value {
    let mut p = json!({
        "SPDXID": id,
        "name": c.name,
        "versionInfo": c.version,
        "downloadLocation": download_location(c),
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": c.license.as_deref().and_then(license_expression).unwrap_or_else(|| NOASSERTION.into()),
        "copyrightText": NOASSERTION,
        "sourceInfo": source_of(&c.source),
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl(&c.name, &c.version),
        }],
        "primaryPackagePurpose": if application { "APPLICATION" } else { "LIBRARY" },
    });
    if let Some(sum) = &c.checksum {
        p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sum}]);
    }
    p
}

/// Where the crate can be downloaded: crates.io's download URL, the git repository at its
/// commit, `NONE` for a path crate (it is nowhere but in the workspace), `NOASSERTION` for
/// another registry (its download URL is in its index's configuration, which the build does
/// not read).
fn download_location(c: &Crate) -> String {
    match &c.source {
        CrateSource::Registry(index) if is_crates_io(index) => format!(
            "https://crates.io/api/v1/crates/{}/{}/download",
            c.name,
            percent(&c.version)
        ),
        CrateSource::Registry(_) => NOASSERTION.into(),
        CrateSource::Git { url, commit } => format!("git+{url}@{commit}"),
        CrateSource::Path(_) => "NONE".into(),
    }
}

fn is_crates_io(index: &str) -> bool {
    matches!(
        index,
        "https://github.com/rust-lang/crates.io-index" | "sparse+https://index.crates.io/"
    )
}

/// `license` as a valid SPDX license expression (canonical: `MIT/Apache-2.0` reads as
/// `MIT OR Apache-2.0`), or `None` when it is not one.
fn license_expression(license: &str) -> Option<String> {
    let canonical = match ::spdx::Expression::canonicalize(license) {
        Ok(changed) => changed.unwrap_or_else(|| license.to_string()),
        Err(_) => return None,
    };
    ::spdx::Expression::parse(&canonical).ok()?;
    Some(canonical)
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

/// SPDX identifiers: `SPDXRef-` and letters, digits, `.` and `-` only; a second element
/// whose name makes the same identifier gets `-2` (and so on).
#[derive(Default)]
struct Ids(BTreeSet<String>);

impl Ids {
    fn take(&mut self, wanted: &str) -> String {
        let base: String = wanted
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mut id = base.clone();
        let mut n = 1;
        while !self.0.insert(id.clone()) {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::super::File;
    use super::*;

    #[test]
    fn licenses_are_valid_spdx_expressions_or_noassertion() {
        assert_eq!(
            license_expression("MIT/Apache-2.0").as_deref(),
            Some("MIT OR Apache-2.0")
        );
        assert_eq!(
            license_expression("Apache-2.0 WITH LLVM-exception").as_deref(),
            Some("Apache-2.0 WITH LLVM-exception")
        );
        assert_eq!(license_expression("Proprietary, see LICENSE"), None);
    }

    #[test]
    fn identifiers_are_spdx_ids_and_unique() {
        let mut ids = Ids::default();
        assert_eq!(
            ids.take("SPDXRef-Crate-a_b-1.0.0+x"),
            "SPDXRef-Crate-a-b-1.0.0-x"
        );
        assert_eq!(
            ids.take("SPDXRef-Crate-a-b-1.0.0+x"),
            "SPDXRef-Crate-a-b-1.0.0-x-2"
        );
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let files = vec![
            File {
                path: "data.txt".into(),
                sha256: Some("01".repeat(32)),
                sha1: Some("02".repeat(20)),
            },
            File {
                path: "static".into(),
                sha256: None,
                sha1: None,
            },
        ];
        let input = super::super::tests::input("MIT/Apache-2.0", files);
        let a = spdx(&input);
        assert_eq!(a, spdx(&input));
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        assert!(v["documentNamespace"]
            .as_str()
            .unwrap()
            .starts_with("https://spdx.org/spdxdocs/cargo-image/app-"));
        let app = &v["packages"][1];
        assert_eq!(app["SPDXID"], "SPDXRef-Crate-app-1.0.0");
        assert_eq!(app["primaryPackagePurpose"], "APPLICATION");
        assert_eq!(app["licenseDeclared"], "MIT OR Apache-2.0");
        assert_eq!(
            app["downloadLocation"],
            "https://crates.io/api/v1/crates/app/1.0.0/download"
        );
        assert_eq!(
            app["externalRefs"][0]["referenceLocator"],
            "pkg:cargo/app@1.0.0"
        );
        assert_eq!(v["files"][0]["fileName"], "./data.txt");
        assert_eq!(v["packages"][3]["primaryPackagePurpose"], "OTHER");
        let rels: Vec<String> = v["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r["spdxElementId"].as_str().unwrap(),
                    r["relationshipType"].as_str().unwrap(),
                    r["relatedSpdxElement"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            rels,
            [
                "SPDXRef-DOCUMENT DESCRIBES SPDXRef-Image",
                "SPDXRef-Image CONTAINS SPDXRef-Crate-app-1.0.0",
                "SPDXRef-Crate-app-1.0.0 DEPENDS_ON SPDXRef-Crate-dep-1.0.0",
                "SPDXRef-Image GENERATED_FROM SPDXRef-File-data.txt",
                "SPDXRef-Image GENERATED_FROM SPDXRef-Directory-static",
            ]
        );
    }
}
