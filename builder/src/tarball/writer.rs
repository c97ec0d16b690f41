//! The deterministic tar writer, for layer blobs and for OCI and Docker archives: headers built
//! by hand, content streamed through one reused buffer.
//!
//! Every header is a pure function of the entry and the writer's mtime:
//! - ustar format (`ustar\0`, version `00`), numeric fields in zero-padded octal, NUL-terminated;
//! - directories named `path/`, files `path`, symlinks with their target as link name;
//!   character and block devices and fifos ([`DeviceKind`]) with their major and minor numbers
//!   in the ustar `devmajor`/`devminor` fields (0 for every other entry and for fifos);
//! - mtime = the writer's mtime, uid/gid numeric, user and group names empty, no atime/ctime,
//!   no xattrs.
//!
//! Layers and archives have always differed in two details of the header, and their bytes (and
//! so every golden digest) depend on them, so the writer takes a [`HeaderFormat`]:
//! - [`HeaderFormat::Pax`] (layers, `tar1` in the layer format version): the checksum is six
//!   octal digits, a NUL and a space (as GNU tar writes it). A name or link target longer than
//!   100 bytes, a uid/gid above `0o7777777`, a size of 8 GiB or more, or an mtime past
//!   `0o77777777777` goes into a PAX extended header (`x`) written just before the entry:
//!   records in a fixed (alphabetical) order, named `PaxHeaders/<file name>`, mode 0644, owner
//!   0:0, the writer's mtime. The ustar field then holds a truncated name or 0.
//! - [`HeaderFormat::Ustar`] (OCI and Docker archives): the checksum is seven octal digits and a
//!   NUL (as the tar crate writes it). A name longer than 100 bytes is split at a `/` into the
//!   ustar prefix and name fields (an error when no `/` allows it), and a number too large for
//!   its octal field is written in base-256 (the GNU binary form). No PAX headers.
//!
//! The archive ends with two zero blocks ([`TarWriter::finish`]).

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::BLOCK;

/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_12: u64 = 0o77777777777;
/// Size of the buffer content is copied through.
const COPY_BUF: usize = 1 << 20;

const TYPE_FILE: u8 = b'0';
const TYPE_SYMLINK: u8 = b'2';
const TYPE_CHAR: u8 = b'3';
const TYPE_BLOCK: u8 = b'4';
const TYPE_FIFO: u8 = b'6';
const TYPE_DIR: u8 = b'5';
const TYPE_PAX: u8 = b'x';

/// How headers hold what ustar cannot, and how the checksum is written; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFormat {
    /// Layer blobs: PAX records for long names and large numbers; checksum `NNNNNN\0 `.
    Pax,
    /// OCI and Docker archives: ustar prefix split, base-256 numbers; checksum `NNNNNNN\0`.
    Ustar,
}

/// What an entry is, for its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind<'a> {
    /// A regular file of `size` bytes; its content follows the header.
    File { size: u64 },
    /// A directory (named `path/` in the tar).
    Dir,
    /// A symbolic link to `target`.
    Symlink { target: &'a str },
    /// A character or block device (numbers `major`, `minor`) or a fifo (numbers 0).
    Device {
        kind: DeviceKind,
        major: u32,
        minor: u32,
    },
}

/// What a device entry is: its tar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// A character device (type `3`).
    Char,
    /// A block device (type `4`).
    Block,
    /// A named pipe (type `6`).
    Fifo,
}

impl DeviceKind {
    /// What it is, in words: `character device`, `block device`, `named pipe (fifo)`.
    pub fn describe(self) -> &'static str {
        match self {
            DeviceKind::Char => "character device",
            DeviceKind::Block => "block device",
            DeviceKind::Fifo => "named pipe (fifo)",
        }
    }

    /// A short name for keys and listings: `char`, `block`, `fifo`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Char => "char",
            DeviceKind::Block => "block",
            DeviceKind::Fifo => "fifo",
        }
    }

    fn typeflag(self) -> u8 {
        match self {
            DeviceKind::Char => TYPE_CHAR,
            DeviceKind::Block => TYPE_BLOCK,
            DeviceKind::Fifo => TYPE_FIFO,
        }
    }
}

