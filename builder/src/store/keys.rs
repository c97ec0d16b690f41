//! Keys: `keys/<2 hex>/<64 hex>`, node key -> result record.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{parse_digest, remove_if_exists, write_atomic, Error, Store};
use crate::oci::to_canonical_json;
use crate::types::{Digest, LayerBlob};

/// What a node of the layer graph produced: the blobs it wrote and what the executor needs to
/// use them without reading them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeResult {
    /// A layer blob.
    Layer(LayerRecord),
    /// Any other node (image config + manifest, index, fetched base): its blobs and free-form
    /// data.
    Blobs(BlobsRecord),
}

/// The result of a *build layer* node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// `sha256:<hex>` of the (compressed) blob.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the blob in bytes.
    pub size: u64,
    /// The blob's OCI media type.
    pub media_type: String,
}

/// The result of a node other than a layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobsRecord {
    /// The blobs the node wrote; a lookup is a hit only if all of them are intact.
    pub blobs: Vec<BlobRef>,
    /// Node-specific data.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// A blob a record refers to (the fields of an OCI descriptor that the store needs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

impl NodeResult {
    /// The blobs of this result, as (digest, size).
    pub fn blobs(&self) -> Vec<(&str, u64)> {
        match self {
            NodeResult::Layer(layer) => vec![(layer.digest.as_str(), layer.size)],
            NodeResult::Blobs(record) => record
                .blobs
                .iter()
                .map(|b| (b.digest.as_str(), b.size))
                .collect(),
        }
    }
}

impl From<&LayerBlob> for LayerRecord {
    fn from(blob: &LayerBlob) -> Self {
        Self {
            digest: blob.digest.clone(),
            diff_id: blob.diff_id.clone(),
            size: blob.size,
            media_type: blob.media_type.clone(),
        }
    }
}

impl From<&LayerRecord> for LayerBlob {
    fn from(record: &LayerRecord) -> Self {
        Self {
            digest: record.digest.clone(),
            diff_id: record.diff_id.clone(),
            size: record.size,
            media_type: record.media_type.clone(),
        }
    }
}

/// A blob's stat data when its key was recorded: if it moves, the blob is re-hashed before it
/// is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub dev: u64,
}

impl Fingerprint {
    /// The fingerprint of a file's metadata.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            dev: meta.dev(),
        }
    }

    /// Whether the blob is unchanged since `self` was recorded. The ctime is not compared:
    /// hard-linking the blob into an output moves it (see the module docs).
    pub fn unchanged(&self, now: &Fingerprint) -> bool {
        self.size == now.size
            && self.mtime_ns == now.mtime_ns
            && self.inode == now.inode
            && self.dev == now.dev
    }
}

/// Seconds + nanoseconds as nanoseconds since the epoch.
pub(crate) fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// A key file: the node's result and the fingerprint of each of its blobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyFile {
    pub result: NodeResult,
    pub fingerprints: BTreeMap<String, Fingerprint>,
}

