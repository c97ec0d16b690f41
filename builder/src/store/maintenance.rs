//! Looking after the store: [`Store::info`], [`Store::prune`], [`Store::verify`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use super::keys::{Fingerprint, KeyFile};
use super::{is_tmp, list_dir, remove_if_exists, Error, ExclusiveLock, StatIndex, Store};
use crate::types::Digest;

/// The name of a default store, in the default output directory `<target-dir>/image/`.
const DEFAULT_STORE_NAME: &str = ".store";

/// `.tmp-*` files older than this are left-overs of a killed writer.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// What is in a store ([`Store::info`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreInfo {
    pub root: PathBuf,
    /// Number of blobs.
    pub blobs: u64,
    /// Total size of the blobs in bytes.
    pub blob_bytes: u64,
    /// Number of node keys.
    pub keys: u64,
    /// Number of stat index entries.
    pub stat_entries: u64,
}

/// What [`Store::prune`] removes besides orphans and stale temporary files.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Remove keys not used (looked up or recorded) for this long.
    pub older_than: Option<Duration>,
    /// Then remove least recently used keys until the blobs take at most this many bytes.
    pub max_size: Option<u64>,
    /// Keys never removed (e.g. those of the current build graph).
    pub keep_keys: HashSet<String>,
    /// Blobs never removed (`sha256:<hex>`), e.g. those of a base image in use.
    pub keep_blobs: HashSet<String>,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    pub removed_keys: u64,
    pub removed_blobs: u64,
    /// Bytes of the blobs, keys and temporary files removed.
    pub freed_bytes: u64,
    /// Stat index entries of host paths that no longer exist.
    pub removed_stat_entries: u64,
    /// Temporary outputs that killed builds left in the default output directory (see
    /// [`Store::prune`], step 5).
    pub removed_output_leftovers: u64,
    /// Kept `cargo metadata` answers no build can take any more (see [`Store::prune`], step 4).
    pub removed_cargo_answers: u64,
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Number of blobs re-hashed.
    pub checked: u64,
    /// Digests (`sha256:<hex>`) of the blobs whose content did not match their name; removed.
    pub corrupt: Vec<String>,
    /// Keys removed because a blob of theirs was corrupt or missing, or they were unreadable.
    pub removed_keys: u64,
}

/// A key file as found by a scan.
struct ScannedKey {
    key: String,
    path: PathBuf,
    mtime: SystemTime,
    bytes: u64,
    /// `None` if the file could not be parsed.
    record: Option<KeyFile>,
}

