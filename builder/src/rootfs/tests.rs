//! The merged view over hand-made layers (gzip, zstd, plain), copies out of it, and whiteout
//! layers checked with tools nobody here wrote (`umoci`, `oci-image-tool`, GNU `tar`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::layer::{write_layer, write_layer_to_dir, Compression, LayerBlob, WriteOptions};
use crate::oci::{self, LayoutWriter, Platform};
use crate::spec::ImageConfig;

/// Runs a peer tool; fails naming `just deps` when it is not installed.
fn tool(name: &str, args: &[&str]) -> String {
    let out = Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{name}` ({e}); install the test tools with `just deps`")
    });
    assert!(
        out.status.success(),
        "`{name} {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One member of a hand-made layer tar.
enum M<'a> {
    File(&'a str, &'a str, u32, u64),
    Dir(&'a str, u32, u64),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    /// A device or fifo: name, type, major, minor.
    Device(&'a str, tar::EntryType, u32, u32),
}

fn tar_bytes(members: &[M<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        let (name, data): (&str, &[u8]) = match *m {
            M::File(name, content, mode, owner) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(mode);
                h.set_uid(owner);
                h.set_gid(owner);
                h.set_size(content.len() as u64);
                (name, content.as_bytes())
            }
            M::Dir(name, mode, owner) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(mode);
                h.set_uid(owner);
                h.set_gid(owner);
                h.set_size(0);
                (name, b"")
            }
            M::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(0);
                h.set_link_name(target).unwrap();
                (name, b"")
            }
            M::HardLink(name, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o600);
                h.set_uid(7);
                h.set_gid(7);
                h.set_size(0);
                h.set_link_name(target).unwrap();
                (name, b"")
            }
            M::Device(name, kind, major, minor) => {
                h.set_entry_type(kind);
                h.set_mode(0o620);
                h.set_uid(0);
                h.set_gid(5);
                h.set_size(0);
                h.set_device_major(major).unwrap();
                h.set_device_minor(minor).unwrap();
                (name, b"")
            }
        };
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes a layer blob compressed as `compression` into `dir`; returns its reference.
fn blob(dir: &Path, name: &str, compression: Compression, members: &[M<'_>]) -> LayerBlobRef {
    let tar = tar_bytes(members);
    let bytes = match compression {
        Compression::None => tar,
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            gz.write_all(&tar).unwrap();
            gz.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(&tar[..], 3).unwrap(),
    };
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    LayerBlobRef {
        path,
        media_type: compression.media_type().to_owned(),
    }
}

/// A three-layer stage exercising every merge rule.
fn stage(dir: &Path) -> Rootfs {
    let l1 = blob(
        dir,
        "l1",
        Compression::Gzip,
        &[
            M::Dir("./", 0o755, 0),
            M::Dir("./etc/", 0o755, 0),
            M::File("./etc/a", "one", 0o644, 0),
            M::File("./etc/b", "bee", 0o600, 5),
            M::File("./etc/c", "sea", 0o644, 0),
            M::Dir("usr/share/doc/x/", 0o755, 0),
            M::File("usr/share/doc/x/y", "doc", 0o644, 0),
            M::File("usr/share/keep", "k", 0o644, 0),
            M::File("opt/o/1", "1", 0o644, 0),
            M::File("opt/o/2", "2", 0o644, 0),
            M::File("srv/d/f", "f", 0o644, 0),
            M::Dir("usr/lib/", 0o755, 0),
            M::Symlink("lib", "usr/lib"),
            M::HardLink("etc/a-link", "etc/a"),
        ],
    );
    let l2 = blob(
        dir,
        "l2",
        Compression::Zstd,
        &[
            M::File("etc/a", "two", 0o640, 3),
            M::File("etc/.wh.b", "", 0, 0),
            M::File("usr/share/.wh.doc", "", 0, 0),
            M::Dir("opt/o/", 0o700, 9),
            M::File("opt/o/.wh..wh..opq", "", 0, 0),
            M::File("opt/o/3", "3", 0o644, 0),
            M::File("etc/.wh..wh.plnk", "", 0, 0),
            M::HardLink("etc/h", "etc/a"),
            M::File("lib/x", "via symlink", 0o755, 0),
        ],
    );
    let l3 = blob(
        dir,
        "l3",
        Compression::None,
        &[
            // A whiteout never hides an entry of its own layer.
            M::File("etc/c", "new sea", 0o644, 0),
            M::File("etc/.wh.c", "", 0, 0),
            // A file over a directory drops the directory's subtree.
            M::File("srv/d", "now a file", 0o644, 0),
            M::Symlink("l/abs", "/etc/a"),
            M::Symlink("l/rel", "../etc/a"),
            M::Symlink("l/escape", "../../../../../etc/a"),
            M::Symlink("l/passwd", "../../etc/passwd"),
            M::Symlink("l/dir", "/usr/../etc/"),
            M::Symlink("l/loop1", "loop2"),
            M::Symlink("l/loop2", "loop1"),
            M::Symlink("l/dangling", "/nowhere"),
        ],
    );
    Rootfs::open("base", &[l1, l2, l3], dir).unwrap()
}

fn text(fs: &Rootfs, path: &str) -> String {
    String::from_utf8(fs.read(path).unwrap()).unwrap()
}

#[test]
fn layers_merge_with_overrides_whiteouts_opaque_dirs_and_hard_links() {
    let dir = tempfile::tempdir().unwrap();
    let fs = stage(dir.path());

    // Override: the upper layer's content and metadata.
    assert_eq!(text(&fs, "/etc/a"), "two");
    let a = fs.get("/etc/a").unwrap();
    assert_eq!((a.mode, a.uid, a.gid), (0o640, 3, 3));
    assert_eq!(a.kind, NodeKind::File { size: 3, layer: 1 });
    // A hard link made in layer 1 keeps layer 1's content; one made in layer 2 has layer 2's.
    assert_eq!(text(&fs, "/etc/a-link"), "one");
    assert_eq!(text(&fs, "/etc/h"), "two");
    assert_eq!(fs.get("/etc/h").unwrap().mode, 0o600);
    // Whiteouts of a file and of a directory subtree.
    assert!(fs.get("/etc/b").is_none());
    assert!(fs.get("/usr/share/doc").is_none());
    assert!(fs.get("/usr/share/doc/x/y").is_none());
    assert_eq!(text(&fs, "/usr/share/keep"), "k");
    // Opaque directory: the lower children are gone, the new ones and its metadata stay.
    let o: Vec<String> = fs.paths().filter(|p| p.starts_with("/opt/o/")).collect();
    assert_eq!(o, ["/opt/o/3"]);
    assert_eq!(fs.get("/opt/o").unwrap().mode, 0o700);
    // A whiteout does not hide an entry of its own layer.
    assert_eq!(text(&fs, "/etc/c"), "new sea");
    // Whiteout files and aufs metadata are not part of the view.
    assert!(
        fs.paths().all(|p| !p.contains(".wh.")),
        "{:?}",
        fs.paths().collect::<Vec<_>>()
    );
    // A file over a directory.
    assert_eq!(text(&fs, "/srv/d"), "now a file");
    assert!(fs.get("/srv/d/f").is_none());
    // A member under a symlinked parent lands where the link points.
    assert!(fs.get("/lib/x").is_none());
    assert_eq!(text(&fs, "/usr/lib/x"), "via symlink");
    assert_eq!(text(&fs, "/lib/x"), "via symlink");
    assert_eq!(
        fs.get("/lib").unwrap().kind,
        NodeKind::Symlink { target: "usr/lib" }
    );
}

#[test]
fn symlinks_resolve_inside_the_stage_root() {
    let dir = tempfile::tempdir().unwrap();
    let fs = stage(dir.path());
    assert_eq!(fs.resolve("/l/abs").unwrap(), "/etc/a");
    assert_eq!(fs.resolve("/l/rel").unwrap(), "/etc/a");
    assert_eq!(fs.resolve("/l/escape").unwrap(), "/etc/a");
    assert_eq!(fs.resolve("/../../etc/./a").unwrap(), "/etc/a");
    assert_eq!(fs.resolve("/l/dir/a").unwrap(), "/etc/a");
    assert_eq!(fs.resolve("/").unwrap(), "/");
    assert_eq!(text(&fs, "/l/escape"), "two");

    // `../../etc/passwd` is the stage's `/etc/passwd`, which it does not have: the host's is
    // never read.
    let err = fs.resolve("/l/passwd").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::FindPath { .. }), "{msg}");
    assert!(
        msg.contains("`/l/passwd`") && msg.contains("`/etc/passwd`"),
        "{msg}"
    );
    assert!(msg.contains("stage `base`"), "{msg}");
    assert!(fs.read("/l/passwd").is_err());

    let err = fs.resolve("/l/loop1").unwrap_err();
    assert!(matches!(err, Error::ResolvePath { .. }), "{err}");
    assert!(err.to_string().contains("40"), "{err}");
    assert!(matches!(
        fs.resolve("/l/dangling").unwrap_err(),
        Error::FindPath { .. }
    ));
    let err = fs.resolve("/etc/missing").unwrap_err();
    assert_eq!(
        err.to_string(),
        "`/etc/missing` is not in the filesystem of stage `base`; check the path \
         (symlinks are resolved inside the stage)"
    );
}

