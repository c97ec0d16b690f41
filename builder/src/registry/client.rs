//! [`RegistryClient`]: pull into the store, push from a layout; see the [module docs](super).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{stream, StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};

use super::auth::{CredentialLookup, CredentialSource, Credentials, ENV_PASSWORD, ENV_USER};
use super::reference::{is_loopback_host, Reference};
use super::{Error, RemoteError};
use crate::oci::{
    self, descriptor, Digest, Layout, ManifestKind, Platform, ResolvedImage, DOCKER_CONFIG,
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
};
use crate::store::{BlobRef, BlobsRecord, NodeResult, Store};
use crate::types::PullPolicy;

/// The manifest media types we ask registries for.
const ACCEPTED_MANIFESTS: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// How deep image indexes may nest.
const MAX_INDEX_DEPTH: usize = 4;

/// The size of each piece read from a file for an upload (and of each chunked `PATCH`).
const UPLOAD_PIECE: usize = 4 * 1024 * 1024;

/// Retries of transient failures: `attempts` tries in all, waiting `base_delay * 2^n` (at most
/// `max_delay`) with +-50% jitter between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

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

/// An image pulled into the store: its manifest and config (parsed and as raw bytes) and where
/// its blobs are. The layer descriptors are the registry's, so blobs are reused byte for byte.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference as asked (normalised).
    pub reference: Reference,
    /// The platform it was selected for.
    pub platform: Platform,
    /// The image index the reference named, when the manifest was picked out of one.
    pub index: Option<Descriptor>,
    /// The manifest's descriptor (digest, size, media type as the registry gave it).
    pub descriptor: Descriptor,
    pub manifest: ImageManifest,
    /// The manifest exactly as the registry served it (its sha256 is the manifest digest).
    pub manifest_bytes: Vec<u8>,
    pub config: ImageConfiguration,
    /// The config exactly as stored.
    pub config_bytes: Vec<u8>,
    /// The root of the store holding the blobs.
    pub store_root: PathBuf,
    /// Whether the registry was contacted (false: served from the store alone).
    pub from_network: bool,
    /// How many blobs were downloaded (the others were already in the store).
    pub downloaded_blobs: usize,
}

impl PulledImage {
    /// The manifest digest.
    pub fn digest(&self) -> String {
        self.descriptor.digest().to_string()
    }

    /// The layer descriptors, bottom first.
    pub fn layers(&self) -> &[Descriptor] {
        self.manifest.layers()
    }

    /// The path of blob `digest` in the store.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, oci::Error> {
        let digest = Digest::parse(digest)?;
        Ok(self
            .store_root
            .join("blobs")
            .join("sha256")
            .join(digest.hex()))
    }

    /// This image as a [`ResolvedImage`] whose "layout" is the store (which has the same
    /// `blobs/sha256/` shape), so a build can use a pulled base like an `oci:` one.
    pub fn to_resolved(&self) -> ResolvedImage {
        ResolvedImage {
            layout: self.store_root.clone(),
            tag: self.reference.tag().map(str::to_string),
            index: self.index.clone(),
            descriptor: self.descriptor.clone(),
            manifest: self.manifest.clone(),
            manifest_bytes: self.manifest_bytes.clone(),
            config: self.config.clone(),
            config_bytes: self.config_bytes.clone(),
        }
    }
}

/// Progress of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// The registry already had the blob.
    BlobSkipped { digest: String, size: u64 },
    /// The blob was mounted from another repository of the registry.
    BlobMounted { digest: String, size: u64 },
    /// The blob was uploaded.
    BlobUploaded { digest: String, size: u64 },
    /// A manifest or index was pushed as `reference`.
    ManifestPushed { digest: String, reference: String },
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// The digest of the pushed root manifest or index.
    pub digest: String,
    pub uploaded_blobs: usize,
    pub skipped_blobs: usize,
    pub mounted_blobs: usize,
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
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A blob to transfer.
#[derive(Debug, Clone)]
struct Blob {
    digest: String,
    size: u64,
    media_type: String,
}

impl Blob {
    fn of(d: &Descriptor) -> Self {
        Self {
            digest: d.digest().to_string(),
            size: d.size(),
            media_type: d.media_type().to_string(),
        }
    }

    fn to_client(&self) -> OciDescriptor {
        OciDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size as i64,
            ..Default::default()
        }
    }
}

