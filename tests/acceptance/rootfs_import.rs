//! A rootfs tarball imported as it is: character and block devices and fifos made with
//! `mknod`/`mkfifo` and packed by GNU tar (`tar -C root -cf rootfs.tar .`, as a user packs a
//! debootstrap tree) go into the layer with their numbers; `umoci unpack` recreates them,
//! oci-image-tool validates the image, and `exclude = ["dev/**"]` on the `tar` entry leaves
//! them out.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use cargo_oci_image_test_support::*;

/// `PROJECT/rootfs.tar`: GNU tar of a small tree with `dev/null` (1,3), `dev/loop0` (7,0),
/// a fifo `run/initctl` and `etc/hostname`.
fn pack_rootfs(project: &Path) {
    let root = project.join("root");
    for dir in ["dev", "run", "etc"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("etc/hostname"), "box\n").unwrap();
    for (path, kind, major, minor) in [("dev/null", "c", "1", "3"), ("dev/loop0", "b", "7", "0")] {
        let made = Command::new("mknod")
            .args(["-m", "0666"])
            .arg(root.join(path))
            .args([kind, major, minor])
            .status()
            .unwrap();
        assert!(made.success(), "mknod {path} (the tests run as root)");
    }
    let made = Command::new("mkfifo")
        .args(["-m", "0600"])
        .arg(root.join("run/initctl"))
        .status()
        .unwrap();
    assert!(made.success());
    run(
        "tar",
        ["-C", "root", "--numeric-owner", "-cf", "rootfs.tar", "."],
        project,
    )
    .ok();
    std::fs::remove_dir_all(root).unwrap();
}

const SPEC: &str = r#"name = "rootfs"
epoch = 1000

[[layer]]
name = "rootfs"
[[layer.add]]
tar = "rootfs.tar"
"#;

#[test]
fn devices_and_fifos_of_a_rootfs_tarball_are_imported_and_unpacked() {
    let p = Project::new(SPEC);
    pack_rootfs(&p.dir);
    p.builds();
    let listing = p.layer_paths();
    for path in ["dev/null", "dev/loop0", "run/initctl", "etc/hostname"] {
        assert!(listing.iter().any(|l| l == path), "{path} in {listing:?}");
    }
    oci_image_tool_validate(&p.out(), "latest");

    let bundle = p.root().join("bundle");
    umoci_unpack(&p.out(), "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    let meta = |path: &str| std::fs::symlink_metadata(rootfs.join(path)).unwrap();
    let null = meta("dev/null");
    assert!(null.file_type().is_char_device(), "{null:?}");
    assert_eq!((libc_major(null.rdev()), libc_minor(null.rdev())), (1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let loop0 = meta("dev/loop0");
    assert!(loop0.file_type().is_block_device(), "{loop0:?}");
    assert_eq!((libc_major(loop0.rdev()), libc_minor(loop0.rdev())), (7, 0));
    let fifo = meta("run/initctl");
    assert!(fifo.file_type().is_fifo(), "{fifo:?}");
    assert_eq!(fifo.mode() & 0o7777, 0o600);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/hostname")).unwrap(),
        "box\n"
    );
}

#[test]
fn a_compressed_archive_is_decompressed_beside_the_store_and_not_in_the_system_temporary_directory()
{
    let p = Project::new(&SPEC.replace("rootfs.tar", "rootfs.tar.gz"));
    pack_rootfs(&p.dir);
    run("gzip", ["-n", "rootfs.tar"], &p.dir).ok();
    // A system temporary directory that does not exist: decompressing there fails the build.
    let store = p.root().join("store");
    p.cli()
        .args(["--store"])
        .arg_path(&store)
        .env("TMPDIR", p.root().join("no-such-tmp"))
        .run()
        .ok();
    let listing = p.layer_paths();
    assert!(listing.iter().any(|l| l == "etc/hostname"), "{listing:?}");
    // The scratch directory it used in the store is gone with the build.
    let left: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "left in the store: {left:?}");
}

#[test]
fn exclude_on_a_tar_entry_leaves_the_device_nodes_out() {
    let p = Project::new(&format!("{SPEC}exclude = [\"dev/**\", \"run/initctl\"]\n"));
    pack_rootfs(&p.dir);
    p.builds();
    let listing = p.layer_paths();
    assert_eq!(
        listing,
        ["dev/", "etc/", "etc/hostname", "run/"],
        "{listing:?}"
    );

    // `include` picks what it names, with the directories above it.
    p.set_spec(&format!("{SPEC}include = [\"etc/hostname\"]\n"));
    p.builds();
    assert_eq!(p.layer_paths(), ["etc/", "etc/hostname"]);
}

/// The major number of a Linux `dev_t` (glibc's `gnu_dev_major`).
fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

/// The minor number of a Linux `dev_t` (glibc's `gnu_dev_minor`).
fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// Whether the build's one layer came from the store (`--message-format json`).
fn layer_cached(p: &Project) -> bool {
    let r = p.cli().args(["--message-format", "json"]).run().ok();
    let events = json_events(&r.stdout);
    let finished = of_kind(&events, "layer-finished");
    assert_eq!(finished.len(), 1, "{events:?}");
    finished[0]["cached"].as_bool().unwrap()
}

/// A layer that imports an archive beside a host tree is planned from the host tree alone and
/// read again whole when it is written; that second read is checked against the first, and
/// with nothing changed the layer is kept: the next build takes it from the store. A symlink
/// pointed elsewhere (no host file changes) makes another layer, built and kept in turn.
#[test]
fn a_layer_importing_an_archive_beside_a_host_tree_is_kept_and_a_moved_symlink_rebuilds_it() {
    let p = Project::new(&format!(
        "{SPEC}[[layer.add]]\npath = \"tree\"\ndest = \"/\"\n"
    ));
    pack_rootfs(&p.dir);
    p.file("tree/etc/app.conf", "a = 1\n")
        .file("tree/etc/other.conf", "b = 2\n")
        .symlink("tree/etc/current.conf", Path::new("app.conf"));
    assert!(!layer_cached(&p));
    assert!(layer_cached(&p));
    let listing = p.layer_paths();
    for path in [
        "dev/null",
        "etc/hostname",
        "etc/app.conf",
        "etc/current.conf",
    ] {
        assert!(listing.iter().any(|l| l == path), "{path} in {listing:?}");
    }

    let link = p.dir.join("tree/etc/current.conf");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("other.conf", &link).unwrap();
    assert!(!layer_cached(&p));
    assert!(layer_cached(&p));
    let listing = tar_list_verbose(&p.first_layer());
    assert!(
        listing.contains("etc/current.conf -> other.conf"),
        "{listing}"
    );
}
