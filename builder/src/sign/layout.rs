//! Signatures in an OCI layout, where `cosign save` puts them and `cosign verify --local-image`
//! finds them: the signed image's `index.json` entries annotated `kind:
//! dev.cosignproject.cosign/image` (or `/imageIndex`), an entry for the signature image (`kind:
//! .../sigs`) and one for the attestation image (`kind: .../atts`), their blobs beside the
//! image's. A layout holds the signatures of one image: signing another image of it moves
//! them, signing the same image again writes the same bytes.
//!
//! A build signs while it writes the layout ([`signed_entries`] with the layout writer's
//! blobs); [`sign_layout`] signs a finished layout in place (blobs first, then `index.json`
//! replaced atomically).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use oci_spec::image::Descriptor;
use p256::ecdsa::VerifyingKey;

use super::manifest::{self, SigLayer};
use super::{
    check_attestations, check_signatures, Attachment, Error, Signatures, Signer, StoredLayer,
    Verified,
};
use crate::oci::{
    self, cosign_kind, is_cosign_signatures, Layout, ManifestKind, COSIGN_ATTS, COSIGN_IMAGE,
    COSIGN_IMAGE_INDEX, COSIGN_KIND, COSIGN_SIGS,
};

/// `entries` (a layout's `index.json` entries) with `signatures` stored: the signed image's
/// entries marked with cosign's `kind`, earlier signature entries and marks gone, the
/// signature and attestation images appended. `write_blob` puts each new blob (payloads,
/// configs, manifests) into the layout.
pub fn signed_entries(
    entries: Vec<Descriptor>,
    signatures: &Signatures,
    is_index: bool,
    write_blob: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<Vec<Descriptor>, Error> {
    let mut out: Vec<Descriptor> = entries
        .into_iter()
        .filter(|d| !is_cosign_signatures(d))
        .map(|mut d| {
            let signed = d.digest().as_ref() == signatures.digest;
            let mut annotations = d.annotations().clone().unwrap_or_default();
            annotations.remove(COSIGN_KIND);
            if signed {
                let kind = if is_index {
                    COSIGN_IMAGE_INDEX
                } else {
                    COSIGN_IMAGE
                };
                annotations.insert(COSIGN_KIND.into(), kind.into());
            }
            d.set_annotations((!annotations.is_empty()).then_some(annotations));
            d
        })
        .collect();
    let sigs = write_sig_image(std::slice::from_ref(&signatures.signature), write_blob)?;
    out.push(with_kind(sigs, COSIGN_SIGS));
    if !signatures.attestations.is_empty() {
        let layers: Vec<SigLayer> = signatures
            .attestations
            .iter()
            .map(|a| a.layer.clone())
            .collect();
        let atts = write_sig_image(&layers, write_blob)?;
        out.push(with_kind(atts, COSIGN_ATTS));
    }
    Ok(out)
}

/// Writes the blobs of a signature image of `layers`; its manifest's descriptor.
fn write_sig_image(
    layers: &[SigLayer],
    write_blob: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<Descriptor, Error> {
    let descriptors: Vec<Descriptor> = layers.iter().map(SigLayer::descriptor).collect();
    let image = manifest::sig_image(&descriptors)?;
    for layer in layers {
        write_blob(&layer.blob)?;
    }
    write_blob(&image.config)?;
    write_blob(&image.manifest)?;
    Ok(image.descriptor())
}

fn with_kind(mut desc: Descriptor, kind: &str) -> Descriptor {
    desc.set_annotations(Some(HashMap::from([(
        COSIGN_KIND.to_string(),
        kind.to_string(),
    )])));
    desc
}

/// The referrers of manifest `subject` in `layout`, with their content, to attest.
pub fn attachments(layout: &Layout, subjects: &[String]) -> Result<Vec<Attachment>, Error> {
    let mut out = Vec::new();
    for subject in subjects {
        for (referrer, artifact) in layout.referrers(subject)? {
            let Some(first) = artifact.layers().first() else {
                continue;
            };
            out.push(Attachment {
                subject: subject.clone(),
                digest: referrer.digest.clone(),
                artifact_type: referrer.artifact_type.clone(),
                blob: layout.read_blob(first)?,
            });
        }
    }
    Ok(out)
}

/// The referrer artifacts `entries` (index entries whose manifests are in `blobs_dir`, a
/// layout being written) with their content, to attest.
pub fn attachments_in(blobs_dir: &Path, entries: &[Descriptor]) -> Result<Vec<Attachment>, Error> {
    let read = |digest: &str| -> Result<Vec<u8>, Error> {
        let hex = oci::Digest::parse(digest)
            .map_err(|e| Error::Crypto(format!("bad digest {digest}: {e}")))?;
        let path = blobs_dir.join(hex.hex());
        let bytes = std::fs::read(&path).map_err(|source| Error::Read { path, source })?;
        Ok(bytes)
    };
    let mut out = Vec::new();
    for entry in entries {
        let Some(artifact_type) = entry.artifact_type() else {
            continue;
        };
        let digest = entry.digest().to_string();
        let artifact = manifest::parse(&read(&digest)?).map_err(|reason| Error::Malformed {
            image: digest.clone(),
            what: "the referrer".into(),
            reason,
        })?;
        let (Some(subject), Some(first)) = (artifact.subject(), artifact.layers().first()) else {
            continue;
        };
        out.push(Attachment {
            subject: subject.digest().to_string(),
            digest,
            artifact_type: artifact_type.to_string(),
            blob: read(first.digest().as_ref())?,
        });
    }
    Ok(out)
}

/// The image's own digest and those of its platform manifests (for an index).
fn subjects(layout: &Layout, entry: &Descriptor) -> Result<Vec<String>, Error> {
    let mut out = vec![entry.digest().to_string()];
    if ManifestKind::of(entry.media_type()) == ManifestKind::Index {
        let index = layout.read_index(entry)?;
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

/// Signs the image `tag` names in the layout at `path` (its only image when `None`), with its
/// referrers as attestations, as repository `identity` (default: the layout directory's name,
/// which is the image's name for a build's default output). Returns what was signed.
pub fn sign_layout(
    path: &Path,
    tag: Option<&str>,
    signer: &Signer,
    identity: Option<&str>,
) -> Result<Signatures, Error> {
    let layout = Layout::open(path)?;
    let entry = layout.find(tag)?.clone();
    let subjects = subjects(&layout, &entry)?;
    let attachments = attachments(&layout, &subjects)?;
    let identity = match identity {
        Some(identity) => identity.to_string(),
        None => std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "image".into()),
    };
    let signatures = signer.sign_image(&identity, entry.digest().as_ref(), &attachments)?;
    let is_index = ManifestKind::of(entry.media_type()) == ManifestKind::Index;
    let mut write = |bytes: &[u8]| write_blob(path, bytes);
    let entries = signed_entries(
        layout.index().manifests().clone(),
        &signatures,
        is_index,
        &mut write,
    )?;
    write_index(path, entries)?;
    Ok(signatures)
}

/// Puts `bytes` into the layout's blobs (a temporary file renamed into place), unless there.
fn write_blob(layout: &Path, bytes: &[u8]) -> Result<(), Error> {
    let digest = oci::Digest::of(bytes);
    let dir = layout.join("blobs").join("sha256");
    let target = dir.join(digest.hex());
    if target.exists() {
        return Ok(());
    }
    write_atomically(&dir, &target, bytes)
}

/// Replaces the layout's `index.json` with `entries` (canonical JSON), atomically.
fn write_index(layout: &Path, entries: Vec<Descriptor>) -> Result<(), Error> {
    let bytes = oci::to_canonical_json(&oci::image_index(entries))?;
    write_atomically(layout, &layout.join("index.json"), &bytes)
}

fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: target.to_path_buf(),
        source,
    };
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.as_file().sync_all().map_err(err)?;
    file.persist(target).map_err(|e| err(e.error))?;
    Ok(())
}

/// The signed image of a layout: its `index.json` entry marked with cosign's `kind`.
fn signed_entry(layout: &Layout) -> Option<&Descriptor> {
    layout
        .index()
        .manifests()
        .iter()
        .find(|d| matches!(cosign_kind(d), Some(COSIGN_IMAGE | COSIGN_IMAGE_INDEX)))
}

/// The layers of the layout's signature (`kind` = `sigs_kind`) image, with their content;
/// `None` when the layout has none.
fn sig_layers(layout: &Layout, sigs_kind: &str) -> Result<Option<Vec<StoredLayer>>, Error> {
    let Some(entry) = layout
        .index()
        .manifests()
        .iter()
        .find(|d| cosign_kind(d) == Some(sigs_kind))
    else {
        return Ok(None);
    };
    let bytes = layout.read_blob(entry)?;
    let manifest = manifest::parse(&bytes).map_err(|reason| Error::Malformed {
        image: layout.path().display().to_string(),
        what: format!("its {sigs_kind} entry {}:", entry.digest()),
        reason,
    })?;
    let mut out = Vec::new();
    for layer in manifest.layers() {
        out.push((layer.clone(), layout.read_blob(layer)?));
    }
    Ok(Some(out))
}

/// The signature and attestation layers a layout holds for image `digest` (empty when the
/// layout's signatures are of no image or another one), to push them with the image.
pub fn stored_signatures(
    path: &Path,
    digest: &str,
) -> Result<(Vec<StoredLayer>, Vec<StoredLayer>), Error> {
    let layout = Layout::open(path)?;
    if signed_entry(&layout).is_none_or(|e| e.digest().as_ref() != digest) {
        return Ok((Vec::new(), Vec::new()));
    }
    Ok((
        sig_layers(&layout, COSIGN_SIGS)?.unwrap_or_default(),
        sig_layers(&layout, COSIGN_ATTS)?.unwrap_or_default(),
    ))
}

/// Verifies the signature of the image `tag` names in the layout at `path` (the layout's signed
/// image, or its only image, when `None`) with `key`, and every attestation stored with it.
pub fn verify_layout(
    path: &Path,
    tag: Option<&str>,
    key: &VerifyingKey,
) -> Result<Verified, Error> {
    let layout = Layout::open(path)?;
    let entry = match (tag, signed_entry(&layout)) {
        (None, Some(signed)) => signed.clone(),
        _ => layout.find(tag)?.clone(),
    };
    let digest = entry.digest().to_string();
    let image = match tag {
        Some(tag) => format!("{}:{tag} ({digest})", path.display()),
        None => format!("{} ({digest})", path.display()),
    };
    let unsigned = |reason: String| Error::Unsigned {
        image: image.clone(),
        reason,
    };
    match signed_entry(&layout) {
        None => {
            return Err(unsigned(format!(
                "index.json has no entry marked `{COSIGN_KIND}: {COSIGN_IMAGE}` and no signature \
                 image (`{COSIGN_SIGS}`); sign it with `cargo image sign --key KEY {}`",
                path.display()
            )))
        }
        Some(signed) if signed.digest() != entry.digest() => {
            return Err(unsigned(format!(
                "the layout's signatures are of another image, {}",
                signed.digest()
            )))
        }
        Some(_) => {}
    }
    let Some(sigs) = sig_layers(&layout, COSIGN_SIGS)? else {
        return Err(unsigned(format!(
            "index.json has no signature image (`{COSIGN_KIND}: {COSIGN_SIGS}`)"
        )));
    };
    let (signatures, other_signatures) = check_signatures(key, &image, &digest, &sigs)?;
    let atts = sig_layers(&layout, COSIGN_ATTS)?.unwrap_or_default();
    let (attestations, other_attestations) =
        check_attestations(key, &image, &subjects(&layout, &entry)?, &atts)?;
    Ok(Verified {
        digest,
        signatures,
        other_signatures,
        attestations,
        other_attestations,
    })
}
