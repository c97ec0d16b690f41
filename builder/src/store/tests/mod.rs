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

/// A host file with an mtime safely in the past (not racy).
fn host_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    set_mtime(&path, ago(100));
    path
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

mod maintenance;
mod records;
