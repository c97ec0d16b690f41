use std::collections::HashSet;
use std::fs::{self, File, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use super::keys::KeyFile;
use super::*;
use crate::types::Digest;

fn new_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

/// A node key (blake3 hex) from a small number.
fn key(n: u32) -> String {
    blake3::hash(&n.to_le_bytes()).to_hex().to_string()
}

/// Deterministic pseudo-random bytes.
fn bytes(seed: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = blake3::hash(&[seed]);
    while out.len() < len {
        out.extend_from_slice(block.as_bytes());
        block = blake3::hash(block.as_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `content` as a layer blob and returns its result record.
fn layer(store: &Store, content: &[u8]) -> NodeResult {
    let (digest, size) = store.write_blob(content).unwrap();
    NodeResult::Layer(LayerRecord {
        digest: digest.to_string(),
        diff_id: format!("sha256:{}", "d".repeat(64)),
        size,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
    })
}

fn blob_of(result: &NodeResult) -> Digest {
    Digest::parse(result.blobs()[0].0).unwrap()
}

fn set_mtime(path: &Path, time: SystemTime) {
    File::open(path).unwrap().set_modified(time).unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

/// Makes a (read-only) blob writable, as a user writing through a hard link would.
fn make_writable(path: &Path) {
    fs::set_permissions(path, Permissions::from_mode(0o644)).unwrap();
}

fn tmp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(TMP_PREFIX))
        .collect()
}

fn read_key_file(store: &Store, key: &str) -> KeyFile {
    serde_json::from_slice(&fs::read(store.key_path(key).unwrap()).unwrap()).unwrap()
}

// ---- blobs ----

#[test]
fn write_blob_names_it_by_its_sha256_and_leaves_no_temp_file() {
    let (_dir, store) = new_store();
    let content = bytes(1, 100_000);
    let (digest, size) = store.write_blob(&content).unwrap();
    assert_eq!(digest.hex(), hex::encode(Sha256::digest(&content)));
    assert_eq!(size, 100_000);
    let path = store.blob_path(&digest);
    assert_eq!(path, store.root().join("blobs/sha256").join(digest.hex()));
    assert_eq!(fs::read(&path).unwrap(), content);
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o444);
    assert!(store.has_blob(&digest));
    assert!(tmp_files(store.blobs_dir()).is_empty());

    // Writing it again is a no-op: same file.
    let inode = fs::metadata(&path).unwrap().ino();
    assert_eq!(store.write_blob(&content).unwrap(), (digest.clone(), size));
    assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
}

#[test]
fn blob_writer_streams_and_an_unfinished_writer_leaves_nothing() {
    let (_dir, store) = new_store();
    let content = bytes(2, 3 * 1024 * 1024 + 17);
    let mut writer = store.blob_writer().unwrap();
    for chunk in content.chunks(70_000) {
        writer.write_all(chunk).unwrap();
    }
    assert_eq!(writer.size(), content.len() as u64);
    let (digest, size) = writer.finish().unwrap();
    assert_eq!(digest, Digest::of(&content));
    assert_eq!(size, content.len() as u64);
    assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), content);

    // A writer dropped midway (an error, a panic) leaves no blob and no temp file.
    let mut writer = store.blob_writer().unwrap();
    writer.write_all(&bytes(3, 1000)).unwrap();
    assert_eq!(tmp_files(store.blobs_dir()).len(), 1);
    drop(writer);
    assert!(tmp_files(store.blobs_dir()).is_empty());
    assert_eq!(store.info().unwrap().blobs, 1);
}

#[test]
fn concurrent_writers_of_the_same_blob() {
    let (_dir, store) = new_store();
    let content = bytes(4, 2 * 1024 * 1024);
    let expected = Digest::of(&content);
    std::thread::scope(|scope| {
        for i in 0..4 {
            let (store, content, expected) = (&store, &content, &expected);
            scope.spawn(move || {
                for _ in 0..5 {
                    let digest = if i % 2 == 0 {
                        store.write_blob(content).unwrap().0
                    } else {
                        let mut writer = store.blob_writer().unwrap();
                        writer.write_all(content).unwrap();
                        writer.finish().unwrap().0
                    };
                    assert_eq!(&digest, expected);
                    // Whenever a reader looks, the blob is whole.
                    let on_disk = fs::read(store.blob_path(&digest)).unwrap();
                    assert_eq!(Digest::of(&on_disk), *expected);
                }
            });
        }
    });
    assert_eq!(fs::read(store.blob_path(&expected)).unwrap(), content);
    assert!(tmp_files(store.blobs_dir()).is_empty());
}

