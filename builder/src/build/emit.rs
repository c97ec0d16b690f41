//! Emitting: the executor's images become the output, an OCI layout (blobs hard-linked out of
//! the store into a temporary directory, swapped into place at the end), made into an OCI or
//! docker archive when asked, pushed when asked, and loaded into a local container engine when
//! asked (`load.rs`). A failed build leaves the previous output as it was.

use std::path::{Path, PathBuf};

use oci_spec::image::MediaType;

use super::execute::{write_json, Output};
use super::options::Context;
use super::planner::Plan;
use super::PushOptions;
use super::{store_err, BuildOptions, BuildOutput, Error, Event, OutputFormat, PlatformImage};
use crate::oci::{self, LayoutWriter};
use crate::spec::ImageSpec;
use crate::store::Store;

/// Where the output goes: the layout being written, and for an archive the temporary
/// directory beside it that holds that layout.
pub(super) struct Destination {
    pub writer: LayoutWriter,
    pub archive_scratch: Option<oci::TempDirBeside>,
}

impl Destination {
    /// Checks the output (an archive's destination is checked before any long work, and its
    /// layout goes into a temporary directory beside it) and starts writing the layout. With
    /// `no_output` the layout (only pushed) goes into a temporary directory in the store.
    pub fn create(cx: &Context, no_output: bool) -> Result<Self, Error> {
        let archive_scratch = match cx.format {
            _ if no_output => Some(
                oci::scratch_dir(&cx.store_root, oci::Scratch::Push).map_err(|source| {
                    Error::Output(Box::new(oci::Error::CreateDir {
                        path: cx.store_root.clone(),
                        source,
                    }))
                })?,
            ),
            OutputFormat::Oci => None,
            _ => Some(archive_scratch(&cx.output)?),
        };
        let layout_target = match &archive_scratch {
            Some(dir) => dir.path().join("layout"),
            None => cx.output.clone(),
        };
        Ok(Destination {
            writer: LayoutWriter::create(&layout_target)?,
            archive_scratch,
        })
    }
}

/// Writes the output of an executed plan: every blob of every platform's image out of the
/// store, the index, the archive, then the push.
#[allow(clippy::too_many_arguments)]
pub(super) fn emit(
    spec: &ImageSpec,
    cx: &Context,
    opts: &BuildOptions,
    plan: &Plan,
    outputs: Vec<Output>,
    store: &Store,
    destination: Destination,
    toolchain: &super::provenance::Toolchain,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<BuildOutput, Error> {
    let Destination {
        writer,
        archive_scratch,
    } = destination;
    let results: Vec<&Output> = plan.platforms.iter().map(|p| &outputs[p.image]).collect();
    // Layers left in a remote cache (a build that only pushes): the push mounts them.
    let remote: std::collections::HashSet<&str> = if opts.no_output {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Layer {
                    blob,
                    remote: Some(_),
                    ..
                } if !store.has_blob(&oci::Digest::parse(&blob.digest).ok()?) => {
                    Some(blob.digest.as_str())
                }
                _ => None,
            })
            .collect()
    } else {
        Default::default()
    };
    let mut children = Vec::new();
    let mut referrers = Vec::new();
    for (image, p) in results.iter().zip(&plan.platforms) {
        let resolved = image.image();
        for desc in resolved.layers() {
            if remote.contains(desc.digest().as_ref() as &str) {
                continue;
            }
            link_out(store, desc.digest().as_ref(), &writer, &cx.store_root)?;
        }
        link_out(
            store,
            resolved.manifest.config().digest().as_ref(),
            &writer,
            &cx.store_root,
        )?;
        link_out(store, &resolved.digest(), &writer, &cx.store_root)?;
        referrers.extend(super::sbom::attach(p, resolved, opts, store, &writer)?);
        if spec.provenance {
            let attach = super::provenance::attach;
            referrers.push(attach(
                p, plan, &outputs, resolved, opts, toolchain, &writer,
            )?);
        }
        let mut child = resolved.descriptor.clone();
        child.set_platform(Some(p.platform.to_oci()));
        children.push(child);
    }
    let mut platform_images = Vec::new();
    let tagged = if plan.as_index {
        for (image, child) in results.iter().zip(&children) {
            platform_images.push(PlatformImage {
                platform: image_platform(child),
                manifest_digest: child.digest().to_string(),
                manifest_size: child.size(),
                layers: own_layers(image).0.to_vec(),
            });
        }
        let index = oci::platform_index(children, &cx.annotations);
        let (descriptor, _) = write_json(store, MediaType::ImageIndex, &index)?;
        link_out(store, descriptor.digest().as_ref(), &writer, &cx.store_root)?;
        descriptor
    } else {
        results[0].image().descriptor.clone()
    };
    let manifest_digest = tagged.digest().to_string();
    let entry_platform = (!plan.as_index).then(|| plan.platforms[0].platform.clone());
    let mut entries = oci::index_entries(&tagged, entry_platform.as_ref(), &cx.tags);
    // The SBOMs and provenance statements, after the image's entries and without a tag
    // (`build/sbom.rs`, `build/provenance.rs`).
    let referrer_entries = referrers.clone();
    entries.extend(referrers);
    if let Some(signer) = &opts.sign {
        entries = sign_image(
            spec,
            opts,
            signer,
            &writer,
            &manifest_digest,
            plan.as_index,
            &referrer_entries,
            entries,
            on_event,
        )?;
    }
    let layout = writer.finish(entries)?;
    let path = match cx.format {
        _ if opts.no_output => layout,
        OutputFormat::Oci => layout,
        OutputFormat::OciArchive => {
            oci::write_oci_archive(&layout, &cx.output, cx.epoch)?;
            cx.output.clone()
        }
        OutputFormat::DockerArchive => {
            let repo_tags: Vec<String> = cx
                .tags
                .iter()
                .map(|t| format!("{}:{t}", spec.name))
                .collect();
            oci::write_docker_archive(
                &layout,
                cx.tags.first().map(String::as_str),
                &repo_tags,
                &cx.output,
                cx.epoch,
            )?;
            cx.output.clone()
        }
    };
    let pushed = match &opts.push {
        Some(push) => push_image(
            spec,
            cx,
            opts,
            push,
            store,
            &layout_dir_of(&path, archive_scratch.as_ref()),
            plan.platforms[0].reference.as_ref(),
            on_event,
        )?,
        None => Vec::new(),
    };
    if let Some(program) = cx.load {
        super::load::load(
            program,
            &layout_dir_of(&path, archive_scratch.as_ref()),
            &spec.name,
            &cx.tags,
            &cx.store_root,
            cx.epoch,
            on_event,
        )?;
    }
    drop(archive_scratch);
    on_event(Event::ImageFinished {
        name: spec.name.clone(),
        tags: cx.tags.clone(),
        digest: manifest_digest.clone(),
        path: path.clone(),
    });
    Ok(BuildOutput {
        path,
        name: spec.name.clone(),
        tags: cx.tags.clone(),
        manifest_digest,
        cached_layers: results.iter().map(|i| own_layers(i).1).sum(),
        layers: results
            .iter()
            .flat_map(|i| own_layers(i).0.iter().cloned())
            .collect(),
        platforms: platform_images,
        pushed,
    })
}

