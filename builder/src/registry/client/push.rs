//! Pushing: an image (or image index) of an OCI layout goes to a registry.
//!
//! [`RegistryClient::push_layout`] reads the layout's manifests (children before their index)
//! and checks that their blobs are there at their sizes, then sends the blobs in parallel, at
//! most `parallelism` at once: each is skipped when the registry has it (a `HEAD`), mounted
//! from the base's repository when the registry agrees, else uploaded. An upload streams the
//! file from the layout (or the store) in one monolithic `PUT` after the `POST` that opens it,
//! as `skopeo copy` does with its one `PATCH`: two requests per blob whatever its size, with
//! chunked `PATCH`es as the fallback for a registry (or proxy) that refuses the monolithic
//! `PUT`. The file is read and SHA-256-checked on a blocking thread a few pieces ahead of the
//! network, so a layer never sits in memory whole and hashing overlaps sending; a blob that
//! does not hash to its digest aborts its request before the last byte (the registry commits
//! nothing) and fails the push naming the file. A blob the registry has is never read.
//! Then each manifest is pushed as the exact bytes of the layout, one request per tag: the
//! images of an index at once, then the index; the root under its first tag, then its other
//! tags and its referrers at once (a referrer only after its subject, which some registries
//! require although the distribution spec does not).
//! A blob is mounted from the base's repository, or from any repository of the registry the
//! store remembers it in ([`RegistryClient::remembering_in`]); a finished push is remembered.
//! No manifest is pushed before all its blobs are there. The layout's referrers of the pushed
//! images (untagged artifact manifests whose `subject` is one of them, such as each image's
//! SBOM) follow: their blobs with the image's, their manifests by digest after the image, then
//! `referrers` makes them findable from their subject. It relies on [`Layout`] to read the
//! image, on `retry` and `errors` for each request, and reports progress as [`PushEvent`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::{stream, StreamExt, TryStreamExt};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::Client;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::errors::Request;
use super::referrers::Pushed;
use super::{blob_of, HostClients, RegistryClient, MAX_INDEX_DEPTH};
use crate::oci::{self, Digest, Layout, ManifestKind};
use crate::registry::{Error, Reference};
use crate::store::BlobRef;

/// The size of each piece read from a file for a monolithic upload (small: only memory).
const STREAM_PIECE: usize = 1024 * 1024;

/// The size of each piece read from a file for a chunked upload: each is one `PATCH`.
const UPLOAD_PIECE: usize = 4 * 1024 * 1024;

