//! Software bills of materials: a document per image, made of what went into it, in the formats
//! the spec's `sbom` asks for, and the OCI 1.1 artifact manifest that attaches each to the image
//! as a referrer.
//!
//! # What it lists
//! The same facts in either format ([`cyclonedx`], CycloneDX 1.6 JSON, the default; [`spdx`],
//! SPDX 2.3 JSON):
//! - the image itself (its manifest digest and platform);
//! - every crate compiled into each cargo binary of the image, as [`cargo::crates`] resolves
//!   them for the binary's target triple and features (normal dependencies only, not the
//!   whole lock file): a `pkg:cargo/NAME@VERSION` purl, the sha256 `Cargo.lock` holds for a
//!   registry crate, the `license` expression, and where it came from (registry, git with its
//!   commit, or a path relative to the workspace root). The binaries' own packages are
//!   applications (with how each binary was built: its name, target, profile and features),
//!   the rest libraries; which crate depends on which;
//! - the base image with its digest, when the image has an outside base;
//! - the Debian packages its `debian` entries installed: `pkg:deb/debian/NAME@VERSION?arch=ARCH`
//!   purls with the `.deb`'s sha256;
//! - tarballs and host files added by the image's layers with their sha256 (and, for SPDX,
//!   which requires it, their SHA-1); host directories are listed by path (their content is in
//!   the layers' diff ids).
//!
//! # Deterministic
//! No clock and no randomness: the document's time is the build's epoch, its identity (the
//! CycloneDX `serialNumber`, the SPDX `documentNamespace`) a UUID (version 5 layout) made of the
//! sha256 of the image's manifest digest, components are sorted and paths are relative to the
//! context or the workspace, so two checkouts on two machines write the same bytes.

pub mod cyclonedx;
pub mod spdx;

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use sha2::{Digest as _, Sha256};

use crate::cargo::{self, CrateSource};
use crate::oci;
use crate::types::SbomFormat;

pub use self::cyclonedx::cyclonedx;
pub use self::spdx::spdx;

/// The media type (and `artifactType`) of a CycloneDX JSON document.
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
/// The media type (and `artifactType`) of an SPDX JSON document.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// The media type of the empty config of an artifact manifest.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty JSON object every artifact manifest's config points at.
pub const EMPTY_BLOB: &[u8] = b"{}";

/// A cargo binary of the image and the crates compiled into it.
#[derive(Debug, Clone)]
pub struct Binary {
    pub source: cargo::CargoSource,
    pub crates: cargo::Resolved,
}

/// A file the image's layers were made of: a tarball or a host path, relative to the context.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct File {
    pub path: String,
    /// The file's sha256 (hex); `None` for a directory.
    pub sha256: Option<String>,
    /// The file's SHA-1 (hex), which SPDX requires of every file; `None` for a directory, or
    /// when no SPDX document is made.
    pub sha1: Option<String>,
}

/// What an image's SBOM is made of.
#[derive(Debug, Clone)]
pub struct Input {
    /// The image's name (`hello`).
    pub name: String,
    /// The digest of the image's manifest (the SBOM's subject).
    pub manifest_digest: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The build's epoch (the document's time).
    pub epoch: u64,
    /// The outside base: its name (reference or path) and manifest digest.
    pub base: Option<(String, String)>,
    pub binaries: Vec<Binary>,
    pub files: Vec<File>,
    /// The Debian packages the image's layers installed, sorted, without repeats.
    pub debian: Vec<DebPackage>,
}

/// A Debian package installed by a `debian` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The `.deb`'s sha256 (hex).
    pub sha256: String,
}

impl DebPackage {
    /// `pkg:deb/debian/NAME@VERSION?arch=ARCH`, percent-encoded (an epoch's `:` is `%3A`).
    pub fn purl(&self) -> String {
        format!(
            "pkg:deb/debian/{}@{}?arch={}",
            percent(&self.name),
            percent(&self.version),
            percent(&self.architecture)
        )
    }
}

