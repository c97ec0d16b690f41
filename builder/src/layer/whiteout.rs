//! Whiteouts: a layer's `remove` paths as OCI whiteout entries.
//!
//! An OCI layer deletes a path of the layers below it with a *whiteout*: an empty regular file
//! named `.wh.<name>` next to the deleted `<name>` (its subtree goes with it). A directory the
//! layer *replaces* (removes from below and adds again) gets an *opaque* whiteout instead, an
//! empty file `.wh..wh..opq` inside it, which hides every child the lower layers gave the
//! directory while keeping what this layer puts in it. Whiteouts only ever act on lower layers,
//! never on entries of their own layer (see the OCI image spec, `layer.md`).
//!
//! [`add_whiteouts`] turns the removed paths of one layer into these entries, after the layer's
//! `add` sources have filled its tree:
//!
//! - a removed path `P` where this layer also has a directory (given, or the implicit parent of
//!   something it adds) -> `P/.wh..wh..opq`: the directory is replaced;
//! - a removed path `P` this layer adds as a file or symlink -> an error (the layer would add and
//!   delete the same entry);
//! - any other removed path `P` -> `parent(P)/.wh.<name of P>`;
//! - a removed path inside another removed path that this layer does not add again is covered by
//!   the outer whiteout and produces nothing.
//!
//! Whiteout entries are written like the ones docker, buildah (containers/storage) and umoci
//! write: regular files of size 0, mode 0, owner 0:0, the layer mtime. They sort by name like any
//! other entry (the tree's byte order), so the layer stays deterministic. Their parent
//! directories are implicit directories of the layer as usual (0755, 0:0): like any entry of a
//! layer, they set the metadata of those directories in the image. A caller that knows the
//! layers below (a [`Rootfs`](crate::rootfs::Rootfs) of them) can keep their metadata with
//! [`LayerTree::inherit_implicit_dirs`].

use std::collections::BTreeSet;
use std::sync::Arc;

use super::tree::{is_normalised, join, Entry, EntryKind, FileSource, LayerTree, Origin};
use super::Error;

pub use crate::types::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

/// The path of the tree (relative, normalised) of an absolute (or relative) image path: `.` and
/// empty components dropped. `None` when it has a `..` component.
pub(crate) fn normalise_image_path(path: &str) -> Option<String> {
    super::sources::normalise_member(path)
}

/// Adds the whiteouts of `removes` (image paths such as `/usr/share/doc`) to `tree`, the
/// complete tree of layer `layer` (its `add` sources already read). `origin` is what the
/// whiteout entries report as their source in conflict messages (an index past the layer's
/// `add` entries is fine).
///
/// Errors: a path that is the image root, contains `..` or has a component named `.wh.*`
/// ([`Error::RemovePath`]), a path this
/// layer adds as a file or symlink ([`Error::RemovePath`]), or a whiteout name that the layer
/// already holds as another entry ([`Error::MergeEntries`]).
pub fn add_whiteouts(
    tree: &mut LayerTree,
    layer: &str,
    removes: &[String],
    origin: usize,
) -> Result<(), Error> {
    let mut paths = BTreeSet::new();
    for raw in removes {
        let path = normalise_image_path(raw)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Error::RemovePath {
                layer: layer.to_owned(),
                path: raw.clone(),
                reason: "only paths below the image root `/` without `..` can be removed"
                    .to_owned(),
            })?;
        debug_assert!(is_normalised(&path));
        if let Some(name) = path.split('/').find(|c| c.starts_with(WHITEOUT_PREFIX)) {
            return Err(Error::RemovePath {
                layer: layer.to_owned(),
                path: raw.clone(),
                reason: format!(
                    "`{name}` starts with `.wh.`, the prefix of OCI whiteouts, so no image holds \
                     such a path (name the path to delete itself)"
                ),
            });
        }
        paths.insert(path);
    }
    for path in &paths {
        let covered = ancestors(path).any(|a| paths.contains(a));
        match tree.get(path).map(|e| &e.kind) {
            Some(EntryKind::Dir) => {
                insert_whiteout(tree, layer, &join(path, OPAQUE_WHITEOUT), origin)?;
            }
            Some(_) => {
                return Err(Error::RemovePath {
                    layer: layer.to_owned(),
                    path: format!("/{path}"),
                    reason: "the same layer adds it as a file or symlink; a layer's removals \
                             apply to the layers below it (drop the removal, or add the entry \
                             in a later layer)"
                        .to_owned(),
                });
            }
            None if covered => {}
            None => {
                let (parent, name) = match path.rsplit_once('/') {
                    Some((parent, name)) => (parent, name),
                    None => ("", path.as_str()),
                };
                let whiteout = join(parent, &format!("{WHITEOUT_PREFIX}{name}"));
                insert_whiteout(tree, layer, &whiteout, origin)?;
            }
        }
    }
    Ok(())
}

