//! Debian packages as image content: a `debian` entry of a layer names a suite and packages;
//! this module resolves them (with what they depend on) from a Debian archive, verifies
//! everything it downloads, and reads the `.deb` files the layer module installs.
//!
//! # Brief overview
//! ```text
//! mirrors ([debian] or apt's sources) ──InRelease (OpenPGP-verified)──> Release
//!   ──SHA-256──> Packages.xz ──resolve──> [Package] ──SHA-256──> .deb in the store
//! ```
//! 1. **Where** ([`Settings`]): the spec's `[debian] mirrors`, else the `deb` sources of the
//!    build machine's apt configuration ([`apt`]), those listing the suite first. The keyring
//!    is the spec's `[debian] keyring`, else the apt source's `Signed-By`, else the
//!    `debian-archive-keyring` files.
//! 2. **Resolve** ([`resolve`]): the suite's `InRelease` must verify; each component's
//!    `Packages` index must match the `Release`'s SHA-256; the entry's packages and their
//!    `Pre-Depends`/`Depends` are resolved for one architecture (`resolve.rs` says how). The
//!    result is a list of [`Package`]s: name, version, architecture, file name and SHA-256,
//!    what the layer's key covers and what `image.lock` records.
//! 3. **Fetch** ([`fetch`]): each `.deb` the store lacks is downloaded and checked against its
//!    SHA-256 before it is written into the store under that digest, so a warm build (or a
//!    locked one) finds them there and touches no network.
//! 4. **Read** ([`deb::open`]): the layer module opens each `.deb` for its control file,
//!    `md5sums` and `data.tar`, which it imports like a `tar` source, and writes dpkg's
//!    database from them. No maintainer script runs (as with apko and rules_distroless): what
//!    `postinst` would do at install time (`ldconfig`'s cache, users) is not done, except the
//!    one thing most images need, `ca-certificates`' bundle, which the layer module derives
//!    from the certificates the package ships (as rules_distroless' `cacerts` does).
//!
//! This module depends on [`crate::store`], [`crate::types`], [`crate::tarball`] and the TLS
//! settings of [`crate::registry`].

use std::path::{Path, PathBuf};

use crate::store::Store;
use crate::types::{Digest, Platform};

mod apt;
mod archive;
pub mod deb;
pub mod deb822;
mod resolve;
pub mod version;

pub use deb::{Deb, DebError};

/// The keyrings used when neither the spec nor the apt source names one: those of the
/// `debian-archive-keyring` package (`.pgp` since trixie, `.gpg` before).
const DEFAULT_KEYRINGS: [&str; 2] = [
    "/usr/share/keyrings/debian-archive-keyring.pgp",
    "/usr/share/keyrings/debian-archive-keyring.gpg",
];

/// Errors of resolving and fetching Debian packages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("platform {platform} has no Debian architecture (Debian has amd64, arm64, armhf, armel, i386, ppc64el, s390x, riscv64, mips64el)")]
    Architecture { platform: String },
    #[error("no Debian mirror for suite `{suite}`: the spec has no `[debian] mirrors` and the build machine's apt configuration lists none")]
    NoMirror { suite: String },
    #[error("no mirror serves suite `{suite}` (dists/{suite}/InRelease): {tried}")]
    FetchRelease { suite: String, tried: String },
    #[error("no keyring to verify suite `{suite}` with: set `[debian] keyring`, or install the `debian-archive-keyring` package")]
    NoKeyring { suite: String },
    #[error("cannot read keyring {}: {reason}", path.display())]
    Keyring { path: PathBuf, reason: String },
    #[error("the signature of {url} does not verify with {keyrings}: {reason}; the mirror or the keyring is wrong (set `[debian] keyring` to the archive's key)")]
    BadSignature {
        url: String,
        keyrings: String,
        reason: String,
    },
    #[error("bad Release file {url}: {reason}")]
    Release { url: String, reason: String },
    #[error("index {url} does not match its Release: expected {expected}, got {actual}")]
    IndexDigest {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("bad Packages index {url}: {reason}")]
    Index { url: String, reason: String },
    #[error("cannot resolve the packages of suite `{suite}` for `{architecture}`: {problem}")]
    Resolve {
        suite: String,
        architecture: String,
        #[source]
        problem: Box<resolve::Problem>,
    },
    #[error("cannot download {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("package `{package}` downloaded from {url} has sha256:{actual}, but the Packages index says sha256:{expected}: the file was altered or the mirror is broken")]
    DebDigest {
        url: String,
        package: String,
        expected: String,
        actual: String,
    },
    #[error("cannot set up HTTP for Debian mirrors: {reason}")]
    HttpSetup { reason: String },
    #[error("cannot store package `{package}`: {source}")]
    Store {
        package: String,
        #[source]
        source: crate::store::Error,
    },
}

