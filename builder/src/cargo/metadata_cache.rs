//! `cargo metadata` answers kept across processes, so a warm build does not run cargo (tens of
//! milliseconds through rustup's proxy, before anything else can start) to be told again what
//! it was told last time.
//!
//! An answer is a file in a directory the caller chooses (the build keeps them in its store,
//! `cargo-metadata/`), one per directory cargo ran in, named by the blake3 of that directory's
//! canonical path. It holds what `cargo metadata --no-deps` printed, parsed ([`Metadata`]), and
//! what that answer was read from: every file and directory whose change could make cargo say
//! something else, each by its stat data (size, mtime, ctime, inode) or its absence, and the
//! environment cargo reads. It is taken only while all of them are as recorded:
//!
//! - cargo's discovery: `Cargo.toml`, `.cargo/config.toml` and `.cargo/config` of the directory
//!   and of every ancestor (cargo searches upwards from the physical path), `rust-toolchain` and
//!   `rust-toolchain.toml` there too (rustup picks the cargo that runs by them), and
//!   `config.toml` and `config` in cargo's home;
//! - the workspace: the root's `Cargo.toml` and each package's manifest; every directory from
//!   the root down to each package's directory (a member a `members` glob adds appears as a new
//!   entry in one of them, which moves its mtime);
//! - each package's targets as cargo discovers them: the package directory (a new `build.rs`),
//!   `src`, `src/bin`, `examples`, `tests` and `benches` and the directories inside the last
//!   four (a new `src/bin/x.rs` or `src/bin/x/main.rs` is a new binary);
//! - the environment: every variable whose name starts with `CARGO` or `RUSTUP`, and `HOME`.
//!
//! Like the store's stat index, an answer is trusted only when every file it was read from is
//! older than the answer by more than two seconds: a file changed twice within one timestamp
//! granule could keep its stat data, so an answer recorded right after an edit is used by no
//! one (cargo runs again, and its answer, recorded later, is).
//!
//! What it does not see: a change of the cargo program itself (its version; the fields read
//! here have been the same in every version since 1.41), and edits of a file that keep its
//! size, mtime, ctime and inode (which the racy rule above leaves to clock tampering).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Metadata;

/// The version of the answer files; an answer of another version is not read.
const VERSION: &str = "cargo-image-cargo-metadata-1";

/// An answer is trusted only if every file it was read from is this much older than it.
const RACY_MARGIN_NS: i64 = 2_000_000_000;

/// The subdirectory of the caller's directory that holds the answers.
pub const DIR_NAME: &str = "cargo-metadata";

/// Environment variables, by name.
pub(crate) type Env = Vec<(String, String)>;

/// A file's size, mtime and ctime (seconds, nanoseconds) and inode.
type Stamp = (u64, i64, i64, i64, i64, u64);

/// One answer as it is kept.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    version: String,
    /// The directory cargo ran in (canonical).
    dir: PathBuf,
    /// When the answer was recorded (ns since the epoch), taken before cargo ran.
    recorded_ns: i64,
    env: Env,
    /// What cargo read, each with its stat data (`None`: it did not exist).
    files: Vec<(PathBuf, Option<Stamp>)>,
    metadata: Metadata,
}

/// The environment cargo's answer depends on, as it is now (see the module docs); `None`
/// when a variable of it is not UTF-8 (such answers are not kept).
pub(crate) fn environment() -> Option<Env> {
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        let bytes = name.as_bytes();
        if bytes.starts_with(b"CARGO") || bytes.starts_with(b"RUSTUP") || bytes == b"HOME" {
            env.push((name.into_string().ok()?, value.into_string().ok()?));
        }
    }
    env.sort();
    Some(env)
}

