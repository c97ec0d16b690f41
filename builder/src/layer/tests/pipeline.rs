//! The write pipeline (stages on threads of their own): the bytes are those of a plain
//! single-threaded write, a failing stage stops every other one and is the error reported, and
//! progress still moves by bytes.

use super::*;
use crate::layer::compress::Encoder;
use crate::layer::pipeline::CHUNK;
use crate::tarball::{self, HeaderFormat};

const ALL: [Compression; 3] = [Compression::None, Compression::Gzip, Compression::Zstd];

/// The tar of `tree` written the plain way, entry after entry on the calling thread with the
/// toolkit's tar writer and no queue, and that tar compressed on the calling thread in one
/// piece: what the pipeline must give.
fn single_threaded(tree: &LayerTree, opts: &WriteOptions) -> (Vec<u8>, Vec<u8>) {
    let mut tar = tarball::TarWriter::new(Vec::new(), opts.mtime, HeaderFormat::Pax);
    for (path, entry) in tree.iter() {
        tar.header(&entry.tar_header(path)).unwrap();
        if let EntryKind::File { source, size } = &entry.kind {
            let content = match source {
                FileSource::Inline(bytes) => bytes.to_vec(),
                FileSource::Host { path, .. } => fs::read(path).unwrap(),
                FileSource::Archive { .. } => unreachable!("no archives here"),
            };
            assert_eq!(content.len() as u64, *size);
            tar.get_mut().write_all(&content).unwrap();
            tar.end_content(*size, *size).unwrap();
        }
    }
    let tar = tar.finish().unwrap();
    let compressed = std::thread::scope(|s| {
        let mut e = Encoder::new(opts.compression, opts.threads, Vec::new(), s).unwrap();
        e.write_all(&tar).unwrap();
        e.finish(opts.compression).unwrap()
    });
    (tar, compressed)
}

/// Host files whose content ends exactly at a chunk's end, one byte before and after it, many
/// small ones and a few chunks' worth, with inline files between them.
fn chunky(c: &Ctx) -> LayerTree {
    // `t/a` comes after the headers of `t` and its own: its content fills the first chunk
    // exactly.
    c.file("t/a", &corpus(CHUNK - 1024, 1), 0o644);
    c.file("t/b", &corpus(CHUNK - 1, 2), 0o755);
    c.file("t/c", &corpus(CHUNK + 1, 3), 0o644);
    c.file("t/d", &corpus(3 * CHUNK + 4321, 4), 0o644);
    c.file("t/empty", b"", 0o644);
    for i in 0..300 {
        c.file(&format!("t/small/{i:03}"), &corpus(i * 37, i as u64), 0o644);
    }
    let tree = c
        .build(vec![
            add("t/", path("t")),
            add("t/inline/x", Source::Content(corpus(CHUNK / 2 + 3, 9))),
        ])
        .unwrap();
    let first: Vec<&str> = tree.iter().take(2).map(|(p, _)| p).collect();
    assert_eq!(first, ["t", "t/a"]);
    tree
}

#[test]
fn the_host_files_hashed_while_written_are_their_contents_hashes_and_the_bytes_do_not_move() {
    let c = Ctx::new();
    let tree = chunky(&c);
    let expected: Vec<[u8; 32]> = tree
        .host_files()
        .map(|(path, _)| *blake3::hash(&fs::read(path).unwrap()).as_bytes())
        .collect();
    assert_eq!(expected.len(), 305);
    for compression in ALL {
        let opts = opts(compression, 2);
        let mut plain = Vec::new();
        let blob = write_layer(&tree, &opts, &mut plain).unwrap();
        let mut hashed = Vec::new();
        let (same, hashes) =
            write_layer_hashing_host_files(&tree, &opts, &mut hashed, &|_| {}).unwrap();
        assert!(plain == hashed, "{compression:?}: the bytes differ");
        assert_eq!(blob, same);
        assert!(hashes == expected, "{compression:?}: the hashes differ");
        // Into a directory too, as the executor writes them.
        let dir = tempfile::tempdir().unwrap();
        let (in_dir, hosts) =
            write_layer_to_dir_reading_hosts(&tree, &opts, dir.path(), &|_| {}, true).unwrap();
        assert_eq!(in_dir, blob);
        assert!(hosts.hashes == expected);
        assert_eq!(hosts.unchanged, vec![true; expected.len()]);
    }
}

#[test]
fn the_pipeline_gives_the_bytes_of_a_single_threaded_write() {
    let c = Ctx::new();
    let tree = chunky(&c);
    for compression in ALL {
        for threads in [1, 2] {
            let opts = opts(compression, threads);
            let (tar, expected) = single_threaded(&tree, &opts);
            let mut out = Vec::new();
            let blob = write_layer(&tree, &opts, &mut out).unwrap();
            assert!(
                out == expected,
                "{compression:?}, {threads} thread(s): the bytes differ"
            );
            assert_eq!(blob.diff_id, sha256(&tar), "{compression:?}");
            assert_eq!(
                (blob.digest.as_str(), blob.size),
                (sha256(&expected).as_str(), expected.len() as u64),
                "{compression:?}"
            );
        }
    }
}