/// How many pieces of one upload may wait, read, for the network: with the piece being sent
/// and the one being read, an upload holds at most this many + 2 pieces in memory.
const QUEUED_PIECES: usize = 2;

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
            // The manifests, each as soon as what it names is there: the images of an index at
            // once, then its indexes (children before parents, as collected), then the root
            // under its first name; then its other names and the referrers at once.
            let root_digest = root.digest().to_string();
            let mut images = Vec::new();
            let mut indexes = Vec::new();
            let mut root_names = Vec::new();
            for (desc, bytes) in &manifests {
                let digest = desc.digest().to_string();
                if digest == root_digest {
                    let names: Vec<Reference> = if tags.is_empty() {
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
                    root_names.extend(names.into_iter().map(|name| (name, desc, bytes)));
                    continue;
                }
                let name = target.with_digest(Digest::parse(&digest).map_err(|e| read(e.into()))?);
                match ManifestKind::of(desc.media_type()) {
                    ManifestKind::Index => indexes.push((name, desc, bytes)),
                    _ => images.push((name, desc, bytes)),
                }
            }
            let host = &*host;
            let images = images.into_iter();
            self.at_once(
                images
                    .map(|(name, desc, bytes)| self.push_named(host, name, desc, bytes, progress)),
            )
            .await?;
            for (name, desc, bytes) in indexes {
                self.push_named(host, name, desc, bytes, progress).await?;
            }
            let mut root_names = root_names.into_iter();
            if let Some((name, desc, bytes)) = root_names.next() {
                self.push_named(host, name, desc, bytes, progress).await?;
            }
            let referrers_pushed = self.push_referrers(host, target, &referrers, progress);
            let other_names = self.at_once(
                root_names
                    .map(|(name, desc, bytes)| self.push_named(host, name, desc, bytes, progress)),
            );
            let (referrers_pushed, other_names) =
                futures_util::future::join(referrers_pushed, other_names).await;
            referrers_pushed.and(other_names)
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

    /// Pushes the manifest `desc` (its exact `bytes`) as `name` and says so.
    async fn push_named(
        &self,
        host: &HostClients,
        name: Reference,
        desc: &Descriptor,
        bytes: &[u8],
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<(), Error> {
        self.push_manifest(host, &name, desc, bytes).await?;
        progress(PushEvent::ManifestPushed {
            digest: desc.digest().to_string(),
            reference: name.to_string(),
        });
        Ok(())
    }

    /// Runs `requests` at most `parallelism` at once; the first failure is the answer.
    async fn at_once(
        &self,
        requests: impl Iterator<Item = impl std::future::Future<Output = Result<(), Error>>>,
    ) -> Result<(), Error> {
        stream::iter(requests)
            .buffer_unordered(self.options.parallelism.max(1))
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// Pushes the referrers' manifests by digest (their blobs are there), at once, then makes
    /// the referrers of each subject findable (see `referrers`), the subjects at once.
    async fn push_referrers<'a>(
        &self,
        host: &HostClients,
        target: &Reference,
        referrers: &'a [Referrer],
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<(), Error> {
        self.at_once(referrers.iter().map(|r| async move {
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
            Ok::<(), Error>(())
        }))
        .await?;
        let subjects: BTreeSet<&str> = referrers.iter().map(|r| r.subject.as_str()).collect();
        let index = |subject: &'a str| async move {
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
            Ok::<(), Error>(())
        };
        // The first subject alone: it learns whether the registry has the referrers API, so
        // the others do not each ask.
        let mut subjects = subjects.into_iter();
        if let Some(first) = subjects.next() {
            index(first).await?;
        }
        self.at_once(subjects.map(index)).await
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
            self.upload(host, target, &path, blob).await?;
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

    /// Uploads a blob file, verified while it is read (see [`read_verified`]): streamed in
    /// one monolithic `PUT` (a `POST` opens the session, the `PUT` carries the bytes: two
    /// requests per blob), falling back to chunked `PATCH`es of [`UPLOAD_PIECE`] when the
    /// registry refuses it (a proxy's body-size limit, a registry without monolithic uploads).
    /// Each try restarts from a new session and re-reads the file.
    async fn upload(
        &self,
        host: &HostClients,
        target: &Reference,
        path: &Path,
        blob: &BlobRef,
    ) -> Result<(), Error> {
        let remote = target.to_client();
        let corrupt: Corrupt = Arc::new(Mutex::new(None));
        let mut result = self
            .upload_with(
                &host.monolithic,
                STREAM_PIECE,
                &remote,
                path,
                blob,
                &corrupt,
            )
            .await;
        if matches!(&result, Err(e) if refused_monolithic(e)) {
            result = self
                .upload_with(&host.chunked, UPLOAD_PIECE, &remote, path, blob, &corrupt)
                .await;
        }
        if let Some(source) = corrupt.lock().unwrap().take() {
            return Err(Error::ReadLayout {
                path: path.to_path_buf(),
                source: Box::new(source),
            });
        }
        result.map_err(|e| self.remote_error(host, target, e, Request::PushBlob(&blob.digest)))
    }

    /// Uploads a blob file with `client` (monolithic or chunked) read in pieces of `piece`
    /// bytes, retried; a blob found corrupt (in `corrupt`) fails the upload for good.
    async fn upload_with(
        &self,
        client: &Client,
        piece: usize,
        remote: &oci_client::Reference,
        path: &Path,
        blob: &BlobRef,
        corrupt: &Corrupt,
    ) -> Result<(), OciDistributionError> {
        self.retry(|| async {
            let body = blob_stream(path, blob, piece, corrupt.clone());
            let sent = client
                .push_blob_stream(remote, body, &blob.digest, Some(blob.size))
                .await;
            if corrupt.lock().unwrap().is_some() {
                // Not transient: reading it again gives the same bytes.
                return Err(OciDistributionError::GenericError(Some(format!(
                    "blob {} is corrupt",
                    blob.digest
                ))));
            }
            sent
        })
        .await
        .map(|_| ())
    }
}

/// Where the reader of an upload leaves the layout error that made it stop.
type Corrupt = Arc<Mutex<Option<oci::Error>>>;

/// Whether the registry (or a proxy before it) refused a monolithic upload in a way a chunked
/// one may pass: a 2xx other than 201, a body too large, a method or range it does not take.
fn refused_monolithic(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::SpecViolationError(_) => true,
        OciDistributionError::ServerError { code, .. } => {
            matches!(code, 400 | 405 | 411 | 413 | 416 | 501)
        }
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::BlobUploadInvalid
                    | OciErrorCode::SizeInvalid
                    | OciErrorCode::Unsupported
            )
        }),
        _ => false,
    }
}

