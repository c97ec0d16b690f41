//! Hardening of the spec and of the layer sources (issue 10): a symlinked context, truncated
//! tarballs, glob negation, range checks of the CLI and the spec, reserved whiteout names.
//! Every test here reproduced its failure on the code before the fix.

use std::ffi::OsStr;
use std::path::Path;

use cargo_oci_image_test_support::*;

// Item 2: the build context and every host path stay inside the spec's directory tree, symlinks
// included.

#[test]
fn a_context_that_is_a_symlink_out_of_the_spec_directory_is_refused() {
    let p = Project::new(
        "name = \"esc\"\ncontext = \"sub\"\n[[layer]]\nname = \"l\"\n\
         [[layer.add]]\npath = \"shadow\"\ndest = \"/shadow\"\n",
    );
    p.symlink("sub", &p.outside);
    let err = p.fails();
    assert!(err.contains("image.toml:2:"), "located at `context`: {err}");
    assert!(err.contains("`sub`"), "names the link: {err}");
    assert!(
        err.contains(&p.outside.canonicalize().unwrap().display().to_string()),
        "names the link's target: {err}"
    );
}

#[test]
fn a_context_below_a_symlinked_directory_out_of_the_spec_directory_is_refused() {
    let p = Project::new(
        "name = \"esc\"\ncontext = \"link/.\"\n[[layer]]\nname = \"l\"\n\
         [[layer.add]]\npath = \"shadow\"\ndest = \"/shadow\"\n",
    );
    p.symlink("link", &p.outside);
    let err = p.fails();
    assert!(err.contains("`link`"), "names the link: {err}");
}

#[test]
fn a_context_symlinked_inside_the_spec_directory_still_builds() {
    let p = Project::new(
        "name = \"ok\"\ncontext = \"alias\"\n[[layer]]\nname = \"l\"\n\
         [[layer.add]]\npath = \"hello.txt\"\ndest = \"/hello.txt\"\n",
    );
    p.file("real/hello.txt", "hi\n");
    p.symlink("alias", Path::new("real"));
    p.builds();
    assert!(
        p.layer_paths().iter().any(|l| l == "hello.txt"),
        "{:?}",
        p.layer_paths()
    );
}

#[test]
fn a_path_and_a_tar_through_a_symlink_out_of_the_context_are_refused_at_their_key() {
    for (key, link) in [("path", "shadow-link"), ("tar", "archive.tar")] {
        let p = Project::new(&format!(
            "name = \"esc\"\n[[layer]]\nname = \"l\"\n\
             [[layer.add]]\n{key} = \"{link}\"\ndest = \"/x/\"\n"
        ));
        p.symlink(link, &p.outside.join("shadow"));
        let err = p.fails();
        assert!(
            err.contains("image.toml:5:"),
            "{key}: located at the key: {err}"
        );
        assert!(
            err.contains(&format!("`{link}`")),
            "{key}: names the link: {err}"
        );
        assert!(err.contains("outside"), "{key}: names the target: {err}");
    }
}