impl RegistryClient {
    /// A client with `options`. Reads the CA file now; connects lazily.
    pub fn new(options: RegistryOptions) -> Result<Self, Error> {
        // reqwest is built without a default crypto provider (no aws-lc build); install ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = match &options.ca_file {
            Some(path) => super::tls::read_ca_file(path)?,
            None => Vec::new(),
        };
        let tls = super::tls::client_config(&ca, options.ca_file.as_deref())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Runtime { source })?;
        Ok(Self {
            options,
            runtime,
            tls,
            hosts: Mutex::new(HashMap::new()),
        })
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
        let protocol = if insecure_ok && !self.speaks_https(reference)? {
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        let chunked = self.build(reference.registry(), self.config(protocol.clone(), false))?;
        let monolithic = self.build(reference.registry(), self.config(protocol, true))?;
        let auth = credentials.to_client();
        self.runtime.block_on(async {
            chunked.store_auth_if_needed(&host, &auth).await;
            monolithic.store_auth_if_needed(&host, &auth).await;
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

    /// Whether an insecure-allowed host answers HTTPS (`GET /v2/`, any status). A TLS
    /// certificate error means it does (and the error will say why it is not trusted).
    fn speaks_https(&self, reference: &Reference) -> Result<bool, Error> {
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
            Ok(_) => true,
            Err(e) => {
                let text = error_chain(&e).to_lowercase();
                text.contains("certificate") || text.contains("unknownissuer")
            }
        })
    }

    /// Runs `op` until it succeeds, fails for good, or the retries are used up.
    async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, OciDistributionError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let policy = self.options.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let Some(min_wait) = transient(&e) else {
                        return Err(e);
                    };
                    if attempt >= policy.attempts.max(1) {
                        return Err(e);
                    }
                    let wait = backoff(&policy, attempt).max(min_wait);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    // ---------------------------------------------------------------- pull

    /// Pulls `reference` for `platform` into `store` according to `policy`; see the
    /// [module docs](super). Every blob's size and digest are verified while it streams in;
    /// blobs the store already has are not downloaded.
    pub fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &Store,
        policy: PullPolicy,
    ) -> Result<PulledImage, Error> {
        let key = resolution_key(reference, platform);
        // One pull of a reference at a time per store: the images of a workspace that share a
        // base (and concurrent processes) wait for the first pull, then find it in the store.
        let _pulling = store
            .lock_key(&key)
            .map_err(|source| Error::RecordResolution {
                reference: reference.to_string(),
                source: Box::new(source),
            })?;
        if policy != PullPolicy::Always {
            if let Some(image) = self.load_from_store(reference, platform, store, &key)? {
                return Ok(image);
            }
            if policy == PullPolicy::Never {
                return Err(Error::NotInStore {
                    reference: reference.to_string(),
                });
            }
        }
        let host = self.host(reference)?;
        self.runtime
            .block_on(self.pull_remote(&host, reference, platform, store, &key))
    }

    /// The image from the store alone, if the store holds it completely.
    fn load_from_store(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &Store,
        key: &str,
    ) -> Result<Option<PulledImage>, Error> {
        let record = |e| Error::RecordResolution {
            reference: reference.to_string(),
            source: Box::new(e),
        };
        if let Some(NodeResult::Blobs(record)) = store.get_key(key).map_err(record)? {
            let manifest = record.data.get("manifest").and_then(|v| v.as_str());
            let index = record.data.get("index").and_then(|v| v.as_str());
            let manifest = manifest.and_then(|m| record.blobs.iter().find(|b| b.digest == m));
            let index = index.and_then(|i| record.blobs.iter().find(|b| b.digest == i));
            if let Some(manifest) = manifest {
                return Ok(load_stored(reference, platform, store, manifest, index));
            }
        }
        // A digest reference needs no resolution: use the blobs if they are all there.
        let Some(digest) = reference.digest() else {
            return Ok(None);
        };
        let Ok(bytes) = fs::read(store.blob_path(digest)) else {
            return Ok(None);
        };
        if Digest::of(&bytes) != *digest {
            return Ok(None);
        }
        let blob = BlobRef {
            digest: digest.to_string(),
            size: bytes.len() as u64,
            media_type: media_type_of(&bytes).unwrap_or_default(),
        };
        match ManifestKind::of(&MediaType::from(blob.media_type.as_str())) {
            ManifestKind::Image => Ok(load_stored(reference, platform, store, &blob, None)),
            ManifestKind::Index => {
                let Ok(index) = serde_json::from_slice::<ImageIndex>(&bytes) else {
                    return Ok(None);
                };
                let Ok(child) = select(&index, platform, reference, &digest.to_string()) else {
                    return Ok(None);
                };
                let child = BlobRef {
                    digest: child.digest().to_string(),
                    size: child.size(),
                    media_type: child.media_type().to_string(),
                };
                Ok(load_stored(reference, platform, store, &child, Some(&blob)))
            }
            ManifestKind::Other => Ok(None),
        }
    }

    async fn pull_remote(
        &self,
        host: &HostClients,
        reference: &Reference,
        platform: &Platform,
        store: &Store,
        key: &str,
    ) -> Result<PulledImage, Error> {
        let client = &host.chunked;
        let mut current = reference.clone();
        let mut index_blob: Option<BlobRef> = None;
        let mut downloaded = 0usize;
        let auth = host.credentials.to_client();
        for _ in 0..=MAX_INDEX_DEPTH {
            let target = current.to_client();
            let (bytes, digest) = self
                .retry(|| client.pull_manifest_raw(&target, &auth, ACCEPTED_MANIFESTS))
                .await
                .map_err(|e| {
                    self.remote_error(host, reference, e, |source| Error::FetchManifest {
                        registry: reference.registry().to_string(),
                        reference: reference.to_string(),
                        source,
                    })
                })?;
            let computed = Digest::of(&bytes);
            if computed.to_string() != digest {
                return Err(Error::VerifyBlob {
                    registry: reference.registry().to_string(),
                    reference: reference.to_string(),
                    digest,
                    detail: format!("the manifest hashes to {computed}"),
                });
            }
            let unsupported = |reason: String| Error::UnsupportedManifest {
                registry: reference.registry().to_string(),
                reference: reference.to_string(),
                digest: digest.clone(),
                reason,
            };
            let media_type = media_type_of(&bytes).map_err(unsupported)?;
            let stored = store_bytes(store, reference, &bytes)?;
            let blob = BlobRef {
                digest: stored.to_string(),
                size: bytes.len() as u64,
                media_type: media_type.clone(),
            };
            match ManifestKind::of(&MediaType::from(media_type.as_str())) {
                ManifestKind::Index => {
                    let index: ImageIndex = serde_json::from_slice(&bytes)
                        .map_err(|e| unsupported(format!("invalid image index: {e}")))?;
                    let child = select(&index, platform, reference, &digest)?;
                    current = reference.with_digest(
                        Digest::parse(child.digest().as_ref()).map_err(|_| {
                            unsupported(format!("invalid digest `{}` in the index", child.digest()))
                        })?,
                    );
                    index_blob.get_or_insert(blob);
                }
                ManifestKind::Image => {
                    let manifest: ImageManifest = serde_json::from_slice(&bytes)
                        .map_err(|e| unsupported(format!("invalid image manifest: {e}")))?;
                    let config_ok = match manifest.config().media_type() {
                        MediaType::ImageConfig => true,
                        MediaType::Other(m) => m == DOCKER_CONFIG,
                        _ => false,
                    };
                    if !config_ok {
                        return Err(unsupported(format!(
                            "its config has media type `{}`, not an image config",
                            manifest.config().media_type()
                        )));
                    }
                    // A config is a small JSON document: one claiming more than a manifest
                    // may hold is refused before a byte of it is downloaded.
                    if manifest.config().size() > crate::oci::bounded::MAX_JSON_BYTES {
                        return Err(unsupported(format!(
                            "its config {} claims {} bytes, more than the {} bytes allowed for an image config",
                            manifest.config().digest(),
                            manifest.config().size(),
                            crate::oci::bounded::MAX_JSON_BYTES
                        )));
                    }
                    // Config first (small, and it says whether the platform is right).
                    let config_blob = Blob::of(manifest.config());
                    if self
                        .fetch_blob(host, reference, store, &config_blob)
                        .await?
                    {
                        downloaded += 1;
                    }
                    let layers: Vec<Blob> = manifest.layers().iter().map(Blob::of).collect();
                    let fetched: Vec<bool> = stream::iter(layers.iter())
                        .map(|b| self.fetch_blob(host, reference, store, b))
                        .buffer_unordered(self.options.parallelism.max(1))
                        .try_collect()
                        .await?;
                    downloaded += fetched.iter().filter(|f| **f).count();

                    let mut image =
                        load_stored_checked(reference, store, &blob, index_blob.as_ref())
                            .map_err(unsupported)?;
                    let found = Platform::of_config(&image.config);
                    if !platform.matches(&found) {
                        return Err(Error::PlatformMismatch {
                            reference: reference.to_string(),
                            digest: blob.digest,
                            wanted: platform.to_string(),
                            found: found.to_string(),
                        });
                    }
                    image.platform = platform.clone();
                    let mut blobs: Vec<BlobRef> = index_blob.iter().cloned().collect();
                    blobs.push(blob.clone());
                    blobs.push(blob_ref(&config_blob));
                    blobs.extend(layers.iter().map(blob_ref));
                    let mut data = BTreeMap::new();
                    data.insert("reference", serde_json::json!(reference.to_string()));
                    data.insert("platform", serde_json::json!(platform.to_string()));
                    data.insert("manifest", serde_json::json!(blob.digest));
                    if let Some(index) = &index_blob {
                        data.insert("index", serde_json::json!(index.digest));
                    }
                    let record = NodeResult::Blobs(BlobsRecord {
                        blobs,
                        data: serde_json::to_value(data).unwrap_or_default(),
                    });
                    store
                        .put_key(key, &record)
                        .map_err(|source| Error::RecordResolution {
                            reference: reference.to_string(),
                            source: Box::new(source),
                        })?;
                    image.from_network = true;
                    image.downloaded_blobs = downloaded;
                    return Ok(image);
                }
                ManifestKind::Other => {
                    return Err(unsupported(format!(
                        "media type `{media_type}` is neither an image manifest nor an index"
                    )))
                }
            }
        }
        Err(Error::UnsupportedManifest {
            registry: reference.registry().to_string(),
            reference: reference.to_string(),
            digest: reference.manifest_ref(),
            reason: "image indexes nest too deep".into(),
        })
    }

    /// Streams `blob` into the store, verifying size and digest; returns whether it was
    /// downloaded (false: the store had it).
    async fn fetch_blob(
        &self,
        host: &HostClients,
        reference: &Reference,
        store: &Store,
        blob: &Blob,
    ) -> Result<bool, Error> {
        let expected = Digest::parse(&blob.digest).map_err(|_| Error::VerifyBlob {
            registry: reference.registry().to_string(),
            reference: reference.to_string(),
            digest: blob.digest.clone(),
            detail: "it is not a sha256 digest".into(),
        })?;
        if let Ok(meta) = fs::metadata(store.blob_path(&expected)) {
            if meta.len() == blob.size {
                return Ok(false);
            }
        }
        let target = reference.to_client();
        let descriptor = blob.to_client();
        let verify = |detail: String| Error::VerifyBlob {
            registry: reference.registry().to_string(),
            reference: reference.to_string(),
            digest: blob.digest.clone(),
            detail,
        };
        let outcome = self
            .retry(|| async {
                let mut body = host.chunked.pull_blob_stream(&target, &descriptor).await?;
                let mut writer = store.blob_writer().map_err(std::io::Error::other)?;
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(OciDistributionError::IoError)?;
                    size += chunk.len() as u64;
                    if size > blob.size {
                        return Ok(Err(format!(
                            "the registry sent more than the {} bytes of its descriptor",
                            blob.size
                        )));
                    }
                    hasher.update(&chunk);
                    writer.write_all(&chunk)?;
                }
                if size != blob.size {
                    return Ok(Err(format!(
                        "the registry sent {size} bytes, the descriptor says {}",
                        blob.size
                    )));
                }
                let actual = Digest::from_hasher(hasher);
                if actual != expected {
                    return Ok(Err(format!("its content hashes to {actual}")));
                }
                Ok(Ok(writer))
            })
            .await;
        let writer = match outcome {
            Ok(Ok(writer)) => writer,
            Ok(Err(detail)) => return Err(verify(detail)),
            Err(e) => {
                if let Some(detail) = digest_mismatch(&e) {
                    return Err(verify(detail));
                }
                return Err(
                    self.remote_error(host, reference, e, |source| Error::FetchBlob {
                        registry: reference.registry().to_string(),
                        reference: reference.to_string(),
                        digest: blob.digest.clone(),
                        source,
                    }),
                );
            }
        };
        let (digest, _) = writer.finish().map_err(|source| Error::StoreBlob {
            reference: reference.to_string(),
            digest: blob.digest.clone(),
            source: Box::new(source),
        })?;
        debug_assert_eq!(digest, expected);
        Ok(true)
    }

    /// Maps a failed request to `other` (the failed operation); a 401/403 is wrapped in
    /// [`Error::Authenticate`], which says how to give credentials.
    fn remote_error(
        &self,
        host: &HostClients,
        reference: &Reference,
        e: OciDistributionError,
        other: impl FnOnce(RemoteError) -> Error,
    ) -> Error {
        // A certificate problem, in words instead of rustls' names.
        if let Some(tls) =
            super::tls::describe(&e, reference.registry(), self.options.ca_file.as_deref())
        {
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

    // ---------------------------------------------------------------- push

    /// Pushes the image (or image index and its images) that `tag_in_layout` names in the OCI
    /// layout `layout_dir` (the only one when `None`) to `target`'s repository, tagged with
    /// each of `tags` (or `target`'s own tag when `tags` is empty). Blobs the registry has are
    /// skipped; with `mount_from` (a repository of the same registry the base came from) they
    /// are mounted when possible; the others are uploaded in parallel. Manifests are pushed as
    /// the exact bytes of the layout, children before their index.
    pub fn push_layout(
        &self,
        layout_dir: &Path,
        tag_in_layout: Option<&str>,
        target: &Reference,
        tags: &[String],
        mount_from: Option<&Reference>,
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<PushReport, Error> {
        let read = |source| Error::ReadLayout {
            path: layout_dir.to_path_buf(),
            source: Box::new(source),
        };
        let layout = Layout::open(layout_dir).map_err(read)?;
        let root = layout.find(tag_in_layout).map_err(read)?.clone();
        // Collect manifests (children first) and blobs.
        let mut manifests: Vec<(Descriptor, Vec<u8>)> = Vec::new();
        let mut blobs: BTreeMap<String, Blob> = BTreeMap::new();
        collect(&layout, &root, 0, &mut manifests, &mut blobs).map_err(read)?;

        let host = self.host(target)?;
        let mount_from = mount_from
            .filter(|m| m.registry() == target.registry() && m.repository() != target.repository());
        let blobs: Vec<Blob> = blobs.into_values().collect();
        let mut report = PushReport {
            digest: root.digest().to_string(),
            ..PushReport::default()
        };
        self.runtime.block_on(async {
            let outcomes: Vec<PushEvent> = stream::iter(blobs.iter())
                .map(|blob| self.push_blob(&host, &layout, target, mount_from, blob, progress))
                .buffer_unordered(self.options.parallelism.max(1))
                .try_collect()
                .await?;
            for outcome in outcomes {
                match outcome {
                    PushEvent::BlobSkipped { .. } => report.skipped_blobs += 1,
                    PushEvent::BlobMounted { .. } => report.mounted_blobs += 1,
                    PushEvent::BlobUploaded { .. } => report.uploaded_blobs += 1,
                    PushEvent::ManifestPushed { .. } => {}
                }
            }
            let root_digest = root.digest().to_string();
            for (desc, bytes) in &manifests {
                let digest = desc.digest().to_string();
                let names: Vec<Reference> = if digest != root_digest {
                    vec![target.with_digest(Digest::parse(&digest).map_err(|e| read(e.into()))?)]
                } else if tags.is_empty() {
                    vec![target.clone()]
                } else {
                    tags.iter()
                        .map(|t| {
                            target.with_tag(t).map_err(|source| Error::ParseReference {
                                reference: format!("{}:{t}", target.name()),
                                source,
                            })
                        })
                        .collect::<Result<_, _>>()?
                };
                for name in names {
                    self.push_manifest(&host, &name, desc, bytes).await?;
                    progress(PushEvent::ManifestPushed {
                        digest: digest.clone(),
                        reference: name.to_string(),
                    });
                }
            }
            Ok::<(), Error>(())
        })?;
        Ok(report)
    }

    async fn push_manifest(
        &self,
        host: &HostClients,
        name: &Reference,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let target = name.to_client();
        let digest = desc.digest().to_string();
        let fail = |source: RemoteError| Error::PushManifest {
            registry: name.registry().to_string(),
            reference: name.to_string(),
            digest: digest.clone(),
            source,
        };
        let content_type = desc
            .media_type()
            .to_string()
            .parse()
            .map_err(|e| fail(Box::new(e)))?;
        let body = bytes::Bytes::copy_from_slice(bytes);
        self.retry(|| {
            host.chunked.push_manifest_raw(
                &target,
                body.clone(),
                std::clone::Clone::clone(&content_type),
            )
        })
        .await
        .map_err(|e| self.remote_error(host, name, e, fail))?;
        Ok(())
    }

    async fn push_blob(
        &self,
        host: &HostClients,
        layout: &Layout,
        target: &Reference,
        mount_from: Option<&Reference>,
        blob: &Blob,
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<PushEvent, Error> {
        let fail = |source: RemoteError| Error::PushBlob {
            registry: target.registry().to_string(),
            reference: target.to_string(),
            digest: blob.digest.clone(),
            source,
        };
        let remote = target.to_client();
        let check = |source: RemoteError| Error::CheckBlob {
            registry: target.registry().to_string(),
            reference: target.to_string(),
            digest: blob.digest.clone(),
            source,
        };
        let exists = self
            .retry(|| host.chunked.blob_exists(&remote, &blob.digest))
            .await
            .map_err(|e| self.remote_error(host, target, e, check))?;
        let event = if exists {
            PushEvent::BlobSkipped {
                digest: blob.digest.clone(),
                size: blob.size,
            }
        } else if self.try_mount(host, target, mount_from, blob).await {
            PushEvent::BlobMounted {
                digest: blob.digest.clone(),
                size: blob.size,
            }
        } else {
            let path = layout
                .blob_path(&blob.digest)
                .map_err(|e| Error::ReadLayout {
                    path: layout.path().to_path_buf(),
                    source: Box::new(e),
                })?;
            self.upload(host, &remote, &path, blob)
                .await
                .map_err(|e| self.remote_error(host, target, e, fail))?;
            PushEvent::BlobUploaded {
                digest: blob.digest.clone(),
                size: blob.size,
            }
        };
        progress(event.clone());
        Ok(event)
    }

    /// Mounts `blob` from `mount_from` if the registry agrees (201); anything else (202 opens
    /// an upload instead, errors) means "upload it".
    async fn try_mount(
        &self,
        host: &HostClients,
        target: &Reference,
        mount_from: Option<&Reference>,
        blob: &Blob,
    ) -> bool {
        let Some(from) = mount_from else {
            return false;
        };
        let remote = target.to_client();
        let source = from.to_client();
        host.chunked
            .mount_blob(&remote, &source, &blob.digest)
            .await
            .is_ok()
    }

    /// Uploads a blob file: chunked (`PATCH`es), falling back to one monolithic `PUT` when the
    /// registry does not follow the chunked protocol. Each try restarts from a new session.
    async fn upload(
        &self,
        host: &HostClients,
        remote: &oci_client::Reference,
        path: &Path,
        blob: &Blob,
    ) -> Result<(), OciDistributionError> {
        let chunked = self
            .retry(|| async {
                let body = file_stream(path)?;
                host.chunked
                    .push_blob_stream(remote, body, &blob.digest, Some(blob.size))
                    .await
            })
            .await;
        match chunked {
            Ok(_) => Ok(()),
            Err(OciDistributionError::SpecViolationError(_)) => self
                .retry(|| async {
                    let body = file_stream(path)?;
                    host.monolithic
                        .push_blob_stream(remote, body, &blob.digest, Some(blob.size))
                        .await
                })
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        }
    }
}

/// The store key recording which manifest `reference` resolved to for `platform`:
/// blake3 hex of `ref:<normalised reference>|<platform>`.
pub(crate) fn resolution_key(reference: &Reference, platform: &Platform) -> String {
    blake3::hash(format!("ref:{reference}|{platform}").as_bytes())
        .to_hex()
        .to_string()
}

/// The blobs of a layout image (or index, recursively) into `manifests` (children before
/// parents) and `blobs` (configs and layers).
fn collect(
    layout: &Layout,
    desc: &Descriptor,
    depth: usize,
    manifests: &mut Vec<(Descriptor, Vec<u8>)>,
    blobs: &mut BTreeMap<String, Blob>,
) -> Result<(), oci::Error> {
    if manifests.iter().any(|(d, _)| d.digest() == desc.digest()) {
        return Ok(());
    }
    let bytes = layout.read_blob(desc)?;
    match ManifestKind::of(desc.media_type()) {
        ManifestKind::Index if depth < MAX_INDEX_DEPTH => {
            let index: ImageIndex = parse(layout, desc, "image index", &bytes)?;
            for child in index.manifests() {
                collect(layout, child, depth + 1, manifests, blobs)?;
            }
        }
        ManifestKind::Index => {
            return Err(oci::Error::IndexTooDeep {
                layout: layout.path().to_path_buf(),
                digest: desc.digest().to_string(),
            })
        }
        ManifestKind::Image => {
            let manifest: ImageManifest = parse(layout, desc, "image manifest", &bytes)?;
            for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
                layout.verify_blob(d.digest().as_ref(), d.size())?;
                blobs
                    .entry(d.digest().to_string())
                    .or_insert_with(|| Blob::of(d));
            }
        }
        ManifestKind::Other => {
            return Err(oci::Error::UnsupportedMediaType {
                layout: layout.path().to_path_buf(),
                digest: desc.digest().to_string(),
                media_type: desc.media_type().to_string(),
                expected: "an image manifest or image index",
            })
        }
    }
    manifests.push((desc.clone(), bytes));
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(
    layout: &Layout,
    desc: &Descriptor,
    what: &'static str,
    bytes: &[u8],
) -> Result<T, oci::Error> {
    serde_json::from_slice(bytes).map_err(|source| oci::Error::ParseJson {
        path: layout
            .blob_path(desc.digest().as_ref())
            .unwrap_or_else(|_| layout.path().to_path_buf()),
        what,
        source,
    })
}

/// A file as a stream of pieces for an upload.
fn file_stream(
    path: &Path,
) -> Result<
    impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static,
    OciDistributionError,
> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    Ok(stream::iter(std::iter::from_fn(move || {
        let mut buf = vec![0u8; UPLOAD_PIECE];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(OciDistributionError::IoError(e))),
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some(Ok(bytes::Bytes::from(buf)))
    })))
}

/// Writes `bytes` into the store as a blob.
fn store_bytes(store: &Store, reference: &Reference, bytes: &[u8]) -> Result<Digest, Error> {
    store
        .write_blob(bytes)
        .map(|(digest, _)| digest)
        .map_err(|source| Error::StoreBlob {
            reference: reference.to_string(),
            digest: Digest::of(bytes).to_string(),
            source: Box::new(source),
        })
}

fn blob_ref(blob: &Blob) -> BlobRef {
    BlobRef {
        digest: blob.digest.clone(),
        size: blob.size,
        media_type: blob.media_type.clone(),
    }
}

/// The media type of a manifest document: its `mediaType`, else guessed from its shape.
fn media_type_of(bytes: &[u8]) -> Result<String, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("it is not JSON: {e}"))?;
    if let Some(version) = doc.get("schemaVersion").and_then(|v| v.as_i64()) {
        if version != 2 {
            return Err(format!(
                "schema version {version} (Docker v2 schema 1 is not supported)"
            ));
        }
    }
    if let Some(media_type) = doc.get("mediaType").and_then(|m| m.as_str()) {
        return Ok(media_type.to_string());
    }
    Ok(if doc.get("manifests").is_some() {
        MediaType::ImageIndex.to_string()
    } else {
        MediaType::ImageManifest.to_string()
    })
}

