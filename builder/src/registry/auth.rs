//! Credentials for a registry host, found the way docker and podman find them.
//!
//! [`CredentialLookup::resolve`] tries, in order, and stops at the first that has credentials
//! for the registry:
//!
//! 1. explicit credentials (`--creds user:password`, [`Credentials::parse_user_password`]);
//! 2. the environment pair `CARGO_IMAGE_REGISTRY_USER` / `CARGO_IMAGE_REGISTRY_PASSWORD` (for CI;
//!    it applies to every registry of the run);
//! 3. docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
//!    `credHelpers` for the host, `auths` (base64 `auth`, or `username` + `password`, or an
//!    `identitytoken`), then the `credsStore` default. Helpers run as
//!    `docker-credential-<name> get` with the server on stdin (the `docker_credential` crate);
//! 4. podman's `auth.json` (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`,
//!    then `~/.config/containers/auth.json`), same format.
//!
//! Nothing found means anonymous access. Passwords and tokens are [`Secret`]s: their `Debug`
//! and `Display` print `***`, and no error of this module contains one.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use docker_credential::{CredentialRetrievalError, DockerCredential};

use super::reference::DEFAULT_REGISTRY;

/// The environment variable of the user name for every registry (CI).
pub const ENV_USER: &str = "CARGO_IMAGE_REGISTRY_USER";
/// The environment variable of the password for every registry (CI).
pub const ENV_PASSWORD: &str = "CARGO_IMAGE_REGISTRY_PASSWORD";

/// A password or token. Printing it (`{}` or `{:?}`) shows `***`; only
/// [`expose`](Self::expose) gives the text, for the request that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret text. Never log, print or put it in an error.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to authenticate to a registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No credentials (public images; the token flow still runs anonymously).
    #[default]
    Anonymous,
    /// A user name and password (HTTP basic, or exchanged for a bearer token).
    Basic { username: String, password: Secret },
    /// A registry token used as a bearer token (docker's `identitytoken`, or a helper's
    /// `<token>` user).
    Token(Secret),
}

impl Credentials {
    /// `user:password`, as `--creds` takes it (the password may contain `:`).
    pub fn parse_user_password(creds: &str) -> Result<Self, AuthError> {
        match creds.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Self::Basic {
                username: user.to_string(),
                password: Secret::new(password),
            }),
            _ => Err(AuthError::InvalidCreds),
        }
    }

    /// The user name, if there is one (safe to print).
    pub fn username(&self) -> Option<&str> {
        match self {
            Self::Basic { username, .. } => Some(username),
            _ => None,
        }
    }

    pub(crate) fn to_client(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            Self::Anonymous => RegistryAuth::Anonymous,
            Self::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.expose().to_string())
            }
            Self::Token(token) => RegistryAuth::Bearer(token.expose().to_string()),
        }
    }
}

/// Where credentials came from (safe to print: it names files and helpers, not secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// None were found: anonymous.
    None,
    /// Given explicitly (`--creds`).
    Explicit,
    /// The `CARGO_IMAGE_REGISTRY_USER` / `_PASSWORD` environment variables.
    Environment,
    /// A docker or podman auth file.
    File(PathBuf),
    /// A credential helper named in an auth file.
    Helper { name: String, file: PathBuf },
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("no credentials (anonymous)"),
            Self::Explicit => f.write_str("explicit credentials"),
            Self::Environment => write!(f, "${ENV_USER} / ${ENV_PASSWORD}"),
            Self::File(path) => write!(f, "`{}`", path.display()),
            Self::Helper { name, file } => write!(
                f,
                "credential helper `docker-credential-{name}` (from `{}`)",
                file.display()
            ),
        }
    }
}

