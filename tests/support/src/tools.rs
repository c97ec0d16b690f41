//! The peer tools that check what cargo-image writes, none of them written here: skopeo, umoci,
//! runc, oci-image-tool, GNU tar and coreutils' `sha256sum`. Every one is required: a missing
//! tool fails the test naming `just deps`, which installs them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::layout::read_json;

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

    /// stdout and stderr, as one text.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs a command set up by the caller (stdin empty) and captures its output.
pub fn run_command(cmd: &mut Command) -> Run {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e} (run `just deps`)"));
    Run::from(out)
}

/// Runs a program in `dir` and captures its output.
pub fn run<I, S>(program: impl AsRef<OsStr>, args: I, dir: &Path) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_command(Command::new(program).args(args).current_dir(dir))
}

/// `skopeo ARGS`, which must succeed.
pub fn skopeo<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    require("skopeo");
    run("skopeo", args, Path::new("/")).ok()
}

/// `oci-image-tool validate --type image --ref name=TAG LAYOUT`: must succeed.
///
/// oci-image-tool 1.0.0-rc1 (Debian's) picks `--ref` out of every `index.json` entry and calls
/// the result ambiguous as soon as two entries have different digests, whatever their
/// `ref.name`s: it refuses any layout that holds an image and its SBOM referrer (or two
/// images). So a layout with untagged artifact entries (`artifactType` set) is validated
/// through a view of it without them (the same `oci-layout` and blobs, an `index.json` of its
/// other entries); the artifacts are checked by the SBOM tests.
pub fn oci_image_tool_validate(layout: &Path, tag: &str) {
    require("oci-image-tool");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array_mut().unwrap();
    let before = entries.len();
    entries.retain(|e| e.get("artifactType").is_none());
    let view = tempfile::TempDir::new().unwrap();
    let layout = if entries.len() == before || !layout.join("blobs").is_dir() {
        layout.to_path_buf()
    } else {
        std::fs::copy(layout.join("oci-layout"), view.path().join("oci-layout")).unwrap();
        std::fs::write(view.path().join("index.json"), index.to_string()).unwrap();
        // Hard links (oci-image-tool does not follow a symlinked `blobs`).
        for alg in std::fs::read_dir(layout.join("blobs")).unwrap() {
            let alg = alg.unwrap().path();
            let dest = view.path().join("blobs").join(alg.file_name().unwrap());
            std::fs::create_dir_all(&dest).unwrap();
            for blob in std::fs::read_dir(&alg).unwrap() {
                let blob = blob.unwrap().path();
                let to = dest.join(blob.file_name().unwrap());
                if std::fs::hard_link(&blob, &to).is_err() {
                    std::fs::copy(&blob, &to).unwrap();
                }
            }
        }
        view.path().to_path_buf()
    };
    let layout = layout.as_path();
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
    let mut args = vec!["inspect".to_string()];
    if let Some(f) = flag {
        args.push(f.to_string());
    }
    args.push(format!("oci:{}:{tag}", layout.display()));
    serde_json::from_str(&skopeo(&args).stdout).expect("skopeo prints JSON")
}

/// `skopeo copy SOURCE oci:LAYOUT:TAG` from a plain-HTTP loopback registry (`docker://...`).
pub fn skopeo_pull(source: &str, layout: &Path, tag: &str) {
    skopeo([
        "copy".to_string(),
        "--quiet".to_string(),
        "--src-tls-verify=false".to_string(),
        source.to_string(),
        format!("oci:{}:{tag}", layout.display()),
    ]);
}

/// Converts a (zstd) layout to a gzip one with skopeo, for tools that only read gzip.
pub fn skopeo_copy_gzip(layout: &Path, tag: &str, dest: &Path) {
    skopeo([
        "copy".to_string(),
        "--quiet".to_string(),
        "--dest-compress".to_string(),
        "--dest-compress-format".to_string(),
        "gzip".to_string(),
        format!("oci:{}:{tag}", layout.display()),
        format!("oci:{}:{tag}", dest.display()),
    ]);
}

