//! Compressors whose output bytes depend only on their input, never on the thread count.
//!
//! - **gzip**: gzp's parallel compressor (`ParCompress`) driven by our own block format,
//!   [`PigzGzip`]: the stream is cut into fixed 128 KiB blocks; each block is deflated (level 6,
//!   flate2 on the zlib-rs backend) independently, primed with the last 32 KiB of the previous
//!   block as a dictionary, and ended with a sync flush (the last one with a final block), as pigz
//!   does. The blocks concatenate into one deflate stream, so any gzip reader reads it, and the
//!   bytes are the same for any number of threads. The header is fixed: mtime 0, no file name,
//!   XFL 0, OS 255 (unknown). We use our own format rather than gzp's `Gzip` because whether
//!   `Gzip` uses dictionaries depends on gzp's cargo features, which feature unification could
//!   switch.
//! - **zstd**: libzstd at level 3 in multithreaded mode with at least one worker: with one or
//!   more workers libzstd cuts the input into jobs by size alone, so the bytes do not depend on
//!   the worker count (0 workers, the single-threaded mode, frames the data differently).
//! - **none**: the tar stream itself.
//!
//! [`Encoder::flush`](std::io::Write::flush) is deliberately a no-op: flushing a gzip or zstd
//! stream in the middle would end a block early and change the bytes.

use std::io::{self, Write};
use std::thread::Scope;

use bytes::Bytes;
use flate2::{Compress, FlushCompress, Status};
use gzp::check::{Check, Crc32};
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use gzp::{FormatSpec, GzpError, ZWriter};

use super::{Compression, Error};

/// gzip compression level.
pub(crate) const GZIP_LEVEL: u32 = 6;
/// Uncompressed size of one parallel gzip block.
pub(crate) const GZIP_BLOCK: usize = 128 * 1024;
/// zstd compression level.
pub(crate) const ZSTD_LEVEL: i32 = 3;

/// pigz-style gzip blocks with a fixed header; see the module docs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PigzGzip;

impl FormatSpec for PigzGzip {
    type C = Crc32;
    type Compressor = Compress;

    fn new() -> Self {
        PigzGzip
    }

    fn needs_dict(&self) -> bool {
        true
    }

    fn create_compressor(&self, level: flate2::Compression) -> Result<Compress, GzpError> {
        // Raw deflate (no zlib header), 32 KiB window.
        Ok(Compress::new(level, false))
    }

    fn encode(
        &self,
        input: &[u8],
        encoder: &mut Compress,
        level: flate2::Compression,
        dict: Option<&Bytes>,
        is_last: bool,
    ) -> Result<Vec<u8>, GzpError> {
        // A fresh compressor for every block, not `reset()`: a reset keeps the window of the
        // previous block this thread compressed, and the match finder may compare bytes past the
        // input's end with it, so which block ran before on the same thread (scheduling) could
        // change the choice between equally long matches, and so the bytes. A new compressor's
        // window is zeroed.
        *encoder = Compress::new(level, false);
        if let Some(dict) = dict {
            encoder.set_dictionary(dict)?;
        }
        let flush = if is_last {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        let mut out = Vec::with_capacity(input.len() + input.len() / 8 + 256);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity());
            }
            let before = encoder.total_in();
            let status = encoder.compress_vec(&input[consumed..], &mut out, flush)?;
            consumed += (encoder.total_in() - before) as usize;
            let done = match status {
                Status::StreamEnd => true,
                // A sync flush is complete once all input is in and the output was not filled.
                Status::Ok | Status::BufError => {
                    !is_last && consumed == input.len() && out.len() < out.capacity()
                }
            };
            if done {
                return Ok(out);
            }
        }
    }

    fn header(&self, _level: flate2::Compression) -> Vec<u8> {
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255
        vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]
    }

    fn footer(&self, check: &Crc32) -> Vec<u8> {
        let mut f = Vec::with_capacity(8);
        f.extend_from_slice(&check.sum().to_le_bytes());
        f.extend_from_slice(&check.amount().to_le_bytes());
        f
    }
}

