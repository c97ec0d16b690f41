//! Image references (`[registry/]repository[:tag][@digest]`) and their grammar, parsed and
//! normalised as the distribution project's reference grammar does (`docker pull` semantics):
//!
//! - no registry (the first `/`-separated component has no `.`, no `:`, is not `localhost` and
//!   is all lower case) means `docker.io`; `index.docker.io` is written `docker.io`;
//! - a one-component repository on `docker.io` gets `library/` (`alpine` ->
//!   `docker.io/library/alpine`);
//! - no tag and no digest means the tag `latest`; a tag and a digest may both be given (the
//!   digest wins for fetching, the tag is kept for display).
//!
//! The grammar's rules are here once, as functions that say *which* rule a value breaks
//! ([`check_name`], [`check_tag`], [`check_component`], [`is_valid_registry`],
//! [`split_registry`]): [`Reference::parse`] uses them for `from = "alpine:3.20"` and
//! `--push-to`, and the spec uses them for `name`, `registry` and `tags`, each wording its own
//! message from the rule broken.

use std::fmt;
use std::str::FromStr;

use super::Digest;

/// The registry of references that name none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The host that serves the registry API of [`DEFAULT_REGISTRY`].
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The tag of references that name neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest repository name, registry included (as distribution counts it).
pub const MAX_NAME_LENGTH: usize = 255;
/// The longest tag.
pub const MAX_TAG_LENGTH: usize = 128;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReference {
    #[error("the reference is empty")]
    Empty,
    #[error("the repository name is empty")]
    EmptyName,
    #[error("a 64-digit hexadecimal string is an image ID, not a repository name; write `repo@sha256:<hex>` to name an image by digest")]
    HexIdentifier,
    #[error("the repository name `{0}` must be lower case")]
    Uppercase(String),
    #[error(
        "the repository name is {0} characters long (registry included); at most 255 are allowed"
    )]
    NameTooLong(usize),
    #[error("the registry `{0}` is not a host name, IPv4 address or bracketed IPv6 address with an optional `:port`")]
    InvalidRegistry(String),
    #[error("the path component `{0}` is invalid: components are lower-case letters and digits, separated inside by `.`, `_`, `__` or dashes, and are not empty")]
    InvalidComponent(String),
    #[error("the tag `{0}` is invalid: up to 128 characters of `A-Za-z0-9_.-`, not starting with `.` or `-`")]
    InvalidTag(String),
    #[error("the digest `{0}` is invalid: expected `sha256:` and 64 lower-case hex digits")]
    InvalidDigest(String),
    #[error("the digest algorithm of `{0}` is not supported; only sha256 is")]
    UnsupportedDigest(String),
}