/// The time now in ns since the epoch, for [`remember`]'s `recorded_ns`: take it before cargo
/// runs, so a file changed while cargo reads it is newer than the answer.
pub(crate) fn now_ns() -> i64 {
    match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// The answer kept in `place` for cargo run in `dir` with environment `env`, when it still
/// holds (see the module docs); `None` when there is none, or it does not hold.
pub(crate) fn cached(place: &Path, dir: &Path, env: &[(String, String)]) -> Option<Metadata> {
    let dir = dir.canonicalize().ok()?;
    let bytes = fs::read(answer_path(place, &dir)).ok()?;
    let answer: Answer = serde_json::from_slice(&bytes).ok()?;
    if answer.version != VERSION || answer.dir != dir || answer.env != env {
        return None;
    }
    // The answer's own list, and the list its metadata gives now (a directory listed under
    // `src/bin` since): both must be what they were.
    let now = watched(&dir, &answer.metadata);
    if now.len() != answer.files.len() || now.iter().zip(&answer.files).any(|(a, (b, _))| a != b) {
        return None;
    }
    let trusted_before = answer.recorded_ns.saturating_sub(RACY_MARGIN_NS);
    for (path, recorded) in &answer.files {
        let stamp = stamp(path);
        if stamp != *recorded {
            return None;
        }
        if let Some((_, mtime, mtime_ns, ctime, ctime_ns, _)) = stamp {
            let newest = nanos(mtime, mtime_ns).max(nanos(ctime, ctime_ns));
            if newest >= trusted_before {
                return None;
            }
        }
    }
    Some(answer.metadata)
}

/// Keeps `metadata`, what cargo said in `dir` with environment `env` at `recorded_ns` (taken
/// before it ran), in `place` (created if needed): written to a temporary file, then renamed
/// over the answer, so a reader sees a whole answer or the previous one.
pub(crate) fn remember(
    place: &Path,
    dir: &Path,
    env: &[(String, String)],
    metadata: &Metadata,
    recorded_ns: i64,
) -> io::Result<()> {
    let dir = dir.canonicalize()?;
    let files = watched(&dir, metadata)
        .into_iter()
        .map(|path| {
            let stamp = stamp(&path);
            (path, stamp)
        })
        .collect();
    let answer = Answer {
        version: VERSION.to_owned(),
        dir,
        recorded_ns,
        env: env.to_vec(),
        files,
        metadata: metadata.clone(),
    };
    let bytes = serde_json::to_vec(&answer).map_err(io::Error::other)?;
    let answers = place.join(DIR_NAME);
    fs::create_dir_all(&answers)?;
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&answers)?;
    file.write_all(&bytes)?;
    file.persist(answer_path(place, &answer.dir))
        .map_err(|e| e.error)?;
    Ok(())
}

/// Whether the answer kept at `path` (a file of some place's `cargo-metadata/`) can still be
/// taken by a build: it reads as an answer of this version, kept under the name of its own
/// directory, and that directory still exists. An answer whose files changed since is still of
/// use in this sense: the next build in its directory replaces it.
pub(crate) fn is_of_use(path: &Path) -> bool {
    /// The fields of an answer this needs (the others are skipped).
    #[derive(Deserialize)]
    struct Head {
        version: String,
        dir: PathBuf,
    }
    let Some(place) = path.parent().and_then(Path::parent) else {
        return false;
    };
    let Some(head) = fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Head>(&bytes).ok())
    else {
        return false;
    };
    head.version == VERSION && answer_path(place, &head.dir) == path && head.dir.is_dir()
}

/// Whether `name` is the name of an answer file (`<64 hex>.json`), as [`answer_path`] names it.
pub(crate) fn is_answer_name(name: &str) -> bool {
    name.strip_suffix(".json").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Where the answer for `dir` (canonical) is kept in `place`.
fn answer_path(place: &Path, dir: &Path) -> PathBuf {
    let name = blake3::hash(dir.as_os_str().as_bytes()).to_hex();
    place.join(DIR_NAME).join(format!("{name}.json"))
}

/// Every file and directory whose change could change cargo's answer in `dir` (canonical),
/// given that answer (see the module docs), sorted.
fn watched(dir: &Path, metadata: &Metadata) -> Vec<PathBuf> {
    let mut files = BTreeSet::new();
    for a in dir.ancestors() {
        for name in [
            "Cargo.toml",
            ".cargo/config.toml",
            ".cargo/config",
            "rust-toolchain",
            "rust-toolchain.toml",
        ] {
            files.insert(a.join(name));
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    if let Some(home) = home {
        files.insert(home.join("config.toml"));
        files.insert(home.join("config"));
    }
    let root = &metadata.workspace_root;
    files.insert(root.join("Cargo.toml"));
    files.insert(root.clone());
    for package in &metadata.packages {
        files.insert(package.manifest_path.clone());
        let pkg = package.dir();
        for d in pkg.ancestors() {
            if !d.starts_with(root) {
                break;
            }
            files.insert(d.to_path_buf());
        }
        files.insert(pkg.join("src"));
        for sub in ["src/bin", "examples", "tests", "benches"] {
            let d = pkg.join(sub);
            if let Ok(entries) = fs::read_dir(&d) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        files.insert(entry.path());
                    }
                }
            }
            files.insert(d);
        }
    }
    files.into_iter().collect()
}

