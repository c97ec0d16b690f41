//! How a tar or blob is compressed, told by its magic bytes (never its name or media type), and
//! the decoders that undo it: a reader ([`decompress`]), a temporary plain copy
//! ([`decompress_to_temp`]) and a writer fed by push ([`WriteDecoder`]).
//!
//! Only three forms exist for us: a plain tar, gzip (any number of members, as `MultiGzDecoder`
//! reads them) and zstd. Anything that does not start with the gzip or zstd magic is plain;
//! whether it is a tar at all is for the reader of the tar to say.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Cursor, Read, Write};
use std::path::Path;

/// How many bytes [`Format::sniff`] looks at.
pub const MAGIC_LEN: usize = 4;

/// Buffer size for reading and decompressing whole files.
const BUF_SIZE: usize = 1 << 20;

/// How a tar or blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Not compressed.
    Plain,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Format {
    /// The format of bytes that start with `magic` (up to [`MAGIC_LEN`] bytes; fewer at the end
    /// of a short file).
    pub fn sniff(magic: &[u8]) -> Format {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Format::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Format::Zstd
        } else {
            Format::Plain
        }
    }

    /// The format of the file at `path`, from its first bytes.
    pub fn of_file(path: &Path) -> io::Result<Format> {
        let (magic, n) = read_magic(&mut File::open(path)?)?;
        Ok(Format::sniff(&magic[..n]))
    }

    /// The format's name in messages: `gzip`, `zstd`, or `none` for a plain tar.
    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "none",
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
        }
    }
}

/// Reads the first [`MAGIC_LEN`] bytes of `r` (fewer when it ends first); returns them and how
/// many there are.
pub fn read_magic(r: &mut impl Read) -> io::Result<([u8; MAGIC_LEN], usize)> {
    let mut magic = [0u8; MAGIC_LEN];
    let mut n = 0;
    while n < magic.len() {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((magic, n))
}

/// A reader of what `reader` holds once `format` is undone.
pub fn decoder<'a, R: BufRead + 'a>(format: Format, reader: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Format::Plain => Box::new(reader),
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

/// Sniffs the format of what `reader` gives and returns it with a reader of the decompressed
/// bytes (the sniffed bytes are given back to the decoder, so `reader` need not seek).
pub fn decompress<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<(Format, Box<dyn Read + 'a>)> {
    let (magic, n) = read_magic(&mut reader)?;
    let format = Format::sniff(&magic[..n]);
    let whole = Cursor::new(magic).take(n as u64).chain(reader);
    Ok((format, decoder(format, whole)?))
}

/// Decompresses the file at `path`, compressed as `format` (not [`Format::Plain`]), into a new
/// temporary file named `<prefix>XXXXXX.tar` in `dir` (the system's temporary directory when
/// `None`), deleted when the returned path is dropped. A stream that ends early is an
/// [`io::ErrorKind::UnexpectedEof`] error.
pub fn decompress_to_temp(
    path: &Path,
    format: Format,
    prefix: &str,
    dir: Option<&Path>,
) -> io::Result<tempfile::TempPath> {
    debug_assert_ne!(format, Format::Plain, "a plain file needs no copy");
    let reader = BufReader::with_capacity(BUF_SIZE, File::open(path)?);
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(".tar");
    let temp = match dir {
        Some(dir) => builder.tempfile_in(dir)?,
        None => builder.tempfile()?,
    };
    let mut out = BufWriter::with_capacity(BUF_SIZE, temp);
    io::copy(&mut decoder(format, reader)?, &mut out)?;
    out.flush()?;
    let temp = out.into_inner().map_err(|e| e.into_error())?;
    Ok(temp.into_temp_path())
}

/// A decoder fed by writes: the bytes written to it are decompressed into `W`.
pub enum WriteDecoder<W: Write> {
    Plain(W),
    Gzip(Box<flate2::write::MultiGzDecoder<W>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, W>>),
}

impl<W: Write> WriteDecoder<W> {
    /// A decoder of `format` writing into `sink`.
    pub fn new(format: Format, sink: W) -> io::Result<Self> {
        Ok(match format {
            Format::Plain => WriteDecoder::Plain(sink),
            Format::Gzip => WriteDecoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(sink))),
            Format::Zstd => WriteDecoder::Zstd(Box::new(zstd::stream::write::Decoder::new(sink)?)),
        })
    }

    /// The format it decodes.
    pub fn format(&self) -> Format {
        match self {
            WriteDecoder::Plain(_) => Format::Plain,
            WriteDecoder::Gzip(_) => Format::Gzip,
            WriteDecoder::Zstd(_) => Format::Zstd,
        }
    }

    /// Ends the stream (a stream that ends early is an error) and returns the sink.
    pub fn finish(self) -> io::Result<W> {
        match self {
            WriteDecoder::Plain(w) => Ok(w),
            WriteDecoder::Gzip(d) => d.finish(),
            WriteDecoder::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
        }
    }
}

impl<W: Write> Write for WriteDecoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteDecoder::Plain(w) => w.write(buf),
            WriteDecoder::Gzip(d) => d.write(buf),
            WriteDecoder::Zstd(d) => d.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            WriteDecoder::Plain(w) => w.flush(),
            WriteDecoder::Gzip(d) => d.flush(),
            WriteDecoder::Zstd(d) => d.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_detected_by_magic() {
        assert_eq!(Format::sniff(&[0x1f, 0x8b, 8, 0]), Format::Gzip);
        assert_eq!(Format::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Format::Zstd);
        assert_eq!(Format::sniff(b"etc/"), Format::Plain);
        assert_eq!(Format::sniff(b""), Format::Plain);
        assert_eq!(Format::sniff(&[0x1f]), Format::Plain);
    }

    #[test]
    fn decompress_gives_back_the_sniffed_bytes() {
        let data = b"some bytes that are not compressed at all".to_vec();
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        for (blob, format) in [
            (data.clone(), Format::Plain),
            (gz, Format::Gzip),
            (zst, Format::Zstd),
            (b"ab".to_vec(), Format::Plain),
        ] {
            let (found, mut reader) = decompress(&blob[..]).unwrap();
            assert_eq!(found, format);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            let expected = if blob == b"ab" {
                b"ab".to_vec()
            } else {
                data.clone()
            };
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn a_write_decoder_decodes_what_is_written_to_it() {
        let zst = zstd::encode_all(&b"0123456789"[..], 3).unwrap();
        let mut d = WriteDecoder::new(Format::sniff(&zst), Vec::new()).unwrap();
        assert_eq!(d.format(), Format::Zstd);
        for piece in zst.chunks(3) {
            d.write_all(piece).unwrap();
        }
        assert_eq!(d.finish().unwrap(), b"0123456789");
    }
}
