//! `cargo image cache`: look at, prune and verify the store (the layer cache).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use cargo_oci_image::build;
use cargo_oci_image::store::{PruneOptions, Store};
use clap::{Args, Subcommand};

use super::build::{failure, find_spec};
use super::output::{human_size, status};
use super::Failure;

/// Show, prune or verify the store that caches layers between builds.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cargo image cache info\n  \
    cargo image cache prune --older-than 7d          drop entries unused for a week\n  \
    cargo image cache prune --max-size 2GiB          evict least recently used entries\n  \
    cargo image cache verify                         re-hash every blob, drop corrupt ones")]
pub struct CacheArgs {
    /// The store directory [default: the store of ./image.toml (or --spec): <target-dir>/image/.store].
    #[arg(long, value_name = "DIR", env = "CARGO_IMAGE_STORE", global = true)]
    store: Option<PathBuf>,
    /// The spec whose default store to use.
    #[arg(long, value_name = "PATH", global = true)]
    spec: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Size and number of entries.
    Info,
    /// Remove entries by age and/or size; what the spec's current build needs is kept.
    Prune {
        /// Remove entries not used for this long (`30m`, `12h`, `7d`, `2w`).
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<Duration>,
        /// Evict least recently used entries until the blobs take at most this much
        /// (`500MB`, `2GiB`, or bytes).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
        /// Do not keep the entries of the spec's current plan.
        #[arg(long)]
        all: bool,
    },
    /// Re-hash every blob; report and remove corrupt ones (and the entries that use them).
    Verify,
}

fn parse_age(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not an age like 30m, 12h, 7d or 2w"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{s}`; use s, m, h, d or w"
            ))
        }
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is longer than any store has existed; give an age like 30d"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 500MB or 2GiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        other => return Err(format!("unknown unit `{other}` in `{s}`")),
    };
    Ok((n * mult) as u64)
}

fn store_root(args: &CacheArgs) -> Result<PathBuf, Failure> {
    if let Some(dir) = &args.store {
        return Ok(dir.clone());
    }
    let spec = find_spec(args.spec.as_deref())?;
    build::default_store(&spec).map_err(failure)
}

pub fn run(args: CacheArgs) -> Result<(), Failure> {
    let root = store_root(&args)?;
    if !root.join("version").is_file() {
        return Err(Failure::build(anyhow::anyhow!(
            "no store at {}; it is made by the first `cargo image build` (or pass --store DIR)",
            root.display()
        )));
    }
    let store = Store::open(&root).map_err(Failure::build)?;
    let exclusive = |store: &Store| -> Result<_, Failure> {
        match store.try_lock_exclusive().map_err(Failure::build)? {
            Some(lock) => Ok(lock),
            None => {
                status(
                    "Blocking",
                    "waiting for another cargo image process to finish",
                );
                store.lock_exclusive().map_err(Failure::build)
            }
        }
    };
    match &args.command {
        CacheCommand::Info => {
            let info = store.info().map_err(Failure::build)?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&info).map_err(Failure::build)?
                );
            } else {
                println!("Store        {}", root.display());
                println!(
                    "Blobs        {} ({})",
                    info.blobs,
                    human_size(info.blob_bytes)
                );
                println!("Keys         {}", info.keys);
                println!("Stat index   {} files", info.stat_entries);
            }
        }
        CacheCommand::Prune {
            older_than,
            max_size,
            all,
        } => {
            if older_than.is_none() && max_size.is_none() {
                return Err(Failure::usage(anyhow::anyhow!(
                    "say what to prune: --older-than AGE and/or --max-size SIZE"
                )));
            }
            let mut keep_keys = HashSet::new();
            if !all {
                if let Ok(spec) = find_spec(args.spec.as_deref()) {
                    let opts = build::BuildOptions {
                        store: Some(root.clone()),
                        ..Default::default()
                    };
                    if let Ok(graph) = build::plan(&spec, &opts, &|_| {}) {
                        keep_keys.extend(graph.nodes.iter().filter_map(|n| Some(n.key?.hex())));
                    }
                }
            }
            let lock = exclusive(&store)?;
            let report = store
                .prune(
                    &lock,
                    &PruneOptions {
                        older_than: *older_than,
                        max_size: *max_size,
                        keep_keys,
                        keep_blobs: HashSet::new(),
                    },
                )
                .map_err(Failure::build)?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(Failure::build)?
                );
            } else {
                status(
                    "Pruned",
                    &format!(
                        "{} entries, {} blobs, {} freed",
                        report.removed_keys,
                        report.removed_blobs,
                        human_size(report.freed_bytes)
                    ),
                );
            }
        }
        CacheCommand::Verify => {
            let lock = exclusive(&store)?;
            let report = store.verify(&lock).map_err(Failure::build)?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(Failure::build)?
                );
            } else {
                for digest in &report.corrupt {
                    status("Corrupt", &format!("{digest} (removed)"));
                }
                status(
                    "Verified",
                    &format!("{} blobs, {} corrupt", report.checked, report.corrupt.len()),
                );
            }
            if !report.corrupt.is_empty() {
                return Err(Failure::build(anyhow::anyhow!(
                    "{} corrupt blob(s) found and removed; the next build rebuilds what they held",
                    report.corrupt.len()
                )));
            }
        }
    }
    Ok(())
}