/// The fields of one entry's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader<'a> {
    /// The path in the tar, without a trailing `/`.
    pub path: &'a str,
    pub kind: EntryKind<'a>,
    /// Permission bits (masked to `0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// Why copying an entry's content failed: reading the source or writing the tar.
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Writes tar entries to `out` (which should be buffered); see the module docs.
pub struct TarWriter<W: Write> {
    out: W,
    format: HeaderFormat,
    mtime: u64,
    /// The reused content buffer.
    buf: Vec<u8>,
    /// The reused name buffer (`path/` for directories).
    name: String,
    /// The reused PAX records buffer.
    pax: Vec<u8>,
}

/// The fields of one ustar header block.
struct Header<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &'a [u8],
    /// `devmajor`, `devminor`.
    device: (u32, u32),
}

impl<W: Write> TarWriter<W> {
    /// A writer into `out` dating every entry `mtime` (seconds since the epoch).
    pub fn new(out: W, mtime: u64, format: HeaderFormat) -> Self {
        TarWriter {
            out,
            format,
            mtime,
            buf: Vec::new(),
            name: String::new(),
            pax: Vec::new(),
        }
    }

    /// The output, to write to it directly (it must stay block-aligned).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes one entry's header(s). A file's content must follow: [`Self::copy_content`] and
    /// [`Self::end_content`], or [`Self::bytes`].
    pub fn header(&mut self, entry: &EntryHeader<'_>) -> io::Result<()> {
        self.name.clear();
        self.name.push_str(entry.path);
        let mut device = (0, 0);
        let (typeflag, size, link) = match entry.kind {
            EntryKind::File { size } => (TYPE_FILE, size, ""),
            EntryKind::Dir => {
                self.name.push('/');
                (TYPE_DIR, 0, "")
            }
            EntryKind::Symlink { target } => (TYPE_SYMLINK, 0, target),
            EntryKind::Device { kind, major, minor } => {
                if u64::from(major.max(minor)) > MAX_OCTAL_8 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "device `{}` {major}:{minor}: a device number above {MAX_OCTAL_8} \
                             does not fit a ustar header",
                            entry.path
                        ),
                    ));
                }
                device = (major, minor);
                (kind.typeflag(), 0, "")
            }
        };
        let name = std::mem::take(&mut self.name);
        let header = Header {
            name: name.as_bytes(),
            mode: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            size,
            mtime: self.mtime,
            typeflag,
            link: link.as_bytes(),
            device,
        };
        let written = self.write_header(&header);
        self.name = name;
        written
    }

    /// A file entry holding `bytes`, owned by `0:0`.
    pub fn bytes(&mut self, path: &str, mode: u32, bytes: &[u8]) -> io::Result<()> {
        self.header(&EntryHeader {
            path,
            kind: EntryKind::File {
                size: bytes.len() as u64,
            },
            mode,
            uid: 0,
            gid: 0,
        })?;
        self.out.write_all(bytes)?;
        self.end_content(bytes.len() as u64, bytes.len() as u64)
    }

    /// Copies up to `size` bytes of `from` as the content of the file entry just written,
    /// passing each piece to `seen` (a hasher) too; returns how many bytes `from` gave. The
    /// entry is ended by [`Self::end_content`].
    pub fn copy_content(
        &mut self,
        from: &mut impl Read,
        size: u64,
        seen: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, CopyError> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; COPY_BUF];
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match from.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            seen(&self.buf[..n]);
            self.out
                .write_all(&self.buf[..n])
                .map_err(CopyError::Write)?;
            left -= n as u64;
        }
        Ok(size - left)
    }

    /// Ends a file entry of `size` bytes of which `copied` were written: zeros for the missing
    /// bytes (so the tar stays well formed when the caller reports a short source), then zeros
    /// up to the next block.
    pub fn end_content(&mut self, size: u64, copied: u64) -> io::Result<()> {
        let zeros = [0u8; BLOCK as usize];
        let mut missing = size.saturating_sub(copied);
        while missing > 0 {
            let n = missing.min(BLOCK);
            self.out.write_all(&zeros[..n as usize])?;
            missing -= n;
        }
        self.out.write_all(&zeros[..padding(size)])
    }

    /// Ends the archive with two zero blocks and returns the output. It is not flushed: a
    /// flush could reach an encoder below the output and change its bytes (a gzip block ends
    /// early); the caller ends its own writers (`BufWriter::into_inner` writes without one).
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK as usize])?;
        Ok(self.out)
    }

    fn write_header(&mut self, h: &Header<'_>) -> io::Result<()> {
        match self.format {
            HeaderFormat::Pax => {
                self.write_pax(h)?;
                self.out.write_all(&ustar(h, HeaderFormat::Pax)?)
            }
            HeaderFormat::Ustar => self.out.write_all(&ustar(h, HeaderFormat::Ustar)?),
        }
    }

    /// The PAX extended header for what `h`'s ustar fields cannot hold, if anything.
    fn write_pax(&mut self, h: &Header<'_>) -> io::Result<()> {
        self.pax.clear();
        // Records in alphabetical order of their keys.
        if h.gid > MAX_OCTAL_8 {
            pax_record(&mut self.pax, "gid", h.gid.to_string().as_bytes());
        }
        if h.link.len() > 100 {
            pax_record(&mut self.pax, "linkpath", h.link);
        }
        if h.mtime > MAX_OCTAL_12 {
            pax_record(&mut self.pax, "mtime", h.mtime.to_string().as_bytes());
        }
        if h.name.len() > 100 {
            pax_record(&mut self.pax, "path", h.name);
        }
        if h.size > MAX_OCTAL_12 {
            pax_record(&mut self.pax, "size", h.size.to_string().as_bytes());
        }
        if h.uid > MAX_OCTAL_8 {
            pax_record(&mut self.pax, "uid", h.uid.to_string().as_bytes());
        }
        if self.pax.is_empty() {
            return Ok(());
        }
        let mut pax_name = Vec::with_capacity(100);
        pax_name.extend_from_slice(b"PaxHeaders/");
        let base = h.name.strip_suffix(b"/").unwrap_or(h.name);
        let base = base.rsplit(|&c| c == b'/').next().unwrap_or(base);
        pax_name.extend_from_slice(truncate_utf8(base, 100 - pax_name.len()));
        let pax_header = Header {
            name: &pax_name,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: self.pax.len() as u64,
            mtime: h.mtime.min(MAX_OCTAL_12),
            typeflag: TYPE_PAX,
            link: b"",
            device: (0, 0),
        };
        self.out
            .write_all(&ustar(&pax_header, HeaderFormat::Pax)?)?;
        self.out.write_all(&self.pax)?;
        self.out
            .write_all(&[0u8; BLOCK as usize][..padding(self.pax.len() as u64)])
    }
}

