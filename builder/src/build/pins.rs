//! How a build uses its lock file ([`crate::lock`]): which file it is, what it pins, what the
//! build adds to it, and `cargo image update` ([`update`]).
//!
//! The lock is `image.lock` beside the spec, or in the workspace root for a spec read from
//! `Cargo.toml` metadata (the images of a workspace share it). A registry base the lock pins
//! for the platform is pulled by the locked digest (the index's when the tag named one, the
//! platform's manifest checked against the pin), never by its tag: a moved tag changes
//! nothing until `cargo image update`. A base the lock lacks is resolved as before (the
//! store's record of the tag, or the registry, as `pull` says) and added to the lock when the
//! build has planned; with `--locked` it is an error naming the base and the fix instead.
//!
//! The spec's `pull` policy still applies to a locked base, but to its digest: `never` takes
//! it from the store only, `if-not-present` downloads it by digest when the store lacks it,
//! and `always` fetches the locked manifest from the registry again (so the registry must
//! still serve it); no policy re-resolves a locked tag. The store's own record of a tag's
//! resolution is only consulted for bases the lock lacks.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::base::base_label;
use super::options::{platform_specs, Context};
use super::shared::Shared;
use super::{store_err, BuildOptions, Error, Event};
use crate::lock::{self, LockFile};
use crate::oci;
use crate::registry::{PullPolicy, Reference, RegistryClient};
use crate::spec::{self, Base, ImageSpec};
use crate::store::Store;

/// Serialises the read-merge-write of lock files within this process (the images of a
/// workspace are built in parallel and share one lock).
static WRITING: Mutex<()> = Mutex::new(());

/// The lock file of `spec`: `image.lock` beside an `image.toml`, in the workspace root for a
/// spec read from `Cargo.toml` metadata.
pub fn lock_path(spec: &ImageSpec) -> PathBuf {
    lock_path_in(spec, &Shared::default())
}

/// [`lock_path`], asking cargo through what the builds of this invocation share.
fn lock_path_in(spec: &ImageSpec, shared: &Shared) -> PathBuf {
    let dir = spec.spec_path.parent().unwrap_or(Path::new("."));
    if spec
        .spec_path
        .file_name()
        .is_some_and(|n| n == "Cargo.toml")
    {
        if let Some(workspace) = shared.workspace(dir) {
            return workspace.root.join(lock::FILE_NAME);
        }
    }
    dir.join(lock::FILE_NAME)
}

/// The lock of one build: what the file pins, and what the build resolved that it lacked.
pub(super) struct Pins {
    pub path: PathBuf,
    /// `--locked`: a base the lock lacks is an error.
    pub locked: bool,
    pub file: LockFile,
    added: Mutex<LockFile>,
    /// What the invocation's registry clients learnt (see [`crate::registry::Learnt`]).
    learnt: crate::registry::Learnt,
}

impl Pins {
    pub fn open(spec: &ImageSpec, opts: &BuildOptions, shared: &Shared) -> Result<Pins, Error> {
        let path = lock_path_in(spec, shared);
        Ok(Pins {
            file: LockFile::read(&path)?,
            path,
            locked: opts.locked,
            added: Mutex::new(LockFile::default()),
            learnt: shared.registry.clone(),
        })
    }

    /// The file name events show (`image.lock`).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map_or_else(|| lock::FILE_NAME.into(), |n| n.to_string_lossy().into())
    }

    /// Records a base resolved without the lock.
    pub fn add(&self, reference: &str, platform: &oci::Platform, image: &oci::ResolvedImage) {
        let index = image
            .index
            .as_ref()
            .and_then(|d| oci::Digest::parse(d.digest().as_ref()).ok());
        if let Ok(manifest) = oci::Digest::parse(&image.digest()) {
            let mut added = self.added.lock().unwrap_or_else(|p| p.into_inner());
            added.pin(reference, platform, index, manifest);
        }
    }

    /// The packages the lock pins for a `debian` entry on `platform`; `None` when it pins
    /// none (a pin whose digest cannot be read counts as none).
    pub fn debian(
        &self,
        source: &crate::spec::DebianSource,
        platform: &oci::Platform,
    ) -> Option<Vec<crate::debian::Package>> {
        let locked = self
            .file
            .debian
            .get(&(debian_request(source), platform.clone()))?;
        locked
            .iter()
            .map(|p| {
                Some(crate::debian::Package {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    filename: p.filename.clone(),
                    sha256: oci::Digest::parse(&p.sha256).ok()?,
                })
            })
            .collect()
    }

    /// Records the packages of a `debian` entry resolved without the lock.
    pub fn add_debian(
        &self,
        source: &crate::spec::DebianSource,
        platform: &oci::Platform,
        packages: &[crate::debian::Package],
    ) {
        let locked = packages
            .iter()
            .map(|p| lock::LockedPackage {
                name: p.name.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
                filename: p.filename.clone(),
                sha256: p.sha256.to_string(),
            })
            .collect();
        let mut added = self.added.lock().unwrap_or_else(|p| p.into_inner());
        added
            .debian
            .insert((debian_request(source), platform.clone()), locked);
    }

    /// Writes what the build added into the lock file (read again first: another image of the
    /// workspace may have added its bases meanwhile); nothing when it added nothing.
    pub fn save(&self, on_event: &(dyn Fn(Event) + Sync)) -> Result<(), Error> {
        let added = self.added.lock().unwrap_or_else(|p| p.into_inner());
        if added.bases.is_empty() && added.debian.is_empty() {
            return Ok(());
        }
        let _writing = WRITING.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = LockFile::read(&self.path)?;
        file.merge(&added);
        file.write(&self.path)?;
        on_event(Event::Locked {
            path: self.path.clone(),
            bases: added
                .bases
                .keys()
                .cloned()
                .chain(
                    added
                        .debian
                        .keys()
                        .map(|(r, p)| format!("debian:{} [{p}]", r.suite)),
                )
                .collect(),
        });
        Ok(())
    }
}

