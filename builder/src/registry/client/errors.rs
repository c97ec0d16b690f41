//! Error wording: how a failed request of oci-client becomes our [`Error`], with its hint.
//!
//! Each request is named by a [`Request`], which builds its error with the registry and
//! reference every message names. [`RegistryClient::remote_error`] picks the wording: a TLS
//! certificate failure is told in words by [`crate::registry::tls`]; a 401 or 403 becomes
//! [`Error::Authenticate`], which names the credentials used (never their secret) and says how
//! to give others; anything else is kept as the source of the request's error. The pull's other
//! errors (verification, unsupported manifests, the store) are built here too, from the same
//! fields. The classifiers ([`auth_failure`], [`digest_mismatch`]) read oci-client's error type;
//! the credentials come from the host's [`HostClients`].

use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};

use super::{HostClients, RegistryClient};
use crate::registry::auth::{CredentialSource, ENV_PASSWORD, ENV_USER};
use crate::registry::reference::Reference;
use crate::registry::{Error, RemoteError};
use crate::store;

/// A request to a registry, as the error of its failure names it: [`Request::error`] fills in
/// the registry and reference every such message names.
#[derive(Debug, Clone, Copy)]
pub(super) enum Request<'a> {
    /// Fetching a manifest or index: [`Error::FetchManifest`].
    FetchManifest,
    /// Fetching the blob of this digest: [`Error::FetchBlob`].
    FetchBlob(&'a str),
    /// Asking whether the registry has the blob of this digest: [`Error::CheckBlob`].
    CheckBlob(&'a str),
    /// Uploading the blob of this digest: [`Error::PushBlob`].
    PushBlob(&'a str),
    /// Pushing the manifest of this digest: [`Error::PushManifest`].
    PushManifest(&'a str),
}

impl Request<'_> {
    /// The error of this request on `reference` failing with `source`.
    pub(super) fn error(self, reference: &Reference, source: RemoteError) -> Error {
        let registry = reference.registry().to_string();
        let reference = reference.to_string();
        match self {
            Request::FetchManifest => Error::FetchManifest {
                registry,
                reference,
                source,
            },
            Request::FetchBlob(digest) => Error::FetchBlob {
                registry,
                reference,
                digest: digest.to_string(),
                source,
            },
            Request::CheckBlob(digest) => Error::CheckBlob {
                registry,
                reference,
                digest: digest.to_string(),
                source,
            },
            Request::PushBlob(digest) => Error::PushBlob {
                registry,
                reference,
                digest: digest.to_string(),
                source,
            },
            Request::PushManifest(digest) => Error::PushManifest {
                registry,
                reference,
                digest: digest.to_string(),
                source,
            },
        }
    }
}

/// The errors of a pull that are not a failed request, each naming the reference (and the
/// registry or blob) at fault.
impl Error {
    /// [`Error::VerifyBlob`]: blob (or manifest) `digest` of `reference` is not what it claims.
    pub(super) fn verify_blob(reference: &Reference, digest: &str, detail: String) -> Self {
        Error::VerifyBlob {
            registry: reference.registry().to_string(),
            reference: reference.to_string(),
            digest: digest.to_string(),
            detail,
        }
    }

    /// [`Error::UnsupportedManifest`]: manifest `digest` of `reference` cannot be used.
    pub(super) fn unsupported_manifest(
        reference: &Reference,
        digest: &str,
        reason: String,
    ) -> Self {
        Error::UnsupportedManifest {
            registry: reference.registry().to_string(),
            reference: reference.to_string(),
            digest: digest.to_string(),
            reason,
        }
    }

    /// [`Error::StoreBlob`]: blob `digest` of `reference` could not be written to the store.
    pub(super) fn store_blob(reference: &Reference, digest: &str, source: store::Error) -> Self {
        Error::StoreBlob {
            reference: reference.to_string(),
            digest: digest.to_string(),
            source: Box::new(source),
        }
    }

    /// [`Error::RecordResolution`]: the store failed to lock, read or write the key of
    /// `reference`'s resolution.
    pub(super) fn record_resolution(reference: &Reference, source: store::Error) -> Self {
        Error::RecordResolution {
            reference: reference.to_string(),
            source: Box::new(source),
        }
    }
}

impl RegistryClient {
    /// Maps a failed `request` on `reference` to its error; a 401/403 is wrapped in
    /// [`Error::Authenticate`], which says how to give credentials.
    pub(super) fn remote_error(
        &self,
        host: &HostClients,
        reference: &Reference,
        e: OciDistributionError,
        request: Request<'_>,
    ) -> Error {
        let other = |source| request.error(reference, source);
        // A certificate problem, in words instead of rustls' names.
        if let Some(tls) = crate::registry::tls::describe(
            &e,
            reference.registry(),
            self.options.ca_file.as_deref(),
        ) {
            return other(Box::new(tls));
        }
        let Some(status) = auth_failure(&e) else {
            return other(Box::new(e));
        };
        let registry = reference.registry();
        let login = format!("`docker login {registry}` or `podman login {registry}`");
        let (credentials, advice) = match (host.credentials.username(), &host.source) {
            (_, CredentialSource::None) => (
                host.source.to_string(),
                format!(
                    "log in with {login} (cargo-image reads docker's config.json and podman's \
                     auth.json or $REGISTRY_AUTH_FILE), or pass --creds USER:PASSWORD, or set \
                     {ENV_USER} and {ENV_PASSWORD}"
                ),
            ),
            (Some(user), source) if status.starts_with("403") => (
                format!("user `{user}` from {source}"),
                format!("user `{user}` may not do this on `{}`: ask the registry's administrators for access, or use other credentials ({login})", reference.name()),
            ),
            (Some(user), source) => (
                format!("user `{user}` from {source}"),
                format!("check the user name and password, or log in again ({login})"),
            ),
            (None, source) => (
                source.to_string(),
                format!("check the token, or log in again ({login})"),
            ),
        };
        Error::Authenticate {
            registry: registry.to_string(),
            reference: reference.to_string(),
            status,
            credentials,
            advice,
            source: Box::new(other(Box::new(e))),
        }
    }
}

/// The whole error chain as one line, `: `-joined (for classification, and for messages whose
/// top error says little, e.g. reqwest's; never shown with secrets: oci-client errors hold URLs
/// and registry messages only).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(super) fn digest_in_io(io: &std::io::Error) -> Option<String> {
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>())
        .map(|d| d.to_string())
}

/// The detail of a digest mismatch error of oci-client.
pub(super) fn digest_mismatch(e: &OciDistributionError) -> Option<String> {
    match e {
        OciDistributionError::DigestError(d) => Some(d.to_string()),
        OciDistributionError::IoError(io) => digest_in_io(io),
        _ => None,
    }
}

/// The HTTP status of an authentication failure.
pub(super) fn auth_failure(e: &OciDistributionError) -> Option<&'static str> {
    match e {
        OciDistributionError::UnauthorizedError { .. } => Some("401 Unauthorized"),
        OciDistributionError::AuthenticationFailure(_) => Some("authentication failed"),
        OciDistributionError::ServerError { code: 401, .. } => Some("401 Unauthorized"),
        OciDistributionError::ServerError { code: 403, .. } => Some("403 Forbidden"),
        OciDistributionError::RequestError(r) => match r.status().map(|s| s.as_u16()) {
            Some(401) => Some("401 Unauthorized"),
            Some(403) => Some("403 Forbidden"),
            _ => None,
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|e| match e.code {
                OciErrorCode::Unauthorized => Some("401 Unauthorized"),
                OciErrorCode::Denied => Some("403 Denied"),
                _ => None,
            })
        }
        _ => None,
    }
}
