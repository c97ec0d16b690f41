//! Signatures in a registry, where `cosign sign` / `cosign attest` put them and `cosign verify
//! --key` finds them: the signature image tagged `sha256-<hex>.sig` and the attestation image
//! tagged `sha256-<hex>.att` in the image's repository (`<hex>` the signed manifest's digest).
//! Pushing merges with what the tag holds already (the signatures of other keys stay; ours are
//! not added twice), so the manifest is the same after the same signing.
//!
//! An image signed in the registry has its referrers attested too: those listed under the
//! distribution spec's fallback tag `sha256-<hex>` (where our push puts an image's SBOM and
//! provenance on registries without the referrers API).

use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex};
use p256::ecdsa::VerifyingKey;
use serde_json::Value;

use super::manifest::{self, SigLayer};
use super::{
    check_attestations, check_signatures, payload, Attachment, Error, Signer, StoredLayer, Verified,
};
use crate::oci::{self, ManifestKind};
use crate::registry::{FetchedManifest, Reference, RegistryClient};

/// The largest signature, attestation or referrer document read from a registry.
const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// What signing in a registry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSigned {
    /// The signed image (manifest or index).
    pub digest: String,
    /// The tags pushed (`sha256-<hex>.sig`, `sha256-<hex>.att`), in `repository`.
    pub tags: Vec<String>,
    /// `registry/repository`.
    pub repository: String,
}

/// cosign's tag for `digest` (`sha256:<hex>`) with `suffix` (`sig`, `att`; empty for the
/// referrers fallback tag).
pub fn cosign_tag(digest: &str, suffix: &str) -> String {
    let tag = digest.replacen(':', "-", 1);
    if suffix.is_empty() {
        tag
    } else {
        format!("{tag}.{suffix}")
    }
}

fn registry_err(reference: &Reference) -> impl Fn(crate::registry::Error) -> Error + '_ {
    move |source| Error::Registry {
        reference: reference.to_string(),
        source: Box::new(source),
    }
}

fn tagged(repo: &Reference, tag: &str) -> Result<Reference, Error> {
    repo.with_tag(tag).map_err(|source| Error::Registry {
        reference: format!("{}:{tag}", repo.name()),
        source: Box::new(crate::registry::Error::ParseReference {
            reference: format!("{}:{tag}", repo.name()),
            source,
        }),
    })
}

/// The manifest `reference` names, which must exist.
fn the_image(client: &RegistryClient, reference: &Reference) -> Result<FetchedManifest, Error> {
    client
        .fetch_manifest(reference)
        .map_err(registry_err(reference))?
        .ok_or_else(|| Error::Malformed {
            image: reference.to_string(),
            what: "the registry".into(),
            reason: "has no such image (tag or digest); push it first".into(),
        })
}

/// The image's digest and, for an index, those of its platform manifests.
fn subjects(reference: &Reference, image: &FetchedManifest) -> Result<Vec<String>, Error> {
    let mut out = vec![image.digest.clone()];
    if ManifestKind::of(&image.media_type.as_str().into()) == ManifestKind::Index {
        let index: ImageIndex =
            serde_json::from_slice(&image.bytes).map_err(|e| Error::Malformed {
                image: reference.to_string(),
                what: "its image index".into(),
                reason: format!("is not valid ({e})"),
            })?;
        out.extend(
            index
                .manifests()
                .iter()
                .filter(|d| ManifestKind::of(d.media_type()) == ManifestKind::Image)
                .map(|d| d.digest().to_string()),
        );
    }
    Ok(out)
}

/// The layers of the signature image tagged `tag` in `repo`, with their content (`None` when
/// there is no such tag).
fn sig_layers(
    client: &RegistryClient,
    repo: &Reference,
    tag: &str,
) -> Result<Option<Vec<StoredLayer>>, Error> {
    let reference = tagged(repo, tag)?;
    let Some(found) = client
        .fetch_manifest(&reference)
        .map_err(registry_err(&reference))?
    else {
        return Ok(None);
    };
    let parsed = manifest::parse(&found.bytes).map_err(|reason| Error::Malformed {
        image: repo.name(),
        what: format!("the signature image {tag}"),
        reason,
    })?;
    let mut out = Vec::new();
    for layer in parsed.layers() {
        let blob = client
            .fetch_small_blob(&reference, layer, MAX_DOCUMENT_BYTES)
            .map_err(registry_err(&reference))?;
        out.push((layer.clone(), blob));
    }
    Ok(Some(out))
}