/// Set in the environment of the child processes of the multi-process tests.
const CHILD_ROOT: &str = "CARGO_IMAGE_STORE_TEST_CHILD_ROOT";
const CHILD_MODE: &str = "CARGO_IMAGE_STORE_TEST_CHILD_MODE";

/// Runs this test binary's `child_process` test in a new process with `mode` and the store at
/// `root`.
fn spawn_child(root: &Path, mode: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT, root)
        .env(CHILD_MODE, mode)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The body of the child processes; does nothing without their environment.
#[test]
#[ignore = "the body of the multi-process tests' child processes, which run it with --ignored"]
fn child_process() {
    let Some(root) = std::env::var_os(CHILD_ROOT) else {
        return;
    };
    let store = Store::open(Path::new(&root)).unwrap();
    match std::env::var(CHILD_MODE).unwrap().as_str() {
        "write" => {
            let _lock = store.lock_shared().unwrap();
            let content = bytes(40, 1024 * 1024);
            for _ in 0..3 {
                let mut writer = store.blob_writer().unwrap();
                writer.write_all(&content).unwrap();
                let (digest, size) = writer.finish().unwrap();
                let result = NodeResult::Layer(LayerRecord {
                    digest: digest.to_string(),
                    diff_id: digest.to_string(),
                    size,
                    media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                });
                store.put_key(&key(40), &result).unwrap();
                assert_eq!(store.get_key(&key(40)).unwrap(), Some(result));
            }
        }
        "try-exclusive" => {
            assert!(store.try_lock_exclusive().unwrap().is_none());
            assert!(store.try_lock_shared().unwrap().is_some());
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn concurrent_writer_processes() {
    let (_dir, store) = new_store();
    let children: Vec<_> = (0..4).map(|_| spawn_child(store.root(), "write")).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let content = bytes(40, 1024 * 1024);
    let digest = Digest::of(&content);
    assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), content);
    assert!(tmp_files(store.blobs_dir()).is_empty());
    assert!(store.get_key(&key(40)).unwrap().is_some());
    assert_eq!(store.info().unwrap().blobs, 1);
}

#[test]
fn locks_exclude_other_processes() {
    let (_dir, store) = new_store();
    let _shared = store.lock_shared().unwrap();
    let status = spawn_child(store.root(), "try-exclusive").wait().unwrap();
    assert!(status.success());
}

#[test]
fn import_blob_verifies_the_digest() {
    let (dir, store) = new_store();
    let src = dir.path().join("layer.tar.gz");
    let content = bytes(5, 5000);
    fs::write(&src, &content).unwrap();
    let digest = Digest::of(&content);
    store.import_blob(&src, &digest, 5000).unwrap();
    assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), content);

    let wrong = Digest::of(b"something else");
    match store.import_blob(&src, &wrong, 5000) {
        Err(Error::DigestMismatch { path, .. }) => assert_eq!(path, src),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!store.has_blob(&wrong));
    assert!(tmp_files(store.blobs_dir()).is_empty());
}

#[test]
fn import_blob_reads_no_more_than_the_size_and_leaves_no_temp_file() {
    let (dir, store) = new_store();
    let src = dir.path().join("layer.tar.gz");
    let content = bytes(5, 5000);
    fs::write(&src, &content).unwrap();
    let digest = Digest::of(&content);
    for size in [4999, 5001] {
        match store.import_blob(&src, &digest, size) {
            Err(Error::BlobSize {
                expected, actual, ..
            }) => {
                assert_eq!(expected, size);
                assert_eq!(actual, 5000);
            }
            other => panic!("expected a size mismatch for {size}, got {other:?}"),
        }
    }
    assert!(!store.has_blob(&digest));
    assert!(tmp_files(store.blobs_dir()).is_empty());
}

#[cfg(unix)]
#[test]
fn import_blob_refuses_a_link_to_dev_zero_and_a_fifo_without_reading_them() {
    let (dir, store) = new_store();
    let zero = dir.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo = dir.path().join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let digest = Digest::of(b"layer");
    for (src, kind) in [(&zero, "a character device"), (&fifo, "a FIFO")] {
        match store.import_blob(src, &digest, 1 << 30) {
            Err(e @ Error::ReadBlob { .. }) => {
                let source = std::error::Error::source(&e).unwrap().to_string();
                assert!(source.contains(kind), "{source}");
            }
            other => panic!("expected {kind} to be refused, got {other:?}"),
        }
    }
    assert!(tmp_files(store.blobs_dir()).is_empty());
}

