//! `bench`: compares cargo-image with baselines on the same corpus in the same run, and prints
//! the ratios against the project's goals (see BENCHMARKS.md).
//!
//! Run it with `just bench [--quick | --corpus DIR] [--runs N] [--markdown FILE]`. It generates a
//! deterministic corpus once ([`corpus`]) or copies the user's tree, writes three specs beside it
//! (one gzip layer, one zstd layer, and the gzip layer under a small app layer), times the release
//! `cargo-image` binary ([`measure`]) against `tar | pigz`, `tar | zstd` and buildah
//! ([`baselines`]), its push against `skopeo copy` ([`push`]) and a 20-image workspace against its
//! unique content built once ([`monorepo`]), four cold builds at once on one store against one
//! alone, and prints a table ([`report`]). Every figure is the median of N runs (default 3) after one untimed read of the
//! corpus, so the page cache is warm for ours and the baselines alike.
//!
//! The spec directory is made a cargo workspace of its own (an empty `[workspace]` manifest), so
//! cargo-image keeps its store in `<spec dir>/target`, which a cold run deletes.

mod baselines;
mod corpus;
mod measure;
mod monorepo;
mod push;
mod report;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use cargo_oci_image_test_support::{build_cargo_image, repo_root};

use baselines::{Buildah, Compressor};
use corpus::{Corpus, Variant};
use measure::{max_rss_mib, median, median_cpu, remove_dir_if_exists, repeat, Ours, Sample};
use report::{Context, Goal, Outcome, Row};

