//! Signing images the way cosign does, and checking those signatures.
//!
//! # What is signed
//!
//! An image (a manifest, or the index of a multi-platform image) is signed with an ECDSA P-256
//! key over SHA-256: the signed bytes are cosign's "simple signing" payload naming the image's
//! repository and digest ([`payload::simple_signing`]). Its attestations are the image's
//! referrers (the SBOM and provenance a build attaches, see [`crate::oci::Referrer`]), each as
//! an in-toto statement in a DSSE envelope signed with the same key ([`payload::envelope`]), as
//! `cosign attest` makes them. ECDSA here is RFC 6979's deterministic variant (`p256`'s
//! signer): the same key and image give the same signatures, and so the same signature
//! manifests, byte for byte.
//!
//! # Where signatures are stored
//!
//! Where cosign looks for them ([`manifest`] builds the documents):
//!
//! - **In a registry** ([`remote`]): an image manifest tagged `sha256-<hex>.sig` in the image's
//!   repository, one layer per signature (media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json`, the signature in base64 in the layer's
//!   `dev.cosignproject.cosign/signature` annotation), and `sha256-<hex>.att` for the
//!   attestations of manifest `<hex>` (layers `application/vnd.dsse.envelope.v1+json` with a
//!   `predicateType` annotation). A platform's attestations go under that platform manifest's
//!   digest. Signing again adds only what is new, and keeps signatures of other keys.
//! - **In an OCI layout** ([`layout`]), the layout `cosign save` writes and `cosign verify
//!   --local-image` reads: the signed image's `index.json` entries get the annotation `kind:
//!   dev.cosignproject.cosign/image` (`.../imageIndex` for an index), and two more entries hold
//!   the signature image (`kind: dev.cosignproject.cosign/sigs`) and the attestation image
//!   (`.../atts`). Such a layout holds the signatures of one image; [`crate::oci::Layout::find`]
//!   does not take those entries for images.
//!
//! # Keys
//!
//! [`keys`] reads cosign's encrypted private keys (`ENCRYPTED SIGSTORE PRIVATE KEY`: scrypt +
//! NaCl secretbox, the password from `COSIGN_PASSWORD`) and plain PKCS#8 PEM keys, reads PEM
//! public keys, and makes key pairs in cosign's format.
//!
//! # Verifying
//!
//! [`verify_layout`](layout::verify_layout) and [`verify_remote`](remote::verify_remote) check
//! that at least one signature of the image verifies with the public key and signs this image's
//! digest, and that every attestation stored with it verifies, is about the image (or one of
//! its platform manifests) and carries the predicate type its annotation names. A failure says
//! which document failed and why (no signature at all, a signature that does not match, a
//! payload about another image).

pub mod keys;
pub mod layout;
pub mod manifest;
pub mod payload;
pub mod remote;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use p256::ecdsa::{SigningKey, VerifyingKey};

pub use keys::{generate_key_pair, read_public_key, KeyPairFiles};
pub use layout::{sign_layout, verify_layout};
pub use manifest::SigLayer;
pub use payload::Attested;
pub use remote::{push_layout_signatures, sign_remote, verify_remote};

/// What can go wrong signing or verifying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read key file {path}: {source}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path}: {reason}")]
    KeyFormat { path: PathBuf, reason: String },
    #[error(
        "key file {path} is encrypted (cosign's format): set COSIGN_PASSWORD to its password \
         (an empty value for a key made without one)"
    )]
    NoPassword { path: PathBuf },
    #[error(
        "key file {path}: the password in COSIGN_PASSWORD does not open it (wrong password, or \
         the file was changed)"
    )]
    WrongPassword { path: PathBuf },
    #[error("{0}")]
    Crypto(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists: move it away, or choose another --output-prefix")]
    KeyExists { path: PathBuf },
    #[error(transparent)]
    Layout(#[from] crate::oci::Error),
    #[error("{reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: Box<crate::registry::Error>,
    },
    #[error("{image} is not signed: {reason}")]
    Unsigned { image: String, reason: String },
    #[error("{image}: {what} {reason}")]
    Malformed {
        image: String,
        what: String,
        reason: String,
    },
    #[error("{image} fails verification:\n{}", problems.join("\n"))]
    Verification {
        image: String,
        problems: Vec<String>,
    },
}

/// A signing key (ECDSA P-256), read from a key file.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    /// The key file, as named.
    path: PathBuf,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads the key file `path` (see [`keys::read_private_key`]); `password` opens cosign's
    /// encrypted format.
    pub fn from_file(path: &Path, password: Option<&[u8]>) -> Result<Self, Error> {
        Ok(Signer {
            key: keys::read_private_key(path, password)?,
            path: path.to_path_buf(),
        })
    }

    /// The public half, to verify with.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey::from(&self.key)
    }

    /// The key file this signer was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The signature layer for image `digest` of repository `identity`, and a DSSE layer per
    /// attestation (with the manifest digest it is about).
    pub fn sign_image(
        &self,
        identity: &str,
        digest: &str,
        attachments: &[Attachment],
    ) -> Result<Signatures, Error> {
        let payload = payload::simple_signing(identity, digest)?;
        let signature = payload::sign(&self.key, &payload);
        let signature = SigLayer {
            media_type: payload::SIMPLE_SIGNING.into(),
            blob: payload,
            annotations: BTreeMap::from([(
                payload::SIGNATURE_ANNOTATION.to_string(),
                keys::base64_encode(&signature),
            )]),
        };
        let mut attestations = Vec::new();
        for a in attachments {
            let statement = payload::statement(&a.artifact_type, &a.blob, identity, &a.subject)
                .map_err(|reason| Error::Malformed {
                    image: digest.to_string(),
                    what: format!(
                        "the {} referrer {} of {}:",
                        a.artifact_type, a.digest, a.subject
                    ),
                    reason,
                })?;
            let Some((predicate_type, statement)) = statement else {
                continue;
            };
            let envelope = payload::envelope(&self.key, &statement)?;
            attestations.push(Attestation {
                subject: a.subject.clone(),
                layer: SigLayer {
                    media_type: payload::DSSE.into(),
                    blob: envelope,
                    annotations: BTreeMap::from([
                        (payload::SIGNATURE_ANNOTATION.to_string(), String::new()),
                        (
                            payload::PREDICATE_TYPE_ANNOTATION.to_string(),
                            predicate_type,
                        ),
                    ]),
                },
            });
        }
        Ok(Signatures {
            digest: digest.to_string(),
            signature,
            attestations,
        })
    }
}