#[test]
fn link_out_hard_links_and_replaces_atomically() {
    let (dir, store) = new_store();
    let result = layer(&store, &bytes(6, 4000));
    let digest = blob_of(&result);
    store.put_key(&key(1), &result).unwrap();
    let out = dir.path().join("layout/blobs/sha256");
    fs::create_dir_all(&out).unwrap();
    let dest = out.join(digest.hex());
    fs::write(&dest, b"stale").unwrap();

    store.link_out(&digest, &dest).unwrap();
    let blob_meta = fs::metadata(store.blob_path(&digest)).unwrap();
    let dest_meta = fs::metadata(&dest).unwrap();
    assert_eq!(
        (dest_meta.ino(), dest_meta.dev()),
        (blob_meta.ino(), blob_meta.dev())
    );
    assert!(tmp_files(&out).is_empty());
    // Linking again is fine.
    store.link_out(&digest, &dest).unwrap();

    // A new link moves the blob's ctime; the key stays a hit without a re-hash (its recorded
    // fingerprint is not rewritten).
    let before = fs::read(store.key_path(&key(1)).unwrap()).unwrap();
    assert_eq!(store.get_key(&key(1)).unwrap(), Some(result));
    assert_eq!(fs::read(store.key_path(&key(1)).unwrap()).unwrap(), before);

    let missing = Digest::of(b"not stored");
    assert!(matches!(
        store.link_out(&missing, &out.join(missing.hex())),
        Err(Error::MissingBlob { .. })
    ));
}

#[test]
fn link_out_copies_across_filesystems() {
    // /dev/shm is a tmpfs on Linux; if it is the same filesystem as the temp dir there is no
    // cross-device case to test here.
    let shm = Path::new("/dev/shm");
    let (_dir, store) = new_store();
    let Ok(shm_meta) = fs::metadata(shm) else {
        return;
    };
    if shm_meta.dev() == fs::metadata(store.root()).unwrap().dev() {
        return;
    }
    let out = tempfile::tempdir_in(shm).unwrap();
    let content = bytes(7, 3000);
    let (digest, _) = store.write_blob(&content).unwrap();
    let dest = out.path().join("blob");
    store.link_out(&digest, &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), content);
    assert_ne!(
        fs::metadata(&dest).unwrap().ino(),
        fs::metadata(store.blob_path(&digest)).unwrap().ino()
    );
    assert!(tmp_files(out.path()).is_empty());
}

// ---- keys ----