impl<W: Write + Seek> TarWriter<W> {
    /// A file entry (mode `mode`, owner `0:0`) of everything `content` gives, whose size is not
    /// known beforehand: the header is written with size 0, the content streamed (each piece
    /// passed to `seen`), then the header rewritten with the real size. Returns the size.
    pub fn file_streamed(
        &mut self,
        path: &str,
        mode: u32,
        content: &mut impl Read,
        seen: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, CopyError> {
        let header = |size| EntryHeader {
            path,
            kind: EntryKind::File { size },
            mode,
            uid: 0,
            gid: 0,
        };
        let start = self.out.stream_position().map_err(CopyError::Write)?;
        self.header(&header(0)).map_err(CopyError::Write)?;
        let size = self.copy_content(content, u64::MAX, seen)?;
        self.end_content(size, size).map_err(CopyError::Write)?;
        let end = self.out.stream_position().map_err(CopyError::Write)?;
        self.out
            .seek(SeekFrom::Start(start))
            .map_err(CopyError::Write)?;
        self.header(&header(size)).map_err(CopyError::Write)?;
        if self.out.stream_position().map_err(CopyError::Write)? != start + BLOCK {
            return Err(CopyError::Write(io::Error::other(
                "the rewritten header does not fit where the first one was",
            )));
        }
        self.out
            .seek(SeekFrom::Start(end))
            .map_err(CopyError::Write)?;
        Ok(size)
    }
}

/// Zero bytes after `size` bytes of data up to the next block boundary.
pub fn padding(size: u64) -> usize {
    ((BLOCK - size % BLOCK) % BLOCK) as usize
}

/// The longest prefix of `bytes` of at most `max` bytes that does not split a UTF-8 character.
fn truncate_utf8(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    let mut end = max;
    // Back off continuation bytes (10xxxxxx) so a multi-byte character is not cut.
    while end > 0 && bytes[end] & 0xc0 == 0x80 {
        end -= 1;
    }
    &bytes[..end]
}

/// Appends the PAX record `"<len> <key>=<value>\n"` (the length counts itself).
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let base = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = base + 1;
    loop {
        let next = base + decimal_digits(len);
        if next == len {
            break;
        }
        len = next;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn decimal_digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// A ustar header block in `format`. Under [`HeaderFormat::Pax`], values that do not fit are
/// truncated (names) or 0 (numbers): the PAX header before it carries them. Under
/// [`HeaderFormat::Ustar`], a long name is split into prefix and name (an error when it cannot
/// be) and a large number is written in base-256.
fn ustar(h: &Header<'_>, format: HeaderFormat) -> io::Result<[u8; BLOCK as usize]> {
    let mut b = [0u8; BLOCK as usize];
    match format {
        HeaderFormat::Pax => {
            let name = truncate_utf8(h.name, 100);
            b[..name.len()].copy_from_slice(name);
            octal(&mut b[100..108], u64::from(h.mode));
            octal(
                &mut b[108..116],
                if h.uid > MAX_OCTAL_8 { 0 } else { h.uid },
            );
            octal(
                &mut b[116..124],
                if h.gid > MAX_OCTAL_8 { 0 } else { h.gid },
            );
            octal(
                &mut b[124..136],
                if h.size > MAX_OCTAL_12 { 0 } else { h.size },
            );
            octal(
                &mut b[136..148],
                if h.mtime > MAX_OCTAL_12 { 0 } else { h.mtime },
            );
            let link = truncate_utf8(h.link, 100);
            b[157..157 + link.len()].copy_from_slice(link);
        }
        HeaderFormat::Ustar => {
            split_name(&mut b, h.name)?;
            octal(&mut b[100..108], u64::from(h.mode));
            number(&mut b[108..116], h.uid, MAX_OCTAL_8);
            number(&mut b[116..124], h.gid, MAX_OCTAL_8);
            number(&mut b[124..136], h.size, MAX_OCTAL_12);
            number(&mut b[136..148], h.mtime, MAX_OCTAL_12);
            if h.link.len() > 100 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a link target longer than 100 bytes does not fit a ustar header",
                ));
            }
            b[157..157 + h.link.len()].copy_from_slice(h.link);
        }
    }
    b[156] = h.typeflag;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname, gname: empty. devmajor, devminor: the device's numbers (checked to fit), else 0.
    octal(&mut b[329..337], u64::from(h.device.0));
    octal(&mut b[337..345], u64::from(h.device.1));
    // The checksum is computed with its own field as spaces.
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    match format {
        // Six octal digits, a NUL and a space.
        HeaderFormat::Pax => {
            octal(&mut b[148..155], u64::from(sum));
            b[155] = b' ';
        }
        // Seven octal digits and a NUL.
        HeaderFormat::Ustar => octal(&mut b[148..156], u64::from(sum)),
    }
    Ok(b)
}

