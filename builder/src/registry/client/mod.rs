//! [`RegistryClient`]: pull into the store, push from a layout; see the [module docs](super).
//!
//! This file holds the client itself: its options, the private tokio runtime every operation
//! is `block_on`ed in, and the oci-client clients of each registry host (made once, with the
//! host's credentials stored in them, over HTTPS or, for loopback and listed hosts, plain HTTP
//! when the host does not answer HTTPS). The operations live beside it, one concern a file:
//!
//! - `pull`: manifests and indexes, platform selection, blobs streamed into the
//!   [`Store`](crate::store::Store) with size and digest verification;
//! - `stored`: the store side of a pull: the record of a resolution, and an image read back
//!   out of the store (a reference already resolved, a digest already held);
//! - `push`: blobs HEAD-checked, mounted or uploaded, then manifests and tags;
//! - `referrers`: the artifacts that refer to a pushed image (its SBOM), listed by the
//!   registry's referrers API or in the fallback tag's index;
//! - `cache`: the remote layer cache, layer records in a registry repository (its record
//!   format is documented there);
//! - `retry`: which failures are transient, the backoff between tries, [`RetryPolicy`];
//! - `errors`: how a failed request becomes an [`Error`], with its hint.
//!
//! It relies on oci-client for the distribution protocol, on `tls` for the TLS
//! configuration, on `auth` for credentials and on `reference` for the names of images.
//!
//! # What a client learns once
//!
//! Some answers hold for the whole process and are costly to ask again: the TLS configuration
//! (the system's root certificates, read from disk), whether a loopback or listed host speaks
//! HTTPS, whether its `/v2/` asks for credentials, whether it has the referrers API. A client
//! keeps them in [`Learnt`], and the clients of one build share theirs
//! ([`RegistryClient::sharing`]): the remote cache's client (shorter timeouts) and the push's
//! ask each registry once between them. A registry whose `/v2/` asks for nothing gets requests
//! without a `/v2/` before each (oci-client is told so, see `vendor/oci-client/PATCHED.md`).

mod cache;
mod documents;
mod errors;
mod pull;
mod push;
mod referrers;
mod retry;
mod stored;

pub use cache::{
    alias_manifest, alias_tag, parse_alias, parse_record, record_manifest, record_tag,
    ALIAS_ARTIFACT_TYPE, CACHE_FORMAT, RECORD_ARTIFACT_TYPE,
};
pub use documents::FetchedManifest;
pub use pull::PullReport;
pub use push::{PushEvent, PushReport};
pub use retry::{RetryPolicy, MAX_RETRY_AFTER};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use oci_spec::image::Descriptor;

use super::auth::{CredentialLookup, CredentialSource, Credentials};
use super::reference::{is_loopback_host, Reference};
use super::Error;
use crate::store::BlobRef;
pub(crate) use errors::error_chain;

/// How deep image indexes may nest.
const MAX_INDEX_DEPTH: usize = 4;

/// How a [`RegistryClient`] connects.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registry hosts (`host[:port]`) that may be reached over plain HTTP, besides loopback
    /// hosts (which always may). Such hosts are tried with HTTPS first.
    pub insecure: Vec<String>,
    /// A PEM file of extra CA certificates, trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Where credentials come from.
    pub credentials: CredentialLookup,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// How many blobs are transferred at once.
    pub parallelism: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout between two reads of a response.
    pub read_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            ca_file: None,
            credentials: CredentialLookup::from_env(),
            retry: RetryPolicy::default(),
            parallelism: 4,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// What clients learnt of registries, shared by the clients made with it
/// ([`RegistryClient::sharing`]); see the [module docs](self). Cloning shares it.
#[derive(Clone, Default)]
pub struct Learnt(Arc<Mutex<LearntState>>);

#[derive(Default)]
struct LearntState {
    /// The TLS configuration made for a `--registry-ca` file (or none).
    tls: Option<(Option<PathBuf>, rustls::ClientConfig)>,
    /// By API host (`host[:port]`).
    hosts: HashMap<String, HostFacts>,
}

/// What was learnt of one registry host; `None`: not asked yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct HostFacts {
    /// Whether it answers HTTPS (asked of loopback and listed hosts only).
    pub speaks_https: Option<bool>,
    /// Whether its `GET /v2/` answers with an authentication challenge.
    pub challenges: Option<bool>,
    /// Whether it has the OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`).
    pub referrers_api: Option<bool>,
}

impl std::fmt::Debug for Learnt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Learnt").field(&self.state().hosts).finish()
    }
}

