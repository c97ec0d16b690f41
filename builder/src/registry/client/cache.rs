//! The remote layer cache: layer records kept in a repository of an OCI registry, so a layer
//! built once on any machine is taken from there by every other (`--cache-to`,
//! `--cache-from`).
//!
//! # The record format (version 1)
//!
//! A layer whose node key is `<hex>` (the 64 hex digits of the blake3 key the planner
//! computes, which already covers everything that decides the layer's bytes and the key
//! format's version) is recorded in the cache repository as an OCI 1.1 artifact manifest
//! tagged `key-<hex>`:
//!
//! ```json
//! {
//!   "schemaVersion": 2,
//!   "mediaType": "application/vnd.oci.image.manifest.v1+json",
//!   "artifactType": "application/vnd.cargo-image.layer-cache.v1+json",
//!   "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa3...", "size": 2},
//!   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:...", "size": 1234}],
//!   "annotations": {
//!     "dev.cargo-image.cache.format": "1",
//!     "dev.cargo-image.cache.key": "<hex>",
//!     "dev.cargo-image.cache.diff-id": "sha256:..."
//!   }
//! }
//! ```
//!
//! Its one layer is the layer blob itself, so the registry keeps it (no garbage collection of a
//! referenced blob) and a push to another repository of the registry can mount it. A record
//! whose format is not [`CACHE_FORMAT`], whose artifact type or key differs, or that does not
//! hold exactly one layer of a known layer media type and a diff_id is ignored (a miss), so
//! records of other versions can share a repository. The layer's bytes are never trusted: they
//! are verified against the digest when downloaded, and only then stored.
//!
//! # Alias records (format 1)
//!
//! A layer whose files are all clean in git's index also has an *alias key* (`plan`'s module
//! docs: the layer's recipe with the files' git blob ids in place of their content hashes).
//! Beside `key-<hex>`, a machine that built the layer records `alias-<alias hex>`: the same
//! manifest shape (the layer blob as its one layer, so the registry keeps it), with its own
//! artifact type and the real key:
//!
//! ```json
//! {
//!   "artifactType": "application/vnd.cargo-image.layer-alias.v1+json",
//!   "annotations": {
//!     "dev.cargo-image.cache.format": "1",
//!     "dev.cargo-image.cache.alias": "<alias hex>",
//!     "dev.cargo-image.cache.key": "<key hex>",
//!     "dev.cargo-image.cache.diff-id": "sha256:..."
//!   },
//!   ...
//! }
//! ```
//!
//! A machine that knows a layer's alias but not its key (its stat index is empty, its git
//! index vouches for the files) reads the alias record to learn the key, then the key's record
//! as usual. Readers that predate alias records never ask an `alias-` tag, and a record under
//! a `key-` tag with the alias artifact type is not a key record to them (its artifact type
//! differs), so the new kind cannot confuse them; an alias record of another format, artifact
//! type or alias is ignored.

use oci_client::errors::{OciDistributionError, OciErrorCode};
use serde_json::{json, Value};

use super::errors::Request;
use super::RegistryClient;
use crate::oci::{self, Digest};
use crate::registry::{Error, Reference};
use crate::store::{BlobRef, LayerRecord, Store};

/// The version of the record format; records of another version are ignored.
pub const CACHE_FORMAT: &str = "1";
/// The `artifactType` of a record.
pub const RECORD_ARTIFACT_TYPE: &str = "application/vnd.cargo-image.layer-cache.v1+json";
/// The `artifactType` of an alias record.
pub const ALIAS_ARTIFACT_TYPE: &str = "application/vnd.cargo-image.layer-alias.v1+json";
/// The media type of the record manifest.
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The empty config of an artifact (OCI 1.1 image spec).
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_BLOB: &[u8] = b"{}";
const FORMAT_ANNOTATION: &str = "dev.cargo-image.cache.format";
const KEY_ANNOTATION: &str = "dev.cargo-image.cache.key";
const DIFF_ID_ANNOTATION: &str = "dev.cargo-image.cache.diff-id";
const ALIAS_ANNOTATION: &str = "dev.cargo-image.cache.alias";

/// The tag of the record of node key `key` (64 hex digits).
pub fn record_tag(key: &str) -> String {
    format!("key-{key}")
}

/// The tag of the alias record of alias key `alias` (64 hex digits).
pub fn alias_tag(alias: &str) -> String {
    format!("alias-{alias}")
}