#[test]
fn key_record_round_trip() {
    let (_dir, store) = new_store();
    let result = layer(&store, &bytes(10, 1234));
    assert_eq!(store.get_key(&key(1)).unwrap(), None);
    store.put_key(&key(1), &result).unwrap();
    assert_eq!(store.get_key(&key(1)).unwrap(), Some(result.clone()));

    // The record is canonical JSON with the blob's fingerprint.
    let path = store.key_path(&key(1)).unwrap();
    assert_eq!(path.parent().unwrap().file_name().unwrap(), &key(1)[..2]);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(r#"{"fingerprints":{"sha256:"#), "{text}");
    let record = read_key_file(&store, &key(1));
    let blob_meta = fs::metadata(store.blob_path(&blob_of(&result))).unwrap();
    assert_eq!(
        record.fingerprints[result.blobs()[0].0],
        Fingerprint::of(&blob_meta)
    );

    // A record of several blobs and free-form data.
    let (config, config_size) = store.write_blob(b"{\"config\":1}").unwrap();
    let (manifest, manifest_size) = store.write_blob(b"{\"manifest\":1}").unwrap();
    let image = NodeResult::Blobs(BlobsRecord {
        blobs: vec![
            BlobRef {
                digest: config.to_string(),
                size: config_size,
                media_type: "application/vnd.oci.image.config.v1+json".into(),
            },
            BlobRef {
                digest: manifest.to_string(),
                size: manifest_size,
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            },
        ],
        data: serde_json::json!({"platform": "linux/amd64"}),
    });
    store.put_key(&key(2), &image).unwrap();
    assert_eq!(store.get_key(&key(2)).unwrap(), Some(image));
    // A missing blob of a multi-blob record is a miss.
    fs::remove_file(store.blob_path(&manifest)).unwrap();
    assert_eq!(store.get_key(&key(2)).unwrap(), None);
}

#[test]
fn put_key_checks_key_and_blobs() {
    let (_dir, store) = new_store();
    let result = layer(&store, &bytes(11, 100));
    assert!(matches!(
        store.put_key("not-a-key", &result),
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        store.put_key(&key(1).to_uppercase(), &result),
        Err(Error::InvalidKey { .. })
    ));
    let missing = NodeResult::Layer(LayerRecord {
        digest: Digest::of(b"absent").to_string(),
        diff_id: String::new(),
        size: 6,
        media_type: String::new(),
    });
    assert!(matches!(
        store.put_key(&key(1), &missing),
        Err(Error::MissingBlob { .. })
    ));
    let NodeResult::Layer(mut wrong_size) = result else {
        unreachable!()
    };
    wrong_size.size += 1;
    assert!(matches!(
        store.put_key(&key(1), &NodeResult::Layer(wrong_size)),
        Err(Error::BlobSize { .. })
    ));
    assert!(!store.key_path(&key(1)).unwrap().exists());
}

#[test]
fn truncated_blob_is_a_miss_and_is_removed() {
    let (_dir, store) = new_store();
    let result = layer(&store, &bytes(12, 10_000));
    store.put_key(&key(1), &result).unwrap();
    let blob = store.blob_path(&blob_of(&result));
    make_writable(&blob);
    File::options()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(5000)
        .unwrap();
    assert_eq!(store.get_key(&key(1)).unwrap(), None);
    assert!(!blob.exists());
    assert!(!store.key_path(&key(1)).unwrap().exists());
}

#[test]
fn corrupted_same_size_blob_with_new_mtime_is_detected() {
    let (_dir, store) = new_store();
    let content = bytes(13, 10_000);
    let result = layer(&store, &content);
    store.put_key(&key(1), &result).unwrap();
    let blob = store.blob_path(&blob_of(&result));
    make_writable(&blob);
    let mut damaged = content.clone();
    damaged[5000] ^= 0xff;
    fs::write(&blob, &damaged).unwrap();
    set_mtime(&blob, ago(60)); // a different mtime than recorded, whatever the clock granule
    assert_eq!(store.get_key(&key(1)).unwrap(), None);
    assert!(!blob.exists());
    assert!(!store.key_path(&key(1)).unwrap().exists());
}

#[test]
fn blob_rewritten_with_same_content_through_a_hard_link_stays_a_hit() {
    let (dir, store) = new_store();
    let content = bytes(14, 10_000);
    let result = layer(&store, &content);
    store.put_key(&key(1), &result).unwrap();
    let digest = blob_of(&result);
    let output = dir.path().join("output-blob");
    store.link_out(&digest, &output).unwrap();

    // Someone writes the same bytes through the output: the blob's mtime moves.
    make_writable(&output);
    fs::write(&output, &content).unwrap();
    set_mtime(&output, ago(30));
    let blob_meta = fs::metadata(store.blob_path(&digest)).unwrap();
    let recorded = read_key_file(&store, &key(1)).fingerprints[&digest.to_string()];
    assert!(!recorded.unchanged(&Fingerprint::of(&blob_meta)));

    assert_eq!(store.get_key(&key(1)).unwrap(), Some(result.clone()));
    // The fingerprint was refreshed to the blob's current stat data.
    let refreshed = read_key_file(&store, &key(1)).fingerprints[&digest.to_string()];
    assert_eq!(refreshed, Fingerprint::of(&blob_meta));
    assert_eq!(store.get_key(&key(1)).unwrap(), Some(result));
}

#[test]
fn unreadable_key_or_missing_blob_is_a_miss() {
    let (_dir, store) = new_store();
    let result = layer(&store, &bytes(15, 100));
    store.put_key(&key(1), &result).unwrap();
    let path = store.key_path(&key(1)).unwrap();
    fs::write(&path, b"{\"result\": trunc").unwrap();
    assert_eq!(store.get_key(&key(1)).unwrap(), None);
    assert!(!path.exists());

    store.put_key(&key(2), &result).unwrap();
    fs::remove_file(store.blob_path(&blob_of(&result))).unwrap();
    assert_eq!(store.get_key(&key(2)).unwrap(), None);
    assert!(matches!(
        store.get_key("xyz"),
        Err(Error::InvalidKey { .. })
    ));
}

#[test]
fn a_hit_marks_the_key_as_used() {
    let (_dir, store) = new_store();
    let result = layer(&store, &bytes(16, 100));
    store.put_key(&key(1), &result).unwrap();
    let path = store.key_path(&key(1)).unwrap();
    set_mtime(&path, ago(86_400));
    assert!(store.get_key(&key(1)).unwrap().is_some());
    assert!(mtime(&path) > ago(60));
}

// ---- stat index ----

/// A host file with an mtime safely in the past (not racy).
fn host_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    set_mtime(&path, ago(100));
    path
}

#[test]
fn hash_file_is_blake3_of_the_content() {
    let dir = tempfile::tempdir().unwrap();
    for len in [0, 1, 1 << 20, 3 * (1 << 20) + 5] {
        let content = bytes(20, len);
        let path = dir.path().join(format!("f{len}"));
        fs::write(&path, &content).unwrap();
        assert_eq!(
            hash_file(&path).unwrap(),
            *blake3::hash(&content).as_bytes()
        );
    }
    assert!(hash_file(&dir.path().join("missing")).is_err());
}