/// Makes an OCI layout with umoci, "built by another tool": `DIR/umoci-layout:TAG`, one layer
/// holding the file `dest` with `content`.
pub fn umoci_layout(dir: &Path, tag: &str, dest: &str, content: &str) -> PathBuf {
    require("umoci");
    let layout = dir.join("umoci-layout");
    let image = format!("{}:{tag}", layout.display());
    run(
        "umoci",
        [OsStr::new("init"), "--layout".as_ref(), layout.as_os_str()],
        dir,
    )
    .ok();
    run("umoci", ["new", "--image", &image], dir).ok();
    let file = dir.join("umoci-file");
    std::fs::write(&file, content).unwrap();
    run(
        "umoci",
        [
            OsStr::new("insert"),
            "--rootless".as_ref(),
            "--image".as_ref(),
            image.as_ref(),
            file.as_os_str(),
            dest.as_ref(),
        ],
        dir,
    )
    .ok();
    layout
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

/// `sha256:<hex>` of a file, by coreutils' `sha256sum`.
pub fn sha256_file(path: &Path) -> String {
    let r = run("sha256sum", [path], Path::new("/")).ok();
    format!("sha256:{}", r.stdout.split_whitespace().next().unwrap())
}

/// `sha256:<hex>` of `bytes`, by coreutils' `sha256sum`.
pub fn sha256(bytes: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    sha256_file(file.path())
}

/// Members for a tarball of the host's loader and the libraries `ldd` lists for `exe`: each
/// path as `ldd` names it and, for a symlink, what it points at (recursively), so the links
/// resolve inside the image as on the host.
pub fn loader_members(exe: &Path) -> Vec<String> {
    require("ldd");
    let out = run("ldd", [exe.as_os_str()], Path::new("/")).ok().stdout;
    let mut todo: Vec<PathBuf> = out
        .lines()
        .filter_map(|l| {
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    assert!(
        todo.iter().any(|p| p.ends_with("ld-linux-x86-64.so.2")),
        "{out}"
    );
    let mut members = Vec::new();
    while let Some(path) = todo.pop() {
        let member = path.strip_prefix("/").unwrap().display().to_string();
        if members.contains(&member) {
            continue;
        }
        members.push(member);
        if let Ok(target) = std::fs::read_link(&path) {
            todo.push(path.parent().unwrap().join(target));
        }
    }
    members.sort();
    members
}

/// Writes `dest`: a tarball of the host's loader and the libraries `exe` needs
/// ([`loader_members`]), symlinks kept, to make a glibc base stage of (`tar = "..."`).
pub fn glibc_tar(exe: &Path, dest: &Path) {
    let members = loader_members(exe);
    let mut tar = Command::new("tar");
    tar.arg("-cf").arg(dest).args(["-C", "/"]).args(&members);
    run_command(&mut tar).ok();
}

/// The files `inotifywait` saw opened or read below `dirs` while `f` ran (directories, which
/// a walk opens to list them, left out).
pub fn files_opened(dirs: &[&Path], f: impl FnOnce()) -> Vec<String> {
    use std::io::BufRead;
    require("inotifywait");
    let mut watch = std::process::Command::new("inotifywait")
        .args([
            "-m", "-r", "-e", "open", "-e", "access", "--format", "%e %w%f",
        ])
        .args(dirs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("inotifywait runs");
    let mut stderr = std::io::BufReader::new(watch.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Watches established") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "inotifywait: {line}"
        );
    }
    f();
    // A canary: a file read now shows the watch works, and marks the end of `f`'s events.
    let canary = dirs[0].join(".canary");
    std::fs::write(&canary, b"x").unwrap();
    std::fs::read(&canary).unwrap();
    let mut seen = Vec::new();
    let stdout = std::io::BufReader::new(watch.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.ends_with("/.canary") {
            break;
        }
        if !line.contains("ISDIR") {
            seen.push(line);
        }
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    std::fs::remove_file(&canary).unwrap();
    seen
}
