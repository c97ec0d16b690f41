//! `cargo image export`: an image's merged filesystem as a tar or a directory, checked against
//! what `umoci unpack` makes of the same image, listed by GNU tar, read back from an OCI
//! archive and from a loopback `docker-registry`, and imported back with a `tar =` entry.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cargo_oci_image_test_support::registry::Registry;
use cargo_oci_image_test_support::*;

/// Every path under `root` with its kind, mode and content (files) or target (symlinks).
fn snapshot(root: &Path) -> BTreeMap<String, (String, u32, Vec<u8>)> {
    walk(root)
        .iter()
        .map(|p| {
            let meta = std::fs::symlink_metadata(p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let (kind, data) = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(p).unwrap();
                ("symlink", target.display().to_string().into_bytes())
            } else if meta.is_dir() {
                ("dir", Vec::new())
            } else {
                ("file", std::fs::read(p).unwrap())
            };
            (rel, (kind.to_owned(), meta.mode() & 0o7777, data))
        })
        .collect()
}

/// The paths GNU tar lists in `tar`, without trailing `/`, sorted.
fn listed(tar: &Path) -> Vec<String> {
    let mut names: Vec<String> = tar_list(tar)
        .into_iter()
        .map(|n| n.trim_end_matches('/').to_owned())
        .collect();
    names.sort();
    names
}

fn export(dir: &Path, args: &[&str]) -> Run {
    cargo_image(dir).args(["export"]).args(args).run().ok()
}

#[test]
fn the_multi_stage_example_exports_exactly_its_merged_files_and_imports_back() {
    let (tmp, dir) = example_copy("multi-stage");
    let out = tmp.path().join("out");
    build_events(&dir, &["--output", "../out"]);
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "latest", &bundle);
    let unpacked = snapshot(&bundle.join("rootfs"));

    // The tar lists exactly what umoci's unpack holds (whiteouts applied, nothing more).
    let tar = tmp.path().join("rootfs.tar");
    let r = export(&dir, &["../out", "-o", tar.to_str().unwrap()]);
    assert!(r.stderr.contains("Exported"), "{}", r.stderr);
    let names = listed(&tar);
    let expected: Vec<String> = unpacked.keys().cloned().collect();
    assert_eq!(names, expected);
    assert!(!names.iter().any(|n| n.contains("Europe")), "{names:?}");

    // Deterministic: again, and from the image's OCI archive, the same bytes; to standard
    // output too.
    let again = tmp.path().join("again.tar");
    export(&dir, &["oci:../out:latest", "-o", again.to_str().unwrap()]);
    assert_eq!(std::fs::read(&tar).unwrap(), std::fs::read(&again).unwrap());
    let archive = tmp.path().join("image.tar");
    cargo_image(&dir)
        .args(["build", "--output-format", "oci-archive", "--output"])
        .arg_path(&archive)
        .run()
        .ok();
    let from_archive = tmp.path().join("from-archive.tar");
    let arg = format!("oci-archive:{}", archive.display());
    export(&dir, &[&arg, "-o", from_archive.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&tar).unwrap(),
        std::fs::read(&from_archive).unwrap()
    );
    let piped = cargo_image(&dir)
        .args(["export", "../out", "-o", "-"])
        .spawn()
        .wait_with_output()
        .unwrap();
    assert!(piped.status.success());
    assert_eq!(piped.stdout, std::fs::read(&tar).unwrap());

    // Into a directory: the same tree as umoci's, modes and contents included.
    let exported_dir = tmp.path().join("exported");
    export(&dir, &["../out", "-o", exported_dir.to_str().unwrap()]);
    assert_eq!(snapshot(&exported_dir), unpacked);
    // An existing directory is refused, and left alone.
    let r = cargo_image(&dir)
        .args(["export", "../out", "-o"])
        .arg_path(&exported_dir)
        .run();
    assert_eq!(r.code, Some(1), "{}", r.output());
    assert!(r.stderr.contains("exists"), "{}", r.stderr);
    assert_eq!(snapshot(&exported_dir), unpacked);

    // Imported back as one layer: the same files.
    let p = Project::new(
        "name = \"again\"\n[[layer]]\nname = \"all\"\n[[layer.add]]\ntar = \"rootfs.tar\"\n",
    );
    std::fs::copy(&tar, p.dir.join("rootfs.tar")).unwrap();
    p.builds();
    let bundle2 = p.root().join("bundle");
    umoci_unpack(&p.out(), "latest", &bundle2);
    assert_eq!(snapshot(&bundle2.join("rootfs")), unpacked);
}

#[test]
fn a_pushed_image_exports_from_the_registry_as_from_the_layout() {
    let registry = Registry::start();
    let p = Project::new(
        "name = \"ex\"\nepoch = 1700000000\n[[layer]]\nname = \"etc\"\n[[layer.add]]\ncontent = \"hi\\n\"\ndest = \"/etc/motd\"\n[[layer.add]]\nsymlink = \"motd\"\ndest = \"/etc/greeting\"\n",
    );
    let repo = format!("{}/export/ex", registry.host());
    cargo_image(&p.dir)
        .args(["push", "--quiet", "--push-to", &repo, "--output"])
        .arg_path(&p.out())
        .run()
        .ok();
    let local = p.root().join("local.tar");
    export(&p.dir, &["out", "-o", local.to_str().unwrap()]);
    let remote = p.root().join("remote.tar");
    export(
        &p.dir,
        &[&format!("{repo}:latest"), "-o", remote.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(&local).unwrap(),
        std::fs::read(&remote).unwrap()
    );
    // Every entry is dated the image's `created` time.
    let verbose = tar_list_verbose(&remote);
    assert!(verbose.contains("2023-11-14 22:13:20"), "{verbose}");
    assert_eq!(listed(&remote), ["etc", "etc/greeting", "etc/motd"]);

    // A reference that is nowhere is a clear error, and no file is written.
    let missing = p.root().join("missing.tar");
    let r = cargo_image(&p.dir)
        .args(["export", &format!("{repo}:nope"), "-o"])
        .arg_path(&missing)
        .run();
    assert_eq!(r.code, Some(1), "{}", r.output());
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    assert!(!missing.exists());
}
