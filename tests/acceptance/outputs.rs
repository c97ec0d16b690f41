//! Where a build writes: an output path is replaced only when it holds an output of ours, the
//! leftovers of a killed build are removed by the next build to the same place (and by `cache
//! prune`) while a concurrent build's temporary output is left alone, and the README's quick
//! start works as written on a fresh copy of the repository.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use cargo_oci_image_test_support::registry::Registry;
use cargo_oci_image_test_support::*;

/// A spec of one small layer: builds in well under a second.
const SMALL_SPEC: &str = r#"
name = "notes"
tags = ["latest"]
from = "scratch"

[[layer]]
name = "files"

[[layer.add]]
content = "hello\n"
dest = "/hello.txt"
"#;

/// A spec whose layer is a 48 MiB file of noise: compressing it takes long enough to kill the
/// build while its temporary outputs exist.
const BIG_SPEC: &str = r#"
name = "big"
tags = ["latest"]
from = "scratch"

[[layer]]
name = "noise"

[[layer.add]]
path = "noise.bin"
dest = "/noise.bin"
"#;

/// A project directory with `image.toml` = `spec` (and the noise file [`BIG_SPEC`] needs).
fn project(spec: &str) -> (TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("cargo-image-test-")
        .tempdir()
        .unwrap();
    let dir = write_spec(&tmp.path().join("proj-src"), spec);
    if spec == BIG_SPEC {
        write_noise(&dir, 0x9e37_79b9_7f4a_7c15);
    }
    (tmp, dir)
}