impl ScannedKey {
    fn blobs(&self) -> Vec<String> {
        self.record
            .as_ref()
            .map(|r| {
                r.result
                    .blobs()
                    .into_iter()
                    .map(|(d, _)| d.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A file as found by a scan (a temporary file, or a kept answer to remove): its path, mtime
/// and size.
struct ScannedFile {
    path: PathBuf,
    mtime: SystemTime,
    bytes: u64,
}

impl Store {
    /// Counts what the store holds. Needs no lock (the numbers may be stale at once).
    pub fn info(&self) -> Result<StoreInfo, Error> {
        let (blobs, _) = self.scan_blobs()?;
        let mut keys = 0;
        for (_, shard) in list_dir(self.keys_dir())? {
            if shard.is_dir() {
                keys += list_dir(&shard)?
                    .iter()
                    .filter(|(name, _)| !is_tmp(name))
                    .count() as u64;
            }
        }
        Ok(StoreInfo {
            root: self.root().to_path_buf(),
            blobs: blobs.len() as u64,
            blob_bytes: blobs.values().sum(),
            keys,
            stat_entries: StatIndex::load(self)?.len() as u64,
        })
    }

    /// Removes what is no longer needed, holding the store's exclusive `lock`:
    ///
    /// 1. keys (not in `keep_keys`) not used for `older_than`, and unreadable keys or keys
    ///    whose blobs are gone;
    /// 2. blobs no remaining key refers to (orphans of an interrupted build, or of the keys just
    ///    removed), unless in `keep_blobs`;
    /// 3. least recently used keys, and the blobs only they referred to, until the blobs take
    ///    at most `max_size` bytes. Blobs of kept keys and kept blobs always stay, so the store
    ///    may stay above `max_size`;
    /// 4. `.tmp-*` files older than an hour, stat index entries of vanished host paths, and
    ///    kept `cargo metadata` answers of directories that are gone (or of another version,
    ///    or unreadable);
    /// 5. when the store is a default one (`<target-dir>/image/.store`), the temporary outputs
    ///    builds killed with SIGKILL left beside it, in the default output directory: those no
    ///    live build holds (see [`crate::oci::remove_leftovers`]).
    pub fn prune(
        &self,
        lock: &ExclusiveLock,
        options: &PruneOptions,
    ) -> Result<PruneReport, Error> {
        lock.check(self)?;
        let now = SystemTime::now();
        let mut report = PruneReport::default();
        let (mut blobs, mut tmps) = self.scan_blobs()?;
        let (keys, key_tmps) = self.scan_keys()?;
        tmps.extend(key_tmps);
        let (answers, answer_tmps) = self.scan_cargo_answers()?;
        tmps.extend(answer_tmps);

        // 1. Keys by age, and dead keys.
        let mut live = Vec::new();
        for key in keys {
            let kept = options.keep_keys.contains(&key.key);
            let too_old = options
                .older_than
                .is_some_and(|age| now.duration_since(key.mtime).unwrap_or_default() > age);
            let dead = key.record.is_none()
                || key
                    .blobs()
                    .iter()
                    .any(|d| !digest_hex(d).is_some_and(|hex| blobs.contains_key(hex)));
            if dead || (too_old && !kept) {
                remove_if_exists(&key.path)?;
                report.removed_keys += 1;
                report.freed_bytes += key.bytes;
            } else {
                live.push(key);
            }
        }

        // 2. Orphan blobs.
        let mut refs: HashMap<String, usize> = HashMap::new();
        for key in &live {
            for digest in key.blobs() {
                if let Some(hex) = digest_hex(&digest) {
                    *refs.entry(hex.to_string()).or_default() += 1;
                }
            }
        }
        let mut pinned: HashSet<String> = options
            .keep_blobs
            .iter()
            .filter_map(|d| digest_hex(d).map(str::to_string))
            .collect();
        for key in live.iter().filter(|k| options.keep_keys.contains(&k.key)) {
            pinned.extend(
                key.blobs()
                    .iter()
                    .filter_map(|d| digest_hex(d).map(str::to_string)),
            );
        }
        let orphans: Vec<String> = blobs
            .keys()
            .filter(|hex| !refs.contains_key(*hex) && !pinned.contains(*hex))
            .cloned()
            .collect();
        for hex in orphans {
            self.remove_blob(&hex, &mut blobs, &mut report)?;
        }

        // 3. Least recently used keys, down to `max_size`.
        if let Some(max_size) = options.max_size {
            let mut total: u64 = blobs.values().sum();
            let mut evictable: Vec<&ScannedKey> = live
                .iter()
                .filter(|k| !options.keep_keys.contains(&k.key))
                .collect();
            evictable.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.key.cmp(&b.key)));
            for key in evictable {
                if total <= max_size {
                    break;
                }
                remove_if_exists(&key.path)?;
                report.removed_keys += 1;
                report.freed_bytes += key.bytes;
                for digest in key.blobs() {
                    let Some(hex) = digest_hex(&digest) else {
                        continue;
                    };
                    let count = refs.entry(hex.to_string()).or_default();
                    *count = count.saturating_sub(1);
                    if *count == 0 && !pinned.contains(hex) {
                        if let Some(size) = blobs.get(hex).copied() {
                            self.remove_blob(hex, &mut blobs, &mut report)?;
                            total -= size;
                        }
                    }
                }
            }
        }

        // 4. Stale temporary files, vanished host paths, answers of vanished directories.
        for answer in answers {
            remove_if_exists(&answer.path)?;
            report.removed_cargo_answers += 1;
            report.freed_bytes += answer.bytes;
        }
        for tmp in tmps {
            if now.duration_since(tmp.mtime).unwrap_or_default() > STALE_TMP {
                remove_if_exists(&tmp.path)?;
                report.freed_bytes += tmp.bytes;
            }
        }
        report.removed_stat_entries = StatIndex::prune_missing(self)? as u64;

        // 5. Leftover temporary outputs in the default output directory. Only beside a default
        // store: any other directory may hold names like ours that are somebody else's. Beside
        // any store, and in it, the scratch directories of killed builds (unpacked archive
        // bases, opened stages), whose names nobody else uses.
        let mut removed = crate::oci::remove_scratch_leftovers(self.root());
        if let Some(parent) = self.root().parent() {
            let beside = if self.root().file_name() == Some(OsStr::new(DEFAULT_STORE_NAME)) {
                crate::oci::remove_leftovers(parent, None)
            } else {
                crate::oci::remove_scratch_leftovers(parent)
            };
            removed.count += beside.count;
            removed.bytes += beside.bytes;
        }
        report.removed_output_leftovers = removed.count;
        report.freed_bytes += removed.bytes;
        Ok(report)
    }

    /// Re-hashes every blob (in parallel), holding the store's exclusive `lock`. Blobs whose
    /// content does not match their name are removed, and so are the keys referring to them
    /// (or to missing blobs); keys whose blobs are intact get their fingerprints refreshed.
    /// `.tmp-*` files are not blobs and are left alone.
    pub fn verify(&self, lock: &ExclusiveLock) -> Result<VerifyReport, Error> {
        lock.check(self)?;
        let (blobs, _) = self.scan_blobs()?;
        let names: Vec<&String> = blobs.keys().collect();
        let results: Vec<Result<Option<String>, Error>> = names
            .par_iter()
            .map(|hex| {
                let path = self.blobs_dir().join(hex);
                match Digest::of_file(&path) {
                    Ok((digest, _)) if digest.hex() == hex.as_str() => Ok(None),
                    Ok(_) => {
                        remove_if_exists(&path)?;
                        Ok(Some(hex.to_string()))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(Error::ReadBlob { path, source }),
                }
            })
            .collect();
        let mut corrupt = Vec::new();
        for result in results {
            if let Some(hex) = result? {
                corrupt.push(hex);
            }
        }
        corrupt.sort();
        let corrupt_set: HashSet<&str> = corrupt.iter().map(String::as_str).collect();

        let mut removed_keys = 0;
        let (keys, _) = self.scan_keys()?;
        for key in keys {
            let Some(mut record) = key.record else {
                remove_if_exists(&key.path)?;
                removed_keys += 1;
                continue;
            };
            let mut bad = false;
            let mut refreshed = false;
            for (digest, _) in record.result.blobs() {
                let ok = digest_hex(digest)
                    .filter(|hex| blobs.contains_key(*hex) && !corrupt_set.contains(hex));
                let Some(hex) = ok else {
                    bad = true;
                    break;
                };
                // Verified just now: record its current stat data, so lookups need no re-hash.
                if let Ok(meta) = fs::metadata(self.blobs_dir().join(hex)) {
                    let now = Fingerprint::of(&meta);
                    if record.fingerprints.get(digest) != Some(&now) {
                        record.fingerprints.insert(digest.to_string(), now);
                        refreshed = true;
                    }
                }
            }
            if bad {
                remove_if_exists(&key.path)?;
                removed_keys += 1;
            } else if refreshed {
                self.write_key_file(&key.path, &record)?;
                // Keep the key's age: verifying is not using it.
                if let Ok(file) = fs::File::options().write(true).open(&key.path) {
                    let _ = file.set_modified(key.mtime);
                }
            }
        }
        Ok(VerifyReport {
            checked: names.len() as u64,
            corrupt: corrupt
                .into_iter()
                .map(|hex| format!("sha256:{hex}"))
                .collect(),
            removed_keys,
        })
    }

    fn remove_blob(
        &self,
        hex: &str,
        blobs: &mut BTreeMap<String, u64>,
        report: &mut PruneReport,
    ) -> Result<(), Error> {
        remove_if_exists(&self.blobs_dir().join(hex))?;
        if let Some(size) = blobs.remove(hex) {
            report.removed_blobs += 1;
            report.freed_bytes += size;
        }
        Ok(())
    }

    /// Blobs (hex -> size) and temporary files of `blobs/sha256/`. Other names are not ours and
    /// are left alone.
    fn scan_blobs(&self) -> Result<(BTreeMap<String, u64>, Vec<ScannedFile>), Error> {
        let mut blobs = BTreeMap::new();
        let mut tmps = Vec::new();
        for (name, path) in list_dir(self.blobs_dir())? {
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue; // removed meanwhile
            };
            if is_tmp(&name) {
                tmps.push(scanned_file(path, &meta));
            } else if meta.is_file() && Digest::from_hex(&name).is_ok() {
                blobs.insert(name, meta.len());
            }
        }
        for (name, path) in list_dir(self.root())? {
            if is_tmp(&name) {
                if let Ok(meta) = fs::symlink_metadata(&path) {
                    tmps.push(scanned_file(path, &meta));
                }
            }
        }
        Ok((blobs, tmps))
    }

    /// The kept `cargo metadata` answers no build can take any more, and the temporary files
    /// of their directory. Names that are neither are not ours and are left
    /// alone.
    fn scan_cargo_answers(&self) -> Result<(Vec<ScannedFile>, Vec<ScannedFile>), Error> {
        let mut unused = Vec::new();
        let mut tmps = Vec::new();
        for (name, path) in list_dir(&self.root().join(crate::cargo::KEPT_ANSWERS_DIR))? {
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if is_tmp(&name) {
                tmps.push(scanned_file(path, &meta));
            } else if meta.is_file()
                && crate::cargo::kept_answer_of_use(&name, &path) == Some(false)
            {
                unused.push(scanned_file(path, &meta));
            }
        }
        Ok((unused, tmps))
    }

    /// Key files (parsed) and temporary files of `keys/`.
    fn scan_keys(&self) -> Result<(Vec<ScannedKey>, Vec<ScannedFile>), Error> {
        let mut keys = Vec::new();
        let mut tmps = Vec::new();
        for (_, shard) in list_dir(self.keys_dir())? {
            if !shard.is_dir() {
                continue;
            }
            for (name, path) in list_dir(&shard)? {
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                if is_tmp(&name) {
                    tmps.push(scanned_file(path, &meta));
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                let record = fs::read(&path)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<KeyFile>(&bytes).ok());
                keys.push(ScannedKey {
                    key: name,
                    mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    bytes: meta.len(),
                    path,
                    record,
                });
            }
        }
        Ok((keys, tmps))
    }
}

fn scanned_file(path: PathBuf, meta: &fs::Metadata) -> ScannedFile {
    ScannedFile {
        path,
        mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        bytes: meta.len(),
    }
}

/// The hex part of a valid `sha256:<hex>` digest.
fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    Digest::from_hex(hex).ok().map(|_| hex)
}