/// A layer of a signature image with its content.
pub type StoredLayer = (oci_spec::image::Descriptor, Vec<u8>);

/// A referrer of an image to attest: its content and the manifest it is about.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The manifest (`sha256:<hex>`) the referrer is about.
    pub subject: String,
    /// The referrer's artifact manifest digest (named in errors).
    pub digest: String,
    pub artifact_type: String,
    /// The artifact's content (its first layer).
    pub blob: Vec<u8>,
}

/// An attestation layer and the manifest it is about.
#[derive(Debug, Clone)]
pub struct Attestation {
    pub subject: String,
    pub layer: SigLayer,
}

/// What signing an image makes: its signature layer and its attestation layers.
#[derive(Debug, Clone)]
pub struct Signatures {
    /// The signed image (manifest or index).
    pub digest: String,
    pub signature: SigLayer,
    pub attestations: Vec<Attestation>,
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The image's digest.
    pub digest: String,
    /// Signatures of the image that verified with the key.
    pub signatures: usize,
    /// Signatures stored with the image that are of other keys (not checked further).
    pub other_signatures: usize,
    /// The attestations that verified with the key (at least one of each predicate type
    /// stored with the image).
    pub attestations: Vec<Attested>,
    /// Attestations stored with the image that are of other keys (not checked further).
    pub other_attestations: usize,
}

/// Checks the signature layers `layers` (descriptor and content) of image `digest`; `image`
/// names it in errors.
fn check_signatures(
    key: &VerifyingKey,
    image: &str,
    digest: &str,
    layers: &[StoredLayer],
) -> Result<(usize, usize), Error> {
    let mut good = 0;
    let mut problems = Vec::new();
    for (i, (desc, blob)) in layers.iter().enumerate() {
        let what = format!("signature {} ({})", i + 1, desc.digest());
        let Some(sig) = manifest::annotation(desc, payload::SIGNATURE_ANNOTATION) else {
            problems.push(format!(
                "  {what}: no {} annotation",
                payload::SIGNATURE_ANNOTATION
            ));
            continue;
        };
        match payload::verify(key, blob, sig)
            .and_then(|()| payload::check_simple_signing(blob, digest))
        {
            Ok(()) => good += 1,
            Err(reason) => problems.push(format!("  {what}: {reason}")),
        }
    }
    if good == 0 {
        if layers.is_empty() {
            return Err(Error::Unsigned {
                image: image.to_string(),
                reason: "its signature image has no signature layer".into(),
            });
        }
        return Err(Error::Verification {
            image: image.to_string(),
            problems,
        });
    }
    Ok((good, layers.len() - good))
}

/// Checks attestation layers: of each predicate type (as annotated) stored with the image, at
/// least one must verify with `key`; every one that does must be about one of `subjects` and
/// carry the predicate type its annotation says; a malformed one is an error. The others are
/// taken for other keys' (as with signatures, and as `cosign verify-attestation` takes them).
/// Returns the verified ones and how many were of other keys.
fn check_attestations(
    key: &VerifyingKey,
    image: &str,
    subjects: &[String],
    layers: &[StoredLayer],
) -> Result<(Vec<Attested>, usize), Error> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    // Per annotated predicate type: whether one verified, and why the others did not.
    let mut by_type: BTreeMap<&str, (bool, Vec<String>)> = BTreeMap::new();
    for (desc, blob) in layers {
        let annotated = manifest::annotation(desc, payload::PREDICATE_TYPE_ANNOTATION);
        let what = format!(
            "attestation {} ({})",
            annotated.unwrap_or("without predicateType"),
            desc.digest()
        );
        let kind = by_type.entry(annotated.unwrap_or("")).or_default();
        match payload::check_envelope(key, blob) {
            Ok(attested) => {
                kind.0 = true;
                if annotated.is_some_and(|a| a != attested.predicate_type) {
                    problems.push(format!(
                        "  {what}: the signed statement's predicateType is {}",
                        attested.predicate_type
                    ));
                } else if !attested.subjects.iter().any(|s| subjects.contains(s)) {
                    problems.push(format!(
                        "  {what}: the statement is about {}, not this image ({})",
                        attested.subjects.join(", "),
                        subjects.join(", ")
                    ));
                } else {
                    found.push(attested);
                }
            }
            Err(payload::EnvelopeError::NotByKey(reason)) => {
                kind.1.push(format!("  {what}: {reason}"))
            }
            Err(payload::EnvelopeError::Malformed(reason)) => {
                problems.push(format!("  {what}: {reason}"))
            }
        }
    }
    let mut others = 0;
    for (verified, unverified) in by_type.into_values() {
        if verified {
            others += unverified.len();
        } else {
            problems.extend(unverified);
        }
    }
    if problems.is_empty() {
        Ok((found, others))
    } else {
        Err(Error::Verification {
            image: image.to_string(),
            problems,
        })
    }
}