/// How the lock identifies a `debian` entry.
pub(super) fn debian_request(source: &crate::spec::DebianSource) -> lock::DebianRequest {
    let mut packages = source.packages.clone();
    packages.sort();
    lock::DebianRequest {
        suite: source.suite.clone(),
        components: source.components.clone(),
        packages,
    }
}

/// Pulls a registry base: by the digest the lock pins when it has one for `platform` (checked
/// against the pin), else by its reference (and recorded in `pins`); `--locked` makes a
/// missing pin an error. Returns the image and, when it came from the lock, the lock's name.
pub(super) fn pull_base(
    which: &Base,
    reference: &str,
    pull: PullPolicy,
    pins: &Pins,
    opts: &BuildOptions,
    store_root: &Path,
    platform: &oci::Platform,
) -> Result<(oci::ResolvedImage, Option<String>), Error> {
    let registry_err = |source| Error::Registry {
        reference: reference.to_owned(),
        source: Box::new(source),
    };
    let parsed = Reference::parse(reference).map_err(|e| {
        registry_err(crate::registry::Error::ParseReference {
            reference: reference.to_owned(),
            source: e,
        })
    })?;
    let store = Store::open(store_root).map_err(|e| store_err(store_root, e))?;
    let client =
        RegistryClient::sharing(opts.registry.clone(), &pins.learnt).map_err(registry_err)?;
    let locked = pins.file.bases.get(reference);
    let pin = locked.and_then(|b| b.platforms.get(platform));
    if pins.locked && pin.is_none() {
        return Err(Error::NotLocked {
            base: base_label(which),
            lock: pins.path.clone(),
            reason: match locked {
                None => "is not in".to_owned(),
                Some(_) => format!("has no pin for {platform} in"),
            },
        });
    }
    let index = locked.and_then(|b| b.index.clone());
    let by = match (pin, &index) {
        // The index of the pin serves a platform the lock lacks too: the pins stay one image.
        (_, Some(index)) => parsed.with_digest(index.clone()),
        (Some(manifest), None) => parsed.with_digest(manifest.clone()),
        (None, None) => parsed.clone(),
    };
    let image = client
        .pull(&by, platform, &store, pull)
        .map_err(registry_err)?
        .image;
    match pin {
        Some(manifest) if image.digest() != manifest.to_string() => Err(Error::LockMismatch {
            base: base_label(which),
            lock: pins.path.clone(),
            platform: platform.to_string(),
            pinned: manifest.to_string(),
            found: image.digest(),
        }),
        Some(_) => Ok((image, Some(pins.name()))),
        None => {
            pins.add(reference, platform, &image);
            Ok((image, None))
        }
    }
}

/// One change `cargo image update` made to a lock: `old` is `None` for a base it added.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockChange {
    pub lock: PathBuf,
    pub base: String,
    pub platform: String,
    pub old: Option<String>,
    pub new: String,
}

