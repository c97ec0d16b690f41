//! The member scanner: every tar we read (imported tarballs, stage layers, OCI and Docker
//! archives) is walked by [`Members`], which names each member under a [`NamePolicy`] and, when
//! the tar's length is known, refuses a tar that ends early.
//!
//! The tar crate ends its walk quietly where the bytes end, even inside a member: a tar that
//! ends inside a member's header, data or padding would read as a shorter archive. Given the
//! length ([`Members::with_length`]), the scanner checks where each member's data and padding
//! end against it and reports [`Error::Truncated`] with the byte the tar ends at and where that
//! is (inside which member, header or padding). A tar without its two zero end blocks is still
//! read, as GNU tar reads it; [`Members::with_data_length`] also reads one whose last member lacks
//! its padding (image layers some writers end right after the data).
//!
//! The checks run in one order for every caller and every member (a global PAX header too, though
//! callers then skip it): the header is read, the name decoded (UTF-8 under
//! [`NamePolicy::Layer`]), the data checked against the length, and the name normalised
//! ([`normalise`]).

use std::borrow::Cow;
use std::io::{self, Read};

use tar::EntryType;

use super::names::{normalise, NameError, NamePolicy};
use super::writer::DeviceKind;
use super::BLOCK;

/// Why a tar could not be walked, or one of its members is refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or parsing the tar failed.
    #[error("cannot read the tar")]
    Read(#[source] io::Error),
    /// The tar ends at byte `offset`, inside a member (`detail` says where).
    #[error("the tar ends at byte {offset}, {detail}")]
    Truncated { offset: u64, detail: String },
    /// A member name that is not UTF-8 ([`NamePolicy::Layer`]); `name` is read lossily.
    #[error("member `{name}`: the name is not valid UTF-8")]
    NotUtf8 { name: String },
    /// A member name the policy refuses; `name` as written.
    #[error("member `{name}`: {reason}")]
    Name { name: String, reason: NameError },
}

/// What a member is, by its tar entry type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular (or contiguous) file.
    File,
    Dir,
    Symlink,
    HardLink,
    /// A global PAX header: defaults for later members (the tar crate applies the per-member
    /// ones), not a path.
    GlobalHeader,
    /// A character or block device, or a fifo.
    Device(DeviceKind),
    /// Any other entry type (sparse files, GNU volume headers, ...).
    Other(EntryType),
}

impl Kind {
    fn of(t: EntryType) -> Kind {
        match t {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::HardLink,
            EntryType::XGlobalHeader => Kind::GlobalHeader,
            EntryType::Char => Kind::Device(DeviceKind::Char),
            EntryType::Block => Kind::Device(DeviceKind::Block),
            EntryType::Fifo => Kind::Device(DeviceKind::Fifo),
            other => Kind::Other(other),
        }
    }
}

/// One member of a tar, its name checked.
pub struct Member<'a, R: Read> {
    /// The tar crate's entry: header, link name, and the data as a reader.
    pub entry: tar::Entry<'a, R>,
    /// The name as written (read lossily when it is not UTF-8).
    pub raw_name: String,
    /// The normalised name (`""` for the root).
    pub name: String,
    pub kind: Kind,
}

impl<R: Read> Member<'_, R> {
    /// The entry type as the tar says it.
    pub fn entry_type(&self) -> EntryType {
        self.entry.header().entry_type()
    }

    /// Where the member's data starts in the (uncompressed) tar.
    pub fn data_offset(&self) -> u64 {
        self.entry.raw_file_position()
    }

    /// The size of the member's data.
    pub fn size(&self) -> u64 {
        self.entry.size()
    }

    /// The `(major, minor)` numbers of a device member; `(0, 0)` for a fifo, whose numbers
    /// mean nothing (GNU tar leaves the fields empty).
    pub fn device_numbers(&self) -> io::Result<(u32, u32)> {
        if self.kind == Kind::Device(DeviceKind::Fifo) {
            return Ok((0, 0));
        }
        let header = self.entry.header();
        Ok((
            header.device_major()?.unwrap_or(0),
            header.device_minor()?.unwrap_or(0),
        ))
    }

    /// The link target as written (hard and symbolic links), `None` when there is none.
    pub fn link_target_bytes(&self) -> Option<Cow<'_, [u8]>> {
        self.entry.link_name_bytes()
    }
}

