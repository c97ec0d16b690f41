//! Bases: resolving a stage's outside base (an OCI layout, an OCI or docker archive, a
//! registry image, a built-in base written by [`super::builtin`]) to a verified manifest and config while planning, and putting its blobs into
//! the store, checked against its descriptors, when its `fetch base` node is executed.
//!
//! A base is an [`oci::ResolvedImage`] whatever its source: an archive base keeps the scratch
//! directory it was unpacked into alive ([`oci::ResolvedImage::with_scratch`]), a registry base
//! carries the reference it was pulled by (so a push to the same registry can mount its
//! blobs), and once held in the store it reads its blobs from there
//! ([`oci::ResolvedImage::with_blobs_in`]).

use std::path::Path;

use super::{store_err, BuildOptions, Error, Event};
use crate::oci;
use crate::spec::Base;
use crate::store::Store;

/// Puts an outside base's blobs in the store (verified) and returns the base as an image read
/// from the store, so stages and outputs take every blob from one place.
///
/// Each layer is checked against its descriptor (size, digest, media type by its magic bytes)
/// and the config's diff_id for it before anything of the base is reused: while it is copied
/// into the store, or (a blob the store already has) from the facts recorded for it, else by
/// reading it once and recording them.
pub(super) fn hold_base(
    store: &Store,
    base: oci::ResolvedImage,
    which: &Base,
) -> Result<oci::ResolvedImage, Error> {
    let wrap = |source| Error::Base {
        base: base_label(which),
        source: Box::new(source),
    };
    let serr = |e| store_err(store.root(), e);
    let diff_ids = base.config.rootfs().diff_ids();
    if diff_ids.len() != base.layers().len() {
        return Err(wrap(oci::Error::LayerCount {
            layout: base.layout.clone(),
            digest: base.digest(),
            layers: base.layers().len(),
            diff_ids: diff_ids.len(),
        }));
    }
    for (desc, diff_id) in base.layers().iter().zip(diff_ids) {
        let digest = oci::Digest::parse(desc.digest().as_ref())?;
        let src = base.blob_path(desc.digest().as_ref()).map_err(wrap)?;
        if let Some(facts) = store.layer_facts(&digest).map_err(serr)? {
            oci::check_layer(&src, desc, diff_id, &facts).map_err(wrap)?;
            continue;
        }
        let facts = if store.has_blob(&digest) {
            let held = store.blob_path(&digest);
            let facts = oci::read_layer(&held, desc, &mut std::io::sink()).map_err(wrap)?;
            oci::check_layer(&held, desc, diff_id, &facts).map_err(wrap)?;
            facts
        } else {
            let mut writer = store.blob_writer().map_err(serr)?;
            let facts = oci::read_layer(&src, desc, &mut writer).map_err(wrap)?;
            oci::check_layer(&src, desc, diff_id, &facts).map_err(wrap)?;
            writer.finish().map_err(serr)?;
            facts
        };
        store.record_layer_facts(&facts).map_err(serr)?;
    }
    for bytes in [&base.manifest_bytes, &base.config_bytes] {
        store
            .write_blob(bytes)
            .map_err(|e| store_err(store.root(), e))?;
    }
    Ok(base.with_blobs_in(store.root().to_path_buf()))
}

pub(super) fn base_label(base: &Base) -> String {
    let with_tag = |prefix: &str, path: &Path, tag: &Option<String>| match tag {
        Some(t) => format!("{prefix}:{}:{t}", path.display()),
        None => format!("{prefix}:{}", path.display()),
    };
    match base {
        Base::Scratch => "scratch".to_string(),
        Base::Stage(name) => format!("stage:{name}"),
        Base::OciLayout { path, tag } => with_tag("oci", path, tag),
        Base::OciArchive { path, tag } => with_tag("oci-archive", path, tag),
        Base::DockerArchive { path, tag } => with_tag("docker-archive", path, tag),
        Base::Registry { reference, .. } => reference.clone(),
        Base::Builtin(builtin) => builtin.name().to_string(),
    }
}

/// The `org.opencontainers.image.base.name` of an outside base: a registry base's reference, a
/// built-in base's name, a local layout or archive as `oci:PATH[:TAG]` with the path relative
/// to the spec's directory, as a spec writes it (so the annotation is the same from any
/// checkout and names no directory of this machine).
pub(super) fn base_name(base: &Base, spec_dir: &Path) -> Option<String> {
    let local = |prefix: &str, path: &Path, tag: &Option<String>| {
        let rel = relative_to(path, spec_dir);
        // Never a path of this machine (a spec directory that is not absolute).
        if rel.is_absolute() {
            return None;
        }
        let rel = rel.display();
        Some(match tag {
            Some(t) => format!("{prefix}:{rel}:{t}"),
            None => format!("{prefix}:{rel}"),
        })
    };
    match base {
        Base::Scratch | Base::Stage(_) => None,
        Base::Registry { reference, .. } => Some(reference.clone()),
        Base::Builtin(builtin) => Some(builtin.name().to_owned()),
        Base::OciLayout { path, tag } => local("oci", path, tag),
        Base::OciArchive { path, tag } => local("oci-archive", path, tag),
        Base::DockerArchive { path, tag } => local("docker-archive", path, tag),
    }
}

