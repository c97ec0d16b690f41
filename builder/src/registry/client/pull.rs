//! Pulling: a reference and a platform become an image in the store.
//!
//! [`RegistryClient::pull`] first asks the store (a resolution recorded under
//! [`resolution_key`], or the blobs of a digest reference) unless the policy is `always`; else
//! it fetches the manifest, follows image indexes to the entry for the platform (variants
//! compared, which oci-client's resolvers ignore), downloads the config then the layers in
//! parallel, each streamed into the store and verified (size and digest) before it is kept,
//! and records the resolution (`stored`). It relies on the [`Store`] for blobs and keys, on
//! `stored` for the record and reading images back, on `retry` and `errors` for each request,
//! and on [`crate::oci`] for manifests, digests and platforms.
//!
//! The image comes back as the one image model, an [`oci::ResolvedImage`](ResolvedImage) whose
//! blobs are in the store, in a [`PullReport`] that adds only what the pull did.

use std::fs;
use std::io::Write;

use futures_util::{stream, StreamExt, TryStreamExt};
use oci_client::errors::OciDistributionError;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};

use super::errors::{digest_mismatch, Request};
use super::stored::{load_stored, load_stored_checked, resolution_key, resolution_record};
use super::{blob_of, client_descriptor, HostClients, RegistryClient, MAX_INDEX_DEPTH};
use crate::oci::bounded::MAX_JSON_BYTES;
use crate::oci::{
    Digest, ManifestKind, Platform, ResolvedImage, DOCKER_CONFIG, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
};
use crate::registry::{Error, PullPolicy, Reference};
use crate::store::{BlobRef, NodeResult, Store};

/// The manifest media types we ask registries for.
pub(super) const ACCEPTED_MANIFESTS: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// What [`RegistryClient::pull`] gives back: the image, read from the store (its
/// [`ResolvedImage::layout`] is the store's root, its [`ResolvedImage::reference`] the
/// reference as asked, normalised), and what the pull itself did. The layer descriptors are the
/// registry's, so blobs are reused byte for byte.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The pulled image.
    pub image: ResolvedImage,
    /// Whether the registry was contacted (false: served from the store alone).
    pub from_network: bool,
    /// How many blobs were downloaded (the others were already in the store).
    pub downloaded_blobs: usize,
}