/// Why credentials could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid credentials: expected `user:password`")]
    InvalidCreds,

    #[error("`{}` is not a valid docker/podman auth file (JSON with `auths`, `credHelpers`, `credsStore`)", path.display())]
    ReadAuthFile { path: PathBuf },

    #[error("the auth entry for `{registry}` in `{}` cannot be decoded (expected base64 of `user:password`)", path.display())]
    DecodeAuth { registry: String, path: PathBuf },

    #[error("failed to run the credential helper `docker-credential-{helper}` (named in `{}`); is it installed and on PATH?", path.display())]
    RunHelper { helper: String, path: PathBuf },

    #[error(
        "the credential helper `docker-credential-{helper}` failed for `{registry}`: {stderr}"
    )]
    HelperFailed {
        helper: String,
        registry: String,
        stderr: String,
    },

    #[error("the credential helper `docker-credential-{helper}` gave a malformed answer for `{registry}`")]
    HelperAnswer { helper: String, registry: String },
}

/// Where to look for credentials; [`from_env`](Self::from_env) gives docker's and podman's
/// defaults, tests and tools may set the paths themselves.
#[derive(Debug, Clone, Default)]
pub struct CredentialLookup {
    /// Explicit credentials, used for every registry (`--creds`).
    pub explicit: Option<Credentials>,
    /// Credentials from the environment pair, used for every registry.
    pub environment: Option<Credentials>,
    /// Docker's `config.json` (need not exist).
    pub docker_config: Option<PathBuf>,
    /// Podman's `auth.json` candidates, first existing one wins (need not exist).
    pub podman_auth: Vec<PathBuf>,
}

impl CredentialLookup {
    /// Docker's and podman's default locations, and the environment pair.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        let docker_config = var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".docker")))
            .map(|dir| dir.join("config.json"));
        let podman_auth = match var("REGISTRY_AUTH_FILE") {
            Some(file) => vec![PathBuf::from(file)],
            None => {
                let mut files = Vec::new();
                if let Some(runtime) = var("XDG_RUNTIME_DIR") {
                    files.push(PathBuf::from(runtime).join("containers/auth.json"));
                }
                if let Some(config) = var("XDG_CONFIG_HOME") {
                    files.push(PathBuf::from(config).join("containers/auth.json"));
                } else if let Some(home) = &home {
                    files.push(home.join(".config/containers/auth.json"));
                }
                files
            }
        };
        let environment = match (
            std::env::var(ENV_USER).ok().filter(|u| !u.is_empty()),
            std::env::var(ENV_PASSWORD).ok(),
        ) {
            (Some(username), Some(password)) => Some(Credentials::Basic {
                username,
                password: Secret::new(password),
            }),
            _ => None,
        };
        Self {
            explicit: None,
            environment,
            docker_config,
            podman_auth,
        }
    }

    /// Only the docker config in `dir` (`dir/config.json`), nothing else.
    pub fn docker_config_dir(dir: &Path) -> Self {
        Self {
            docker_config: Some(dir.join("config.json")),
            ..Self::default()
        }
    }

    /// With explicit credentials, which win over everything else.
    pub fn with_explicit(mut self, credentials: Credentials) -> Self {
        self.explicit = Some(credentials);
        self
    }

    /// The credentials for `registry` (a normalised registry host, e.g. `docker.io` or
    /// `127.0.0.1:5000`) and where they came from; see the [registry module docs](crate::registry).
    pub fn resolve(&self, registry: &str) -> Result<(Credentials, CredentialSource), AuthError> {
        if let Some(creds) = &self.explicit {
            return Ok((creds.clone(), CredentialSource::Explicit));
        }
        if let Some(creds) = &self.environment {
            return Ok((creds.clone(), CredentialSource::Environment));
        }
        let files = self.docker_config.iter().chain(self.podman_auth_file());
        for file in files {
            if let Some(found) = from_auth_file(file, registry)? {
                return Ok(found);
            }
        }
        Ok((Credentials::Anonymous, CredentialSource::None))
    }

    fn podman_auth_file(&self) -> Option<&PathBuf> {
        self.podman_auth.iter().find(|p| p.is_file())
    }
}

