//! The crates compiled into one binary: `cargo metadata` resolved for the binary's target
//! triple and features (`--filter-platform`), walked from the binary's package over normal
//! dependency edges (build scripts and dev-dependencies are not in the binary), with the
//! checksums `Cargo.lock` holds. The software bill of materials is made of this
//! (`crate::sbom`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::{CargoSource, Error};

/// Where a crate came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrateSource {
    /// A registry: its index URL (`https://github.com/rust-lang/crates.io-index` for crates.io,
    /// `sparse+https://...` for a sparse one).
    Registry(String),
    /// A git repository at a commit.
    Git { url: String, commit: String },
    /// A directory, relative to the workspace root (`/`-separated; `..` when outside it).
    Path(String),
}

/// One crate of a binary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Crate {
    pub name: String,
    pub version: String,
    pub source: CrateSource,
    /// The `license` expression of its manifest.
    pub license: Option<String>,
    /// The sha256 `Cargo.lock` records for a registry crate (hex).
    pub checksum: Option<String>,
    /// The indices (into [`Resolved::crates`]) of the crates it depends on, sorted.
    pub dependencies: Vec<usize>,
}

/// The crates of one binary, sorted by name, version and source; the binary's package is
/// [`Resolved::root`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    pub crates: Vec<Crate>,
    pub root: usize,
    /// The files whose content decides this resolution, for a caller that keeps it: the
    /// workspace's `Cargo.lock` and root `Cargo.toml`, and the `Cargo.toml` of every package
    /// that is not from a registry or git (their versions and sources are in the lock file,
    /// and a registry's or git commit's manifests never change), sorted. Absolute paths.
    #[serde(default)]
    pub inputs: Vec<PathBuf>,
}

#[derive(serde::Deserialize)]
struct FullMetadata {
    packages: Vec<MetaPackage>,
    workspace_members: Vec<String>,
    workspace_root: PathBuf,
    resolve: Option<MetaResolve>,
}

#[derive(serde::Deserialize)]
struct MetaPackage {
    id: String,
    name: String,
    version: String,
    source: Option<String>,
    license: Option<String>,
    manifest_path: PathBuf,
}

#[derive(serde::Deserialize)]
struct MetaResolve {
    nodes: Vec<MetaNode>,
}

#[derive(serde::Deserialize)]
struct MetaNode {
    id: String,
    #[serde(default)]
    deps: Vec<MetaDep>,
}

#[derive(serde::Deserialize)]
struct MetaDep {
    pkg: String,
    #[serde(default)]
    dep_kinds: Vec<DepKind>,
}

#[derive(serde::Deserialize)]
struct DepKind {
    kind: Option<String>,
}

#[derive(serde::Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(serde::Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// Resolves the crates compiled into `src`'s binary, for the package of `dir` (the context)
/// or the one `src` names.
pub fn crates(src: &CargoSource, dir: &Path) -> Result<Resolved, Error> {
    // A zigbuild target's glibc pin (`.2.31`) is not part of the rust triple.
    let mut args = vec!["--filter-platform", super::rust_triple(&src.target)];
    if src.all_features {
        args.push("--all-features");
    }
    if src.no_default_features {
        args.push("--no-default-features");
    }
    // Features of a named package are given as `package/feature`, so they select that
    // package's features whichever directory cargo runs in.
    let features: Vec<String> = src
        .features
        .iter()
        .map(|f| match &src.package {
            Some(p) if !f.contains('/') => format!("{p}/{f}"),
            _ => f.clone(),
        })
        .collect();
    let features = features.join(",");
    if !features.is_empty() {
        args.extend(["--features", &features]);
    }
    let meta: FullMetadata = super::run_metadata(dir, &args)?;
    let lock = read_lock(&meta.workspace_root)?;
    let mut resolved = resolve(&meta, &lock, src.package.as_deref(), dir)?;
    resolved.inputs = inputs(&meta);
    Ok(resolved)
}

/// The files whose content decides what `cargo metadata` resolved ([`Resolved::inputs`]).
fn inputs(meta: &FullMetadata) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = meta
        .packages
        .iter()
        .filter(|p| p.source.is_none())
        .map(|p| p.manifest_path.clone())
        .collect();
    files.push(meta.workspace_root.join("Cargo.lock"));
    files.push(meta.workspace_root.join("Cargo.toml"));
    files.sort();
    files.dedup();
    files
}