/// The canonical bytes of the record of `layer` under node key `key`.
pub fn record_manifest(key: &str, layer: &LayerRecord) -> Vec<u8> {
    manifest(RECORD_ARTIFACT_TYPE, key, None, layer)
}

/// The canonical bytes of the alias record `alias` -> node key `key`, whose layer is `layer`.
pub fn alias_manifest(alias: &str, key: &str, layer: &LayerRecord) -> Vec<u8> {
    manifest(ALIAS_ARTIFACT_TYPE, key, Some(alias), layer)
}

fn manifest(artifact_type: &str, key: &str, alias: Option<&str>, layer: &LayerRecord) -> Vec<u8> {
    let mut record = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": artifact_type,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": Digest::of(EMPTY_BLOB).to_string(),
            "size": EMPTY_BLOB.len(),
        },
        "layers": [{
            "mediaType": layer.media_type,
            "digest": layer.digest,
            "size": layer.size,
        }],
        "annotations": {
            FORMAT_ANNOTATION: CACHE_FORMAT,
            KEY_ANNOTATION: key,
            DIFF_ID_ANNOTATION: layer.diff_id,
        },
    });
    if let Some(alias) = alias {
        record["annotations"][ALIAS_ANNOTATION] = json!(alias);
    }
    oci::to_canonical_json(&record).unwrap_or_default()
}

/// The layer a record's bytes give for node key `key`; `None` for a record of another format
/// or shape (ignored, see the module docs).
pub fn parse_record(key: &str, bytes: &[u8]) -> Option<LayerRecord> {
    let record: Value = serde_json::from_slice(bytes).ok()?;
    let annotations = record.get("annotations")?;
    let text = |v: &Value, name: &str| v.get(name)?.as_str().map(str::to_owned);
    if text(annotations, FORMAT_ANNOTATION)? != CACHE_FORMAT
        || text(&record, "artifactType")? != RECORD_ARTIFACT_TYPE
        || text(annotations, KEY_ANNOTATION)? != key
    {
        return None;
    }
    layer_of(&record)
}

/// The node key (64 hex digits) and layer an alias record's bytes give for alias key
/// `alias`; `None` for a record of another format or shape (ignored, see the module docs).
pub fn parse_alias(alias: &str, bytes: &[u8]) -> Option<(String, LayerRecord)> {
    let record: Value = serde_json::from_slice(bytes).ok()?;
    let annotations = record.get("annotations")?;
    let text = |v: &Value, name: &str| v.get(name)?.as_str().map(str::to_owned);
    if text(annotations, FORMAT_ANNOTATION)? != CACHE_FORMAT
        || text(&record, "artifactType")? != ALIAS_ARTIFACT_TYPE
        || text(annotations, ALIAS_ANNOTATION)? != alias
    {
        return None;
    }
    let key = text(annotations, KEY_ANNOTATION)?;
    let is_key = key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    Some((key, layer_of(&record)?)).filter(|_| is_key)
}

/// The layer of a record (key or alias), checked.
fn layer_of(record: &Value) -> Option<LayerRecord> {
    let annotations = record.get("annotations")?;
    let text = |v: &Value, name: &str| v.get(name)?.as_str().map(str::to_owned);
    let [layer] = record.get("layers")?.as_array()?.as_slice() else {
        return None;
    };
    let media_type = text(layer, "mediaType")?;
    oci::layer_compression(&oci_spec::image::MediaType::from(media_type.as_str()))?;
    let digest = text(layer, "digest")?;
    let diff_id = text(annotations, DIFF_ID_ANNOTATION)?;
    Digest::parse(&digest).ok()?;
    Digest::parse(&diff_id).ok()?;
    Some(LayerRecord {
        digest,
        diff_id,
        size: layer.get("size")?.as_u64()?,
        media_type,
    })
}

/// Whether a failed request means "not there" (404, or the registry's `MANIFEST_UNKNOWN` /
/// `NAME_UNKNOWN`).
fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    }
}

impl RegistryClient {
    /// The record of node key `key` in the cache repository `cache`: `Ok(None)` when there is
    /// none or it is of another format; an error when the registry cannot be asked.
    pub fn cache_lookup(&self, cache: &Reference, key: &str) -> Result<Option<LayerRecord>, Error> {
        Ok(self
            .record_bytes(cache, &record_tag(key))?
            .and_then(|bytes| parse_record(key, &bytes)))
    }