/// Writes `dir/noise.bin`: 48 MiB of xorshift noise from `seed`, incompressible, so gzip works
/// on all of it.
fn write_noise(dir: &Path, seed: u64) {
    fs::write(dir.join("noise.bin"), Noise::new(seed).bytes(48 << 20)).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Starts `cargo-image ARGS --output OUT` in `dir` without waiting for it.
fn spawn(dir: &Path, args: &[&str], out: &Path) -> Child {
    cargo_image(dir)
        .args(args)
        .args(["--output"])
        .arg_path(out)
        .spawn()
}

/// Waits (at most a minute) until an entry of `dir` starts with `prefix`; returns its name.
fn wait_for_entry(dir: &Path, prefix: &str, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(name) = fs::read_dir(dir).ok().and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with(prefix))
        }) {
            return name;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the build ended ({status}) before `{prefix}*` appeared in {dir:?}");
        }
        assert!(
            Instant::now() < deadline,
            "`{prefix}*` did not appear in {dir:?} within a minute"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits (at most five minutes) for `child` and panics with its output unless it succeeded.
fn wait_ok(child: Child) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cargo-image did not finish within five minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cargo-image failed\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn build_refuses_an_output_directory_that_holds_user_files_beside_an_oci_layout_file() {
    let (tmp, dir) = project(SMALL_SPEC);
    // A layout of ours first, to have the exact `oci-layout` bytes a user might copy around.
    let ours = tmp.path().join("ours");
    build(&dir, Path::new("image.toml"), &ours);

    let proj = tmp.path().join("proj");
    fs::create_dir_all(proj.join("src")).unwrap();
    fs::copy(ours.join("oci-layout"), proj.join("oci-layout")).unwrap();
    fs::write(proj.join("src/main.rs"), "fn main() {}\n").unwrap();
    fs::write(proj.join("notes.txt"), "my notes\n").unwrap();

    let run = cargo_image(&dir)
        .args(["build", "--quiet", "--output"])
        .arg_path(&proj)
        .run();
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    assert!(run.stderr.contains("refusing to replace"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&proj.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--output"), "{}", run.stderr);
    assert_eq!(names(&proj), ["notes.txt", "oci-layout", "src"]);
    assert_eq!(
        fs::read_to_string(proj.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert_eq!(
        fs::read_to_string(proj.join("notes.txt")).unwrap(),
        "my notes\n"
    );
    assert_eq!(names(tmp.path()), ["ours", "proj", "proj-src"]);

    // A layout somebody else wrote (here: skopeo) is not ours to delete either.
    let theirs = tmp.path().join("theirs");
    skopeo([
        "copy".to_string(),
        format!("oci:{}:latest", ours.display()),
        format!("oci:{}:latest", theirs.display()),
    ]);
    let before = names(&theirs);
    let run = cargo_image(&dir)
        .args(["build", "--quiet", "--output"])
        .arg_path(&theirs)
        .run();
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    assert!(run.stderr.contains("refusing to replace"), "{}", run.stderr);
    assert_eq!(names(&theirs), before);

    // A layout of ours is replaced as before.
    build(&dir, Path::new("image.toml"), &ours);
    assert_eq!(names(&ours), ["blobs", "index.json", "oci-layout"]);
}

#[test]
fn archive_outputs_refuse_a_file_that_is_not_an_archive_of_ours() {
    let (tmp, dir) = project(SMALL_SPEC);
    let t = tmp.path().join("t");
    fs::create_dir_all(&t).unwrap();
    let notes = t.join("b.txt");
    fs::write(&notes, "my notes, not an image\n").unwrap();
    // A tar somebody else made is not ours either.
    let foreign = t.join("backup.tar");
    run(
        "tar",
        [
            OsStr::new("-cf"),
            foreign.as_os_str(),
            OsStr::new("-C"),
            dir.as_os_str(),
            OsStr::new("image.toml"),
        ],
        tmp.path(),
    )
    .ok();
    let foreign_bytes = fs::read(&foreign).unwrap();

    for (format, dest) in [
        ("oci-archive", &notes),
        ("docker-archive", &notes),
        ("oci-archive", &foreign),
        ("docker-archive", &foreign),
    ] {
        let run = cargo_image(&dir)
            .args(["build", "--quiet", "--output-format", format, "--output"])
            .arg_path(dest)
            .run();
        assert_eq!(run.code, Some(1), "{format} to {dest:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("refusing to write an archive"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&dest.display().to_string()),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("--output"), "{}", run.stderr);
        assert_eq!(
            fs::read_to_string(&notes).unwrap(),
            "my notes, not an image\n"
        );
        assert_eq!(fs::read(&foreign).unwrap(), foreign_bytes);
        assert_eq!(names(&t), ["b.txt", "backup.tar"], "a temp file was left");
    }

    // Archives of ours are replaced, also by the other format.
    let archive = t.join("image.tar");
    for format in ["oci-archive", "docker-archive", "oci-archive"] {
        cargo_image(&dir)
            .args(["build", "--quiet", "--output-format", format, "--output"])
            .arg_path(&archive)
            .run()
            .ok();
    }
    assert_eq!(names(&t), ["b.txt", "backup.tar", "image.tar"]);
}

#[test]
fn the_next_build_to_the_same_place_removes_the_leftovers_of_a_killed_build() {
    let (tmp, dir) = project(BIG_SPEC);
    let outs = tmp.path().join("outs");
    fs::create_dir_all(&outs).unwrap();

    // Killed while writing a layout: its `.out.*` temporary directory stays.
    let layout = outs.join("out");
    let mut child = spawn(&dir, &["build", "--quiet"], &layout);
    wait_for_entry(&outs, ".out.", &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed while making an archive: the layout it is made from stays beside it.
    let archive = outs.join("image.tar");
    let mut child = spawn(
        &dir,
        &["build", "--quiet", "--output-format", "oci-archive"],
        &archive,
    );
    wait_for_entry(&outs, ".cargo-image-archive-", &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = names(&outs);
    assert_eq!(left.len(), 2, "expected two leftovers, found {left:?}");

    // The next builds to the same places remove them.
    wait_ok(spawn(&dir, &["build", "--quiet"], &layout));
    wait_ok(spawn(
        &dir,
        &["build", "--quiet", "--output-format", "oci-archive"],
        &archive,
    ));
    assert_eq!(names(&outs), ["image.tar", "out"]);
}

#[test]
fn cache_prune_removes_the_leftovers_of_a_killed_build_beside_the_default_output() {
    let (tmp, dir) = project(BIG_SPEC);
    // A first build makes the store; new noise makes the next build slow again.
    build(&dir, Path::new("image.toml"), &tmp.path().join("first"));
    write_noise(&dir, 7);
    let image_dir = dir.join("target/image");
    let layout = image_dir.join("big");
    let mut child = spawn(&dir, &["build", "--quiet"], &layout);
    fs::create_dir_all(&image_dir).unwrap();
    wait_for_entry(&image_dir, ".big.", &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        names(&image_dir).iter().any(|n| n.starts_with(".big.")),
        "no leftover to prune"
    );

    cargo_image(&dir)
        .args(["cache", "prune", "--older-than", "30d"])
        .run()
        .ok();
    let left: Vec<String> = names(&image_dir)
        .into_iter()
        .filter(|n| n != ".store" && n != ".cargo")
        .collect();
    assert!(left.is_empty(), "left after prune: {left:?}");
}

#[test]
fn scratch_directories_of_killed_builds_are_removed_beside_any_store_and_nothing_else_is() {
    let (tmp, dir) = project(SMALL_SPEC);
    let store = tmp.path().join("stores/mine");
    build_with_store(&dir, &store, &tmp.path().join("out"));
    // What a build killed while unpacking an archive base (beside the store) or while opening a
    // stage (in the store) leaves: unlocked scratch directories with content.
    let stores = tmp.path().join("stores");
    for scratch in [
        stores.join(".cargo-image-base-dead01"),
        store.join(".cargo-image-stage-dead02"),
    ] {
        fs::create_dir_all(scratch.join("blobs")).unwrap();
        fs::write(scratch.join("blobs/x"), [0u8; 1000]).unwrap();
    }
    // Names like a temporary output's, beside a store that is not the default one: maybe the
    // user's, so left alone.
    fs::write(stores.join(".notes.tmp-abc123"), "mine").unwrap();

    let pruned = cargo_image(&dir)
        .args(["cache", "prune", "--older-than", "30d", "--json", "--store"])
        .args([&store])
        .run()
        .ok();
    let report: serde_json::Value = serde_json::from_str(&pruned.stdout).unwrap();
    assert_eq!(report["removed_output_leftovers"], 2, "{}", pruned.stdout);
    assert_eq!(names(&stores), [".notes.tmp-abc123", "mine"]);
    assert!(
        !names(&store).iter().any(|n| n.starts_with(".cargo-image-")),
        "{:?}",
        names(&store)
    );
}

/// Builds the spec in `dir` with `--store STORE --output OUT`.
fn build_with_store(dir: &Path, store: &Path, out: &Path) {
    cargo_image(dir)
        .args(["build", "--quiet", "--store"])
        .args([store])
        .args(["--output"])
        .args([out])
        .run()
        .ok();
}

#[test]
fn a_build_cleaning_leftovers_leaves_a_concurrent_build_to_the_same_place_alone() {
    let (tmp, dir) = project(BIG_SPEC);
    let outs = tmp.path().join("outs");
    fs::create_dir_all(&outs).unwrap();
    let layout = outs.join("out");
    let archive = outs.join("image.tar");

    // Two slow builds are under way when a third build to each place starts and cleans up.
    let mut first = spawn(&dir, &["build", "--quiet"], &layout);
    wait_for_entry(&outs, ".out.", &mut first);
    let mut second = spawn(
        &dir,
        &["build", "--quiet", "--output-format", "oci-archive"],
        &archive,
    );
    wait_for_entry(&outs, ".cargo-image-archive-", &mut second);
    let third = spawn(&dir, &["build", "--quiet"], &layout);
    let fourth = spawn(
        &dir,
        &["build", "--quiet", "--output-format", "oci-archive"],
        &archive,
    );
    for child in [first, second, third, fourth] {
        wait_ok(child);
    }
    assert_eq!(names(&outs), ["image.tar", "out"]);
    oci_image_tool_validate(&layout, "latest");
    skopeo([
        "inspect".to_string(),
        format!("oci-archive:{}:latest", archive.display()),
    ]);
}

#[test]
fn inspect_of_a_directory_that_does_not_exist_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("target/image/hello");
    let run = cargo_image(tmp.path())
        .args(["inspect"])
        .arg_path(&missing)
        .run();
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("cargo image build"), "{}", run.stderr);
    assert!(!run.stderr.contains("oci-layout"), "{}", run.stderr);
}

/// The quick start's commands, from the fenced `sh` blocks of README.md's `## Quick start`
/// section, without their `# comments`, with the path each comment's `-> PATH` promises.
fn quick_start_commands(readme: &str) -> Vec<(String, Option<String>)> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Quick start"))
        .expect("README.md has a `## Quick start` section");
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_block = !in_block && line == "```sh";
            continue;
        }
        if !in_block || line.is_empty() {
            continue;
        }
        let (command, comment) = match line.find(" #") {
            Some(i) => (line[..i].trim(), Some(line[i + 2..].trim())),
            None => (line, None),
        };
        let promised = comment
            .and_then(|c| c.strip_prefix("-> "))
            .map(|c| c.split_whitespace().next().unwrap().to_string());
        commands.push((command.to_string(), promised));
    }
    commands
}

#[test]
fn the_readme_quick_start_works_as_written_in_a_fresh_copy_of_the_repository() {
    let root = repo_root();
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let commands = quick_start_commands(&readme);
    assert!(commands.len() >= 4, "quick start commands: {commands:?}");

    // A fresh copy: the files git tracks, as they are in the work tree (no `target/`).
    let tmp = tempfile::Builder::new()
        .prefix("cargo-image-readme-")
        .tempdir()
        .unwrap();
    let repo = tmp.path().join("repo");
    let tracked = run("git", ["ls-files", "-z"], &root).ok().stdout;
    for file in tracked.split('\0').filter(|f| !f.is_empty()) {
        let (from, to) = (root.join(file), repo.join(file));
        let Ok(meta) = fs::symlink_metadata(&from) else {
            continue; // deleted in the work tree
        };
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from).unwrap(), &to).unwrap();
        } else {
            fs::copy(&from, &to).unwrap();
        }
    }

    let mut registry: Option<Registry> = None;
    for (command, promised) in &commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        let stdout = match words.as_slice() {
            // Building cargo-image itself in release mode in the copy would take many minutes
            // on a test machine: the binary under test, built from these same sources by this
            // `cargo test`, stands in for `cargo run --release --`. Everything after `--` runs
            // as written.
            ["cargo", "run", "--release", "--", args @ ..] => {
                let r = cargo_image(&repo)
                    .args(args)
                    // A target directory set for this test run is not the newcomer's.
                    .env_remove("CARGO_TARGET_DIR")
                    .env_remove("CARGO_BUILD_TARGET_DIR")
                    .run();
                assert_eq!(
                    r.code,
                    Some(0),
                    "README command `{command}` failed:\n{}",
                    r.stderr
                );
                r.stdout
            }
            // Runs every test, this one included.
            ["just", "test"] => continue,
            // registry.example.com is not ours to push to: the same copy goes to a registry
            // on loopback (plain HTTP, hence the TLS flag).
            ["skopeo", "copy", src, dest] if dest.starts_with("docker://registry.example.com/") => {
                let registry = registry.get_or_insert_with(Registry::start);
                let dest = dest.replace("registry.example.com", &registry.host());
                require("skopeo");
                run(
                    "skopeo",
                    ["copy", "--dest-tls-verify=false", src, &dest],
                    &repo,
                )
                .ok();
                run("skopeo", ["inspect", "--tls-verify=false", &dest], &repo)
                    .ok()
                    .stdout
            }
            [tool @ ("skopeo" | "umoci"), ..] => {
                require(tool);
                let r = run("sh", ["-c", command.as_str()], &repo);
                assert_eq!(
                    r.code,
                    Some(0),
                    "README command `{command}` failed:\n{}",
                    r.stderr
                );
                r.stdout
            }
            _ => panic!("README command `{command}`: this test does not know how to run it yet"),
        };
        if let Some(path) = promised {
            let path = repo.join(path);
            assert!(
                path.join("oci-layout").is_file(),
                "README says `{command}` writes an OCI layout at `{}`, but it is not there",
                path.display()
            );
        }
        if words.get(4) == Some(&"inspect") {
            assert!(stdout.contains("sha256:"), "`{command}` printed:\n{stdout}");
        }
    }
}
