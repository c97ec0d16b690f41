//! Where blobs were seen: for a blob digest and a registry, the repositories of that registry
//! known to hold it (because we pushed it there, pulled it from there, or found it there
//! through a remote cache). A push to another repository of the same registry mounts the blob
//! from one of them (`POST .../blobs/uploads/?mount=<digest>&from=<repository>`) instead of
//! uploading its bytes.
//!
//! It is a hint, never trusted: the registry answers a mount with 201 only when it really has
//! the blob in the source repository (and the client may read it), and anything else means
//! "upload it". Each (registry, digest) is a record under a key of its own (blake3 of
//! `blob-seen:<registry>\n<digest>`), whose data lists the repositories, the latest first, at
//! most [`MAX_SEEN`]. Two processes recording at once may lose one of their entries, which
//! only costs an upload.

use serde::{Deserialize, Serialize};

use super::{BlobsRecord, Error, NodeResult, Store};

/// How many repositories are remembered per blob and registry (the latest ones).
pub const MAX_SEEN: usize = 8;

/// The data of a seen record.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Seen {
    repositories: Vec<String>,
}

impl Store {
    /// The repositories of `registry` (`host[:port]`) where blob `digest` was seen, the latest
    /// first. Nothing recorded (or a record that cannot be read) is an empty list.
    pub fn seen_in(&self, registry: &str, digest: &str) -> Vec<String> {
        match self.get_key(&seen_key(registry, digest)) {
            Ok(Some(NodeResult::Blobs(record))) => serde_json::from_value::<Seen>(record.data)
                .map(|s| s.repositories)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Records that `repository` of `registry` holds each of `digests`.
    pub fn record_seen<'a>(
        &self,
        registry: &str,
        repository: &str,
        digests: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Error> {
        for digest in digests {
            let mut repositories = self.seen_in(registry, digest);
            if repositories.first().map(String::as_str) == Some(repository) {
                continue;
            }
            repositories.retain(|r| r != repository);
            repositories.insert(0, repository.to_owned());
            repositories.truncate(MAX_SEEN);
            let data =
                serde_json::to_value(Seen { repositories }).unwrap_or(serde_json::Value::Null);
            self.put_key(
                &seen_key(registry, digest),
                &NodeResult::Blobs(BlobsRecord {
                    blobs: Vec::new(),
                    data,
                }),
            )?;
        }
        Ok(())
    }
}

/// The key the repositories of `registry` holding blob `digest` are recorded under.
fn seen_key(registry: &str, digest: &str) -> String {
    blake3::hash(format!("blob-seen:{registry}\n{digest}").as_bytes())
        .to_hex()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_remembered_latest_first_per_registry() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(store.seen_in("r.example", &d).is_empty());
        store.record_seen("r.example", "one", [d.as_str()]).unwrap();
        store.record_seen("r.example", "two", [d.as_str()]).unwrap();
        store.record_seen("r.example", "one", [d.as_str()]).unwrap();
        assert_eq!(store.seen_in("r.example", &d), ["one", "two"]);
        assert!(store.seen_in("other.example", &d).is_empty());
        for i in 0..2 * MAX_SEEN {
            store
                .record_seen("r.example", &format!("repo{i}"), [d.as_str()])
                .unwrap();
        }
        let seen = store.seen_in("r.example", &d);
        assert_eq!(seen.len(), MAX_SEEN);
        assert_eq!(seen[0], format!("repo{}", 2 * MAX_SEEN - 1));
    }
}
