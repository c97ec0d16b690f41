//! The baselines cargo-image is compared with, run on the same corpus in the same run.
//!
//! - `tar --sort=name ... | pigz -6 -p N -n` and `| zstd -3 -TN`: about the limit of packing a
//!   tree on N cores with the standard tools; the output goes to a file on the same disk, as ours.
//! - `buildah bud` (vfs storage driver, chroot isolation, `--layers` so it caches) of
//!   `FROM scratch` + `COPY corpus /data/`, then `buildah push` into an OCI layout: a daemonless
//!   peer. Its storage (`--root`, `--runroot`) is private to the bench directory and removed
//!   afterwards, so system storage is never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::measure::{self, median, remove_dir_if_exists, repeat, Sample};

/// Which compressor a tar baseline pipes into.
#[derive(Clone, Copy, Debug)]
pub enum Compressor {
    Pigz,
    Zstd,
}

/// Runs `tar` of `dir` (deterministic flags) into the compressor, writing `out`.
pub fn tar_pipe(dir: &Path, compressor: Compressor, threads: usize, out: &Path) -> Result<Sample> {
    let compress = match compressor {
        Compressor::Pigz => format!("pigz -6 -p {threads} -n"),
        Compressor::Zstd => format!("zstd -q -3 -T{threads}"),
    };
    shell(
        &format!("{TAR} -cf - -C \"$1\" . | {compress} > \"$2\""),
        &[dir, out],
    )
}

/// GNU tar with the flags that make its output independent of the host's metadata.
const TAR: &str = "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner";

/// A private buildah: its own storage under `work`, vfs driver, chroot isolation.
pub struct Buildah {
    root: PathBuf,
    runroot: PathBuf,
    /// The build context: the corpus parent, with a Containerfile and an ignore file.
    context: PathBuf,
    containerfile: PathBuf,
}

/// The image name buildah builds.
const IMAGE: &str = "localhost/cargo-image-bench:latest";

impl Buildah {
    /// Whether `buildah` is on PATH.
    pub fn installed() -> bool {
        Command::new("buildah")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Sets up a buildah whose storage lives in `work`, building `COPY corpus /data/` from
    /// `context` (the directory holding `corpus/`).
    pub fn new(work: &Path, context: &Path) -> Result<Buildah> {
        let containerfile = work.join("Containerfile");
        fs::create_dir_all(work)?;
        fs::write(&containerfile, "FROM scratch\nCOPY corpus /data/\n")?;
        // Only the corpus goes to buildah: leave out our outputs, specs and scratch files.
        fs::write(context.join(".containerignore"), "*\n!corpus\n!corpus/**\n")?;
        Ok(Buildah {
            root: work.join("root"),
            runroot: work.join("runroot"),
            context: context.to_path_buf(),
            containerfile,
        })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("buildah");
        cmd.env("BUILDAH_ISOLATION", "chroot")
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .arg("--storage-driver")
            .arg("vfs");
        cmd
    }

    /// `buildah bud` of the corpus (cached when its storage already holds the layers).
    pub fn bud(&self) -> Result<Sample> {
        measure::time(
            self.command()
                .arg("bud")
                .arg("--layers")
                .arg("--quiet")
                .arg("-t")
                .arg(IMAGE)
                .arg("-f")
                .arg(&self.containerfile)
                .arg(&self.context),
        )
    }

    /// `buildah push` of the built image into a fresh OCI layout at `out`.
    pub fn push(&self, out: &Path) -> Result<Sample> {
        remove_dir_if_exists(out)?;
        measure::time(
            self.command()
                .arg("push")
                .arg("--quiet")
                .arg(IMAGE)
                .arg(format!("oci:{}:latest", out.display())),
        )
    }

    /// Removes buildah's private storage (a cold start for the next build).
    pub fn reset(&self) -> Result<()> {
        remove_dir_if_exists(&self.root)?;
        remove_dir_if_exists(&self.runroot)
    }

    /// Removes the storage and the ignore file written into the context.
    pub fn clean(&self) -> Result<()> {
        self.reset()?;
        match fs::remove_file(self.context.join(".containerignore")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("remove .containerignore")
            }
            _ => Ok(()),
        }
    }
}

/// Runs a shell pipeline (`bash -euo pipefail -c script`) with `$1`, `$2`... set to `args`.
pub fn shell(script: &str, args: &[&Path]) -> Result<Sample> {
    let mut cmd = Command::new("bash");
    cmd.arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .args(args);
    measure::time(&mut cmd)
}

/// The pieces of packing a tree, each timed alone (for "where the time goes"): tar to a file,
/// then each compressor and SHA-256 on that finished tar. Returns (label, median seconds).
pub fn breakdown(
    dir: &Path,
    threads: usize,
    runs: usize,
    work: &Path,
) -> Result<Vec<(String, f64)>> {
    let tar = work.join("breakdown.tar");
    let out = work.join("breakdown.out");
    let tar_secs = median(&repeat(runs, |_| {
        shell(&format!("{TAR} -cf \"$2\" -C \"$1\" ."), &[dir, &tar])
    })?);
    let tar_mb = fs::metadata(&tar)?.len() as f64 / 1e6;
    let mut rows = vec![(
        format!("GNU tar alone ({tar_mb:.0} MB tar, to a file)"),
        tar_secs,
    )];
    let steps = [
        (
            format!("pigz -6 -p {threads} of that tar"),
            format!("pigz -6 -p {threads} -n < \"$1\" > \"$2\""),
        ),
        (
            "pigz -6 -p 1 of that tar".to_string(),
            "pigz -6 -p 1 -n < \"$1\" > \"$2\"".to_string(),
        ),
        (
            format!("zstd -3 -T{threads} of that tar"),
            format!("zstd -q -3 -T{threads} < \"$1\" > \"$2\""),
        ),
        (
            "sha256sum of that tar (coreutils)".to_string(),
            "sha256sum \"$1\" > \"$2\"".to_string(),
        ),
    ];
    for (label, script) in steps {
        let secs = median(&repeat(runs, |_| shell(&script, &[&tar, &out]))?);
        rows.push((label, secs));
    }
    let _ = fs::remove_file(&tar);
    let _ = fs::remove_file(&out);
    Ok(rows)
}
