//! Dynamic binaries checked: a glibc (gnu target) binary on `scratch` is refused with an error
//! naming the binary, the missing loader and the fixes; on a base that has the loader and the
//! libraries (a stage made from a tarball of the host's, symlinks kept) it builds and runs
//! under runc.

use std::path::PathBuf;

use cargo_oci_image_test_support::*;

const MAIN: &str = "fn main() { println!(\"dynamic hello\"); }\n";

/// The spec: the binary built for the gnu target, on `from`, plus `extra` (stages).
fn spec(from: &str, extra: &str) -> String {
    format!(
        "name = \"dyn\"\nfrom = \"{from}\"\n\n[config]\nentrypoint = [\"/usr/local/bin/dyn\"]\n\n\
         [[layer]]\nname = \"app\"\n[[layer.add]]\n\
         cargo = {{ bin = \"dyn\", target = \"x86_64-unknown-linux-gnu\" }}\n\
         dest = \"/usr/local/bin/\"\n{extra}"
    )
}

/// A cargo package `dyn` with `image.toml` = `spec`.
fn project(spec: &str) -> Project {
    let p = Project::new(spec);
    p.file(
        "Cargo.toml",
        "[package]\nname = \"dyn\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    );
    p.file("src/main.rs", MAIN);
    p
}

/// stderr from the error on (cargo's own progress lines above it carry timings).
fn error_text(stderr: &str) -> String {
    let start = stderr.find("×").expect("an error on stderr");
    let lines: Vec<&str> = stderr[start..].lines().map(str::trim_end).collect();
    lines.join("\n")
}

#[test]
fn a_gnu_binary_on_scratch_is_refused_and_runs_on_a_base_with_glibc() {
    let p = project(&spec("scratch", ""));
    // Exit code 1, nothing written.
    let text = error_text(&p.fails());
    for part in [
        "/usr/local/bin/dyn",
        "/lib64/ld-linux-x86-64.so.2",
        "x86_64-unknown-linux-musl",
        "glibc",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    insta::assert_snapshot!(text);

    // The same binary on a stage made of the host's loader and libraries (a tarball, symlinks
    // kept: /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...).
    let again = p.cli().args(["--message-format", "json"]).run();
    assert_eq!(again.code, Some(1), "{}", again.stderr);
    let events = json_events(&again.stdout);
    let built = of_kind(&events, "cargo-finished");
    let exe = PathBuf::from(built[0]["executable"].as_str().unwrap());
    assert!(exe.is_file(), "cargo built {}", exe.display());
    glibc_tar(&exe, &p.dir.join("glibc.tar"));
    let listed = tar_list_verbose(&p.dir.join("glibc.tar"));
    assert!(
        listed.contains("lib64/ld-linux-x86-64.so.2 -> /"),
        "the loader stays a symlink: {listed}"
    );
    p.set_spec(&spec(
        "stage:glibc",
        "\n[[stage]]\nname = \"glibc\"\n[[stage.layer]]\nname = \"libc\"\n\
         [[stage.layer.add]]\ntar = \"glibc.tar\"\ndest = \"/\"\n",
    ));
    p.builds();
    let bundle = p.root().join("bundle");
    umoci_unpack(&p.out(), "latest", &bundle);
    let ran = runc_run(&bundle);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.stdout, "dynamic hello\n");
}
