//! Cargo workspaces: every image of `examples/workspace` in one command, sharing the store; a
//! layer they share is built once; a code change rebuilds only that crate's top layer.

use std::path::Path;

use cargo_oci_image_test_support::*;

/// The `image-finished` events of such a build.
fn built_images(dir: &Path, args: &[&str]) -> Vec<Value> {
    build_events(dir, args)
        .into_iter()
        .filter(|e| e["event"] == "image-finished")
        .collect()
}

#[test]
fn workspace_images_build_in_one_command_and_share_a_layer() {
    let (_tmp, dir) = example_copy("workspace");
    let events = build_events(&dir, &["--workspace"]);
    let finished = of_kind(&events, "image-finished");
    assert_eq!(finished.len(), 3, "three images: {finished:?}");

    // Each image is a valid layout; the workspace's shared layer (the bottom of the images' own
    // layers, above the built-in base's) has one digest in all three manifests.
    let mut bottoms = Vec::new();
    let mut tops = Vec::new();
    for image in &finished {
        let layout = Path::new(image["path"].as_str().unwrap()).to_path_buf();
        let tag = image["tags"][0].as_str().unwrap();
        oci_image_tool_validate(&layout, tag);
        let manifest = blob_json(&layout, image["digest"].as_str().unwrap());
        let layers = manifest["layers"].as_array().unwrap();
        assert!(
            layers.len() >= 2,
            "shared layer + the crate's own: {manifest}"
        );
        // The config's history names each layer (one entry per layer, none empty).
        let config = blob_json(&layout, manifest["config"]["digest"].as_str().unwrap());
        let history = config["history"].as_array().unwrap();
        assert_eq!(history.len(), layers.len(), "{config}");
        let shared = history
            .iter()
            .position(|h| h["created_by"] == "cargo-image layer base-files")
            .unwrap_or_else(|| panic!("no base-files layer: {config}"));
        bottoms.push(layers[shared]["digest"].as_str().unwrap().to_string());
        tops.push(
            layers.last().unwrap()["digest"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(bottoms.windows(2).all(|w| w[0] == w[1]), "{bottoms:?}");

    // ...and it was built once: one image built it, the others found it in the store.
    let built_shared = of_kind(&events, "layer-finished")
        .into_iter()
        .filter(|e| e["digest"] == bottoms[0].as_str() && e["cached"] == false)
        .count();
    assert_eq!(
        built_shared, 1,
        "the shared layer was built {built_shared} times"
    );

    // Nothing changed: everything is fresh.
    let again = build_events(&dir, &["--workspace"]);
    assert!(of_kind(&again, "layer-finished")
        .iter()
        .all(|e| e["cached"] == true));

    // Change one crate's code: only that crate's top layer is rebuilt.
    let main = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().join("src/main.rs"))
        .filter(|p| p.is_file())
        .min()
        .expect("a crate with src/main.rs");
    // A change the program's behaviour shows (dead code would leave the binary as it was).
    let code = std::fs::read_to_string(&main).unwrap();
    assert!(code.contains("println!(\""), "{}", main.display());
    std::fs::write(
        &main,
        code.replacen("println!(\"", "println!(\"[changed] ", 1),
    )
    .unwrap();
    let changed = build_events(&dir, &["--workspace"]);
    let rebuilt: Vec<_> = of_kind(&changed, "layer-finished")
        .into_iter()
        .filter(|e| e["cached"] == false)
        .collect();
    assert_eq!(rebuilt.len(), 1, "only one layer rebuilt: {rebuilt:?}");
    assert!(
        !tops.contains(&rebuilt[0]["digest"].as_str().unwrap().to_string()),
        "the rebuilt layer has new content"
    );
}

#[test]
fn package_selection_and_zero_config() {
    let (tmp, dir) = example_copy("workspace");
    // -p picks one image; --exclude skips.
    let images = built_images(&dir, &["-p", "cli-tool"]);
    assert_eq!(images.len(), 1);
    let layout = Path::new(images[0]["path"].as_str().unwrap()).to_path_buf();
    // The zero-config crate: a static binary on the built-in base, entrypoint set, labels from
    // Cargo.toml.
    let config = skopeo_inspect(
        &layout,
        images[0]["tags"][0].as_str().unwrap(),
        Some("--config"),
    );
    let entrypoint = config["config"]["Entrypoint"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(entrypoint.starts_with("/usr/local/bin/"), "{config}");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.title"],
        "cli-tool"
    );
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&layout, images[0]["tags"][0].as_str().unwrap(), &bundle);
    let ran = runc_run(&bundle);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(!ran.stdout.is_empty());

    let names: Vec<String> = built_images(&dir, &["--exclude", "api"])
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with("api")), "{names:?}");

    // A package the workspace does not have: a usage error naming it and the ones it has.
    let r = cargo_image(&dir).args(["build", "-p", "nope"]).run();
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("-p `nope`"), "{}", r.stderr);
    assert!(r.stderr.contains("api, worker, cli-tool"), "{}", r.stderr);
}