/// The blob file at `path` as a stream of pieces of `piece` bytes for an upload: read and hashed on a blocking
/// thread of the runtime ([`read_verified`]), at most [`QUEUED_PIECES`] pieces ahead of the
/// network, so a big layer never sits in memory and hashing overlaps sending. A blob that is
/// not what its descriptor says ends the stream with an error (the request is aborted before
/// its last byte, so the registry commits nothing) and leaves the reason in `corrupt`.
fn blob_stream(
    path: &Path,
    blob: &BlobRef,
    piece: usize,
    corrupt: Corrupt,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUED_PIECES);
    let (path, blob) = (path.to_path_buf(), blob.clone());
    tokio::task::spawn_blocking(move || {
        let result = read_verified(&path, &blob, piece, &mut |bytes| {
            // The receiver is gone when the request failed: stop reading.
            tx.blocking_send(Ok(bytes)).is_ok()
        });
        if let Err(e) = result {
            let message = e.to_string();
            *corrupt.lock().unwrap() = Some(e);
            let _ = tx.blocking_send(Err(OciDistributionError::GenericError(Some(message))));
        }
    });
    stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    })
}

/// Reads the blob file at `path` in pieces of `piece` bytes, handing each to `send` (which
/// returns false to stop), and checks it is exactly `blob`: its size (a file that is shorter or
/// longer fails) and its digest, which is checked before the last piece is handed over, so a
/// corrupt blob is never sent whole. The error names the file and the blob.
fn read_verified(
    path: &Path,
    blob: &BlobRef,
    piece: usize,
    send: &mut dyn FnMut(bytes::Bytes) -> bool,
) -> Result<(), oci::Error> {
    use sha2::Digest as _;
    use std::io::Read;
    let read_err = |source| oci::Error::ReadBlob {
        path: path.to_path_buf(),
        digest: blob.digest.clone(),
        source,
    };
    let size_err = |actual| oci::Error::BlobSize {
        path: path.to_path_buf(),
        digest: blob.digest.clone(),
        expected: blob.size,
        actual,
    };
    let mut file = oci::bounded::open_regular(path).map_err(read_err)?;
    let mut hasher = sha2::Sha256::new();
    let mut read = 0u64;
    loop {
        let want = (blob.size - read).min(piece as u64) as usize;
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            match file.read(&mut buf[filled..]) {
                Ok(0) => return Err(size_err(read + filled as u64)),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            }
        }
        hasher.update(&buf);
        read += want as u64;
        if read == blob.size {
            // The last piece: nothing may follow, and the whole must hash to the digest.
            let mut more = [0u8; 1];
            let extra = loop {
                match file.read(&mut more) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other.map_err(read_err)?,
                }
            };
            if extra > 0 {
                let len = file.metadata().map_or(read + 1, |m| m.len());
                return Err(size_err(len.max(read + 1)));
            }
            let actual = Digest::from_hasher(hasher).to_string();
            if actual != blob.digest {
                return Err(oci::Error::BlobDigest {
                    path: path.to_path_buf(),
                    digest: blob.digest.clone(),
                    actual,
                });
            }
            if want > 0 {
                send(bytes::Bytes::from(buf));
            }
            return Ok(());
        }
        if !send(bytes::Bytes::from(buf)) {
            return Ok(());
        }
    }
}