/// The entry of `index` for `platform`: os and architecture equal, variant equal when the
/// platform names one (oci-client's resolvers ignore variants).
fn select<'a>(
    index: &'a ImageIndex,
    platform: &Platform,
    reference: &Reference,
    digest: &str,
) -> Result<&'a Descriptor, Error> {
    let candidates = || {
        index
            .manifests()
            .iter()
            .filter(|d| ManifestKind::of(d.media_type()) != ManifestKind::Other)
    };
    let matching = |d: &&Descriptor| {
        d.platform()
            .as_ref()
            .is_some_and(|p| platform.matches(&Platform::from_oci(p)))
    };
    // An exact variant match wins over "any variant" (linux/arm64 prefers v8 entries alike).
    let exact = candidates().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| Platform::from_oci(p) == *platform)
    });
    if let Some(found) = exact.or_else(|| candidates().find(matching)) {
        return Ok(found);
    }
    let available: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| Platform::from_oci(p).to_string())
        .collect();
    Err(Error::PlatformNotFound {
        reference: reference.to_string(),
        digest: digest.to_string(),
        platform: platform.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

/// Reads a verified blob of the store.
fn read_stored(store: &Store, digest: &str, size: u64) -> Option<Vec<u8>> {
    let parsed = Digest::parse(digest).ok()?;
    let bytes = fs::read(store.blob_path(&parsed)).ok()?;
    (bytes.len() as u64 == size && Digest::of(&bytes) == parsed).then_some(bytes)
}

/// The image whose manifest is `manifest` from the store, if its manifest, config and every
/// layer are there (manifest and config verified, layers by size) and it is for `platform`.
fn load_stored(
    reference: &Reference,
    platform: &Platform,
    store: &Store,
    manifest: &BlobRef,
    index: Option<&BlobRef>,
) -> Option<PulledImage> {
    load_stored_checked(reference, store, manifest, index)
        .ok()
        .filter(|image| platform.matches(&Platform::of_config(&image.config)))
        .map(|mut image| {
            image.platform = platform.clone();
            image
        })
}

/// [`load_stored`] without the platform check, saying what is missing.
fn load_stored_checked(
    reference: &Reference,
    store: &Store,
    manifest: &BlobRef,
    index: Option<&BlobRef>,
) -> Result<PulledImage, String> {
    let manifest_bytes = read_stored(store, &manifest.digest, manifest.size)
        .ok_or_else(|| format!("the manifest {} is not in the store", manifest.digest))?;
    let parsed: ImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("invalid image manifest: {e}"))?;
    let config = parsed.config();
    let config_bytes = read_stored(store, config.digest().as_ref(), config.size())
        .ok_or_else(|| format!("the config {} is not in the store", config.digest()))?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| format!("invalid image config: {e}"))?;
    for layer in parsed.layers() {
        let present = Digest::parse(layer.digest().as_ref())
            .ok()
            .and_then(|d| fs::metadata(store.blob_path(&d)).ok())
            .is_some_and(|m| m.len() == layer.size());
        if !present {
            return Err(format!("the layer {} is not in the store", layer.digest()));
        }
    }
    let to_desc = |b: &BlobRef| -> Result<Descriptor, String> {
        let digest = Digest::parse(&b.digest).map_err(|e| e.to_string())?;
        Ok(descriptor(
            MediaType::from(b.media_type.as_str()),
            &digest,
            b.size,
        ))
    };
    Ok(PulledImage {
        reference: reference.clone(),
        platform: Platform::of_config(&config),
        index: index.map(to_desc).transpose()?,
        descriptor: to_desc(manifest)?,
        manifest: parsed,
        manifest_bytes,
        config,
        config_bytes,
        store_root: store.root().to_path_buf(),
        from_network: false,
        downloaded_blobs: 0,
    })
}