/// The document of `input` in `format` (pretty JSON, ending in a newline).
pub fn document(format: SbomFormat, input: &Input) -> Vec<u8> {
    match format {
        SbomFormat::CycloneDx => cyclonedx(input),
        SbomFormat::Spdx => spdx(input),
    }
}

/// A crate of the image: its name, version and source (a crate may come in two versions, or
/// from two sources).
pub(crate) type CrateKey = (String, String, CrateSource);

/// A crate of the image, merged over every binary it is compiled into.
pub(crate) struct CrateEntry {
    pub krate: cargo::Crate,
    /// Whether it is the package of one of the image's binaries.
    pub application: bool,
    /// How each binary of the package was built ([`build_of`]).
    pub builds: BTreeSet<String>,
    pub depends_on: BTreeSet<CrateKey>,
}

/// The crates of every binary of `input`, merged: one entry per (name, version, source).
pub(crate) fn merged_crates(input: &Input) -> BTreeMap<CrateKey, CrateEntry> {
    let mut crates: BTreeMap<CrateKey, CrateEntry> = BTreeMap::new();
    for bin in &input.binaries {
        let key = |c: &cargo::Crate| (c.name.clone(), c.version.clone(), c.source.clone());
        for (i, c) in bin.crates.crates.iter().enumerate() {
            let entry = crates.entry(key(c)).or_insert_with(|| CrateEntry {
                krate: c.clone(),
                application: false,
                builds: Default::default(),
                depends_on: Default::default(),
            });
            if i == bin.crates.root {
                entry.application = true;
                entry.builds.insert(build_of(&bin.source));
            }
            for &d in &c.dependencies {
                entry.depends_on.insert(key(&bin.crates.crates[d]));
            }
        }
    }
    crates
}

/// Where a crate came from, as one string: `registry+INDEX`, `git+URL#COMMIT` or
/// `path+DIR` (relative to the workspace root).
pub(crate) fn source_of(source: &CrateSource) -> String {
    match source {
        CrateSource::Registry(index) => format!("registry+{index}"),
        CrateSource::Git { url, commit } => format!("git+{url}#{commit}"),
        CrateSource::Path(path) => format!("path+{path}"),
    }
}

/// How a binary was built: `bin=NAME target=TRIPLE profile=P features=A,B` (with
/// `all-features` / `no-default-features` when set).
fn build_of(src: &cargo::CargoSource) -> String {
    let mut s = format!(
        "bin={} target={} profile={}",
        src.bin.as_deref().unwrap_or("(default)"),
        src.target,
        src.profile
    );
    if !src.features.is_empty() {
        s.push_str(&format!(" features={}", src.features.join(",")));
    }
    if src.all_features {
        s.push_str(" all-features");
    }
    if src.no_default_features {
        s.push_str(" no-default-features");
    }
    s
}

/// `pkg:cargo/NAME@VERSION`, percent-encoded as the purl spec asks (a version's `+` is `%2B`).
pub fn purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{}@{}", percent(name), percent(version))
}

