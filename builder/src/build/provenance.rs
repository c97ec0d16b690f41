//! The provenance emit step: for each platform's image, the SLSA v1 statement of
//! [`crate::provenance`] and the artifact manifest that attaches it, written into the layout
//! being emitted beside the SBOM (the same artifact manifest code, `build/sbom.rs`), listed in
//! `index.json` without a `ref.name`.
//!
//! Like the SBOM it is an emit step, not a graph node: nothing in the image depends on it, so
//! the plan and the image's bytes are the same with `provenance = false`. The facts come from
//! what the build already knows: the git commit and repository from the image's annotations
//! (one `git` lookup per build, made by the options), the bases from the graph's fetched
//! bases. `rustc -vV` runs once per build (once per invocation for the images of a workspace,
//! `shared.rs`), and only for an image with cargo binaries, on a
//! thread started before planning ([`Toolchain`]), so a warm build does not wait for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use oci_spec::image::Descriptor;

use super::base::{base_label, base_name};
use super::execute::Output;
use super::planner::{Plan, PlannedPlatform};
use super::sbom::{attach_artifact, sha256_file, slash_path};
use super::{BuildOptions, Error};
use crate::oci::{LayoutWriter, ResolvedImage};
use crate::plan::NodeKind;
use crate::provenance::{self, CargoArgs};
use crate::spec::{ImageSpec, Source};

/// `rustc -vV` of the toolchain cargo builds with, asked once per build. The build starts it
/// ([`Toolchain::start`]) before planning, on a thread of its own, so that it runs while the
/// plan and cargo's own build do: through the rustup proxy it takes longer than the rest of
/// the provenance statement, and would otherwise add that time to every warm build.
#[derive(Default)]
pub(super) struct Toolchain {
    started: Mutex<Option<JoinHandle<Option<String>>>>,
    version: OnceLock<Option<String>>,
}

impl Toolchain {
    /// Starts asking `rustc -vV` in `dir` (the spec's context, where cargo runs) when the
    /// spec asks for provenance and builds cargo binaries; otherwise nothing runs until
    /// [`version`](Self::version) is called.
    pub(super) fn start(spec: &ImageSpec) -> Self {
        let toolchain = Toolchain::default();
        toolchain.start_for(spec);
        toolchain
    }

    /// Starts asking `rustc -vV` in the spec's context when [`start`](Self::start) would and
    /// it has not been asked yet: the images of a workspace share one toolchain (they have one
    /// context).
    pub(super) fn start_for(&self, spec: &ImageSpec) {
        let builds_cargo = spec.all_stages().any(|s| {
            s.layers
                .iter()
                .flat_map(|l| &l.entries)
                .any(|e| matches!(e.source, Source::Cargo(_)))
        });
        if !spec.provenance || !builds_cargo || self.version.get().is_some() {
            return;
        }
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if started.is_none() {
            let dir = spec.context.clone();
            *started = std::thread::Builder::new()
                .name("rustc -vV".into())
                .spawn(move || rustc_version(&dir))
                .ok();
        }
    }

    /// `$RUSTC -vV` (or `rustc -vV`) run in `dir`, where cargo runs (so a `rust-toolchain.toml`
    /// there picks the same toolchain): the answer of the run [`start`](Self::start) began,
    /// else of a run now; `None` when it cannot be run.
    fn version(&self, dir: &Path) -> Option<String> {
        self.version
            .get_or_init(|| {
                let started = self
                    .started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                match started {
                    Some(handle) => handle.join().ok().flatten(),
                    None => rustc_version(dir),
                }
            })
            .clone()
    }
}

