//! The queues between the stages of the layer writer: bounded, made of reused chunks, and able
//! to tell the end of a stream from a stage that stopped.
//!
//! [`write_layer`](super::write_layer) runs each stage on a thread of its own, so the slowest one
//! sets the pace instead of the sum of them all:
//!
//! ```text
//! tar writer --A--> sha256 (diff_id) --B--> compressor --C--> sha256 (digest) + output
//! ```
//!
//! - **Chunks, reused**: a queue ([`queue`]) owns a pool of [`CHUNKS`] chunks of [`CHUNK`] bytes,
//!   allocated when first needed. Its writer ([`ChunkWriter`]) fills one and passes it on; the
//!   last stage that reads it gives it back to the pool. Nothing is allocated per chunk, the
//!   memory in flight is bounded, and a stage that runs ahead waits for a chunk to come back.
//!   A stage that only looks at the stream ([`Relay`], the diff_id hasher) passes each chunk on
//!   unchanged: A's chunks go through B and back to A's pool.
//! - **Reading into chunks**: the tar writer reads file content straight into the free space of
//!   the current chunk ([`ChunkWriter::spare`] and [`ChunkWriter::commit`]), so content is copied
//!   once, from the kernel.
//! - **The end is a message**: [`ChunkWriter::finish`] sends the last chunk and an end mark. A
//!   stage whose input stops without the mark knows a stage before it failed, and ends with
//!   [`Stopped`] rather than finishing a truncated stream (a complete-looking blob of a partial
//!   tar). A stage that fails drops its ends of its queues: the stages before it fail their next
//!   send, those after it see their input stop, with [`Stopped`]. Every stage ends; none waits
//!   forever.
//! - **Which error is reported**: every stage but the first to fail ends with [`Stopped`], or,
//!   for an encoder that wraps its writer's error in its own words, with an error of its own;
//!   [`first_cause`] takes the stages' errors from the output back to the tar writer and reports
//!   the first that is not [`Stopped`], so a full disk under the output is reported as such, and a
//!   source file that changed as the source error it is.
//!
//! The bytes of a blob do not depend on the chunk size or on scheduling: every stage sees the
//! same stream in the same order, only cut at other places, and neither the hashers nor the
//! encoders (see `compress`) depend on where their input is cut.

use std::fmt;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};

use super::Error;

/// Bytes in one chunk of a queue.
pub(crate) const CHUNK: usize = 1 << 20;
/// Chunks in one queue's pool: being filled, waiting in the queue or being read.
pub(crate) const CHUNKS: usize = 4;

/// Another stage of the pipeline stopped (its error is the one to report), so this one did too.
#[derive(Debug)]
pub(crate) struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("another stage of the layer writer stopped")
    }
}

impl std::error::Error for Stopped {}

/// The I/O error a stage ends with when another stage stopped.
pub(crate) fn stopped() -> io::Error {
    io::Error::other(Stopped)
}

/// The layer error a stage ends with when another stage stopped.
fn stopped_error() -> Error {
    Error::WriteLayer { source: stopped() }
}

/// Whether `e` only says that another stage stopped.
pub(crate) fn is_stopped(e: &Error) -> bool {
    matches!(e, Error::WriteLayer { source } if source.get_ref().is_some_and(|s| s.is::<Stopped>()))
}

/// The error to report of those of the stages, listed from the output back to the tar writer:
/// the first that is not [`Stopped`] (see the module docs), else the first. `None` when there
/// is none.
pub(crate) fn first_cause(errors: impl IntoIterator<Item = Error>) -> Option<Error> {
    let mut first = None;
    for e in errors {
        if !is_stopped(&e) {
            return Some(e);
        }
        first.get_or_insert(e);
    }
    first
}