#[test]
fn bad_layers_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = blob(
        dir.path(),
        "gz",
        Compression::Gzip,
        &[M::File("a", "x", 0o644, 0)],
    );
    gz.media_type = Compression::Zstd.media_type().to_owned();
    let err = Rootfs::open("s", &[gz.clone()], dir.path()).unwrap_err();
    assert!(err.to_string().contains("its bytes are gzip"), "{err}");
    gz.media_type = "application/vnd.oci.image.config.v1+json".to_owned();
    let err = Rootfs::open("s", &[gz], dir.path()).unwrap_err();
    assert!(matches!(err, Error::CheckLayer { .. }), "{err}");
    let dangling = blob(
        dir.path(),
        "hl",
        Compression::None,
        &[M::HardLink("a", "nothing")],
    );
    let err = Rootfs::open("s", &[dangling], dir.path()).unwrap_err();
    assert!(err.to_string().contains("hard link to `nothing`"), "{err}");
    let truncated = dir.path().join("trunc");
    let full = fs::read(
        blob(
            dir.path(),
            "t",
            Compression::Gzip,
            &[M::File("a", "x", 0o644, 0)],
        )
        .path,
    )
    .unwrap();
    fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let err = Rootfs::open(
        "s",
        &[LayerBlobRef {
            path: truncated,
            media_type: Compression::Gzip.media_type().to_owned(),
        }],
        dir.path(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::ReadLayer { .. }), "{err}");

    // A whole blob (its digest would check out) whose last member claims 8 GiB it does not
    // hold: refused when the stage is opened, not trusted when the file is read.
    let mut claims = tar_bytes(&[M::File("big", "12345", 0o644, 0)]);
    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(&claims[..512]);
    header.set_size(8 << 30);
    header.set_cksum();
    claims[..512].copy_from_slice(header.as_bytes());
    claims.truncate(1024); // no end blocks: GNU tar reads such a tar too
    let path = dir.path().join("claims");
    fs::write(&path, &claims).unwrap();
    let layer = LayerBlobRef {
        path: path.clone(),
        media_type: Compression::None.media_type().to_owned(),
    };
    let err = Rootfs::open("s", &[layer], dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read layer blob `{}` of stage `s`; is the blob complete?",
            path.display()
        )
    );
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "the tar ends at byte 1024, inside member `big`, whose data runs from byte 512 to \
         8589935104"
    );
    // A last member without its padding (nor end blocks) is read, as GNU tar reads it.
    let mut short = tar_bytes(&[M::File("etc/motd", "hi", 0o644, 0)]);
    short.truncate(512 + 2);
    let path = dir.path().join("short");
    fs::write(&path, &short).unwrap();
    let layer = LayerBlobRef {
        path,
        media_type: Compression::None.media_type().to_owned(),
    };
    let fs = Rootfs::open("s", &[layer], dir.path()).unwrap();
    assert_eq!(text(&fs, "/etc/motd"), "hi");
}

