//! Stripping: what debug information a binary keeps in the image, and how much of it is left.
//!
//! # Brief overview
//! A release binary keeps its symbol table, and the standard library's debug information unless
//! cargo strips it; a crate whose profile sets `debug = 1` or more keeps much more (ripgrep's is
//! mostly debug information). None of it is used at run time, so binaries go into images
//! stripped of symbols by default ([`Strip::Symbols`]). The build asks cargo for it with the
//! profile setting `strip` through `CARGO_PROFILE_<PROFILE>_STRIP` ([`profile_env`]), so rustc
//! strips while linking: no `strip` program is needed for any target, and the user's own
//! `cargo build` (its own target directory) is not rebuilt.
//!
//! # What is reported
//! Knowing how much stripping saved would take a second, unstripped build. What the build reports
//! instead is measured on the binary that goes into the image, from its ELF section headers
//! ([`DebugSize::of`]): its size and how many bytes of it are debug information (`.debug_*`
//! sections) and symbols (`.symtab`, `.strtab`). For a stripped binary both are (close to) zero;
//! for `strip = false` they say what stripping would save.
//!
//! ```
//! use cargo_oci_image::cargo::{profile_env, Strip};
//!
//! assert_eq!(profile_env("release"), "CARGO_PROFILE_RELEASE_STRIP");
//! assert_eq!(Strip::default().as_str(), "symbols");
//! ```

use std::path::Path;

use object::{Object, ObjectSection};

/// How much debug information a binary keeps: cargo's profile setting `strip`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strip {
    /// Keep everything the profile produces (`strip = false` or `"none"`).
    None,
    /// Remove debug information, keep symbols (`"debuginfo"`).
    Debuginfo,
    /// Remove debug information and symbols (`true` or `"symbols"`): the default.
    #[default]
    Symbols,
}

impl Strip {
    /// Cargo's name of the setting.
    pub fn as_str(self) -> &'static str {
        match self {
            Strip::None => "none",
            Strip::Debuginfo => "debuginfo",
            Strip::Symbols => "symbols",
        }
    }

    /// The setting cargo calls `name` (`none`, `debuginfo` or `symbols`).
    pub fn parse(name: &str) -> Option<Strip> {
        match name {
            "none" => Some(Strip::None),
            "debuginfo" => Some(Strip::Debuginfo),
            "symbols" => Some(Strip::Symbols),
            _ => None,
        }
    }
}

/// The environment variable that sets `strip` for cargo's profile `profile`:
/// `CARGO_PROFILE_RELEASE_STRIP`.
pub fn profile_env(profile: &str) -> String {
    format!(
        "CARGO_PROFILE_{}_STRIP",
        profile.to_ascii_uppercase().replace('-', "_")
    )
}

/// The size of a binary and of the parts of it that stripping removes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DebugSize {
    /// The file's size in bytes.
    pub size: u64,
    /// Bytes of debug information: the `.debug_*` sections (compressed or not) that are not
    /// loaded at run time.
    pub debug_info: u64,
    /// Bytes of the symbol table and its strings (`.symtab`, `.strtab`).
    pub symbols: u64,
}

impl DebugSize {
    /// Reads the section headers of the ELF file `path`. A file that is not an object file gets
    /// its size and zero for the rest (nothing to strip that we know of).
    pub fn of(path: &Path) -> std::io::Result<DebugSize> {
        let data = std::fs::read(path)?;
        let mut out = DebugSize {
            size: data.len() as u64,
            ..DebugSize::default()
        };
        let Ok(file) = object::File::parse(&*data) else {
            return Ok(out);
        };
        for section in file.sections() {
            let Ok(name) = section.name() else { continue };
            let size = section.file_range().map_or(0, |(_, size)| size);
            // Loaded sections are not debug information whatever their name: rustc's
            // `.debug_gdb_scripts` (a few bytes that strip keeps) is one.
            // (An executable's sections that are not loaded have no address.)
            if section.address() != 0 {
                continue;
            }
            if name.starts_with(".debug_") || name.starts_with(".zdebug_") {
                out.debug_info += size;
            } else if name == ".symtab" || name == ".strtab" {
                out.symbols += size;
            }
        }
        Ok(out)
    }

    /// The bytes stripping of symbols would remove.
    pub fn strippable(&self) -> u64 {
        self.debug_info + self.symbols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_name_their_environment_variable() {
        assert_eq!(profile_env("release"), "CARGO_PROFILE_RELEASE_STRIP");
        assert_eq!(profile_env("dev"), "CARGO_PROFILE_DEV_STRIP");
        assert_eq!(profile_env("dist-lto"), "CARGO_PROFILE_DIST_LTO_STRIP");
    }

    #[test]
    fn settings_round_trip_through_cargo_names() {
        for s in [Strip::None, Strip::Debuginfo, Strip::Symbols] {
            assert_eq!(Strip::parse(s.as_str()), Some(s));
        }
        assert_eq!(Strip::parse("all"), None);
    }

    #[test]
    fn the_test_binary_itself_has_symbols_and_a_text_file_has_none() {
        // Test binaries are built unstripped, with symbols at least.
        let exe = std::env::current_exe().unwrap();
        let size = DebugSize::of(&exe).unwrap();
        assert_eq!(size.size, std::fs::metadata(&exe).unwrap().len());
        assert!(size.symbols > 0, "{size:?}");
        assert!(size.strippable() < size.size, "{size:?}");

        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not an ELF file\n").unwrap();
        assert_eq!(
            DebugSize::of(&text).unwrap(),
            DebugSize {
                size: 16,
                debug_info: 0,
                symbols: 0
            }
        );
    }
}