/// The server names an auth file may use for `registry`, most specific first.
fn server_keys(registry: &str) -> Vec<String> {
    if registry == DEFAULT_REGISTRY {
        vec![
            "https://index.docker.io/v1/".into(),
            "docker.io".into(),
            "index.docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![registry.to_string()]
    }
}

/// Credentials for `registry` from one docker/podman auth file, if it exists and has some.
fn from_auth_file(
    path: &Path,
    registry: &str,
) -> Result<Option<(Credentials, CredentialSource)>, AuthError> {
    let Ok(bytes) = fs::read(path) else {
        return Ok(None); // missing (or unreadable) files are skipped, as docker does
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::ReadAuthFile {
            path: path.to_path_buf(),
        })?;
    for server in server_keys(registry) {
        let helper = helper_for(&doc, &server);
        match docker_credential::get_credential_from_reader(bytes.as_slice(), &server) {
            Ok(credential) => {
                let creds = match credential {
                    DockerCredential::UsernamePassword(username, password) => Credentials::Basic {
                        username,
                        password: Secret::new(password),
                    },
                    DockerCredential::IdentityToken(token) => {
                        Credentials::Token(Secret::new(token))
                    }
                };
                let source = match helper {
                    Some(name) => CredentialSource::Helper {
                        name,
                        file: path.to_path_buf(),
                    },
                    None => CredentialSource::File(path.to_path_buf()),
                };
                return Ok(Some((creds, source)));
            }
            Err(CredentialRetrievalError::NoCredentialConfigured) => continue,
            Err(CredentialRetrievalError::ConfigReadError)
            | Err(CredentialRetrievalError::ConfigNotFound) => {
                return Err(AuthError::ReadAuthFile {
                    path: path.to_path_buf(),
                })
            }
            Err(CredentialRetrievalError::CredentialDecodingError)
            | Err(CredentialRetrievalError::CredentialMismatchError) => {
                return Err(AuthError::DecodeAuth {
                    registry: registry.to_string(),
                    path: path.to_path_buf(),
                })
            }
            Err(CredentialRetrievalError::HelperCommunicationError) => {
                return Err(AuthError::RunHelper {
                    helper: helper.unwrap_or_default(),
                    path: path.to_path_buf(),
                })
            }
            Err(CredentialRetrievalError::MalformedHelperResponse) => {
                return Err(AuthError::HelperAnswer {
                    helper: helper.unwrap_or_default(),
                    registry: registry.to_string(),
                })
            }
            Err(CredentialRetrievalError::HelperFailure { stdout, stderr, .. }) => {
                // Helpers say "credentials not found" (on stdout) when they have none: that
                // is anonymous access, not an error. Their stdout is never shown otherwise.
                if stdout.to_lowercase().contains("credentials not found")
                    || stderr.to_lowercase().contains("credentials not found")
                {
                    continue;
                }
                return Err(AuthError::HelperFailed {
                    helper: helper.unwrap_or_default(),
                    registry: registry.to_string(),
                    stderr: stderr.trim().chars().take(200).collect(),
                });
            }
        }
    }
    Ok(None)
}

/// The helper an auth file names for `server` (its `credHelpers` entry, else `credsStore`),
/// for messages.
fn helper_for(doc: &serde_json::Value, server: &str) -> Option<String> {
    let has_auth = doc
        .get("auths")
        .and_then(|a| a.as_object())
        .is_some_and(|auths| {
            auths.keys().any(|k| {
                let k = k
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                k.split('/').next() == Some(server) || k == server
            })
        });
    if let Some(name) = doc
        .get("credHelpers")
        .and_then(|h| h.get(server))
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
    {
        return Some(name.to_string());
    }
    if has_auth {
        return None;
    }
    doc.get("credsStore")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn secrets_never_print() {
        let creds = Credentials::parse_user_password("alice:s3cr:et").unwrap();
        assert_eq!(creds.username(), Some("alice"));
        let shown = format!("{creds:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("***"));
        match creds {
            Credentials::Basic { password, .. } => {
                assert_eq!(password.expose(), "s3cr:et");
                assert_eq!(password.to_string(), "***");
            }
            _ => unreachable!(),
        }
        assert!(Credentials::parse_user_password("nopassword").is_err());
        assert!(Credentials::parse_user_password(":pw").is_err());
    }

    fn lookup_with(config: &str) -> (tempfile::TempDir, CredentialLookup) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config.json"), config).unwrap();
        let lookup = CredentialLookup::docker_config_dir(dir.path());
        (dir, lookup)
    }

    #[test]
    fn docker_config_auths() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:hunter2");
        let config = format!(
            r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{auth}"}},
                "https://index.docker.io/v1/": {{"username": "hub", "password": "pw"}}}}}}"#
        );
        let (_dir, lookup) = lookup_with(&config);
        let (creds, source) = lookup.resolve("127.0.0.1:5000").unwrap();
        assert_eq!(creds.username(), Some("bob"));
        assert!(matches!(source, CredentialSource::File(_)));
        let (creds, _) = lookup.resolve("docker.io").unwrap();
        assert_eq!(creds.username(), Some("hub"));
        let (creds, source) = lookup.resolve("ghcr.io").unwrap();
        assert_eq!(creds, Credentials::Anonymous);
        assert_eq!(source, CredentialSource::None);
    }

    #[test]
    fn explicit_wins_and_missing_files_are_anonymous() {
        let lookup = CredentialLookup::docker_config_dir(Path::new("/nonexistent/docker"));
        assert_eq!(lookup.resolve("x.io").unwrap().0, Credentials::Anonymous);
        let lookup = lookup.with_explicit(Credentials::parse_user_password("a:b").unwrap());
        let (creds, source) = lookup.resolve("x.io").unwrap();
        assert_eq!(creds.username(), Some("a"));
        assert_eq!(source, CredentialSource::Explicit);
    }

    #[test]
    fn bad_files_and_helpers_are_clear_errors() {
        let (_dir, lookup) = lookup_with("{not json");
        let err = lookup.resolve("x.io").unwrap_err();
        assert!(matches!(err, AuthError::ReadAuthFile { .. }), "{err}");

        let (_dir, lookup) = lookup_with(r#"{"auths": {"x.io": {"auth": "!!!"}}}"#);
        let err = lookup.resolve("x.io").unwrap_err();
        assert!(matches!(err, AuthError::DecodeAuth { .. }), "{err}");

        let (_dir, lookup) =
            lookup_with(r#"{"credHelpers": {"x.io": "cargo-image-test-no-such-helper"}}"#);
        let err = lookup.resolve("x.io").unwrap_err();
        assert!(err
            .to_string()
            .contains("docker-credential-cargo-image-test-no-such-helper"));
    }

    /// Runs [`helper_child`] in a child process whose PATH has a fake credential helper, so
    /// that no test thread of this process sees PATH change.
    #[test]
    fn credential_helper_protocol() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // A helper that answers for one server only, as real helpers do.
        let helper = dir.path().join("docker-credential-cargoimagetest");
        fs::write(
            &helper,
            "#!/bin/sh\nread server\nif [ \"$server\" = \"h.example:5000\" ]; then\n  echo '{\"ServerURL\":\"h.example:5000\",\"Username\":\"helped\",\"Secret\":\"tok\"}'\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
        )
        .unwrap();
        fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            dir.path().join("config.json"),
            r#"{"credsStore": "cargoimagetest"}"#,
        )
        .unwrap();
        let path = std::env::var("PATH").unwrap_or_default();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "registry::auth::tests::helper_child",
                "--ignored",
                "--nocapture",
            ])
            .env("PATH", format!("{}:{path}", dir.path().display()))
            .env("CARGO_IMAGE_TEST_DOCKER_CONFIG", dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    #[test]
    #[ignore = "run by credential_helper_protocol in a child process"]
    fn helper_child() {
        let dir = PathBuf::from(std::env::var_os("CARGO_IMAGE_TEST_DOCKER_CONFIG").unwrap());
        let lookup = CredentialLookup::docker_config_dir(&dir);
        let (creds, source) = lookup.resolve("h.example:5000").unwrap();
        assert_eq!(creds.username(), Some("helped"));
        assert!(
            matches!(source, CredentialSource::Helper { ref name, .. } if name == "cargoimagetest")
        );
        let (creds, _) = lookup.resolve("other.example").unwrap();
        assert_eq!(creds, Credentials::Anonymous);
    }
}