#[test]
fn stat_index_hits_when_nothing_changed() {
    let (dir, store) = new_store();
    let file = host_file(dir.path(), "a.txt", b"hello");
    let mut index = StatIndex::load(&store).unwrap();
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(index.lookup(&file, &meta), None);
    let hash = index.content_hash(&file, &meta).unwrap();
    assert_eq!(hash, *blake3::hash(b"hello").as_bytes());
    assert_eq!(index.lookup(&file, &meta), Some(hash));
    index.save(&store).unwrap();

    let index = StatIndex::load(&store).unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(
        index.lookup(&file, &fs::metadata(&file).unwrap()),
        Some(hash)
    );
}

#[test]
fn stat_index_touch_and_content_change() {
    let (dir, store) = new_store();
    let file = host_file(dir.path(), "a.txt", b"version 1");
    let mut index = StatIndex::load(&store).unwrap();
    let first = index
        .content_hash(&file, &fs::metadata(&file).unwrap())
        .unwrap();

    // touch: new mtime, same content -> not trusted, re-hashed to the same hash.
    set_mtime(&file, ago(50));
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(index.lookup(&file, &meta), None);
    assert_eq!(index.content_hash(&file, &meta).unwrap(), first);
    assert_eq!(index.lookup(&file, &meta), Some(first));

    // New content (same size) -> a different hash.
    fs::write(&file, b"version 2").unwrap();
    set_mtime(&file, ago(40));
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(index.lookup(&file, &meta), None);
    let second = index.content_hash(&file, &meta).unwrap();
    assert_ne!(second, first);
    assert_eq!(second, *blake3::hash(b"version 2").as_bytes());

    // A chmod moves ctime and mode: not trusted either.
    fs::set_permissions(&file, Permissions::from_mode(0o755)).unwrap();
    assert_eq!(index.lookup(&file, &fs::metadata(&file).unwrap()), None);
}

#[test]
fn racy_stat_index_entries_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = StatIndex::new();
    // Modified just now: hashed, but not trusted until it is older than the entry by 2 s.
    let fresh = dir.path().join("fresh");
    fs::write(&fresh, b"x").unwrap();
    let meta = fs::metadata(&fresh).unwrap();
    let hash = index.content_hash(&fresh, &meta).unwrap();
    assert_eq!(hash, *blake3::hash(b"x").as_bytes());
    assert_eq!(index.lookup(&fresh, &meta), None);

    // Modified 1 s ago: still within the margin.
    let recent = dir.path().join("recent");
    fs::write(&recent, b"y").unwrap();
    set_mtime(&recent, ago(1));
    let meta = fs::metadata(&recent).unwrap();
    index.content_hash(&recent, &meta).unwrap();
    assert_eq!(index.lookup(&recent, &meta), None);

    // A future mtime (clock skew) is never trusted.
    let future = dir.path().join("future");
    fs::write(&future, b"z").unwrap();
    set_mtime(&future, SystemTime::now() + Duration::from_secs(3600));
    let meta = fs::metadata(&future).unwrap();
    index.content_hash(&future, &meta).unwrap();
    assert_eq!(index.lookup(&future, &meta), None);

    // Old enough: trusted.
    let old = host_file(dir.path(), "old", b"w");
    let meta = fs::metadata(&old).unwrap();
    let hash = index.content_hash(&old, &meta).unwrap();
    assert_eq!(index.lookup(&old, &meta), Some(hash));
}

#[test]
fn stat_index_relative_paths_are_made_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let file = host_file(dir.path(), "rel.txt", b"r");
    let cwd = std::env::current_dir().unwrap();
    let relative = pathdiff(&file, &cwd);
    let mut index = StatIndex::new();
    let meta = fs::metadata(&file).unwrap();
    let hash = index.content_hash(&relative, &meta).unwrap();
    assert_eq!(index.lookup(&file, &meta), Some(hash));
}

/// `path` relative to `base` (both absolute), with `..` as needed.
fn pathdiff(path: &Path, base: &Path) -> PathBuf {
    let path: Vec<_> = path.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for c in &path[common..] {
        out.push(c);
    }
    out
}

