//! Platforms and rust targets: which target triple builds a platform's binaries by default, and
//! which cross linker (and Debian package) links them.
//!
//! # Brief overview
//! [`default_target`] maps an OCI platform to the musl target that gives a static binary for it
//! (`linux/arm64` -> `aarch64-unknown-linux-musl`); [`default_linker`] names the usual cross gcc
//! of a target and the Debian package that installs it; [`resolve_linker`] decides the linker a
//! build uses: the spec's, else cargo's own configuration (left to cargo), else the usual cross
//! gcc when it is on `PATH`, else a [`Error::LinkerMissing`](super::Error::LinkerMissing) that
//! says how to get one.
//!
//! ```
//! use cargo_oci_image::cargo::default_target;
//! use cargo_oci_image::oci::Platform;
//!
//! let arm64 = Platform::parse("linux/arm64").unwrap();
//! assert_eq!(default_target(&arm64), Some("aarch64-unknown-linux-musl"));
//! ```

use std::path::{Path, PathBuf};

use super::Error;
use crate::types::Platform;

/// Platforms with a default rust target: `(os/arch[/variant], target triple)`.
pub const DEFAULT_TARGETS: [(&str, &str); 9] = [
    ("linux/amd64", "x86_64-unknown-linux-musl"),
    ("linux/arm64", "aarch64-unknown-linux-musl"),
    ("linux/arm64/v8", "aarch64-unknown-linux-musl"),
    ("linux/arm/v7", "armv7-unknown-linux-musleabihf"),
    ("linux/arm/v6", "arm-unknown-linux-musleabihf"),
    ("linux/386", "i686-unknown-linux-musl"),
    ("linux/riscv64", "riscv64gc-unknown-linux-musl"),
    ("linux/s390x", "s390x-unknown-linux-musl"),
    ("linux/ppc64le", "powerpc64le-unknown-linux-musl"),
];

/// Cross linkers by the architecture part of a triple: `(arch, linker, Debian package)`.
const CROSS_LINKERS: [(&str, &str, &str); 7] = [
    ("x86_64", "x86_64-linux-gnu-gcc", "gcc-x86-64-linux-gnu"),
    ("aarch64", "aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
    (
        "armv7",
        "arm-linux-gnueabihf-gcc",
        "gcc-arm-linux-gnueabihf",
    ),
    ("arm", "arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf"),
    (
        "riscv64gc",
        "riscv64-linux-gnu-gcc",
        "gcc-riscv64-linux-gnu",
    ),
    ("s390x", "s390x-linux-gnu-gcc", "gcc-s390x-linux-gnu"),
    (
        "powerpc64le",
        "powerpc64le-linux-gnu-gcc",
        "gcc-powerpc64le-linux-gnu",
    ),
];

/// The musl target triple that builds static binaries for `platform`, if there is a default.
pub fn default_target(platform: &Platform) -> Option<&'static str> {
    let name = platform.to_string();
    DEFAULT_TARGETS
        .iter()
        .find(|(p, _)| *p == name)
        .map(|(_, t)| *t)
}

/// The platform whose default target is `target` (for messages), if any.
pub fn platform_of_target(target: &str) -> Option<&'static str> {
    DEFAULT_TARGETS
        .iter()
        .find(|(_, t)| *t == target)
        .map(|(p, _)| *p)
}

/// The usual cross gcc for `target` and the Debian package that has it.
pub fn default_linker(target: &str) -> Option<(&'static str, &'static str)> {
    let arch = target.split('-').next().unwrap_or_default();
    CROSS_LINKERS
        .iter()
        .find(|(a, _, _)| *a == arch)
        .map(|(_, linker, package)| (*linker, *package))
}

/// Whether binaries for `target` run on (and link with the compilers of) this host: same
/// architecture.
pub fn is_host_arch(target: &str) -> bool {
    let arch = target.split('-').next().unwrap_or_default();
    let host = std::env::consts::ARCH;
    arch == host || (host == "x86" && matches!(arch, "i586" | "i686"))
}