/// A buffer of a queue's pool and how much of it holds data.
pub(crate) struct Chunk {
    bytes: Box<[u8]>,
    len: usize,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            bytes: vec![0u8; CHUNK].into_boxed_slice(),
            len: 0,
        }
    }

    /// The data it holds.
    pub(crate) fn data(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// What a queue carries.
enum Message {
    Data(Chunk),
    /// The stream is complete.
    End,
}

/// A new queue: its writing end and its reading end.
pub(crate) fn queue() -> (ChunkWriter, ChunkReader) {
    // The pool bounds what is in flight; the queue can hold it all, so a send never waits.
    let (to, from) = mpsc::sync_channel(CHUNKS);
    let (back, returned) = mpsc::channel();
    (
        ChunkWriter {
            current: None,
            to,
            returned,
            unallocated: CHUNKS,
        },
        ChunkReader { from, back },
    )
}

/// The writing end of a queue: a writer that fills chunks of the queue's pool and passes each on
/// when it is full. [`Self::finish`] ends the stream; dropped without it, the reader sees the
/// stream stop ([`Stopped`]).
pub(crate) struct ChunkWriter {
    /// The chunk being filled.
    current: Option<Chunk>,
    to: SyncSender<Message>,
    /// Chunks given back by the last stage that read them.
    returned: Receiver<Chunk>,
    /// Chunks of the pool not allocated yet.
    unallocated: usize,
}

impl ChunkWriter {
    /// The free space of the current chunk, never empty: a full chunk is passed on first. Data
    /// put there counts once [`Self::commit`]ted.
    pub(crate) fn spare(&mut self) -> io::Result<&mut [u8]> {
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.len == c.bytes.len())
        {
            self.pass_on()?;
        }
        let chunk = match self.current.take() {
            Some(chunk) => chunk,
            None => self.empty_chunk()?,
        };
        let chunk = self.current.insert(chunk);
        Ok(&mut chunk.bytes[chunk.len..])
    }

    /// Counts `n` bytes put at the start of [`Self::spare`] as data.
    pub(crate) fn commit(&mut self, n: usize) {
        let chunk = self.current.as_mut().expect("commit follows spare");
        assert!(n <= chunk.bytes.len() - chunk.len, "commit past the chunk");
        chunk.len += n;
    }

    /// Passes the last chunk on and ends the stream.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        if self.current.as_ref().is_some_and(|c| c.len > 0) {
            self.pass_on()?;
        }
        self.to.send(Message::End).map_err(|_| stopped())
    }

    fn pass_on(&mut self) -> io::Result<()> {
        let chunk = self.current.take().expect("a chunk to pass on");
        self.to.send(Message::Data(chunk)).map_err(|_| stopped())
    }

    /// A chunk given back, or a new one while the pool is not all allocated, or else the next
    /// one given back (waiting for it).
    fn empty_chunk(&mut self) -> io::Result<Chunk> {
        let mut chunk = match self.returned.try_recv() {
            Ok(chunk) => chunk,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) if self.unallocated > 0 => {
                self.unallocated -= 1;
                Chunk::new()
            }
            Err(_) => self.returned.recv().map_err(|_| stopped())?,
        };
        chunk.len = 0;
        Ok(chunk)
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let spare = self.spare()?;
        let n = spare.len().min(buf.len());
        spare[..n].copy_from_slice(&buf[..n]);
        self.commit(n);
        Ok(n)
    }

    /// A no-op: a chunk is passed on when full or at [`ChunkWriter::finish`], never early.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading end of a queue.
pub(crate) struct ChunkReader {
    from: Receiver<Message>,
    /// Where chunks go back to the pool.
    back: Sender<Chunk>,
}

impl ChunkReader {
    /// Calls `f` with each chunk's data, in order, until the end of the stream, giving each
    /// chunk back to the pool after it. Stops at `f`'s first error; a stream that stops without
    /// its end is an error saying so ([`Stopped`]).
    pub(crate) fn for_each(
        self,
        mut f: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        loop {
            match self.from.recv() {
                Ok(Message::Data(chunk)) => {
                    f(chunk.data())?;
                    // The writer may be done and gone: then nobody needs the chunk.
                    let _ = self.back.send(chunk);
                }
                Ok(Message::End) => return Ok(()),
                Err(_) => return Err(stopped_error()),
            }
        }
    }

    /// Splits off a stage that looks at every chunk and passes it on ([`Relay`]); the returned
    /// reader reads what it passes on, and gives the chunks back to this queue's pool.
    pub(crate) fn relay(self) -> (Relay, ChunkReader) {
        let (to, from) = mpsc::sync_channel(CHUNKS);
        (
            Relay {
                from: self.from,
                to,
            },
            ChunkReader {
                from,
                back: self.back,
            },
        )
    }
}

/// A stage that looks at every chunk of a stream and passes it on unchanged.
pub(crate) struct Relay {
    from: Receiver<Message>,
    to: SyncSender<Message>,
}

