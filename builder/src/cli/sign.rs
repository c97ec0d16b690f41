//! `cargo image sign`, `cargo image verify` and `cargo image generate-key-pair`: cosign-style
//! signatures of an image in an OCI layout or a registry (see the library's `sign` module).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use cargo_oci_image::registry::{Reference, RegistryClient};
use cargo_oci_image::sign::{self, Signer, Verified};
use clap::Args;

use super::build::RegistryArgs;
use super::Failure;

/// The environment variable holding the password of cosign's encrypted key files.
const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// Sign an image the way `cosign sign --key` does, and attest its SBOM and provenance the way
/// `cosign attest` does.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image generate-key-pair                      write cosign.key and cosign.pub\n  \
    COSIGN_PASSWORD=... cargo image sign --key cosign.key target/image/hello\n  \
    cargo image sign --key cosign.key 127.0.0.1:5000/hello:latest\n  \
    cargo image verify --key cosign.pub target/image/hello\n\n\
    IMAGE is an OCI layout directory (signatures stored as `cosign save` stores them, for \
    `cosign verify --local-image`) or else a registry reference (signatures pushed as the \
    `sha256-<hex>.sig` and `.att` tags `cosign verify` reads). The key is cosign's encrypted \
    `cosign.key` (password in COSIGN_PASSWORD) or an unencrypted PKCS#8 PEM ECDSA P-256 key.")]
