//! The `debian` entries of a build: resolved and their `.deb` files put into the store while
//! planning, once per platform (the packages differ by architecture), because a layer's key
//! covers the exact packages it installs (name, version, architecture and SHA-256).
//!
//! An entry whose packages `image.lock` pins for the platform is not resolved again: the
//! pinned files are taken from the store, or downloaded (and checked) when it lacks them, so a
//! warm build touches no network. An entry the lock lacks is resolved from its suite's
//! mirrors (see [`crate::debian`]) and added to the lock; with `--locked` that is an error.

use std::sync::Arc;

use super::pins::Pins;
use super::{Error, Event};
use crate::debian::{self, Request, Settings};
use crate::layer::DebianPackages;
use crate::oci;
use crate::spec::{self, ImageSpec, Stage};
use crate::store::Store;

/// The `[debian]` settings of `spec` as the debian module takes them.
pub(super) fn settings(spec: &ImageSpec) -> Settings {
    Settings {
        mirrors: spec.debian.mirrors.clone(),
        keyrings: spec.debian.keyring.iter().cloned().collect(),
        etc_apt: None,
    }
}

/// Resolves (or takes from the lock) and fetches the packages of every `debian` entry of
/// `stages` for `platform`.
pub(super) fn packages(
    spec: &ImageSpec,
    stages: &[&Stage],
    platform: &oci::Platform,
    pins: &Pins,
    store: Option<&Store>,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<DebianPackages, Error> {
    let mut out = DebianPackages::new();
    let settings = settings(spec);
    for layer in stages.iter().flat_map(|s| &s.layers) {
        for entry in &layer.entries {
            let spec::Source::Debian(source) = &entry.source else {
                continue;
            };
            if out.contains_key(source) {
                continue;
            }
            let fail = |e: debian::Error| Error::Debian {
                layer: layer.name.clone(),
                source: Box::new(e),
            };
            let architecture = debian::architecture(platform).ok_or_else(|| Error::Debian {
                layer: layer.name.clone(),
                source: Box::new(debian::Error::Architecture {
                    platform: platform.to_string(),
                }),
            })?;
            let locked = pins.debian(source, platform);
            if pins.locked && locked.is_none() {
                return Err(Error::DebianNotLocked {
                    layer: layer.name.clone(),
                    what: format!(
                        "the Debian packages {} of suite `{}` for {platform}",
                        source
                            .packages
                            .iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        source.suite
                    ),
                    lock: pins.path.clone(),
                });
            }
            let pinned_by = locked.as_ref().map(|_| pins.name());
            let packages = match locked {
                Some(locked) => locked,
                None => {
                    let request = Request {
                        suite: source.suite.clone(),
                        components: source.components.clone(),
                        architecture: architecture.to_string(),
                        packages: source.packages.clone(),
                    };
                    let resolved = debian::resolve(&settings, &request).map_err(fail)?;
                    pins.add_debian(source, platform, &resolved);
                    resolved
                }
            };
            on_event(Event::DebianResolved {
                suite: source.suite.clone(),
                architecture: architecture.to_string(),
                packages: packages.len(),
                pinned_by,
            });
            let files = match store {
                Some(store) => {
                    debian::fetch(&settings, &source.suite, &packages, store).map_err(fail)?;
                    packages
                        .into_iter()
                        .map(|p| {
                            let path = store.blob_path(&p.sha256);
                            (p, path)
                        })
                        .collect()
                }
                None => packages
                    .into_iter()
                    .map(|p| (p, std::path::PathBuf::new()))
                    .collect(),
            };
            out.insert(source.clone(), Arc::new(files));
        }
    }
    Ok(out)
}
