//! Bad input gets a clear error that names what is at fault, exit code 1 (2 for usage errors),
//! and loses nothing: no output written, a previous output left as it was.

use cargo_oci_image_test_support::*;

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
    std::fs::create_dir_all(p.root().join("outside")).unwrap();
    let err = p.fails();
    assert!(err.contains("../outside"), "{err}");
}

#[test]
fn symlinked_directory_out_of_the_context_is_refused() {
    let p = Project::new(&format!(
        "{HEAD}[[layer]]\nname = \"a\"\n[[layer.add]]\npath = \"sneaky\"\ndest = \"/x/\"\n"
    ));
    let outside = p.root().join("secrets");
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
    ));
    p.file("tree/real.txt", "real\n");
    let outside = p.root().join("secret.txt");
    std::fs::write(&outside, "secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, p.dir.join("tree/link")).unwrap();
    p.builds();
    let listing = tar_list_verbose(&p.first_layer());
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
    p.builds();
    let before = manifest_digest(&p.out());

    // A failing build (a missing source) must leave the previous layout intact.
    p.set_spec(&format!(
        "{HEAD}[[layer]]\nname = \"a\"\n[[layer.add]]\npath = \"gone\"\ndest = \"/v\"\n"
    ));
    let r = p.cli().run();
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