/// The referrers of each of `subjects` that the fallback tag index `sha256-<hex>` lists, with
/// their content.
fn attachments(
    client: &RegistryClient,
    repo: &Reference,
    subjects: &[String],
) -> Result<Vec<Attachment>, Error> {
    let mut out = Vec::new();
    for subject in subjects {
        let fallback = tagged(repo, &cosign_tag(subject, ""))?;
        let Some(index) = client
            .fetch_manifest(&fallback)
            .map_err(registry_err(&fallback))?
        else {
            continue;
        };
        let index: ImageIndex =
            serde_json::from_slice(&index.bytes).map_err(|e| Error::Malformed {
                image: repo.name(),
                what: format!("the referrers index {}", cosign_tag(subject, "")),
                reason: format!("is not an image index ({e})"),
            })?;
        for entry in index.manifests() {
            let Some(artifact_type) = entry.artifact_type() else {
                continue;
            };
            let digest =
                oci::Digest::parse(entry.digest().as_ref()).map_err(|e| Error::Malformed {
                    image: repo.name(),
                    what: format!("the referrers index {}", cosign_tag(subject, "")),
                    reason: format!("lists a bad digest ({e})"),
                })?;
            let at = repo.with_digest(digest);
            let Some(artifact) = client.fetch_manifest(&at).map_err(registry_err(&at))? else {
                continue;
            };
            let artifact = manifest::parse(&artifact.bytes).map_err(|reason| Error::Malformed {
                image: repo.name(),
                what: format!("the referrer {}", entry.digest()),
                reason,
            })?;
            let Some(first) = artifact.layers().first() else {
                continue;
            };
            let blob = client
                .fetch_small_blob(&at, first, MAX_DOCUMENT_BYTES)
                .map_err(registry_err(&at))?;
            out.push(Attachment {
                subject: subject.clone(),
                digest: entry.digest().to_string(),
                artifact_type: artifact_type.to_string(),
                blob,
            });
        }
    }
    Ok(out)
}

/// Signs the image `reference` names in its registry (and attests its referrers): pushes the
/// `.sig` and `.att` tags.
pub fn sign_remote(
    client: &RegistryClient,
    reference: &Reference,
    signer: &Signer,
) -> Result<RemoteSigned, Error> {
    let image = the_image(client, reference)?;
    let subjects = subjects(reference, &image)?;
    let attachments = attachments(client, reference, &subjects)?;
    let signatures = signer.sign_image(&reference.name(), &image.digest, &attachments)?;
    let with_blob = |l: &SigLayer| (l.descriptor(), l.blob.clone());
    let sigs = vec![with_blob(&signatures.signature)];
    let atts: Vec<_> = signatures
        .attestations
        .iter()
        .map(|a| with_blob(&a.layer))
        .collect();
    push_signatures(client, reference, &image.digest, &sigs, &atts)
}

/// Pushes the signatures a layout holds for its image `digest` (see
/// [`super::layout::stored_signatures`]) to `repo`, where that image was pushed.
pub fn push_layout_signatures(
    client: &RegistryClient,
    repo: &Reference,
    layout: &Path,
    digest: &str,
) -> Result<RemoteSigned, Error> {
    let (sigs, atts) = super::layout::stored_signatures(layout, digest)?;
    push_signatures(client, repo, digest, &sigs, &atts)
}

