//! The command line: `cargo image` and `cargo-image` forms, help, exit codes, status output,
//! JSON events, and `inspect`.

use std::path::Path;

use cargo_oci_image_test_support::*;

#[test]
fn works_as_cargo_subcommand_and_directly() {
    let (tmp, dir) = example_copy("import-tar");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    // As cargo runs it: `cargo-image image build ...`.
    let r = cargo_image(&dir)
        .args(["image", "build", "--output"])
        .arg_path(&a)
        .run()
        .ok();
    assert!(r.stderr.contains("Finished"), "{}", r.stderr);
    assert!(r.stderr.contains("sha256:"), "{}", r.stderr);
    cargo_image(&dir)
        .args(["build", "--output"])
        .arg_path(&b)
        .run()
        .ok();
    assert_eq!(manifest_digest(&a), manifest_digest(&b));
}

#[test]
fn help_has_examples_and_usage_errors_exit_2() {
    let dir = repo_root();
    for sub in ["build", "inspect"] {
        let r = cargo_image(&dir).args([sub, "--help"]).run().ok();
        assert!(r.stdout.contains("Examples:"), "{sub} --help: {}", r.stdout);
    }
    let r = cargo_image(&dir).args(["build", "--no-such-flag"]).run();
    assert_eq!(r.code, Some(2));
    let r = cargo_image(&dir).args(["frobnicate"]).run();
    assert_eq!(r.code, Some(2));
    // No spec here: a usage error that says what to do.
    let empty = TempDir::new().unwrap();
    let r = cargo_image(empty.path()).args(["build"]).run();
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("--spec"), "{}", r.stderr);
}

#[test]
fn printed_output_reaches_the_pipe_whole_before_the_process_ends() {
    // The binary ends with `_exit` once the command is done (skipping exit handlers): what it
    // printed must all be in the pipe by then, and the exit code must be the command's.
    let root = repo_root();
    let r = cargo_image(&root).args(["schema"]).run().ok();
    let committed = std::fs::read_to_string(root.join("schema/image.schema.json")).unwrap();
    assert_eq!(r.stdout, committed);
    let r = cargo_image(&root)
        .args(["inspect", "--json", "--tag", "latest"])
        .arg_path(&root.join("no-such-layout"))
        .run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("no-such-layout"), "{}", r.stderr);
}

#[test]
fn tag_flag_replaces_the_spec_tags() {
    let (tmp, dir) = example_copy("import-tar");
    let out = tmp.path().join("out");
    cargo_image(&dir)
        .args([
            "build", "--quiet", "--tag", "v9", "--tag", "stable", "--output",
        ])
        .arg_path(&out)
        .run()
        .ok();
    let index = read_json(&out.join("index.json"));
    let mut tags: Vec<_> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        // The image's SBOM is listed untagged.
        .filter(|m| m.get("artifactType").is_none())
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    tags.sort();
    assert_eq!(tags, ["stable", "v9"]);
    oci_image_tool_validate(&out, "v9");

    let r = cargo_image(&dir)
        .args(["build", "--tag", "-bad", "--output"])
        .arg_path(&tmp.path().join("bad"))
        .run();
    assert_eq!(r.code, Some(2), "{}", r.stderr);
}

#[test]
fn json_messages_are_one_event_per_line() {
    let (tmp, dir) = example_copy("import-tar");
    let out = tmp.path().join("out");
    let events = build_events(&dir, &["--output", "../out"]);
    let kinds: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"spec-loaded"));
    assert_eq!(kinds.last(), Some(&"image-finished"));
    assert_eq!(kinds.iter().filter(|k| **k == "layer-finished").count(), 2);
    let last = events.last().unwrap();
    assert_eq!(last["digest"].as_str().unwrap(), manifest_digest(&out));
}

#[test]
fn inspect_shows_the_image_as_a_table_and_json() {
    let (tmp, dir) = example_copy("import-tar");
    let out = tmp.path().join("out");
    let digest = build(&dir, Path::new("image.toml"), &out);
    let r = cargo_image(&dir)
        .args(["inspect"])
        .arg_path(&out)
        .run()
        .ok();
    assert!(r.stdout.contains(&digest), "{}", r.stdout);
    assert!(r.stdout.contains("vendor-1.0"), "{}", r.stdout);
    assert!(
        r.stdout.contains("TOOL_CONFIG=/etc/tool/config.toml"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("cargo-image layer config"),
        "{}",
        r.stdout
    );

    let r = cargo_image(&dir)
        .args(["inspect", "--json", "--tag", "latest"])
        .arg_path(&out)
        .run()
        .ok();
    let v: Value = serde_json::from_str(&r.stdout).expect("inspect --json prints JSON");
    let text = v.to_string();
    assert!(text.contains(&digest), "{text}");
    let r = cargo_image(&dir)
        .args(["inspect", "--tag", "nope"])
        .arg_path(&out)
        .run();
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("nope") && r.stderr.contains("latest"),
        "{}",
        r.stderr
    );
}
