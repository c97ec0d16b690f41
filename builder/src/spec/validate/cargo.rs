//! `cargo` entries: the binary a layer takes from a cargo build (package, bin or example,
//! profile, features, target, strip).

use super::{Checker, Problem, DEFAULT_PROFILE, DEFAULT_TARGET};
use crate::spec::model::CargoSource;
use crate::spec::raw::RawCargo;

impl Checker<'_> {
    pub(super) fn cargo(&mut self, raw: &RawCargo, key: &str) -> Option<CargoSource> {
        let mut ok = true;
        for (name, value) in [("package", &raw.package), ("bin", &raw.bin)] {
            if let Some(value) = value {
                ok &= self
                    .check(value, &format!("{key}.{name}"), |s| check_word(s, "a name"))
                    .is_some();
            }
        }
        if let Some(profile) = &raw.profile {
            ok &= self
                .check(profile, &format!("{key}.profile"), check_profile)
                .is_some();
        }
        if let Some(target) = &raw.target {
            ok &= self
                .check(target, &format!("{key}.target"), |s| {
                    check_word(s, "a target triple")
                })
                .is_some();
        }
        let mut features = Vec::new();
        for (i, feature) in raw.features.iter().flatten().enumerate() {
            ok &= self
                .check(feature, &format!("{key}.features[{i}]"), check_feature)
                .is_some();
            features.push(feature.get_ref().clone());
        }
        features.sort();
        features.dedup();
        ok.then(|| CargoSource {
            package: raw.package.as_ref().map(|p| p.get_ref().clone()),
            bin: raw.bin.as_ref().map(|b| b.get_ref().clone()),
            profile: raw
                .profile
                .as_ref()
                .map_or(DEFAULT_PROFILE, |p| p.get_ref())
                .to_owned(),
            features,
            all_features: raw.all_features.unwrap_or(false),
            no_default_features: raw.no_default_features.unwrap_or(false),
            target: raw
                .target
                .as_ref()
                .map_or(DEFAULT_TARGET, |t| t.get_ref())
                .to_owned(),
            target_pinned: raw.target.is_some(),
            linker: None,
            cc: None,
            strip: raw.strip.map(|s| s.0).unwrap_or_default(),
            builder: Default::default(),
        })
    }
}

pub(super) fn check_word(s: &str, what: &str) -> Result<(), Problem> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(Problem::invalid(format!(
            "not {what}: empty or containing spaces"
        )))
    } else {
        Ok(())
    }
}

pub(super) fn check_profile(profile: &str) -> Result<(), Problem> {
    if !profile.is_empty()
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        Ok(())
    } else {
        Err(Problem::invalid("not a profile name")
            .help(r#"cargo profiles are `release`, `dev` or one from `[profile.NAME]`"#))
    }
}

pub(super) fn check_feature(feature: &str) -> Result<(), Problem> {
    if feature.contains([',', ' ']) {
        return Err(Problem::invalid("several features in one string")
            .help(r#"list features one per string: `features = ["a", "b"]`"#));
    }
    check_word(feature, "a feature name")
}
