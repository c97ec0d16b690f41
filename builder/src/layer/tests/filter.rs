//! Host trees filtered by the build's [`HostFilter`]: reserved paths skipped or refused, the
//! ignore file's patterns applied on the path relative to the context, with exceptions inside
//! left-out directories.

use std::path::Path;

use super::*;

/// A context like a cargo project after a build: sources, a target directory holding a store
/// and an output, a `.dockerignore`.
fn project(ignore: &str) -> Ctx {
    let mut c = Ctx::new();
    for f in [
        "Cargo.toml",
        "src/main.rs",
        "src/gen/x.rs",
        "target/debug/app",
        "target/image/.store/blobs/sha256/aa",
        "target/image/app/index.json",
        "docs/target/kept.md",
        "notes/a.md",
        "notes/keep.md",
        "notes/sub/deep.md",
        "app.log",
        "src/trace.log",
        ".git/HEAD",
        "out/index.json",
        ".out.tmp-a1B2c3/index.json",
        "src/.cargo-image-stage-Zz9y8X/x",
    ] {
        c.file(f, b"x", 0o644);
    }
    c.file(".dockerignore", ignore.as_bytes(), 0o644);
    let root = c.root.clone();
    c.filter = Some(HostFilter::new(
        vec![
            Reserved::path(&root.join("target"), "cargo's target directory"),
            Reserved::path(&root.join("target/image/.store"), "the store"),
            Reserved::path(&root.join("out"), "the output"),
            Reserved::temporary_name(Some(&root), ".out.tmp-", 6, "a temporary output"),
            Reserved::temporary_name(None, ".cargo-image-stage-", 6, "a scratch directory"),
        ],
        Some(IgnoreFile::parse(ignore, &root.join(".dockerignore")).unwrap()),
    ));
    c
}

fn taken(c: &Ctx, source: Source) -> Vec<String> {
    names(&tar_of(&c.build(vec![add("", source)]).unwrap()))
}

#[test]
fn the_whole_context_leaves_out_ours_and_what_the_ignore_file_says() {
    let c = project("# build noise\n.git\n**/*.log\nnotes\n!notes/keep.md\n");
    assert_eq!(
        taken(&c, path(".")),
        [
            ".dockerignore",
            "Cargo.toml",
            "docs/",
            "docs/target/", // not cargo's: only the real target directory is left out
            "docs/target/kept.md",
            "notes/", // left out, written as the parent of the exception
            "notes/keep.md",
            "src/",
            "src/gen/",
            "src/gen/x.rs",
            "src/main.rs",
        ]
    );
    // Patterns are relative to the context, whatever the source path: `src` sees `trace.log`
    // as `src/trace.log`.
    assert_eq!(taken(&c, path("src")), ["gen/", "gen/x.rs", "main.rs"]);
    // The entry's own globs apply after the ignore file.
    assert_eq!(
        taken(&c, globbed(".", &["*.md"], &["docs/"])),
        ["notes/", "notes/keep.md"]
    );
}

#[test]
fn without_an_ignore_file_only_reserved_paths_are_left_out() {
    let mut c = project("");
    c.filter = Some(HostFilter::new(
        vec![Reserved::path(
            &c.root.join("target"),
            "cargo's target directory",
        )],
        None,
    ));
    let names = taken(&c, path("."));
    assert!(!names.iter().any(|n| n.starts_with("target")), "{names:?}");
    assert!(names.contains(&"app.log".to_string()));
    assert!(names.contains(&"out/index.json".to_string()));
    assert!(taken(&c, path("src")).contains(&"trace.log".to_string()));
}

#[test]
fn a_top_level_path_that_is_ours_or_left_out_is_an_error() {
    let c = project("notes\n!notes/keep.md\n*.log\nsecret\n");
    c.file("secret/a", b"x", 0o644);
    let err = c.build(vec![add("t/", path("target"))]).unwrap_err();
    assert!(
        matches!(&err, Error::ReservedSource { path, what } if path == Path::new("target") && what == "cargo's target directory"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("`target` is cargo's target directory"),
        "{err}"
    );
    let err = c.build(vec![add("o/", path("out/"))]).unwrap_err();
    assert!(matches!(err, Error::ReservedSource { .. }), "{err}");
    // Inside the target directory is asked for by name: allowed (the store stays out).
    assert_eq!(taken(&c, path("target/image")), ["app/", "app/index.json"]);
    // A file the ignore file leaves out, a left-out directory with nothing taken back.
    for left_out in ["app.log", "secret", "notes/a.md"] {
        let err = c.build(vec![add("x/", path(left_out))]).unwrap_err();
        assert!(
            matches!(&err, Error::IgnoredSource { path, .. } if path == Path::new(left_out)),
            "{left_out}: {err}"
        );
        assert!(err.to_string().contains(".dockerignore"), "{err}");
    }
    // A left-out directory whose exception takes something back gives just that.
    assert_eq!(taken(&c, path("notes")), ["keep.md"]);
}

#[test]
fn a_left_out_directory_is_walked_only_for_its_exceptions() {
    let c = project("notes\n!notes/sub/**\n");
    assert_eq!(
        taken(&c, globbed(".", &["notes/"], &[])),
        ["notes/", "notes/sub/", "notes/sub/deep.md"]
    );
    // A wildcard exception may take back anything anywhere: `vendor`'s licences.
    let c = project("src\n!**/x.rs\n");
    assert_eq!(
        taken(&c, globbed(".", &["src/"], &[])),
        ["src/", "src/gen/", "src/gen/x.rs"]
    );
}