/// Cargo.lock's checksums by (name, version, source).
fn read_lock(root: &Path) -> Result<HashMap<(String, String, String), String>, Error> {
    let path = root.join("Cargo.lock");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(source) => return Err(Error::ReadLock { path, source }),
    };
    let lock: Lock = toml::from_str(&text).map_err(|e| Error::ParseLock {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(lock
        .package
        .into_iter()
        .filter_map(|p| Some(((p.name, p.version, p.source?), p.checksum?)))
        .collect())
}

fn resolve(
    meta: &FullMetadata,
    lock: &HashMap<(String, String, String), String>,
    package: Option<&str>,
    dir: &Path,
) -> Result<Resolved, Error> {
    let packages: HashMap<&str, &MetaPackage> =
        meta.packages.iter().map(|p| (p.id.as_str(), p)).collect();
    let members: Vec<&MetaPackage> = meta
        .workspace_members
        .iter()
        .filter_map(|id| packages.get(id.as_str()).copied())
        .collect();
    let here = dir.join("Cargo.toml");
    let canonical = here.canonicalize().ok();
    let root = members
        .iter()
        .find(|p| match package {
            Some(name) => p.name == name,
            None => p.manifest_path == here || Some(&p.manifest_path) == canonical.as_ref(),
        })
        .ok_or_else(|| Error::NoPackage {
            dir: dir.to_path_buf(),
            package: package.map(str::to_string),
        })?;
    let nodes: HashMap<&str, &MetaNode> = meta
        .resolve
        .iter()
        .flat_map(|r| &r.nodes)
        .map(|n| (n.id.as_str(), n))
        .collect();
    let normal = |id: &str| -> Vec<&str> {
        nodes
            .get(id)
            .map(|n| {
                n.deps
                    .iter()
                    .filter(|d| d.dep_kinds.iter().any(|k| k.kind.is_none()))
                    .map(|d| d.pkg.as_str())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Every package reachable from the root over normal edges.
    let mut seen: BTreeSet<&str> = BTreeSet::from([root.id.as_str()]);
    let mut todo = vec![root.id.as_str()];
    while let Some(id) = todo.pop() {
        for dep in normal(id) {
            if seen.insert(dep) {
                todo.push(dep);
            }
        }
    }
    let mut crates: Vec<(Crate, &str)> = seen
        .iter()
        .filter_map(|id| packages.get(id).map(|p| (*id, *p)))
        .map(|(id, p)| {
            let source = crate_source(p, &meta.workspace_root);
            let checksum = p.source.as_ref().and_then(|s| {
                lock.get(&(p.name.clone(), p.version.clone(), s.clone()))
                    .cloned()
            });
            let krate = Crate {
                name: p.name.clone(),
                version: p.version.clone(),
                source,
                license: p.license.clone(),
                checksum,
                dependencies: Vec::new(),
            };
            (krate, id)
        })
        .collect();
    crates.sort();
    let index: BTreeMap<&str, usize> = crates.iter().enumerate().map(|(i, c)| (c.1, i)).collect();
    let deps: Vec<Vec<usize>> = crates
        .iter()
        .map(|(_, id)| {
            let mut d: Vec<usize> = normal(id)
                .iter()
                .filter_map(|d| index.get(d).copied())
                .collect();
            d.sort();
            d.dedup();
            d
        })
        .collect();
    let root = index[root.id.as_str()];
    let crates = crates
        .into_iter()
        .zip(deps)
        .map(|((mut c, _), d)| {
            c.dependencies = d;
            c
        })
        .collect();
    Ok(Resolved {
        crates,
        root,
        inputs: Vec::new(),
    })
}

/// A package's source: its registry, its git repository and commit (the `#commit` of cargo's
/// source id), or its directory relative to the workspace root.
fn crate_source(p: &MetaPackage, workspace_root: &Path) -> CrateSource {
    match p.source.as_deref() {
        Some(s) if s.starts_with("git+") => {
            let rest = &s["git+".len()..];
            let (url, commit) = rest.split_once('#').unwrap_or((rest, ""));
            let url = url.split_once('?').map_or(url, |(u, _)| u);
            CrateSource::Git {
                url: url.to_string(),
                commit: commit.to_string(),
            }
        }
        Some(s) => CrateSource::Registry(s.strip_prefix("registry+").unwrap_or(s).to_string()),
        None => {
            let dir = p.manifest_path.parent().unwrap_or(Path::new(""));
            CrateSource::Path(relative(dir, workspace_root))
        }
    }
}

/// `path` relative to `base`, `/`-separated (`.` for `base` itself).
fn relative(path: &Path, base: &Path) -> String {
    let path: Vec<_> = path.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> =
        std::iter::repeat_n("..".to_string(), base.len() - common).collect();
    parts.extend(
        path[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_never_name_the_checkout() {
        assert_eq!(relative(Path::new("/w/a/b"), Path::new("/w")), "a/b");
        assert_eq!(relative(Path::new("/w"), Path::new("/w")), ".");
        assert_eq!(relative(Path::new("/x/y"), Path::new("/w/z")), "../../x/y");
    }

    #[test]
    fn git_sources_keep_the_commit() {
        let p = MetaPackage {
            id: String::new(),
            name: "a".into(),
            version: "1.0.0".into(),
            source: Some("git+https://github.com/o/r?branch=main#0123abcd".into()),
            license: None,
            manifest_path: PathBuf::from("/h/a/Cargo.toml"),
        };
        assert_eq!(
            crate_source(&p, Path::new("/w")),
            CrateSource::Git {
                url: "https://github.com/o/r".into(),
                commit: "0123abcd".into()
            }
        );
    }
}
