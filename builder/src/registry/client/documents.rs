//! Small documents by name: a manifest fetched as its exact bytes (absent when the registry
//! has no such tag), a small blob read into memory, and small blobs and a manifest pushed from
//! memory. Signatures and attestations (the `sign` module) travel this way: their manifests
//! and payloads are a few kilobytes, verified by digest like everything else.

use futures_util::StreamExt as _;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_spec::image::Descriptor;

use super::errors::Request;
use super::pull::ACCEPTED_MANIFESTS;
use super::{client_descriptor, RegistryClient};
use crate::registry::reference::Reference;
use crate::registry::Error;
use crate::store::BlobRef;
use crate::types::Digest;

/// A manifest as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// Its exact bytes, which hash to `digest`.
    pub bytes: Vec<u8>,
    pub digest: String,
    /// Its `mediaType` (an image index when it has `manifests` and no media type).
    pub media_type: String,
}

impl RegistryClient {
    /// The manifest or index `reference` names (by tag or digest), verified against its
    /// digest; `None` when the registry has no such tag or manifest.
    pub fn fetch_manifest(&self, reference: &Reference) -> Result<Option<FetchedManifest>, Error> {
        let host = self.host(reference)?;
        let client = &host.chunked;
        let target = reference.to_client();
        let auth = host.credentials.to_client();
        let fetched = self
            .runtime
            .block_on(self.retry(|| client.pull_manifest_raw(&target, &auth, ACCEPTED_MANIFESTS)));
        let (bytes, digest) = match fetched {
            Ok(found) => found,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(self.remote_error(&host, reference, e, Request::FetchManifest));
            }
        };
        let computed = Digest::of(&bytes).to_string();
        let wanted = reference.digest().map(ToString::to_string);
        if computed != digest || wanted.as_ref().is_some_and(|w| *w != computed) {
            let detail = format!("the manifest hashes to {computed}");
            return Err(Error::verify_blob(
                reference,
                wanted.as_deref().unwrap_or(&digest),
                detail,
            ));
        }
        let media_type = super::pull::media_type_of(&bytes)
            .map_err(|reason| Error::unsupported_manifest(reference, &computed, reason))?;
        Ok(Some(FetchedManifest {
            bytes: bytes.to_vec(),
            digest: computed,
            media_type,
        }))
    }

    /// The blob `desc` of `reference`'s repository, read into memory (at most `limit` bytes)
    /// and verified against its size and digest.
    pub fn fetch_small_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, Error> {
        let digest = desc.digest().to_string();
        let verify = |detail: String| Error::verify_blob(reference, &digest, detail);
        if desc.size() > limit {
            return Err(verify(format!(
                "its descriptor says {} bytes, more than the {limit} such a document may have",
                desc.size()
            )));
        }
        let host = self.host(reference)?;
        let target = reference.to_client();
        let blob = BlobRef {
            digest: digest.clone(),
            size: desc.size(),
            media_type: desc.media_type().to_string(),
        };
        let descriptor = client_descriptor(&blob);
        let fetched = self.runtime.block_on(self.retry(|| async {
            let mut body = host.chunked.pull_blob_stream(&target, &descriptor).await?;
            let mut bytes = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(OciDistributionError::IoError)?;
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 > desc.size() {
                    break;
                }
            }
            Ok(bytes)
        }));
        let bytes = fetched
            .map_err(|e| self.remote_error(&host, reference, e, Request::FetchBlob(&digest)))?;
        if bytes.len() as u64 != desc.size() {
            return Err(verify(format!(
                "the registry sent {}{} bytes, the descriptor says {}",
                bytes.len(),
                if bytes.len() as u64 > desc.size() {
                    " or more"
                } else {
                    ""
                },
                desc.size()
            )));
        }
        let actual = Digest::of(&bytes).to_string();
        if actual != digest {
            return Err(verify(format!("its content hashes to {actual}")));
        }
        Ok(bytes)
    }

    /// Pushes `blobs` (small, from memory; those the registry has are skipped) to `target`'s
    /// repository, then `manifest` (its exact bytes, of `media_type`) as `target`, a tag or a
    /// digest. Returns the manifest's digest.
    pub fn push_document(
        &self,
        target: &Reference,
        blobs: &[&[u8]],
        manifest: &[u8],
        media_type: &str,
    ) -> Result<String, Error> {
        let host = self.host(target)?;
        let remote = target.to_client();
        let digest = Digest::of(manifest).to_string();
        self.runtime.block_on(async {
            for blob in blobs {
                let blob_digest = Digest::of(blob).to_string();
                let exists = self
                    .send(&host, target, Request::CheckBlob(&blob_digest), || {
                        host.chunked.blob_exists(&remote, &blob_digest)
                    })
                    .await?;
                if exists {
                    continue;
                }
                let body = bytes::Bytes::copy_from_slice(blob);
                self.send(&host, target, Request::PushBlob(&blob_digest), || {
                    host.monolithic
                        .push_blob(&remote, body.clone(), &blob_digest)
                })
                .await?;
            }
            let desc = crate::oci::descriptor(
                media_type.into(),
                &Digest::of(manifest),
                manifest.len() as u64,
            );
            self.push_manifest(&host, target, &desc, manifest).await
        })?;
        Ok(digest)
    }
}

/// Whether a failed manifest fetch means "no such tag".
pub(super) fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}