/// Pushes signature layers as `sha256-<digest>.sig` and attestation layers as `.att` of the
/// manifest each is about, merged with what those tags hold.
fn push_signatures(
    client: &RegistryClient,
    repo: &Reference,
    digest: &str,
    sigs: &[StoredLayer],
    atts: &[StoredLayer],
) -> Result<RemoteSigned, Error> {
    let mut tags = Vec::new();
    if !sigs.is_empty() {
        let tag = cosign_tag(digest, "sig");
        push_merged(client, repo, &tag, sigs)?;
        tags.push(tag);
    }
    // Attestations go under the manifest they are about, in the order they come.
    let mut by_subject: Vec<(String, Vec<StoredLayer>)> = Vec::new();
    for (desc, blob) in atts {
        let subject = envelope_subject(blob).unwrap_or_else(|| digest.to_string());
        match by_subject.iter_mut().find(|(s, _)| *s == subject) {
            Some((_, layers)) => layers.push((desc.clone(), blob.clone())),
            None => by_subject.push((subject, vec![(desc.clone(), blob.clone())])),
        }
    }
    for (subject, layers) in by_subject {
        let tag = cosign_tag(&subject, "att");
        push_merged(client, repo, &tag, &layers)?;
        tags.push(tag);
    }
    Ok(RemoteSigned {
        digest: digest.to_string(),
        tags,
        repository: repo.name(),
    })
}

/// The first subject digest of the in-toto statement in a DSSE envelope.
fn envelope_subject(envelope: &[u8]) -> Option<String> {
    let envelope: payload::Envelope = serde_json::from_slice(envelope).ok()?;
    let statement = super::keys::base64_decode(&envelope.payload).ok()?;
    let statement: Value = serde_json::from_slice(&statement).ok()?;
    let hex = statement["subject"][0]["digest"]["sha256"].as_str()?;
    Some(format!("sha256:{hex}"))
}

/// Pushes the signature image `tag`: the layers it has, then those of `layers` it lacks.
fn push_merged(
    client: &RegistryClient,
    repo: &Reference,
    tag: &str,
    layers: &[StoredLayer],
) -> Result<(), Error> {
    let target = tagged(repo, tag)?;
    let existing = match client
        .fetch_manifest(&target)
        .map_err(registry_err(&target))?
    {
        Some(found) => manifest::parse(&found.bytes)
            .map_err(|reason| Error::Malformed {
                image: repo.name(),
                what: format!("the signature image {tag}"),
                reason,
            })?
            .layers()
            .clone(),
        None => Vec::new(),
    };
    let added: Vec<Descriptor> = layers.iter().map(|(d, _)| d.clone()).collect();
    let merged = manifest::merge(&existing, &added);
    let image = manifest::sig_image(&merged)?;
    let mut blobs: Vec<&[u8]> = layers.iter().map(|(_, b)| b.as_slice()).collect();
    blobs.push(&image.config);
    client
        .push_document(
            &target,
            &blobs,
            &image.manifest,
            oci_spec::image::MediaType::ImageManifest.as_ref(),
        )
        .map_err(registry_err(&target))?;
    Ok(())
}

/// Verifies the image `reference` names in its registry: its `.sig` signatures with `key`,
/// and every attestation under the `.att` tags of the image and its platform manifests.
pub fn verify_remote(
    client: &RegistryClient,
    reference: &Reference,
    key: &VerifyingKey,
) -> Result<Verified, Error> {
    let image = the_image(client, reference)?;
    let name = format!("{} ({})", reference, image.digest);
    let sig_tag = cosign_tag(&image.digest, "sig");
    let Some(sigs) = sig_layers(client, reference, &sig_tag)? else {
        return Err(Error::Unsigned {
            image: name,
            reason: format!(
                "{} has no tag {sig_tag}, where cosign and `cargo image sign` put an image's \
                 signatures",
                reference.name()
            ),
        });
    };
    let (signatures, other_signatures) = check_signatures(key, &name, &image.digest, &sigs)?;
    let subjects = subjects(reference, &image)?;
    let mut atts = Vec::new();
    for subject in &subjects {
        if let Some(layers) = sig_layers(client, reference, &cosign_tag(subject, "att"))? {
            atts.extend(layers);
        }
    }
    let (attestations, other_attestations) = check_attestations(key, &name, &subjects, &atts)?;
    Ok(Verified {
        digest: image.digest,
        signatures,
        other_signatures,
        attestations,
        other_attestations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags_replace_the_colon() {
        assert_eq!(cosign_tag("sha256:abc", "sig"), "sha256-abc.sig");
        assert_eq!(cosign_tag("sha256:abc", "att"), "sha256-abc.att");
        assert_eq!(cosign_tag("sha256:abc", ""), "sha256-abc");
    }
}