#[test]
fn default_selection_and_tag_templates() {
    let (_tmp, dir) = example_copy("workspace");
    // At the root: the packages with `[package.metadata.image]` (not the zero-config one), named
    // behind the workspace's `registry`, tagged from the `{version}` template.
    let mut names: Vec<String> = built_images(&dir, &[])
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["ghcr.io/acme/api", "ghcr.io/acme/worker"]);
    // In a member's directory: that package, even without metadata.
    let here = built_images(&dir.join("cli-tool"), &[]);
    assert_eq!(here.len(), 1);
    assert_eq!(here[0]["name"], "ghcr.io/acme/cli-tool");
    assert_eq!(here[0]["tags"], serde_json::json!(["0.3.1", "latest"]));
    // The package's own `tags` replace the workspace's.
    let worker = built_images(&dir, &["-p", "worker"]);
    assert_eq!(worker[0]["tags"], serde_json::json!(["0.3.1"]));
    // Labels and annotations from Cargo.toml, under the spec's own.
    let layout = Path::new(worker[0]["path"].as_str().unwrap()).to_path_buf();
    let config = skopeo_inspect(&layout, "0.3.1", Some("--config"));
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], "0.3.1");
    assert_eq!(
        labels["org.opencontainers.image.licenses"],
        "MIT OR Apache-2.0"
    );
    assert_eq!(labels["org.opencontainers.image.vendor"], "Acme");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["--queue", "default"])
    );
    let manifest = blob_json(&layout, worker[0]["digest"].as_str().unwrap());
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.source"],
        "https://github.com/acme/services"
    );
}

#[test]
fn metadata_errors_name_the_cargo_toml_and_key() {
    let (_tmp, dir) = example_copy("workspace");
    let build = |dir: &Path| cargo_image(dir).args(["build", "--workspace"]).run();

    // A misspelt key in a package's metadata: its Cargo.toml, line and full key.
    let api = dir.join("api/Cargo.toml");
    let good = std::fs::read_to_string(&api).unwrap();
    std::fs::write(&api, good.replace("exposed-ports", "expose")).unwrap();
    let r = build(&dir);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("api/Cargo.toml:14:")
            && r.stderr.contains("`package.metadata.image.config.expose`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("exposed-ports"),
        "the fix is named: {}",
        r.stderr
    );
    std::fs::write(&api, &good).unwrap();

    // A bad value in the workspace's defaults: the root Cargo.toml and its key.
    let root = dir.join("Cargo.toml");
    let good = std::fs::read_to_string(&root).unwrap();
    std::fs::write(
        &root,
        good.replace(r#"user = "65532:65532""#, r#"user = """#),
    )
    .unwrap();
    let r = build(&dir);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("workspace/Cargo.toml:")
            && r.stderr.contains("`workspace.metadata.image.config.user`"),
        "{}",
        r.stderr
    );

    // A tag template whose value is no valid tag.
    std::fs::write(
        &root,
        good.replace(r#""{version}""#, r#""v{version}+{git_sha}""#),
    )
    .unwrap();
    let r = build(&dir);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("`workspace.metadata.image.tags[0]`") && r.stderr.contains("{git_sha}"),
        "{}",
        r.stderr
    );
    std::fs::write(&root, &good).unwrap();

    // Nothing was written by the failed builds.
    assert!(!dir.join("target/image/api").exists());
}