fn request<'a>(src: &'a str, dest: &'a str) -> CopyRequest<'a> {
    CopyRequest {
        src,
        include: &[],
        exclude: &[],
        dest,
        dest_is_dir: false,
        owner: None,
        mode: None,
        dir_mode: None,
        layer: "runtime",
        origin: 0,
    }
}

/// The tar of `tree` as (path -> (type, mode, uid, content or link target)).
fn written(tree: &LayerTree) -> BTreeMap<String, (char, u32, u64, String)> {
    let opts = WriteOptions {
        compression: Compression::None,
        mtime: 0,
        threads: 1,
    };
    let mut out = Vec::new();
    write_layer(tree, &opts, &mut out).unwrap();
    let mut tar = tar::Archive::new(&out[..]);
    let mut map = BTreeMap::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = e.path().unwrap().to_str().unwrap().to_owned();
        let mut data = String::new();
        e.read_to_string(&mut data).unwrap();
        if let Some(link) = e.link_name().unwrap() {
            data = link.to_str().unwrap().to_owned();
        }
        let kind = h.entry_type().as_byte() as char;
        map.insert(path, (kind, h.mode().unwrap(), h.uid().unwrap(), data));
    }
    map
}

#[test]
fn devices_and_fifos_are_in_the_view_and_copied_out_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let layer = blob(
        dir.path(),
        "dev.tar",
        Compression::Gzip,
        &[
            M::Dir("dev", 0o755, 0),
            M::Device("dev/tty0", tar::EntryType::Char, 4, 0),
            M::Device("dev/loop1", tar::EntryType::Block, 7, 1),
            M::Device("dev/initctl", tar::EntryType::Fifo, 0, 0),
        ],
    );
    let fs = Rootfs::open("system", &[layer], dir.path()).unwrap();
    assert_eq!(
        fs.get("/dev/tty0").unwrap().kind,
        NodeKind::Device {
            kind: DeviceKind::Char,
            major: 4,
            minor: 0
        }
    );
    let mut tree = LayerTree::new();
    fs.copy_out(&request("/dev", "dev"), &mut tree).unwrap();
    let w = written(&tree);
    assert_eq!(w["dev/tty0"], ('3', 0o620, 0, String::new()));
    assert_eq!(w["dev/loop1"].0, '4');
    assert_eq!(w["dev/initctl"].0, '6');
    match &tree.get("dev/loop1").unwrap().kind {
        EntryKind::Device { major, minor, .. } => assert_eq!((*major, *minor), (7, 1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn copy_out_files_dirs_and_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let fs = stage(dir.path());
    let mut tree = LayerTree::new();
    // A file through a symlinked top-level path: named as written, content of the target.
    let mut r = request("/l/escape", "srv");
    r.dest_is_dir = true;
    fs.copy_out(&r, &mut tree).unwrap();
    // A file to an explicit name, with mode and owner overridden.
    let mut r = request("/usr/lib/x", "bin/x");
    r.mode = Some(0o700);
    r.owner = Some(Owner {
        uid: 1000,
        gid: 1000,
    });
    r.origin = 1;
    fs.copy_out(&r, &mut tree).unwrap();
    // A directory through a symlink, filtered; symlinks inside stay symlinks.
    let include = ["*".to_owned()];
    let exclude = ["b*".to_owned(), "h".to_owned()];
    let mut r = request("/l/dir", "conf");
    r.include = &include;
    r.exclude = &exclude;
    r.origin = 2;
    fs.copy_out(&r, &mut tree).unwrap();
    let mut r = request("/l", "links");
    r.exclude = &exclude;
    r.origin = 3;
    fs.copy_out(&r, &mut tree).unwrap();

    let got = written(&tree);
    let file = |mode, uid, text: &str| ('0', mode, uid, text.to_owned());
    assert_eq!(got["srv/escape"], file(0o640, 3, "two"));
    assert_eq!(got["bin/x"], file(0o700, 1000, "via symlink"));
    assert_eq!(got["conf/"], ('5', 0o755, 0, String::new()));
    assert_eq!(got["conf/a"], file(0o640, 3, "two"));
    // A hard link has its own header's metadata and its target's content.
    assert_eq!(got["conf/a-link"], file(0o600, 7, "one"));
    assert_eq!(got["conf/c"], file(0o644, 0, "new sea"));
    assert!(!got.contains_key("conf/h"));
    assert_eq!(got["links/abs"], ('2', 0o777, 0, "/etc/a".to_owned()));
    assert_eq!(got["links/passwd"].3, "../../etc/passwd");
    assert_eq!(got["links/loop1"].3, "loop2");

    // Include globs: only matching entries, with their parents (kept from the stage).
    let mut tree = LayerTree::new();
    let include = ["3".to_owned()];
    let mut r = request("/", "");
    r.include = &include;
    fs.copy_out(&r, &mut tree).unwrap();
    let got = written(&tree);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["opt/", "opt/o/", "opt/o/3"]
    );
    assert_eq!(got["opt/o/"].1, 0o700);
    assert_eq!(got["opt/o/"].2, 9);

    // Errors: a missing path, a copy that clashes with another entry of the layer.
    let mut tree = LayerTree::new();
    let err = fs
        .copy_out(&request("/etc/missing", "x"), &mut tree)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not in the filesystem of stage `base`"),
        "{err}"
    );
    fs.copy_out(&request("/etc/a", "x"), &mut tree).unwrap();
    let err = fs.copy_out(&request("/etc/c", "x"), &mut tree).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`/x`") && msg.contains("`runtime`"), "{msg}");
    assert!(msg.contains("stage `base`"), "{msg}");
    let err = fs.copy_out(&request("/etc/a", ""), &mut LayerTree::new());
    assert!(err.is_ok(), "a file copied to the root keeps its name");
}

