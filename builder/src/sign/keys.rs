//! Key files: cosign's encrypted private keys, plain PKCS#8 / SEC1 private keys, PKIX public
//! keys, and new key pairs in cosign's format.
//!
//! cosign's private key file (`cosign generate-key-pair`) is a PEM block of type `ENCRYPTED
//! SIGSTORE PRIVATE KEY` (older releases: `ENCRYPTED COSIGN PRIVATE KEY`) whose body is the JSON
//! envelope of go-securesystemslib's `encrypted` package:
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<base64>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<base64>"},
//!  "ciphertext":"<base64>"}
//! ```
//!
//! The password (`COSIGN_PASSWORD`, possibly empty) goes through scrypt with that salt to a
//! 32-byte key that opens the NaCl secretbox (XSalsa20-Poly1305, tag first); inside is the
//! PKCS#8 DER private key. We write N = 32768 (2^15), r = 8, p = 1, the parameters every
//! cosign release reads, and read the three parameter sets go-securesystemslib accepts. The
//! public key is a PEM `PUBLIC KEY` (PKIX SubjectPublicKeyInfo), as cosign writes `cosign.pub`.
//!
//! Only ECDSA P-256 keys sign here (cosign's default, and what `--key` verification with
//! SHA-256 means); the primitives are RustCrypto's `p256`, `scrypt` and `crypto_secretbox`.

use std::path::Path;

use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::der::pem::{self, LineEnding};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use p256::SecretKey;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use super::Error;

/// cosign's PEM type for an encrypted private key.
pub const SIGSTORE_PRIVATE_KEY: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM type older cosign releases wrote; still read.
pub const COSIGN_PRIVATE_KEY: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// scrypt parameters we write: N = 2^15, r = 8, p = 1.
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// The (N, r, p) go-securesystemslib accepts when decrypting: legacy, standard and OWASP.
const ACCEPTED_SCRYPT: [(u64, u32, u32); 3] = [(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)];
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// The encrypted envelope, field for field as go-securesystemslib marshals it (`[]byte` as
/// standard base64).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// A new key pair as file contents: cosign's encrypted private key and the PEM public key.
#[derive(Debug, Clone)]
pub struct KeyPairFiles {
    /// `cosign.key`: PEM `ENCRYPTED SIGSTORE PRIVATE KEY`.
    pub private_pem: String,
    /// `cosign.pub`: PEM `PUBLIC KEY`.
    pub public_pem: String,
}

/// Makes a new ECDSA P-256 key pair, the private key encrypted with `password` (may be empty)
/// the way `cosign generate-key-pair` does.
pub fn generate_key_pair(password: &[u8]) -> Result<KeyPairFiles, Error> {
    let secret = SecretKey::random(&mut OsRng);
    let der = secret
        .to_pkcs8_der()
        .map_err(|e| Error::Crypto(format!("encoding the new private key as PKCS#8: {e}")))?;
    let private_pem = encrypt_private_key(der.as_bytes(), password)?;
    let public_pem = public_key_pem(&VerifyingKey::from(&SigningKey::from(&secret)))?;
    Ok(KeyPairFiles {
        private_pem,
        public_pem,
    })
}

/// The PEM `PUBLIC KEY` (PKIX) of `key`, as `cosign.pub` holds it.
pub fn public_key_pem(key: &VerifyingKey) -> Result<String, Error> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::Crypto(format!("encoding the public key: {e}")))
}

