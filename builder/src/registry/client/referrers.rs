//! Pushing referrers: the artifact manifests of a layout (an SBOM, ...) whose `subject` is a
//! pushed image go to the registry by digest, and are made findable from their subject.
//!
//! A registry with the OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`) lists them
//! by itself. On one without it (CNCF distribution 2.x), the client keeps the list, following
//! the distribution spec's "Referrers Tag Schema": the tag `sha256-<hex of the subject>` names
//! an image index whose `manifests` are the referrers' descriptors (with `artifactType` and the
//! manifest's annotations). [`RegistryClient::index_referrers`] asks the referrers API for the
//! subject's referrers first, unless this client (or one sharing what it learnt, see
//! [`super::Learnt`]) already found that the registry has none: a registry without the API is
//! asked once per process, not once per image. When the API lists every pushed referrer there
//! is nothing to do. Otherwise the fallback index is fetched (once), and when it lists them
//! all nothing is pushed either, so a second push changes nothing; else it is merged (other
//! clients' entries kept, no duplicates, sorted by digest so the same set gives the same
//! bytes) and pushed under the tag.

use super::documents::not_found;
use oci_spec::image::{Descriptor, DescriptorBuilder, MediaType};
use serde_json::{Map, Value};

use super::errors::Request;
use super::{HostClients, RegistryClient};
use crate::oci::Digest;
use crate::registry::{Error, Reference};

/// The media type of an image index.
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A referrer to push: its `index.json` entry and its manifest's exact bytes.
pub(super) struct Pushed<'a> {
    pub desc: &'a Descriptor,
    pub bytes: &'a [u8],
}

/// The fallback tag of `subject` (`sha256:<hex>` -> `sha256-<hex>`).
pub(super) fn fallback_tag(subject: &str) -> String {
    subject.replace(':', "-")
}

impl RegistryClient {
    /// Makes `referrers` (already pushed by digest to `target`'s repository) findable from
    /// `subject`: nothing when the registry lists them already, else the fallback tag's index
    /// is merged and pushed. Returns the tag and the new index's digest when it was pushed.
    pub(super) async fn index_referrers(
        &self,
        host: &HostClients,
        target: &Reference,
        subject: &str,
        referrers: &[Pushed<'_>],
    ) -> Result<Option<(String, String)>, Error> {
        let subject_digest = Digest::parse(subject).map_err(|e| Error::ReferrersIndex {
            reference: target.name().to_string(),
            reason: format!("invalid subject digest `{subject}`: {e}"),
        })?;
        let of_subject = target.with_digest(subject_digest).to_client();
        let api_host = target.api_host();
        if self.learnt.host(api_host).referrers_api != Some(false) {
            // A failed listing is not an answer: the fallback index below is then the truth.
            match host.chunked.pull_referrers_api(&of_subject, None).await {
                Ok(Some(listed)) => {
                    self.learnt
                        .learn(api_host, |f| f.referrers_api = Some(true));
                    let all_listed = referrers.iter().all(|r| {
                        listed
                            .manifests
                            .iter()
                            .any(|d| d.digest == r.desc.digest().to_string())
                    });
                    if all_listed {
                        return Ok(None);
                    }
                }
                Ok(None) => self
                    .learnt
                    .learn(api_host, |f| f.referrers_api = Some(false)),
                Err(_) => {}
            }
        }
        let tag = fallback_tag(subject);
        let tagged = target
            .with_tag(&tag)
            .map_err(|source| Error::ParseReference {
                reference: format!("{}:{tag}", target.name()),
                source,
            })?;
        let mut entries = self.fallback_entries(host, &tagged).await?;
        let listed = |r: &Pushed<'_>| {
            let digest = r.desc.digest().to_string();
            entries.iter().any(|e| e["digest"] == digest.as_str())
        };
        if referrers.iter().all(listed) {
            return Ok(None);
        }
        for r in referrers {
            let entry = referrer_descriptor(r).map_err(|reason| Error::ReferrersIndex {
                reference: tagged.to_string(),
                reason,
            })?;
            if !entries.iter().any(|e| e["digest"] == entry["digest"]) {
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| {
            (a["digest"].as_str(), a["size"].as_u64())
                .cmp(&(b["digest"].as_str(), b["size"].as_u64()))
        });
        let mut index = Map::new();
        index.insert("schemaVersion".into(), Value::from(2));
        index.insert("mediaType".into(), Value::from(INDEX));
        index.insert("manifests".into(), Value::Array(entries));
        let bytes = serde_json::to_vec(&Value::Object(index)).expect("JSON values serialize");
        let digest = Digest::of(&bytes).to_string();
        let desc = DescriptorBuilder::default()
            .media_type(MediaType::ImageIndex)
            .digest(Digest::of(&bytes).to_oci())
            .size(bytes.len() as u64)
            .build()
            .expect("a descriptor with its three fields");
        self.push_manifest(host, &tagged, &desc, &bytes).await?;
        Ok(Some((tag, digest)))
    }

    /// The descriptors the fallback index `tagged` lists now (none when the tag is absent).
    async fn fallback_entries(
        &self,
        host: &HostClients,
        tagged: &Reference,
    ) -> Result<Vec<Value>, Error> {
        let client = &host.chunked;
        let target = tagged.to_client();
        let auth = host.credentials.to_client();
        let fetched = self
            .retry(|| client.pull_manifest_raw(&target, &auth, &[INDEX]))
            .await;
        let bytes = match fetched {
            Ok((bytes, _)) => bytes,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.remote_error(host, tagged, e, Request::FetchManifest)),
        };
        let wrong = |reason: String| Error::ReferrersIndex {
            reference: tagged.to_string(),
            reason,
        };
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| wrong(format!("it is not JSON ({e})")))?;
        if value["mediaType"] != INDEX {
            return Err(wrong(format!(
                "it holds a `{}`, not an image index",
                value["mediaType"]
                    .as_str()
                    .unwrap_or("manifest without mediaType")
            )));
        }
        match &value["manifests"] {
            Value::Array(entries) => Ok(entries.clone()),
            Value::Null => Ok(Vec::new()),
            _ => Err(wrong("its `manifests` is not a list".into())),
        }
    }
}

