//! C compilers: which one a build script's C code (through the `cc` crate) is compiled with for a
//! target, chosen the way the linker is ([`super::resolve_linker`]).
//!
//! # Brief overview
//! Crates such as `jemalloc-sys`, `zstd-sys` or `ring` compile C in their build scripts through
//! the `cc` crate, which reads the compiler of a target from `CC_<target>` (and `AR_<target>`).
//! Left alone it guesses a cross compiler name (`x86_64-linux-musl-gcc` for
//! `x86_64-unknown-linux-musl`) that no Debian package installs, and fails with a build-script
//! panic. [`resolve_cc`] decides instead:
//!
//! 1. the spec's `[platform."os/arch"] cc`, which must exist;
//! 2. else what the user set for the `cc` crate (`CC_<target>`, `CC_<target_with_underscores>`,
//!    `TARGET_CC`): left to it;
//! 3. else the usual compiler ([`default_cc`]), when it is on `PATH`: `musl-gcc` (Debian
//!    `musl-tools`) for a musl target of the host's architecture, the cross gcc of the target's
//!    architecture otherwise (`aarch64-linux-gnu-gcc`, the linker's package), with its `ar`;
//!    nothing for a gnu target of the host's architecture (the `cc` crate's `cc` is right);
//! 4. else nothing, and if a build script then fails to find a compiler the build stops with
//!    [`Error::CcMissing`](super::Error::CcMissing), naming the package and the spec key.
//!
//! Debian has no musl cross compiler. For a musl target of another architecture the cross gcc
//! compiles C against glibc's headers, and the objects link into the static musl binary: this
//! works for C that uses the C library the way both libraries declare it (the `cc` crate's
//! usual fare: compression, hashing, allocators), which the tests check with a small C file on
//! `aarch64-unknown-linux-musl`. C that needs glibc-only declarations does not link: build it
//! with `builder = "zigbuild"`, whose `zig cc` has musl's headers for every architecture.
//!
//! ```
//! use cargo_oci_image::cargo::cc_env;
//!
//! assert_eq!(cc_env("aarch64-unknown-linux-musl"), "CC_aarch64_unknown_linux_musl");
//! ```

use super::targets::{default_linker, find_program, is_host_arch, spec_key};
use super::Error;

/// The C compiler (and archiver) a build gives the `cc` crate for one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CCompiler {
    /// Passed as `CC_<target>`; `None` leaves the choice to the `cc` crate.
    pub cc: Option<String>,
    /// Passed as `AR_<target>`; `None` leaves the choice to the `cc` crate.
    pub ar: Option<String>,
    /// The usual compiler and its Debian package, when it is not installed (nothing was
    /// chosen): what a failed build names.
    pub missing: Option<(&'static str, &'static str)>,
}

/// The name of the environment variable the `cc` crate reads a target's C compiler from:
/// `CC_aarch64_unknown_linux_musl`.
pub fn cc_env(target: &str) -> String {
    format!("CC_{}", target.replace(['-', '.'], "_"))
}

/// The name of the environment variable the `cc` crate reads a target's archiver from.
pub fn ar_env(target: &str) -> String {
    format!("AR_{}", target.replace(['-', '.'], "_"))
}

/// The usual C compiler for `target` and the Debian package that has it; `None` when the `cc`
/// crate's own default (`cc`) is right (a gnu target of the host's architecture).
pub fn default_cc(target: &str) -> Option<(&'static str, &'static str)> {
    let musl = target.contains("-musl");
    match (is_host_arch(target), musl) {
        (true, true) => Some(("musl-gcc", "musl-tools")),
        (true, false) => None,
        (false, _) => default_linker(target),
    }
}

/// The C compiler to give the `cc` crate for `target`: `spec` (the spec's `cc`, which must
/// exist), else `None` when the user set one for the `cc` crate, else the usual one when
/// installed. Fails only when the spec's compiler is missing.
pub fn resolve_cc(target: &str, spec: Option<&str>) -> Result<CCompiler, Error> {
    let user_set = [
        format!("CC_{target}"),
        cc_env(target),
        "TARGET_CC".to_owned(),
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some());
    choose_cc(target, spec, user_set, &|p| find_program(p).is_some())
}