impl Relay {
    /// Calls `look` with each chunk's data and passes the chunk on, until the end of the stream
    /// (passed on too). A stream that stops, or a next stage that is gone, is [`Stopped`].
    pub(crate) fn run(self, mut look: impl FnMut(&[u8])) -> Result<(), Error> {
        loop {
            let message = self.from.recv().map_err(|_| stopped_error())?;
            let end = matches!(message, Message::End);
            if let Message::Data(chunk) = &message {
                look(chunk.data());
            }
            self.to.send(message).map_err(|_| stopped_error())?;
            if end {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `data` into a new queue in pieces of `piece` bytes, in a thread, and reads it back.
    fn through_queue(data: &[u8], piece: usize) -> Vec<u8> {
        let (mut w, r) = queue();
        std::thread::scope(|s| {
            s.spawn(move || {
                for p in data.chunks(piece) {
                    w.write_all(p).unwrap();
                }
                w.finish().unwrap();
            });
            let mut back = Vec::new();
            r.for_each(|c| {
                back.extend_from_slice(c);
                Ok(())
            })
            .unwrap();
            back
        })
    }

    #[test]
    fn a_stream_comes_out_as_it_went_in_whatever_the_writes() {
        let data: Vec<u8> = (0..(3 * CHUNK + 777)).map(|i| (i % 251) as u8).collect();
        for piece in [1, 4096, CHUNK - 1, CHUNK, 2 * CHUNK + 5] {
            assert!(through_queue(&data, piece) == data, "pieces of {piece}");
        }
        assert!(through_queue(b"", 1).is_empty());
    }

    #[test]
    fn chunks_go_round_a_pool_through_a_relay() {
        // Far more data than the pool holds: the writer can only go on with chunks given back
        // by the reader after the relay.
        let (mut w, r) = queue();
        let (relay, r) = r.relay();
        let total = 40 * CHUNK + 3;
        std::thread::scope(|s| {
            let looked = s.spawn(move || {
                let mut n = 0;
                relay.run(|c| n += c.len()).map(|()| n)
            });
            let read = s.spawn(move || {
                let mut n = 0;
                r.for_each(|c| {
                    n += c.len();
                    Ok(())
                })
                .map(|()| n)
            });
            let piece = vec![7u8; 10_000];
            let mut left = total;
            while left > 0 {
                let n = left.min(piece.len());
                w.write_all(&piece[..n]).unwrap();
                left -= n;
            }
            w.finish().unwrap();
            assert_eq!(looked.join().unwrap().unwrap(), total);
            assert_eq!(read.join().unwrap().unwrap(), total);
        });
    }

    #[test]
    fn a_writer_dropped_without_finish_is_a_stop_not_an_end() {
        let (mut w, r) = queue();
        let (relay, r) = r.relay();
        w.write_all(&[1u8; CHUNK + 1]).unwrap();
        drop(w);
        let relayed = relay.run(|_| {});
        assert!(relayed.as_ref().is_err_and(is_stopped), "{relayed:?}");
        let read = r.for_each(|_| Ok(()));
        assert!(read.as_ref().is_err_and(is_stopped), "{read:?}");
    }

    #[test]
    fn a_reader_that_fails_stops_the_writer_instead_of_leaving_it_waiting() {
        let (mut w, r) = queue();
        std::thread::scope(|s| {
            s.spawn(move || {
                r.for_each(|_| {
                    Err(Error::WriteLayer {
                        source: io::Error::other("disk full"),
                    })
                })
            });
            // Far more than the pool and the queue hold: the writer must fail, not block.
            let mut failed = None;
            for _ in 0..10 * CHUNKS {
                if let Err(e) = w.write_all(&[0u8; CHUNK]) {
                    failed = Some(e);
                    break;
                }
            }
            let e = failed.expect("the writer fails once the reader is gone");
            assert!(e.get_ref().is_some_and(|s| s.is::<Stopped>()), "{e}");
        });
    }

    #[test]
    fn the_reported_error_is_the_first_that_is_not_a_stop() {
        let real = || Error::WriteLayer {
            source: io::Error::other("disk full"),
        };
        let e = first_cause([stopped_error(), real(), stopped_error()]).unwrap();
        assert!(
            matches!(&e, Error::WriteLayer { source } if source.to_string() == "disk full"),
            "{e:?}"
        );
        assert!(first_cause([stopped_error()]).is_some_and(|e| is_stopped(&e)));
        assert!(first_cause([]).is_none());
    }
}
