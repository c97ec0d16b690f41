//! Reading a stage's layers into the view: each layer blob made a plain tar (decompressed
//! once into the scratch directory when it is gzip or zstd), its members read by the tar
//! toolkit's scanner ([`crate::tarball::Members`], [`NamePolicy::Layer`]) into [`Member`]s, then
//! applied on the view with the OCI merge rules (whiteouts first, then entries in order; see the
//! module docs of [`super`]).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::sync::Arc;

use oci_spec::image::MediaType;

use super::{Error, Kind, LayerBlobRef, Node, Rootfs, BUF_SIZE};
use crate::layer::{self, is_normalised, join, Compression, ImportedArchive};
use crate::tarball::{self, normalise_member, Format, Kind as MemberKind, Members, NamePolicy};

/// One member of a layer tar, before it is applied.
enum Member {
    Entry {
        name: String,
        node: Node,
    },
    HardLink {
        name: String,
        target: String,
        node: Node,
    },
    Whiteout {
        name: String,
    },
    Opaque {
        dir: String,
    },
}

impl Rootfs {
    /// Reads layer number `index` (bottom = 0) of the stage and applies it on the view.
    pub(super) fn add_layer(
        &mut self,
        layer: &LayerBlobRef,
        index: u32,
        scratch: &Path,
    ) -> Result<(), Error> {
        let archive = Arc::new(self.plain_tar(layer, scratch)?);
        let members = self.read_members(&archive, index)?;
        self.archives.push(archive);
        self.apply(members, &layer.path)
    }

    /// The layer as an uncompressed tar: the blob when plain, else a copy decompressed into
    /// `scratch`.
    fn plain_tar(&self, layer: &LayerBlobRef, scratch: &Path) -> Result<ImportedArchive, Error> {
        let read_err = |source| Error::ReadLayer {
            stage: self.stage.clone(),
            path: layer.path.clone(),
            source,
        };
        let check_err = |found: String| Error::CheckLayer {
            stage: self.stage.clone(),
            path: layer.path.clone(),
            media_type: layer.media_type.clone(),
            found,
        };
        let expected = crate::oci::layer_compression(&MediaType::from(layer.media_type.as_str()))
            .ok_or_else(|| check_err("that is not a layer media type".to_owned()))?;
        let found = Format::of_file(&layer.path).map_err(read_err)?;
        let matches = matches!(
            (expected, found),
            (Compression::None, Format::Plain)
                | (Compression::Gzip, Format::Gzip)
                | (Compression::Zstd, Format::Zstd)
        );
        if !matches {
            let what = match found {
                Format::Plain => "its bytes are not gzip or zstd",
                Format::Gzip => "its bytes are gzip",
                Format::Zstd => "its bytes are zstd",
            };
            return Err(check_err(what.to_owned()));
        }
        if found == Format::Plain {
            return Ok(ImportedArchive::new(
                layer.path.clone(),
                layer.path.clone(),
                None,
            ));
        }
        let temp =
            tarball::decompress_to_temp(&layer.path, found, ".cargo-image-stage-", Some(scratch))
                .map_err(read_err)?;
        Ok(ImportedArchive::new(
            temp.to_path_buf(),
            layer.path.clone(),
            Some(temp),
        ))
    }

