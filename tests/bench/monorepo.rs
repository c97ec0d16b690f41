//! The monorepo row: a cargo workspace of [`APPS`] images that share one base layer (the
//! corpus, declared once in `[workspace.metadata.image]`), each with a small layer of its own
//! (a ~200 KB binary-like file), built cold by one `cargo-image build` at the workspace root.
//!
//! It is divided by the build of the same unique content once: one image (`unique.toml`)
//! holding the base layer and the 20 small layers, built cold by one `cargo-image build
//! --spec`. Both write the same layer blobs; the workspace also writes 20 manifests, configs,
//! SBOMs and layouts, and runs `cargo metadata` once. Goal: at most 1.2 times as long.
//!
//! The workspace lives in `<corpus root>/monorepo`; its `base` directory is made of hard links
//! to the corpus files (the bench's own copy or generated tree, never a user's directory), so
//! nothing is copied. Packages are libraries (`lib.rs`), so no cargo build runs: each image is
//! the base layer and its package's file layer.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::measure::{self, median, remove_dir_if_exists, Sample};
use crate::report::{Goal, Outcome};
use crate::{log, Bench};

/// How many images the workspace builds.
pub const APPS: usize = 20;

/// The size of each image's own file.
const APP_BYTES: usize = 200 * 1024;

/// The workspace's directories.
pub struct Monorepo {
    /// The workspace root: `Cargo.toml`, `base/`, `app-NN/`, `unique.toml`.
    pub root: PathBuf,
    pub unique_spec: PathBuf,
}

/// Writes the workspace under `corpus_root/monorepo` (replacing an earlier one): `base` holds
/// hard links to the files of `corpus_root/corpus`.
pub fn write(corpus_root: &Path) -> Result<Monorepo> {
    let root = corpus_root.join("monorepo");
    remove_dir_if_exists(&root)?;
    link_tree(&corpus_root.join("corpus"), &root.join("base"))?;
    let members: Vec<String> = (1..=APPS).map(|i| format!("\"app-{i:02}\"")).collect();
    fs::write(
        root.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"2\"\nmembers = [{}]\n\n[workspace.package]\n\
             version = \"0.1.0\"\nedition = \"2021\"\n\n[workspace.metadata.image]\n\
             from = \"scratch\"\ncompression = \"gzip\"\n\n\
             [[workspace.metadata.image.layer]]\nname = \"base\"\n\
             [[workspace.metadata.image.layer.add]]\npath = \"base\"\ndest = \"/data/\"\n",
            members.join(", ")
        ),
    )?;
    let mut unique = String::from(
        "name = \"bench-unique\"\nfrom = \"scratch\"\ncompression = \"gzip\"\n\n\
         [[layer]]\nname = \"base\"\n[[layer.add]]\npath = \"base\"\ndest = \"/data/\"\n",
    );
    for i in 1..=APPS {
        let app = root.join(format!("app-{i:02}"));
        fs::create_dir_all(app.join("bin"))?;
        fs::write(
            app.join("Cargo.toml"),
            format!(
                "[package]\nname = \"app-{i:02}\"\nversion.workspace = true\n\
                 edition.workspace = true\n\n[lib]\npath = \"lib.rs\"\n\n\
                 [package.metadata.image]\n\n[[package.metadata.image.layer]]\nname = \"app\"\n\
                 [[package.metadata.image.layer.add]]\npath = \"bin\"\ndest = \"/app/\"\n"
            ),
        )?;
        fs::write(app.join("lib.rs"), "")?;
        fs::write(app.join("bin").join(format!("server-{i:02}")), app_bytes(i))?;
        unique.push_str(&format!(
            "\n[[layer]]\nname = \"app-{i:02}\"\n[[layer.add]]\npath = \"app-{i:02}/bin\"\n\
             dest = \"/app/\"\n"
        ));
    }
    let unique_spec = root.join("unique.toml");
    fs::write(&unique_spec, unique)?;
    Ok(Monorepo { root, unique_spec })
}

