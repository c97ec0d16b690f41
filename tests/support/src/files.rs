//! Files on the host: the repository and its examples (copied to a temporary directory before a
//! test builds them), trees walked and compared, owners and modes, deterministic noise.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// The repository root (the workspace that holds `builder/`, `examples/`, `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support is two levels below the repository root")
        .to_path_buf()
}

/// Copies `examples/<name>` into a fresh temporary directory (leaving out build outputs) and
/// returns the temp dir and the example's path in it.
pub fn example_copy(name: &str) -> (TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("cargo-image-test-")
        .tempdir()
        .expect("temp dir");
    let dest = tmp.path().join(name);
    copy_tree(&repo_root().join("examples").join(name), &dest, false);
    (tmp, dest)
}

/// Copies a directory tree (without `target/` dirs). With `reverse`, entries are created in
/// reverse name order, so directory order on disk differs from a plain copy.
pub fn copy_tree(src: &Path, dest: &Path, reverse: bool) {
    std::fs::create_dir_all(dest).expect("create dest");
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .expect("read dir")
        .map(|e| e.expect("dir entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    if reverse {
        entries.reverse();
    }
    for entry in entries {
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let from = entry.path();
        let to = dest.join(&name);
        let ft = entry.file_type().expect("file type");
        if ft.is_dir() {
            copy_tree(&from, &to, reverse);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
        } else {
            std::fs::copy(&from, &to).expect("copy file");
        }
    }
}

/// Makes a checkout of `examples/<name>` at `dest`: files created in the given order, with the
/// given permission bits and mtime, then committed to a fresh git repository with fixed
/// identities and dates (so both checkouts have the same commit, as two clones would).
pub fn checkout(name: &str, dest: &Path, reverse: bool, file_mode: u32, mtime: &str) {
    checkout_with(name, dest, reverse, file_mode, mtime, &|_| {});
}

/// [`checkout`], with `edit` applied to the copy before its modes, mtimes and commit are set
/// (a spec key changed, a file added).
pub fn checkout_with(
    name: &str,
    dest: &Path,
    reverse: bool,
    file_mode: u32,
    mtime: &str,
    edit: &dyn Fn(&Path),
) {
    copy_tree(&repo_root().join("examples").join(name), dest, reverse);
    edit(dest);
    for entry in walk(dest) {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        if meta.is_file() {
            let exec = meta.permissions().mode() & 0o111 != 0;
            let mode = if exec { file_mode | 0o100 } else { file_mode };
            std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let r = Command::new("touch")
            .args(["-h", "-d", mtime])
            .arg(&entry)
            .status()
            .unwrap();
        assert!(r.success());
    }
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .args(args)
            .current_dir(dest)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "checkout"]);
}

/// Builds `examples/<name>` from two checkouts that differ in everything but content: path,
/// order in which files were created, permission bits, mtimes, and the umask of the build.
/// Returns the two layouts (`ROOT/out-a`, `ROOT/out-b`).
pub fn build_two_checkouts(name: &str, root: &Path) -> (PathBuf, PathBuf) {
    build_two_checkouts_with(name, root, &|_| {})
}

/// [`build_two_checkouts`] of `examples/<name>` with `edit` applied to both checkouts.
pub fn build_two_checkouts_with(
    name: &str,
    root: &Path,
    edit: &dyn Fn(&Path),
) -> (PathBuf, PathBuf) {
    let a = root.join("a").join(name);
    let b = root.join("somewhere/much/deeper/checkout-b").join(name);
    checkout_with(name, &a, false, 0o644, "2001-02-03 04:05:06", edit);
    checkout_with(name, &b, true, 0o600, "2022-12-31 23:59:59", edit);
    let (out_a, out_b) = (root.join("out-a"), root.join("out-b"));
    for (dir, out, umask) in [(&a, &out_a, "022"), (&b, &out_b, "077")] {
        crate::cli::cargo_image(dir)
            .args(["build", "--quiet", "--output"])
            .arg_path(out)
            .run_with_umask(umask)
            .ok();
    }
    (out_a, out_b)
}

/// Every path under `dir` (directories included, symlinks not followed), sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    fn walk_into(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for e in entries {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                walk_into(&p, out);
            }
            out.push(p);
        }
    }
    let mut out = Vec::new();
    walk_into(dir, &mut out);
    out.sort();
    out
}

/// The regular files under `dir` (relative paths) with their bytes, sorted: two trees are
/// byte-identical when these are equal.
pub fn tree_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walk(dir)
        .into_iter()
        .filter(|f| f.is_file())
        .map(|f| {
            (
                f.strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(&f).unwrap(),
            )
        })
        .collect()
}

/// `(mode & 0o7777, uid, gid)` of a path, without following a final symlink.
pub fn stat(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// Deterministic, incompressible bytes (xorshift64), so a compressor works on all of them.
pub struct Noise {
    state: u64,
}

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise { state: seed }
    }

    /// The next `len` bytes (rounded up to whole 8-byte words).
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(len + 8);
        while buf.len() < len {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            buf.extend_from_slice(&self.state.to_le_bytes());
        }
        buf
    }
}