impl Learnt {
    fn state(&self) -> MutexGuard<'_, LearntState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of `host`.
    pub(super) fn host(&self, host: &str) -> HostFacts {
        self.state().hosts.get(host).copied().unwrap_or_default()
    }

    /// Records what `learn` finds out about `host`.
    pub(super) fn learn(&self, host: &str, learn: impl FnOnce(&mut HostFacts)) {
        learn(self.state().hosts.entry(host.to_owned()).or_default());
    }

    /// The TLS configuration for `ca_file`: made once, then cloned.
    fn tls(&self, ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, Error> {
        if let Some((file, config)) = &self.state().tls {
            if file.as_deref() == ca_file {
                return Ok(config.clone());
            }
        }
        let ca = match ca_file {
            Some(path) => crate::registry::tls::read_ca_file(path)?,
            None => Vec::new(),
        };
        let config = crate::registry::tls::client_config(&ca, ca_file)?;
        self.state().tls = Some((ca_file.map(PathBuf::from), config.clone()));
        Ok(config)
    }
}

/// The oci-client clients of one registry host, with its credentials stored in them.
struct HostClients {
    chunked: Client,
    monolithic: Client,
    credentials: Credentials,
    source: CredentialSource,
}

/// A synchronous registry client; see the [module docs](super).
pub struct RegistryClient {
    options: RegistryOptions,
    runtime: tokio::runtime::Runtime,
    /// The TLS configuration of every connection (see [`super::tls`]).
    tls: rustls::ClientConfig,
    hosts: Mutex<HashMap<String, Arc<HostClients>>>,
    /// Held while a host's clients are made.
    making: Mutex<()>,
    /// What this client (and those it shares with) learnt of registries.
    learnt: Learnt,
    /// Where the repositories that hold a blob are remembered (see [`Self::remembering_in`]).
    seen: Option<crate::store::Store>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The blob a descriptor names, as the store records it (and as it is transferred).
fn blob_of(d: &Descriptor) -> BlobRef {
    BlobRef {
        digest: d.digest().to_string(),
        size: d.size(),
        media_type: d.media_type().to_string(),
    }
}

/// `blob` as oci-client's descriptor.
fn client_descriptor(blob: &BlobRef) -> OciDescriptor {
    OciDescriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest.clone(),
        size: blob.size as i64,
        ..Default::default()
    }
}

impl RegistryClient {
    /// A client with `options`. Reads the CA file now; connects lazily.
    pub fn new(options: RegistryOptions) -> Result<Self, Error> {
        Self::sharing(options, &Learnt::default())
    }

    /// A client with `options` that shares what it learns of registries with every client made
    /// with the same `learnt` (see the [module docs](self)): the TLS configuration when the CA
    /// file is the same, and each host's probes, so each is asked once between them.
    pub fn sharing(options: RegistryOptions, learnt: &Learnt) -> Result<Self, Error> {
        // reqwest is built without a default crypto provider (no aws-lc build); install ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = learnt.tls(options.ca_file.as_deref())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Runtime { source })?;
        Ok(Self {
            options,
            runtime,
            tls,
            hosts: Mutex::new(HashMap::new()),
            making: Mutex::new(()),
            learnt: learnt.clone(),
            seen: None,
        })
    }

    /// The client, remembering in `store` which repositories hold the blobs it pushes (pulls
    /// always remember it in the store they pull into), and mounting a blob from one of them
    /// when pushing it to another repository of the same registry.
    pub fn remembering_in(mut self, store: &crate::store::Store) -> Self {
        self.seen = Some(store.clone());
        self
    }

