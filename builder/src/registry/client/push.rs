//! Pushing: an image (or image index) of an OCI layout goes to a registry.
//!
//! [`RegistryClient::push_layout`] reads the layout's manifests (children before their index)
//! and their blobs, sends the blobs in parallel (skipped when the registry has them, mounted
//! from the base's repository when it agrees, else uploaded in chunks with a monolithic `PUT`
//! as fallback), then pushes each manifest as the exact bytes of the layout and tags the root.
//! A blob is mounted from the base's repository, or from any repository of the registry the
//! store remembers it in ([`RegistryClient::remembering_in`]); a finished push is remembered.
//! No manifest is pushed before all its blobs are there. The layout's referrers of the pushed
//! images (untagged artifact manifests whose `subject` is one of them, such as each image's
//! SBOM) follow: their blobs with the image's, their manifests by digest after the image, then
//! `referrers` makes them findable from their subject. It relies on [`Layout`] to read the
//! image, on `retry` and `errors` for each request, and reports progress as [`PushEvent`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use futures_util::{stream, StreamExt, TryStreamExt};
use oci_client::errors::OciDistributionError;
use oci_client::Client;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::errors::Request;
use super::referrers::Pushed;
use super::{blob_of, HostClients, RegistryClient, MAX_INDEX_DEPTH};
use crate::oci::{self, Digest, Layout, ManifestKind};
use crate::registry::{Error, Reference};
use crate::store::BlobRef;

/// The size of each piece read from a file for an upload (and of each chunked `PATCH`).
const UPLOAD_PIECE: usize = 4 * 1024 * 1024;

/// How many repositories a blob is tried to be mounted from before it is uploaded.
const MOUNT_TRIES: usize = 3;

/// Whether a blob of `from` can be mounted into `target`: another repository of the same
/// registry.
fn mountable(from: &Reference, target: &Reference) -> bool {
    from.registry() == target.registry() && from.repository() != target.repository()
}

/// Progress of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// The registry already had the blob.
    BlobSkipped { digest: String, size: u64 },
    /// The blob was mounted from another repository of the registry.
    BlobMounted { digest: String, size: u64 },
    /// The blob was uploaded.
    BlobUploaded { digest: String, size: u64 },
    /// A manifest or index was pushed as `reference`.
    ManifestPushed { digest: String, reference: String },
    /// A referrer (artifact manifest) of the pushed image `subject` was pushed by digest.
    ReferrerPushed {
        subject: String,
        digest: String,
        artifact_type: String,
    },
    /// The registry has no referrers API: the fallback index of `subject` was pushed as `tag`.
    ReferrersIndexed {
        subject: String,
        tag: String,
        digest: String,
    },
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// The digest of the pushed root manifest or index.
    pub digest: String,
    pub uploaded_blobs: usize,
    pub skipped_blobs: usize,
    pub mounted_blobs: usize,
    /// The referrers (SBOMs, ...) pushed with the image.
    pub referrers: usize,
}