/// `s` with every byte but ASCII letters, digits and `-._~` percent-encoded.
pub(crate) fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The UUID of the sha256 of `cargo-image sbom <digest>`, with the version (5) and variant
/// bits of a name-based UUID set: the document's identity, the same on every machine.
fn uuid_of(manifest_digest: &str) -> String {
    let hash = Sha256::digest(format!("cargo-image sbom {manifest_digest}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The artifact manifest that attaches a blob (`artifact`, of media type `artifact_type`) to
/// the image `subject`: an OCI 1.1 image manifest with that `artifactType`, the empty config
/// and the blob as its only layer.
pub fn artifact_manifest(
    artifact_type: &str,
    artifact: Descriptor,
    subject: Descriptor,
) -> ImageManifest {
    let empty = oci::descriptor(
        MediaType::Other(EMPTY_MEDIA_TYPE.into()),
        &oci::Digest::of(EMPTY_BLOB),
        EMPTY_BLOB.len() as u64,
    );
    let mut subject = subject;
    subject.set_platform(None);
    subject.set_annotations(None);
    ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(artifact_type.into()))
        .config(empty)
        .layers(vec![artifact])
        .subject(subject)
        .build()
        .expect("every required manifest field is set")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn purls_escape_what_the_spec_reserves() {
        assert_eq!(purl("serde", "1.0.200"), "pkg:cargo/serde@1.0.200");
        assert_eq!(purl("a_b", "1.0.0+x.1"), "pkg:cargo/a_b@1.0.0%2Bx.1");
    }

    #[test]
    fn uuids_are_version_5_uuids_of_the_digest() {
        let s = uuid_of("sha256:00");
        assert_eq!(s, uuid_of("sha256:00"));
        assert_ne!(s, uuid_of("sha256:01"));
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "5");
        assert!("89ab".contains(&s[19..20]));
    }

    #[test]
    fn media_types_are_the_formats_own() {
        assert_eq!(SbomFormat::CycloneDx.media_type(), CYCLONEDX_MEDIA_TYPE);
        assert_eq!(SbomFormat::Spdx.media_type(), SPDX_MEDIA_TYPE);
    }

    /// An image of one binary, `app` 1.0.0, that depends on `dep` (`license` for both), with
    /// `files`.
    pub(crate) fn input(license: &str, files: Vec<File>) -> Input {
        let krate = |name: &str, deps: Vec<usize>| cargo::Crate {
            name: name.into(),
            version: "1.0.0".into(),
            source: CrateSource::Registry("https://github.com/rust-lang/crates.io-index".into()),
            license: Some(license.into()),
            checksum: Some("ab".repeat(32)),
            dependencies: deps,
        };
        Input {
            name: "app".into(),
            manifest_digest: format!("sha256:{}", "cd".repeat(32)),
            platform: "linux/amd64".into(),
            epoch: 0,
            base: None,
            binaries: vec![Binary {
                source: cargo::CargoSource {
                    package: None,
                    bin: None,
                    profile: "release".into(),
                    features: vec![],
                    all_features: false,
                    no_default_features: false,
                    target: "x86_64-unknown-linux-musl".into(),
                    target_pinned: false,
                    linker: None,
                    cc: None,
                    strip: Default::default(),
                    builder: Default::default(),
                },
                crates: cargo::Resolved {
                    crates: vec![krate("app", vec![1]), krate("dep", vec![])],
                    root: 0,
                    inputs: vec![],
                },
            }],
            files,
            debian: vec![],
        }
    }

    #[test]
    fn debian_packages_are_components_with_their_purl_in_both_formats() {
        let mut input = input("MIT", vec![]);
        input.debian = vec![DebPackage {
            name: "libc6".into(),
            version: "2.36-9+deb12u10".into(),
            architecture: "amd64".into(),
            sha256: "ef".repeat(32),
        }];
        let purl = "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64";
        let doc: serde_json::Value = serde_json::from_slice(&cyclonedx(&input)).unwrap();
        let c = doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["purl"] == purl)
            .expect("a component with the purl");
        assert_eq!(c["hashes"][0]["content"], "ef".repeat(32));
        let doc: serde_json::Value = serde_json::from_slice(&spdx(&input)).unwrap();
        let p = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "libc6")
            .expect("a package");
        assert_eq!(p["externalRefs"][0]["referenceLocator"], purl);
        assert!(
            doc["relationships"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["relationshipType"] == "CONTAINS"
                    && r["relatedSpdxElement"] == p["SPDXID"])
        );
    }

    #[test]
    fn debian_purls_escape_epochs_and_plus_signs() {
        let p = DebPackage {
            name: "hello-data".into(),
            version: "3:0.5+dfsg-2".into(),
            architecture: "all".into(),
            sha256: String::new(),
        };
        assert_eq!(
            p.purl(),
            "pkg:deb/debian/hello-data@3%3A0.5%2Bdfsg-2?arch=all"
        );
    }
}