/// A normalised image reference: registry, repository, tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `reference`; see the [module docs](self).
    pub fn parse(reference: &str) -> Result<Self, InvalidReference> {
        if reference.is_empty() {
            return Err(InvalidReference::Empty);
        }
        if reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidReference::HexIdentifier);
        }
        // Digest: after the first `@`.
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
            None => (reference, None),
        };
        // Registry: the first component, when it looks like a host.
        let (registry, remainder) = split_registry(rest);
        let registry = match registry {
            Some(registry) => {
                check_registry(registry)?;
                if registry == "index.docker.io" {
                    DEFAULT_REGISTRY
                } else {
                    registry
                }
            }
            None => DEFAULT_REGISTRY,
        };
        // Tag: after the last `:` of the remainder (the registry's port is already split off).
        let (name, tag) = match remainder.rsplit_once(':') {
            Some((name, tag)) => (name, Some(tag)),
            None => (remainder, None),
        };
        if name.is_empty() {
            return Err(InvalidReference::EmptyName);
        }
        if name.to_lowercase() != name {
            return Err(InvalidReference::Uppercase(name.to_string()));
        }
        for component in name.split('/') {
            check_component(component)
                .map_err(|_| InvalidReference::InvalidComponent(component.to_string()))?;
        }
        if let Some(tag) = tag {
            reference_tag(tag)?;
        }
        let repository = if registry == DEFAULT_REGISTRY && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_string()
        };
        let length = registry.len() + 1 + repository.len();
        if length > MAX_NAME_LENGTH {
            return Err(InvalidReference::NameTooLong(length));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// A reference built from parts (each validated as [`parse`](Self::parse) would).
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<Self, InvalidReference> {
        let mut text = format!("{registry}/{repository}");
        if let Some(tag) = tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = digest {
            text.push('@');
            text.push_str(&digest.to_string());
        }
        Self::parse(&text)
    }

    /// The registry host (and port), normalised: `docker.io`, `ghcr.io`, `127.0.0.1:5000`,
    /// `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host that serves the registry API: [`registry`](Self::registry), except
    /// `registry-1.docker.io` for `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The repository path inside the registry (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` when the reference named neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference names one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, InvalidReference> {
        reference_tag(tag)?;
        Ok(Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository (and tag) pinned to `digest`.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Whether the registry is a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`), where
    /// plain HTTP is allowed without being listed as insecure.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }
}

/// Whether `host` (with an optional port) is a loopback host.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    if bare == "localhost" {
        return true;
    }
    bare.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = InvalidReference;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits off the registry: the part before the first `/` when it contains `.` or `:`, is
/// `localhost`, or has upper-case letters (distribution's rule). The rest is the path.
pub fn split_registry(s: &str) -> (Option<&str>, &str) {
    match s.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (Some(first), rest)
        }
        _ => (None, s),
    }
}

fn parse_digest(digest: &str) -> Result<Digest, InvalidReference> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(InvalidReference::InvalidDigest(digest.to_string()));
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.starts_with(|c: char| c.is_ascii_alphabetic())
        && algorithm
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c));
    if !algorithm_ok || hex.is_empty() {
        return Err(InvalidReference::InvalidDigest(digest.to_string()));
    }
    if algorithm != "sha256" {
        return Err(InvalidReference::UnsupportedDigest(digest.to_string()));
    }
    Digest::from_hex(hex).map_err(|_| InvalidReference::InvalidDigest(digest.to_string()))
}

/// The rule of the tag grammar (up to 128 characters of `A-Za-z0-9_.-`, not starting with `.`
/// or `-`) that a tag breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagError {
    /// The tag is empty.
    Empty,
    /// The tag is longer than [`MAX_TAG_LENGTH`] bytes.
    TooLong,
    /// The tag holds this character, which is not one of `A-Za-z0-9_.-`.
    Char(char),
    /// The tag starts with `.` or `-`.
    Start,
}

/// Checks `tag` against the tag grammar; the error is the first rule broken, in the order of
/// [`TagError`]'s variants.
pub fn check_tag(tag: &str) -> Result<(), TagError> {
    if tag.is_empty() {
        return Err(TagError::Empty);
    }
    if tag.len() > MAX_TAG_LENGTH {
        return Err(TagError::TooLong);
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(TagError::Char(c));
    }
    if tag.starts_with(['.', '-']) {
        return Err(TagError::Start);
    }
    Ok(())
}

fn reference_tag(tag: &str) -> Result<(), InvalidReference> {
    check_tag(tag).map_err(|_| InvalidReference::InvalidTag(tag.to_string()))
}

/// The rule of the path component grammar (`[a-z0-9]+` runs joined by `.`, `_`, `__` or one
/// or more `-`) that a component of a repository path breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentError {
    /// The component is empty (`//`, or a `/` at the start or end).
    Empty,
    /// The component has an upper-case letter.
    Uppercase,
    /// The component holds this character, which is not one of `a-z0-9._-`.
    Char(char),
    /// The characters are allowed but not their arrangement: the component starts or ends with
    /// a separator, or has a separator other than `.`, `_`, `__` or a run of `-`.
    Separator,
}

/// Checks one `/`-separated component of a repository path; the error is the first rule
/// broken, in the order of [`ComponentError`]'s variants.
pub fn check_component(component: &str) -> Result<(), ComponentError> {
    if component.is_empty() {
        return Err(ComponentError::Empty);
    }
    if let Some(c) = component
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
    {
        return Err(if c.is_ascii_uppercase() {
            ComponentError::Uppercase
        } else {
            ComponentError::Char(c)
        });
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(ComponentError::Separator);
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(ComponentError::Separator);
        }
    }
    Ok(())
}

/// Whether `registry` is a registry: a host name (dot-separated labels of letters, digits and
/// inner dashes), an IPv4 address, or a bracketed IPv6 address, with an optional `:port`.
pub fn is_valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if let Some(host) = host {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return false;
        }
    }
    true
}

fn check_registry(registry: &str) -> Result<(), InvalidReference> {
    if is_valid_registry(registry) {
        Ok(())
    } else {
        Err(InvalidReference::InvalidRegistry(registry.to_string()))
    }
}

/// The rule of the name grammar (`[registry/]path`, as written: no tag, no digest, no
/// normalisation) that an image name breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LENGTH`] bytes.
    TooLong,
    /// The registry part (before the first `/`) is not a registry; see [`is_valid_registry`].
    Registry(String),
    /// A component of the path breaks the component grammar.
    Component(String, ComponentError),
}

/// Checks an image name as written (`hello`, `ghcr.io/acme/hello`, `localhost:5000/a/b`): the
/// registry part, if [`split_registry`] finds one, and each path component. The error is the
/// first rule broken, in the order of [`NameError`]'s variants and of the components.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(NameError::TooLong);
    }
    let (registry, path) = split_registry(name);
    if let Some(registry) = registry {
        if !is_valid_registry(registry) {
            return Err(NameError::Registry(registry.to_string()));
        }
    }
    for component in path.split('/') {
        check_component(component).map_err(|e| NameError::Component(component.to_string(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