    /// The alias record of alias key `alias` in the cache repository `cache`: the node key it
    /// stands for and its layer; `Ok(None)` when there is none or it is of another format.
    pub fn cache_alias_lookup(
        &self,
        cache: &Reference,
        alias: &str,
    ) -> Result<Option<(String, LayerRecord)>, Error> {
        Ok(self
            .record_bytes(cache, &alias_tag(alias))?
            .and_then(|bytes| parse_alias(alias, &bytes)))
    }

    /// The bytes of the record manifest tagged `tag` in `cache`, checked against the digest
    /// the registry gave; `Ok(None)` when there is none.
    fn record_bytes(&self, cache: &Reference, tag: &str) -> Result<Option<Vec<u8>>, Error> {
        let name = cache
            .with_tag(tag)
            .map_err(|source| Error::ParseReference {
                reference: cache.name(),
                source,
            })?;
        let host = self.host(&name)?;
        let target = name.to_client();
        let auth = host.credentials.to_client();
        let fetched = self.runtime.block_on(self.retry(|| {
            host.chunked
                .pull_manifest_raw(&target, &auth, &[MANIFEST_MEDIA_TYPE])
        }));
        let (bytes, digest) = match fetched {
            Ok(found) => found,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(self.remote_error(&host, &name, e, Request::FetchManifest)),
        };
        let computed = Digest::of(&bytes);
        if computed.to_string() != digest {
            let detail = format!("the record hashes to {computed}");
            return Err(Error::verify_blob(&name, &digest, detail));
        }
        Ok(Some(bytes.to_vec()))
    }

    /// Downloads the layer blob of a record of `cache` into `store`, verified against its size
    /// and digest (nothing is stored otherwise); nothing is downloaded when the store has it.
    pub fn cache_fetch(
        &self,
        cache: &Reference,
        layer: &LayerRecord,
        store: &Store,
    ) -> Result<bool, Error> {
        let host = self.host(cache)?;
        let blob = BlobRef {
            digest: layer.digest.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
        };
        let downloaded = self
            .runtime
            .block_on(self.fetch_blob(&host, cache, store, &blob))?;
        let _ = store.record_seen(cache.registry(), cache.repository(), [blob.digest.as_str()]);
        Ok(downloaded)
    }

    /// Checks that the cache repository `cache` has the layer blob of a record (without
    /// downloading it), and remembers in `store` that it is there, for a push to mount it.
    pub fn cache_has_blob(
        &self,
        cache: &Reference,
        layer: &LayerRecord,
        store: &Store,
    ) -> Result<(), Error> {
        let host = self.host(cache)?;
        let remote = cache.to_client();
        let exists = self.runtime.block_on(self.send(
            &host,
            cache,
            Request::CheckBlob(&layer.digest),
            || host.chunked.blob_exists(&remote, &layer.digest),
        ))?;
        if !exists {
            let detail = "its record names it, and the registry does not have it".to_owned();
            return Err(Error::verify_blob(cache, &layer.digest, detail));
        }
        let _ = store.record_seen(
            cache.registry(),
            cache.repository(),
            [layer.digest.as_str()],
        );
        Ok(())
    }

    /// Records `layer` under node key `key` in the cache repository `cache`: its blob (skipped
    /// when there, mounted from a repository the store saw it in, else uploaded from the store)
    /// and the record, tagged. Returns whether a record was written (false: an identical one
    /// was there).
    pub fn cache_export(
        &self,
        cache: &Reference,
        key: &str,
        layer: &LayerRecord,
        store: &Store,
    ) -> Result<bool, Error> {
        if self.cache_lookup(cache, key)?.as_ref() == Some(layer) {
            return Ok(false);
        }
        self.put_record(
            cache,
            &record_tag(key),
            &record_manifest(key, layer),
            layer,
            store,
        )
    }

    /// Records alias key `alias` -> node key `key` (whose layer is `layer`, in the store) in
    /// the cache repository `cache`, as [`cache_export`](Self::cache_export) records a key.
    /// Returns whether a record was written (false: an identical one was there).
    pub fn cache_export_alias(
        &self,
        cache: &Reference,
        alias: &str,
        key: &str,
        layer: &LayerRecord,
        store: &Store,
    ) -> Result<bool, Error> {
        let there = self.cache_alias_lookup(cache, alias)?;
        if there.as_ref().is_some_and(|(k, l)| k == key && l == layer) {
            return Ok(false);
        }
        let bytes = alias_manifest(alias, key, layer);
        self.put_record(cache, &alias_tag(alias), &bytes, layer, store)
    }