pub struct SignArgs {
    /// The private key file.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The OCI layout directory, or the registry reference, of the image to sign.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// In a layout: the image with this tag [default: the layout's only image].
    #[arg(long, short, value_name = "TAG")]
    tag: Option<String>,
    /// In a layout: the repository the signature names (`critical.identity.docker-reference`)
    /// [default: the layout directory's name].
    #[arg(long, value_name = "REPOSITORY")]
    identity: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Check an image's cosign signature and attestations with a public key.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image verify --key cosign.pub target/image/hello\n  \
    cargo image verify --key cosign.pub 127.0.0.1:5000/hello:latest\n\n\
    Succeeds when a signature of the image verifies with the key and signs this image's \
    digest, and every attestation stored with it verifies and is about the image; otherwise \
    says which document failed and why, and exits with status 1.")]
pub struct VerifyArgs {
    /// The public key file (`cosign.pub`: PEM `PUBLIC KEY`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The OCI layout directory, or the registry reference, of the image to check.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// In a layout: the image with this tag [default: the layout's signed image].
    #[arg(long, short, value_name = "TAG")]
    tag: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Write a new ECDSA P-256 key pair in cosign's format: PREFIX.key (encrypted with
/// COSIGN_PASSWORD, which may be empty) and PREFIX.pub.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    COSIGN_PASSWORD=... cargo image generate-key-pair\n  \
    COSIGN_PASSWORD= cargo image generate-key-pair --output-prefix ci/release")]
pub struct GenerateKeyPairArgs {
    /// Where to write the pair: PREFIX.key and PREFIX.pub.
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    output_prefix: PathBuf,
}

/// The password of cosign's encrypted key files, when COSIGN_PASSWORD is set.
fn password() -> Option<Vec<u8>> {
    std::env::var_os(PASSWORD_ENV).map(|p| p.into_encoded_bytes())
}

/// Reads a signing key file (`--key`, `--sign-key`).
pub fn signer(path: &Path) -> Result<Signer, Failure> {
    Signer::from_file(path, password().as_deref()).map_err(Failure::usage)
}

/// Where an IMAGE argument points: an existing directory is a layout, anything else a
/// registry reference.
enum Target {
    Layout(PathBuf),
    Registry(Reference),
}

fn target(image: &str, tag: Option<&str>) -> Result<Target, Failure> {
    let path = Path::new(image);
    if path.is_dir() {
        return Ok(Target::Layout(path.to_path_buf()));
    }
    if tag.is_some() {
        return Err(Failure::usage(anyhow!(
            "--tag picks an image of a layout, and {image} is not a directory: put the tag in \
             the reference instead ({image}:TAG)"
        )));
    }
    let reference = Reference::parse(image).map_err(|e| {
        Failure::usage(anyhow!(
            "{image} is neither an OCI layout directory nor a registry reference ({e})"
        ))
    })?;
    Ok(Target::Registry(reference))
}

fn client(args: &RegistryArgs) -> Result<RegistryClient, Failure> {
    RegistryClient::new(args.options()?).map_err(Failure::build)
}

pub fn run_sign(args: SignArgs) -> Result<(), Failure> {
    let signer = signer(&args.key)?;
    let mut out = std::io::stdout().lock();
    match target(&args.image, args.tag.as_deref())? {
        Target::Layout(path) => {
            let signed = sign::sign_layout(
                &path,
                args.tag.as_deref(),
                &signer,
                args.identity.as_deref(),
            )
            .map_err(Failure::build)?;
            let _ = writeln!(
                out,
                "Signed {} ({}) with {}{}",
                path.display(),
                signed.digest,
                args.key.display(),
                attested(
                    signed
                        .attestations
                        .iter()
                        .map(|a| a.layer.annotations["predicateType"].as_str())
                )
            );
        }
        Target::Registry(reference) => {
            if args.identity.is_some() {
                return Err(Failure::usage(anyhow!(
                    "--identity is for layouts: a registry signature names the image's own \
                     repository"
                )));
            }
            let client = client(&args.registry)?;
            let signed = sign::sign_remote(&client, &reference, &signer).map_err(Failure::build)?;
            let _ = writeln!(
                out,
                "Signed {}@{} with {}: pushed {}",
                signed.repository,
                signed.digest,
                args.key.display(),
                signed.tags.join(", ")
            );
        }
    }
    Ok(())
}

/// ` (attested: a, b)`, or nothing.
fn attested<'a>(types: impl Iterator<Item = &'a str>) -> String {
    let types: Vec<&str> = types.collect();
    if types.is_empty() {
        String::new()
    } else {
        format!(" (attested: {})", types.join(", "))
    }
}

pub fn run_verify(args: VerifyArgs) -> Result<(), Failure> {
    let key = sign::read_public_key(&args.key).map_err(Failure::usage)?;
    let (name, verified) = match target(&args.image, args.tag.as_deref())? {
        Target::Layout(path) => (
            path.display().to_string(),
            sign::verify_layout(&path, args.tag.as_deref(), &key).map_err(Failure::build)?,
        ),
        Target::Registry(reference) => {
            let client = client(&args.registry)?;
            (
                reference.to_string(),
                sign::verify_remote(&client, &reference, &key).map_err(Failure::build)?,
            )
        }
    };
    report(&name, &args.key, &verified);
    Ok(())
}

fn report(name: &str, key: &Path, verified: &Verified) {
    let mut out = std::io::stdout().lock();
    let others = match (verified.other_signatures, verified.other_attestations) {
        (0, 0) => String::new(),
        (n, 0) => format!(" ({n} signature(s) of other keys not checked)"),
        (n, m) => format!(" ({n} signature(s) and {m} attestation(s) of other keys not checked)"),
    };
    let _ = writeln!(
        out,
        "Verified {name} ({}): {} signature(s) with {}{others}",
        verified.digest,
        verified.signatures,
        key.display()
    );
    for a in &verified.attestations {
        let _ = writeln!(
            out,
            "  attestation {} about {}",
            a.predicate_type,
            a.subjects.join(", ")
        );
    }
}

pub fn run_generate(args: GenerateKeyPairArgs) -> Result<(), Failure> {
    let Some(password) = password() else {
        return Err(Failure::usage(anyhow!(
            "set {PASSWORD_ENV} to the password to encrypt the private key with (an empty \
             value for none): `{PASSWORD_ENV}=... cargo image generate-key-pair`"
        )));
    };
    let prefix = args.output_prefix.as_os_str().to_owned();
    let with = |ext: &str| {
        let mut p = prefix.clone();
        p.push(ext);
        PathBuf::from(p)
    };
    let (private, public) = (with(".key"), with(".pub"));
    for path in [&private, &public] {
        if path.exists() {
            return Err(Failure::usage(sign::Error::KeyExists {
                path: path.clone(),
            }));
        }
    }
    let pair = sign::generate_key_pair(&password).map_err(Failure::build)?;
    write_new(&private, pair.private_pem.as_bytes(), 0o600)?;
    write_new(&public, pair.public_pem.as_bytes(), 0o644)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "Private key written to {}\nPublic key written to {}",
        private.display(),
        public.display()
    );
    Ok(())
}

/// Creates `path` (which must not exist) with `bytes` and permissions `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |source| {
        Failure::build(sign::Error::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}