#[test]
fn stat_index_save_merges_with_other_processes() {
    let (dir, store) = new_store();
    let a = host_file(dir.path(), "a", b"a");
    let b = host_file(dir.path(), "b", b"b");
    let shared = host_file(dir.path(), "shared", b"s");
    let mut first = StatIndex::load(&store).unwrap();
    let mut second = StatIndex::load(&store).unwrap();
    first.insert(&a, &fs::metadata(&a).unwrap(), [1; 32]);
    first.insert(&shared, &fs::metadata(&shared).unwrap(), [3; 32]);
    std::thread::sleep(Duration::from_millis(5));
    second.insert(&b, &fs::metadata(&b).unwrap(), [2; 32]);
    second.insert(&shared, &fs::metadata(&shared).unwrap(), [4; 32]);
    second.save(&store).unwrap();
    first.save(&store).unwrap(); // saved last, but its `shared` entry is older

    let merged = StatIndex::load(&store).unwrap();
    assert_eq!(merged.len(), 3);
    assert_eq!(merged.lookup(&a, &fs::metadata(&a).unwrap()), Some([1; 32]));
    assert_eq!(merged.lookup(&b, &fs::metadata(&b).unwrap()), Some([2; 32]));
    assert_eq!(
        merged.lookup(&shared, &fs::metadata(&shared).unwrap()),
        Some([4; 32])
    );
    // The saver sees the merged set too.
    assert_eq!(first.len(), 3);
}

#[test]
fn corrupt_or_truncated_stat_index_loads_empty() {
    let (dir, store) = new_store();
    let mut index = StatIndex::new();
    for i in 0..10 {
        let file = host_file(dir.path(), &format!("f{i}"), &[i]);
        index
            .content_hash(&file, &fs::metadata(&file).unwrap())
            .unwrap();
    }
    index.save(&store).unwrap();
    let path = store.root().join("stat-index");
    let good = fs::read(&path).unwrap();
    assert_eq!(StatIndex::load(&store).unwrap().len(), 10);

    let mut flipped = good.clone();
    flipped[40] ^= 1;
    let mut other_version = good.clone();
    other_version[8] = 99;
    for bad in [
        Vec::new(),
        b"garbage".to_vec(),
        good[..good.len() / 2].to_vec(),
        good[..good.len() - 1].to_vec(),
        flipped,
        other_version,
    ] {
        fs::write(&path, &bad).unwrap();
        assert!(StatIndex::load(&store).unwrap().is_empty());
    }
    // And saving over a corrupt index works.
    let file = host_file(dir.path(), "new", b"n");
    let mut index = StatIndex::load(&store).unwrap();
    index
        .content_hash(&file, &fs::metadata(&file).unwrap())
        .unwrap();
    index.save(&store).unwrap();
    assert_eq!(StatIndex::load(&store).unwrap().len(), 1);
}

#[test]
fn stat_index_of_50k_entries_round_trips() {
    let (dir, store) = new_store();
    let file = host_file(dir.path(), "f", b"f");
    let meta = fs::metadata(&file).unwrap();
    let mut index = StatIndex::new();
    let path = |i: u32| PathBuf::from(format!("/project/src/module{}/file-{i}.rs", i % 100));
    for i in 0..50_000u32 {
        index.insert(&path(i), &meta, *blake3::hash(&i.to_le_bytes()).as_bytes());
    }
    index.save(&store).unwrap();
    let loaded = StatIndex::load(&store).unwrap();
    assert_eq!(loaded.len(), 50_000);
    for i in [0, 1, 777, 49_999] {
        assert_eq!(
            loaded.lookup(&path(i), &meta),
            Some(*blake3::hash(&i.to_le_bytes()).as_bytes())
        );
    }
}

// ---- prune and verify ----

fn put(store: &Store, n: u32, seed: u8, len: usize) -> NodeResult {
    let result = layer(store, &bytes(seed, len));
    store.put_key(&key(n), &result).unwrap();
    result
}

fn has_key(store: &Store, n: u32) -> bool {
    store.key_path(&key(n)).unwrap().exists()
}

fn set_key_age(store: &Store, n: u32, secs: u64) {
    set_mtime(&store.key_path(&key(n)).unwrap(), ago(secs));
}