impl RegistryClient {
    /// Pushes the image (or image index and its images) that `tag_in_layout` names in the OCI
    /// layout `layout_dir` (the only one when `None`) to `target`'s repository, tagged with
    /// each of `tags` (or `target`'s own tag when `tags` is empty). Blobs the registry has are
    /// skipped; with `mount_from` (a repository of the same registry the base came from) they
    /// are mounted when possible; the others are uploaded in parallel. Manifests are pushed as
    /// the exact bytes of the layout, children before their index.
    pub fn push_layout(
        &self,
        layout_dir: &Path,
        tag_in_layout: Option<&str>,
        target: &Reference,
        tags: &[String],
        mount_from: Option<&Reference>,
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<PushReport, Error> {
        let read = |source| Error::ReadLayout {
            path: layout_dir.to_path_buf(),
            source: Box::new(source),
        };
        let layout = Layout::open(layout_dir).map_err(read)?;
        let root = layout.find(tag_in_layout).map_err(read)?.clone();
        // Collect manifests (children first) and blobs.
        let mut manifests: Vec<(Descriptor, Vec<u8>)> = Vec::new();
        let mut blobs: BTreeMap<String, BlobRef> = BTreeMap::new();
        // A layer the layout lacks may be pushed if the store saw it in a repository of the
        // target's registry (a remote cache hit of a build that only pushes): it is mounted
        // from there (or, refused, downloaded into the store and uploaded).
        let may_lack = |digest: &str| {
            self.seen
                .as_ref()
                .is_some_and(|s| !s.seen_in(target.registry(), digest).is_empty())
        };
        collect(&layout, &root, 0, &may_lack, &mut manifests, &mut blobs).map_err(read)?;
        let referrers = collect_referrers(&layout, &manifests, &mut blobs).map_err(read)?;

        let host = self.host(target)?;
        let mount_from = mount_from.filter(|m| mountable(m, target));
        let blobs: Vec<BlobRef> = blobs.into_values().collect();
        let mut report = PushReport {
            digest: root.digest().to_string(),
            referrers: referrers.len(),
            ..PushReport::default()
        };
        let path = |blob: &BlobRef| {
            let path = layout
                .blob_path(&blob.digest)
                .map_err(|e| Error::ReadLayout {
                    path: layout.path().to_path_buf(),
                    source: Box::new(e),
                })?;
            match (&self.seen, Digest::parse(&blob.digest)) {
                (Some(store), Ok(digest)) if !path.is_file() && store.has_blob(&digest) => {
                    Ok(store.blob_path(&digest))
                }
                _ => Ok(path),
            }
        };
        self.runtime.block_on(async {
            let outcomes: Vec<PushEvent> = stream::iter(blobs.iter())
                .map(|blob| self.push_blob(&host, &path, target, mount_from, blob, progress))
                .buffer_unordered(self.options.parallelism.max(1))
                .try_collect()
                .await?;
            for outcome in outcomes {
                match outcome {
                    PushEvent::BlobSkipped { .. } => report.skipped_blobs += 1,
                    PushEvent::BlobMounted { .. } => report.mounted_blobs += 1,
                    PushEvent::BlobUploaded { .. } => report.uploaded_blobs += 1,
                    _ => {}
                }
            }
            let root_digest = root.digest().to_string();
            for (desc, bytes) in &manifests {
                let digest = desc.digest().to_string();
                let names: Vec<Reference> = if digest != root_digest {
                    vec![target.with_digest(Digest::parse(&digest).map_err(|e| read(e.into()))?)]
                } else if tags.is_empty() {
                    vec![target.clone()]
                } else {
                    tags.iter()
                        .map(|t| {
                            target.with_tag(t).map_err(|source| Error::ParseReference {
                                reference: format!("{}:{t}", target.name()),
                                source,
                            })
                        })
                        .collect::<Result<_, _>>()?
                };
                for name in names {
                    self.push_manifest(&host, &name, desc, bytes).await?;
                    progress(PushEvent::ManifestPushed {
                        digest: digest.clone(),
                        reference: name.to_string(),
                    });
                }
            }
            self.push_referrers(&host, target, &referrers, progress)
                .await?;
            Ok::<(), Error>(())
        })?;
        if let Some(store) = &self.seen {
            // Only a hint for later pushes: failing to write it costs uploads, not this push.
            let _ = store.record_seen(
                target.registry(),
                target.repository(),
                blobs.iter().map(|b| b.digest.as_str()),
            );
        }
        Ok(report)
    }

    /// Pushes each referrer's manifest by digest (its blobs are there), then makes the
    /// referrers of each subject findable (see `referrers`).
    async fn push_referrers(
        &self,
        host: &HostClients,
        target: &Reference,
        referrers: &[Referrer],
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<(), Error> {
        for r in referrers {
            self.push_manifest(
                host,
                &target.with_digest(r.digest.clone()),
                &r.desc,
                &r.bytes,
            )
            .await?;
            progress(PushEvent::ReferrerPushed {
                subject: r.subject.clone(),
                digest: r.desc.digest().to_string(),
                artifact_type: r.artifact_type.clone(),
            });
        }
        let subjects: BTreeSet<&str> = referrers.iter().map(|r| r.subject.as_str()).collect();
        for subject in subjects {
            let pushed: Vec<Pushed<'_>> = referrers
                .iter()
                .filter(|r| r.subject == subject)
                .map(|r| Pushed {
                    desc: &r.desc,
                    bytes: &r.bytes,
                })
                .collect();
            if let Some((tag, digest)) =
                self.index_referrers(host, target, subject, &pushed).await?
            {
                progress(PushEvent::ReferrersIndexed {
                    subject: subject.to_string(),
                    tag,
                    digest,
                });
            }
        }
        Ok(())
    }

    /// Pushes the manifest `desc` (its exact `bytes`) as `name`, a tag or its digest.
    pub(super) async fn push_manifest(
        &self,
        host: &HostClients,
        name: &Reference,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let target = name.to_client();
        let digest = desc.digest().to_string();
        let request = Request::PushManifest(&digest);
        let content_type = desc
            .media_type()
            .to_string()
            .parse()
            .map_err(|e| request.error(name, Box::new(e)))?;
        let body = bytes::Bytes::copy_from_slice(bytes);
        self.send(host, name, request, || {
            host.chunked.push_manifest_raw(
                &target,
                body.clone(),
                std::clone::Clone::clone(&content_type),
            )
        })
        .await?;
        Ok(())
    }

    /// Sends `blob` to `target`'s repository unless the registry has it: mounted from
    /// `mount_from` when the registry agrees, else uploaded from the file `path` gives.
    pub(super) async fn push_blob(
        &self,
        host: &HostClients,
        path: &(dyn Fn(&BlobRef) -> Result<std::path::PathBuf, Error> + Sync),
        target: &Reference,
        mount_from: Option<&Reference>,
        blob: &BlobRef,
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<PushEvent, Error> {
        let remote = target.to_client();
        let exists = self
            .send(host, target, Request::CheckBlob(&blob.digest), || {
                host.chunked.blob_exists(&remote, &blob.digest)
            })
            .await?;
        let (digest, size) = (blob.digest.clone(), blob.size);
        let event = if exists {
            PushEvent::BlobSkipped { digest, size }
        } else if self.try_mount(host, target, mount_from, blob).await {
            PushEvent::BlobMounted { digest, size }
        } else {
            let mut path = path(blob)?;
            if !path.is_file() {
                path = self.fetch_seen(host, target, blob).await.unwrap_or(path);
            }
            self.upload(host, &remote, &path, blob)
                .await
                .map_err(|e| self.remote_error(host, target, e, Request::PushBlob(&blob.digest)))?;
            PushEvent::BlobUploaded { digest, size }
        };
        progress(event.clone());
        Ok(event)
    }

    /// Mounts `blob` from `mount_from` or from a repository of the registry the store saw it
    /// in (the base's first, then the latest seen, at most [`MOUNT_TRIES`]) if the registry
    /// agrees (201); anything else (202 opens an upload instead, errors) means "try the next,
    /// or upload it".
    async fn try_mount(
        &self,
        host: &HostClients,
        target: &Reference,
        mount_from: Option<&Reference>,
        blob: &BlobRef,
    ) -> bool {
        let mut sources: Vec<Reference> = mount_from.into_iter().cloned().collect();
        if let Some(store) = &self.seen {
            for repository in store.seen_in(target.registry(), &blob.digest) {
                if let Ok(from) = Reference::from_parts(target.registry(), &repository, None, None)
                {
                    if mountable(&from, target)
                        && !sources.iter().any(|s| s.repository() == from.repository())
                    {
                        sources.push(from);
                    }
                }
            }
        }
        let remote = target.to_client();
        for from in sources.iter().take(MOUNT_TRIES) {
            let source = from.to_client();
            if host
                .chunked
                .mount_blob(&remote, &source, &blob.digest)
                .await
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// Downloads `blob` (verified) into the store from a repository of `target`'s registry the
    /// store saw it in; returns its path there.
    async fn fetch_seen(
        &self,
        host: &HostClients,
        target: &Reference,
        blob: &BlobRef,
    ) -> Option<std::path::PathBuf> {
        let store = self.seen.as_ref()?;
        let digest = Digest::parse(&blob.digest).ok()?;
        for repository in store.seen_in(target.registry(), &blob.digest) {
            let Ok(from) = Reference::from_parts(target.registry(), &repository, None, None) else {
                continue;
            };
            if self.fetch_blob(host, &from, store, blob).await.is_ok() {
                return Some(store.blob_path(&digest));
            }
        }
        None
    }

    /// Uploads a blob file: chunked (`PATCH`es), falling back to one monolithic `PUT` when the
    /// registry does not follow the chunked protocol. Each try restarts from a new session.
    async fn upload(
        &self,
        host: &HostClients,
        remote: &oci_client::Reference,
        path: &Path,
        blob: &BlobRef,
    ) -> Result<(), OciDistributionError> {
        match self.upload_with(&host.chunked, remote, path, blob).await {
            Err(OciDistributionError::SpecViolationError(_)) => {
                self.upload_with(&host.monolithic, remote, path, blob).await
            }
            chunked => chunked,
        }
    }

    /// Uploads a blob file with `client` (chunked or monolithic), retried.
    async fn upload_with(
        &self,
        client: &Client,
        remote: &oci_client::Reference,
        path: &Path,
        blob: &BlobRef,
    ) -> Result<(), OciDistributionError> {
        self.retry(|| async {
            let body = file_stream(path)?;
            client
                .push_blob_stream(remote, body, &blob.digest, Some(blob.size))
                .await
        })
        .await
        .map(|_| ())
    }
}

/// A referrer of a pushed image, as the layout holds it.
struct Referrer {
    /// The digest of the image it refers to.
    subject: String,
    artifact_type: String,
    /// Its `index.json` entry and its manifest's digest and bytes.
    desc: Descriptor,
    digest: Digest,
    bytes: Vec<u8>,
}

/// The referrers in `layout` of the image manifests among `manifests`, in index order per
/// image, with their blobs (config and layers, verified) added to `blobs`.
fn collect_referrers(
    layout: &Layout,
    manifests: &[(Descriptor, Vec<u8>)],
    blobs: &mut BTreeMap<String, BlobRef>,
) -> Result<Vec<Referrer>, oci::Error> {
    let mut out = Vec::new();
    for (image, _) in manifests {
        if ManifestKind::of(image.media_type()) != ManifestKind::Image {
            continue;
        }
        let subject = image.digest().to_string();
        for (found, manifest) in layout.referrers(&subject)? {
            let Some(desc) = layout
                .index()
                .manifests()
                .iter()
                .find(|d| d.digest().as_ref() == found.digest)
            else {
                continue;
            };
            for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
                layout.verify_blob(d.digest().as_ref(), d.size())?;
                blobs
                    .entry(d.digest().to_string())
                    .or_insert_with(|| blob_of(d));
            }
            out.push(Referrer {
                subject: subject.clone(),
                artifact_type: found.artifact_type,
                digest: Digest::parse(desc.digest().as_ref())?,
                desc: desc.clone(),
                bytes: layout.read_blob(desc)?,
            });
        }
    }
    Ok(out)
}

/// The blobs of a layout image (or index, recursively) into `manifests` (children before
/// parents) and `blobs` (configs and layers).
fn collect(
    layout: &Layout,
    desc: &Descriptor,
    depth: usize,
    may_lack: &dyn Fn(&str) -> bool,
    manifests: &mut Vec<(Descriptor, Vec<u8>)>,
    blobs: &mut BTreeMap<String, BlobRef>,
) -> Result<(), oci::Error> {
    if manifests.iter().any(|(d, _)| d.digest() == desc.digest()) {
        return Ok(());
    }
    let bytes = layout.read_blob(desc)?;
    match ManifestKind::of(desc.media_type()) {
        ManifestKind::Index if depth < MAX_INDEX_DEPTH => {
            let index: ImageIndex = parse(layout, desc, "image index", &bytes)?;
            for child in index.manifests() {
                collect(layout, child, depth + 1, may_lack, manifests, blobs)?;
            }
        }
        ManifestKind::Index => {
            return Err(oci::Error::IndexTooDeep {
                layout: layout.path().to_path_buf(),
                digest: desc.digest().to_string(),
            })
        }
        ManifestKind::Image => {
            let manifest: ImageManifest = parse(layout, desc, "image manifest", &bytes)?;
            for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
                let lacked = may_lack(d.digest().as_ref())
                    && layout
                        .blob_path(d.digest().as_ref())
                        .is_ok_and(|p| !p.exists());
                if !lacked {
                    layout.verify_blob(d.digest().as_ref(), d.size())?;
                }
                blobs
                    .entry(d.digest().to_string())
                    .or_insert_with(|| blob_of(d));
            }
        }
        ManifestKind::Other => {
            return Err(oci::Error::UnsupportedMediaType {
                layout: layout.path().to_path_buf(),
                digest: desc.digest().to_string(),
                media_type: desc.media_type().to_string(),
                expected: "an image manifest or image index",
            })
        }
    }
    manifests.push((desc.clone(), bytes));
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(
    layout: &Layout,
    desc: &Descriptor,
    what: &'static str,
    bytes: &[u8],
) -> Result<T, oci::Error> {
    serde_json::from_slice(bytes).map_err(|source| oci::Error::ParseJson {
        path: layout
            .blob_path(desc.digest().as_ref())
            .unwrap_or_else(|_| layout.path().to_path_buf()),
        what,
        source,
    })
}

/// A file as a stream of pieces for an upload.
fn file_stream(
    path: &Path,
) -> Result<
    impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static,
    OciDistributionError,
> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    Ok(stream::iter(std::iter::from_fn(move || {
        let mut buf = vec![0u8; UPLOAD_PIECE];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(OciDistributionError::IoError(e))),
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some(Ok(bytes::Bytes::from(buf)))
    })))
}
