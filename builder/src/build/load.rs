//! Loading: the finished image handed to a local container engine (`--load`), so it can be run
//! with `podman run` / `docker run` without a registry.
//!
//! The image for the host's platform (picked out of an index by [`Platform::host`]) is written
//! as a Docker archive into a temporary directory of the store (the one format both engines
//! load: `docker load` before Docker 25 takes no OCI archive, and `podman load` of an OCI
//! archive with several tags asks which to take), named `name:tag` for every tag, then given to
//! `ENGINE load -i FILE`. The engine is run as the user would run it (its own storage and
//! configuration, e.g. `CONTAINERS_STORAGE_CONF`). The image id the engine shows is the
//! config digest, the same on every machine.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{Error, Event};
use crate::oci::{self, Platform};

/// Which engine `--load` hands the image to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadEngine {
    /// podman if it is installed (daemonless, like us), else docker.
    #[default]
    Auto,
    Podman,
    Docker,
}

impl LoadEngine {
    /// The program to run: the one asked for, or for `Auto` the first installed. Resolved
    /// before the build starts, so a missing engine costs no build.
    pub(super) fn program(self) -> Result<&'static str, Error> {
        let candidates: &[&'static str] = match self {
            LoadEngine::Auto => &["podman", "docker"],
            LoadEngine::Podman => &["podman"],
            LoadEngine::Docker => &["docker"],
        };
        candidates
            .iter()
            .copied()
            .find(|p| on_path(p))
            .ok_or_else(|| Error::NoLoadEngine {
                wanted: candidates.join(" or "),
            })
    }
}

/// Whether `program` is an executable file in a `PATH` directory.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Loads the image tagged `tags[0]` in the finished layout `layout` (of image `name`) into the
/// engine `program` (from [`LoadEngine::program`]) under every tag; the archive goes through a
/// temporary directory in `scratch_parent`.
pub(super) fn load(
    program: &str,
    layout: &Path,
    name: &str,
    tags: &[String],
    scratch_parent: &Path,
    epoch: u64,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<(), Error> {
    let platform = Platform::host();
    let scratch = oci::scratch_dir(scratch_parent, oci::Scratch::Load).map_err(|source| {
        Error::LoadScratch {
            path: scratch_parent.to_path_buf(),
            source,
        }
    })?;
    let archive = scratch.path().join("image.docker.tar");
    let references: Vec<String> = tags.iter().map(|t| format!("{name}:{t}")).collect();
    let image_id = oci::write_docker_archive_for(
        layout,
        tags.first().map(String::as_str),
        Some(&platform),
        &references,
        &archive,
        epoch,
    )?
    .to_string();
    let out = Command::new(program)
        .args(["load", "-i"])
        .arg(&archive)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::LoadSpawn {
            program: program.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::LoadFailed {
            program: program.to_owned(),
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_owned(),
        });
    }
    on_event(Event::Loaded {
        engine: program.to_owned(),
        platform: platform.to_string(),
        references,
        image_id,
    });
    Ok(())
}