pub use resolve::Problem;

/// Where packages come from: the spec's `[debian]` table, with the machine's apt configuration
/// filling what it leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// Mirror root URLs (`http://deb.debian.org/debian`); empty: apt's.
    pub mirrors: Vec<String>,
    /// Keyring files (binary or armoured); empty: the apt source's `Signed-By`, else the
    /// `debian-archive-keyring` files.
    pub keyrings: Vec<PathBuf>,
    /// The apt configuration directory the defaults are read from (`/etc/apt` when `None`).
    pub etc_apt: Option<PathBuf>,
}

impl Settings {
    /// The mirrors to try for `suite`, and the keyrings to verify it with.
    fn locate(&self, suite: &str) -> Result<(Vec<String>, Vec<PathBuf>), Error> {
        let mut keyrings = self.keyrings.clone();
        let mirrors = if self.mirrors.is_empty() {
            let etc = self.etc_apt.as_deref().unwrap_or(Path::new("/etc/apt"));
            let mut sources = apt::sources(etc);
            // Sources that list the suite first; the others may still serve it (the same
            // archive for another release).
            sources.sort_by_key(|s| !s.suites.iter().any(|x| x == suite));
            if keyrings.is_empty() {
                keyrings.extend(sources.first().and_then(|s| s.signed_by.clone()));
            }
            let mut uris: Vec<String> = Vec::new();
            for s in sources {
                if !uris.contains(&s.uri) {
                    uris.push(s.uri);
                }
            }
            uris
        } else {
            self.mirrors
                .iter()
                .map(|m| m.trim_end_matches('/').to_string())
                .collect()
        };
        if mirrors.is_empty() {
            return Err(Error::NoMirror {
                suite: suite.into(),
            });
        }
        if keyrings.is_empty() {
            keyrings.extend(
                DEFAULT_KEYRINGS
                    .iter()
                    .map(PathBuf::from)
                    .filter(|p| archive::exists(p))
                    .take(1),
            );
        }
        if keyrings.is_empty() {
            return Err(Error::NoKeyring {
                suite: suite.into(),
            });
        }
        Ok((mirrors, keyrings))
    }
}

/// What one `debian` entry asks for, for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub suite: String,
    pub components: Vec<String>,
    /// Debian's name of the architecture (`amd64`, `arm64`).
    pub architecture: String,
    pub packages: Vec<String>,
}

/// One resolved package: what a layer installs and `image.lock` records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// `amd64`, `arm64`... or `all`.
    pub architecture: String,
    /// The `.deb`'s path under the mirror root (`pool/main/t/tzdata/tzdata_..._all.deb`).
    pub filename: String,
    /// The `.deb`'s SHA-256.
    pub sha256: Digest,
}

impl Package {
    /// The package URL of the package (`pkg:deb/debian/NAME@VERSION?arch=ARCH`), as SBOMs name it.
    pub fn purl(&self) -> String {
        let version = self.version.replace(':', "%3A").replace('+', "%2B");
        format!(
            "pkg:deb/debian/{}@{version}?arch={}",
            self.name, self.architecture
        )
    }
}