impl RegistryClient {
    /// Pulls `reference` for `platform` into `store` according to `policy`; see the
    /// [module docs](crate::registry). Every blob's size and digest are verified while it
    /// streams in; blobs the store already has are not downloaded.
    pub fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &Store,
        policy: PullPolicy,
    ) -> Result<PullReport, Error> {
        let key = resolution_key(reference, platform);
        // One pull of a reference at a time per store: the images of a workspace that share a
        // base (and concurrent processes) wait for the first pull, then find it in the store.
        let _pulling = store
            .lock_key(&key)
            .map_err(|e| Error::record_resolution(reference, e))?;
        if policy != PullPolicy::Always {
            if let Some(image) = self.load_from_store(reference, platform, store, &key)? {
                return Ok(PullReport {
                    image,
                    from_network: false,
                    downloaded_blobs: 0,
                });
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
    ) -> Result<Option<ResolvedImage>, Error> {
        let recorded = store
            .get_key(key)
            .map_err(|e| Error::record_resolution(reference, e))?;
        if let Some(NodeResult::Blobs(record)) = recorded {
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
                let child = blob_of(child);
                Ok(load_stored(reference, platform, store, &child, Some(&blob)))
            }
            ManifestKind::Other => Ok(None),
        }
    }

    /// Fetches the manifest `reference` names, following image indexes to the entry for
    /// `platform`, then its blobs, and records the resolution under `key`.
    async fn pull_remote(
        &self,
        host: &HostClients,
        reference: &Reference,
        platform: &Platform,
        store: &Store,
        key: &str,
    ) -> Result<PullReport, Error> {
        let client = &host.chunked;
        let mut current = reference.clone();
        let mut index_blob: Option<BlobRef> = None;
        let auth = host.credentials.to_client();
        for _ in 0..=MAX_INDEX_DEPTH {
            let target = current.to_client();
            let (bytes, digest) = self
                .send(host, reference, Request::FetchManifest, || {
                    client.pull_manifest_raw(&target, &auth, ACCEPTED_MANIFESTS)
                })
                .await?;
            let computed = Digest::of(&bytes);
            if computed.to_string() != digest {
                let detail = format!("the manifest hashes to {computed}");
                return Err(Error::verify_blob(reference, &digest, detail));
            }
            let unsupported = |reason| Error::unsupported_manifest(reference, &digest, reason);
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
                    check_config(&manifest).map_err(unsupported)?;
                    // Config first (small, and it says whether the platform is right).
                    let config = blob_of(manifest.config());
                    let mut downloaded = 0;
                    if self.fetch_blob(host, reference, store, &config).await? {
                        downloaded += 1;
                    }
                    let layers: Vec<BlobRef> = manifest.layers().iter().map(blob_of).collect();
                    let fetched: Vec<bool> = stream::iter(layers.iter())
                        .map(|b| self.fetch_blob(host, reference, store, b))
                        .buffer_unordered(self.options.parallelism.max(1))
                        .try_collect()
                        .await?;
                    downloaded += fetched.iter().filter(|f| **f).count();

                    let image = load_stored_checked(reference, store, &blob, index_blob.as_ref())
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
                    // A push to another repository of this registry can mount them.
                    let _ = store.record_seen(
                        reference.registry(),
                        reference.repository(),
                        std::iter::once(&config)
                            .chain(&layers)
                            .map(|b| b.digest.as_str()),
                    );
                    let mut blobs: Vec<BlobRef> = index_blob.iter().cloned().collect();
                    blobs.push(blob.clone());
                    blobs.push(config);
                    blobs.extend(layers);
                    let record =
                        resolution_record(reference, platform, index_blob.as_ref(), &blob, blobs);
                    store
                        .put_key(key, &record)
                        .map_err(|e| Error::record_resolution(reference, e))?;
                    return Ok(PullReport {
                        image,
                        from_network: true,
                        downloaded_blobs: downloaded,
                    });
                }
                ManifestKind::Other => {
                    return Err(unsupported(format!(
                        "media type `{media_type}` is neither an image manifest nor an index"
                    )))
                }
            }
        }
        Err(Error::unsupported_manifest(
            reference,
            &reference.manifest_ref(),
            "image indexes nest too deep".into(),
        ))
    }

    /// Streams `blob` into the store, verifying size and digest; returns whether it was
    /// downloaded (false: the store had it).
    pub(super) async fn fetch_blob(
        &self,
        host: &HostClients,
        reference: &Reference,
        store: &Store,
        blob: &BlobRef,
    ) -> Result<bool, Error> {
        let verify = |detail: String| Error::verify_blob(reference, &blob.digest, detail);
        let expected =
            Digest::parse(&blob.digest).map_err(|_| verify("it is not a sha256 digest".into()))?;
        if let Ok(meta) = fs::metadata(store.blob_path(&expected)) {
            if meta.len() == blob.size {
                return Ok(false);
            }
        }
        let target = reference.to_client();
        let descriptor = client_descriptor(blob);
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
                return Err(match digest_mismatch(&e) {
                    Some(detail) => verify(detail),
                    None => self.remote_error(host, reference, e, Request::FetchBlob(&blob.digest)),
                })
            }
        };
        let (digest, _) = writer
            .finish()
            .map_err(|e| Error::store_blob(reference, &blob.digest, e))?;
        debug_assert_eq!(digest, expected);
        Ok(true)
    }
}

/// Whether the config of `manifest` is one we can use, before any of it is downloaded: an
/// image config (OCI or Docker), no bigger than a JSON document may be; else why not.
fn check_config(manifest: &ImageManifest) -> Result<(), String> {
    let config = manifest.config();
    let config_ok = match config.media_type() {
        MediaType::ImageConfig => true,
        MediaType::Other(m) => m == DOCKER_CONFIG,
        _ => false,
    };
    if !config_ok {
        return Err(format!(
            "its config has media type `{}`, not an image config",
            config.media_type()
        ));
    }
    // A config is a small JSON document: one claiming more than a manifest may hold is
    // refused before a byte of it is downloaded.
    if config.size() > MAX_JSON_BYTES {
        return Err(format!(
            "its config {} claims {} bytes, more than the {} bytes allowed for an image config",
            config.digest(),
            config.size(),
            MAX_JSON_BYTES
        ));
    }
    Ok(())
}

/// Writes `bytes` into the store as a blob.
fn store_bytes(store: &Store, reference: &Reference, bytes: &[u8]) -> Result<Digest, Error> {
    store
        .write_blob(bytes)
        .map(|(digest, _)| digest)
        .map_err(|e| Error::store_blob(reference, &Digest::of(bytes).to_string(), e))
}

/// The media type of a manifest document: its `mediaType`, else guessed from its shape.
pub(super) fn media_type_of(bytes: &[u8]) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::DOCKER_MANIFEST;

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