/// The name of the environment variable cargo reads a target's linker from:
/// `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER`.
pub fn linker_env(target: &str) -> String {
    format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

/// The linker to give cargo for `target`, for a build in `context`: `spec` (the spec's
/// `linker`, which must exist), else `None` when cargo has one of its own (host architecture,
/// `CARGO_TARGET_<TRIPLE>_LINKER`, `target.<triple>.linker` in a `.cargo/config.toml` cargo
/// reads), else the usual cross gcc when it is on `PATH`. Fails with the fix when there is none.
pub fn resolve_linker(
    target: &str,
    spec: Option<&str>,
    context: &Path,
) -> Result<Option<String>, Error> {
    let cargo_has_one = is_host_arch(target)
        || std::env::var_os(linker_env(target)).is_some()
        || cargo_config_linker(target, context);
    choose_linker(target, spec, cargo_has_one, &|p| find_program(p).is_some())
}

/// [`resolve_linker`] with the environment given: whether cargo has a linker of its own, and
/// which programs exist.
fn choose_linker(
    target: &str,
    spec: Option<&str>,
    cargo_has_one: bool,
    exists: &dyn Fn(&str) -> bool,
) -> Result<Option<String>, Error> {
    if let Some(linker) = spec {
        return if exists(linker) {
            Ok(Some(linker.to_string()))
        } else {
            Err(Error::LinkerMissing {
                target: target.to_string(),
                linker: linker.to_string(),
                hint: match default_linker(target) {
                    Some((l, package)) if l == linker => {
                        format!("install it (`apt-get install {package}`), or ")
                    }
                    _ => "install it, or ".to_string(),
                },
                key: spec_key(target, "linker"),
            })
        };
    }
    if cargo_has_one {
        return Ok(None);
    }
    match default_linker(target) {
        Some((linker, _)) if exists(linker) => Ok(Some(linker.to_string())),
        Some((linker, package)) => Err(Error::LinkerMissing {
            target: target.to_string(),
            linker: linker.to_string(),
            hint: format!("install it (`apt-get install {package}`), or "),
            key: spec_key(target, "linker"),
        }),
        None => Err(Error::LinkerMissing {
            target: target.to_string(),
            linker: "a cross linker".to_string(),
            hint: String::new(),
            key: spec_key(target, "linker"),
        }),
    }
}

/// The spec key `key` (`linker`, `cc`) of the platform that builds for `target`, for messages:
/// `[platform."linux/arm64"] linker = "..."`.
pub(super) fn spec_key(target: &str, key: &str) -> String {
    let platform = platform_of_target(target).unwrap_or("OS/ARCH");
    format!("[platform.\"{platform}\"] {key} = \"...\"")
}

/// `program` as cargo would run it: a path (with a `/`) that exists, or a file on `PATH`.
pub(super) fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether a cargo configuration file cargo reads for a build in `context` (`.cargo/config.toml`
/// or `.cargo/config` in it or an ancestor, or in `$CARGO_HOME`) sets `target.<target>.linker`.
fn cargo_config_linker(target: &str, context: &Path) -> bool {
    let mut dirs: Vec<PathBuf> = context.ancestors().map(|d| d.join(".cargo")).collect();
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
    {
        dirs.push(home);
    }
    dirs.iter()
        .flat_map(|d| [d.join("config.toml"), d.join("config")])
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|text| text.parse::<toml::Table>().ok())
        .any(|table| {
            table
                .get("target")
                .and_then(|t| t.get(target))
                .and_then(|t| t.get("linker"))
                .is_some()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn platforms_map_to_musl_targets() {
        assert_eq!(
            default_target(&platform("linux/amd64")),
            Some("x86_64-unknown-linux-musl")
        );
        assert_eq!(
            default_target(&platform("linux/arm64")),
            Some("aarch64-unknown-linux-musl")
        );
        assert_eq!(
            default_target(&platform("linux/arm/v7")),
            Some("armv7-unknown-linux-musleabihf")
        );
        assert_eq!(
            default_target(&platform("linux/riscv64")),
            Some("riscv64gc-unknown-linux-musl")
        );
        assert_eq!(
            default_target(&platform("linux/s390x")),
            Some("s390x-unknown-linux-musl")
        );
        assert_eq!(
            default_target(&platform("linux/ppc64le")),
            Some("powerpc64le-unknown-linux-musl")
        );
        assert_eq!(default_target(&platform("linux/arm")), None);
        assert_eq!(default_target(&platform("linux/mips64")), None);
        assert_eq!(default_target(&platform("windows/amd64")), None);
    }

    #[test]
    fn cross_linkers_and_packages() {
        assert_eq!(
            default_linker("aarch64-unknown-linux-musl"),
            Some(("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"))
        );
        assert_eq!(
            default_linker("armv7-unknown-linux-musleabihf"),
            Some(("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf"))
        );
        assert_eq!(
            linker_env("aarch64-unknown-linux-musl"),
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER"
        );
        assert_eq!(
            platform_of_target("aarch64-unknown-linux-musl"),
            Some("linux/arm64")
        );
    }

    #[test]
    fn a_missing_spec_linker_says_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let error = resolve_linker(
            "aarch64-unknown-linux-musl",
            Some("no-such-linker-gcc"),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("no-such-linker-gcc"), "{error}");
        assert!(
            error.contains("[platform.\"linux/arm64\"] linker"),
            "{error}"
        );
    }

    #[test]
    fn the_usual_cross_gcc_is_used_when_installed_and_named_when_not() {
        let target = "aarch64-unknown-linux-musl";
        let installed = |p: &str| p == "aarch64-linux-gnu-gcc";
        assert_eq!(
            choose_linker(target, None, false, &installed).unwrap(),
            Some("aarch64-linux-gnu-gcc".to_string())
        );
        // Cargo's own configuration wins over the default.
        assert_eq!(choose_linker(target, None, true, &installed).unwrap(), None);
        // The spec's linker wins over everything.
        let spec = |p: &str| p == "zig-cc";
        assert_eq!(
            choose_linker(target, Some("zig-cc"), true, &spec).unwrap(),
            Some("zig-cc".to_string())
        );

        let error = choose_linker(target, None, false, &|_| false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "no linker for the rust target `aarch64-unknown-linux-musl`: `aarch64-linux-gnu-gcc` \
             is not on PATH; install it (`apt-get install gcc-aarch64-linux-gnu`), or set \
             `[platform.\"linux/arm64\"] linker = \"...\"` in the spec, or \
             `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER` for cargo"
        );
        let error = choose_linker("mips64el-unknown-linux-muslabi64", None, false, &|_| false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("[platform.\"OS/ARCH\"] linker"), "{error}");
    }

    #[test]
    fn a_missing_target_says_rustup_target_add() {
        let error = Error::TargetMissing {
            target: "aarch64-unknown-linux-musl".into(),
        }
        .to_string();
        assert!(
            error.contains("rustup target add aarch64-unknown-linux-musl"),
            "{error}"
        );
    }

    #[test]
    fn cargo_config_linkers_are_left_to_cargo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".cargo")).unwrap();
        std::fs::write(
            dir.path().join(".cargo/config.toml"),
            "[target.s390x-unknown-linux-musl]\nlinker = \"my-s390x-cc\"\n",
        )
        .unwrap();
        let sub = dir.path().join("crate");
        std::fs::create_dir(&sub).unwrap();
        assert!(cargo_config_linker("s390x-unknown-linux-musl", &sub));
        assert!(!cargo_config_linker("aarch64-unknown-linux-musl", &sub));
        assert_eq!(
            resolve_linker("s390x-unknown-linux-musl", None, &sub).unwrap(),
            None
        );
    }

    #[test]
    fn host_targets_need_no_linker() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
        assert_eq!(resolve_linker(&host, None, dir.path()).unwrap(), None);
    }
}