/// Debian's name for the architecture of `platform` (`linux/arm/v7` is `armhf`), or `None`
/// when Debian has no port for it.
pub fn architecture(platform: &Platform) -> Option<&'static str> {
    Some(
        match (platform.architecture.as_str(), platform.variant.as_deref()) {
            ("amd64", _) => "amd64",
            ("arm64", _) => "arm64",
            ("arm", Some("v7")) => "armhf",
            ("arm", Some("v5" | "v6")) => "armel",
            ("386", _) => "i386",
            ("ppc64le", _) => "ppc64el",
            ("s390x", _) => "s390x",
            ("riscv64", _) => "riscv64",
            ("mips64le", _) => "mips64el",
            _ => return None,
        },
    )
}

/// Resolves `request` from the first mirror that serves its suite: verifies its `InRelease`,
/// reads and checks its `Packages` indexes, and resolves the packages and their dependencies.
/// Returns them sorted by name. Touches the network (or `file:` mirrors), never the store.
pub fn resolve(settings: &Settings, request: &Request) -> Result<Vec<Package>, Error> {
    let suite = &request.suite;
    let (mirrors, keyring_paths) = settings.locate(suite)?;
    let keys = archive::read_keyrings(&keyring_paths)?;
    let http = archive::Http::new()?;
    let mut tried = Vec::new();
    for mirror in &mirrors {
        let base = format!("{mirror}/dists/{suite}");
        let url = format!("{base}/InRelease");
        let text = match http.get(&url) {
            Ok(Some(text)) => text,
            Ok(None) => {
                tried.push(format!("{url}: not found (404)"));
                continue;
            }
            Err(reason) => {
                tried.push(format!("{url}: {reason}"));
                continue;
            }
        };
        let release = archive::verify_in_release(&text, &keys, &url, &keyring_paths)?;
        let mut index = resolve::Index::default();
        for component in &request.components {
            archive::read_index(
                &http,
                &base,
                &release,
                component,
                &request.architecture,
                &mut index,
            )?;
        }
        let ids =
            resolve::resolve(&index, &request.packages).map_err(|problem| Error::Resolve {
                suite: suite.clone(),
                architecture: request.architecture.clone(),
                problem: Box::new(problem),
            })?;
        let mut packages = Vec::new();
        for id in ids {
            let c = &index.packages[id];
            packages.push(Package {
                name: c.name.clone(),
                version: c.version.clone(),
                architecture: c.architecture.clone(),
                filename: c.filename.clone(),
                sha256: Digest::from_hex(&c.sha256).map_err(|_| Error::Index {
                    url: format!("{base}/…/Packages"),
                    reason: format!("package `{}` has a bad SHA256", c.name),
                })?,
            });
        }
        packages.sort();
        return Ok(packages);
    }
    Err(Error::FetchRelease {
        suite: suite.clone(),
        tried: tried.join("; "),
    })
}

/// Puts every package's `.deb` into `store` (by its SHA-256), downloading those it lacks from
/// the mirrors of `suite`, each checked against its SHA-256 first. Touches no network when the
/// store has them all.
pub fn fetch(
    settings: &Settings,
    suite: &str,
    packages: &[Package],
    store: &Store,
) -> Result<(), Error> {
    let missing: Vec<&Package> = packages
        .iter()
        .filter(|p| !store.has_blob(&p.sha256))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let (mirrors, _) = settings.locate(suite)?;
    let http = archive::Http::new()?;
    for p in missing {
        let bytes = archive::download_deb(&http, &mirrors, &p.name, &p.filename, p.sha256.hex())?;
        store.write_blob(&bytes).map_err(|source| Error::Store {
            package: p.name.clone(),
            source,
        })?;
    }
    Ok(())
}
