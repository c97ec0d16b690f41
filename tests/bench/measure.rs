//! Timing child processes: wall time with [`Instant`] around the whole child, peak resident
//! memory from GNU time (`/usr/bin/time -f %M`, Debian package `time`), and medians of runs.
//!
//! [`Ours`] runs the `cargo-image` binary under test the same way every time: quiet, with a fixed
//! number of compression threads (the baselines get the same number), `CARGO_TARGET_DIR` removed
//! so its store stays inside the bench directory, and `--store` when the binary has that flag.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// GNU time, which reports the peak RSS of the command it runs.
pub const GNU_TIME: &str = "/usr/bin/time";

/// One timed run of a child process.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub secs: f64,
    /// Peak resident set size in KiB, when the run was wrapped in GNU time.
    pub peak_rss_kib: Option<u64>,
    /// User and system CPU time of the child and every process it waited for (a shell's
    /// pipeline, GNU time's command), in seconds.
    pub cpu_secs: f64,
}

/// Runs `cmd` to completion, timing it; fails with its stderr unless it exits 0. The disk is
/// settled first ([`settle`]).
pub fn time(cmd: &mut Command) -> Result<Sample> {
    time_all(std::slice::from_mut(cmd))
}

/// Runs `cmds` at once, each to completion: the wall time until the last ends, the CPU time of
/// them all. Fails with the stderr of the first that did not exit 0. The disk is settled first
/// ([`settle`]).
pub fn time_all(cmds: &mut [Command]) -> Result<Sample> {
    for cmd in cmds.iter_mut() {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    }
    settle();
    let cpu_before = children_cpu_secs();
    let start = Instant::now();
    let children = cmds
        .iter_mut()
        .map(|cmd| {
            cmd.spawn()
                .with_context(|| format!("could not run {:?}", cmd.get_program()))
        })
        .collect::<Result<Vec<_>>>()?;
    let outs = children
        .into_iter()
        .map(|child| child.wait_with_output())
        .collect::<std::io::Result<Vec<_>>>()?;
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = children_cpu_secs() - cpu_before;
    if let Some((cmd, out)) = cmds.iter().zip(&outs).find(|(_, o)| !o.status.success()) {
        bail!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            last_lines(&String::from_utf8_lossy(&out.stderr), 6)
        );
    }
    Ok(Sample {
        secs,
        peak_rss_kib: None,
        cpu_secs,
    })
}

/// User plus system CPU time of this process's waited-for children so far, in seconds: a
/// child's own and that of the children it waited for are added when it is waited for.
fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Writes every dirty page to disk, untimed, before a timed run: so no run pays for the
/// writeback of what the run before it wrote. A baseline that pipes its 366 MB into a file
/// leaves them dirty, and the kernel would write them back while the next command runs (our
/// builds `fsync` their blobs, inside their own time); every command starts with the disk idle.
fn settle() {
    let _ = Command::new("sync").status();
}

/// The last `n` non-empty lines of `text`, joined by " | ".
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The median of the samples' wall times.
pub fn median(samples: &[Sample]) -> f64 {
    median_of(samples.iter().map(|s| s.secs))
}

/// The median of the samples' CPU times.
pub fn median_cpu(samples: &[Sample]) -> f64 {
    median_of(samples.iter().map(|s| s.cpu_secs))
}