fn whiteout_layers() -> (LayerTree, LayerTree) {
    let mut lower = LayerTree::new();
    for p in ["a/x", "a/y", "b/z", "d/q"] {
        lower.insert(p, Entry::inline_file(p.as_bytes())).unwrap();
    }
    let mut upper = LayerTree::new();
    upper
        .insert("d/new", Entry::inline_file("new".as_bytes()))
        .unwrap();
    let removes = ["/a/x", "/b", "/d/"].map(String::from);
    layer::add_whiteouts(&mut upper, "upper", &removes, 1).unwrap();
    (lower, upper)
}

/// Writes an image of `layers` as an OCI layout tagged `t` at `out`.
fn layout(out: &Path, layers: &[&LayerTree], compression: Compression) -> Vec<LayerBlob> {
    let writer = LayoutWriter::create(out).unwrap();
    let opts = WriteOptions {
        compression,
        mtime: 0,
        threads: 2,
    };
    let blobs: Vec<LayerBlob> = layers
        .iter()
        .map(|t| write_layer_to_dir(t, &opts, &writer.blobs_dir()).unwrap())
        .collect();
    let diff_ids: Vec<String> = blobs.iter().map(|b| b.diff_id.clone()).collect();
    let names: Vec<String> = (0..blobs.len()).map(|i| format!("l{i}")).collect();
    let descriptors: Vec<_> = blobs
        .iter()
        .map(|b| oci::layer_descriptor(b).unwrap())
        .collect();
    let platform = Platform::linux_amd64();
    let config = oci::image_config(
        &platform,
        None,
        &ImageConfig::default(),
        &diff_ids,
        &names,
        0,
    );
    let config = writer
        .write_json(oci_spec::image::MediaType::ImageConfig, &config)
        .unwrap();
    let manifest = oci::image_manifest(config, None, &descriptors, &BTreeMap::new());
    let manifest = writer
        .write_json(oci_spec::image::MediaType::ImageManifest, &manifest)
        .unwrap();
    writer
        .finish(oci::index_entries(
            &manifest,
            Some(&platform),
            &["t".to_owned()],
        ))
        .unwrap();
    blobs
}