#[test]
fn a_workspace_package_path_symlinked_out_of_the_package_directory_is_refused() {
    let p = Project::new("");
    p.file(
        "Cargo.toml",
        "[workspace]\nmembers = [\"app\", \"other\"]\nresolver = \"2\"\n\
         [workspace.metadata.image]\n[[workspace.metadata.image.layer]]\nname = \"shared\"\n\
         [[workspace.metadata.image.layer.add]]\npath = \"shared.txt\"\ndest = \"/shared.txt\"\n",
    );
    // The workspace's layer reads a host file, so the merged context is the workspace root and
    // the package's paths are rebased onto it: `leak` still resolves inside that root.
    p.file("shared.txt", "for every image\n");
    for krate in ["app", "other"] {
        p.file(
            &format!("{krate}/Cargo.toml"),
            format!("[package]\nname = \"{krate}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
        );
        p.file(&format!("{krate}/src/lib.rs"), "");
    }
    p.file("other/secret", "not the app's\n");
    let manifest = p.dir.join("app/Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        "\n[package.metadata.image]\n[[package.metadata.image.layer]]\nname = \"l\"\n\
         [[package.metadata.image.layer.add]]\npath = \"leak\"\ndest = \"/leak\"\n",
    );
    std::fs::write(&manifest, text).unwrap();
    std::fs::remove_file(p.dir.join("image.toml")).unwrap();
    p.symlink("app/leak", Path::new("../other/secret"));
    let err = p.refuses(
        cargo_image(&p.dir)
            .args(["build", "-p", "app", "--output"])
            .arg_path(&p.out()),
        1,
    );
    assert!(
        err.contains("Cargo.toml:"),
        "located in the package's manifest: {err}"
    );
    assert!(err.contains("`leak`"), "names the link: {err}");
    assert!(err.contains("other"), "names the target: {err}");
}

// Item 8: a removal cannot write a reserved whiteout name.

#[test]
fn removing_a_path_named_like_a_whiteout_is_refused_at_its_key() {
    for (remove, name) in [("/.wh.x", ".wh.x"), ("/etc/.wh..wh..opq", ".wh..wh..opq")] {
        let p = Project::new(&format!(
            "name = \"wh\"\n[[layer]]\nname = \"l\"\nremove = [\"/keep\", \"{remove}\"]\n"
        ));
        let err = p.fails();
        assert!(err.contains("image.toml:4:"), "{remove}: located: {err}");
        assert!(
            err.contains("layer[0].remove[1]"),
            "{remove}: names the key: {err}"
        );
        assert!(
            err.contains(&format!("`{name}`")),
            "{remove}: names the component: {err}"
        );
    }
}

// Item 5: a truncated or empty tarball is an error naming the file and the offset.

/// A project whose layer imports `vendor.tar` (made with GNU tar from two files, then passed to
/// `cut` to damage it), with the byte count of the intact archive.
fn tar_project(compress: Option<&str>, cut: impl FnOnce(&[u8]) -> Vec<u8>) -> Project {
    let p = Project::new(
        "name = \"tarred\"\n[[layer]]\nname = \"l\"\n[[layer.add]]\ntar = \"vendor.tar\"\ndest = \"/v/\"\n",
    );
    p.file("src/a.txt", "a".repeat(3000));
    p.file("src/b.txt", "b".repeat(100));
    let mut args = vec![
        "--create",
        "--file",
        "whole.tar",
        "--format",
        "gnu",
        "-C",
        "src",
    ];
    if let Some(c) = compress {
        args.insert(0, c);
    }
    args.extend(["a.txt", "b.txt"]);
    run("tar", args, &p.dir).ok();
    let whole = std::fs::read(p.dir.join("whole.tar")).unwrap();
    std::fs::write(p.dir.join("vendor.tar"), cut(&whole)).unwrap();
    p
}

#[test]
fn a_tar_cut_inside_a_member_is_an_error_naming_the_file_and_the_offset() {
    // Member a.txt: header at 0, 3000 bytes of data from 512 to 3512; cut at 2000.
    let p = tar_project(None, |t| t[..2000].to_vec());
    let gnu = run("tar", ["--list", "--file", "vendor.tar"], &p.dir);
    assert_ne!(gnu.code, Some(0), "GNU tar refuses it too: {}", gnu.stderr);
    let err = p.fails();
    assert!(err.contains("`vendor.tar`"), "names the file: {err}");
    assert!(err.contains("2000"), "names the offset: {err}");
    assert!(err.contains("a.txt"), "names the member: {err}");
    assert!(err.contains("truncated"), "says what is wrong: {err}");
}

#[test]
fn a_tar_cut_inside_a_header_or_a_compressed_stream_is_an_error() {
    // The header of b.txt is at 3584..4096: cut inside it.
    let p = tar_project(None, |t| t[..3700].to_vec());
    let err = p.fails();
    assert!(
        err.contains("`vendor.tar`") && err.contains("3700"),
        "{err}"
    );
    // Cut right after a.txt's data (before its padding ends, and no b.txt).
    let p = tar_project(None, |t| t[..3512].to_vec());
    let err = p.fails();
    assert!(
        err.contains("`vendor.tar`") && err.contains("3512"),
        "{err}"
    );
    for flag in ["--gzip", "--zstd"] {
        let p = tar_project(Some(flag), |t| t[..t.len() / 2].to_vec());
        let err = p.fails();
        assert!(
            err.contains("`vendor.tar`"),
            "{flag}: names the file: {err}"
        );
        assert!(
            err.contains("truncated"),
            "{flag}: says what is wrong: {err}"
        );
    }
}

#[test]
fn an_empty_file_is_not_an_empty_tar() {
    let p = tar_project(None, |_| Vec::new());
    let err = p.fails();
    assert!(err.contains("`vendor.tar`"), "names the file: {err}");
    assert!(err.contains("empty"), "says what is wrong: {err}");
}

#[test]
fn an_intact_tar_without_end_blocks_still_imports() {
    // What some tools write: the members, no two zero blocks at the end.
    let p = tar_project(None, |t| t[..4096 + 512].to_vec());
    p.builds();
    let paths = p.layer_paths();
    assert!(paths.iter().any(|l| l == "v/b.txt"), "{paths:?}");
}

// Item 7: every numeric or string option is range-checked, with a message naming the flag,
// the variable or the spec key.

const SIMPLE: &str = "name = \"simple\"\n[[layer]]\nname = \"l\"\n\
    [[layer.add]]\ncontent = \"hi\"\ndest = \"/hi.txt\"\n";

/// `cargo-image build --output OUT ARGS` in `p`.
fn build_with(p: &Project, args: &[&str]) -> CargoImage {
    cargo_image(&p.dir)
        .args(["build", "--output"])
        .arg_path(&p.out())
        .args(args)
}

#[test]
fn a_source_date_epoch_after_the_year_9999_is_a_usage_error_naming_the_variable() {
    let p = Project::new(SIMPLE);
    let err = p.refuses(p.cli().env("SOURCE_DATE_EPOCH", "99999999999999"), 2);
    assert!(
        err.contains("SOURCE_DATE_EPOCH"),
        "names the variable: {err}"
    );
    assert!(err.contains("9999"), "says the limit: {err}");
    // The last second RFC 3339 can write is fine, and skopeo reads it.
    p.cli().env("SOURCE_DATE_EPOCH", "253402300799").run().ok();
    let config = skopeo_inspect(&p.out(), "latest", Some("--config"));
    assert_eq!(config["created"], "9999-12-31T23:59:59Z");
}

#[test]
fn an_absurd_jobs_count_is_a_usage_error_at_once() {
    let p = Project::new(SIMPLE);
    let started = std::time::Instant::now();
    let timeout = run(
        "timeout",
        [
            OsStr::new("30"),
            cargo_image_bin().as_os_str(),
            OsStr::new("build"),
            OsStr::new("--jobs"),
            OsStr::new("100000"),
            OsStr::new("--output"),
            p.out().as_os_str(),
        ],
        &p.dir,
    );
    assert_eq!(
        timeout.code,
        Some(2),
        "a usage error, not a stall: {timeout:?}"
    );
    assert!(started.elapsed().as_secs() < 10, "refused at once");
    assert!(
        timeout.stderr.contains("--jobs"),
        "names the flag: {}",
        timeout.stderr
    );
    assert!(!p.out().exists());
    build_with(&p, &["--jobs", "3"]).run().ok();
}

#[test]
fn an_empty_platform_is_a_usage_error_naming_the_flag() {
    let p = Project::new(SIMPLE);
    for value in ["", "linux/amd64,", " "] {
        let err = p.refuses(build_with(&p, &["--platform", value]), 2);
        assert!(
            err.contains("--platform"),
            "{value:?}: names the flag: {err}"
        );
        assert!(
            err.contains("empty"),
            "{value:?}: says what is wrong: {err}"
        );
    }
}

#[test]
fn an_image_path_with_a_control_character_is_refused_at_its_key() {
    for (key, value) in [
        ("dest", "/etc/a\\nb"),
        ("dest", "/bin/tab\\there"),
        ("remove", "/x\\ny"),
    ] {
        let spec = if key == "dest" {
            SIMPLE.replace("dest = \"/hi.txt\"", &format!("dest = \"{value}\""))
        } else {
            SIMPLE.replace(
                "name = \"l\"\n",
                &format!("name = \"l\"\nremove = [\"{value}\"]\n"),
            )
        };
        let p = Project::new(&spec);
        let err = p.fails();
        assert!(err.contains(key), "{value}: names the key: {err}");
        assert!(
            err.contains("control character"),
            "{value}: says what is wrong: {err}"
        );
    }
}

#[test]
fn an_empty_or_spaced_profile_is_a_usage_error_naming_the_flag() {
    let p = Project::new(SIMPLE);
    for value in ["", "my profile"] {
        let err = p.refuses(build_with(&p, &["--profile", value]), 2);
        assert!(
            err.contains("--profile"),
            "{value:?}: names the flag: {err}"
        );
        assert!(
            err.contains("not a profile name"),
            "{value:?}: says what is wrong: {err}"
        );
    }
}

// Item 6: `!` in include and exclude works the way it does in .gitignore.

/// A project copying `tree/` with `globs` (TOML lines for `include`/`exclude`); the layer's
/// files under `/t/`.
fn copied_files(globs: &str) -> Vec<String> {
    let p = Project::new(&format!(
        "name = \"globs\"\n[[layer]]\nname = \"l\"\n\
         [[layer.add]]\npath = \"tree\"\ndest = \"/t/\"\n{globs}\n"
    ));
    for f in [
        "app.log",
        "keep.log",
        "sub/deep.log",
        "sub/keep.log",
        "docs/a.md",
        "docs/draft.md",
        "!lit.txt",
        "other.txt",
    ] {
        p.file(&format!("tree/{f}"), f);
    }
    p.builds();
    let mut files: Vec<String> = p
        .layer_paths()
        .into_iter()
        .filter_map(|l| l.strip_prefix("t/").map(str::to_owned))
        .filter(|l| !l.is_empty() && !l.ends_with('/'))
        .collect();
    files.sort();
    files
}

#[test]
fn a_negated_exclude_pattern_keeps_what_an_earlier_pattern_left_out() {
    assert_eq!(
        copied_files("exclude = [\"*.log\", \"!keep.log\", \"docs/\", \"other.txt\"]"),
        ["!lit.txt", "keep.log", "sub/keep.log"]
    );
    // Later patterns win, as in .gitignore.
    assert_eq!(
        copied_files("exclude = [\"!keep.log\", \"*.log\", \"docs/\", \"other.txt\"]"),
        ["!lit.txt"]
    );
}

#[test]
fn a_negated_include_pattern_takes_back_what_an_earlier_pattern_took() {
    // `!` negates, even inside an included directory; `\!` is a literal `!`.
    assert_eq!(
        copied_files("include = [\"docs/\", \"!docs/draft.md\", \"\\\\!lit.txt\", \"*.log\", \"!sub/*.log\"]"),
        ["!lit.txt", "app.log", "docs/a.md", "keep.log"]
    );
}

#[test]
fn a_workdir_or_volume_with_a_control_character_is_refused_at_its_key() {
    for (key, line) in [
        ("config.workdir", "workdir = \"/srv\\napp\""),
        ("config.volumes[0]", "volumes = [\"/data\\r\"]"),
    ] {
        let p = Project::new(&format!("{SIMPLE}[config]\n{line}\n"));
        let err = p.fails();
        assert!(err.contains(key), "{line}: names the key: {err}");
        assert!(
            err.contains("control character"),
            "{line}: says what is wrong: {err}"
        );
    }
}

#[test]
fn an_age_too_large_for_prune_is_a_usage_error_not_a_panic() {
    let p = Project::new(SIMPLE);
    p.builds();
    let store = p.dir.join("store");
    p.cli().args(["--store"]).arg_path(&store).run().ok();
    let r = cargo_image(&p.dir)
        .args([
            "cache",
            "prune",
            "--older-than",
            "999999999999999999d",
            "--store",
        ])
        .arg_path(&store)
        .run();
    assert_eq!(r.code, Some(2), "a usage error: {r:?}");
    assert!(
        r.stderr.contains("--older-than"),
        "names the flag: {}",
        r.stderr
    );
    assert!(store.join("blobs").exists(), "the store is left alone");
}

#[test]
fn a_malformed_push_to_repository_is_a_usage_error_before_building() {
    let p = Project::new(SIMPLE);
    for value in ["", "Upper/Case", "a b"] {
        let err = p.refuses(build_with(&p, &["--push-to", value]), 2);
        assert!(
            err.contains("--push-to"),
            "{value:?}: names the flag: {err}"
        );
        assert!(
            !err.contains("Building"),
            "{value:?}: refused before building: {err}"
        );
    }
}
