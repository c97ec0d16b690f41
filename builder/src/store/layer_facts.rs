//! Recorded facts of base layers: what a layer blob's bytes are (size, compression, diff_id),
//! found once when a base is first used and kept under a key, so a warm build checks a base's
//! descriptors against the record instead of decompressing its layers again.

use oci_spec::image::MediaType;

use super::{Error, LayerRecord, NodeResult, Store};
use crate::oci::{layer_compression, LayerFacts};
use crate::types::Digest;

impl Store {
    /// The facts recorded for layer blob `digest` by [`record_layer_facts`](Self::record_layer_facts),
    /// if they are there and the blob is intact.
    pub fn layer_facts(&self, digest: &Digest) -> Result<Option<LayerFacts>, Error> {
        let Some(NodeResult::Layer(record)) = self.get_key(&facts_key(digest))? else {
            return Ok(None);
        };
        let Some(compression) = layer_compression(&MediaType::from(record.media_type.as_str()))
        else {
            return Ok(None);
        };
        Ok(Some(LayerFacts {
            digest: record.digest,
            size: record.size,
            compression,
            diff_id: record.diff_id,
        }))
    }

    /// Records the facts of a layer blob that is in the store.
    pub fn record_layer_facts(&self, facts: &LayerFacts) -> Result<(), Error> {
        let digest = super::parse_digest(&facts.digest)?;
        let record = NodeResult::Layer(LayerRecord {
            digest: facts.digest.clone(),
            diff_id: facts.diff_id.clone(),
            size: facts.size,
            media_type: facts.compression.media_type().to_string(),
        });
        self.put_key(&facts_key(&digest), &record)
    }
}

/// The key the facts of layer blob `digest` are recorded under.
fn facts_key(digest: &Digest) -> String {
    blake3::hash(format!("layer-facts:{digest}").as_bytes())
        .to_hex()
        .to_string()
}
