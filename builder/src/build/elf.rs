//! Dynamic binaries checked: a cargo binary that asks for a program interpreter (`PT_INTERP`,
//! the dynamic loader, e.g. glibc's `/lib64/ld-linux-x86-64.so.2`) only runs where that path
//! exists. On `scratch`, or on a base without that libc, the kernel's `execve` fails with
//! `ENOENT` and the runtime prints `exec /usr/local/bin/app: no such file or directory`, which
//! names the binary (that is there), not the loader (that is not).
//!
//! So while planning, each cargo executable of the image's stage is read for its interpreter
//! ([`interpreter`]: program headers only, through the `object` crate; a static binary, musl's
//! default, has none and costs nothing more). Before the image's config and manifest are
//! written, the interpreters asked for are looked up in the image's merged filesystem (the
//! base's layers and the image's own, through [`crate::rootfs`], symlinks resolved inside the
//! image, as Debian's `/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...` needs); a
//! missing one fails the build with an error naming the binary, the loader and the two fixes.
//! An image the store already holds under its key was checked when it was built.

use std::fs::File;
use std::path::Path;

use object::read::elf::{FileHeader, ProgramHeader};
use object::read::ReadCache;
use object::{elf, FileKind};

use crate::rootfs::{NodeKind, Rootfs};

/// A cargo binary of the image that needs a dynamic loader.
#[derive(Debug, Clone)]
pub(super) struct DynamicBinary {
    /// Where the binary is in the image (`/usr/local/bin/app`).
    pub path: String,
    /// The target triple cargo built it for.
    pub target: String,
    /// The interpreter it asks for (`/lib64/ld-linux-x86-64.so.2`).
    pub interpreter: String,
}

