//! The deterministic tar writer: ustar headers built by hand, PAX records when a value does not
//! fit, file content streamed through one reused buffer.
//!
//! Every header is a pure function of the entry and the layer mtime:
//! - ustar format (`ustar\0`, version `00`), numeric fields in zero-padded octal, NUL-terminated;
//! - directories named `path/`, files `path`, symlinks with their target as link name;
//! - mtime = the layer mtime, uid/gid numeric, user and group names empty, devmajor/devminor 0,
//!   no atime/ctime, no xattrs;
//! - a name or link target longer than 100 bytes, a uid/gid above `0o7777777`, a size of 8 GiB or
//!   more, or an mtime past `0o77777777777` goes into a PAX extended header (`x`) written just
//!   before the entry: records in a fixed (alphabetical) order, named `PaxHeaders/<file name>`,
//!   mode 0644, owner 0:0, the layer mtime. The ustar field then holds a truncated name or 0.
//!
//! The archive ends with two zero blocks.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use super::tree::{Entry, EntryKind, FileSource, ImportedArchive};
use super::Error;

/// The tar block size.
pub(crate) const BLOCK: usize = 512;
/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_12: u64 = 0o77777777777;
/// Size of the buffer file content is read through.
const READ_BUF: usize = 1 << 20;

const TYPE_FILE: u8 = b'0';
const TYPE_SYMLINK: u8 = b'2';
const TYPE_DIR: u8 = b'5';
const TYPE_PAX: u8 = b'x';

/// Writes tar entries to `out` (which should be buffered).
pub(crate) struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
    /// The reused content buffer.
    buf: Vec<u8>,
    /// The reused name buffer (`path/` for directories).
    name: String,
    /// The reused PAX records buffer.
    pax: Vec<u8>,
    /// The archive file last read from, kept open for its next member.
    archive: Option<(Arc<ImportedArchive>, File)>,
}

/// The fields of one ustar header.
struct Header<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &'a [u8],
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W, mtime: u64) -> Self {
        TarWriter {
            out,
            mtime,
            buf: Vec::new(),
            name: String::new(),
            pax: Vec::new(),
            archive: None,
        }
    }

    /// Writes one entry: its header(s), then its content padded to a block.
    pub(crate) fn write_entry(&mut self, path: &str, entry: &Entry) -> Result<(), Error> {
        self.name.clear();
        self.name.push_str(path);
        let (typeflag, size, link) = match &entry.kind {
            EntryKind::File { size, .. } => (TYPE_FILE, *size, ""),
            EntryKind::Dir => {
                self.name.push('/');
                (TYPE_DIR, 0, "")
            }
            EntryKind::Symlink { target } => (TYPE_SYMLINK, 0, target.as_str()),
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
        };
        let written = self.write_header(&header);
        self.name = name;
        written.map_err(|source| Error::WriteLayer { source })?;
        if let EntryKind::File { source, size } = &entry.kind {
            self.write_content(source, *size)?;
        }
        Ok(())
    }

    /// Ends the archive with two zero blocks and returns the output.
    pub(crate) fn finish(mut self) -> Result<W, Error> {
        self.out
            .write_all(&[0u8; 2 * BLOCK])
            .map_err(|source| Error::WriteLayer { source })?;
        Ok(self.out)
    }

    fn write_header(&mut self, h: &Header<'_>) -> io::Result<()> {
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
        if !self.pax.is_empty() {
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
            };
            self.out.write_all(&ustar(&pax_header))?;
            self.out.write_all(&self.pax)?;
            self.out
                .write_all(&[0u8; BLOCK][..padding(self.pax.len() as u64)])?;
        }
        self.out.write_all(&ustar(h))
    }

    fn write_content(&mut self, source: &FileSource, size: u64) -> Result<(), Error> {
        let write_err = |source| Error::WriteLayer { source };
        match source {
            FileSource::Inline(bytes) => {
                debug_assert_eq!(bytes.len() as u64, size);
                self.out.write_all(bytes).map_err(write_err)?;
            }
            FileSource::Host(path) => {
                let read_err = |source| Error::ReadSource {
                    path: path.clone(),
                    source,
                };
                let mut file = File::open(path).map_err(read_err)?;
                let copied = self.copy(&mut file, size, path)?;
                // The file must still be exactly `size` bytes long: a file that grew or shrank
                // since the tree was read would give a tar that does not match the tree.
                let mut probe = [0u8; 1];
                if copied < size || read_retrying(&mut file, &mut probe).map_err(read_err)? != 0 {
                    return Err(Error::SourceChanged {
                        path: path.clone(),
                        expected: size,
                    });
                }
            }
            FileSource::Archive { archive, offset } => {
                let reuse = matches!(&self.archive, Some((open, _)) if Arc::ptr_eq(open, archive));
                if !reuse {
                    let file = File::open(&archive.tar).map_err(|source| Error::ReadArchive {
                        path: archive.source.clone(),
                        source,
                    })?;
                    self.archive = Some((archive.clone(), file));
                }
                let (_, mut file) = self.archive.take().expect("the archive was just opened");
                let result = file
                    .seek(SeekFrom::Start(*offset))
                    .map_err(|source| Error::ReadArchive {
                        path: archive.source.clone(),
                        source,
                    })
                    .and_then(|_| self.copy(&mut file, size, &archive.source));
                self.archive = Some((archive.clone(), file));
                if result? < size {
                    return Err(Error::ReadArchive {
                        path: archive.source.clone(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the archive ends inside a member",
                        ),
                    });
                }
            }
        }
        self.out
            .write_all(&[0u8; BLOCK][..padding(size)])
            .map_err(write_err)
    }

    /// Copies up to `size` bytes of `from` to the output; returns how many there were.
    fn copy(&mut self, from: &mut File, size: u64, path: &Path) -> Result<u64, Error> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; READ_BUF];
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n =
                read_retrying(from, &mut self.buf[..want]).map_err(|source| Error::ReadSource {
                    path: path.to_path_buf(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            self.out
                .write_all(&self.buf[..n])
                .map_err(|source| Error::WriteLayer { source })?;
            left -= n as u64;
        }
        Ok(size - left)
    }
}

fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Zero bytes after `size` bytes of data up to the next block boundary.
pub(crate) fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
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

/// A ustar header block. Values that do not fit are truncated (names) or 0 (numbers): the PAX
/// header before it carries them.
fn ustar(h: &Header<'_>) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
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
    b[156] = h.typeflag;
    let link = truncate_utf8(h.link, 100);
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname, gname: empty. devmajor, devminor: 0.
    octal(&mut b[329..337], 0);
    octal(&mut b[337..345], 0);
    // The checksum is computed with its own field as spaces, then written as 6 octal digits,
    // a NUL and a space.
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    octal(&mut b[148..155], u64::from(sum));
    b[155] = b' ';
    b
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
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for (key, value_len) in [
            ("path", 1usize),
            ("path", 90),
            ("path", 93),
            ("path", 994),
            ("linkpath", 5000),
        ] {
            let mut out = Vec::new();
            pax_record(&mut out, key, &vec![b'a'; value_len]);
            let text = String::from_utf8(out.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(
                len.parse::<usize>().unwrap(),
                out.len(),
                "{key} {value_len}"
            );
        }
    }

    #[test]
    fn header_fields_and_checksum() {
        let h = Header {
            name: b"usr/bin/app",
            mode: 0o755,
            uid: 1000,
            gid: 1000,
            size: 5,
            mtime: 1_700_000_000,
            typeflag: TYPE_FILE,
            link: b"",
        };
        let b = ustar(&h);
        let parsed = tar::Header::from_byte_slice(&b);
        assert_eq!(parsed.path_bytes().as_ref(), b"usr/bin/app");
        assert_eq!(parsed.mode().unwrap(), 0o755);
        assert_eq!(parsed.uid().unwrap(), 1000);
        assert_eq!(parsed.size().unwrap(), 5);
        assert_eq!(parsed.mtime().unwrap(), 1_700_000_000);
        assert_eq!(parsed.cksum().unwrap(), {
            let mut c = b;
            c[148..156].fill(b' ');
            c.iter().map(|&x| u32::from(x)).sum::<u32>()
        });
        assert!(parsed.as_ustar().is_some());
        assert_eq!(&b[265..329], &[0u8; 64][..], "uname and gname are empty");
    }

    #[test]
    fn values_too_large_for_ustar_go_to_pax_records_in_fixed_order() {
        let mut w = TarWriter::new(Vec::new(), 0);
        let name = format!("dir/{}", "n".repeat(120));
        let h = Header {
            name: name.as_bytes(),
            mode: 0o644,
            uid: 1 << 22,
            gid: 1 << 21,
            size: 8 << 30, // 8 GiB: one more than 11 octal digits hold
            mtime: 1 << 34,
            typeflag: TYPE_FILE,
            link: b"",
        };
        w.write_header(&h).unwrap();
        let out = w.out;
        assert_eq!(out.len() % BLOCK, 0);
        let pax = tar::Header::from_byte_slice(&out[..BLOCK]);
        assert_eq!(pax.entry_type(), tar::EntryType::XHeader);
        assert_eq!(
            pax.path_bytes().as_ref(),
            format!("PaxHeaders/{}", "n".repeat(89)).as_bytes()
        );
        let len = pax.size().unwrap() as usize;
        let records = std::str::from_utf8(&out[BLOCK..BLOCK + len]).unwrap();
        let keys: Vec<&str> = records
            .lines()
            .map(|l| l.split_once(' ').unwrap().1.split_once('=').unwrap().0)
            .collect();
        assert_eq!(keys, ["gid", "mtime", "path", "size", "uid"]);
        assert!(records.contains(&format!(" size={}\n", 8u64 << 30)));
        assert!(records.contains(&format!(" path={name}\n")));
        let main = tar::Header::from_byte_slice(&out[out.len() - BLOCK..]);
        assert_eq!(
            (
                main.size().unwrap(),
                main.uid().unwrap(),
                main.mtime().unwrap()
            ),
            (0, 0, 0)
        );
        assert_eq!(
            main.path_bytes().len(),
            100,
            "the ustar name holds a truncated name"
        );
    }

    #[test]
    fn truncation_keeps_utf8_whole() {
        let s = "é".repeat(60); // 120 bytes
        let t = truncate_utf8(s.as_bytes(), 100);
        assert_eq!(t.len(), 100);
        assert!(std::str::from_utf8(t).is_ok());
        let t = truncate_utf8(s.as_bytes(), 99);
        assert_eq!(t.len(), 98);
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
    }
}
