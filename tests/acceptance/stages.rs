//! Multi-stage builds: copies out of another stage's merged filesystem, whiteouts, unused stages
//! never built, symlinks resolved inside the stage, and clear errors for bad stage graphs.

use std::path::{Path, PathBuf};

use cargo_oci_image_test_support::*;

/// Every path under `root` (relative, sorted), directories included.
fn tree(root: &Path) -> Vec<String> {
    walk(root)
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

#[test]
fn multi_stage_example_copies_out_of_a_stage_removes_paths_and_runs() {
    let (tmp, dir) = example_copy("multi-stage");
    let out = tmp.path().join("out");
    let events = build_events(&dir, &["--output", "../out"]);
    let built: Vec<String> = of_kind(&events, "layer-finished")
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert!(built.contains(&"system/rootfs".to_string()), "{built:?}");
    assert!(
        !built.iter().any(|n| n.starts_with("debug/")),
        "the unused stage was built: {built:?}"
    );
    oci_image_tool_validate(&out, "latest");
    let raw = skopeo_inspect(&out, "latest", Some("--raw"));
    assert_eq!(
        raw["layers"].as_array().unwrap().len(),
        3,
        "only the image's own layers"
    );

    // The app layer carries the whiteout for the zoneinfo directory it removes.
    let names = tar_list(&blob_path(
        &out,
        raw["layers"][2]["digest"].as_str().unwrap(),
    ));
    assert!(
        names.iter().any(|n| n == "usr/share/zoneinfo/.wh.Europe"),
        "{names:?}"
    );

    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        tree(&rootfs),
        [
            "etc",
            "etc/ssl",
            "etc/ssl/certs",
            "etc/ssl/certs/ca-certificates.crt",
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/tzcheck",
            "usr/share",
            "usr/share/zoneinfo",
            "usr/share/zoneinfo/UTC",
        ],
        "exactly the copied files, the removed directory gone"
    );
    let ca = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    assert_eq!(stat(&ca), (0o444, 0, 0));
    assert!(
        std::fs::symlink_metadata(&ca).unwrap().is_file(),
        "the symlink was resolved"
    );
    assert_eq!(stat(&rootfs.join("usr/share/zoneinfo/UTC")), (0o644, 0, 0));
    assert_eq!(stat(&rootfs.join("usr/local/bin/tzcheck")), (0o755, 0, 0));

    let ran = runc_run(&bundle);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        ran.stdout,
        "CA bundle: 3 certificates\nzoneinfo UTC: 114 bytes, TZif: true\n\
         /usr/share/zoneinfo/Europe: absent\n/usr/share/doc: absent\n/bin/tool: absent\n"
    );

    // The plan shows the stages and what copies from where.
    let plan = cargo_image(&dir).args(["plan"]).run().ok();
    assert!(
        plan.stdout.contains("image stage system"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("layer system/rootfs"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("copies system:/usr/share/zoneinfo -> /usr/share/zoneinfo/"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("debug"), "{}", plan.stdout);
}

/// A project whose runtime copies out of the multi-stage example's `system` stage.
fn stage_project(top: &str) -> (TempDir, PathBuf) {
    let (tmp, dir) = example_copy("multi-stage");
    let spec = format!(
        "name = \"probe\"\n{top}\n[[stage]]\nname = \"system\"\n[[stage.layer]]\nname = \"rootfs\"\n\
         [[stage.layer.add]]\ntar = \"debian-like-rootfs.tar.gz\"\n"
    );
    write_spec(&dir, &spec);
    (tmp, dir)
}

#[test]
fn symlinks_out_of_a_stage_root_resolve_inside_it_never_on_the_host() {
    let (tmp, dir) = stage_project(
        "[[layer]]\nname = \"probe\"\n\
         [[layer.add]]\nfrom-stage = \"system\"\npath = \"/etc/ssl/escape-relative\"\ndest = \"/rel\"\n\
         [[layer.add]]\nfrom-stage = \"system\"\npath = \"/etc/ssl/escape-absolute\"\ndest = \"/abs\"\n",
    );
    let out = tmp.path().join("out");
    cargo_image(&dir)
        .args(["build", "--quiet", "--output"])
        .arg_path(&out)
        .run()
        .ok();
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "latest", &bundle);
    for f in ["rel", "abs"] {
        let text = std::fs::read_to_string(bundle.join("rootfs").join(f)).unwrap();
        assert!(
            text.contains("stage-user"),
            "{f} is the stage's /etc/passwd: {text}"
        );
        let host = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        assert_ne!(text, host, "{f} must never be the host's /etc/passwd");
    }
}

#[test]
fn stage_errors_are_clear() {
    let fails = |top: &str, extra: &str, expect: &[&str]| {
        let (_tmp, dir) = stage_project(top);
        if !extra.is_empty() {
            edit_spec(&dir, |spec| spec + extra);
        }
        let r = cargo_image(&dir).args(["build"]).run();
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        for e in expect {
            assert!(r.stderr.contains(e), "expected {e:?} in:\n{}", r.stderr);
        }
    };
    // A reference to a stage that does not exist.
    fails(
        "[[layer]]\nname = \"x\"\n[[layer.add]]\nfrom-stage = \"nope\"\npath = \"/etc\"\ndest = \"/etc/\"\n",
        "",
        &["image.toml", "nope", "system"],
    );
    // A cycle.
    fails(
        "from = \"stage:a\"\n",
        "[[stage]]\nname = \"a\"\nfrom = \"stage:b\"\n[[stage]]\nname = \"b\"\nfrom = \"stage:a\"\n",
        &["image.toml", "cycle", "a -> b -> a"],
    );
    // A path the stage does not have.
    fails(
        "[[layer]]\nname = \"x\"\n[[layer.add]]\nfrom-stage = \"system\"\npath = \"/opt/missing\"\ndest = \"/opt/\"\n",
        "",
        &["/opt/missing", "system"],
    );
    // An unknown --stage.
    let (_tmp, dir) = stage_project("");
    let r = cargo_image(&dir).args(["build", "--stage", "nope"]).run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("nope") && r.stderr.contains("system") && r.stderr.contains("--stage"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_deprecated_target_flag_still_names_a_stage_and_says_so() {
    let (tmp, dir) = example_copy("multi-stage");
    let out = tmp.path().join("system");
    let r = cargo_image(&dir)
        .args(["build", "--target", "system", "--output"])
        .arg_path(&out)
        .run()
        .ok();
    assert!(
        r.stderr.contains(
            "warning: `--target system` names a stage and is deprecated: use `--stage system`"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(
        manifest_digest(&out),
        {
            let again = tmp.path().join("again");
            cargo_image(&dir)
                .args(["build", "--quiet", "--stage", "system", "--output"])
                .arg_path(&again)
                .run()
                .ok();
            manifest_digest(&again)
        },
        "--target and --stage build the same image"
    );
}

#[test]
fn stage_builds_a_source_stage_as_the_image() {
    let (tmp, dir) = example_copy("multi-stage");
    let out = tmp.path().join("system");
    cargo_image(&dir)
        .args(["build", "--quiet", "--stage", "system", "--output"])
        .arg_path(&out)
        .run()
        .ok();
    oci_image_tool_validate(&out, "latest");
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("etc/passwd").is_file());
    assert!(
        !rootfs.join("usr/share/doc").exists(),
        "whiteout of the slim layer applied"
    );
    assert!(rootfs.join("bin/tool").is_file());
}