/// [`resolve_cc`] with the environment given: whether the user set a compiler for the `cc`
/// crate, and which programs exist.
fn choose_cc(
    target: &str,
    spec: Option<&str>,
    user_set: bool,
    exists: &dyn Fn(&str) -> bool,
) -> Result<CCompiler, Error> {
    if let Some(cc) = spec {
        if !exists(cc) {
            return Err(cc_missing(target, cc, None));
        }
        return Ok(CCompiler {
            cc: Some(cc.to_owned()),
            ..CCompiler::default()
        });
    }
    if user_set {
        return Ok(CCompiler::default());
    }
    match default_cc(target) {
        None => Ok(CCompiler::default()),
        Some((cc, _)) if exists(cc) => {
            // A cross gcc's own `ar` (same binutils package); musl-gcc uses the host's.
            let ar = cc
                .strip_suffix("-gcc")
                .filter(|_| cc != "musl-gcc")
                .map(|prefix| format!("{prefix}-ar"))
                .filter(|ar| exists(ar));
            Ok(CCompiler {
                cc: Some(cc.to_owned()),
                ar,
                missing: None,
            })
        }
        Some(missing) => Ok(CCompiler {
            missing: Some(missing),
            ..CCompiler::default()
        }),
    }
}

/// The error for a C compiler `tool` that is not there, for `target`; `package` is the Debian
/// package of the usual compiler when that is what was missing.
pub(super) fn cc_missing(target: &str, tool: &str, package: Option<&str>) -> Error {
    Error::CcMissing {
        target: target.to_owned(),
        tool: tool.to_owned(),
        hint: match package {
            Some(package) => format!("install it (`apt-get install {package}`), or "),
            None => "install it, or ".to_owned(),
        },
        key: spec_key(target, "cc"),
    }
}

/// The tool a build script of the `cc` crate failed to find, read from cargo's stderr
/// (`failed to find tool "musl-gcc"`, the `cc` crate's `ToolNotFound` message).
pub(super) fn tool_not_found(stderr: &str) -> Option<String> {
    let (_, rest) = stderr.split_once("failed to find tool \"")?;
    let (tool, _) = rest.split_once('"')?;
    Some(tool.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_compilers_per_target() {
        assert_eq!(
            std::env::consts::ARCH,
            "x86_64",
            "these cases assume an x86_64 host"
        );
        assert_eq!(
            default_cc("x86_64-unknown-linux-musl"),
            Some(("musl-gcc", "musl-tools"))
        );
        assert_eq!(default_cc("x86_64-unknown-linux-gnu"), None);
        assert_eq!(
            default_cc("aarch64-unknown-linux-musl"),
            Some(("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"))
        );
        assert_eq!(
            default_cc("aarch64-unknown-linux-gnu"),
            Some(("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"))
        );
        assert_eq!(
            cc_env("x86_64-unknown-linux-musl"),
            "CC_x86_64_unknown_linux_musl"
        );
        assert_eq!(
            ar_env("aarch64-unknown-linux-musl"),
            "AR_aarch64_unknown_linux_musl"
        );
    }

    #[test]
    fn the_spec_wins_then_the_user_then_the_usual_compiler() {
        let target = "aarch64-unknown-linux-musl";
        let all = |_: &str| true;
        assert_eq!(
            choose_cc(target, Some("clang"), true, &all)
                .unwrap()
                .cc
                .as_deref(),
            Some("clang")
        );
        assert_eq!(
            choose_cc(target, None, true, &all).unwrap(),
            CCompiler::default()
        );
        assert_eq!(
            choose_cc(target, None, false, &all).unwrap(),
            CCompiler {
                cc: Some("aarch64-linux-gnu-gcc".into()),
                ar: Some("aarch64-linux-gnu-ar".into()),
                missing: None,
            }
        );
        let musl = choose_cc("x86_64-unknown-linux-musl", None, false, &all).unwrap();
        assert_eq!((musl.cc.as_deref(), musl.ar), (Some("musl-gcc"), None));
        let none = choose_cc("x86_64-unknown-linux-musl", None, false, &|_| false).unwrap();
        assert_eq!(
            none,
            CCompiler {
                missing: Some(("musl-gcc", "musl-tools")),
                ..CCompiler::default()
            }
        );
    }

    #[test]
    fn a_missing_spec_compiler_says_the_fix() {
        let error = choose_cc(
            "x86_64-unknown-linux-musl",
            Some("no-such-cc"),
            false,
            &|_| false,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "no C compiler for the rust target `x86_64-unknown-linux-musl`: `no-such-cc` is not \
             on PATH; install it, or set `[platform.\"linux/amd64\"] cc = \"...\"` in the spec, \
             or `CC_x86_64_unknown_linux_musl` for cargo"
        );
    }

    #[test]
    fn the_tool_a_build_script_missed_is_read_from_its_panic() {
        let stderr = "  --- stderr\n\n\n  error occurred in cc-rs: failed to find tool \
                      \"x86_64-linux-musl-gcc\": No such file or directory (os error 2)\n";
        assert_eq!(
            tool_not_found(stderr).as_deref(),
            Some("x86_64-linux-musl-gcc")
        );
        assert_eq!(tool_not_found("error: could not compile `x`"), None);
    }
}