    /// Pushes a record manifest (`bytes`, tagged `tag`) and its blobs (the empty config and
    /// `layer`'s blob) to `cache`.
    fn put_record(
        &self,
        cache: &Reference,
        tag: &str,
        bytes: &[u8],
        layer: &LayerRecord,
        store: &Store,
    ) -> Result<bool, Error> {
        let host = self.host(cache)?;
        let empty = store
            .write_blob(EMPTY_BLOB)
            .map_err(|e| Error::store_blob(cache, &Digest::of(EMPTY_BLOB).to_string(), e))?;
        let blobs = [
            BlobRef {
                digest: empty.0.to_string(),
                size: empty.1,
                media_type: EMPTY_MEDIA_TYPE.to_owned(),
            },
            BlobRef {
                digest: layer.digest.clone(),
                size: layer.size,
                media_type: layer.media_type.clone(),
            },
        ];
        let path = |blob: &BlobRef| {
            let digest = Digest::parse(&blob.digest).map_err(|_| {
                Error::verify_blob(cache, &blob.digest, "not a sha256 digest".into())
            })?;
            let path = store.blob_path(&digest);
            if !path.is_file() {
                return Err(Error::store_blob(
                    cache,
                    &blob.digest,
                    crate::store::Error::MissingBlob {
                        digest: blob.digest.clone(),
                        path,
                    },
                ));
            }
            Ok(path)
        };
        let digest = Digest::of(bytes);
        let descriptor = oci::descriptor(
            oci_spec::image::MediaType::ImageManifest,
            &digest,
            bytes.len() as u64,
        );
        let name = cache
            .with_tag(tag)
            .map_err(|source| Error::ParseReference {
                reference: cache.name(),
                source,
            })?;
        self.runtime.block_on(async {
            for blob in &blobs {
                self.push_blob(&host, &path, cache, None, blob, &|_| {})
                    .await?;
            }
            self.push_manifest(&host, &name, &descriptor, bytes).await
        })?;
        let _ = store.record_seen(
            cache.registry(),
            cache.repository(),
            [layer.digest.as_str()],
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> LayerRecord {
        LayerRecord {
            digest: format!("sha256:{}", "1".repeat(64)),
            diff_id: format!("sha256:{}", "2".repeat(64)),
            size: 42,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }

    #[test]
    fn a_record_reads_back_only_for_its_key_and_format() {
        let key = "ab".repeat(32);
        let bytes = record_manifest(&key, &layer());
        assert_eq!(parse_record(&key, &bytes), Some(layer()));
        assert_eq!(parse_record(&"cd".repeat(32), &bytes), None, "another key");
        let other_format = String::from_utf8(bytes.clone()).unwrap().replace(
            r#""dev.cargo-image.cache.format":"1""#,
            r#""dev.cargo-image.cache.format":"2""#,
        );
        assert_ne!(other_format.as_bytes(), bytes.as_slice());
        assert_eq!(
            parse_record(&key, other_format.as_bytes()),
            None,
            "another format"
        );
        assert_eq!(parse_record(&key, b"{}"), None);
        assert_eq!(parse_record(&key, b"not json"), None);
        // The same record, the same bytes (machines agree on what to skip).
        assert_eq!(bytes, record_manifest(&key, &layer()));
        assert_eq!(record_tag(&key).len(), 68);
    }

    #[test]
    fn an_alias_record_reads_back_only_as_an_alias_of_its_own() {
        let key = "ab".repeat(32);
        let alias = "ef".repeat(32);
        let bytes = alias_manifest(&alias, &key, &layer());
        assert_eq!(parse_alias(&alias, &bytes), Some((key.clone(), layer())));
        assert_eq!(parse_alias(&key, &bytes), None, "another alias");
        // Neither kind reads as the other: a reader of key records ignores alias records
        // (and older readers, which know only key records, the same).
        assert_eq!(parse_record(&key, &bytes), None);
        let record = record_manifest(&key, &layer());
        assert_eq!(parse_alias(&key, &record), None);
        assert_eq!(parse_alias(&alias, &record), None);
        let other_format = String::from_utf8(bytes.clone()).unwrap().replace(
            r#""dev.cargo-image.cache.format":"1""#,
            r#""dev.cargo-image.cache.format":"2""#,
        );
        assert_eq!(parse_alias(&alias, other_format.as_bytes()), None);
        let bad_key = String::from_utf8(bytes.clone())
            .unwrap()
            .replace(&key, "not-a-key");
        assert_eq!(parse_alias(&alias, bad_key.as_bytes()), None);
        assert_eq!(alias_tag(&alias).len(), 70);
        assert_eq!(bytes, alias_manifest(&alias, &key, &layer()));
    }
}