/// Every path under `root` (relative), files and directories.
fn tree_of(root: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn whiteouts_unpack_with_umoci_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (lower, upper) = whiteout_layers();
    let image = dir.path().join("image");
    let blobs = layout(&image, &[&lower, &upper], Compression::Gzip);

    // The upper layer's tar as GNU tar lists it: whiteouts are empty files of mode 0.
    let blob = image.join("blobs/sha256").join(&blobs[1].digest[7..]);
    let listing = tool("tar", &["-tvzf", s(&blob)]);
    let lines: Vec<&str> = listing.lines().collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [".wh.b", "a/", "a/.wh.x", "d/", "d/.wh..wh..opq", "d/new"],
        "{listing}"
    );
    for line in &lines {
        if line.contains(".wh.") {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                fields[..4],
                ["----------", "0/0", "0", "1970-01-01"],
                "{line}"
            );
        }
    }

    let bundle = dir.path().join("bundle");
    tool(
        "umoci",
        &["unpack", "--image", &format!("{}:t", s(&image)), s(&bundle)],
    );
    let rootfs = bundle.join("rootfs");
    let expected: BTreeSet<String> = ["a", "a/y", "d", "d/new"].map(String::from).into();
    assert_eq!(tree_of(&rootfs), expected);
    assert_eq!(fs::read_to_string(rootfs.join("d/new")).unwrap(), "new");

    let out = tool(
        "oci-image-tool",
        &["validate", "--type", "image", "--ref", "name=t", s(&image)],
    );
    assert!(
        out.contains("Validation succeeded"),
        "oci-image-tool said:\n{out}"
    );

    // The merged view agrees with umoci.
    let refs: Vec<LayerBlobRef> = blobs
        .iter()
        .map(|b| LayerBlobRef {
            path: image.join("blobs/sha256").join(&b.digest[7..]),
            media_type: b.media_type.clone(),
        })
        .collect();
    let view = Rootfs::open("s", &refs, dir.path()).unwrap();
    let paths: BTreeSet<String> = view.paths().collect();
    let expected: BTreeSet<String> = ["/", "/a", "/a/y", "/d", "/d/new"].map(String::from).into();
    assert_eq!(paths, expected);
}

