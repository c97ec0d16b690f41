//! The `cargo-image` binary under test: built with cargo (once per test run, or in release mode
//! for the bench), run in a directory with a clean environment (no `SOURCE_DATE_EPOCH`, no
//! colours), captured, spawned, or wrapped in another command; and its `--message-format json`
//! events.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::files::repo_root;
use crate::layout::manifest_digest;
use crate::tools::{run_command, Run};

/// Builds the `cargo-image` binary with cargo (`--release` or the debug profile, in the
/// workspace's target directory) and returns its path, from cargo's own JSON messages.
pub fn build_cargo_image(release: bool) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .args([
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
        .map_err(|e| format!("could not run cargo build: {e}"))?;
    if !out.status.success() {
        return Err("building cargo-image failed".into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo reported no cargo-image executable".into())
}

/// The debug `cargo-image` binary, built once per test run.
pub fn cargo_image_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_cargo_image(false).unwrap_or_else(|e| panic!("{e}")))
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

    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Runs it to the end and captures its output.
    pub fn run(mut self) -> Run {
        run_command(&mut self.cmd)
    }

    /// Starts it without waiting, stdout and stderr piped.
    pub fn spawn(mut self) -> Child {
        self.cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cargo-image")
    }

    /// Runs it as the last arguments of `wrapper` (`timeout 60 prlimit ... --`, `sh -c ...`), in
    /// the same directory and environment.
    pub fn run_under<I, S>(self, wrapper: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut wrapper: Vec<OsString> =
            wrapper.into_iter().map(|w| w.as_ref().to_owned()).collect();
        assert!(!wrapper.is_empty(), "a wrapper command");
        let program = wrapper.remove(0);
        let mut cmd = Command::new(program);
        cmd.args(wrapper)
            .arg(self.cmd.get_program())
            .args(self.cmd.get_args())
            .current_dir(self.cmd.get_current_dir().expect("dir set"))
            .stdin(Stdio::null());
        for (k, v) in self.cmd.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        run_command(&mut cmd)
    }

    /// Runs under `sh -c 'umask MASK; exec ...'` so files it creates get that umask.
    pub fn run_with_umask(self, umask: &str) -> Run {
        self.run_under(["sh", "-c", &format!("umask {umask}; exec \"$0\" \"$@\"")])
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

/// `cargo-image build --quiet --output-format FORMAT --output OUT` in `dir`, to run.
pub fn build_with_format(dir: &Path, format: &str, out: &Path) -> CargoImage {
    cargo_image(dir)
        .args(["build", "--quiet", "--output-format", format, "--output"])
        .arg_path(out)
}

/// The events of a `--message-format json` run: every line of its stdout is one JSON object.
pub fn json_events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The events of `cargo-image build --message-format json ARGS` in `dir`, which must succeed.
pub fn build_events(dir: &Path, args: &[&str]) -> Vec<Value> {
    let r = cargo_image(dir)
        .args(["build", "--message-format", "json"])
        .args(args)
        .run()
        .ok();
    json_events(&r.stdout)
}

/// The events of one kind (`"event": KIND`).
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}