/// The referrers-index descriptor of a pushed referrer: its media type, digest and size, the
/// manifest's `artifactType` (else its config's media type) and its annotations.
fn referrer_descriptor(r: &Pushed<'_>) -> Result<Value, String> {
    let manifest: Value = serde_json::from_slice(r.bytes)
        .map_err(|e| format!("the referrer {} is not JSON: {e}", r.desc.digest()))?;
    let artifact_type = manifest["artifactType"]
        .as_str()
        .or_else(|| manifest["config"]["mediaType"].as_str())
        .ok_or_else(|| format!("the referrer {} has no artifactType", r.desc.digest()))?;
    let mut entry = Map::new();
    entry.insert(
        "mediaType".into(),
        Value::from(r.desc.media_type().to_string()),
    );
    entry.insert("digest".into(), Value::from(r.desc.digest().to_string()));
    entry.insert("size".into(), Value::from(r.desc.size()));
    entry.insert("artifactType".into(), Value::from(artifact_type));
    if let Some(annotations @ Value::Object(_)) = manifest.get("annotations") {
        entry.insert("annotations".into(), annotations.clone());
    }
    Ok(Value::Object(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_tag_replaces_the_colon() {
        let subject = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            fallback_tag(&subject),
            format!("sha256-{}", "ab".repeat(32))
        );
    }

    #[test]
    fn a_referrer_descriptor_carries_artifact_type_and_annotations() {
        let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.cyclonedx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"annotations":{"a":"b"}}"#;
        let desc = DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(Digest::of(bytes).to_oci())
            .size(bytes.len() as u64)
            .build()
            .unwrap();
        let v = referrer_descriptor(&Pushed { desc: &desc, bytes }).unwrap();
        assert_eq!(v["artifactType"], "application/vnd.cyclonedx+json");
        assert_eq!(v["annotations"]["a"], "b");
        assert_eq!(v["digest"], Digest::of(bytes).to_string());
        assert_eq!(v["size"], bytes.len() as u64);
    }
}