/// Encrypts the PKCS#8 DER `plaintext` into cosign's PEM envelope.
fn encrypt_private_key(plaintext: &[u8], password: &[u8]) -> Result<String, Error> {
    let mut salt = vec![0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let mut nonce = vec![0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let key = derive_key(password, &salt, 1 << SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)?;
    let ciphertext = XSalsa20Poly1305::new(&key.into())
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .map_err(|_| Error::Crypto("sealing the private key".into()))?;
    let envelope = Envelope {
        kdf: Kdf {
            name: "scrypt".into(),
            params: ScryptParams {
                n: 1 << SCRYPT_LOG_N,
                r: SCRYPT_R,
                p: SCRYPT_P,
            },
            salt,
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce,
        },
        ciphertext,
    };
    let json = serde_json::to_vec(&envelope)
        .map_err(|e| Error::Crypto(format!("encoding the key envelope: {e}")))?;
    pem::encode_string(SIGSTORE_PRIVATE_KEY, LineEnding::LF, &json)
        .map_err(|e| Error::Crypto(format!("encoding the private key PEM: {e}")))
}

/// The scrypt key for the secretbox.
fn derive_key(password: &[u8], salt: &[u8], n: u64, r: u32, p: u32) -> Result<[u8; 32], Error> {
    let log_n = n.trailing_zeros() as u8;
    let params = scrypt::Params::new(log_n, r, p, 32)
        .map_err(|e| Error::Crypto(format!("scrypt parameters N={n} r={r} p={p}: {e}")))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key)
        .map_err(|e| Error::Crypto(format!("scrypt: {e}")))?;
    Ok(key)
}

/// Reads a private signing key: cosign's encrypted format (opened with `password`; `None`
/// when `COSIGN_PASSWORD` is not set), or an unencrypted PKCS#8 `PRIVATE KEY` or SEC1 `EC
/// PRIVATE KEY` PEM (as `openssl genpkey` / `openssl ecparam` write). The key must be ECDSA
/// P-256.
pub fn read_private_key(path: &Path, password: Option<&[u8]>) -> Result<SigningKey, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| Error::KeyFormat {
        path: path.to_path_buf(),
        reason,
    };
    let (label, body) = pem::decode_vec(trim_pem(&bytes)).map_err(|e| {
        bad(format!(
            "it is not a PEM private key ({e}); give cosign's `cosign.key` or a PKCS#8 \
             `-----BEGIN PRIVATE KEY-----` file"
        ))
    })?;
    let secret = match label {
        SIGSTORE_PRIVATE_KEY | COSIGN_PRIVATE_KEY => {
            let Some(password) = password else {
                return Err(Error::NoPassword {
                    path: path.to_path_buf(),
                });
            };
            let der = decrypt_private_key(path, &body, password)?;
            SecretKey::from_pkcs8_der(&der).map_err(|e| {
                bad(format!(
                    "the decrypted key is not an ECDSA P-256 PKCS#8 key ({e}); only P-256 keys \
                     sign here"
                ))
            })?
        }
        "PRIVATE KEY" => SecretKey::from_pkcs8_der(&body).map_err(|e| {
            bad(format!(
                "not an ECDSA P-256 PKCS#8 key ({e}); make one with `openssl genpkey -algorithm \
                 EC -pkeyopt ec_paramgen_curve:P-256` or `cargo image generate-key-pair`"
            ))
        })?,
        "EC PRIVATE KEY" => SecretKey::from_sec1_der(&body)
            .map_err(|e| bad(format!("not an ECDSA P-256 SEC1 key ({e})")))?,
        other => {
            return Err(bad(format!(
                "its PEM type is `{other}`; give cosign's `{SIGSTORE_PRIVATE_KEY}` or an \
                 unencrypted `PRIVATE KEY` (PKCS#8)"
            )))
        }
    };
    Ok(SigningKey::from(secret))
}

