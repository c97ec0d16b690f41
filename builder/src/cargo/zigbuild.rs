//! Builders: plain `cargo build`, or `cargo zigbuild` (opt-in per platform), which links and
//! compiles C with `zig cc`.
//!
//! # Brief overview
//! `cargo zigbuild` (the `cargo-zigbuild` and `ziglang` packages on PyPI) runs `cargo build`
//! with zig as the C compiler and linker of the target: one toolchain that has the headers and
//! C libraries of every architecture, musl included, so a cross build needs no cross gcc. It
//! also pins the glibc version a gnu target links against, with a suffix on the triple:
//! `x86_64-unknown-linux-gnu.2.31` gives a binary that runs on glibc 2.31 and newer. The
//! binary still lands in cargo's directory of the plain triple (`x86_64-unknown-linux-gnu`),
//! where the build reads it from cargo's messages as always.
//!
//! With zigbuild the linker and C compiler are zig's, so the build sets neither
//! (`[platform."..."] linker` and `cc` are refused with it by the spec).
//!
//! ```
//! use cargo_oci_image::cargo::rust_triple;
//!
//! assert_eq!(rust_triple("x86_64-unknown-linux-gnu.2.31"), "x86_64-unknown-linux-gnu");
//! assert_eq!(rust_triple("aarch64-unknown-linux-musl"), "aarch64-unknown-linux-musl");
//! ```

use super::targets::find_program;
use super::Error;

/// The program that builds a cargo source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Builder {
    /// `cargo build`.
    #[default]
    Cargo,
    /// `cargo zigbuild`, from the `cargo-zigbuild` package.
    Zigbuild,
}

impl Builder {
    /// The spec's name of the builder.
    pub fn as_str(self) -> &'static str {
        match self {
            Builder::Cargo => "cargo",
            Builder::Zigbuild => "zigbuild",
        }
    }

    /// The builder the spec calls `name`.
    pub fn parse(name: &str) -> Option<Builder> {
        match name {
            "cargo" => Some(Builder::Cargo),
            "zigbuild" => Some(Builder::Zigbuild),
            _ => None,
        }
    }

    /// The cargo subcommand: `build` or `zigbuild`.
    pub(super) fn subcommand(self) -> &'static str {
        match self {
            Builder::Cargo => "build",
            Builder::Zigbuild => "zigbuild",
        }
    }

    /// Checks that the builder's programs are installed: `cargo-zigbuild` and a zig it can use
    /// (`zig` on `PATH`, or `$CARGO_ZIGBUILD_ZIG_PATH`, or the `ziglang` Python package, which
    /// cargo-zigbuild finds on its own and is not checked here).
    pub(super) fn check_installed(self) -> Result<(), Error> {
        match self {
            Builder::Cargo => Ok(()),
            Builder::Zigbuild if find_program("cargo-zigbuild").is_some() => Ok(()),
            Builder::Zigbuild => Err(Error::ZigbuildMissing),
        }
    }
}

/// The rust target triple of a target as zigbuild writes it: without a glibc version suffix
/// (`x86_64-unknown-linux-gnu.2.31` -> `x86_64-unknown-linux-gnu`).
pub fn rust_triple(target: &str) -> &str {
    match target.split_once('.') {
        Some((triple, version))
            if !version.is_empty()
                && version
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            triple
        }
        _ => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_suffixes_are_not_part_of_the_triple() {
        assert_eq!(
            rust_triple("aarch64-unknown-linux-gnu.2.17"),
            "aarch64-unknown-linux-gnu"
        );
        assert_eq!(
            rust_triple("x86_64-unknown-linux-musl"),
            "x86_64-unknown-linux-musl"
        );
        // A dot that is not a version stays (`thumbv8m.main-none-eabi`).
        assert_eq!(
            rust_triple("thumbv8m.main-none-eabi"),
            "thumbv8m.main-none-eabi"
        );
    }

    #[test]
    fn builders_round_trip_through_their_names() {
        for b in [Builder::Cargo, Builder::Zigbuild] {
            assert_eq!(Builder::parse(b.as_str()), Some(b));
        }
        assert_eq!(Builder::parse("cross"), None);
        assert_eq!(Builder::Zigbuild.subcommand(), "zigbuild");
    }
}
