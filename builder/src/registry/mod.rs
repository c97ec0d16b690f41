//! Registries: image references, credentials, pulling base images into the store and pushing
//! built images.
//!
//! # Brief overview
//!
//! - [`Reference`] parses and normalises `[registry/]repository[:tag][@sha256:...]` as the
//!   distribution project does (`alpine` is `docker.io/library/alpine:latest`); it lives in
//!   [`crate::types`] with [`PullPolicy`] and is re-exported here.
//! - [`CredentialLookup`] finds [`Credentials`] for a registry: `--creds`, the
//!   `CARGO_IMAGE_REGISTRY_USER`/`_PASSWORD` pair, docker's `config.json` (with credential
//!   helpers), podman's `auth.json`. Secrets print as `***` and never reach an error.
//! - [`RegistryClient`] is a synchronous facade over the asynchronous `oci-client` crate: it owns
//!   a private tokio runtime and `block_on`s each operation, so the rest of the library (rayon,
//!   plain threads) stays synchronous. It adds what oci-client leaves to its callers: platform
//!   selection with variants, retries with backoff and jitter, streaming blobs into the
//!   [`Store`](crate::store::Store) with digest and size verification, cross-repository mounts
//!   that fall back to an upload, chunked uploads that fall back to a monolithic `PUT`, plain
//!   HTTP only for loopback or listed hosts.
//! - TLS (the `tls` module): the system's CAs plus `--registry-ca`; a registry whose
//!   certificate is exactly one given with `--registry-ca` (a self-signed certificate made as
//!   Docker's docs make one) is trusted, its name and dates still checked; certificate
//!   failures are told in words ([`TlsFailure`]) with what to do.
//!
//! In the pipeline, a stage whose base is an image reference is *fetched* by
//! [`RegistryClient::pull`] before planning: config and layers land in the store (shared by every
//! build), and the resolution `reference + platform -> manifest digest` is recorded as a store
//! key so that later builds with [`PullPolicy::IfNotPresent`] need no network.
//! The pulled image is the same [`ResolvedImage`] an `oci:` base gives (its blobs in the store,
//! with the reference it was pulled by), in a [`PullReport`] that also says what the pull did
//! (whether the network was used, how many blobs were downloaded). After a build, [`RegistryClient::push_layout`] sends the OCI layout to a registry:
//! blobs first (HEAD-checked, mounted or uploaded in parallel), then manifests as the exact
//! bytes of the layout, children before their index, then the first tag, then the other tags
//! and the images' referrers (each SBOM) by digest at once, listed under the `sha256-<hex>`
//! fallback tag when the registry has no referrers API. The clients of one build share what
//! they learn of each registry ([`Learnt`]), so each is probed once.
//!
//! ```no_run
//! use cargo_oci_image::oci::Platform;
//! use cargo_oci_image::registry::*;
//! use cargo_oci_image::store::Store;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open(std::path::Path::new("target/image/.store"))?;
//! let client = RegistryClient::new(RegistryOptions::default())?;
//! let base: Reference = "alpine:3.20".parse()?;
//! let pulled = client.pull(&base, &Platform::linux_amd64(), &store, PullPolicy::IfNotPresent)?;
//! println!("{base} -> {}", pulled.image.digest());
//! let target: Reference = "127.0.0.1:5000/hello:1.0".parse()?;
//! let report = client.push_layout(
//!     std::path::Path::new("target/image/hello"),
//!     None,
//!     &target,
//!     &["1.0".into(), "latest".into()],
//!     None,
//!     &|_event| {},
//! )?;
//! println!("{}@{}", target.name(), report.digest);
//! # Ok(()) }
//! ```
//!
//! # Retries
//!
//! Every request is retried (up to [`RetryPolicy::attempts`] times in all) when the connection
//! fails, resets or times out, or the registry answers 5xx, 408 or 429, with an exponential
//! backoff and random jitter. A 429 or 5xx that says when to come back (`Retry-After: N`, in
//! seconds) is retried no sooner than that, but never waits more than [`MAX_RETRY_AFTER`] (a
//! registry asking for an hour gets the remaining tries a bounded wait apart); a 429 without it
//! waits at least a second. A blob whose bytes do not hash to its digest is not retried: that is
//! reported as [`Error::VerifyBlob`]. An upload restarts from a new session; a failed push
//! leaves at most abandoned upload sessions, which the registry expires, and pushes no
//! manifest whose blobs are not all there, so the next push starts clean.

mod auth;
mod client;
mod reference;
pub(crate) mod tls;

pub use crate::types::PullPolicy;
pub use auth::{
    AuthError, CredentialLookup, CredentialSource, Credentials, Secret, ENV_PASSWORD, ENV_USER,
};
pub(crate) use client::error_chain;
pub use client::{
    alias_manifest, alias_tag, parse_alias, parse_record, record_manifest, record_tag,
    FetchedManifest, Learnt, PullReport, PushEvent, PushReport, RegistryClient, RegistryOptions,
    RetryPolicy, ALIAS_ARTIFACT_TYPE, CACHE_FORMAT, MAX_RETRY_AFTER, RECORD_ARTIFACT_TYPE,
};
pub use reference::{
    InvalidReference, Reference, DEFAULT_REGISTRY, DEFAULT_TAG, DOCKER_HUB_API_HOST,
};
pub use tls::{read_ca_file, TlsFailure};

