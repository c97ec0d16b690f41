//! [`Platform`]: the `os/architecture[/variant]` an image runs on, in GOOS/GOARCH terms, and
//! its conversions to and from the OCI documents that carry it.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Arch, ImageConfiguration, Os, Platform as SpecPlatform};

use super::Error;

/// The platform an image runs on: `os/architecture[/variant]`, in GOOS/GOARCH terms
/// (`linux/amd64`, `linux/arm64`, `linux/arm/v7`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`.
    pub fn linux_amd64() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// The platform this program runs on, in OCI's names (`linux/amd64` on x86_64 Linux,
    /// `linux/arm64` on aarch64), for choosing the image a local runtime can run.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Self {
            os: std::env::consts::OS.into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an image for `self` runs on `other`: the same os and architecture, and the same
    /// variant when both name one (`linux/arm64` and `linux/arm64/v8` are the same platform).
    pub fn runs_on(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(platform: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = platform.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && !p.contains(char::is_whitespace);
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(Error::InvalidPlatform {
                platform: platform.to_string(),
            }),
        }
    }

    /// The platform of an index entry or image config, as oci-spec writes it.
    pub fn from_oci(platform: &SpecPlatform) -> Self {
        Self {
            os: platform.os().to_string(),
            architecture: platform.architecture().to_string(),
            variant: platform.variant().clone(),
        }
    }

    /// The platform an image config declares.
    pub fn of_config(config: &ImageConfiguration) -> Self {
        Self {
            os: config.os().to_string(),
            architecture: config.architecture().to_string(),
            variant: config.variant().clone(),
        }
    }

    /// This platform as an oci-spec descriptor platform.
    pub fn to_oci(&self) -> SpecPlatform {
        let mut platform = SpecPlatform::default();
        platform.set_os(Os::from(self.os.as_str()));
        platform.set_architecture(Arch::from(self.architecture.as_str()));
        platform.set_variant(self.variant.clone());
        platform
    }

    /// Whether an image of platform `other` satisfies a request for `self`: os and architecture
    /// equal, and the variant equal when `self` names one.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }

    /// Whether every part is written the way OCI platforms are: lower-case ASCII letters,
    /// digits and `_` (`linux/amd64`, `linux/arm/v7`; not `Linux/AMD64` or `linux/x86-64`).
    /// [`parse`](Self::parse) accepts any non-blank parts; the spec asks for this form too.
    pub fn is_canonical(&self) -> bool {
        let part = |p: &str| {
            p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        part(&self.os) && part(&self.architecture) && self.variant.as_deref().is_none_or(part)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parse() {
        assert_eq!(
            Platform::parse("linux/amd64").unwrap(),
            Platform::linux_amd64()
        );
        let arm = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(arm.variant.as_deref(), Some("v7"));
        assert_eq!(arm.to_string(), "linux/arm/v7");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::linux_amd64().matches(&Platform {
            variant: Some("v1".into()),
            ..Platform::linux_amd64()
        }));
        assert!(!arm.matches(&Platform::parse("linux/arm/v6").unwrap()));
    }
}