/// Opens cosign's envelope `body` with `password`: the PKCS#8 DER inside.
fn decrypt_private_key(path: &Path, body: &[u8], password: &[u8]) -> Result<Vec<u8>, Error> {
    let bad = |reason: String| Error::KeyFormat {
        path: path.to_path_buf(),
        reason,
    };
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| bad(format!("its encrypted envelope is not cosign's JSON ({e})")))?;
    if envelope.kdf.name != "scrypt" || envelope.cipher.name != "nacl/secretbox" {
        return Err(bad(format!(
            "it is encrypted with {} and {}; cosign keys use scrypt and nacl/secretbox",
            envelope.kdf.name, envelope.cipher.name
        )));
    }
    let ScryptParams { n, r, p } = envelope.kdf.params;
    if !ACCEPTED_SCRYPT.contains(&(n, r, p)) {
        return Err(bad(format!(
            "unsupported scrypt parameters N={n} r={r} p={p} (cosign reads N=32768, 65536 or \
             131072 with r=8 p=1)"
        )));
    }
    if envelope.cipher.nonce.len() != NONCE_LEN {
        return Err(bad(format!(
            "its secretbox nonce is {} bytes, not {NONCE_LEN}",
            envelope.cipher.nonce.len()
        )));
    }
    let key = derive_key(password, &envelope.kdf.salt, n, r, p)?;
    XSalsa20Poly1305::new(&key.into())
        .decrypt(
            Nonce::from_slice(&envelope.cipher.nonce),
            envelope.ciphertext.as_slice(),
        )
        .map_err(|_| Error::WrongPassword {
            path: path.to_path_buf(),
        })
}

/// Reads a PEM `PUBLIC KEY` (PKIX), as `cosign.pub` and `openssl pkey -pubout` write; the key
/// must be ECDSA P-256.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(trim_pem(&bytes)).into_owned();
    VerifyingKey::from_public_key_pem(&text).map_err(|e| Error::KeyFormat {
        path: path.to_path_buf(),
        reason: format!(
            "not an ECDSA P-256 PEM `PUBLIC KEY` ({e}); give the `cosign.pub` of the key pair, \
             or `openssl pkey -in KEY -pubout`"
        ),
    })
}

/// A PEM file without anything before its first `-----BEGIN` (openssl may write explanatory
/// text there) or after its last line.
fn trim_pem(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .windows(10)
        .position(|w| w == b"-----BEGIN")
        .unwrap_or(0);
    let rest = &bytes[start..];
    let end = rest
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &rest[..end]
}

/// Standard base64, as cosign encodes signatures and DSSE payloads.
pub(super) fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64 (what cosign writes).
pub(super) fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("it is not base64 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_generated_key_opens_with_its_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let pair = generate_key_pair(b"s3cret").unwrap();
        assert!(pair
            .private_pem
            .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let key = write(dir.path(), "cosign.key", &pair.private_pem);
        let public = write(dir.path(), "cosign.pub", &pair.public_pem);

        let signing = read_private_key(&key, Some(b"s3cret")).unwrap();
        assert_eq!(
            VerifyingKey::from(&signing),
            read_public_key(&public).unwrap()
        );
        assert!(matches!(
            read_private_key(&key, Some(b"wrong")),
            Err(Error::WrongPassword { .. })
        ));
        assert!(matches!(
            read_private_key(&key, None),
            Err(Error::NoPassword { .. })
        ));
    }

    #[test]
    fn the_envelope_has_cosigns_field_names_and_parameters() {
        let pair = generate_key_pair(b"").unwrap();
        let (label, body) = pem::decode_vec(pair.private_pem.as_bytes()).unwrap();
        assert_eq!(label, SIGSTORE_PRIVATE_KEY);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["kdf"]["name"], "scrypt");
        assert_eq!(
            json["kdf"]["params"],
            serde_json::json!({"N": 32768, "r": 8, "p": 1})
        );
        assert_eq!(json["cipher"]["name"], "nacl/secretbox");
        let nonce = base64_decode(json["cipher"]["nonce"].as_str().unwrap()).unwrap();
        assert_eq!(nonce.len(), 24);
        let salt = base64_decode(json["kdf"]["salt"].as_str().unwrap()).unwrap();
        assert_eq!(salt.len(), 32);
        assert!(json["ciphertext"].is_string());
    }

    #[test]
    fn a_key_of_another_kind_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "rsa.key",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        );
        let err = read_private_key(&path, None).unwrap_err().to_string();
        assert!(err.contains("rsa.key"), "{err}");
        assert!(err.contains("RSA PRIVATE KEY"), "{err}");
        let path = write(dir.path(), "junk.pub", "not a key");
        let err = read_public_key(&path).unwrap_err().to_string();
        assert!(
            err.contains("junk.pub") && err.contains("PUBLIC KEY"),
            "{err}"
        );
    }
}