/// Walks the members of a tar; see the module docs.
pub struct Members<'a, R: Read> {
    entries: tar::Entries<'a, R>,
    policy: NamePolicy,
    /// The tar's length in bytes, when known: truncation is checked against it.
    len: Option<u64>,
    /// Whether the last member's padding must be within `len`.
    padded: bool,
    /// Where the next header starts (the padded end of the last member).
    next_header: u64,
    /// The last member's name as written, for messages.
    last: Option<String>,
    done: bool,
}

impl<'a, R: Read> Members<'a, R> {
    /// Walks `entries` (from [`tar::Archive::entries`] or `entries_with_seek`) under `policy`,
    /// without truncation checks (the length is not known).
    pub fn new(entries: tar::Entries<'a, R>, policy: NamePolicy) -> Self {
        Members {
            entries,
            policy,
            len: None,
            padded: false,
            next_header: 0,
            last: None,
            done: false,
        }
    }

    /// As [`Members::new`], for a tar of `len` bytes: a tar that ends inside a member's header,
    /// data or padding is [`Error::Truncated`].
    pub fn with_length(entries: tar::Entries<'a, R>, policy: NamePolicy, len: u64) -> Self {
        Members {
            len: Some(len),
            padded: true,
            ..Members::new(entries, policy)
        }
    }

    /// As [`Members::with_length`], except that the last member may lack its padding: a tar
    /// that ends inside a member's header or data is still [`Error::Truncated`].
    pub fn with_data_length(entries: tar::Entries<'a, R>, policy: NamePolicy, len: u64) -> Self {
        Members {
            padded: false,
            ..Members::with_length(entries, policy, len)
        }
    }

    fn after_last(&self) -> String {
        match &self.last {
            Some(name) => format!("after member `{name}`"),
            None => "at its start".to_owned(),
        }
    }

    fn truncated(&self, detail: String) -> Error {
        Error::Truncated {
            offset: self.len.unwrap_or_default(),
            detail,
        }
    }

