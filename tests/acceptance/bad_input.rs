//! Bad input gets a clear error that names what is at fault, exit code 1 (2 for usage errors),
//! and loses nothing: no output written, a previous output left as it was.

use std::path::{Path, PathBuf};

use cargo_oci_image_acceptance::*;

/// A scratch project: a spec and whatever files a test puts beside it.
struct Project {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Project {
    fn new(spec: &str) -> Project {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("project");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("image.toml"), spec).unwrap();
        Project { _tmp: tmp, dir }
    }

    fn file(self, path: &str, content: &str) -> Project {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    fn build(&self) -> Run {
        cargo_image(&self.dir)
            .args(["build", "--output"])
            .arg_path(&self.out())
            .run()
    }

    /// Builds, expects failure with exit code 1, and checks nothing was written.
    fn fails(&self) -> String {
        let r = self.build();
        assert_eq!(
            r.code,
            Some(1),
            "expected a build error\n{}\n{}",
            r.stdout,
            r.stderr
        );
        assert!(!self.out().exists(), "a failed build wrote its output");
        let leftovers: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.') && n.contains("out"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary output left behind: {leftovers:?}"
        );
        r.stderr
    }
}

const HEAD: &str = "name = \"bad\"\n";

#[test]
fn malformed_toml_points_at_line_and_column() {
    let p = Project::new("name = \"bad\"\n[config\nentrypoint = [\"/x\"]\n");
    let err = p.fails();
    assert!(err.contains("image.toml"), "{err}");
    assert!(err.contains(":2:"), "line 2 is at fault: {err}");
}

#[test]
fn unknown_key_is_named_with_a_hint() {
    let p = Project::new(&format!("{HEAD}[config]\nentrypont = [\"/x\"]\n"));
    let err = p.fails();
    assert!(err.contains("entrypont"), "{err}");
    assert!(err.contains("entrypoint"), "suggests the right key: {err}");
    assert!(err.contains(":3:"), "line 3 is at fault: {err}");
}

#[test]
fn missing_source_path_is_named() {
    let p = Project::new(&format!(
        "{HEAD}[[layer]]\nname = \"a\"\n[[layer.add]]\npath = \"no-such-dir\"\ndest = \"/x/\"\n"
    ));
    let err = p.fails();
    assert!(err.contains("no-such-dir"), "{err}");
}

#[test]
fn destination_escaping_the_root_is_refused() {
    let p = Project::new(&format!(
        "{HEAD}[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"x\"\ndest = \"/../../etc/passwd\"\n"
    ));
    let err = p.fails();
    assert!(err.contains("dest"), "{err}");
    assert!(err.contains("../../etc/passwd"), "{err}");
}

#[test]
fn source_escaping_the_context_is_refused() {
    let p = Project::new(&format!(
        "{HEAD}[[layer]]\nname = \"a\"\n[[layer.add]]\npath = \"../outside\"\ndest = \"/x/\"\n"
    ));
    std::fs::create_dir_all(p.dir.parent().unwrap().join("outside")).unwrap();
    let err = p.fails();
    assert!(err.contains("../outside"), "{err}");
}

#[test]
fn symlinked_directory_out_of_the_context_is_refused() {
    let p = Project::new(&format!(
        "{HEAD}[[layer]]\nname = \"a\"\n[[layer.add]]\npath = \"sneaky\"\ndest = \"/x/\"\n"
    ));
    let outside = p.dir.parent().unwrap().join("secrets");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("key"), "secret").unwrap();
    std::os::unix::fs::symlink(&outside, p.dir.join("sneaky")).unwrap();
    let err = p.fails();
    assert!(err.contains("sneaky"), "{err}");
    assert!(!err.contains("secret\n"), "{err}");
}

#[test]
fn symlinks_inside_a_tree_are_stored_not_followed() {
    let p = Project::new(&format!(
        "{HEAD}[[layer]]\nname = \"a\"\n[[layer.add]]\npath = \"tree\"\ndest = \"/t/\"\n"
    ))
    .file("tree/real.txt", "real\n");
    let outside = p.dir.parent().unwrap().join("secret.txt");
    std::fs::write(&outside, "secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, p.dir.join("tree/link")).unwrap();
    p.build().ok();
    let listing = tar_list_verbose(&first_layer(&p.out()));
    let link_line = listing
        .lines()
        .find(|l| l.contains("t/link"))
        .expect("link in layer");
    assert!(
        link_line.starts_with('l'),
        "stored as a symlink: {link_line}"
    );
}

#[test]
fn two_entries_at_one_destination_are_refused() {
    let p = Project::new(&format!(
        "{HEAD}[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"1\"\ndest = \"/etc/x\"\n\
         [[layer.add]]\ncontent = \"2\"\ndest = \"/etc/x\"\n"
    ));
    let err = p.fails();
    assert!(err.contains("etc/x"), "{err}");
}

#[test]
fn unwritable_output_fails_and_keeps_the_previous_output() {
    let p = Project::new(&format!(
        "{HEAD}[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"v1\"\ndest = \"/v\"\n"
    ));
    p.build().ok();
    let before = manifest_digest(&p.out());

    // A failing build (a missing source) must leave the previous layout intact.
    std::fs::write(
        p.dir.join("image.toml"),
        format!("{HEAD}[[layer]]\nname = \"a\"\n[[layer.add]]\npath = \"gone\"\ndest = \"/v\"\n"),
    )
    .unwrap();
    let r = p.build();
    assert_eq!(r.code, Some(1));
    assert_eq!(manifest_digest(&p.out()), before, "previous output changed");
    oci_image_tool_validate(&p.out(), "latest");

    // An output path that cannot be created (its parent is a file) is a clear error.
    std::fs::write(p.dir.join("a-file"), "x").unwrap();
    let r = cargo_image(&p.dir)
        .args(["build", "--output", "a-file/out"])
        .run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("a-file"), "{}", r.stderr);

    // An output that is some other directory of the user's is never replaced.
    let precious = p.dir.join("precious");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), "keep me").unwrap();
    let r = cargo_image(&p.dir)
        .args(["build", "--output", "precious"])
        .run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(precious.join("notes.txt")).unwrap(),
        "keep me"
    );
}

/// The blob path of the first layer of the image in a layout.
fn first_layer(layout: &Path) -> PathBuf {
    let manifest = blob_json(layout, &manifest_digest(layout));
    let hex = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    layout.join("blobs/sha256").join(hex)
}
