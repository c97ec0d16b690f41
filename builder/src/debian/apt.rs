//! The build machine's apt configuration: the mirrors (`deb` sources) it lists, read from
//! `sources.list`, `sources.list.d/*.list` (one-line format) and `sources.list.d/*.sources`
//! (deb822 format), the defaults of a `debian` entry when the spec has no `[debian] mirrors`.
//!
//! Only what locating a suite needs is read: the URI, the suites, the components and
//! `Signed-By` (a keyring file). `deb-src` lines, disabled entries (`Enabled: no`) and files
//! with other extensions (`.disabled`, `.save`) are skipped, as apt skips them.

use std::path::{Path, PathBuf};

use super::deb822;

/// One `deb` source of the apt configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// The mirror's root URI, without a trailing `/`.
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// The keyring file the source names in `Signed-By` / `[signed-by=...]`, if a file.
    pub signed_by: Option<PathBuf>,
}

/// The `deb` sources configured under `etc_apt` (`/etc/apt` on a Debian machine), in the order
/// apt reads them: `sources.list`, then `sources.list.d` in name order. Unreadable files are
/// skipped (they are the machine's, not the spec's).
pub fn sources(etc_apt: &Path) -> Vec<AptSource> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string(etc_apt.join("sources.list")) {
        out.extend(one_line(&text));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(etc_apt.join("sources.list.d"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("list") => out.extend(one_line(&text)),
            Some("sources") => out.extend(deb822_sources(&text)),
            _ => {}
        }
    }
    out
}

/// The `deb` lines of a one-line-format file.
fn one_line(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(options) = rest.strip_prefix('[') {
            let Some((options, after)) = options.split_once(']') else {
                continue;
            };
            for option in options.split_whitespace() {
                if let Some(value) = option.strip_prefix("signed-by=") {
                    signed_by = keyring_file(value);
                }
            }
            rest = after;
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(AptSource {
            uri: uri.trim_end_matches('/').to_string(),
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
            signed_by,
        });
    }
    out
}

/// The `Types: deb` paragraphs of a deb822 `.sources` file.
fn deb822_sources(text: &str) -> Vec<AptSource> {
    let Ok(paragraphs) = deb822::parse(text) else {
        return Vec::new();
    };
    let words = |v: Option<&str>| -> Vec<String> {
        v.unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let mut out = Vec::new();
    for p in paragraphs {
        if !words(p.get("Types")).iter().any(|t| t == "deb")
            || p.get("Enabled")
                .is_some_and(|e| e.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let signed_by = p.get("Signed-By").and_then(keyring_file);
        for uri in words(p.get("URIs")) {
            out.push(AptSource {
                uri: uri.trim_end_matches('/').to_string(),
                suites: words(p.get("Suites")),
                components: words(p.get("Components")),
                signed_by: signed_by.clone(),
            });
        }
    }
    out
}

/// A `Signed-By` value naming a file (an embedded key block or a fingerprint is not one).
fn keyring_file(value: &str) -> Option<PathBuf> {
    let value = value.trim();
    value.starts_with('/').then(|| PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_and_deb822_sources_are_read_and_deb_src_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sources.list"),
            "# comment\ndeb-src http://src.example/debian bookworm main\n\
             deb [arch=amd64 signed-by=/k.gpg] http://a.example/debian/ bookworm main contrib\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://b.example/debian\nSuites: bookworm bookworm-updates\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nEnabled: no\nURIs: http://off.example/\nSuites: x\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/x.list.disabled"),
            "deb http://c.example/ x main\n",
        )
        .unwrap();
        let found = sources(dir.path());
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].uri, "http://a.example/debian");
        assert_eq!(found[0].signed_by, Some(PathBuf::from("/k.gpg")));
        assert_eq!(found[0].components, ["main", "contrib"]);
        assert_eq!(found[1].suites, ["bookworm", "bookworm-updates"]);
    }
}