/// The proper ancestors of a normalised path, nearest first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut end = path.len();
    std::iter::from_fn(move || {
        let slash = path[..end].rfind('/')?;
        end = slash;
        Some(&path[..slash])
    })
}

/// Whether `entry` is a whiteout file as [`add_whiteouts`] writes it.
pub(crate) fn is_whiteout_entry(entry: &Entry) -> bool {
    matches!(
        &entry.kind,
        EntryKind::File {
            size: 0,
            source: FileSource::Inline(_)
        }
    ) && entry.mode == 0
        && entry.uid == 0
        && entry.gid == 0
}

fn insert_whiteout(
    tree: &mut LayerTree,
    layer: &str,
    path: &str,
    origin: usize,
) -> Result<(), Error> {
    if tree.get(path).is_some_and(is_whiteout_entry) {
        return Ok(());
    }
    let entry = Entry {
        kind: EntryKind::File {
            source: FileSource::Inline(Arc::from(&[][..])),
            size: 0,
        },
        mode: 0,
        uid: 0,
        gid: 0,
        origin: Origin {
            entry: origin,
            implicit: false,
        },
    };
    tree.insert(path, entry).map_err(|e| match e {
        Error::MergeEntries {
            path,
            first,
            second,
            ..
        } => Error::MergeEntries {
            layer: layer.to_owned(),
            path,
            first,
            second: format!("{second} (a whiteout of a removed path)"),
        },
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Entry {
        Entry::inline_file(&b"x"[..])
    }

    fn paths(t: &LayerTree) -> Vec<&str> {
        t.iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn plain_opaque_and_covered_removals() {
        let mut t = LayerTree::new();
        t.insert("d/new", file()).unwrap();
        let removes = ["/a/x", "/b", "/b/c/d", "/d", "top"].map(String::from);
        add_whiteouts(&mut t, "l", &removes, 9).unwrap();
        assert_eq!(
            paths(&t),
            [
                "a",
                "a/.wh.x",
                ".wh.b",
                ".wh.top",
                "d",
                "d/.wh..wh..opq",
                "d/new"
            ]
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        let wh = t.get("a/.wh.x").unwrap();
        assert!(is_whiteout_entry(wh));
        assert_eq!(wh.origin.entry, 9);
        // Idempotent.
        add_whiteouts(&mut t, "l", &removes, 9).unwrap();
    }

    #[test]
    fn removing_an_added_file_or_the_root_is_an_error() {
        let mut t = LayerTree::new();
        t.insert("etc/x", file()).unwrap();
        let err = add_whiteouts(&mut t, "l", &["/etc/x".into()], 1).unwrap_err();
        assert!(err.to_string().contains("`/etc/x`"), "{err}");
        for bad in ["/", "", "/a/../b"] {
            let err = add_whiteouts(&mut t, "l", &[bad.into()], 1).unwrap_err();
            assert!(matches!(err, Error::RemovePath { .. }), "{bad}: {err}");
        }
        // A removal that would write a reserved name (`.wh..wh.x`, or inside a whiteout).
        for bad in ["/.wh.x", "/a/.wh..wh..opq", "/.wh.d/x"] {
            let err = add_whiteouts(&mut t, "l", &[bad.into()], 1).unwrap_err();
            assert!(err.to_string().contains("`.wh."), "{bad}: {err}");
        }
        // A whiteout name the layer already holds as a real file.
        t.insert("etc/.wh.y", file()).unwrap();
        let err = add_whiteouts(&mut t, "l", &["/etc/y".into()], 1).unwrap_err();
        assert!(matches!(err, Error::MergeEntries { .. }), "{err}");
    }
}