/// A compressing writer of one of the [`Compression`] kinds.
pub(crate) enum Encoder<'scope, W: Write + Send + 'scope> {
    /// `failed` is set once a write failed: gzp has then shut its pipeline down, and calling its
    /// `finish` would panic.
    Gzip {
        z: ParCompress<'scope, PigzGzip, W>,
        failed: bool,
    },
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<'scope, W: Write + Send + 'scope> Encoder<'scope, W> {
    /// Starts a compressor writing to `out`. Gzip threads live in `scope`.
    pub(crate) fn new<'env>(
        compression: Compression,
        threads: usize,
        out: W,
        scope: &'scope Scope<'scope, 'env>,
    ) -> Result<Self, Error> {
        let threads = threads.max(1);
        let compress_err = |source: Box<dyn std::error::Error + Send + Sync>| Error::Compress {
            compression,
            source,
        };
        Ok(match compression {
            Compression::Gzip => {
                let builder = ParCompressBuilder::<PigzGzip>::new()
                    .compression_level(flate2::Compression::new(GZIP_LEVEL))
                    .buffer_size(GZIP_BLOCK)
                    .and_then(|b| b.num_threads(threads))
                    .map_err(|e| compress_err(Box::new(e)))?;
                Encoder::Gzip {
                    z: builder.from_borrowed_writer(out, scope),
                    failed: false,
                }
            }
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)
                    .map_err(|e| compress_err(Box::new(e)))?;
                enc.multithread(u32::try_from(threads).unwrap_or(u32::MAX))
                    .map_err(|e| compress_err(Box::new(e)))?;
                Encoder::Zstd(enc)
            }
            Compression::None => Encoder::None(out),
        })
    }

    /// Ends the compressed stream and returns the output.
    pub(crate) fn finish(self, compression: Compression) -> Result<W, Error> {
        match self {
            Encoder::Gzip { failed: true, .. } => Err(Error::WriteLayer {
                source: gzip_failed(),
            }),
            Encoder::Gzip {
                mut z,
                failed: false,
            } => z.finish().map_err(|e| match e {
                GzpError::Io(source) => Error::WriteLayer { source },
                e => Error::Compress {
                    compression,
                    source: Box::new(e),
                },
            }),
            Encoder::Zstd(z) => z.finish().map_err(|source| Error::WriteLayer { source }),
            Encoder::None(w) => Ok(w),
        }
    }
}

impl<'scope, W: Write + Send + 'scope> Write for Encoder<'scope, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip { failed: true, .. } => Err(gzip_failed()),
            Encoder::Gzip { z, failed } => z.write(buf).inspect_err(|_| *failed = true),
            Encoder::Zstd(z) => z.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip { failed: true, .. } => Err(gzip_failed()),
            Encoder::Gzip { z, failed } => z.write_all(buf).inspect_err(|_| *failed = true),
            Encoder::Zstd(z) => z.write_all(buf),
            Encoder::None(w) => w.write_all(buf),
        }
    }

    /// A no-op: see the module docs.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn gzip_failed() -> io::Error {
    io::Error::other("the gzip compressor stopped after an earlier error")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
        std::thread::scope(|s| {
            let mut e = Encoder::new(Compression::Gzip, threads, Vec::new(), s).unwrap();
            // Odd write sizes: the block cuts must not depend on them.
            for chunk in data.chunks(7919) {
                e.write_all(chunk).unwrap();
                e.flush().unwrap();
            }
            e.finish(Compression::Gzip).unwrap()
        })
    }

    #[test]
    fn gzip_header_is_fixed_and_stream_decodes() {
        let data: Vec<u8> = (0..(3 * GZIP_BLOCK + 1234))
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let gz = gzip(&data, 2);
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let mut back = Vec::new();
        io::copy(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
        assert_eq!(back, data);
        // Dictionaries make a repeated block nearly free.
        let block: Vec<u8> = (0..GZIP_BLOCK).map(|i| (i * 7919 % 256) as u8).collect();
        let twice = [block.clone(), block.clone()].concat();
        assert!(gzip(&twice, 1).len() < gzip(&block, 1).len() + 1024);
    }

    #[test]
    fn empty_input_is_a_valid_gzip() {
        let gz = gzip(b"", 3);
        let mut back = Vec::new();
        io::copy(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
        assert!(back.is_empty());
    }
}

#[cfg(test)]
mod block_tests {
    use super::*;

    /// A gzp worker thread compresses one block after another with one compressor: each
    /// block's bytes must be those of a fresh compressor, whatever that thread did before (or
    /// the layer's bytes would depend on scheduling). Executable code (this test binary) is data
    /// on which a reset compressor's stale window did change the output.
    #[test]
    fn a_block_does_not_depend_on_what_its_thread_compressed_before() {
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let level = flate2::Compression::new(GZIP_LEVEL);
        let format = PigzGzip;
        let blocks: Vec<&[u8]> = data.chunks(GZIP_BLOCK).take(64).collect();
        assert!(blocks.len() > 16, "a test binary of many blocks");
        let mut worker = format.create_compressor(level).unwrap();
        for (i, block) in blocks.iter().enumerate().skip(1) {
            let previous = blocks[i - 1];
            let dict = Bytes::copy_from_slice(&previous[previous.len() - 32 * 1024..]);
            let mut fresh = format.create_compressor(level).unwrap();
            let alone = format
                .encode(block, &mut fresh, level, Some(&dict), false)
                .unwrap();
            let after = format
                .encode(block, &mut worker, level, Some(&dict), false)
                .unwrap();
            assert!(
                alone == after,
                "block {i}: its bytes depend on the previous block"
            );
        }
    }
}
