//! A Debian archive (mirror) over HTTP(S) or `file:`: its signed `InRelease`, the `Packages`
//! indexes it lists, and the `.deb` files they list, each checked before it is used.
//!
//! The chain of trust is apt's: `dists/SUITE/InRelease` is a clear-signed `Release` file whose
//! signature must verify with a key of the keyring (rPGP, a pure-Rust OpenPGP implementation);
//! the `Release` lists each index's SHA-256 and size, which the downloaded `Packages.xz` (or
//! `.gz`, or plain) must match; each index lists each `.deb`'s SHA-256, which the downloaded
//! file must match before it is written into the store (by that digest). A mirror that does
//! not serve the suite is skipped for the next; one that serves bad bytes is an error, never
//! skipped: that is what the checks are for.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use sha2::{Digest as _, Sha256};

use super::deb822::{self, Paragraph};
use super::resolve::{Candidate, Index};
use super::Error;
use crate::registry::error_chain;

/// An HTTP client for mirrors (the registry's TLS settings: system roots, ring) and the
/// runtime it runs on.
pub(super) struct Http {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Http {
    pub fn new() -> Result<Http, Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let setup = |reason: String| Error::HttpSetup { reason };
        let tls =
            crate::registry::tls::client_config(&[], None).map_err(|e| setup(e.to_string()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("cargo-image/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| setup(e.to_string()))?;
        Ok(Http { client, runtime })
    }

    /// The body at `url` (`http:`, `https:` or `file:`); `Ok(None)` when the server says it has
    /// no such file (404/410, or no such file).
    pub fn get(&self, url: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(path) = url
            .strip_prefix("file://")
            .or_else(|| url.strip_prefix("file:"))
        {
            return match std::fs::read(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.to_string()),
            };
        }
        self.runtime.block_on(async {
            let response = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            let status = response.status();
            if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(format!("the server answered {status}"));
            }
            let bytes = response.bytes().await.map_err(|e| error_chain(&e))?;
            Ok(Some(bytes.to_vec()))
        })
    }
}

/// The keys of the keyring files (binary or ASCII-armoured, several keys each).
pub(super) fn read_keyrings(paths: &[PathBuf]) -> Result<Vec<SignedPublicKey>, Error> {
    let mut keys = Vec::new();
    for path in paths {
        let bad = |reason: String| Error::Keyring {
            path: path.clone(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let (parsed, _) =
            SignedPublicKey::from_reader_many(file).map_err(|e| bad(e.to_string()))?;
        let before = keys.len();
        // A key the parser cannot read (an algorithm rPGP lacks) is left out, as gpgv leaves
        // it; the keyring must still hold one usable key.
        for key in parsed.flatten() {
            if key.verify_bindings().is_ok() {
                keys.push(key);
            }
        }
        if keys.len() == before {
            return Err(bad("it holds no OpenPGP public key".into()));
        }
    }
    Ok(keys)
}

/// The `Release` paragraph of a clear-signed `InRelease`, once a signature verifies with one
/// of `keys` (a primary key or a signing subkey).
pub(super) fn verify_in_release(
    text: &[u8],
    keys: &[SignedPublicKey],
    url: &str,
    keyrings: &[PathBuf],
) -> Result<Paragraph, Error> {
    let bad = |reason: String| Error::BadSignature {
        url: url.to_string(),
        keyrings: keyrings
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        reason,
    };
    let text = std::str::from_utf8(text).map_err(|_| bad("it is not UTF-8 text".into()))?;
    let (message, _) = CleartextSignedMessage::from_string(text)
        .map_err(|e| bad(format!("it is not a clear-signed message ({e})")))?;
    let verified = keys.iter().any(|key| {
        message.verify(&key.primary_key).is_ok()
            || key
                .public_subkeys
                .iter()
                .any(|sub| message.verify(&sub.key).is_ok())
    });
    if !verified {
        return Err(bad(
            "no signature on it verifies with a key of the keyring".into()
        ));
    }
    let release = message.signed_text().replace("\r\n", "\n");
    deb822::parse(&release)
        .ok()
        .and_then(|p| p.into_iter().next())
        .ok_or_else(|| Error::Release {
            url: url.to_string(),
            reason: "its signed text is not a Release paragraph".into(),
        })
}

/// The `(SHA-256, size)` the `Release` gives each file it lists, by path.
fn release_files(release: &Paragraph) -> Vec<(String, String, u64)> {
    release
        .get("SHA256")
        .unwrap_or("")
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (hash, size, path) = (words.next()?, words.next()?, words.next()?);
            Some((
                path.to_string(),
                hash.to_ascii_lowercase(),
                size.parse().ok()?,
            ))
        })
        .collect()
}

/// Reads the `Packages` index of `component` for `arch` into `index`, checked against the
/// `Release`: the first of `Packages.xz`, `Packages.gz` and `Packages` the `Release` lists.
pub(super) fn read_index(
    http: &Http,
    base: &str,
    release: &Paragraph,
    component: &str,
    arch: &str,
    index: &mut Index,
) -> Result<(), Error> {
    let release_url = format!("{base}/InRelease");
    let files = release_files(release);
    let stem = format!("{component}/binary-{arch}/Packages");
    let found = ["xz", "gz", ""].iter().find_map(|ext| {
        let name = if ext.is_empty() {
            stem.clone()
        } else {
            format!("{stem}.{ext}")
        };
        files.iter().find(|(p, _, _)| *p == name)
    });
    let Some((path, sha256, size)) = found else {
        return Err(Error::Release {
            url: release_url,
            reason: format!(
                "it lists no `{stem}` index (is `{component}` a component of the suite, and `{arch}` one of its architectures? it has: {})",
                release.get("Components").unwrap_or("no Components"),
            ),
        });
    };
    let url = format!("{base}/{path}");
    let bytes = http
        .get(&url)
        .map_err(|reason| Error::Download {
            url: url.clone(),
            reason,
        })?
        .ok_or_else(|| Error::Download {
            url: url.clone(),
            reason: "the mirror has no such file (404)".into(),
        })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != *sha256 || bytes.len() as u64 != *size {
        return Err(Error::IndexDigest {
            url,
            expected: format!("sha256:{sha256} ({size} bytes)"),
            actual: format!("sha256:{actual} ({} bytes)", bytes.len()),
        });
    }
    let mut text = String::new();
    let decoded = if path.ends_with(".xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut &bytes[..], &mut out)
            .map_err(|e| e.to_string())
            .map(|()| out)
    } else if path.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())
            .map(|_| out)
    } else {
        Ok(bytes)
    };
    let bad = |reason: String| Error::Index {
        url: url.clone(),
        reason,
    };
    let decoded = decoded.map_err(|e| bad(format!("cannot decompress it ({e})")))?;
    text.push_str(std::str::from_utf8(&decoded).map_err(|_| bad("it is not UTF-8".into()))?);
    let paragraphs =
        deb822::parse(&text).map_err(|line| bad(format!("line {line} is not a field")))?;
    for p in paragraphs {
        let candidate = Candidate::from_paragraph(&p).map_err(|field| {
            bad(format!(
                "package `{}` has no valid `{field}` field",
                p.get("Package").unwrap_or("?")
            ))
        })?;
        index.add(candidate);
    }
    Ok(())
}

/// Downloads `filename` from the first of `mirrors` that has it, checked against `sha256`
/// (hex), and returns its bytes.
pub(super) fn download_deb(
    http: &Http,
    mirrors: &[String],
    package: &str,
    filename: &str,
    sha256: &str,
) -> Result<Vec<u8>, Error> {
    let mut tried = Vec::new();
    for mirror in mirrors {
        let url = format!("{mirror}/{filename}");
        match http.get(&url) {
            Ok(Some(bytes)) => {
                let actual = hex::encode(Sha256::digest(&bytes));
                if actual != sha256 {
                    return Err(Error::DebDigest {
                        url,
                        package: package.to_string(),
                        expected: sha256.to_string(),
                        actual,
                    });
                }
                return Ok(bytes);
            }
            Ok(None) => tried.push(format!("{url}: not found (404)")),
            Err(reason) => tried.push(format!("{url}: {reason}")),
        }
    }
    Err(Error::Download {
        url: filename.to_string(),
        reason: format!("no mirror serves it ({})", tried.join("; ")),
    })
}

/// Whether a keyring path exists (the default keyrings are only used when present).
pub(super) fn exists(path: &Path) -> bool {
    path.is_file()
}
