//! TLS to registries: which server certificates are trusted, and TLS failures told in words.
//!
//! # Brief overview
//!
//! - [`read_ca_file`] reads a `--registry-ca` file: PEM with at least one certificate, else an
//!   error naming the file and the flag (a file of anything else would silently trust nothing).
//! - [`client_config`] makes the rustls configuration every registry connection uses. Its
//!   verifier, [`RegistryVerifier`], is the one reqwest would make (rustls-platform-verifier:
//!   the system's roots plus the `--registry-ca` certificates) with one addition, below.
//! - [`describe`] finds the TLS failure in the error chain of a failed request and says what is
//!   wrong and what to do ([`TlsFailure`]), instead of rustls' `Debug` names.
//!
//! # Self-signed registry certificates, as Docker's docs make them
//!
//! Docker's docs (and Harbor installs, lab registries) make a registry certificate with
//! `openssl req -x509 -newkey rsa -nodes -addext subjectAltName=IP:...`: one self-signed
//! certificate that is its own CA (`basicConstraints CA:TRUE`) and the server's certificate.
//! Clients trust it by being given that certificate as their CA (`certs.d/HOST/ca.crt`).
//! webpki refuses a CA certificate as a server's certificate (`CaUsedAsEndEntity`); docker and
//! skopeo accept it. So do we, when the server's certificate is byte for byte one of the
//! certificates the user trusts with `--registry-ca`: the user pinned that very certificate.
//! Its validity dates are still checked (webpki checks them before it reaches the CA check, so a
//! `CaUsedAsEndEntity` refusal means the dates were right; the unit tests pin that order), and
//! so is the name: the host the client asked for must be one of the certificate's
//! subjectAltNames. Every other certificate goes through the normal verifier unchanged.

use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::Error;
use crate::oci::rfc3339;

/// The certificates of a `--registry-ca` file (PEM, one or more `CERTIFICATE` sections; other
/// sections such as keys are ignored).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = fs::read(path).map_err(|source| Error::ReadCaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidCaFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::InvalidCaFile {
            path: path.to_path_buf(),
            reason: "it holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into(),
        });
    }
    Ok(certs)
}

