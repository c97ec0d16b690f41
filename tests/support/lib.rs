//! Support for the acceptance tests: run the `cargo-image` binary on fixtures, and check what it
//! writes with real tools nobody here wrote (skopeo, umoci, runc, oci-image-tool).
//!
//! Every peer tool is required: a missing one fails the test with a message naming `just deps`,
//! never a silent skip.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub use serde_json::Value;
pub use tempfile::TempDir;

/// The repository root (the workspace that holds `builder/`, `examples/`, `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `cargo-image` binary, built once per test run (debug profile, same target dir as the
/// workspace), located through cargo's own JSON messages.
pub fn cargo_image_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--package",
                "cargo-oci-image",
                "--bin",
                "cargo-image",
                "--message-format=json",
            ])
            .current_dir(repo_root())
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build for the cargo-image binary");
        assert!(out.status.success(), "building cargo-image failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the cargo-image executable")
    })
}

/// Fails the test unless `tool` is on PATH, naming the fix.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed; run `just deps` to install the tools the tests check images with"
    );
}

/// The result of a command, with its output as text.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the whole output unless the command exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "command failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs a program and captures its output.
pub fn run<I, S>(program: impl AsRef<OsStr>, args: I, dir: &Path) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run {program:?}: {e}"));
    Run::from(out)
}

/// A `cargo-image` invocation being set up.
pub struct CargoImage {
    cmd: Command,
}

/// Starts a `cargo-image` invocation in `dir`.
pub fn cargo_image(dir: &Path) -> CargoImage {
    let mut cmd = Command::new(cargo_image_bin());
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .env_remove("SOURCE_DATE_EPOCH")
        .env("NO_COLOR", "1");
    CargoImage { cmd }
}

impl CargoImage {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn arg_path(mut self, path: &Path) -> Self {
        self.cmd.arg(path);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Runs under `sh -c 'umask MASK; exec ...'` so files it creates get that umask.
    pub fn run_with_umask(self, umask: &str) -> Run {
        let program = self.cmd.get_program().to_owned();
        let args: Vec<_> = self.cmd.get_args().map(|a| a.to_owned()).collect();
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(program)
            .args(args)
            .current_dir(self.cmd.get_current_dir().expect("dir set"))
            .stdin(Stdio::null());
        for (k, v) in self.cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        Run::from(sh.output().expect("run sh"))
    }

    pub fn run(mut self) -> Run {
        Run::from(self.cmd.output().expect("run cargo-image"))
    }
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

/// Builds a spec with `cargo-image build --spec SPEC --output OUT` and returns the manifest
/// digest read from the layout's `index.json`.
pub fn build(dir: &Path, spec: &Path, out: &Path) -> String {
    cargo_image(dir)
        .args(["build", "--quiet", "--spec"])
        .args([spec, Path::new("--output"), out])
        .run()
        .ok();
    manifest_digest(out)
}

/// The manifest digest of the first entry in a layout's `index.json`.
pub fn manifest_digest(layout: &Path) -> String {
    let index = read_json(&layout.join("index.json"));
    index["manifests"][0]["digest"]
        .as_str()
        .expect("index.json has a manifest digest")
        .to_string()
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Reads a blob of a layout by digest as JSON.
pub fn blob_json(layout: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    read_json(&layout.join("blobs/sha256").join(hex))
}

/// `oci-image-tool validate --type image --ref name=TAG LAYOUT`: must succeed.
pub fn oci_image_tool_validate(layout: &Path, tag: &str) {
    require("oci-image-tool");
    let r = run(
        "oci-image-tool",
        [
            OsStr::new("validate"),
            OsStr::new("--type"),
            OsStr::new("image"),
            OsStr::new("--ref"),
            OsStr::new(&format!("name={tag}")),
            layout.as_os_str(),
        ],
        Path::new("/"),
    )
    .ok();
    assert!(
        r.stdout.contains("Validation succeeded") || r.stderr.contains("Validation succeeded"),
        "oci-image-tool did not validate {}:{tag}\n{}\n{}",
        layout.display(),
        r.stdout,
        r.stderr
    );
}

/// `skopeo inspect [--raw|--config] oci:LAYOUT:TAG` as JSON.
pub fn skopeo_inspect(layout: &Path, tag: &str, flag: Option<&str>) -> Value {
    require("skopeo");
    let mut args = vec!["inspect".to_string()];
    if let Some(f) = flag {
        args.push(f.to_string());
    }
    args.push(format!("oci:{}:{tag}", layout.display()));
    let r = run("skopeo", &args, Path::new("/")).ok();
    serde_json::from_str(&r.stdout).expect("skopeo prints JSON")
}

/// Converts a (zstd) layout to a gzip one with skopeo, for tools that only read gzip.
pub fn skopeo_copy_gzip(layout: &Path, tag: &str, dest: &Path) {
    require("skopeo");
    run(
        "skopeo",
        [
            "copy".to_string(),
            "--quiet".to_string(),
            "--dest-compress".to_string(),
            "--dest-compress-format".to_string(),
            "gzip".to_string(),
            format!("oci:{}:{tag}", layout.display()),
            format!("oci:{}:{tag}", dest.display()),
        ],
        Path::new("/"),
    )
    .ok();
}

/// `umoci unpack --image LAYOUT:TAG BUNDLE`: the image's filesystem at `BUNDLE/rootfs`.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) {
    require("umoci");
    run(
        "umoci",
        [
            OsStr::new("unpack"),
            OsStr::new("--image"),
            OsStr::new(&format!("{}:{tag}", layout.display())),
            bundle.as_os_str(),
        ],
        Path::new("/"),
    )
    .ok();
}

/// Runs an unpacked bundle with `runc run` (adapted to this sandbox: no tty, no UTS or network
/// namespace) and returns what the program printed.
pub fn runc_run(bundle: &Path) -> Run {
    require("runc");
    let config_path = bundle.join("config.json");
    let mut config = read_json(&config_path);
    config["process"]["terminal"] = Value::Bool(false);
    if let Some(obj) = config.as_object_mut() {
        obj.remove("hostname");
    }
    if let Some(ns) = config["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "uts" && n["type"] != "network");
    }
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = format!(
        "cargo-image-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    run("runc", ["run", "--bundle", ".", &id], bundle)
}

/// `(mode & 0o7777, uid, gid)` of a path, without following a final symlink.
pub fn stat(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// Lists the member names of a (possibly compressed) layer blob with GNU tar, in archive order.
pub fn tar_list(blob: &Path) -> Vec<String> {
    let r = run(
        "tar",
        [OsStr::new("--list"), OsStr::new("--file"), blob.as_os_str()],
        Path::new("/"),
    )
    .ok();
    r.stdout.lines().map(str::to_string).collect()
}

/// Lists a layer blob verbosely with GNU tar (`-tv --numeric-owner --full-time`).
pub fn tar_list_verbose(blob: &Path) -> String {
    run(
        "tar",
        [
            OsStr::new("-tv"),
            OsStr::new("--numeric-owner"),
            OsStr::new("--full-time"),
            OsStr::new("--file"),
            blob.as_os_str(),
        ],
        Path::new("/"),
    )
    .ok()
    .stdout
}

/// A real `docker-registry` on loopback (with optional htpasswd auth and TLS) and a
/// fault-injecting proxy, shared with the library's registry tests.
#[path = "registry.rs"]
pub mod registry;
