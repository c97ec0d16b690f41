//! Image references as the registry client uses them. The reference and its grammar live in
//! [`crate::types::reference`]; what is here only matters when talking to a registry: what to
//! ask for, and the reference in `oci-client`'s terms.

pub(crate) use crate::types::reference::is_loopback_host;
pub use crate::types::reference::{
    InvalidReference, Reference, DEFAULT_REGISTRY, DEFAULT_TAG, DOCKER_HUB_API_HOST,
};

impl Reference {
    /// What to ask the registry for: the digest if there is one, else the tag.
    pub(crate) fn manifest_ref(&self) -> String {
        match (self.digest(), self.tag()) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.to_string(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// This reference as oci-client wants it, addressed to [`api_host`](Self::api_host).
    pub(crate) fn to_client(&self) -> oci_client::Reference {
        let host = self.api_host().to_string();
        let repository = self.repository().to_string();
        match (self.tag(), self.digest()) {
            (_, Some(digest)) => {
                oci_client::Reference::with_digest(host, repository, digest.to_string())
            }
            (Some(tag), None) => oci_client::Reference::with_tag(host, repository, tag.to_string()),
            (None, None) => {
                oci_client::Reference::with_tag(host, repository, DEFAULT_TAG.to_string())
            }
        }
    }
}