#[test]
fn prune_by_age_respects_keep_sets_and_cleans_orphans_and_temp_files() {
    let (_dir, store) = new_store();
    let old = put(&store, 1, 1, 1000);
    let old_kept = put(&store, 2, 2, 1000);
    let recent = put(&store, 3, 3, 1000);
    // An old key sharing its blob with a recent one.
    store.put_key(&key(4), &recent).unwrap();
    set_key_age(&store, 1, 3 * 86_400);
    set_key_age(&store, 2, 3 * 86_400);
    set_key_age(&store, 4, 3 * 86_400);
    let (orphan, _) = store.write_blob(&bytes(5, 500)).unwrap();
    let (kept_orphan, _) = store.write_blob(&bytes(6, 500)).unwrap();
    let stale_tmp = store.blobs_dir().join(".tmp-stale");
    fs::write(&stale_tmp, vec![0; 300]).unwrap();
    set_mtime(&stale_tmp, ago(2 * 3600));
    let fresh_tmp = store.blobs_dir().join(".tmp-writing");
    fs::write(&fresh_tmp, b"in progress").unwrap();
    let stale_key_tmp = store.keys_dir().join(&key(1)[..2]).join(".tmp-k");
    fs::write(&stale_key_tmp, b"{").unwrap();
    set_mtime(&stale_key_tmp, ago(2 * 3600));

    let lock = store.lock_exclusive().unwrap();
    let report = store
        .prune(
            &lock,
            &PruneOptions {
                older_than: Some(Duration::from_secs(86_400)),
                max_size: None,
                keep_keys: HashSet::from([key(2)]),
                keep_blobs: HashSet::from([kept_orphan.to_string()]),
            },
        )
        .unwrap();
    drop(lock);

    assert!(!has_key(&store, 1));
    assert!(has_key(&store, 2));
    assert!(has_key(&store, 3));
    assert!(!has_key(&store, 4));
    assert!(!store.has_blob(&blob_of(&old)));
    assert!(store.has_blob(&blob_of(&old_kept)));
    assert!(store.has_blob(&blob_of(&recent)));
    assert!(!store.has_blob(&orphan));
    assert!(store.has_blob(&kept_orphan));
    assert!(!stale_tmp.exists());
    assert!(!stale_key_tmp.exists());
    assert!(fresh_tmp.exists());
    assert_eq!(report.removed_keys, 2);
    assert_eq!(report.removed_blobs, 2);
    assert!(report.freed_bytes >= 1000 + 500 + 300, "{report:?}");
    assert_eq!(store.get_key(&key(3)).unwrap(), Some(recent));
}