/// The layers of a stage's image that the stage built (not its base's), and how many came
/// from the store.
fn own_layers(output: &Output) -> (&[crate::layer::LayerBlob], usize) {
    match output {
        Output::Image { layers, cached, .. } => (layers, *cached),
        _ => unreachable!("a platform's output is an image"),
    }
}

/// `os/arch[/variant]` of an index entry.
fn image_platform(descriptor: &oci_spec::image::Descriptor) -> String {
    descriptor
        .platform()
        .as_ref()
        .map(|p| oci::Platform::from_oci(p).to_string())
        .unwrap_or_default()
}

/// Puts a store blob into the layout being written.
fn link_out(
    store: &Store,
    digest: &str,
    writer: &LayoutWriter,
    store_root: &Path,
) -> Result<(), Error> {
    let digest = oci::Digest::parse(digest)?;
    let linked = store
        .link_out(&digest, &writer.blobs_dir().join(digest.hex()))
        .map_err(|e| store_err(store_root, e))?;
    if linked {
        writer.durable(&digest);
    }
    Ok(())
}

/// Signs the image `digest` being written (cosign's simple signing, and its referrers as
/// attestations; see [`crate::sign`]): the layout's `index.json` entries with the signature and
/// attestation images, whose blobs go into the layout.
#[allow(clippy::too_many_arguments)]
fn sign_image(
    spec: &ImageSpec,
    opts: &BuildOptions,
    signer: &crate::sign::Signer,
    writer: &LayoutWriter,
    digest: &str,
    is_index: bool,
    referrers: &[oci_spec::image::Descriptor],
    entries: Vec<oci_spec::image::Descriptor>,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<Vec<oci_spec::image::Descriptor>, Error> {
    let sign_err = |e| Error::Sign(Box::new(e));
    let identity = signing_identity(spec, opts);
    let attachments =
        crate::sign::layout::attachments_in(&writer.blobs_dir(), referrers).map_err(sign_err)?;
    let signatures = signer
        .sign_image(&identity, digest, &attachments)
        .map_err(sign_err)?;
    let mut write = |bytes: &[u8]| -> Result<(), crate::sign::Error> {
        writer.write_blob(bytes)?;
        Ok(())
    };
    let entries = crate::sign::layout::signed_entries(entries, &signatures, is_index, &mut write)
        .map_err(sign_err)?;
    on_event(Event::Signed {
        digest: digest.to_string(),
        identity,
        key: signer.path().to_path_buf(),
        attestations: signatures
            .attestations
            .iter()
            .map(|a| a.layer.annotations["predicateType"].clone())
            .collect(),
    });
    Ok(entries)
}

/// The repository a build's signature names: where it is pushed, else the spec's `name`
/// (normalised as a registry reference when it is one).
fn signing_identity(spec: &ImageSpec, opts: &BuildOptions) -> String {
    let name = opts
        .push
        .as_ref()
        .and_then(|p| p.repositories.first().cloned())
        .unwrap_or_else(|| spec.name.clone());
    match crate::registry::Reference::parse(&name) {
        Ok(reference) => reference.name(),
        Err(_) => name,
    }
}

/// The layout directory of a finished build: the output, or the layout an archive was made of.
fn layout_dir_of(output: &Path, archive_scratch: Option<&oci::TempDirBeside>) -> PathBuf {
    match archive_scratch {
        Some(dir) => dir.path().join("layout"),
        None => output.to_path_buf(),
    }
}

/// Pushes a finished layout to each repository of `push`, in order (later ones of the same
/// registry mount the blobs the earlier ones got); returns `repository@digest` of each.
#[allow(clippy::too_many_arguments)]
fn push_image(
    spec: &ImageSpec,
    cx: &Context,
    opts: &BuildOptions,
    push: &PushOptions,
    store: &Store,
    layout: &Path,
    mount_from: Option<&crate::registry::Reference>,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<Vec<String>, Error> {
    use crate::registry::{PushEvent, Reference, RegistryClient};
    let repositories = match push.repositories.as_slice() {
        [] => vec![spec.name.clone()],
        given => given.to_vec(),
    };
    let mut client = None;
    let mut pushed = Vec::new();
    for repository in repositories {
        let registry_err = |source| Error::Push {
            reference: repository.clone(),
            source: Box::new(source),
        };
        let parse_err = |e| {
            registry_err(crate::registry::Error::ParseReference {
                reference: repository.clone(),
                source: e,
            })
        };
        let target = Reference::parse(&repository).map_err(parse_err)?;
        let target = Reference::from_parts(target.registry(), target.repository(), None, None)
            .map_err(parse_err)?;
        // Mount base blobs only within one registry.
        let mount_from = mount_from.filter(|m| m.registry() == target.registry());
        let client: &RegistryClient = match &mut client {
            Some(client) => client,
            None => client.insert(
                RegistryClient::sharing(opts.registry.clone(), &cx.registry)
                    .map_err(registry_err)?
                    .remembering_in(store),
            ),
        };
        let progress = |e: PushEvent| {
            let (digest, size, action) = match e {
                PushEvent::BlobSkipped { digest, size } => (digest, size, "skipped"),
                PushEvent::BlobMounted { digest, size } => (digest, size, "mounted"),
                PushEvent::BlobUploaded { digest, size } => (digest, size, "uploaded"),
                PushEvent::ManifestPushed { .. }
                | PushEvent::ReferrerPushed { .. }
                | PushEvent::ReferrersIndexed { .. } => return,
            };
            on_event(Event::PushBlob {
                digest,
                size,
                action,
            })
        };
        let report = client
            .push_layout(
                layout,
                cx.tags.first().map(String::as_str),
                &target,
                &cx.tags,
                mount_from,
                &progress,
            )
            .map_err(registry_err)?;
        let reference = format!("{}@{}", target.name(), report.digest);
        on_event(Event::Pushed {
            reference: reference.clone(),
            tags: cx.tags.clone(),
            uploaded_blobs: report.uploaded_blobs,
            skipped_blobs: report.skipped_blobs,
            mounted_blobs: report.mounted_blobs,
            referrers: report.referrers,
        });
        if opts.sign.is_some() {
            // The signatures written into the layout go where cosign looks in a registry.
            let signed =
                crate::sign::push_layout_signatures(client, &target, layout, &report.digest)
                    .map_err(|e| Error::Sign(Box::new(e)))?;
            on_event(Event::SignaturesPushed {
                repository: signed.repository,
                tags: signed.tags,
            });
        }
        pushed.push(reference);
    }
    Ok(pushed)
}

/// A temporary directory beside an archive's destination, for the layout it is made from
/// (after checking the destination and removing the leftovers of killed builds there).
fn archive_scratch(dest: &Path) -> Result<oci::TempDirBeside, Error> {
    Ok(oci::prepare_archive_output(dest)?)
}