/// `path` relative to `dir` (both absolute and normalised): `..` for each component of `dir`
/// past their common prefix, then the rest of `path`; `.` when they are the same.
fn relative_to(path: &Path, dir: &Path) -> std::path::PathBuf {
    let (p, d): (Vec<_>, Vec<_>) = (path.components().collect(), dir.components().collect());
    let common = p.iter().zip(&d).take_while(|(a, b)| a == b).count();
    let mut rel = std::path::PathBuf::new();
    for _ in common..d.len() {
        rel.push("..");
    }
    for c in &p[common..] {
        rel.push(c);
    }
    if rel.as_os_str().is_empty() {
        rel.push(".");
    }
    rel
}

/// The base annotations of an image on an outside base (OCI annotation spec):
/// `org.opencontainers.image.base.digest` (the base's manifest digest) and, when it has one,
/// `org.opencontainers.image.base.name`.
pub(super) fn base_annotations(
    name: Option<&str>,
    digest: &str,
) -> std::collections::BTreeMap<String, String> {
    use oci_spec::image::{ANNOTATION_BASE_IMAGE_DIGEST, ANNOTATION_BASE_IMAGE_NAME};
    let mut a = std::collections::BTreeMap::new();
    a.insert(ANNOTATION_BASE_IMAGE_DIGEST.to_owned(), digest.to_owned());
    if let Some(name) = name {
        a.insert(ANNOTATION_BASE_IMAGE_NAME.to_owned(), name.to_owned());
    }
    a
}

/// Resolves the stage's base to a verified image (manifest and config read and checked; a
/// registry base's blobs pulled into the store). An archive base keeps the directory it was
/// unpacked into; a registry base has its reference, and is pulled by the digest the lock file
/// pins it to (see `pins.rs`).
pub(super) fn resolve_base(
    which: &Base,
    opts: &BuildOptions,
    pins: &super::pins::Pins,
    store_root: &Path,
    platform: &oci::Platform,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<Option<oci::ResolvedImage>, Error> {
    let wrap = |source| Error::Base {
        base: base_label(which),
        source: Box::new(source),
    };
    let scratch = || {
        let parent = store_root.parent().unwrap_or(Path::new("."));
        oci::scratch_dir(parent, oci::Scratch::Base).map_err(|source| {
            wrap(oci::Error::CreateDir {
                path: parent.to_path_buf(),
                source,
            })
        })
    };
    let unpack = |path: &Path, open: fn(&Path, &Path) -> Result<oci::Layout, oci::Error>| {
        let scratch = scratch()?;
        let layout = open(path, scratch.path()).map_err(wrap)?;
        Ok::<_, Error>((layout, scratch))
    };
    let mut pinned_by = None;
    let base = match which {
        Base::Scratch | Base::Stage(_) => return Ok(None),
        Base::Builtin(builtin) => {
            let scratch = scratch()?;
            super::builtin::write(*builtin, platform, scratch.path())
                .map_err(wrap)?
                .with_scratch(scratch)
        }
        Base::OciLayout { path, tag } => oci::Layout::open(path)
            .and_then(|l| l.resolve(tag.as_deref(), platform))
            .map_err(wrap)?,
        Base::OciArchive { path, tag } => {
            let (layout, scratch) = unpack(path, oci::open_oci_archive)?;
            let image = layout.resolve(tag.as_deref(), platform).map_err(wrap)?;
            image.with_scratch(scratch)
        }
        Base::DockerArchive { path, tag } => {
            let (layout, scratch) = unpack(path, oci::open_docker_archive)?;
            let image = layout.resolve(tag.as_deref(), platform).map_err(wrap)?;
            image.with_scratch(scratch)
        }
        Base::Registry { reference, pull } => {
            let (image, pinned) =
                super::pins::pull_base(which, reference, *pull, pins, opts, store_root, platform)?;
            pinned_by = pinned;
            image
        }
    };
    on_event(Event::BaseResolved {
        base: base_label(which),
        digest: base.digest(),
        layers: base.layers().len(),
        pinned_by,
    });
    Ok(Some(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_base_is_named_relative_to_the_spec() {
        let base = |path: &str, tag: Option<&str>| Base::OciLayout {
            path: path.into(),
            tag: tag.map(str::to_owned),
        };
        let dir = Path::new("/w/app");
        assert_eq!(
            base_name(&base("/w/base-layout", Some("latest")), dir).as_deref(),
            Some("oci:../base-layout:latest")
        );
        assert_eq!(
            base_name(&base("/w/app/vendor/base", None), dir).as_deref(),
            Some("oci:vendor/base")
        );
        assert_eq!(
            base_name(&base("/w/app", None), dir).as_deref(),
            Some("oci:.")
        );
        assert_eq!(base_name(&Base::Scratch, dir), None);
    }
}
