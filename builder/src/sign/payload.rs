//! What is signed: cosign's "simple signing" payload for an image, and in-toto statements in
//! DSSE envelopes for its attestations (SBOM, provenance).
//!
//! The simple-signing payload is the JSON `cosign sign` signs:
//! `{"critical":{"identity":{"docker-reference":REPO},"image":{"docker-manifest-digest":DIGEST},
//! "type":"cosign container image signature"},"optional":null}`. Go marshals those fields in
//! that order, which is also sorted order, so our canonical JSON gives cosign's exact bytes.
//!
//! An attestation is a DSSE envelope (`payloadType` `application/vnd.in-toto+json`, the
//! statement in base64 as `payload`, one `{keyid, sig}` signature) whose signature is over the
//! DSSE pre-authentication encoding `DSSEv1 <len> <type> <len> <payload>`, as `cosign attest`
//! writes. A provenance referrer already is an in-toto statement and is signed as it is; a
//! CycloneDX or SPDX SBOM becomes the predicate of a statement about the image, with cosign's
//! predicate types.

use crate::types::SbomFormat;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::keys::{base64_decode, base64_encode};
use super::Error;
use crate::oci::to_canonical_json;

/// The layer media type of a simple-signing payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer media type of a DSSE envelope.
pub const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The layer annotation holding the base64 signature of a simple-signing payload (empty for an
/// attestation, whose signatures are inside its envelope).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation naming an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// `critical.type` of an image signature.
const SIGNATURE_TYPE: &str = "cosign container image signature";
/// in-toto's statement type.
const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// The simple-signing payload saying `docker_reference` (a repository, no tag) is the image
/// `digest`.
pub fn simple_signing(docker_reference: &str, digest: &str) -> Result<Vec<u8>, Error> {
    let payload = json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": null,
    });
    Ok(to_canonical_json(&payload)?)
}

/// Checks a simple-signing payload is about `digest`: the reason it is not, otherwise.
pub fn check_simple_signing(payload: &[u8], digest: &str) -> Result<(), String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("the payload is not JSON ({e})"))?;
    let critical = &value["critical"];
    if critical["type"] != SIGNATURE_TYPE {
        return Err(format!(
            "the payload's critical.type is {}, not `{SIGNATURE_TYPE}`",
            critical["type"]
        ));
    }
    match critical["image"]["docker-manifest-digest"].as_str() {
        Some(found) if found == digest => Ok(()),
        Some(found) => Err(format!(
            "the payload signs {found}, not this image ({digest})"
        )),
        None => Err("the payload has no critical.image.docker-manifest-digest".into()),
    }
}

/// The ECDSA P-256 / SHA-256 signature of `message` (RFC 6979: the same bytes every time), as
/// ASN.1 DER, the form cosign stores (base64) and `openssl dgst -verify` reads.
pub fn sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let signature: Signature = key.sign(message);
    let der: DerSignature = signature.to_der();
    der.as_bytes().to_vec()
}

/// Checks the base64 DER signature `b64` of `message`: the reason it fails, otherwise.
pub fn verify(key: &VerifyingKey, message: &[u8], b64: &str) -> Result<(), String> {
    if b64.is_empty() {
        return Err("the signature is empty".into());
    }
    let der = base64_decode(b64).map_err(|e| format!("the signature: {e}"))?;
    let signature = Signature::from_der(&der)
        .map_err(|e| format!("the signature is not an ASN.1 DER ECDSA signature ({e})"))?;
    key.verify(message, &signature).map_err(|_| {
        "the signature does not match: the payload was changed, or it was signed with another \
         key"
        .to_string()
    })
}

/// DSSE's pre-authentication encoding of `payload` of type `payload_type`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope, with `payload` and `sig` in base64 as the DSSE spec has them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// The envelope of `statement` (an in-toto statement's bytes) signed by `key`, as JSON bytes.
pub fn envelope(key: &SigningKey, statement: &[u8]) -> Result<Vec<u8>, Error> {
    let sig = sign(key, &pae(IN_TOTO, statement));
    let envelope = Envelope {
        payload_type: IN_TOTO.into(),
        payload: base64_encode(statement),
        signatures: vec![EnvelopeSignature {
            keyid: String::new(),
            sig: base64_encode(&sig),
        }],
    };
    Ok(to_canonical_json(&envelope)?)
}

/// What a verified attestation says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub predicate_type: String,
    /// The `sha256:<hex>` digests of its subjects.
    pub subjects: Vec<String>,
}

/// Why a DSSE envelope did not check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// It is well formed but no signature of it verifies with the key: it was changed, or it is
    /// another key's.
    NotByKey(String),
    /// It is not a well-formed envelope of an in-toto statement.
    Malformed(String),
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::NotByKey(reason) | EnvelopeError::Malformed(reason) => {
                f.write_str(reason)
            }
        }
    }
}