/// The file of app `i`: [`APP_BYTES`] that do not compress (like a binary), different per app.
fn app_bytes(i: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ i as u64;
    (0..APP_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Recreates the directories of `from` under `to`, each regular file a hard link to its
/// original (symlinks copied as links; other files left out).
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ft = entry.file_type()?;
        if ft.is_dir() {
            link_tree(&src, &dst)?;
        } else if ft.is_file() {
            fs::hard_link(&src, &dst)
                .with_context(|| format!("link {} to {}", dst.display(), src.display()))?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        }
    }
    Ok(())
}

/// Fails unless the workspace build wrote [`APPS`] image layouts into `images`.
fn check_images(images: &Path) -> Result<()> {
    let written = fs::read_dir(images)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("index.json").is_file())
                .count()
        })
        .unwrap_or(0);
    if written != APPS {
        anyhow::bail!(
            "the workspace build wrote {written} images into {}, not {APPS}",
            images.display()
        );
    }
    Ok(())
}

impl Bench {
    /// The monorepo row: all the images against the unique content once.
    pub(crate) fn monorepo_row(&mut self) {
        let outcome = match self.monorepo() {
            Ok((all, once)) => Outcome::Measured {
                ours: all,
                baseline: Some(once),
            },
            Err(why) => Outcome::Skipped(format!("{why:#}")),
        };
        self.row(
            &format!("monorepo: {APPS} images sharing a base layer, cold"),
            "one image of the unique content, cold",
            Goal::RatioAtMost(1.2),
            outcome,
        );
    }

    /// Median seconds of a cold build of the whole workspace and of the unique content once,
    /// interleaved.
    pub(crate) fn monorepo(&mut self) -> Result<(f64, f64)> {
        let repo = write(&self.corpus.root)?;
        let runs = self.args.runs;
        let store = repo.root.join(".bench-store");
        let unique_out = repo.root.join("unique-out");
        let (mut all, mut once) = (Vec::new(), Vec::new());
        for i in 0..runs {
            log(&format!("monorepo: {APPS} images, cold {}/{runs}", i + 1));
            self.clear_monorepo(&repo, &store)?;
            all.push(self.monorepo_build(&repo.root, &store, &[])?);
            check_images(&repo.root.join("target/image"))?;
            log(&format!(
                "monorepo: the unique content once, cold {}/{runs}",
                i + 1
            ));
            self.clear_monorepo(&repo, &store)?;
            remove_dir_if_exists(&unique_out)?;
            let spec = repo.unique_spec.to_string_lossy().into_owned();
            let out = unique_out.to_string_lossy().into_owned();
            once.push(self.monorepo_build(
                &repo.root,
                &store,
                &["--spec", &spec, "--output", &out],
            )?);
        }
        self.notes.push((
            "monorepo".to_string(),
            format!(
                "{APPS} images of one workspace (base layer = the corpus, each its own {} KB \
                 file layer) vs one image of the base and the {APPS} small layers; both cold",
                APP_BYTES / 1024
            ),
        ));
        remove_dir_if_exists(&repo.root)?;
        Ok((median(&all), median(&once)))
    }

    /// Removes the workspace's outputs and stores, for a cold build.
    fn clear_monorepo(&self, repo: &Monorepo, store: &Path) -> Result<()> {
        remove_dir_if_exists(&repo.root.join("target"))?;
        remove_dir_if_exists(store)
    }

    /// `cargo-image build --quiet --jobs N ARGS` at the workspace root (with the bench's store
    /// when the binary takes `--store`), timed.
    fn monorepo_build(&self, root: &Path, store: &Path, args: &[&str]) -> Result<Sample> {
        let mut cmd = Command::new(&self.ours.bin);
        cmd.arg("build")
            .arg("--quiet")
            .arg("--jobs")
            .arg(self.ours.jobs.to_string())
            .args(args)
            .current_dir(root)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("CARGO_IMAGE_CACHE_FROM")
            .env_remove("CARGO_IMAGE_CACHE_TO");
        if self.ours.has_store_flag {
            cmd.arg("--store").arg(store);
        }
        measure::time(&mut cmd)
    }
}