#[test]
fn cargo_arguments_pass_through() {
    let (tmp, dir) = example_copy("workspace");
    let images = built_images(&dir, &["-p", "cli-tool", "--features", "shout", "--locked"]);
    let image = &images[0];
    let layout = Path::new(image["path"].as_str().unwrap()).to_path_buf();
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&layout, "latest", &bundle);
    let ran = runc_run(&bundle);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout
            .starts_with("CLI-TOOL 0.3.1: BUILT BY CARGO-IMAGE"),
        "the feature was on: {}",
        ran.stdout
    );
}

#[test]
fn workspace_platforms_make_an_index_per_image() {
    let (_tmp, dir) = example_copy("workspace");
    // `platforms` in the workspace's defaults applies to every image, zero-config ones too.
    edit_file(&dir.join("Cargo.toml"), |text| {
        text.replace(
            "epoch = 1700000000\n",
            "epoch = 1700000000\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
        )
    });
    let images = built_images(&dir, &["-p", "cli-tool"]);
    let image = &images[0];
    let layout = Path::new(image["path"].as_str().unwrap()).to_path_buf();
    let raw = skopeo_inspect(&layout, "latest", Some("--raw"));
    let manifests = raw["manifests"].as_array().expect("an image index");
    let arches: Vec<&str> = manifests
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"], "{raw}");
    // The shared layer is one blob in both; the binaries differ.
    let layers: Vec<Vec<String>> = manifests
        .iter()
        .map(|m| {
            blob_json(&layout, m["digest"].as_str().unwrap())["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert_eq!(layers[0][0], layers[1][0], "base-files shared");
    assert_ne!(
        layers[0].last(),
        layers[1].last(),
        "one binary per platform"
    );
}

/// Runs `git ARGS` in `dir` (an identity and no signing, so it works on any machine).
fn git(dir: &Path, args: &[&str]) {
    run_command(
        std::process::Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(dir),
    )
    .ok();
}

#[test]
fn cargo_habits_bin_release_profile_and_tag_templates() {
    let (tmp, dir) = example_copy("workspace");
    // A second binary: a zero-config image of cli-tool must now be told which one.
    let other = dir.join("cli-tool/src/bin/other.rs");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(&other, "fn main() { println!(\"the other binary\"); }\n").unwrap();
    let r = cargo_image(&dir).args(["build", "-p", "cli-tool"]).run();
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("several binaries"), "{}", r.stderr);

    // --bin picks it (and, without -p, the package that has it); --release is accepted.
    let images = built_images(&dir, &["--bin", "other", "--release"]);
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["name"], "ghcr.io/acme/cli-tool");
    let layout = Path::new(images[0]["path"].as_str().unwrap()).to_path_buf();
    let config = skopeo_inspect(&layout, "latest", Some("--config"));
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/other"])
    );
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&layout, "latest", &bundle);
    let ran = runc_run(&bundle);
    assert_eq!(ran.stdout.trim(), "the other binary", "{}", ran.stderr);
    // A binary nobody has, or --bin where the image already says which: named errors.
    let r = cargo_image(&dir).args(["build", "--bin", "nope"]).run();
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("--bin `nope`") && r.stderr.contains("other (cli-tool)"),
        "{}",
        r.stderr
    );
    let r = cargo_image(&dir)
        .args(["build", "--bin", "other", "--profile", "x"])
        .run();
    assert_ne!(r.code, Some(0));

    // The status line names the profile cargo really builds with.
    let r = cargo_image(&dir)
        .args(["build", "--bin", "other", "--profile", "dev"])
        .run()
        .ok();
    assert!(
        r.stderr.contains("(dev, x86_64-unknown-linux-musl)") && !r.stderr.contains("(release,"),
        "{}",
        r.stderr
    );

    // --tag takes the spec's templates; a changed tracked file marks the short sha dirty.
    git(&dir, &["init", "-q"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "import"]);
    let tags = |dir: &Path| {
        built_images(
            dir,
            &[
                "--bin",
                "other",
                "--tag",
                "{version}-{git_short_sha}",
                "--tag",
                "{git_sha}",
            ],
        )[0]["tags"]
            .clone()
    };
    let clean = tags(&dir);
    let (short, sha) = (clean[0].as_str().unwrap(), clean[1].as_str().unwrap());
    assert_eq!(short, format!("0.3.1-{}", &sha[..7]), "{clean}");
    assert_eq!(sha.len(), 40, "{clean}");
    std::fs::write(&other, "fn main() { println!(\"changed\"); }\n").unwrap();
    let dirty = tags(&dir);
    assert_eq!(dirty[0], format!("0.3.1-{}-dirty", &sha[..7]), "{dirty}");
    assert_eq!(dirty[1], sha, "{{git_sha}} stays the commit: {dirty}");
}