/// Puts `name` in the ustar name field, or split between prefix and name at a `/`.
fn split_name(b: &mut [u8; BLOCK as usize], name: &[u8]) -> io::Result<()> {
    const NAME: usize = 100;
    const PREFIX: usize = 155;
    if name.len() <= NAME {
        b[..name.len()].copy_from_slice(name);
        return Ok(());
    }
    // The split point: the last `/` with at most 155 bytes before it and at most 100 after.
    let split = name
        .iter()
        .enumerate()
        .filter(|&(i, &c)| c == b'/' && i <= PREFIX && name.len() - i - 1 <= NAME)
        .map(|(i, _)| i)
        .next_back();
    let Some(split) = split.filter(|&i| i > 0 && i + 1 < name.len()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "entry name `{}` is too long for a ustar header",
                String::from_utf8_lossy(name)
            ),
        ));
    };
    b[345..345 + split].copy_from_slice(&name[..split]);
    let rest = &name[split + 1..];
    b[..rest.len()].copy_from_slice(rest);
    Ok(())
}

/// Writes `value` in octal when it is at most `max`, else in base-256 (the high bit of the
/// first byte set, the value big-endian in the last eight bytes), as the tar crate does.
fn number(field: &mut [u8], value: u64, max: u64) {
    if value <= max {
        octal(field, value);
        return;
    }
    let len = field.len();
    field.fill(0);
    field[len - 8..].copy_from_slice(&value.to_be_bytes());
    field[0] |= 0x80;
}

/// Writes `value` as zero-padded octal digits filling `field` but its last byte, which is NUL.
fn octal(field: &mut [u8], mut value: u64) {
    let digits = field.len() - 1;
    for i in (0..digits).rev() {
        field[i] = b'0' + (value & 7) as u8;
        value >>= 3;
    }
    field[digits] = 0;
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