/// The program interpreter the ELF executable at `path` asks for (`PT_INTERP`), or `None` for
/// a static binary or a file that is not ELF.
pub(super) fn interpreter(path: &Path) -> std::io::Result<Option<String>> {
    let cache = ReadCache::new(File::open(path)?);
    let invalid = |e: object::read::Error| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad ELF file: {e}"),
        )
    };
    let interp = match FileKind::parse(&cache) {
        Ok(FileKind::Elf32) => interp_of::<elf::FileHeader32<object::Endianness>>(&cache),
        Ok(FileKind::Elf64) => interp_of::<elf::FileHeader64<object::Endianness>>(&cache),
        _ => return Ok(None),
    }
    .map_err(invalid)?;
    Ok(interp.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

fn interp_of<H: FileHeader<Endian = object::Endianness>>(
    data: &ReadCache<File>,
) -> object::read::Result<Option<Vec<u8>>> {
    let header = H::parse(data)?;
    let endian = header.endian()?;
    for segment in header.program_headers(endian, data)? {
        if let Some(interp) = segment.interpreter(endian, data)? {
            return Ok(Some(interp.to_vec()));
        }
    }
    Ok(None)
}

/// The path an interpreter resolves to in `fs` (symlinks followed inside it), when it is a
/// regular file there.
pub(super) fn find_in(fs: &Rootfs, interpreter: &str) -> Option<String> {
    let resolved = fs.resolve(interpreter).ok()?;
    matches!(fs.get(&resolved)?.kind, NodeKind::File { .. }).then_some(resolved)
}

/// The message of a binary whose interpreter the image does not have.
pub(super) fn missing_message(binary: &DynamicBinary, image: &str, base: &str) -> String {
    format!(
        "the binary `{}` of image {image} (built for `{}`) is dynamically linked and needs its \
         loader `{}`, which the image's filesystem (base: {base}) does not have: it would fail \
         at run time with \"no such file or directory\". Either build a static binary for a \
         musl target (`target = \"{}\"` on the cargo entry or the platform; the default), or \
         put it on a base with that libc (e.g. `from = \"debian:bookworm-slim\"` or \
         \"gcr.io/distroless/cc-debian12\" for glibc, or a stage holding the loader and the \
         libraries `ldd` lists)",
        binary.path,
        binary.target,
        binary.interpreter,
        musl_of(&binary.target),
    )
}

/// The musl triple of the same architecture as `target` (`x86_64-unknown-linux-gnu` ->
/// `x86_64-unknown-linux-musl`).
fn musl_of(target: &str) -> String {
    match target.split_once("-linux-") {
        Some((arch, env)) if env.starts_with("gnu") => {
            let env = env.replacen("gnu", "musl", 1);
            format!("{arch}-linux-{env}")
        }
        _ => "x86_64-unknown-linux-musl".to_owned(),
    }
}

/// Where a cargo entry's binary lands in the image.
pub(super) fn image_path(entry: &crate::spec::EntrySpec, exe: &Path) -> String {
    let file = exe
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    match (
        entry.dest_is_dir || entry.dest.is_empty(),
        entry.dest.as_str(),
    ) {
        (true, "") => format!("/{file}"),
        (true, dest) => format!("/{dest}/{file}"),
        (false, dest) => format!("/{dest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{self, Compression, Entry, EntryKind, FileSource, LayerTree, Origin};
    use crate::rootfs::LayerBlobRef;
    use std::path::PathBuf;

    /// Writes `bytes` as `dir/name`.
    fn fixture(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// A minimal little-endian ELF64 executable: the file header, then one program header
    /// (`PT_INTERP` naming `interp`, or a `PT_LOAD` for a static one), then the interpreter.
    fn elf64(interp: Option<&str>) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        b.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
        b.extend_from_slice(&62u16.to_le_bytes()); // e_machine: x86-64
        b.extend_from_slice(&1u32.to_le_bytes()); // e_version
        b.extend_from_slice(&0x400000u64.to_le_bytes()); // e_entry
        b.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
        b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        b.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
        b.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
        b.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
        b.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
        b.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        b.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        let data = interp.map(|i| format!("{i}\0")).unwrap_or_default();
        let p_type = if interp.is_some() { 3u32 } else { 1u32 }; // PT_INTERP / PT_LOAD
        b.extend_from_slice(&p_type.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes()); // p_flags
        b.extend_from_slice(&120u64.to_le_bytes()); // p_offset
        b.extend_from_slice(&0u64.to_le_bytes()); // p_vaddr
        b.extend_from_slice(&0u64.to_le_bytes()); // p_paddr
        b.extend_from_slice(&(data.len() as u64).to_le_bytes()); // p_filesz
        b.extend_from_slice(&(data.len() as u64).to_le_bytes()); // p_memsz
        b.extend_from_slice(&1u64.to_le_bytes()); // p_align
        assert_eq!(b.len(), 120);
        b.extend_from_slice(data.as_bytes());
        b
    }

    /// A merged filesystem with Debian's loader layout: `/lib64/ld-linux-x86-64.so.2` a
    /// symlink to the file in `/lib/x86_64-linux-gnu`.
    fn debian_like(dir: &Path) -> Rootfs {
        let origin = Origin {
            entry: 0,
            implicit: false,
        };
        let entry = |kind| Entry {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            origin,
        };
        let mut tree = LayerTree::new();
        tree.insert(
            "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            entry(EntryKind::File {
                source: FileSource::Inline(b"loader".as_slice().into()),
                size: 6,
            }),
        )
        .unwrap();
        tree.insert(
            "lib64/ld-linux-x86-64.so.2",
            entry(EntryKind::Symlink {
                target: "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into(),
            }),
        )
        .unwrap();
        tree.insert("lib/ld-musl-x86_64.so.1", entry(EntryKind::Dir))
            .unwrap();
        let opts = layer::WriteOptions {
            compression: Compression::Gzip,
            mtime: 0,
            threads: 1,
        };
        let blob = layer::write_layer_to_dir(&tree, &opts, dir).unwrap();
        let layer = LayerBlobRef {
            path: dir.join(blob.digest.trim_start_matches("sha256:")),
            media_type: blob.media_type.clone(),
        };
        Rootfs::open("image", &[layer], dir).unwrap()
    }

    #[test]
    fn a_static_binary_asks_for_no_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let exe = fixture(dir.path(), "static", &elf64(None));
        assert_eq!(interpreter(&exe).unwrap(), None);
        let text = fixture(dir.path(), "script", b"#!/bin/sh\necho hi\n");
        assert_eq!(
            interpreter(&text).unwrap(),
            None,
            "not ELF: nothing to check"
        );
    }

    #[test]
    fn a_dynamic_binary_names_its_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let exe = fixture(
            dir.path(),
            "dynamic",
            &elf64(Some("/lib64/ld-linux-x86-64.so.2")),
        );
        assert_eq!(
            interpreter(&exe).unwrap().as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        // This test program itself is a dynamic binary of the host (a gnu target).
        let me = std::env::current_exe().unwrap();
        assert!(interpreter(&me)
            .unwrap()
            .is_some_and(|i| i.starts_with('/')));
    }

    #[test]
    fn a_truncated_elf_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = elf64(Some("/lib64/ld-linux-x86-64.so.2"));
        let exe = fixture(dir.path(), "cut", &bytes[..100]);
        assert!(interpreter(&exe).is_err());
    }

    #[test]
    fn the_interpreter_is_found_through_a_symlink_or_reported_missing() {
        let dir = tempfile::tempdir().unwrap();
        let fs = debian_like(dir.path());
        assert_eq!(
            find_in(&fs, "/lib64/ld-linux-x86-64.so.2").as_deref(),
            Some("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert_eq!(find_in(&fs, "/lib/ld-linux-aarch64.so.1"), None, "missing");
        assert_eq!(
            find_in(&fs, "/lib/ld-musl-x86_64.so.1"),
            None,
            "a directory"
        );
    }

    #[test]
    fn the_message_names_the_binary_the_loader_and_both_fixes() {
        let binary = DynamicBinary {
            path: "/usr/local/bin/app".into(),
            target: "aarch64-unknown-linux-gnu".into(),
            interpreter: "/lib/ld-linux-aarch64.so.1".into(),
        };
        let m = missing_message(&binary, "app", "scratch");
        for part in [
            "`/usr/local/bin/app`",
            "`/lib/ld-linux-aarch64.so.1`",
            "aarch64-unknown-linux-musl",
            "base: scratch",
            "glibc",
        ] {
            assert!(m.contains(part), "{part} in {m}");
        }
    }
}
