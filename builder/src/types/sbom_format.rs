//! [`SbomFormat`]: the document formats of the SBOM a build attaches to each image (`sbom` in
//! the spec: `true` is CycloneDX, `"spdx"` is SPDX, a list asks for several).

use std::fmt;

/// A software bill of materials format.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SbomFormat {
    /// CycloneDX 1.6 JSON (`application/vnd.cyclonedx+json`), the default.
    CycloneDx,
    /// SPDX 2.3 JSON (`application/spdx+json`).
    Spdx,
}

impl SbomFormat {
    /// Every format, in the order a build attaches them.
    pub const ALL: [SbomFormat; 2] = [SbomFormat::CycloneDx, SbomFormat::Spdx];

    /// The spec's name of the format (`cyclonedx`, `spdx`).
    pub fn name(self) -> &'static str {
        match self {
            SbomFormat::CycloneDx => "cyclonedx",
            SbomFormat::Spdx => "spdx",
        }
    }

    /// The media type of the document, which is also the `artifactType` of the artifact
    /// manifest that attaches it to an image.
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::CycloneDx => "application/vnd.cyclonedx+json",
            SbomFormat::Spdx => "application/spdx+json",
        }
    }

    /// The format whose media type is `media_type`.
    pub fn of_media_type(media_type: &str) -> Option<SbomFormat> {
        Self::ALL.into_iter().find(|f| f.media_type() == media_type)
    }
}

impl fmt::Display for SbomFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SbomFormat::CycloneDx => "CycloneDX",
            SbomFormat::Spdx => "SPDX",
        })
    }
}

impl std::str::FromStr for SbomFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown SBOM format `{s}`: expected `cyclonedx` or `spdx`"))
    }
}

#[cfg(test)]
mod tests {
    use super::SbomFormat;

    #[test]
    fn formats_parse_by_name_and_media_type() {
        for f in SbomFormat::ALL {
            assert_eq!(f.name().parse(), Ok(f));
            assert_eq!(SbomFormat::of_media_type(f.media_type()), Some(f));
        }
        assert!("spdx-json".parse::<SbomFormat>().is_err());
    }
}