/// The whole error chain as one line (for classification, never shown with secrets: oci-client
/// errors hold URLs and registry messages only).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `Some(minimum wait)` when `e` is worth retrying.
fn transient(e: &OciDistributionError) -> Option<Duration> {
    // A certificate the client refuses is refused again.
    if super::tls::describe(e, "", None).is_some() {
        return None;
    }
    match e {
        OciDistributionError::RequestError(r) => {
            if r.is_builder() {
                return None;
            }
            match r.status() {
                Some(s) => status_wait(s.as_u16()),
                None => Some(Duration::ZERO),
            }
        }
        OciDistributionError::ServerError { code, .. } => status_wait(*code),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == OciErrorCode::Toomanyrequests)
            .then_some(Duration::from_secs(1)),
        OciDistributionError::IoError(io) => {
            if digest_in_io(io).is_some() {
                None
            } else {
                Some(Duration::ZERO)
            }
        }
        // An `auth` round trip that failed on the network shows up as a missing token.
        OciDistributionError::AuthenticationFailure(_) => None,
        _ => None,
    }
}

fn status_wait(code: u16) -> Option<Duration> {
    match code {
        429 => Some(Duration::from_secs(1)),
        408 | 500..=599 => Some(Duration::ZERO),
        _ => None,
    }
}