#[test]
fn prune_by_size_evicts_least_recently_used_first() {
    let (_dir, store) = new_store();
    // Names and ages in different orders, so the order cannot come from the names.
    for (n, age) in [(1, 100), (2, 300), (3, 200), (4, 400)] {
        put(&store, n, n as u8, 1000);
        set_key_age(&store, n, age);
    }
    // Key 4 is the oldest, but used now: it becomes the most recent.
    assert!(store.get_key(&key(4)).unwrap().is_some());

    let lock = store.lock_exclusive().unwrap();
    let report = store
        .prune(
            &lock,
            &PruneOptions {
                max_size: Some(2500),
                ..Default::default()
            },
        )
        .unwrap();
    // 4000 bytes -> evict key 2 (300 s), then key 3 (200 s): 2000 <= 2500.
    assert!(!has_key(&store, 2));
    assert!(!has_key(&store, 3));
    assert!(has_key(&store, 1));
    assert!(has_key(&store, 4));
    assert_eq!(report.removed_keys, 2);
    assert_eq!(report.removed_blobs, 2);
    assert_eq!(store.info().unwrap().blob_bytes, 2000);

    // Kept keys are never evicted, even if the size cannot be reached.
    let report = store
        .prune(
            &lock,
            &PruneOptions {
                max_size: Some(0),
                keep_keys: HashSet::from([key(1)]),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(has_key(&store, 1));
    assert!(!has_key(&store, 4));
    assert_eq!(report.removed_keys, 1);
    assert_eq!(store.info().unwrap().blob_bytes, 1000);
}

#[test]
fn prune_by_size_keeps_blobs_still_referenced() {
    let (_dir, store) = new_store();
    let shared = put(&store, 1, 1, 1000);
    store.put_key(&key(2), &shared).unwrap();
    put(&store, 3, 3, 1000);
    set_key_age(&store, 1, 300);
    set_key_age(&store, 2, 100);
    set_key_age(&store, 3, 200);
    let lock = store.lock_exclusive().unwrap();
    store
        .prune(
            &lock,
            &PruneOptions {
                max_size: Some(1000),
                ..Default::default()
            },
        )
        .unwrap();
    // Key 1 goes first but its blob is still key 2's; then key 3 and its blob go.
    assert!(!has_key(&store, 1));
    assert!(has_key(&store, 2));
    assert!(!has_key(&store, 3));
    assert_eq!(store.get_key(&key(2)).unwrap(), Some(shared));
}

#[test]
fn prune_drops_stat_entries_of_vanished_files() {
    let (dir, store) = new_store();
    let keep = host_file(dir.path(), "keep", b"k");
    let gone = host_file(dir.path(), "gone", b"g");
    let mut index = StatIndex::load(&store).unwrap();
    for file in [&keep, &gone] {
        index
            .content_hash(file, &fs::metadata(file).unwrap())
            .unwrap();
    }
    index.save(&store).unwrap();
    fs::remove_file(&gone).unwrap();
    let lock = store.lock_exclusive().unwrap();
    let report = store.prune(&lock, &PruneOptions::default()).unwrap();
    assert_eq!(report.removed_stat_entries, 1);
    let index = StatIndex::load(&store).unwrap();
    assert_eq!(index.len(), 1);
    assert!(index.lookup(&keep, &fs::metadata(&keep).unwrap()).is_some());
}

#[test]
fn verify_removes_corrupt_blobs_and_their_keys_and_ignores_temp_files() {
    let (_dir, store) = new_store();
    let good = put(&store, 1, 1, 5000);
    let content = bytes(2, 5000);
    let bad = layer(&store, &content);
    store.put_key(&key(2), &bad).unwrap();
    let bad_blob = store.blob_path(&blob_of(&bad));
    // Corrupt it in place, same size, mtime restored: only a re-hash can tell.
    let before = mtime(&bad_blob);
    make_writable(&bad_blob);
    let mut damaged = content.clone();
    damaged[0] ^= 1;
    fs::write(&bad_blob, &damaged).unwrap();
    set_mtime(&bad_blob, before);
    let tmp = store.blobs_dir().join(".tmp-killed-writer");
    fs::write(&tmp, b"half a blob").unwrap();

    let lock = store.lock_exclusive().unwrap();
    let report = store.verify(&lock).unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(report.corrupt, vec![blob_of(&bad).to_string()]);
    assert_eq!(report.removed_keys, 1);
    assert!(!bad_blob.exists());
    assert!(!has_key(&store, 2));
    assert!(tmp.exists());
    assert_eq!(store.get_key(&key(1)).unwrap(), Some(good));

    let report = store.verify(&lock).unwrap();
    assert_eq!(report.checked, 1);
    assert!(report.corrupt.is_empty());
}

// ---- locks, version, info ----

#[test]
fn exclusive_lock_waits_for_shared_locks() {
    let (dir, first) = new_store();
    let second = Store::open(&dir.path().join("store")).unwrap();
    let shared = first.lock_shared().unwrap();
    assert!(second.try_lock_exclusive().unwrap().is_none());
    let other_shared = second.try_lock_shared().unwrap();
    assert!(other_shared.is_some());
    drop(shared);
    assert!(second.try_lock_exclusive().unwrap().is_none());
    drop(other_shared);
    let exclusive = second
        .try_lock_exclusive()
        .unwrap()
        .expect("no lock is held");
    assert!(first.try_lock_shared().unwrap().is_none());
    assert!(first.try_lock_exclusive().unwrap().is_none());
    drop(exclusive);
    assert!(first.try_lock_shared().unwrap().is_some());

    // A build waiting for a prune gets its lock when the prune is done.
    let exclusive = first.lock_exclusive().unwrap();
    let waiter = std::thread::spawn(move || {
        let _lock = second.lock_shared().unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished());
    drop(exclusive);
    waiter.join().unwrap();
}

#[test]
fn prune_and_verify_need_this_stores_lock() {
    let (_dir, store) = new_store();
    let (_other_dir, other) = new_store();
    let lock = other.lock_exclusive().unwrap();
    assert!(matches!(
        store.prune(&lock, &PruneOptions::default()),
        Err(Error::ForeignLock { .. })
    ));
    assert!(matches!(
        store.verify(&lock),
        Err(Error::ForeignLock { .. })
    ));
}

#[test]
fn store_version_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    assert_eq!(
        fs::read_to_string(root.join("version")).unwrap(),
        format!("{STORE_VERSION}\n")
    );
    // Another version, empty: recreated.
    fs::write(root.join("version"), "0\n").unwrap();
    Store::open(&root).unwrap();
    assert_eq!(
        fs::read_to_string(root.join("version")).unwrap().trim(),
        STORE_VERSION.to_string()
    );
    // Another version with content: a clear error.
    put(&store, 1, 1, 10);
    fs::write(root.join("version"), "999\n").unwrap();
    let err = Store::open(&root).unwrap_err();
    assert!(matches!(err, Error::Version { ref found, .. } if found == "999"));
    assert!(err.to_string().contains("delete the directory"), "{err}");
    fs::remove_file(root.join("version")).unwrap();
    assert!(matches!(Store::open(&root), Err(Error::Version { .. })));
}

#[test]
fn info_counts_the_store() {
    let (dir, store) = new_store();
    put(&store, 1, 1, 100);
    put(&store, 2, 2, 200);
    store.write_blob(&bytes(3, 50)).unwrap();
    fs::write(store.blobs_dir().join(".tmp-x"), b"xxxx").unwrap();
    let file = host_file(dir.path(), "f", b"f");
    let mut index = StatIndex::load(&store).unwrap();
    index
        .content_hash(&file, &fs::metadata(&file).unwrap())
        .unwrap();
    index.save(&store).unwrap();
    let info = store.info().unwrap();
    assert_eq!(
        info,
        StoreInfo {
            root: store.root().to_path_buf(),
            blobs: 3,
            blob_bytes: 350,
            keys: 2,
            stat_entries: 1,
        }
    );
}