/// Checks that the blob `d` names is in the layout as a regular file of its size (its digest
/// is checked while it is uploaded: a blob the registry has is not read at all).
fn check_size(layout: &Layout, d: &Descriptor) -> Result<(), oci::Error> {
    let digest = d.digest().to_string();
    let path = layout.blob_path(&digest)?;
    let actual = oci::bounded::open_regular(&path)
        .and_then(|f| f.metadata())
        .map_err(|source| oci::Error::ReadBlob {
            path: path.clone(),
            digest: digest.clone(),
            source,
        })?
        .len();
    if actual != d.size() {
        return Err(oci::Error::BlobSize {
            path,
            digest,
            expected: d.size(),
            actual,
        });
    }
    Ok(())
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
                check_size(layout, d)?;
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
                    check_size(layout, d)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `content` as a blob file in `dir`, described as `blob` (its own digest and size unless
    /// the test lies about them).
    fn blob_file(dir: &Path, content: &[u8]) -> (std::path::PathBuf, BlobRef) {
        let path = dir.join("blob");
        std::fs::write(&path, content).unwrap();
        let blob = BlobRef {
            digest: Digest::of(content).to_string(),
            size: content.len() as u64,
            media_type: "application/octet-stream".into(),
        };
        (path, blob)
    }

    /// What `read_verified` hands over, piece by piece.
    fn pieces(
        path: &Path,
        blob: &BlobRef,
        piece: usize,
    ) -> (Vec<bytes::Bytes>, Result<(), oci::Error>) {
        let mut sent = Vec::new();
        let result = read_verified(path, blob, piece, &mut |b| {
            sent.push(b);
            true
        });
        (sent, result)
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn a_blob_is_read_in_pieces_and_sent_whole() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = content(10_000);
        let (path, blob) = blob_file(dir.path(), &bytes);
        let (sent, result) = pieces(&path, &blob, 4096);
        result.unwrap();
        let sizes: Vec<usize> = sent.iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [4096, 4096, 1808]);
        assert_eq!(sent.concat(), bytes);
        // A size that is a multiple of the piece: no empty piece at the end.
        let (path, blob) = blob_file(dir.path(), &bytes[..8192]);
        let (sent, result) = pieces(&path, &blob, 4096);
        result.unwrap();
        assert_eq!(
            sent.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [4096, 4096]
        );
        // An empty blob sends nothing, and is still checked.
        let (path, blob) = blob_file(dir.path(), b"");
        let (sent, result) = pieces(&path, &blob, 4096);
        result.unwrap();
        assert!(sent.is_empty());
    }

    #[test]
    fn a_corrupt_blob_is_never_sent_whole_and_the_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = content(10_000);
        let (path, blob) = blob_file(dir.path(), &bytes);
        // The same size, one byte flipped in the first piece.
        let mut corrupt = bytes.clone();
        corrupt[10] ^= 1;
        std::fs::write(&path, &corrupt).unwrap();
        let (sent, result) = pieces(&path, &blob, 4096);
        let sent_len: usize = sent.iter().map(|b| b.len()).sum();
        assert!(
            sent_len < bytes.len(),
            "the last piece is held back: {sent_len}"
        );
        match result.unwrap_err() {
            oci::Error::BlobDigest {
                path: p,
                digest,
                actual,
            } => {
                assert_eq!(p, path);
                assert_eq!(digest, blob.digest);
                assert_eq!(actual, Digest::of(&corrupt).to_string());
            }
            other => panic!("{other:?}"),
        }
        // Shorter and longer than the descriptor says.
        std::fs::write(&path, &bytes[..9_000]).unwrap();
        let (_, result) = pieces(&path, &blob, 4096);
        assert!(
            matches!(
                result,
                Err(oci::Error::BlobSize {
                    expected: 10_000,
                    actual: 9_000,
                    ..
                })
            ),
            "{result:?}"
        );
        std::fs::write(&path, [&bytes[..], b"more"].concat()).unwrap();
        let (sent, result) = pieces(&path, &blob, 4096);
        assert!(
            matches!(
                result,
                Err(oci::Error::BlobSize {
                    expected: 10_000,
                    actual: 10_004,
                    ..
                })
            ),
            "{result:?}"
        );
        assert!(sent.iter().map(|b| b.len()).sum::<usize>() < bytes.len());
        let message = oci::Error::BlobSize {
            path: path.clone(),
            digest: blob.digest.clone(),
            expected: 1,
            actual: 2,
        }
        .to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn reading_stops_when_the_upload_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (path, blob) = blob_file(dir.path(), &content(10_000));
        let mut calls = 0;
        let result = read_verified(&path, &blob, 1000, &mut |_| {
            calls += 1;
            false
        });
        result.unwrap();
        assert_eq!(calls, 1);
    }

    #[test]
    fn only_refusals_a_chunked_upload_may_pass_fall_back() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
            retry_after: None,
        };
        for code in [400, 405, 413, 416, 501] {
            assert!(refused_monolithic(&server(code)), "{code}");
        }
        for code in [401, 403, 404, 429, 500, 503] {
            assert!(!refused_monolithic(&server(code)), "{code}");
        }
        assert!(refused_monolithic(
            &OciDistributionError::SpecViolationError("200 instead of 201".into())
        ));
    }
}