/// `path`'s stat data (symlinks followed, as cargo does), `None` when it does not exist.
fn stamp(path: &Path) -> Option<Stamp> {
    fs::metadata(path).ok().map(|m| {
        (
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino(),
        )
    })
}

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace at `root` with members `crates/*` and one package `crates/a`.
    fn workspace(root: &Path) {
        fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nresolver = \"2\"\nmembers = [\"crates/*\"]\n",
        )
        .unwrap();
        package(root, "a");
    }

    fn package(root: &Path, name: &str) {
        let dir = root.join("crates").join(name);
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(
            dir.join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
        )
        .unwrap();
        fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    }

    /// Records cargo's answer in `root` as if ten seconds from now (so the files just written
    /// are not racy), and says whether it is taken back.
    struct Kept {
        place: tempfile::TempDir,
        root: PathBuf,
        env: Env,
    }

    impl Kept {
        fn new(root: &Path) -> Kept {
            let kept = Kept {
                place: tempfile::tempdir().unwrap(),
                root: root.to_path_buf(),
                env: environment().unwrap(),
            };
            kept.record();
            kept
        }
        fn record(&self) {
            let meta = super::super::metadata(&self.root).unwrap();
            remember(
                self.place.path(),
                &self.root,
                &self.env,
                &meta,
                now_ns() + 10_000_000_000,
            )
            .unwrap();
        }
        fn holds(&self) -> bool {
            cached(self.place.path(), &self.root, &self.env).is_some()
        }
    }

    fn bins(meta: &Metadata) -> Vec<String> {
        meta.packages
            .iter()
            .flat_map(|p| p.bins().into_iter().map(|b| format!("{}:{b}", p.name)))
            .collect()
    }

    #[test]
    fn an_answer_is_taken_back_while_nothing_it_was_read_from_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        workspace(&root);
        let kept = Kept::new(&root);
        let meta = cached(kept.place.path(), &root, &kept.env).expect("kept");
        assert_eq!(bins(&meta), ["a:a"]);
        assert_eq!(meta.workspace_root, root);
        // From a member's directory it is another answer (another file), not this one.
        assert!(cached(kept.place.path(), &root.join("crates/a"), &kept.env).is_none());
        // Another environment (a target directory moved by `CARGO_TARGET_DIR`).
        let mut env = kept.env.clone();
        env.push(("CARGO_TARGET_DIR".into(), "/elsewhere".into()));
        env.sort();
        assert!(cached(kept.place.path(), &root, &env).is_none());
        // A corrupt answer is no answer.
        fs::write(answer_path(kept.place.path(), &root), b"{").unwrap();
        assert!(!kept.holds());
    }

    #[test]
    fn an_answer_is_not_taken_once_a_manifest_or_configuration_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        workspace(&root);
        let kept = Kept::new(&root);
        assert!(kept.holds());
        // A member's manifest (not on the path from the directory up).
        fs::write(
            root.join("crates/a/Cargo.toml"),
            "[package]\nname = \"a\"\nversion = \"0.2.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        assert!(!kept.holds());
        kept.record();
        assert!(kept.holds());
        // A cargo configuration file appears.
        fs::create_dir_all(root.join(".cargo")).unwrap();
        fs::write(
            root.join(".cargo/config.toml"),
            "[build]\ntarget-dir = \"t\"\n",
        )
        .unwrap();
        assert!(!kept.holds());
        kept.record();
        assert!(kept.holds());
        // The root manifest.
        fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nresolver = \"2\"\nmembers = [\"crates/*\"]\n\n",
        )
        .unwrap();
        assert!(!kept.holds());
    }

    #[test]
    fn an_answer_is_not_taken_once_a_target_or_a_member_appears() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        workspace(&root);
        let kept = Kept::new(&root);
        // A binary cargo discovers: `src/bin/x.rs`.
        fs::create_dir_all(root.join("crates/a/src/bin")).unwrap();
        assert!(!kept.holds());
        kept.record();
        fs::write(root.join("crates/a/src/bin/x.rs"), "fn main() {}\n").unwrap();
        assert!(!kept.holds());
        kept.record();
        let meta = cached(kept.place.path(), &root, &kept.env).unwrap();
        assert_eq!(bins(&meta), ["a:a", "a:x"]);
        // `src/bin/y/main.rs`: a directory inside `src/bin`.
        fs::create_dir_all(root.join("crates/a/src/bin/y")).unwrap();
        kept.record();
        fs::write(root.join("crates/a/src/bin/y/main.rs"), "fn main() {}\n").unwrap();
        assert!(!kept.holds());
        kept.record();
        // A member the `crates/*` glob takes.
        package(&root, "b");
        assert!(!kept.holds());
        kept.record();
        let meta = cached(kept.place.path(), &root, &kept.env).unwrap();
        assert_eq!(bins(&meta), ["a:a", "a:x", "a:y", "b:b"]);
    }

    #[test]
    fn an_answer_recorded_right_after_an_edit_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        workspace(&root);
        let place = tempfile::tempdir().unwrap();
        let env = environment().unwrap();
        let meta = super::super::metadata(&root).unwrap();
        // Recorded now: the manifests were written within the last two seconds.
        remember(place.path(), &root, &env, &meta, now_ns()).unwrap();
        assert!(cached(place.path(), &root, &env).is_none());
    }
}
