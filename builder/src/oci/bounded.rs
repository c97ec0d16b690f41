//! Bounded reads of untrusted bytes: every document and blob of a base image is read with a
//! limit, so a hostile or broken source ends in an error instead of filling memory or disk.
//!
//! A base image comes from outside (a layout someone else wrote, an archive, a registry), and
//! its files may be anything: a symbolic link to `/dev/zero` is endless, a FIFO blocks the
//! reader forever, a huge `index.json` eats the memory of the process. So:
//!
//! - [`open_regular`] opens a file of a layout only if it is a regular file (symbolic links to
//!   one are followed), without blocking on a FIFO (`O_NONBLOCK`, then `fstat` of the opened
//!   descriptor, so no race between the check and the read);
//! - [`read_limited`] reads at most a given number of bytes and fails past it; JSON documents
//!   (image index, manifest, config, `oci-layout`, docker `manifest.json`) are read at most
//!   [`MAX_JSON_BYTES`], the limit registries apply to manifests (containerd and distribution
//!   use 4 MiB);
//! - blobs are read exactly their descriptor's size (one byte more is read to see a lie) and
//!   hashed against its digest by the callers.
//!
//! The errors are [`io::Error`]s wrapping an [`Error`] of this module, so the callers' own
//! error variants (which name the file, the blob and the image) carry them as their source.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

/// The most bytes read of one JSON document of an image (index, manifest, config): 4 MiB, as
/// containerd and the CNCF distribution registry allow for a manifest.
pub const MAX_JSON_BYTES: u64 = 4 << 20;

/// Why an untrusted file or body was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("it is {kind}, not a regular file; an image's blobs and documents must be regular files: replace it with the file it stands for")]
    NotRegular { kind: &'static str },

    #[error("it holds more than the {limit} bytes allowed for {what}; it is not a valid {what} (is the source corrupt or hostile?)")]
    TooLarge { what: &'static str, limit: u64 },
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Opens `path` for reading if it is a regular file (a symbolic link to one is followed). A
/// FIFO, device, socket or directory is refused without blocking and without reading from it.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO with no writer would block `open` itself; O_NONBLOCK lets it return, and the
        // file type is then checked on the opened descriptor. Regular files ignore the flag.
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = options.open(path)?;
    let file_type = file.metadata()?.file_type();
    if file_type.is_file() {
        return Ok(file);
    }
    Err(Error::NotRegular {
        kind: describe(&file_type),
    }
    .into())
}

/// What a non-regular file is, for an error message.
fn describe(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads all of `reader`, failing with [`Error::TooLarge`] (naming `what`) once it yields more
/// than `limit` bytes. At most `limit + 1` bytes are read.
pub fn read_limited(reader: impl Read, limit: u64, what: &'static str) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge { what, limit }.into());
    }
    Ok(bytes)
}

/// Reads the JSON document (`what`: "image index", "docker manifest.json", ...) at `path`: a
/// regular file of at most [`MAX_JSON_BYTES`].
pub fn read_json_file(path: &Path, what: &'static str) -> io::Result<Vec<u8>> {
    read_limited(open_regular(path)?, MAX_JSON_BYTES, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(e: &io::Error) -> &Error {
        e.get_ref()
            .and_then(|e| e.downcast_ref::<Error>())
            .expect("a bounded::Error")
    }

    #[test]
    fn a_regular_file_opens_and_a_link_to_it_too() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        open_regular(&file).unwrap();
        #[cfg(unix)]
        {
            let link = dir.path().join("l");
            std::os::unix::fs::symlink(&file, &link).unwrap();
            open_regular(&link).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_dev_zero_is_refused_as_a_character_device() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = open_regular(&link).unwrap_err();
        assert!(matches!(
            inner(&e),
            Error::NotRegular {
                kind: "a character device"
            }
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let e = open_regular(&fifo).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_regular(dir.path()).unwrap_err();
        assert!(matches!(inner(&e), Error::NotRegular { .. }), "{e}");
    }

    #[test]
    fn reads_stop_one_byte_past_the_limit() {
        assert_eq!(read_limited(&b"abcd"[..], 4, "x").unwrap(), b"abcd");
        let endless = io::repeat(0);
        let e = read_limited(endless, 1024, "image index").unwrap_err();
        assert!(matches!(
            inner(&e),
            Error::TooLarge {
                what: "image index",
                limit: 1024
            }
        ));
    }
}