    fn member(&mut self, entry: tar::Entry<'a, R>) -> Result<Member<'a, R>, Error> {
        let kind = Kind::of(entry.header().entry_type());
        let raw = entry.path_bytes();
        let raw_name = match (self.policy, std::str::from_utf8(&raw)) {
            (_, Ok(name)) => name.to_owned(),
            (NamePolicy::Extract, Err(_)) => String::from_utf8_lossy(&raw).into_owned(),
            (NamePolicy::Layer, Err(_)) => {
                return Err(Error::NotUtf8 {
                    name: String::from_utf8_lossy(&raw).into_owned(),
                })
            }
        };
        drop(raw);
        if let Some(len) = self.len {
            let data_start = entry.raw_file_position();
            let data_end = data_start + entry.size();
            if data_end > len {
                return Err(self.truncated(format!(
                    "inside member `{raw_name}`, whose data runs from byte {data_start} to {data_end}"
                )));
            }
            self.next_header = data_end.next_multiple_of(BLOCK);
            self.last = Some(raw_name.clone());
        }
        let name = normalise(&raw_name, self.policy).map_err(|reason| Error::Name {
            name: raw_name.clone(),
            reason,
        })?;
        Ok(Member {
            entry,
            raw_name,
            name,
            kind,
        })
    }
}

impl<'a, R: Read> Iterator for Members<'a, R> {
    type Item = Result<Member<'a, R>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let entry = match self.entries.next() {
            Some(Ok(entry)) => entry,
            Some(Err(e)) => {
                self.done = true;
                return Some(Err(match self.len {
                    Some(len)
                        if len < self.next_header + BLOCK
                            || e.kind() == io::ErrorKind::UnexpectedEof =>
                    {
                        self.truncated(format!("inside the tar header {}", self.after_last()))
                    }
                    _ => Error::Read(e),
                }));
            }
            None => {
                self.done = true;
                return match self.len {
                    Some(len) if self.padded && self.next_header > len => Some(Err(
                        self.truncated(format!("inside the padding {}", self.after_last()))
                    )),
                    _ => None,
                };
            }
        };
        let member = self.member(entry);
        if member.is_err() {
            self.done = true;
        }
        Some(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarball::{EntryHeader, EntryKind, HeaderFormat, TarWriter};

    /// A tar of `dir/` and `dir/file` (700 bytes: data ends inside the second block).
    fn tar() -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new(), 0, HeaderFormat::Pax);
        w.header(&EntryHeader {
            path: "./dir",
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
        })
        .unwrap();
        w.bytes("dir/file", 0o644, &[b'x'; 700]).unwrap();
        w.finish().unwrap()
    }

    fn scan(bytes: &[u8], policy: NamePolicy) -> Result<Vec<(String, Kind)>, Error> {
        scan_padded(bytes, policy, true)
    }

    /// [`Members::with_length`] when `padded`, else [`Members::with_data_length`].
    fn scan_padded(
        bytes: &[u8],
        policy: NamePolicy,
        padded: bool,
    ) -> Result<Vec<(String, Kind)>, Error> {
        // Seekable, as a tar imported from a file is read.
        let mut archive = tar::Archive::new(std::io::Cursor::new(bytes));
        let entries = archive.entries_with_seek().unwrap();
        let len = bytes.len() as u64;
        let members = if padded {
            Members::with_length(entries, policy, len)
        } else {
            Members::with_data_length(entries, policy, len)
        };
        members.map(|m| m.map(|m| (m.name, m.kind))).collect()
    }

    #[test]
    fn members_are_named_and_classified() {
        assert_eq!(
            scan(&tar(), NamePolicy::Layer).unwrap(),
            [
                ("dir".to_owned(), Kind::Dir),
                ("dir/file".to_owned(), Kind::File)
            ]
        );
    }

    #[test]
    fn a_tar_cut_anywhere_inside_a_member_is_truncated_with_the_offset() {
        let tar = tar();
        for (cut, detail) in [
            (100, "inside the tar header at its start"),
            (512 + 100, "inside the tar header after member `./dir/`"),
            (
                1024 + 300,
                "inside member `dir/file`, whose data runs from byte 1024 to 1724",
            ),
            (1024 + 800, "inside the padding after member `dir/file`"),
        ] {
            match scan(&tar[..cut], NamePolicy::Layer) {
                Err(Error::Truncated { offset, detail: d }) => {
                    assert_eq!((offset, d.as_str()), (cut as u64, detail), "cut at {cut}")
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // Without its end blocks a tar is still whole.
        assert!(scan(&tar[..2048], NamePolicy::Layer).is_ok());
        // Checking the data only, a last member without its padding is whole too; every other
        // cut is the same error.
        assert_eq!(
            scan_padded(&tar[..1024 + 700], NamePolicy::Layer, false).unwrap(),
            scan(&tar, NamePolicy::Layer).unwrap()
        );
        for cut in [100, 512 + 100, 1024 + 300] {
            assert_eq!(
                scan_padded(&tar[..cut], NamePolicy::Layer, false)
                    .unwrap_err()
                    .to_string(),
                scan(&tar[..cut], NamePolicy::Layer)
                    .unwrap_err()
                    .to_string(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn names_are_checked_under_the_policy() {
        let mut bytes = Vec::new();
        let mut b = tar::Builder::new(&mut bytes);
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.as_gnu_mut().unwrap().name[..6].copy_from_slice(b"/etc/x");
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        b.finish().unwrap();
        drop(b);
        assert_eq!(
            scan(&bytes, NamePolicy::Layer).unwrap(),
            [("etc/x".to_owned(), Kind::File)]
        );
        match scan(&bytes, NamePolicy::Extract) {
            Err(Error::Name { name, reason }) => {
                assert_eq!((name.as_str(), reason), ("/etc/x", NameError::Absolute))
            }
            other => panic!("{other:?}"),
        }
    }
}