#[test]
fn a_file_grown_at_a_chunk_end_is_caught_by_the_end_check() {
    // `t/a`'s content ends where the first chunk does, so no read comes short there: the end is
    // checked with one more read, which finds the byte added after the tree was read.
    let c = Ctx::new();
    let tree = chunky(&c);
    let a = c.root.join("t/a");
    let mut f = fs::OpenOptions::new().append(true).open(&a).unwrap();
    f.write_all(b"+").unwrap();
    for compression in ALL {
        let err = write_layer(&tree, &opts(compression, 2), Vec::new()).unwrap_err();
        assert!(
            matches!(&err, Error::SourceChanged { path, expected } if *path == a && *expected == (CHUNK - 1024) as u64),
            "{compression:?}: {err:?}"
        );
    }
}

#[test]
fn a_source_that_fails_mid_stream_is_the_error_and_leaves_no_blob() {
    // Megabytes of content before the failing file, so every queue is full when it fails.
    let c = Ctx::new();
    let tree = chunky(&c);
    let gone = c.root.join("t/small/150");
    fs::remove_file(&gone).unwrap();
    for compression in ALL {
        let err = write_layer(&tree, &opts(compression, 2), Vec::new()).unwrap_err();
        assert!(
            matches!(&err, Error::ReadSource { path, source } if *path == gone && source.kind() == std::io::ErrorKind::NotFound),
            "{compression:?}: {err:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = write_layer_to_dir(&tree, &opts(compression, 2), dir.path()).unwrap_err();
        assert!(matches!(err, Error::ReadSource { .. }), "{err:?}");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{compression:?}: {left:?}");
    }
}

/// An output that fails on its first write.
struct DiskFull;

impl Write for DiskFull {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk full"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_output_is_the_error_reported_not_the_stages_it_stopped() {
    let c = Ctx::new();
    let tree = chunky(&c);
    for compression in ALL {
        let err = write_layer(&tree, &opts(compression, 2), DiskFull).unwrap_err();
        assert!(
            matches!(&err, Error::WriteLayer { source } if source.to_string() == "disk full"),
            "{compression:?}: {err:?}"
        );
    }
}

#[test]
fn progress_moves_by_bytes_but_not_for_every_small_file() {
    let c = Ctx::new();
    for i in 0..2000 {
        c.file(&format!("many/{i:04}"), &corpus(1000, i), 0o644);
    }
    c.file("many/zz-big", &corpus(3 * CHUNK, 1), 0o644);
    let tree = c.build(vec![add("srv", path("many"))]).unwrap();
    let total = tree.content_size();
    for compression in ALL {
        let seen = std::sync::Mutex::new(Vec::new());
        write_layer_with_progress(&tree, &opts(compression, 2), std::io::sink(), &|done| {
            seen.lock().unwrap().push(done)
        })
        .unwrap();
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.last(), Some(&total), "{compression:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        // 2 MB of small files then 3 MiB in one file: a few dozen calls, not 2001.
        assert!(seen.len() < 40, "{compression:?}: {} calls", seen.len());
        let big_start = total - 3 * CHUNK as u64;
        let in_big = seen.iter().filter(|&&d| d > big_start).count();
        assert!(in_big >= 3, "the big file moves it too: {seen:?}");
    }
}

#[test]
fn the_writer_tells_which_host_files_kept_the_stat_the_tree_was_read_with() {
    let c = Ctx::new();
    c.file("d/a", b"alpha", 0o644);
    let b = c.file("d/b", b"bravo", 0o644);
    c.file("d/c", b"charlie", 0o644);
    let tree = c.build(vec![add("d/", path("d"))]).unwrap();
    let hosts: Vec<&std::path::Path> = tree.host_files().map(|(p, _)| p).collect();
    assert_eq!(hosts.len(), 3);
    assert_eq!(hosts[1], b);
    // `b` changes after the tree was read: the same size (so the tar is still written), other
    // bytes and an mtime an hour later.
    fs::write(&b, b"BRAVO").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    fs::File::open(&b).unwrap().set_modified(later).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = opts(Compression::Gzip, 2);
    let (_, plain) =
        write_layer_to_dir_reading_hosts(&tree, &opts, dir.path(), &|_| {}, false).unwrap();
    assert_eq!(plain.unchanged, [true, false, true]);
    assert!(plain.hashes.is_empty());
    let (_, hashed) =
        write_layer_to_dir_reading_hosts(&tree, &opts, dir.path(), &|_| {}, true).unwrap();
    assert_eq!(hashed.unchanged, [true, false, true]);
    // The hash is of the bytes written, the file's new ones.
    assert_eq!(hashed.hashes[1], *blake3::hash(b"BRAVO").as_bytes());
}