#[test]
fn whiteout_layers_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (_, upper) = whiteout_layers();
    let mut again = LayerTree::new();
    again
        .insert("d/new", Entry::inline_file("new".as_bytes()))
        .unwrap();
    // Another order, another spelling: the same layer.
    let removes = ["d", "/b/", "//a/./x", "/b/deeper"].map(String::from);
    layer::add_whiteouts(&mut again, "upper", &removes, 1).unwrap();
    for compression in [Compression::Gzip, Compression::Zstd] {
        let one = layout(&dir.path().join("one"), &[&upper], compression);
        let two = layout(&dir.path().join("two"), &[&again], compression);
        assert_eq!(one, two);
        fs::remove_dir_all(dir.path().join("one")).unwrap();
        fs::remove_dir_all(dir.path().join("two")).unwrap();
    }
}

#[test]
fn a_copy_from_a_stage_is_deterministic_and_streams_from_the_layers() {
    let dir = tempfile::tempdir().unwrap();
    let digest = |fs: &Rootfs| {
        let mut tree = LayerTree::new();
        fs.copy_out(&request("/", "stage"), &mut tree).unwrap();
        let opts = WriteOptions {
            compression: Compression::Zstd,
            mtime: 0,
            threads: 2,
        };
        write_layer(&tree, &opts, std::io::sink()).unwrap().digest
    };
    let one = digest(&stage(&dir.path().join("a").tap_mkdir()));
    let two = digest(&stage(&dir.path().join("b").tap_mkdir()));
    assert_eq!(one, two);
}

trait MkDir {
    fn tap_mkdir(self) -> PathBuf;
}

impl MkDir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn implicit_parents_of_whiteouts_can_keep_the_lower_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let lower = blob(
        dir.path(),
        "lower",
        Compression::None,
        &[
            M::Dir("tmp/", 0o1777, 0),
            M::File("tmp/foo", "x", 0o644, 0),
            M::Dir("srv/", 0o750, 33),
            M::File("srv/old", "x", 0o644, 0),
        ],
    );
    let view = Rootfs::open("base", &[lower], dir.path()).unwrap();
    assert_eq!(view.dir_attributes("/tmp"), Some((0o1777, 0, 0)));
    assert_eq!(view.dir_attributes("/tmp/foo"), None);
    let mut upper = LayerTree::new();
    upper
        .insert("srv/new/app", Entry::inline_file("app".as_bytes()))
        .unwrap();
    let removes = ["/tmp/foo".to_owned(), "/srv/old".to_owned()];
    layer::add_whiteouts(&mut upper, "upper", &removes, 1).unwrap();
    assert_eq!(upper.get("tmp").unwrap().mode, 0o755);
    upper.inherit_implicit_dirs(|p| view.dir_attributes(p));
    let got = written(&upper);
    assert_eq!(got["tmp/"], ('5', 0o1777, 0, String::new()));
    assert_eq!(got["srv/"], ('5', 0o750, 33, String::new()));
    // Paths the lower layers do not have keep the defaults.
    assert_eq!(got["srv/new/"], ('5', 0o755, 0, String::new()));
    assert_eq!(got["tmp/.wh.foo"].1, 0);
}