/// `$RUSTC -vV` (or `rustc -vV`) run in `dir`; `None` when it cannot be run or fails.
fn rustc_version(dir: &Path) -> Option<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes the provenance statement of `image` (platform `p` of `plan`, whose nodes' results are
/// `outputs`) and its artifact manifest into `writer`; returns the `index.json` entry of the artifact manifest.
pub(super) fn attach(
    p: &PlannedPlatform,
    plan: &Plan,
    outputs: &[Output],
    image: &ResolvedImage,
    opts: &BuildOptions,
    toolchain: &Toolchain,
    writer: &LayoutWriter,
) -> Result<Descriptor, Error> {
    let spec = &p.spec;
    let read = |path: &Path| {
        sha256_file(path).map_err(|source| Error::ProvenanceFile {
            path: path.to_path_buf(),
            source,
        })
    };
    let spec_file = spec
        .spec_path
        .canonicalize()
        .unwrap_or_else(|_| spec.spec_path.clone());
    let spec_path = match spec_file.strip_prefix(&spec.context) {
        Ok(rel) => slash_path(rel),
        Err(_) => slash_path(Path::new(spec_file.file_name().unwrap_or_default())),
    };
    let cargo_lock = match cargo_lock(&spec.context) {
        Some((rel, full)) => Some((rel, read(&full)?)),
        None => None,
    };
    let overrides = &opts.cargo.overrides;
    let annotation = |key: &str| p.cx.annotations.get(key).cloned();
    let input = provenance::Input {
        name: spec.name.clone(),
        manifest_digest: image.digest(),
        spec_path,
        spec_sha256: read(&spec_file)?,
        target: p.cx.target.clone(),
        platform: p.platform.to_string(),
        platforms: plan
            .platforms
            .iter()
            .map(|q| q.platform.to_string())
            .collect(),
        tags: p.cx.tags.clone(),
        cargo: CargoArgs {
            // What cargo shows is no parameter of the build: `--quiet` or not, the same bytes.
            args: (opts.cargo.extra_args.iter())
                .filter(|a| !matches!(a.as_str(), "--quiet" | "-q" | "--verbose" | "-v" | "-vv"))
                .cloned()
                .collect(),
            profile: overrides.profile.clone(),
            features: overrides.features.clone(),
            all_features: overrides.all_features,
            no_default_features: overrides.no_default_features,
        },
        epoch: p.cx.epoch,
        repository: annotation("org.opencontainers.image.source"),
        commit: annotation("org.opencontainers.image.revision"),
        cargo_lock,
        bases: bases(plan, outputs, p),
        rustc: if p.cargo_outputs.is_empty() {
            None
        } else {
            toolchain.version(&spec.context)
        },
    };
    let bytes = provenance::statement(&input);
    attach_artifact(writer, provenance::MEDIA_TYPE, &bytes, image)
}

/// Every outside base the image of `p` needs: the fetched bases its image node reaches through
/// the graph's inputs (its own base and the bases of the stages it copies out of), with their
/// digests and their names relative to the spec (as the `base.name` annotation has them).
fn bases(plan: &Plan, outputs: &[Output], p: &PlannedPlatform) -> Vec<(Option<String>, String)> {
    let spec_dir = p.spec.spec_path.parent().unwrap_or(Path::new("."));
    let names: HashMap<String, Option<String>> = (p.spec.all_stages())
        .map(|s| (base_label(&s.base), base_name(&s.base, spec_dir)))
        .collect();
    let mut seen = vec![false; plan.graph.nodes.len()];
    let mut todo = vec![p.image];
    let mut out = Vec::new();
    while let Some(id) = todo.pop() {
        if std::mem::replace(&mut seen[id], true) {
            continue;
        }
        let node = &plan.graph.nodes[id];
        if let NodeKind::FetchBase { reference } = &node.kind {
            let name = names.get(reference).cloned().flatten();
            out.push((name, outputs[id].image().digest()));
        }
        todo.extend(&node.inputs);
    }
    out
}

/// The `Cargo.lock` of the context or its nearest ancestor that has one: its path relative to
/// the context (`Cargo.lock`, `../Cargo.lock`, ...) and its full path.
fn cargo_lock(context: &Path) -> Option<(String, PathBuf)> {
    context.ancestors().enumerate().find_map(|(up, dir)| {
        let full = dir.join("Cargo.lock");
        full.is_file()
            .then(|| (format!("{}Cargo.lock", "../".repeat(up)), full))
    })
}
