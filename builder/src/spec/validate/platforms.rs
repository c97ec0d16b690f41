//! `platforms` and the `[platform."os/arch"]` tables: which platforms a spec builds for, their
//! settings, the cargo `target`s pinned for them, and an entry's own `platforms` filter. A
//! platform is a [`Platform`] of [`crate::types`], in its canonical lower-case form.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use toml::Spanned;

use super::cargo::check_word;
use super::{Checker, Problem};
use crate::cargo::Builder;
use crate::spec::error::ErrorKind;
use crate::spec::model::{PlatformSettings, Source, Stage};
use crate::spec::raw::RawPlatform;
use crate::types::Platform;

impl Checker<'_> {
    /// The `[platform."os/arch"]` tables.
    pub(super) fn platform_settings(
        &mut self,
        raw: BTreeMap<Spanned<String>, RawPlatform>,
    ) -> BTreeMap<Platform, PlatformSettings> {
        let mut out = BTreeMap::new();
        for (name, settings) in raw {
            let key = format!("platform.\"{}\"", name.get_ref());
            let Some(platform) = self.check(&name, "platform", check_platform) else {
                continue;
            };
            if let Some(target) = &settings.target {
                self.check(target, &format!("{key}.target"), |s| {
                    check_word(s, "a target triple")
                });
            }
            if let Some(linker) = &settings.linker {
                self.check(linker, &format!("{key}.linker"), |s| {
                    check_word(s, "a linker program")
                });
            }
            if let Some(cc) = &settings.cc {
                self.check(cc, &format!("{key}.cc"), |s| {
                    check_word(s, "a C compiler program")
                });
            }
            let builder = match &settings.builder {
                Some(builder) => self
                    .check(builder, &format!("{key}.builder"), |s| {
                        Builder::parse(s).ok_or_else(|| {
                            Problem::invalid("not a builder")
                                .help(r#"use `builder = "cargo"` or `builder = "zigbuild"`"#)
                        })
                    })
                    .unwrap_or_default(),
                None => Builder::Cargo,
            };
            if builder == Builder::Zigbuild {
                for (name, value) in [("linker", &settings.linker), ("cc", &settings.cc)] {
                    if let Some(value) = value {
                        self.error(
                            ErrorKind::ConflictingKeys,
                            value.span(),
                            &format!("{key}.{name}"),
                            format!(
                                "`{name}` cannot be set with `builder = \"zigbuild\"`: zig compiles and links for it"
                            ),
                            "zig's with zigbuild",
                        )
                        .help = Some(format!("remove `{name}`, or `builder`"));
                    }
                }
            }
            out.insert(
                platform,
                PlatformSettings {
                    target: settings.target.map(Spanned::into_inner),
                    linker: settings.linker.map(Spanned::into_inner),
                    cc: settings.cc.map(Spanned::into_inner),
                    builder,
                },
            );
        }
        out
    }

    /// The `platforms` list: valid, known (or given a target), each once.
    pub(super) fn platforms(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        settings: &BTreeMap<Platform, PlatformSettings>,
    ) -> Option<Vec<Platform>> {
        let Some(raw) = raw else {
            return Some(Vec::new());
        };
        if raw.get_ref().is_empty() {
            self.error(
                ErrorKind::InvalidValue,
                raw.span(),
                "platforms",
                "invalid `platforms`: the list is empty".to_owned(),
                "no platforms",
            )
            .help = Some(
                r#"list at least one platform (`platforms = ["linux/amd64", "linux/arm64"]`), or remove `platforms` to build for linux/amd64"#
                    .to_owned(),
            );
            return None;
        }
        let mut ok = true;
        let mut out: Vec<Platform> = Vec::new();
        let mut seen: HashMap<Platform, Range<usize>> = HashMap::new();
        for (i, item) in raw.get_ref().iter().enumerate() {
            let key = format!("platforms[{i}]");
            let Some(platform) = self.check(item, &key, check_platform) else {
                ok = false;
                continue;
            };
            if let Some(first) = seen.get(&platform) {
                let diagnostic = self
                    .src
                    .diagnostic(
                        ErrorKind::Duplicate,
                        item.span(),
                        &key,
                        format!("duplicate platform {:?} in `platforms`", item.get_ref()),
                        "listed again here",
                    )
                    .with_label(self.src, first.clone(), "first listed here")
                    .with_help("remove the repeated platform");
                self.push(diagnostic);
                ok = false;
                continue;
            }
            let has_target = settings.get(&platform).is_some_and(|s| s.target.is_some());
            if crate::cargo::default_target(&platform).is_none() && !has_target {
                self.problem(
                    item.span(),
                    &key,
                    &format!("{:?}", item.get_ref()),
                    Problem::invalid("not a platform with a known rust target").help(format!(
                        "use one of {}, or give its rust target: `[platform.\"{platform}\"] target = \"...\"`",
                        known_platforms()
                    )),
                );
                ok = false;
                continue;
            }
            seen.insert(platform.clone(), item.span());
            out.push(platform);
        }
        ok.then_some(out)
    }

    /// `cargo` entries that pin their `target` cannot build several platforms.
    pub(super) fn pinned_targets(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        platforms: &[Platform],
        image: &Stage,
        stages: &[Stage],
    ) {
        if platforms.len() < 2 {
            return;
        }
        let pinned = stages
            .iter()
            .chain(std::iter::once(image))
            .flat_map(|s| &s.layers)
            .flat_map(|l| &l.entries)
            .find_map(|e| match &e.source {
                Source::Cargo(src) if src.target_pinned => Some(src.target.clone()),
                _ => None,
            });
        if let (Some(target), Some(raw)) = (pinned, raw) {
            self.error(
                ErrorKind::ConflictingKeys,
                raw.span(),
                "platforms",
                format!(
                    "`platforms` lists {} platforms, but a cargo entry pins `target = {target:?}`, which builds for one",
                    platforms.len()
                ),
                "several platforms",
            )
            .help = Some(format!(
                "remove `target` from the cargo entry (each platform builds for its own target), or set it per platform: `[platform.\"{}\"] target = {target:?}`",
                platforms[0]
            ));
        }
    }

    /// An entry's `platforms`: valid platforms, among the spec's `platforms` when it lists them.
    pub(super) fn entry_platforms(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Vec<Platform> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        if raw.get_ref().is_empty() {
            self.error(
                ErrorKind::InvalidValue,
                raw.span(),
                key,
                format!("invalid `{key}`: the list is empty"),
                "no platforms",
            )
            .help = Some("remove `platforms` to add the entry on every platform".to_owned());
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, item) in raw.get_ref().iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            let Some(platform) = self.check(item, &item_key, check_platform) else {
                continue;
            };
            if !self.platforms.is_empty() && !self.platforms.contains(&platform) {
                let listed = self
                    .platforms
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.problem(
                    item.span(),
                    &item_key,
                    &format!("{:?}", item.get_ref()),
                    Problem::invalid("not one of the image's `platforms`")
                        .help(format!("the image is built for {listed}")),
                );
                continue;
            }
            if !out.contains(&platform) {
                out.push(platform);
            }
        }
        out
    }
}

/// Checks a platform: `os/arch[/variant]`, lower-case, for linux.
pub(super) fn check_platform(s: &str) -> Result<Platform, Problem> {
    let platform = Platform::parse(s).ok().filter(Platform::is_canonical).ok_or_else(|| {
        Problem::invalid("not a platform: expected `os/arch` or `os/arch/variant`")
            .help(format!("for example `linux/amd64`, `linux/arm64` or `linux/arm/v7`; the known platforms are {}", known_platforms()))
    })?;
    if platform.os != "linux" {
        return Err(Problem::invalid("not a linux platform")
            .help("images are built for `linux/...` platforms"));
    }
    Ok(platform)
}

/// The platforms with a default rust target, for messages.
pub(super) fn known_platforms() -> String {
    crate::cargo::DEFAULT_TARGETS
        .iter()
        .map(|(p, _)| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
