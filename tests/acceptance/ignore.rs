//! What a host `path` leaves out: cargo's target directory (whatever cargo calls it), the store
//! and the outputs of cargo-image, and what the build context's `.dockerignore` says; so
//! `path = "."` packs the sources, stays cached from build to build, and rebuilds exactly when
//! the ignore file changes the files it takes. Layers are listed with GNU tar.

use std::collections::BTreeSet;
use std::path::Path;

use cargo_oci_image_test_support::*;

/// The whole build context in one layer.
const SPEC: &str = r#"name = "ctx"
epoch = 1000

[[layer]]
name = "context"
[[layer.add]]
path = "."
dest = "/src/"
"#;

const DOCKERIGNORE: &str = "# what the image never needs
.git
.dockerignore
**/*.log
notes
!notes/keep.md
/image.toml
";

/// What the layer holds with [`DOCKERIGNORE`]: no `target/` (with the store and the first
/// build's output in it), no `out/`, nothing the ignore file leaves out.
const EXPECTED: &[&str] = &[
    "src/",
    "src/Cargo.toml",
    "src/docs/",
    "src/docs/target/", // a directory named `target` that is not cargo's
    "src/docs/target/guide.md",
    "src/notes/", // left out, written as the parent of its exception
    "src/notes/keep.md",
    "src/src/",
    "src/src/main.rs",
];

/// A cargo package with a built `target/`, a git directory, logs and notes.
fn project() -> Project {
    let p = Project::new(SPEC);
    p.file(
        "Cargo.toml",
        "[package]\nname = \"ctx\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .file("src/main.rs", "fn main() {}\n")
    .file("src/debug.log", "noise\n")
    .file("build.log", "noise\n")
    .file("docs/target/guide.md", "not cargo's target directory\n")
    .file("notes/draft.md", "a draft\n")
    .file("notes/keep.md", "kept\n")
    .file(".git/HEAD", "ref: refs/heads/main\n")
    .file("target/debug/ctx", "\x7fELF an earlier cargo build\n")
    .file(".dockerignore", DOCKERIGNORE);
    p
}

/// `cargo-image build --message-format json ARGS` in `dir` (`env` set), which must succeed:
/// its events.
fn build_json(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let mut cli = cargo_image(dir).args(["build", "--message-format", "json"]);
    for (k, v) in env {
        cli = cli.env(k, v);
    }
    json_events(&cli.args(args).run().ok().stdout)
}

/// The paths of the image's only layer in the layout `out`, as GNU tar lists them.
fn layer_paths(out: &Path) -> Vec<String> {
    tar_list(&first_layer_blob(out, out).1)
}

/// Whether each layer of a build came from the store, by layer name.
fn cached(events: &[Value]) -> Vec<(String, bool)> {
    of_kind(events, "layer-finished")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["cached"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Every node key of the `plan` events.
fn plan_keys(events: &[Value]) -> BTreeSet<String> {
    of_kind(events, "plan")
        .iter()
        .flat_map(|p| p["graph"]["nodes"].as_array().unwrap())
        .map(|n| n["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_whole_context_leaves_out_target_store_outputs_and_what_dockerignore_says() {
    let p = project();
    let dir = p.dir.clone();
    // The first build fills `target/image/` with the store and its output.
    let first = build_json(&dir, &[], &[]);
    assert_eq!(cached(&first), [("context".to_string(), false)]);
    let default_out = dir.join("target/image/ctx");
    assert!(dir.join("target/image/.store").is_dir());
    assert_eq!(layer_paths(&default_out), EXPECTED);
    let digest = manifest_digest(&default_out);

    // Built again over a target directory that now holds both: entirely fresh, same image.
    let second = build_json(&dir, &[], &[]);
    assert_eq!(cached(&second), [("context".to_string(), true)]);
    assert_eq!(manifest_digest(&default_out), digest);

    // An output inside the context (and its temporary twin while it is written) is left out
    // too: fresh, and `plan --output` keys the build as the build does.
    let planned = json_events(
        &cargo_image(&dir)
            .args(["plan", "--output", "out", "--message-format", "json"])
            .run()
            .ok()
            .stdout,
    );
    for _ in 0..2 {
        let built = build_json(&dir, &["--output", "out"], &[]);
        assert_eq!(cached(&built), [("context".to_string(), true)]);
        assert_eq!(plan_keys(&built), plan_keys(&planned));
    }
    assert_eq!(layer_paths(&dir.join("out")), EXPECTED);
    assert_eq!(manifest_digest(&dir.join("out")), digest);

    // A change of the ignore file that changes no file taken keeps the layer cached, and so
    // does a new file it leaves out.
    p.file(
        ".dockerignore",
        format!("{DOCKERIGNORE}# a comment\n*.tmp\n"),
    );
    std::fs::write(dir.join("scratch.tmp"), "x").unwrap();
    let unchanged = build_json(&dir, &["--output", "out"], &[]);
    assert_eq!(cached(&unchanged), [("context".to_string(), true)]);

    // Taking `notes/draft.md` back rebuilds the layer, which now holds it.
    p.file(
        ".dockerignore",
        format!("{DOCKERIGNORE}# a comment\n*.tmp\n!notes/draft.md\n"),
    );
    let rebuilt = build_json(&dir, &["--output", "out"], &[]);
    assert_eq!(cached(&rebuilt), [("context".to_string(), false)]);
    let paths = layer_paths(&dir.join("out"));
    assert!(
        paths.contains(&"src/notes/draft.md".to_string()),
        "{paths:?}"
    );
    assert!(!paths
        .iter()
        .any(|p| p.contains("target/image") || p.contains("tmp")));
}

#[test]
fn a_renamed_target_directory_and_store_are_left_out_and_named_when_asked_for() {
    // CARGO_TARGET_DIR renames cargo's target directory; `--store` puts the store in the
    // context. Without an ignore file everything else is taken.
    let p = Project::new(SPEC);
    p.file(
        "Cargo.toml",
        "[package]\nname = \"ctx\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .file("src/main.rs", "fn main() {}\n")
    .file("build.log", "kept: no ignore file\n")
    .file("cargo-out/debug/ctx", "\x7fELF\n");
    let dir = p.dir.clone();
    let env = [("CARGO_TARGET_DIR", "cargo-out")];
    let args = ["--store", "cache", "--output", "out"];
    build_json(&dir, &args, &env);
    let again = build_json(&dir, &args, &env);
    assert_eq!(cached(&again), [("context".to_string(), true)]);
    assert_eq!(
        layer_paths(&dir.join("out")),
        [
            "src/",
            "src/Cargo.toml",
            "src/build.log",
            "src/image.toml",
            "src/src/",
            "src/src/main.rs"
        ]
    );

    // `ignore-file` names another file (or `false` turns it off).
    std::fs::write(dir.join("build.ignore"), "*.log\nbuild.ignore\n").unwrap();
    edit_spec(&dir, |s| {
        s.replace(
            "epoch = 1000\n",
            "epoch = 1000\nignore-file = \"build.ignore\"\n",
        )
    });
    build_json(&dir, &args, &env);
    let paths = layer_paths(&dir.join("out"));
    assert!(!paths.contains(&"src/build.log".to_string()), "{paths:?}");
    assert!(
        !paths.contains(&"src/build.ignore".to_string()),
        "{paths:?}"
    );

    // Asking for the target directory itself is an error naming it.
    edit_spec(&dir, |s| s.replace("path = \".\"", "path = \"cargo-out\""));
    let r = cargo_image(&dir)
        .env("CARGO_TARGET_DIR", "cargo-out")
        .args(["build", "--store", "cache", "--output", "out2"])
        .run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("source `cargo-out` is cargo's target directory"),
        "{}",
        r.stderr
    );
}