    /// The options the client was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    fn config(&self, protocol: ClientProtocol, monolithic: bool) -> ClientConfig {
        ClientConfig {
            protocol,
            use_monolithic_push: monolithic,
            tls_config: Some(self.tls.clone()),
            connect_timeout: Some(self.options.connect_timeout),
            read_timeout: Some(self.options.read_timeout),
            platform_resolver: None,
            user_agent: concat!("cargo-image/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        }
    }

    fn build(&self, registry: &str, config: ClientConfig) -> Result<Client, Error> {
        Client::try_from(config).map_err(|e| Error::Connect {
            registry: registry.to_string(),
            source: Box::new(e),
        })
    }

    /// The clients of `reference`'s registry host, made (and the protocol probed) once.
    fn host(&self, reference: &Reference) -> Result<Arc<HostClients>, Error> {
        let host = reference.api_host().to_string();
        if let Some(found) = self.hosts.lock().unwrap().get(&host) {
            return Ok(found.clone());
        }
        // One thread makes them (and probes the host); others asking meanwhile (the layers of
        // a plan look their records up at once) wait for it instead of probing too.
        let _making = self.making.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = self.hosts.lock().unwrap().get(&host) {
            return Ok(found.clone());
        }
        let (credentials, source) = self
            .options
            .credentials
            .resolve(reference.registry())
            .map_err(|source| Error::Credentials {
                registry: reference.registry().to_string(),
                source,
            })?;
        let insecure_ok = is_loopback_host(&host)
            || self
                .options
                .insecure
                .iter()
                .any(|h| h == &host || h == reference.registry());
        let facts = self.learnt.host(&host);
        let speaks_https = || match facts.speaks_https {
            Some(known) => Ok(known),
            None => {
                let (answer, answered) = self.speaks_https(reference)?;
                if answered {
                    self.learnt.learn(&host, |f| f.speaks_https = Some(answer));
                }
                Ok::<_, Error>(answer)
            }
        };
        let protocol = if insecure_ok && !speaks_https()? {
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        let chunked = self.build(reference.registry(), self.config(protocol.clone(), false))?;
        let monolithic = self.build(reference.registry(), self.config(protocol.clone(), true))?;
        let auth = credentials.to_client();
        // oci-client asks `/v2/` for a challenge before a request while it holds no token, and
        // a registry that wants none never gives one: each request would cost two. Such a
        // registry (asked once, here or by a client sharing what it learnt) gets no credentials
        // stored, and oci-client is told that it asks for none.
        // With credentials, an unknown answer is left to oci-client's first request.
        let anonymous = matches!(auth, RegistryAuth::Anonymous);
        let challenges = match facts.challenges {
            Some(known) => known,
            None if !anonymous => true,
            None => {
                let (answer, answered) = self.challenges(reference, protocol)?;
                if answered {
                    self.learnt.learn(&host, |f| f.challenges = Some(answer));
                }
                answer
            }
        };
        self.runtime.block_on(async {
            if !anonymous || challenges {
                chunked.store_auth_if_needed(&host, &auth).await;
                monolithic.store_auth_if_needed(&host, &auth).await;
            }
            if !challenges {
                chunked.assume_no_challenge(&host).await;
                monolithic.assume_no_challenge(&host).await;
            }
        });
        let clients = Arc::new(HostClients {
            chunked,
            monolithic,
            credentials,
            source,
        });
        self.hosts.lock().unwrap().insert(host, clients.clone());
        Ok(clients)
    }

    /// Whether `reference`'s registry answers `GET /v2/` with an authentication challenge (or
    /// cannot be asked: then requests find out), and whether it answered (only an answer is
    /// worth remembering). Asked with a client of its own, which remembers nothing for the
    /// host's clients.
    fn challenges(
        &self,
        reference: &Reference,
        protocol: ClientProtocol,
    ) -> Result<(bool, bool), Error> {
        let probe = self.build(reference.registry(), self.config(protocol, false))?;
        let target = reference.to_client();
        let token = self.runtime.block_on(async {
            probe
                .auth(&target, &RegistryAuth::Anonymous, RegistryOperation::Pull)
                .await
        });
        // `Ok(None)`: no challenge, or one that is not a token's (a Basic one an anonymous
        // client cannot answer anyway).
        Ok((!matches!(token, Ok(None)), token.is_ok()))
    }

    /// Whether an insecure-allowed host answers HTTPS (`GET /v2/`, any status). A TLS
    /// certificate error means it does (and the error will say why it is not trusted). The
    /// second value says whether the host answered at all (a refused or timed-out connection
    /// says nothing worth remembering).
    fn speaks_https(&self, reference: &Reference) -> Result<(bool, bool), Error> {
        let probe = self.build(
            reference.registry(),
            self.config(ClientProtocol::Https, false),
        )?;
        let target = reference.to_client();
        let result = self.runtime.block_on(async {
            probe
                .auth(&target, &RegistryAuth::Anonymous, RegistryOperation::Pull)
                .await
        });
        Ok(match result {
            Ok(_) => (true, true),
            Err(e) => {
                let text = error_chain(&e).to_lowercase();
                let unanswered = ["timed out", "timeout", "connection refused", "reset"]
                    .iter()
                    .any(|t| text.contains(t));
                (
                    text.contains("certificate") || text.contains("unknownissuer"),
                    !unanswered,
                )
            }
        })
    }
}
