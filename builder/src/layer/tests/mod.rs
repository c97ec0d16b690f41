//! End-to-end tests of the layer module: spec -> tree -> blob, read back by the `tar` crate and by
//! real tools (GNU tar, zcat, zstd).

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::*;
use crate::spec::{CargoSource, EntrySpec, LayerSpec, Owner, Source};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A build context in a temporary directory.
struct Ctx {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cargo: HashMap<CargoSource, PathBuf>,
    /// What host trees leave out (`None`: nothing).
    filter: Option<HostFilter>,
}

impl Ctx {
    fn new() -> Ctx {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap().join("ctx");
        fs::create_dir(&root).unwrap();
        Ctx {
            _dir: dir,
            root,
            cargo: HashMap::new(),
            filter: None,
        }
    }

    /// Writes a file (creating parents) with exactly `mode`, whatever the umask.
    fn file(&self, rel: &str, content: &[u8], mode: u32) -> PathBuf {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn dir(&self, rel: &str, mode: u32) {
        let p = self.root.join(rel);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn build(&self, entries: Vec<EntrySpec>) -> Result<LayerTree, Error> {
        let layer = LayerSpec {
            name: "test".into(),
            entries,
            remove: Vec::new(),
        };
        LayerTree::from_spec(
            &layer,
            &SourceContext {
                context: &self.root,
                host_filter: self.filter.as_ref(),
                cargo_outputs: &self.cargo,
                stages: None,
                debian: None,
                scratch: None,
            },
        )
    }
}

fn add(dest: &str, source: Source) -> EntrySpec {
    EntrySpec {
        dest: dest.trim_matches('/').to_owned(),
        dest_is_dir: dest.ends_with('/'),
        source,
        owner: Owner::default(),
        mode: None,
        dir_mode: None,
        platforms: vec![],
    }
}

fn path(p: &str) -> Source {
    Source::Path {
        path: p.into(),
        include: vec![],
        exclude: vec![],
    }
}

fn globbed(p: &str, include: &[&str], exclude: &[&str]) -> Source {
    Source::Path {
        path: p.into(),
        include: include.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
    }
}

fn opts(compression: Compression, threads: usize) -> WriteOptions {
    WriteOptions {
        compression,
        mtime: 1_700_000_000,
        threads,
    }
}

/// The uncompressed tar of a tree.
fn tar_of(tree: &LayerTree) -> Vec<u8> {
    let mut out = Vec::new();
    write_layer(tree, &opts(Compression::None, 1), &mut out).unwrap();
    out
}

/// One member of a tar as the `tar` crate reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
}

fn members(tar: &[u8]) -> Vec<Member> {
    let mut ar = tar::Archive::new(tar);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let pax_uid = e
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .map(|x| x.unwrap())
                .find(|x| x.key() == Ok("uid"))
                .map(|x| x.value().unwrap().parse().unwrap());
            Member {
                path: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                kind: h.entry_type().as_byte() as char,
                mode: h.mode().unwrap(),
                uid: pax_uid.unwrap_or_else(|| h.uid().unwrap()),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap()),
                data,
            }
        })
        .collect()
}

fn names(tar: &[u8]) -> Vec<String> {
    members(tar).into_iter().map(|m| m.path).collect()
}

fn member<'a>(ms: &'a [Member], path: &str) -> &'a Member {
    ms.iter()
        .find(|m| m.path == path)
        .unwrap_or_else(|| panic!("no member {path} in {ms:#?}"))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Deterministic, moderately compressible bytes (text-like: words from an LCG).
fn corpus(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "layer ",
        "image ",
        "tar ",
        "digest ",
        "rust ",
        "cargo ",
        "zstd ",
        "gzip ",
        "blob\n",
        "oci ",
        "0x7f ",
        "build ",
        "deterministic ",
        "registry ",
        "manifest ",
        "{}\n",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut x = seed;
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let w = WORDS[(x >> 60) as usize];
        out.extend_from_slice(w.as_bytes());
        if (x >> 40) & 0xff == 0 {
            out.extend_from_slice(&x.to_le_bytes()); // a little noise
        }
    }
    out.truncate(len);
    out
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

mod blobs;
mod entries;
mod filter;
mod pipeline;