fn median_of(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The highest peak RSS among the samples, in MiB.
pub fn max_rss_mib(samples: &[Sample]) -> Option<f64> {
    samples
        .iter()
        .filter_map(|s| s.peak_rss_kib)
        .max()
        .map(|k| k as f64 / 1024.0)
}

/// Runs `f` `runs` times and returns every sample.
pub fn repeat(runs: usize, mut f: impl FnMut(usize) -> Result<Sample>) -> Result<Vec<Sample>> {
    (0..runs).map(&mut f).collect()
}

/// The `cargo-image` binary under test.
pub struct Ours {
    pub bin: PathBuf,
    /// Compression threads (`--jobs`).
    pub jobs: usize,
    /// Whether the binary accepts `build --store DIR`.
    pub has_store_flag: bool,
    pub version: String,
}

impl Ours {
    /// Checks the binary and GNU time, and reads the binary's version and build flags.
    pub fn new(bin: PathBuf, jobs: usize) -> Result<Ours> {
        if !Path::new(GNU_TIME).is_file() {
            bail!("{GNU_TIME} is missing: install the Debian package `time` (`just deps`)");
        }
        let help = Command::new(&bin)
            .args(["build", "--help"])
            .output()
            .with_context(|| format!("could not run {}", bin.display()))?;
        if !help.status.success() {
            bail!("{} build --help failed", bin.display());
        }
        let has_store_flag = String::from_utf8_lossy(&help.stdout).contains("--store");
        let version = Command::new(&bin).arg("--version").output()?;
        Ok(Ours {
            bin,
            jobs,
            has_store_flag,
            version: String::from_utf8_lossy(&version.stdout).trim().to_string(),
        })
    }

    /// Where builds of specs in `spec_dir` keep their store: `<spec_dir>/target` (the bench
    /// makes `spec_dir` a cargo workspace of its own) or the `--store` given to the binary.
    pub fn store_dirs(&self, spec_dir: &Path) -> Vec<PathBuf> {
        vec![spec_dir.join("target"), spec_dir.join(".bench/store")]
    }

    /// Removes every store and cache of builds in `spec_dir`, for a cold build.
    pub fn clear_store(&self, spec_dir: &Path) -> Result<()> {
        for dir in self.store_dirs(spec_dir) {
            remove_dir_if_exists(&dir)?;
        }
        Ok(())
    }

    /// Builds `spec` into `output` under GNU time.
    pub fn build(&self, spec: &Path, output: &Path) -> Result<Sample> {
        self.build_with_jobs(spec, output, self.jobs)
    }

    /// Runs `cargo-image COMMAND --quiet --spec SPEC ARGS...` (with the bench's store and
    /// compression threads), timed.
    pub fn run(&self, command: &str, spec: &Path, args: &[&str]) -> Result<Sample> {
        let spec_dir = spec.parent().context("spec has a parent directory")?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg(command)
            .arg("--quiet")
            .arg("--spec")
            .arg(spec)
            .arg("--jobs")
            .arg(self.jobs.to_string())
            .args(args)
            .current_dir(spec_dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("CARGO_IMAGE_CACHE_FROM")
            .env_remove("CARGO_IMAGE_CACHE_TO");
        if self.has_store_flag {
            cmd.arg("--store").arg(spec_dir.join(".bench/store"));
        }
        time(&mut cmd)
    }

    /// Builds `spec` into `output` under GNU time with `jobs` compression threads.
    pub fn build_with_jobs(&self, spec: &Path, output: &Path, jobs: usize) -> Result<Sample> {
        let spec_dir = spec.parent().context("spec has a parent directory")?;
        self.build_in(spec, output, jobs, &spec_dir.join(".bench/store"))
    }

    /// Builds `spec` into `output` under GNU time with the store `store` instead of the bench's
    /// (a cold build beside the bench's warm store; for a binary that takes `--store`).
    pub fn build_in_store(&self, spec: &Path, output: &Path, store: &Path) -> Result<Sample> {
        self.build_in(spec, output, self.jobs, store)
    }

    /// Builds `spec` once into each of `outputs`, every build its own process and all at once,
    /// on the one store `store` (a binary that takes `--store`): the wall time until the last
    /// ends, and the CPU time of them all.
    pub fn builds_at_once(&self, spec: &Path, outputs: &[PathBuf], store: &Path) -> Result<Sample> {
        let mut cmds = outputs
            .iter()
            .map(|output| self.build_command(None, spec, output, self.jobs, store))
            .collect::<Result<Vec<_>>>()?;
        time_all(&mut cmds)
    }

    fn build_in(&self, spec: &Path, output: &Path, jobs: usize, store: &Path) -> Result<Sample> {
        let spec_dir = spec.parent().context("spec has a parent directory")?;
        let rss_file = spec_dir.join(".bench/rss");
        let mut gnu_time = Command::new(GNU_TIME);
        gnu_time.arg("-f").arg("%M").arg("-o").arg(&rss_file);
        let mut sample =
            time(&mut self.build_command(Some(gnu_time), spec, output, jobs, store)?)?;
        let rss = fs::read_to_string(&rss_file)
            .with_context(|| format!("read {}", rss_file.display()))?;
        sample.peak_rss_kib = rss.lines().rev().find_map(|l| l.trim().parse().ok());
        Ok(sample)
    }

    /// `cargo-image build --quiet --spec SPEC --output OUTPUT --jobs JOBS --store STORE` (no
    /// `--store` for a binary without it), in the spec's directory, without the environment
    /// that would move its store or its epoch; run by `wrapper` (GNU time) when there is one.
    fn build_command(
        &self,
        wrapper: Option<Command>,
        spec: &Path,
        output: &Path,
        jobs: usize,
        store: &Path,
    ) -> Result<Command> {
        let spec_dir = spec.parent().context("spec has a parent directory")?;
        let mut cmd = match wrapper {
            Some(mut wrapper) => {
                wrapper.arg(&self.bin);
                wrapper
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("build")
            .arg("--quiet")
            .arg("--spec")
            .arg(spec)
            .arg("--output")
            .arg(output)
            .arg("--jobs")
            .arg(jobs.to_string())
            .current_dir(spec_dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("SOURCE_DATE_EPOCH");
        if self.has_store_flag {
            cmd.arg("--store").arg(store);
        }
        Ok(cmd)
    }
}

/// `rm -rf DIR`, quiet when it is not there.
pub fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Total size of the regular files under `dir`, in bytes (0 when it cannot be read).
pub fn dir_bytes(dir: &Path) -> u64 {
    crate::corpus::tree_size(dir).map_or(0, |(_, bytes)| bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU time of a shell's pipeline is counted: the shell waits for its commands, and
    /// their time is added to its own when the bench waits for it.
    #[test]
    fn a_samples_cpu_time_holds_the_pipeline_the_child_ran() {
        let busy = time(Command::new("sh").args(["-c", "head -c 100000000 /dev/zero | sha256sum"]))
            .unwrap();
        // SHA-256 of 100 MB takes more than 20 ms of CPU on any core (5 GB/s); the shell
        // itself a few.
        assert!(busy.cpu_secs > 0.02, "{busy:?}");
        let idle = time(Command::new("sh").args(["-c", "sleep 0.2"])).unwrap();
        assert!(idle.cpu_secs < busy.cpu_secs, "{idle:?} {busy:?}");
    }
}
