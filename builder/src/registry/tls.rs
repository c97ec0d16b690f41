//! TLS to registries: which certificates are trusted.
//!
//! # Brief overview
//!
//! - [`read_ca_file`] reads a `--registry-ca` file: PEM with at least one certificate, else an
//!   error naming the file and the flag (a file of anything else would silently trust nothing).

use std::fs;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::Error;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate made as Docker's docs make one (`openssl req -x509 -newkey rsa:2048 -nodes
    /// -days 36500 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1`).
    const DOCKER_STYLE: &str = include_str!("testdata/docker-style-127.0.0.1.pem");

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
        assert_eq!(
            read_ca_file(&path).unwrap(),
            vec![CertificateDer::from_pem_slice(DOCKER_STYLE.as_bytes()).unwrap()]
        );
    }
}