/// Checks the DSSE envelope `bytes`: a signature by `key` over its PAE, an in-toto statement
/// inside. Why it fails, otherwise.
pub fn check_envelope(key: &VerifyingKey, bytes: &[u8]) -> Result<Attested, EnvelopeError> {
    use EnvelopeError::Malformed;
    let envelope: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| Malformed(format!("it is not a DSSE envelope ({e})")))?;
    if envelope.payload_type != IN_TOTO {
        return Err(Malformed(format!(
            "its payloadType is `{}`, not `{IN_TOTO}`",
            envelope.payload_type
        )));
    }
    let statement =
        base64_decode(&envelope.payload).map_err(|e| Malformed(format!("its payload: {e}")))?;
    if envelope.signatures.is_empty() {
        return Err(Malformed("the envelope has no signature".into()));
    }
    let message = pae(&envelope.payload_type, &statement);
    let mut reasons = Vec::new();
    let signed = envelope
        .signatures
        .iter()
        .any(|s| match verify(key, &message, &s.sig) {
            Ok(()) => true,
            Err(reason) => {
                reasons.push(reason);
                false
            }
        });
    if !signed {
        return Err(EnvelopeError::NotByKey(reasons.join("; ")));
    }
    let value: Value = serde_json::from_slice(&statement)
        .map_err(|e| Malformed(format!("the signed statement is not JSON ({e})")))?;
    let predicate_type = value["predicateType"]
        .as_str()
        .ok_or_else(|| Malformed("the signed statement has no predicateType".into()))?
        .to_string();
    let subjects = value["subject"]
        .as_array()
        .ok_or_else(|| Malformed("the signed statement has no subject list".into()))?
        .iter()
        .filter_map(|s| s["digest"]["sha256"].as_str())
        .map(|hex| format!("sha256:{hex}"))
        .collect();
    Ok(Attested {
        predicate_type,
        subjects,
    })
}

/// The in-toto statement to attest for a referrer of `artifact_type` with content `blob`,
/// about the manifest `subject` (`sha256:<hex>`) of repository `name`, and its predicate type;
/// `None` for an artifact type we do not attest.
pub fn statement(
    artifact_type: &str,
    blob: &[u8],
    name: &str,
    subject: &str,
) -> Result<Option<(String, Vec<u8>)>, String> {
    let parse = |what: &str| -> Result<Value, String> {
        serde_json::from_slice(blob).map_err(|e| format!("the {what} is not JSON ({e})"))
    };
    let predicate_type = match artifact_type {
        IN_TOTO => {
            // Already a statement (our provenance): signed as it is.
            let value = parse("in-toto statement")?;
            let Some(predicate_type) = value["predicateType"].as_str() else {
                return Err("the in-toto statement has no predicateType".into());
            };
            return Ok(Some((predicate_type.to_string(), blob.to_vec())));
        }
        other => match SbomFormat::of_media_type(other) {
            Some(SbomFormat::CycloneDx) => "https://cyclonedx.org/bom",
            Some(SbomFormat::Spdx) => "https://spdx.dev/Document",
            None => return Ok(None),
        },
    };
    let predicate = parse("SBOM")?;
    let hex = subject.strip_prefix("sha256:").unwrap_or(subject);
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": hex}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    let bytes = to_canonical_json(&statement).map_err(|e| e.to_string())?;
    Ok(Some((predicate_type.to_string(), bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    #[test]
    fn the_simple_signing_payload_is_cosigns_bytes() {
        let payload = simple_signing("registry.example/app", "sha256:abcd").unwrap();
        assert_eq!(
            String::from_utf8(payload.clone()).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"registry.example/app"},"image":{"docker-manifest-digest":"sha256:abcd"},"type":"cosign container image signature"},"optional":null}"#
        );
        check_simple_signing(&payload, "sha256:abcd").unwrap();
        let err = check_simple_signing(&payload, "sha256:ef").unwrap_err();
        assert!(err.contains("signs sha256:abcd, not this image"), "{err}");
    }

    #[test]
    fn signatures_are_deterministic_and_verify() {
        let (a, b) = (sign(&key(), b"payload"), sign(&key(), b"payload"));
        assert_eq!(a, b, "RFC 6979: the same signature every time");
        let public = VerifyingKey::from(&key());
        verify(&public, b"payload", &base64_encode(&a)).unwrap();
        let err = verify(&public, b"payloaD", &base64_encode(&a)).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn pae_is_the_dsse_encoding() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn an_envelope_verifies_and_says_what_it_attests() {
        let (_, statement) = statement(
            SbomFormat::CycloneDx.media_type(),
            br#"{"bomFormat":"CycloneDX"}"#,
            "app",
            "sha256:00ff",
        )
        .unwrap()
        .unwrap();
        let bytes = envelope(&key(), &statement).unwrap();
        let attested = check_envelope(&VerifyingKey::from(&key()), &bytes).unwrap();
        assert_eq!(attested.predicate_type, "https://cyclonedx.org/bom");
        assert_eq!(attested.subjects, vec!["sha256:00ff".to_string()]);
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let err = check_envelope(&VerifyingKey::from(&other), &bytes).unwrap_err();
        assert!(
            matches!(&err, EnvelopeError::NotByKey(r) if r.contains("another key")),
            "{err}"
        );
        let err = check_envelope(&VerifyingKey::from(&other), b"{}").unwrap_err();
        assert!(matches!(err, EnvelopeError::Malformed(_)), "{err}");
    }
}