const USAGE: &str = "\
usage: bench [--quick | --corpus DIR] [--runs N] [--jobs N] [--markdown FILE] [--cargo-image PATH]
             [--no-buildah] [--breakdown] [--corpus-only]

  --quick             a 60 MB / 5,000-file corpus instead of 700 MB / 45,000 files
  --corpus DIR        benchmark a copy of the tree DIR instead of the generated corpus (DIR
                      itself is only read: the bench rewrites files of its copy)
  --runs N            timed runs per measurement; the median is reported (default 3)
  --jobs N            compression threads for ours and the baselines (default 2)
  --markdown FILE     also write the results as markdown to FILE
  --cargo-image PATH  the binary to measure (default: build it with `cargo build --release`)
  --no-buildah        leave out the buildah comparisons
  --breakdown         also time the pieces of a cold gzip build (tar, pigz, zstd, sha256 alone;
                      ours with compression = \"none\" and with one thread)
  --corpus-only       generate the corpus (if needed), print where it is, and stop";

/// Command-line options.
struct Args {
    variant: Variant,
    /// `--corpus DIR`: a user's tree, copied, instead of the generated corpus.
    corpus_dir: Option<PathBuf>,
    runs: usize,
    jobs: usize,
    markdown: Option<PathBuf>,
    cargo_image: Option<PathBuf>,
    buildah: bool,
    corpus_only: bool,
    breakdown: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        variant: Variant::Full,
        corpus_dir: None,
        runs: 3,
        jobs: 2,
        markdown: None,
        cargo_image: None,
        buildah: true,
        corpus_only: false,
        breakdown: false,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        let mut value = |name: &str| {
            it.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => args.variant = Variant::Quick,
            "--corpus" => args.corpus_dir = Some(value("--corpus")?.into()),
            "--runs" => args.runs = value("--runs")?.to_string_lossy().parse()?,
            "--jobs" => args.jobs = value("--jobs")?.to_string_lossy().parse()?,
            "--markdown" => args.markdown = Some(value("--markdown")?.into()),
            "--cargo-image" => args.cargo_image = Some(value("--cargo-image")?.into()),
            "--no-buildah" => args.buildah = false,
            "--corpus-only" => args.corpus_only = true,
            "--breakdown" => args.breakdown = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if args.runs == 0 || args.jobs == 0 {
        bail!("--runs and --jobs must be at least 1");
    }
    if args.corpus_dir.is_some() && args.variant == Variant::Quick {
        bail!("--quick and --corpus DIR exclude each other\n{USAGE}");
    }
    Ok(args)
}

fn log(msg: &str) {
    eprintln!("bench: {msg}");
}

/// The repository's cargo target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Builds the release `cargo-image` and returns its path.
fn build_release() -> Result<PathBuf> {
    log("building cargo-image (release)");
    build_cargo_image(true).map_err(anyhow::Error::msg)
}

/// The specs the bench builds, written beside the corpus.
#[derive(Clone)]
struct Specs {
    gzip: PathBuf,
    zstd: PathBuf,
    two_layers: PathBuf,
    /// The corpus layer uncompressed: the cost of everything but the compressor.
    uncompressed: PathBuf,
}

fn write_specs(dir: &Path) -> Result<Specs> {
    // An empty workspace of its own: cargo-image's store goes to <dir>/target, not to the
    // repository's target directory.
    fs::write(dir.join("Cargo.toml"), "[workspace]\n")?;
    let corpus_layer =
        "[[layer]]\nname = \"corpus\"\n\n[[layer.add]]\npath = \"corpus\"\ndest = \"/data/\"\n";
    let one = |name: &str, compression: &str| {
        format!("name = \"bench-{name}\"\ncompression = \"{compression}\"\n\n{corpus_layer}")
    };
    let specs = Specs {
        gzip: dir.join("gzip.toml"),
        zstd: dir.join("zstd.toml"),
        two_layers: dir.join("two-layers.toml"),
        uncompressed: dir.join("none.toml"),
    };
    fs::write(&specs.uncompressed, one("none", "none"))?;
    fs::write(&specs.gzip, one("gzip", "gzip"))?;
    fs::write(&specs.zstd, one("zstd", "zstd"))?;
    fs::write(
        &specs.two_layers,
        format!(
            "{}\n[[layer]]\nname = \"app\"\n\n[[layer.add]]\npath = \"app\"\ndest = \"/app/\"\n",
            one("two-layers", "gzip")
        ),
    )?;
    Ok(specs)
}

/// How many builds [`Bench::at_once_row`] starts at once.
const AT_ONCE: usize = 4;

/// Everything one bench run needs.
struct Bench {
    args: Args,
    ours: Ours,
    corpus: Corpus,
    specs: Specs,
    /// `<corpus root>/.bench`: outputs, baselines' files, buildah's storage.
    scratch: PathBuf,
    rows: Vec<Row>,
    notes: Vec<(String, String)>,
}

impl Bench {
    fn out(&self, name: &str) -> PathBuf {
        self.scratch.join("out").join(name)
    }

    fn row(&mut self, name: &str, baseline_name: &str, goal: Goal, outcome: Outcome) {
        self.rows.push(Row {
            name: name.into(),
            baseline_name: baseline_name.into(),
            goal,
            outcome,
        });
    }

    /// Cold builds of `spec` (empty store, fresh output), interleaved with the tar baseline.
    fn cold_vs_tar(
        &mut self,
        spec: &Path,
        out_name: &str,
        compressor: Compressor,
    ) -> Result<(Vec<Sample>, Vec<Sample>)> {
        let out = self.out(out_name);
        let ext = match compressor {
            Compressor::Pigz => "tar.gz",
            Compressor::Zstd => "tar.zst",
        };
        let tar_out = self.scratch.join(format!("baseline.{ext}"));
        let corpus_dir = self.corpus.root.join("corpus");
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for i in 0..self.args.runs {
            log(&format!("cold {out_name} {}/{}", i + 1, self.args.runs));
            self.ours.clear_store(&self.corpus.root)?;
            remove_dir_if_exists(&out)?;
            ours.push(self.ours.build(spec, &out)?);
            let _ = fs::remove_file(&tar_out);
            base.push(baselines::tar_pipe(
                &corpus_dir,
                compressor,
                self.args.jobs,
                &tar_out,
            )?);
        }
        self.notes.push((
            format!("output size, {out_name}"),
            format!(
                "ours {:.1} MB (whole layout), tar | {} {:.1} MB",
                measure::dir_bytes(&out) as f64 / 1e6,
                match compressor {
                    Compressor::Pigz => "pigz",
                    Compressor::Zstd => "zstd",
                },
                fs::metadata(&tar_out).map_or(0, |m| m.len()) as f64 / 1e6
            ),
        ));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.notes.push((
            format!("CPU time, {out_name}"),
            report::cpu_bound(median_cpu(&ours), median_cpu(&base), median(&base), cores),
        ));
        Ok((ours, base))
    }

    /// Builds of `spec` into the same output after `change(round)`, after one untimed build.
    fn rebuilds(
        &mut self,
        what: &str,
        spec: &Path,
        out_name: &str,
        change: impl FnMut(usize) -> Result<()>,
    ) -> Result<Vec<Sample>> {
        self.rebuilds_then(what, spec, out_name, change, |_| Ok(()))
    }

    /// [`rebuilds`](Self::rebuilds), with `then` run (untimed) after each timed build.
    fn rebuilds_then(
        &mut self,
        what: &str,
        spec: &Path,
        out_name: &str,
        mut change: impl FnMut(usize) -> Result<()>,
        mut then: impl FnMut(&Ours) -> Result<()>,
    ) -> Result<Vec<Sample>> {
        let out = self.out(out_name);
        log(&format!("{what}: priming build"));
        self.ours.build(spec, &out)?;
        repeat(self.args.runs, |i| {
            log(&format!("{what} {}/{}", i + 1, self.args.runs));
            change(i + 1)?;
            let sample = self.ours.build(spec, &out)?;
            then(&self.ours)?;
            Ok(sample)
        })
    }

    /// [`rebuilds`](Self::rebuilds) of `spec`, each followed by a cold build of it into a store
    /// and output of their own (emptied first), so that the rebuilds are compared with cold
    /// builds of the same minutes: a rebuild that recompresses a whole layer is a cold build
    /// less the hashing, and the machine's speed drifts more than that between the bench's
    /// first rows and this one. The cold builds are `None` when the binary takes no `--store`.
    fn rebuilds_beside_cold(
        &mut self,
        what: &str,
        spec: &Path,
        out_name: &str,
        change: impl FnMut(usize) -> Result<()>,
    ) -> Result<(Vec<Sample>, Option<Vec<Sample>>)> {
        if !self.ours.has_store_flag {
            return Ok((self.rebuilds(what, spec, out_name, change)?, None));
        }
        let (cold_store, cold_out) = (self.scratch.join("beside-store"), self.out("beside-cold"));
        let mut colds = Vec::new();
        let rebuilds = self.rebuilds_then(what, spec, out_name, change, |ours| {
            remove_dir_if_exists(&cold_store)?;
            remove_dir_if_exists(&cold_out)?;
            colds.push(ours.build_in_store(spec, &cold_out, &cold_store)?);
            Ok(())
        })?;
        remove_dir_if_exists(&cold_store)?;
        remove_dir_if_exists(&cold_out)?;
        Ok((rebuilds, Some(colds)))
    }

    fn run(&mut self) -> Result<()> {
        let runs = self.args.runs;
        let specs = self.specs.clone();

        // Cold builds against tar | compressor.
        let (cold_gzip, pigz) = self.cold_vs_tar(&specs.gzip, "gzip-cold", Compressor::Pigz)?;
        let cold = median(&cold_gzip);
        let jobs = self.args.jobs;
        self.row(
            "cold build, gzip",
            &format!("tar | pigz -6 -p {jobs}"),
            Goal::RatioAtMost(0.55),
            Outcome::Measured {
                ours: cold,
                baseline: Some(median(&pigz)),
            },
        );
        let (cold_zstd, zstd) = self.cold_vs_tar(&specs.zstd, "zstd-cold", Compressor::Zstd)?;
        self.row(
            "cold build, zstd",
            &format!("tar | zstd -3 -T{jobs}"),
            Goal::RatioAtMost(1.0),
            Outcome::Measured {
                ours: median(&cold_zstd),
                baseline: Some(median(&zstd)),
            },
        );
        let rss = max_rss_mib(&cold_gzip).context("GNU time reported no peak RSS")?;
        self.row(
            "peak memory, cold gzip build",
            "-",
            Goal::MemoryBelowMib(256.0),
            Outcome::Measured {
                ours: rss,
                baseline: None,
            },
        );

        // Warm rebuilds: nothing changed, one file changed in the big layer, one in the top
        // layer. The store of the gzip spec is kept from here on.
        let warm = self.rebuilds(
            "warm, nothing changed",
            &specs.gzip,
            "gzip-warm",
            |_| Ok(()),
        )?;
        let warm = median(&warm);
        self.row(
            "warm build, nothing changed",
            "our cold gzip build",
            Goal::RatioAtMost(0.02),
            Outcome::Measured {
                ours: warm,
                baseline: Some(cold),
            },
        );
        let root = self.corpus.root.clone();
        let big = self.rebuilds_beside_cold(
            "one file changed, big layer",
            &specs.gzip,
            "gzip-warm",
            |r| corpus::mutate(&root, corpus::MUTABLE_CORPUS_FILE, r),
        );
        corpus::restore_mutable(&root)?;
        let (big, colds_beside) = big?;
        let (baseline_name, beside) = match &colds_beside {
            Some(colds) => {
                let beside = median(colds);
                self.notes.push((
                    "one file changed in the big layer".into(),
                    format!(
                        "against cold gzip builds run between its rebuilds ({beside:.2} s; the \
                         cold row's {cold:.2} s)"
                    ),
                ));
                ("our cold gzip build, in between", beside)
            }
            None => ("our cold gzip build", cold),
        };
        self.row(
            "one file changed in the big layer",
            baseline_name,
            Goal::RatioAtMost(1.05),
            Outcome::Measured {
                ours: median(&big),
                baseline: Some(beside),
            },
        );
        let top = self.rebuilds(
            "one file changed, top layer",
            &specs.two_layers,
            "two-layers",
            |r| corpus::mutate(&root, corpus::MUTABLE_APP_FILE, r),
        );
        corpus::restore_mutable(&root)?;
        self.row(
            "one file changed in the small top layer",
            "our cold gzip build",
            Goal::RatioAtMost(0.03),
            Outcome::Measured {
                ours: median(&top?),
                baseline: Some(cold),
            },
        );

        // Machine B with an empty store and the remote cache machine A filled.
        match self.remote_cache(&specs.gzip) {
            Ok((download, mount, mount_hashing)) => {
                self.row(
                    "machine B: build from the remote cache (download included)",
                    "our cold gzip build",
                    Goal::RatioAtMost(1.0),
                    Outcome::Measured {
                        ours: download,
                        baseline: Some(cold),
                    },
                );
                self.row(
                    "machine B: push only, layers mounted from the remote cache",
                    "our cold gzip build",
                    Goal::RatioAtMost(0.05),
                    Outcome::Measured {
                        ours: mount,
                        baseline: Some(cold),
                    },
                );
                self.row(
                    "machine B: push only, sources not in git (every input hashed)",
                    "our cold gzip build",
                    Goal::RatioAtMost(0.2),
                    Outcome::Measured {
                        ours: mount_hashing,
                        baseline: Some(cold),
                    },
                );
            }
            Err(why) => {
                for name in [
                    "machine B: build from the remote cache (download included)",
                    "machine B: push only, layers mounted from the remote cache",
                    "machine B: push only, sources not in git (every input hashed)",
                ] {
                    let why = Outcome::Skipped(format!("{why:#}"));
                    self.row(name, "our cold gzip build", Goal::RatioAtMost(1.0), why);
                }
            }
        }

        // Push against skopeo copy; a monorepo of 20 images against its unique content once.
        self.push_row(&specs.gzip, "gzip-warm");
        self.monorepo_row();
        self.at_once_row(&specs.gzip)?;

        // buildah: cold bud + push, then cached bud.
        let buildah_rows = [
            (
                "warm build vs buildah cached rebuild",
                "buildah bud (cache hit)",
                0.05,
                warm,
            ),
            (
                "cold build vs buildah",
                "buildah bud + push, cold",
                0.3,
                cold,
            ),
        ];
        let buildah = if !self.args.buildah {
            Err("left out (--no-buildah)".to_string())
        } else if !Buildah::installed() {
            Err("buildah is not installed (`just deps`)".to_string())
        } else {
            self.buildah(runs)
                .map_err(|e| format!("buildah: failed ({e:#})"))
        };
        for (i, (name, base_name, goal, ours)) in buildah_rows.into_iter().enumerate() {
            let outcome = match &buildah {
                Ok((cold_b, cached_b)) => Outcome::Measured {
                    ours,
                    baseline: Some(if i == 0 { *cached_b } else { *cold_b }),
                },
                Err(why) => Outcome::Skipped(why.clone()),
            };
            self.row(name, base_name, Goal::RatioAtMost(goal), outcome);
        }
        Ok(())
    }

    /// Cold builds of `spec` in [`AT_ONCE`] processes at once on one empty store (as monorepo
    /// tooling that starts a build per image does), against a cold build alone in the same
    /// minutes: the processes that wait for the one writing the layer take it from the store.
    fn at_once_row(&mut self, spec: &Path) -> Result<()> {
        let name = format!("{AT_ONCE} processes at once on one store, cold");
        let baseline_name = "one cold gzip build, in between";
        if !self.ours.has_store_flag {
            let why = Outcome::Skipped("the binary takes no --store".into());
            self.row(&name, baseline_name, Goal::RatioAtMost(1.2), why);
            return Ok(());
        }
        let store = self.scratch.join("at-once-store");
        let outputs: Vec<PathBuf> = (0..AT_ONCE)
            .map(|i| self.out(&format!("at-once-{i}")))
            .collect();
        let clear = || -> Result<()> {
            remove_dir_if_exists(&store)?;
            outputs.iter().try_for_each(|o| remove_dir_if_exists(o))
        };
        let (mut all, mut alone) = (Vec::new(), Vec::new());
        for i in 0..self.args.runs {
            log(&format!("{name} {}/{}", i + 1, self.args.runs));
            clear()?;
            all.push(self.ours.builds_at_once(spec, &outputs, &store)?);
            clear()?;
            alone.push(self.ours.build_in_store(spec, &outputs[0], &store)?);
        }
        clear()?;
        self.notes.push((
            name.clone(),
            format!(
                "CPU time {:.2} s for the {AT_ONCE}, {:.2} s for one alone",
                median_cpu(&all),
                median_cpu(&alone)
            ),
        ));
        self.row(
            &name,
            baseline_name,
            Goal::RatioAtMost(1.2),
            Outcome::Measured {
                ours: median(&all),
                baseline: Some(median(&alone)),
            },
        );
        Ok(())
    }

    /// The pieces of a cold gzip build, each timed alone (median of the runs).
    fn breakdown(&mut self) -> Result<Vec<(String, f64)>> {
        let runs = self.args.runs;
        let jobs = self.args.jobs;
        log("breakdown: tar, compressors and sha256 alone");
        let mut rows =
            baselines::breakdown(&self.corpus.root.join("corpus"), jobs, runs, &self.scratch)?;
        let specs = self.specs.clone();
        let cases = [
            (
                format!("ours, cold, gzip, --jobs {jobs}"),
                &specs.gzip,
                jobs,
            ),
            ("ours, cold, gzip, --jobs 1".to_string(), &specs.gzip, 1),
            (
                "ours, cold, compression = \"none\"".to_string(),
                &specs.uncompressed,
                jobs,
            ),
        ];
        for (label, spec, j) in cases {
            log(&format!("breakdown: {label}"));
            let out = self.out("breakdown");
            let samples = repeat(runs, |_| {
                self.ours.clear_store(&self.corpus.root)?;
                remove_dir_if_exists(&out)?;
                self.ours.build_with_jobs(spec, &out, j)
            })?;
            rows.push((label, median(&samples)));
        }
        Ok(rows)
    }

    /// The remote layer cache on a loopback `docker-registry`: machine A fills it
    /// (`--cache-to`, untimed); then, from an empty store each time, the median seconds of a
    /// build from it into a fresh output (the layer downloaded), of a push-only build to a
    /// new repository of the registry (`--no-output`: the layer mounted, never downloaded),
    /// and of the same push-only build with the corpus outside git.
    ///
    /// The corpus directory is a git checkout here, as a CI machine's sources are: its files
    /// are added to a git index of its own (`git add` re-reads only what changed since the
    /// last run), so machine B keys the layer from git's index and the cache's alias record
    /// without reading the corpus. The third figure moves `.git` aside: B then reads and
    /// hashes every input, as it must for sources that are not a git checkout.
    fn remote_cache(&mut self, spec: &Path) -> Result<(f64, f64, f64)> {
        let installed = std::process::Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            bail!("docker-registry is not installed (`just deps`)");
        }
        let registry = cargo_oci_image_test_support::registry::Registry::start();
        let cache = format!("{}/bench/cache", registry.host());
        let runs = self.args.runs;
        log("remote cache: the corpus in a git index");
        git_add_corpus(&self.corpus.root)?;
        log("remote cache: machine A fills it");
        self.ours.clear_store(&self.corpus.root)?;
        let out = self.out("remote");
        remove_dir_if_exists(&out)?;
        let out_arg = out.to_string_lossy().into_owned();
        self.ours
            .run("build", spec, &["--output", &out_arg, "--cache-to", &cache])?;
        let download = repeat(runs, |i| {
            log(&format!("remote cache: build from it {}/{runs}", i + 1));
            self.ours.clear_store(&self.corpus.root)?;
            remove_dir_if_exists(&out)?;
            self.ours.run(
                "build",
                spec,
                &["--output", &out_arg, "--cache-from", &cache],
            )
        })?;
        let mount = repeat(runs, |i| {
            log(&format!("remote cache: push only {}/{runs}", i + 1));
            self.ours.clear_store(&self.corpus.root)?;
            let target = format!("{}/bench/app-{i}", registry.host());
            self.ours.run(
                "push",
                spec,
                &["--no-output", "--push-to", &target, "--cache-from", &cache],
            )
        })?;
        let git = self.corpus.root.join(".git");
        let aside = self.corpus.root.join(".git-aside");
        fs::rename(&git, &aside)?;
        let hashing = repeat(runs, |i| {
            log(&format!("remote cache: push only, no git {}/{runs}", i + 1));
            self.ours.clear_store(&self.corpus.root)?;
            let target = format!("{}/bench/nogit-{i}", registry.host());
            self.ours.run(
                "push",
                spec,
                &["--no-output", "--push-to", &target, "--cache-from", &cache],
            )
        });
        fs::rename(&aside, &git)?;
        let hashing = hashing?;
        let downloads = registry
            .requests()
            .iter()
            .filter(|r| r.is_blob_download())
            .count();
        self.notes.push((
            "remote cache".to_string(),
            format!(
                "loopback docker-registry; {downloads} blob downloads in all ({runs} builds from \
                 the cache, {} push-only builds)",
                2 * runs
            ),
        ));
        Ok((median(&download), median(&mount), median(&hashing)))
    }

    /// Median seconds of a cold buildah bud + push, and of a cached bud.
    fn buildah(&mut self, runs: usize) -> Result<(f64, f64)> {
        let b = Buildah::new(&self.scratch.join("buildah"), &self.corpus.root)?;
        let out = self.out("buildah-oci");
        let result = (|| {
            let cold = repeat(runs, |i| {
                log(&format!("buildah cold bud + push {}/{runs}", i + 1));
                b.reset()?;
                let bud = b.bud()?;
                let push = b.push(&out)?;
                Ok(Sample {
                    secs: bud.secs + push.secs,
                    peak_rss_kib: None,
                    cpu_secs: bud.cpu_secs + push.cpu_secs,
                })
            })?;
            let cached = repeat(runs, |i| {
                log(&format!("buildah cached bud {}/{runs}", i + 1));
                b.bud()
            })?;
            Ok((median(&cold), median(&cached)))
        })();
        b.clean()?;
        result
    }
}

/// The corpus of this run: a copy of `--corpus DIR`, or the generated one.
fn the_corpus(args: &Args) -> Result<Corpus> {
    let cache = target_dir().join("bench-corpus");
    match &args.corpus_dir {
        Some(dir) => corpus::copy_user(dir, &cache, &mut |m| log(m)),
        None => corpus::ensure(&cache, args.variant, &mut |m| log(m)),
    }
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args = parse_args()?;
    if args.corpus_only {
        let corpus = the_corpus(&args)?;
        println!("{}", corpus.root.display());
        return Ok(());
    }
    let bin = match &args.cargo_image {
        Some(p) => fs::canonicalize(p).with_context(|| format!("--cargo-image {}", p.display()))?,
        None => build_release()?,
    };
    let ours = Ours::new(bin, args.jobs)?;
    let corpus = the_corpus(&args)?;
    log(&format!(
        "corpus: {} files, {:.0} MB in {}",
        corpus.files,
        corpus.bytes as f64 / 1e6,
        corpus.root.display()
    ));
    let specs = write_specs(&corpus.root)?;
    let scratch = corpus.root.join(".bench");
    remove_dir_if_exists(&scratch)?;
    fs::create_dir_all(scratch.join("out"))?;
    log("warming the page cache");
    corpus::warm_page_cache(&corpus.root.join("corpus"))?;
    corpus::warm_page_cache(&corpus.root.join("app"))?;

    let commit = report::command_line(
        "git",
        &[
            "-C",
            &repo_root().to_string_lossy(),
            "describe",
            "--always",
            "--dirty",
        ],
    );
    let mut extra = vec![
        (
            "cargo-image".to_string(),
            format!("{} (commit {commit})", ours.version),
        ),
        (
            "corpus".to_string(),
            match &args.corpus_dir {
                Some(dir) => format!(
                    "a copy of {} ({} files, {:.0} MB)",
                    dir.display(),
                    corpus.files,
                    corpus.bytes as f64 / 1e6,
                ),
                None => format!(
                    "{} ({} files, {:.0} MB), generator v{}",
                    args.variant.name(),
                    corpus.files,
                    corpus.bytes as f64 / 1e6,
                    corpus::GENERATOR_VERSION
                ),
            },
        ),
        (
            "runs".to_string(),
            format!("median of {}, compression threads {}", args.runs, args.jobs),
        ),
    ];
    let start_ctx = Context::gather(Vec::new());
    let (started, stall_start) = (std::time::Instant::now(), report::cpu_stall_us());
    let mut bench = Bench {
        args,
        ours,
        corpus,
        specs,
        scratch,
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let mut result = bench.run();
    let mut breakdown = Vec::new();
    if result.is_ok() && bench.args.breakdown {
        match bench.breakdown() {
            Ok(rows) => breakdown = rows,
            Err(e) => result = Err(e),
        }
    }
    corpus::restore_mutable(&bench.corpus.root)?;
    result?;
    remove_dir_if_exists(&bench.scratch)?;
    bench.ours.clear_store(&bench.corpus.root)?;
    if bench.args.corpus_dir.is_some() {
        // The copy of the user's tree is made afresh by every run.
        remove_dir_if_exists(&bench.corpus.root)?;
    }

    extra.append(&mut bench.notes);
    let load_end = fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    extra.push(("load average at end (1/5/15 min)".into(), load_end));
    extra.push((
        "CPU pressure".into(),
        report::cpu_pressure(
            stall_start,
            report::cpu_stall_us(),
            started.elapsed().as_secs_f64(),
        ),
    ));
    let mut ctx = start_ctx;
    ctx.lines.extend(extra);
    println!("\n{}", report::text(&bench.rows, &ctx));
    if !breakdown.is_empty() {
        println!("{}", report::breakdown_text(&breakdown));
    }
    if let Some(path) = &bench.args.markdown {
        report::write_markdown(path, &bench.rows, &breakdown, &ctx)
            .with_context(|| format!("write {}", path.display()))?;
        log(&format!("wrote {}", path.display()));
    }
    Ok(())
}

/// Makes `root` a git repository whose index holds the corpus (its blobs written uncompressed:
/// only the index matters here), and leaves that index newer than every file in it.
fn git_add_corpus(root: &Path) -> Result<()> {
    let git = |args: &[&str]| -> Result<()> {
        let status = std::process::Command::new("git")
            .args(["-c", "core.compression=0", "-c", "core.looseCompression=0"])
            .args(args)
            .current_dir(root)
            .stdout(std::process::Stdio::null())
            .status()
            .context("git runs (`just deps` installs it)")?;
        if !status.success() {
            bail!("git {args:?} failed in {}", root.display());
        }
        Ok(())
    };
    if !root.join(".git").is_dir() {
        git(&["init", "-q"])?;
    }
    git(&["add", "corpus"])?;
    // Entries written in the index's own timestamp tick are racy (read again); `git status`
    // writes the index anew once they are not.
    std::thread::sleep(std::time::Duration::from_millis(50));
    git(&["status", "--porcelain", "corpus"])
}