/// Whether `key` is a node key: 64 lowercase hex digits.
fn is_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Store {
    /// `keys/`: one directory per first two hex digits of the keys.
    pub fn keys_dir(&self) -> &Path {
        &self.keys
    }

    /// The path of the record of node `key`.
    pub fn key_path(&self, key: &str) -> Result<PathBuf, Error> {
        if !is_key(key) {
            return Err(Error::InvalidKey {
                key: key.to_string(),
            });
        }
        Ok(self.keys.join(&key[..2]).join(key))
    }

    /// Records `result` for node `key`. Its blobs must already be in the store (write blobs
    /// first, then the key: see the module docs); their current stat data is recorded with it.
    pub fn put_key(&self, key: &str, result: &NodeResult) -> Result<(), Error> {
        let path = self.key_path(key)?;
        let mut fingerprints = BTreeMap::new();
        for (digest, size) in result.blobs() {
            let parsed = parse_digest(digest)?;
            let blob = self.blob_path(&parsed);
            let meta = match fs::metadata(&blob) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::MissingBlob {
                        digest: digest.to_string(),
                        path: blob,
                    })
                }
                Err(source) => return Err(Error::ReadBlob { path: blob, source }),
            };
            if meta.len() != size {
                return Err(Error::BlobSize {
                    path: blob,
                    expected: size,
                    actual: meta.len(),
                });
            }
            fingerprints.insert(digest.to_string(), Fingerprint::of(&meta));
        }
        // The same result over the same blobs (a warm build records its image again): the
        // record is only marked as used, not written again. The ctime is not compared, as a
        // lookup does not compare it (see the module docs).
        if let Ok(file) = File::options().append(true).open(&path) {
            let same = fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<KeyFile>(&bytes).ok())
                .is_some_and(|kept| {
                    kept.result == *result
                        && kept.fingerprints.len() == fingerprints.len()
                        && kept.fingerprints.iter().all(|(digest, old)| {
                            fingerprints
                                .get(digest)
                                .is_some_and(|now| old.unchanged(now))
                        })
                });
            if same {
                // Best effort, as for a hit: a failed touch only makes the key look older.
                let _ = file.set_modified(SystemTime::now());
                return Ok(());
            }
        }
        let record = KeyFile {
            result: result.clone(),
            fingerprints,
        };
        self.write_key_file(&path, &record)
    }

    pub(crate) fn write_key_file(&self, path: &Path, record: &KeyFile) -> Result<(), Error> {
        let bytes = to_canonical_json(record).map_err(|source| Error::EncodeKey {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let dir = path.parent().unwrap_or(&self.keys);
        let write_err = |source| Error::WriteKey {
            path: path.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(write_err)?;
        write_atomic(dir, path, &bytes, None).map_err(write_err)
    }

    /// The result recorded for node `key`, if it is there and all its blobs are intact; `None`
    /// is a miss (the caller builds the node and [`put_key`](Self::put_key)s it).
    ///
    /// A hit costs a read of the key file and a stat of each blob, and marks the key as used
    /// (its mtime, for [`prune`](Self::prune)). A blob whose stat data moved since the key was
    /// recorded is re-hashed: intact, its new stat data is recorded and the lookup is a hit;
    /// damaged (truncated, written to), the blob and the key are removed and the lookup is a
    /// miss. A key file that cannot be parsed is removed too.
    pub fn get_key(&self, key: &str) -> Result<Option<NodeResult>, Error> {
        let path = self.key_path(key)?;
        let read_err = |source| Error::ReadKey {
            path: path.clone(),
            source,
        };
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        let mut bytes = Vec::with_capacity(1024);
        file.read_to_end(&mut bytes).map_err(read_err)?;
        let Ok(mut record) = serde_json::from_slice::<KeyFile>(&bytes) else {
            remove_if_exists(&path)?;
            return Ok(None);
        };
        let blobs: Vec<(String, u64)> = record
            .result
            .blobs()
            .into_iter()
            .map(|(d, s)| (d.to_string(), s))
            .collect();
        let mut refreshed = false;
        for (digest, size) in blobs {
            match self.check_blob(&digest, size, record.fingerprints.get(&digest))? {
                BlobState::Unchanged => {}
                BlobState::Refreshed(fingerprint) => {
                    record.fingerprints.insert(digest, fingerprint);
                    refreshed = true;
                }
                BlobState::Bad => {
                    remove_if_exists(&path)?;
                    return Ok(None);
                }
                BlobState::Unsure => return Ok(None),
            }
        }
        if refreshed {
            // Rewriting the record also marks it as used.
            self.write_key_file(&path, &record)?;
        } else {
            // Best effort: a failed touch only makes the key look older to prune.
            let _ = file.set_modified(SystemTime::now());
        }
        Ok(Some(record.result))
    }

    /// Checks one blob of a record against its recorded fingerprint; a damaged blob is removed.
    fn check_blob(
        &self,
        digest: &str,
        size: u64,
        recorded: Option<&Fingerprint>,
    ) -> Result<BlobState, Error> {
        let Ok(parsed) = Digest::parse(digest) else {
            return Ok(BlobState::Bad);
        };
        let blob = self.blob_path(&parsed);
        let meta = match fs::metadata(&blob) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BlobState::Bad),
            Err(source) => return Err(Error::ReadBlob { path: blob, source }),
        };
        let now = Fingerprint::of(&meta);
        if now.size != size {
            remove_damaged(&blob, &now)?;
            return Ok(BlobState::Bad);
        }
        if recorded.is_some_and(|r| r.unchanged(&now)) {
            return Ok(BlobState::Unchanged);
        }
        match Digest::of_file(&blob) {
            Ok((actual, actual_size)) if actual == parsed && actual_size == size => {
                // Stat again: hashing may have taken a while, and the file is what was hashed
                // only if its stat data did not move meanwhile (otherwise: re-hash next time).
                match fs::metadata(&blob) {
                    Ok(after) if Fingerprint::of(&after) == now => Ok(BlobState::Refreshed(now)),
                    _ => Ok(BlobState::Unsure),
                }
            }
            Ok(_) => {
                remove_damaged(&blob, &now)?;
                Ok(BlobState::Bad)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BlobState::Bad),
            Err(source) => Err(Error::ReadBlob { path: blob, source }),
        }
    }
}

/// What [`Store::check_blob`] found.
enum BlobState {
    /// Stat data as recorded.
    Unchanged,
    /// Stat data moved, content intact: record this fingerprint.
    Refreshed(Fingerprint),
    /// Missing or damaged (and removed): the key is a miss, and removed.
    Bad,
    /// Changed while it was being hashed: a miss this time (the caller rebuilds and records
    /// the key again).
    Unsure,
}

/// Removes a damaged blob, unless it was replaced meanwhile (another process rewrote it: a new
/// file, whose fingerprint differs from the damaged one's).
fn remove_damaged(blob: &Path, damaged: &Fingerprint) -> Result<(), Error> {
    match fs::metadata(blob) {
        Ok(meta) if Fingerprint::of(&meta) == *damaged => remove_if_exists(blob),
        _ => Ok(()),
    }
}