/// The rustls configuration of registry connections: [`RegistryVerifier`] over the system's
/// roots and `extra` (the `--registry-ca` certificates), HTTP/1.1.
pub(crate) fn client_config(
    extra: &[CertificateDer<'static>],
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let setup = |e: rustls::Error| Error::TlsSetup {
        ca_file: ca_file.map(Path::to_path_buf),
        source: Box::new(e),
    };
    let inner = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra.iter().cloned(),
        provider.clone(),
    )
    .map_err(setup)?;
    let verifier = RegistryVerifier {
        inner: Arc::new(inner),
        pinned: extra.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The normal verifier, plus: a server certificate that is exactly one of the `--registry-ca`
/// certificates is accepted as its own CA (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct RegistryVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl RegistryVerifier {
    /// Whether `cert` is one of the certificates the user trusts with `--registry-ca`.
    fn is_pinned(&self, cert: &CertificateDer<'_>) -> bool {
        self.pinned.iter().any(|p| p.as_ref() == cert.as_ref())
    }
}

impl ServerCertVerifier for RegistryVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            // webpki reached the CA check, so the dates were right; the user pinned this very
            // certificate; the name is checked here.
            Err(e) if is_ca_used_as_end_entity(&e) && self.is_pinned(end_entity) => {
                let parsed = ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// Whether webpki refused a certificate for being a CA used as a server's own.
fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

/// A TLS failure with a registry, in words: what is wrong and what to do. It stands for the
/// rustls error (whose text is `Debug` names such as `UnknownIssuer`) in registry errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsFailure {
    #[error("the registry's certificate at {host} is not trusted: it is not signed by {trusted}; pass its CA certificate with --registry-ca FILE (for a self-signed certificate, the certificate itself)")]
    NotTrusted { host: String, trusted: String },

    #[error("the registry's certificate at {host} is not valid for `{expected}`: it is valid for {presented}; reach the registry by one of those names, or give it a certificate whose subjectAltName has `{expected}`")]
    WrongName {
        host: String,
        expected: String,
        presented: String,
    },

    #[error("the registry's certificate at {host} expired at {not_after} (it is now {now}); the registry needs a new certificate")]
    Expired {
        host: String,
        not_after: String,
        now: String,
    },

    #[error("the registry's certificate at {host} is valid only from {not_before} (it is now {now}); check the clocks of this machine and of the registry")]
    NotYetValid {
        host: String,
        not_before: String,
        now: String,
    },

    #[error("the TLS connection to the registry at {host} failed: {detail}")]
    Other { host: String, detail: String },
}

/// The TLS failure in the error chain of `e` (a failed request to `host`), in words; `None`
/// when the failure was not about TLS.
pub(crate) fn describe(
    e: &(dyn std::error::Error + 'static),
    host: &str,
    ca_file: Option<&Path>,
) -> Option<TlsFailure> {
    let tls = find_rustls_error(e)?;
    let host = host.to_string();
    let when = |t: &UnixTime| rfc3339(t.as_secs());
    Some(match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsFailure::NotTrusted {
                    host,
                    trusted: trusted(ca_file),
                }
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => TlsFailure::WrongName {
                host,
                expected: server_name(expected),
                presented: if presented.is_empty() {
                    "no name (it has no subjectAltName)".into()
                } else {
                    presented
                        .iter()
                        .map(|name| presented_name(name))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            },
            CertificateError::NotValidForName => TlsFailure::WrongName {
                expected: host.clone(),
                host,
                presented: "other names".into(),
            },
            CertificateError::ExpiredContext { time, not_after } => TlsFailure::Expired {
                host,
                not_after: when(not_after),
                now: when(time),
            },
            CertificateError::NotValidYetContext { time, not_before } => TlsFailure::NotYetValid {
                host,
                not_before: when(not_before),
                now: when(time),
            },
            // webpki checks this before the issuer: a self-signed certificate (its own CA)
            // the user did not give with --registry-ca.
            CertificateError::Other(_) if is_ca_used_as_end_entity(tls) => TlsFailure::NotTrusted {
                host,
                trusted: trusted(ca_file),
            },
            other => TlsFailure::Other {
                host,
                detail: format!("invalid certificate: {}", Words(other)),
            },
        },
        other => TlsFailure::Other {
            host,
            detail: other.to_string(),
        },
    })
}

/// A rustls error anywhere in the chain, also inside (nested) `io::Error`s, whose `source`
/// skips the error they wrap.
fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(e);
    while let Some(err) = current {
        let mut inner = Some(err);
        while let Some(candidate) = inner {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            inner = candidate
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|i| i as &(dyn std::error::Error + 'static));
        }
        current = err.source();
    }
    None
}

/// What the client trusts, for [`TlsFailure::NotTrusted`].
fn trusted(ca_file: Option<&Path>) -> String {
    match ca_file {
        Some(path) => format!(
            "a certificate of `{}` (--registry-ca) nor a CA this system trusts",
            path.display()
        ),
        None => "a CA this system trusts".into(),
    }
}

/// A subjectAltName as webpki presents it (`DnsName("x")`, `IpAddress(1.2.3.4)`), as the name.
fn presented_name(name: &str) -> String {
    let inner = ["DnsName(", "IpAddress(", "UniformResourceIdentifier("]
        .iter()
        .find_map(|kind| name.strip_prefix(kind)?.strip_suffix(')'));
    match inner {
        Some(inner) => inner.trim_matches('"').to_string(),
        None => name.to_string(),
    }
}

fn server_name(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// A certificate error rustls only names in `Debug` form, as that name.
struct Words<'a>(&'a CertificateError);

impl fmt::Display for Words<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            CertificateError::Revoked => f.write_str("it was revoked"),
            CertificateError::BadEncoding => f.write_str("it is not a valid X.509 certificate"),
            CertificateError::Expired => f.write_str("it has expired"),
            CertificateError::NotValidYet => f.write_str("it is not valid yet"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate made as Docker's docs make one, valid 2026-12-02T19:15:00Z to
    /// 2126-11-08T19:15:00Z: `openssl req -x509 -newkey rsa:2048 -nodes -days 36500
    /// -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1`.
    const DOCKER_STYLE: &str = include_str!("testdata/docker-style-127.0.0.1.pem");

    fn cert() -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(DOCKER_STYLE.as_bytes()).unwrap()
    }

    fn verifier(pinned: bool) -> RegistryVerifier {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let extra = if pinned { vec![cert()] } else { Vec::new() };
        RegistryVerifier {
            inner: Arc::new(
                rustls_platform_verifier::Verifier::new_with_extra_roots(extra.clone(), provider)
                    .unwrap(),
            ),
            pinned: extra,
        }
    }

    fn at(rfc: &str) -> UnixTime {
        let secs = match rfc {
            "2030" => 1_893_456_000, // 2030-01-01
            "2020" => 1_577_836_800, // 2020-01-01
            "2200" => 7_258_118_400, // 2200-01-01
            _ => unreachable!(),
        };
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs))
    }

    fn verify(v: &RegistryVerifier, name: &str, now: UnixTime) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        v.verify_server_cert(&cert(), &[], &name, &[], now)
            .map(|_| ())
    }

    #[test]
    fn a_pinned_self_signed_certificate_is_accepted_for_its_own_address() {
        verify(&verifier(true), "127.0.0.1", at("2030")).unwrap();
    }

    #[test]
    fn a_pinned_self_signed_certificate_is_refused_for_another_name_saying_its_names() {
        let e = verify(&verifier(true), "127.0.0.2", at("2030")).unwrap_err();
        let text = describe(&e, "127.0.0.2:5000", None).unwrap().to_string();
        assert!(text.contains("not valid for `127.0.0.2`"), "{text}");
        assert!(text.contains("valid for 127.0.0.1"), "{text}");
        let e = verify(&verifier(true), "localhost", at("2030")).unwrap_err();
        assert!(matches!(
            describe(&e, "localhost", None),
            Some(TlsFailure::WrongName { .. })
        ));
    }

    #[test]
    fn a_pinned_self_signed_certificate_out_of_its_dates_is_refused_saying_the_dates() {
        let e = verify(&verifier(true), "127.0.0.1", at("2200")).unwrap_err();
        let text = describe(&e, "127.0.0.1:5000", None).unwrap().to_string();
        assert!(text.contains("expired at 2126-11-08T19:15:00Z"), "{text}");
        assert!(text.contains("it is now 2200-01-01T00:00:00Z"), "{text}");
        let e = verify(&verifier(true), "127.0.0.1", at("2020")).unwrap_err();
        let text = describe(&e, "127.0.0.1:5000", None).unwrap().to_string();
        assert!(
            text.contains("valid only from 2026-12-02T19:15:00Z"),
            "{text}"
        );
    }

    #[test]
    fn a_self_signed_certificate_not_given_with_registry_ca_is_not_trusted() {
        let e = verify(&verifier(false), "127.0.0.1", at("2030")).unwrap_err();
        let text = describe(&e, "127.0.0.1:5000", None).unwrap().to_string();
        assert!(
            text.starts_with("the registry's certificate at 127.0.0.1:5000 is not trusted"),
            "{text}"
        );
        assert!(text.contains("--registry-ca FILE"), "{text}");
    }

    #[test]
    fn a_certificate_error_is_found_inside_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let nested =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        let found = describe(&nested, "r.example:443", None)
            .unwrap()
            .to_string();
        assert!(found.contains("r.example:443 is not trusted"), "{found}");
        assert!(describe(&std::io::Error::other("reset"), "r", None).is_none());
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        fs::write(&path, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        let text = read_ca_file(&path).unwrap_err().to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("--registry-ca"), "{text}");
        assert!(text.contains("no PEM certificate"), "{text}");
        let missing = dir.path().join("missing.pem");
        let text = read_ca_file(&missing).unwrap_err().to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");
        fs::write(&path, DOCKER_STYLE).unwrap();
        assert_eq!(read_ca_file(&path).unwrap(), vec![cert()]);
    }
}
