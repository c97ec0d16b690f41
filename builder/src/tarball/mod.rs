//! The tar toolkit: everything the crate knows about tar bytes, in one place, for layers (the
//! `layer` module), stage filesystems ([`crate::rootfs`]) and OCI / Docker archives
//! ([`crate::oci`]).
//!
//! # Brief overview
//!
//! - **Compression** ([`Format`], [`decompress`], [`decompress_to_temp`], [`WriteDecoder`]): a
//!   tar or blob is plain, gzip or zstd, told by its magic bytes, and undone by a reader, a
//!   temporary plain copy or a writer fed by push.
//! - **Names** ([`NamePolicy`], [`normalise`], [`resolve_symlink`]): the path-safety rules for
//!   member names and link targets: what is normalised and what is refused, for members that
//!   land in an image filesystem and for members written to the host.
//! - **Reading** ([`Members`]): the member scanner every tar reader walks; it names each member
//!   under a policy, classifies it ([`Kind`]) and, given the tar's length, refuses a tar that
//!   ends inside a member with the byte it ends at.
//! - **Writing** ([`TarWriter`]): the deterministic writer of layer blobs and archives; headers
//!   by hand, one mtime, numeric owners, in one of two [`HeaderFormat`]s that keep the bytes
//!   layers and archives have always had.
//!
//! ```
//! use cargo_oci_image::tarball::{
//!     EntryHeader, EntryKind, HeaderFormat, Members, NamePolicy, TarWriter,
//! };
//!
//! let mut w = TarWriter::new(Vec::new(), 0, HeaderFormat::Pax);
//! w.header(&EntryHeader { path: "etc", kind: EntryKind::Dir, mode: 0o755, uid: 0, gid: 0 })?;
//! w.bytes("etc/motd", 0o644, b"hi\n")?;
//! let tar = w.finish()?;
//!
//! let mut archive = tar::Archive::new(&tar[..]);
//! let members = Members::with_length(archive.entries()?, NamePolicy::Layer, tar.len() as u64);
//! let names: Vec<String> = members.map(|m| m.map(|m| m.name)).collect::<Result<_, _>>()?;
//! assert_eq!(names, ["etc", "etc/motd"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! It depends on no other module of the crate: callers turn its errors into their own, with
//! their own messages.

mod compression;
mod members;
mod names;
mod writer;

pub use compression::{
    decoder, decompress, decompress_to_temp, read_magic, Format, WriteDecoder, MAGIC_LEN,
};
pub use members::{Error, Kind, Member, Members};
pub use names::{normalise, normalise_member, resolve_symlink, NameError, NamePolicy};
pub use writer::{padding, CopyError, DeviceKind, EntryHeader, EntryKind, HeaderFormat, TarWriter};

/// The tar block size: a header, and the unit member data is padded to.
pub const BLOCK: u64 = 512;

/// Whether `head` (the first bytes of an uncompressed stream) starts a tar: a first block that
/// is all zeros (an empty archive) or a header whose checksum is right.
pub fn is_tar_start(head: &[u8]) -> bool {
    let block = BLOCK as usize;
    if head.len() < block {
        return false;
    }
    let head = &head[..block];
    if head.iter().all(|b| *b == 0) {
        return true;
    }
    // The checksum field (148..156) counts as spaces; octal, NUL- or space-terminated.
    let sum: u32 = head
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    let field = String::from_utf8_lossy(&head[148..156]);
    let field = field.trim_matches(|c: char| c == '\0' || c == ' ');
    u32::from_str_radix(field, 8).is_ok_and(|stored| stored == sum)
}