/// `cargo image update [BASE]...`: resolves the registry bases of `specs` (every stage, every
/// platform of the build) again over the network, all of them or those whose reference is in
/// `only`, and rewrites their lock files; bases not re-resolved keep their pins (and are
/// resolved if the lock lacks them). Returns what changed, lock by lock.
pub fn update(
    specs: &[ImageSpec],
    opts: &BuildOptions,
    only: &[String],
) -> Result<Vec<LockChange>, Error> {
    let mut seen = std::collections::BTreeSet::new();
    let mut changes = Vec::new();
    let mut locks: Vec<(PathBuf, LockFile, LockFile)> = Vec::new();
    let shared = Shared::default();
    for spec in specs {
        let cx = Context::new(spec, opts, &shared)?;
        let path = lock_path_in(spec, &shared);
        let at = match locks.iter().position(|(p, _, _)| *p == path) {
            Some(at) => at,
            None => {
                let old = LockFile::read(&path)?;
                locks.push((path.clone(), old, LockFile::default()));
                locks.len() - 1
            }
        };
        let (platforms, _) = platform_specs(spec, opts)?;
        for p in &platforms {
            for stage in p.spec.all_stages() {
                let Base::Registry { reference, .. } = &stage.base else {
                    continue;
                };
                seen.insert(reference.clone());
                let (_, old, new) = &mut locks[at];
                if new.manifest(reference, &p.platform).is_some() {
                    continue;
                }
                let refresh = only.is_empty() || only.contains(reference);
                let policy = if refresh {
                    PullPolicy::Always
                } else {
                    PullPolicy::IfNotPresent
                };
                let pins = Pins {
                    path: path.clone(),
                    locked: false,
                    file: if refresh {
                        LockFile::default()
                    } else {
                        old.clone()
                    },
                    added: Mutex::new(LockFile::default()),
                    learnt: shared.registry.clone(),
                };
                let (image, _) = pull_base(
                    &stage.base,
                    reference,
                    policy,
                    &pins,
                    opts,
                    &cx.store_root,
                    &p.platform,
                )?;
                let index = image
                    .index
                    .as_ref()
                    .and_then(|d| oci::Digest::parse(d.digest().as_ref()).ok());
                let manifest = oci::Digest::parse(&image.digest())?;
                let before = old.manifest(reference, &p.platform).map(|d| d.to_string());
                if before.as_deref() != Some(&manifest.to_string()) {
                    changes.push(LockChange {
                        lock: path.clone(),
                        base: reference.clone(),
                        platform: p.platform.to_string(),
                        old: before,
                        new: manifest.to_string(),
                    });
                }
                new.pin(reference, &p.platform, index, manifest);
            }
            // The packages of `debian` entries, as `debian:SUITE`.
            for entry in p
                .spec
                .all_stages()
                .flat_map(|s| &s.layers)
                .flat_map(|l| &l.entries)
            {
                let spec::Source::Debian(source) = &entry.source else {
                    continue;
                };
                let name = format!("debian:{}", source.suite);
                seen.insert(name.clone());
                let (_, old, new) = &mut locks[at];
                let key = (debian_request(source), p.platform.clone());
                if new.debian.contains_key(&key) {
                    continue;
                }
                let refresh = only.is_empty() || only.contains(&name);
                let before = old.debian.get(&key).cloned();
                let packages =
                    match (&before, refresh) {
                        (Some(pinned), false) => pinned.clone(),
                        _ => {
                            let architecture = crate::debian::architecture(&p.platform)
                                .ok_or_else(|| Error::Debian {
                                    layer: name.clone(),
                                    source: Box::new(crate::debian::Error::Architecture {
                                        platform: p.platform.to_string(),
                                    }),
                                })?;
                            let request = crate::debian::Request {
                                suite: source.suite.clone(),
                                components: source.components.clone(),
                                architecture: architecture.into(),
                                packages: source.packages.clone(),
                            };
                            crate::debian::resolve(&super::debian::settings(spec), &request)
                                .map_err(|e| Error::Debian {
                                    layer: name.clone(),
                                    source: Box::new(e),
                                })?
                                .into_iter()
                                .map(|p| lock::LockedPackage {
                                    name: p.name,
                                    version: p.version,
                                    architecture: p.architecture,
                                    filename: p.filename,
                                    sha256: p.sha256.to_string(),
                                })
                                .collect()
                        }
                    };
                let summary = |list: &[lock::LockedPackage]| {
                    list.iter()
                        .map(|p| format!("{}={}", p.name, p.version))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let after = summary(&packages);
                let before = before.as_deref().map(summary);
                if before.as_deref() != Some(after.as_str()) {
                    changes.push(LockChange {
                        lock: path.clone(),
                        base: name.clone(),
                        platform: p.platform.to_string(),
                        old: before,
                        new: after,
                    });
                }
                new.debian.insert(key, packages);
            }
        }
    }
    if let Some(unknown) = only.iter().find(|b| !seen.contains(*b)) {
        return Err(Error::UnknownBase {
            base: unknown.clone(),
            bases: if seen.is_empty() {
                "none".to_owned()
            } else {
                seen.iter()
                    .map(|b| format!("`{b}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        });
    }
    for (path, old, new) in &locks {
        // Bases of other images sharing the lock (a workspace built with -p) stay.
        let mut merged = old.clone();
        for reference in new.bases.keys() {
            merged.bases.remove(reference);
        }
        merged.merge(new);
        if !merged.bases.is_empty() || !merged.debian.is_empty() || path.exists() {
            merged.write(path)?;
        }
    }
    Ok(changes)
}
