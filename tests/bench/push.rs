//! The push row: `cargo-image push` of the corpus image (its warm build included) to a loopback
//! `docker-registry`, against `skopeo copy oci:<layout>:latest docker://...` of the layout that
//! build wrote. Every run, ours and skopeo's, goes to a registry of its own started just before
//! it (untimed, on a new port), so neither finds a blob there or knows where to mount it from.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};
use cargo_oci_image_test_support::registry::Registry;

use crate::measure::{self, median, Sample};
use crate::report::{Goal, Outcome};
use crate::{log, Bench};

/// The push row's name.
const ROW: &str = "push to a loopback registry (warm build included)";

/// Whether `docker-registry` runs here.
pub fn registry_installed() -> bool {
    Command::new("docker-registry")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Bench {
    /// The push row: ours against skopeo (or why it was not measured).
    pub(crate) fn push_row(&mut self, spec: &Path, out_name: &str) {
        let outcome = match self.push_vs_skopeo(spec, out_name) {
            Ok((ours, skopeo)) => Outcome::Measured {
                ours,
                baseline: Some(skopeo),
            },
            Err(why) => Outcome::Skipped(format!("{why:#}")),
        };
        self.row(
            ROW,
            "skopeo copy oci:LAYOUT docker://...",
            Goal::RatioAtMost(1.0),
            outcome,
        );
    }

    /// Median seconds of our push of `spec` (warm build into `out_name`, then the push), and
    /// of skopeo's copy of that layout; each run against a fresh registry.
    pub(crate) fn push_vs_skopeo(&mut self, spec: &Path, out_name: &str) -> Result<(f64, f64)> {
        if !registry_installed() {
            bail!("docker-registry is not installed (`just deps`)");
        }
        if Command::new("skopeo").arg("--version").output().is_err() {
            bail!("skopeo is not installed (`just deps`)");
        }
        let runs = self.args.runs;
        let out = self.out(out_name);
        let out_arg = out.to_string_lossy().into_owned();
        // The layout as the corpus is now: the pushes below are warm builds.
        log("push: priming build");
        self.ours.build(spec, &out)?;
        let (mut ours, mut skopeo) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        for i in 0..runs {
            log(&format!("push: ours {}/{runs}", i + 1));
            let registry = Registry::start();
            let target = format!("{}/bench/push", registry.host());
            ours.push(self.ours.run(
                "push",
                spec,
                &["--output", &out_arg, "--push-to", &target],
            )?);
            bytes = uploaded_bytes(&registry.dir.path().join("data"));
            drop(registry);
            log(&format!("push: skopeo copy {}/{runs}", i + 1));
            let registry = Registry::start();
            skopeo.push(skopeo_copy(
                &out,
                &format!("docker://{}/bench/push:latest", registry.host()),
            )?);
        }
        self.notes.push((
            "push".to_string(),
            format!(
                "loopback docker-registry, a fresh one per run; {:.1} MB of blobs stored per push",
                bytes as f64 / 1e6
            ),
        ));
        Ok((median(&ours), median(&skopeo)))
    }
}

/// `skopeo copy oci:LAYOUT:latest DEST` to a plain-HTTP registry, timed.
fn skopeo_copy(layout: &Path, dest: &str) -> Result<Sample> {
    measure::time(
        Command::new("skopeo")
            .arg("copy")
            .arg("--quiet")
            .arg("--dest-tls-verify=false")
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(dest),
    )
}

/// The bytes of the blobs a registry's filesystem storage holds (`.../blobs/sha256/*/*/data`).
fn uploaded_bytes(data: &Path) -> u64 {
    crate::corpus::regular_files(data)
        .map(|files| {
            files
                .iter()
                .filter(|(p, _)| {
                    p.file_name().is_some_and(|n| n == "data")
                        && p.components().any(|c| c.as_os_str() == "blobs")
                })
                .map(|(_, size)| size)
                .sum()
        })
        .unwrap_or(0)
}