/// A workspace of two packages whose images hold files only (no cargo build), for
/// [`a_warm_workspace_build_asks_cargo_nothing_until_a_manifest_changes`].
fn files_only_workspace(root: &Path) {
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"a\", \"b\"]\n\n\
         [workspace.metadata.image]\nfrom = \"scratch\"\n",
    );
    for name in ["a", "b"] {
        write(
            &format!("{name}/Cargo.toml"),
            &format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [package.metadata.image]\n\n\
                 [[package.metadata.image.layer]]\nname = \"notes\"\n\n\
                 [[package.metadata.image.layer.add]]\npath = \"notes.txt\"\ndest = \"/notes.txt\"\n"
            ),
        );
        write(&format!("{name}/src/lib.rs"), "");
        write(&format!("{name}/notes.txt"), &format!("package {name}\n"));
    }
}

#[test]
fn a_warm_workspace_build_asks_cargo_nothing_until_a_manifest_changes() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("ws");
    files_only_workspace(&dir);
    // `$CARGO` (what cargo-image runs as cargo): the real one, each command logged.
    let log = tmp.path().join("cargo-commands");
    let wrapper = tmp.path().join("cargo");
    let real = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            Path::new(&real).display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let build = || {
        let r = cargo_image(&dir)
            .args(["build", "--workspace", "--message-format", "json"])
            .env("CARGO", &wrapper)
            .run()
            .ok();
        let mut digests: Vec<String> = of_kind(&json_events(&r.stdout), "image-finished")
            .iter()
            .map(|e| e["digest"].as_str().unwrap().to_string())
            .collect();
        digests.sort();
        digests
    };
    let metadata_runs = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "metadata")
            .count()
    };
    // A kept answer holds while nothing it was read from changed, and is taken only when all
    // of that is over 2 s older than the answer. The first build makes `target/` in the
    // workspace root (one of the directories the answer watches), so the second asks cargo
    // again, and keeps that answer: the third takes it.
    let cold = build();
    assert_eq!(cold.len(), 2, "{cold:?}");
    assert_eq!(
        metadata_runs(),
        1,
        "one `cargo metadata` for the whole workspace"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(build(), cold);
    assert_eq!(metadata_runs(), 2);
    assert_eq!(build(), cold);
    assert_eq!(metadata_runs(), 2, "the warm build took the kept answer");

    // A package's image metadata changes: cargo is asked again, and the image follows.
    edit_file(&dir.join("b/Cargo.toml"), |text| {
        text.replace(
            "[package.metadata.image]\n",
            "[package.metadata.image]\nconfig.labels = { team = \"b\" }\n",
        )
    });
    let changed = build();
    assert_eq!(metadata_runs(), 3, "the changed manifest was read again");
    assert_eq!(changed.len(), 2);
    assert_eq!(
        changed.iter().filter(|d| cold.contains(d)).count(),
        1,
        "a's image is the same, b's has the label: {cold:?} -> {changed:?}"
    );
}