    /// Reads the members of one layer tar (metadata and data offsets only).
    fn read_members(&self, archive: &ImportedArchive, layer: u32) -> Result<Vec<Member>, Error> {
        let blob = archive.source();
        let read_err = |source| Error::ReadLayer {
            stage: self.stage.clone(),
            path: blob.to_path_buf(),
            source,
        };
        let member_err = |member: &str, reason: &str| Error::ReadMember {
            stage: self.stage.clone(),
            path: blob.to_path_buf(),
            member: member.to_owned(),
            reason: reason.to_owned(),
        };
        let file = File::open(archive.tar_path()).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        let mut tar = tar::Archive::new(BufReader::with_capacity(BUF_SIZE, file));
        let entries = tar.entries_with_seek().map_err(read_err)?;
        let mut members = Vec::new();
        // A base layer whose digest checks out may still claim more data for a member than
        // it holds (a hostile image): refused here. A last member without its padding is read.
        for member in Members::with_data_length(entries, NamePolicy::Layer, len) {
            let member = member.map_err(|e| match e {
                tarball::Error::Read(source) => read_err(source),
                tarball::Error::NotUtf8 { name } => {
                    member_err(&name, "the name is not valid UTF-8")
                }
                tarball::Error::Name { name, .. } => member_err(&name, "the name contains `..`"),
                e @ tarball::Error::Truncated { .. } => {
                    read_err(io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string()))
                }
            })?;
            if member.kind == MemberKind::GlobalHeader {
                continue;
            }
            let raw = member.raw_name.as_str();
            let name = member.name.clone();
            let header = member.entry.header();
            let (dir, base) = match name.rsplit_once('/') {
                Some((dir, base)) => (dir, base),
                None => ("", name.as_str()),
            };
            if let Some(whiteout) = base.strip_prefix(layer::WHITEOUT_PREFIX) {
                if base == layer::OPAQUE_WHITEOUT {
                    members.push(Member::Opaque {
                        dir: dir.to_owned(),
                    });
                } else if !whiteout.starts_with(".wh.") && !whiteout.is_empty() {
                    members.push(Member::Whiteout {
                        name: join(dir, whiteout),
                    });
                }
                // Other `.wh..wh.*` names are aufs metadata: not part of the view.
                continue;
            }
            let node = |kind| -> Result<Node, Error> {
                Ok(Node {
                    kind,
                    mode: header.mode().map_err(read_err)? & 0o7777,
                    uid: header.uid().map_err(read_err)?,
                    gid: header.gid().map_err(read_err)?,
                })
            };
            let link_name = || -> Result<String, Error> {
                let target = member.link_target_bytes().unwrap_or_default();
                String::from_utf8(target.into_owned())
                    .map_err(|_| member_err(raw, "the link target is not valid UTF-8"))
            };
            let member = match member.kind {
                MemberKind::File => Member::Entry {
                    node: node(Kind::File {
                        layer,
                        offset: member.data_offset(),
                        size: member.size(),
                    })?,
                    name,
                },
                MemberKind::Dir => Member::Entry {
                    node: node(Kind::Dir)?,
                    name,
                },
                MemberKind::Symlink => Member::Entry {
                    node: node(Kind::Symlink(link_name()?.into()))?,
                    name,
                },
                MemberKind::HardLink => {
                    let target = link_name()?;
                    let target = normalise_member(&target)
                        .ok_or_else(|| member_err(raw, "the hard link target contains `..`"))?;
                    Member::HardLink {
                        node: node(Kind::Dir)?, // kind replaced by the target's
                        name,
                        target,
                    }
                }
                MemberKind::Device(kind) => {
                    let (major, minor) = member.device_numbers().map_err(read_err)?;
                    Member::Entry {
                        node: node(Kind::Device { kind, major, minor })?,
                        name,
                    }
                }
                MemberKind::GlobalHeader | MemberKind::Other(_) => {
                    return Err(member_err(
                        raw,
                        "the tar member type is not supported in a layer",
                    ))
                }
            };
            members.push(member);
        }
        Ok(members)
    }

    /// Applies one layer's members on the view: its whiteouts first (they act on lower layers
    /// only), then its entries in order.
    fn apply(&mut self, members: Vec<Member>, blob: &Path) -> Result<(), Error> {
        for member in &members {
            match member {
                Member::Whiteout { name } => {
                    let key = self.resolve_path(name, false)?;
                    if !key.is_empty() && self.nodes.remove(&key).is_some() {
                        self.remove_children(&key);
                    }
                }
                Member::Opaque { dir } => {
                    let key = self.resolve_path(dir, true)?;
                    if self.node(&key).is_some_and(Node::is_dir) {
                        self.remove_children(&key);
                    }
                }
                _ => {}
            }
        }
        for member in members {
            match member {
                Member::Entry { name, node } => self.put(&name, node)?,
                Member::HardLink {
                    name,
                    target,
                    mut node,
                } => {
                    let key = self.resolve_path(&target, false)?;
                    node.kind = match self.node(&key).map(|n| &n.kind) {
                        Some(kind @ (Kind::File { .. } | Kind::Symlink(_))) => kind.clone(),
                        _ => {
                            return Err(Error::ReadMember {
                                stage: self.stage.clone(),
                                path: blob.to_path_buf(),
                                member: name,
                                reason: format!(
                                    "a hard link to `{target}`, which is not a file of this or \
                                     a lower layer"
                                ),
                            })
                        }
                    };
                    self.put(&name, node)?;
                }
                Member::Whiteout { .. } | Member::Opaque { .. } => {}
            }
        }
        Ok(())
    }

    /// Puts one entry at `name` (parents resolved through symlinks, missing ones created).
    fn put(&mut self, name: &str, node: Node) -> Result<(), Error> {
        if name.is_empty() {
            if node.is_dir() {
                self.root = node;
            }
            return Ok(());
        }
        let (parent, base) = match name.rsplit_once('/') {
            Some((parent, base)) => (parent, base),
            None => ("", name),
        };
        let parent = self.resolve_path(parent, true)?;
        // Make every component of the parent a directory.
        let mut end = 0;
        while end < parent.len() {
            end = parent[end..].find('/').map_or(parent.len(), |i| end + i);
            let dir = &parent[..end];
            match self.nodes.get(dir) {
                Some(n) if n.is_dir() => {}
                _ => {
                    self.nodes.insert(dir.to_owned(), Node::implicit_dir());
                }
            }
            end += 1;
        }
        let key = join(&parent, base);
        debug_assert!(is_normalised(&key));
        let new_is_dir = node.is_dir();
        match self.nodes.insert(key.clone(), node) {
            Some(old) if old.is_dir() && !new_is_dir => self.remove_children(&key),
            _ => {}
        }
        Ok(())
    }
}