/// The backoff before try `attempt + 1`: `base * 2^(attempt-1)`, capped, with +-50% jitter.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(policy.max_delay);
    let jitter = 0.5 + (random() % 1000) as f64 / 1000.0; // 0.5 ..= 1.5
    exp.mul_f64(jitter)
}

/// A cheap random number (jitter only).
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let hash = blake3::hash(format!("{now}-{n}-{}", std::process::id()).as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

fn digest_in_io(io: &std::io::Error) -> Option<String> {
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>())
        .map(|d| d.to_string())
}

/// The detail of a digest mismatch error of oci-client.
fn digest_mismatch(e: &OciDistributionError) -> Option<String> {
    match e {
        OciDistributionError::DigestError(d) => Some(d.to_string()),
        OciDistributionError::IoError(io) => digest_in_io(io),
        _ => None,
    }
}

/// The HTTP status of an authentication failure.
fn auth_failure(e: &OciDistributionError) -> Option<&'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_parses() {
        assert_eq!("never".parse(), Ok(PullPolicy::Never));
        assert_eq!("always".parse(), Ok(PullPolicy::Always));
        assert_eq!("if-not-present".parse(), Ok(PullPolicy::IfNotPresent));
        assert!("sometimes".parse::<PullPolicy>().is_err());
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for attempt in 1..10 {
            let wait = backoff(&policy, attempt);
            let nominal = (100u64 << (attempt - 1)).min(1000);
            assert!(
                wait >= Duration::from_millis(nominal / 2),
                "{attempt}: {wait:?}"
            );
            assert!(
                wait <= Duration::from_millis(nominal * 3 / 2),
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn classification() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
        };
        assert_eq!(transient(&server(500)), Some(Duration::ZERO));
        assert_eq!(transient(&server(503)), Some(Duration::ZERO));
        assert_eq!(transient(&server(429)), Some(Duration::from_secs(1)));
        assert_eq!(transient(&server(404)), None);
        assert_eq!(auth_failure(&server(401)), Some("401 Unauthorized"));
        let reset = OciDistributionError::IoError(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        ));
        assert!(transient(&reset).is_some());
        let mismatch =
            OciDistributionError::IoError(std::io::Error::other(DigestError::VerificationError {
                expected: "a".into(),
                actual: "b".into(),
            }));
        assert!(transient(&mismatch).is_none());
        assert!(digest_mismatch(&mismatch).is_some());
    }

    #[test]
    fn media_types_and_keys() {
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#).unwrap(),
            DOCKER_MANIFEST
        );
        assert!(media_type_of(br#"{"schemaVersion":1}"#).is_err());
        let r = Reference::parse("alpine:3.20").unwrap();
        let amd = resolution_key(&r, &Platform::linux_amd64());
        let arm = resolution_key(&r, &Platform::parse("linux/arm64").unwrap());
        assert_ne!(amd, arm);
        assert_eq!(amd.len(), 64);
    }
}