use std::path::PathBuf;

#[cfg(doc)]
use crate::oci::ResolvedImage;

/// The error of a remote operation (network, HTTP status, registry error body), kept as the
/// source of an [`Error`]. Its text never contains credentials.
pub type RemoteError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of references, credentials, pulls and pushes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference `{reference}`")]
    ParseReference {
        reference: String,
        #[source]
        source: InvalidReference,
    },

    #[error("failed to find credentials for registry `{registry}`")]
    Credentials {
        registry: String,
        #[source]
        source: AuthError,
    },

    #[error("failed to read the CA certificate file `{}` given with --registry-ca; check the path", path.display())]
    ReadCaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the CA certificate file `{}` given with --registry-ca is not usable: {reason}; give a PEM file of the registry's CA certificate (for a self-signed registry, its certificate)", path.display())]
    InvalidCaFile { path: PathBuf, reason: String },

    #[error("failed to set up TLS for registries with the system's CA certificates{}", ca_file.as_ref().map(|p| format!(" and those of `{}` (--registry-ca)", p.display())).unwrap_or_default())]
    TlsSetup {
        ca_file: Option<PathBuf>,
        #[source]
        source: Box<rustls::Error>,
    },

    #[error("failed to set up the HTTP client for registry `{registry}`")]
    Connect {
        registry: String,
        #[source]
        source: RemoteError,
    },

    #[error("failed to start the registry client's runtime")]
    Runtime {
        #[source]
        source: std::io::Error,
    },

    /// A 401 or 403; `source` is the failed operation (whose source is the HTTP error).
    #[error("registry `{registry}` refused access to `{reference}` ({status}) with {credentials}; {advice}")]
    Authenticate {
        registry: String,
        reference: String,
        status: &'static str,
        credentials: String,
        advice: String,
        #[source]
        source: Box<Error>,
    },

    #[error("failed to check whether registry `{registry}` has blob {digest} for `{reference}`")]
    CheckBlob {
        registry: String,
        reference: String,
        digest: String,
        #[source]
        source: RemoteError,
    },

    #[error("failed to fetch the manifest of `{reference}` from registry `{registry}`")]
    FetchManifest {
        registry: String,
        reference: String,
        #[source]
        source: RemoteError,
    },

    #[error("the manifest {digest} of `{reference}` (registry `{registry}`) is not a supported image manifest or index: {reason}")]
    UnsupportedManifest {
        registry: String,
        reference: String,
        digest: String,
        reason: String,
    },

    #[error("the image index {digest} of `{reference}` has no image for {platform}; it has: {available}")]
    PlatformNotFound {
        reference: String,
        digest: String,
        platform: String,
        available: String,
    },

    #[error("the image `{reference}` ({digest}) is for {found}, not {wanted}")]
    PlatformMismatch {
        reference: String,
        digest: String,
        wanted: String,
        found: String,
    },

    #[error("failed to fetch blob {digest} of `{reference}` from registry `{registry}`")]
    FetchBlob {
        registry: String,
        reference: String,
        digest: String,
        #[source]
        source: RemoteError,
    },

    #[error("blob {digest} of `{reference}` from registry `{registry}` failed verification: {detail}; nothing was stored")]
    VerifyBlob {
        registry: String,
        reference: String,
        digest: String,
        detail: String,
    },

    #[error("failed to store blob {digest} of `{reference}`")]
    StoreBlob {
        reference: String,
        digest: String,
        #[source]
        source: Box<crate::store::Error>,
    },

    #[error("failed to record the resolution of `{reference}` in the store")]
    RecordResolution {
        reference: String,
        #[source]
        source: Box<crate::store::Error>,
    },

    #[error("{reference} is not in the store and pull = \"never\"; run once with network or pull = \"if-not-present\"")]
    NotInStore { reference: String },

    #[error("failed to read the image to push from `{}`", path.display())]
    ReadLayout {
        path: PathBuf,
        #[source]
        source: Box<crate::oci::Error>,
    },

    #[error("failed to push blob {digest} to `{reference}` on registry `{registry}`")]
    PushBlob {
        registry: String,
        reference: String,
        digest: String,
        #[source]
        source: RemoteError,
    },

    #[error("failed to push manifest {digest} as `{reference}` to registry `{registry}`")]
    PushManifest {
        registry: String,
        reference: String,
        digest: String,
        #[source]
        source: RemoteError,
    },

    #[error("cannot update the referrers index `{reference}`: {reason}; fix or delete that tag in the registry, then push again")]
    ReferrersIndex { reference: String, reason: String },
}
