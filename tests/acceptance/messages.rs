//! What the command line says on the main bad inputs, pinned by snapshots as the spec errors are
//! (`builder/src/spec/tests.rs`): the exit code and the whole of stderr, colours off, the
//! temporary directory written `[TMP]` and a registry's port `[PORT]`.
//!
//! A change in wording is a reviewed diff, not a silent drift. When a message changes on
//! purpose, run these tests with `INSTA_UPDATE=always` (`cargo test -p
//! cargo-oci-image-acceptance --test acceptance messages`), read the diff of
//! `tests/acceptance/snapshots/` and commit it; without it, a changed message fails the test and
//! leaves the new text beside the old as a `.snap.new` file to compare.

use std::net::TcpListener;
use std::path::Path;

use cargo_oci_image_test_support::*;

/// The exit code and stderr of `r`, with the paths under `root` and the port written as
/// placeholders, trailing white space trimmed.
fn message(r: &Run, root: &Path, port: Option<u16>) -> String {
    let canonical = root.canonicalize().expect("canonical temp dir");
    let mut text = r
        .stderr
        .replace(&canonical.display().to_string(), "[TMP]")
        .replace(&root.display().to_string(), "[TMP]");
    if let Some(port) = port {
        text = text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:[PORT]");
    }
    let text: Vec<&str> = text.lines().map(str::trim_end).collect();
    let code = r
        .code
        .map_or("none (killed by a signal)".into(), |c| c.to_string());
    format!("exit code: {code}\n\n{}", text.join("\n"))
}

/// One small layer of inline content, on `from`.
fn spec_from(from: &str) -> String {
    format!(
        "name = \"app\"\nfrom = \"{from}\"\n[[layer]]\nname = \"top\"\n\
         [[layer.add]]\ncontent = \"on top\\n\"\ndest = \"/etc/top\"\n"
    )
}

#[test]
fn a_missing_spec_file() {
    let p = Project::new("");
    let r = cargo_image(&p.dir)
        .args(["build", "--spec", "no-such.toml"])
        .run();
    insta::assert_snapshot!(message(&r, p.root(), None));
}

#[test]
fn a_misspelt_spec_key() {
    let p = Project::new("name = \"bad\"\n[config]\nentrypont = [\"/x\"]\n");
    let r = p.cli().run();
    insta::assert_snapshot!(message(&r, p.root(), None));
}

#[test]
fn a_missing_base_layout() {
    let p = Project::new(&spec_from("oci:../no-such-layout:latest"));
    let r = p.cli().run();
    insta::assert_snapshot!(message(&r, p.root(), None));
}

#[test]
fn an_unreachable_registry() {
    // A loopback port nothing listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = Project::new(&spec_from(&format!("127.0.0.1:{port}/app:latest")));
    let r = p.cli().run();
    insta::assert_snapshot!(message(&r, p.root(), Some(port)));
}

#[test]
fn a_base_the_lock_lacks_with_locked() {
    // Refused before any request: the port need not answer.
    let p = Project::new(&spec_from("127.0.0.1:9/app:latest"));
    let r = p.cli().args(["--locked"]).run();
    insta::assert_snapshot!(message(&r, p.root(), None));
}

#[test]
fn a_cargo_build_that_fails() {
    let p = Project::new(
        "name = \"broken\"\n[[layer]]\nname = \"app\"\n\
         [[layer.add]]\ncargo = { bin = \"broken\" }\ndest = \"/usr/local/bin/broken\"\n",
    );
    p.file(
        "Cargo.toml",
        "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .file(
        "src/main.rs",
        "compile_error!(\"this program does not compile\");\n\nfn main() {}\n",
    );
    let r = p.cli().run();
    insta::assert_snapshot!(message(&r, p.root(), None));
}

#[test]
fn an_output_that_is_not_ours() {
    let p = Project::new(&spec_from("scratch"));
    p.file("precious/notes.txt", "keep me\n");
    let r = cargo_image(&p.dir)
        .args(["build", "--output", "precious"])
        .run();
    insta::assert_snapshot!(message(&r, p.root(), None));
}

#[test]
fn a_bad_platform_flag() {
    let p = Project::new(&spec_from("scratch"));
    let r = p.cli().args(["--platform", "nope"]).run();
    insta::assert_snapshot!(message(&r, p.root(), None));
}

#[test]
fn inspect_of_a_missing_path() {
    let p = Project::new("");
    let r = cargo_image(&p.dir)
        .args(["inspect", "target/image/hello"])
        .run();
    insta::assert_snapshot!(message(&r, p.root(), None));
}

#[test]
fn a_build_script_without_a_c_compiler() {
    // A PATH with cargo, rustc and the host's `cc` (build scripts link with it) but no
    // `musl-gcc`: the `cc` crate finds no compiler for the musl target.
    let p = crate::cargo_builds::c_project("\"linux/amd64\"");
    let bin = p.root().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["cargo", "rustc", "cc"] {
        let path = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("`{tool}` on PATH"));
        std::os::unix::fs::symlink(path, bin.join(tool)).unwrap();
    }
    let r = p.cli().args(["--offline"]).env("PATH", &bin).run();
    // Cargo's own account of the failed build script (whose details depend on the `cc`
    // crate's version) comes first; the snapshot is what cargo-image says after it.
    let text = message(&r, p.root(), None);
    let ours = text
        .find("  × ")
        .unwrap_or_else(|| panic!("no error report:\n{text}"));
    assert!(
        text.contains("failed to find tool"),
        "the build script failed for want of a compiler:\n{text}"
    );
    insta::assert_snapshot!(format!(
        "{}\n{}",
        &text[..text.find('\n').unwrap()],
        &text[ours..]
    ));
}
