//! What cargo builds for an image: binaries stripped by default (`strip`), checked against
//! `readelf` and run under `runc`.

use std::path::Path;

use cargo_oci_image_test_support::*;
use serde_json::Value;

/// A package `greeter` with one binary that prints a line, and a spec that puts it at `/app`
/// with the cargo entry's extra keys `cargo_keys` (`strip = false`, ...).
fn greeter(cargo_keys: &str) -> Project {
    let p = Project::new(&greeter_spec(cargo_keys));
    p.file(
        "Cargo.toml",
        "[package]\nname = \"greeter\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .file(
        "src/main.rs",
        "fn main() {\n    let args: Vec<String> = std::env::args().collect();\n    \
         println!(\"hello from greeter with {} argument(s)\", args.len());\n}\n",
    );
    p
}

fn greeter_spec(cargo_keys: &str) -> String {
    format!(
        "name = \"greeter\"\n[config]\nentrypoint = [\"/app\"]\n[[layer]]\nname = \"app\"\n\
         [[layer.add]]\ncargo = {{ bin = \"greeter\"{cargo_keys} }}\ndest = \"/app\"\n"
    )
}

/// The `cargo-finished` event of a build with `--message-format json` into `out`.
fn build_into(p: &Project, out: &Path) -> Value {
    let events = build_events(&p.dir, &["--output", out.to_str().unwrap()]);
    let finished = of_kind(&events, "cargo-finished");
    assert_eq!(finished.len(), 1, "{events:?}");
    finished[0].clone()
}

/// The section names `readelf -S` lists for `bin`.
fn readelf_sections(bin: &Path) -> Vec<String> {
    require("readelf");
    let r = run(
        "readelf",
        [std::ffi::OsStr::new("-SW"), bin.as_os_str()],
        Path::new("/"),
    )
    .ok();
    r.stdout
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("] ")?;
            rest.split_whitespace().next().map(str::to_string)
        })
        .collect()
}

#[test]
fn binaries_are_stripped_by_default_and_strip_false_keeps_debug_info() {
    let p = greeter("");
    let stripped_out = p.root().join("stripped");
    let stripped = build_into(&p, &stripped_out);
    p.set_spec(&greeter_spec(", strip = false"));
    let full_out = p.root().join("full");
    let full = build_into(&p, &full_out);

    assert_eq!(stripped["strip"], "symbols");
    assert_eq!(full["strip"], "none");

    let mut outputs = Vec::new();
    for (name, layout) in [("stripped", &stripped_out), ("full", &full_out)] {
        let bundle = p.root().join(format!("bundle-{name}"));
        umoci_unpack(layout, "latest", &bundle);
        let bin = bundle.join("rootfs/app");
        let size = std::fs::metadata(&bin).unwrap().len();
        let sections = readelf_sections(&bin);
        let r = runc_run(&bundle).ok();
        outputs.push((size, sections, r.stdout));
    }
    let [(stripped_size, stripped_sections, stripped_stdout), (full_size, full_sections, full_stdout)] =
        outputs.as_slice()
    else {
        unreachable!()
    };

    // Same behaviour.
    assert_eq!(stripped_stdout, "hello from greeter with 1 argument(s)\n");
    assert_eq!(stripped_stdout, full_stdout);

    // The stripped binary has neither symbols nor debug information; `strip = false` keeps
    // both (the standard library's debug information at least).
    let has = |sections: &[String], name: &str| sections.iter().any(|s| s == name);
    assert!(!has(stripped_sections, ".symtab"), "{stripped_sections:?}");
    assert!(
        !stripped_sections.iter().any(|s| s.starts_with(".debug_")),
        "{stripped_sections:?}"
    );
    assert!(has(full_sections, ".symtab"), "{full_sections:?}");
    assert!(has(full_sections, ".debug_info"), "{full_sections:?}");
    assert!(
        stripped_size < full_size,
        "stripped {stripped_size} B, unstripped {full_size} B"
    );

    // The event reports what is in the image: the binary's size, and what is left to strip.
    assert_eq!(stripped["size"], *stripped_size);
    assert_eq!(stripped["debug_info"], 0);
    assert_eq!(stripped["symbols"], 0);
    assert_eq!(full["size"], *full_size);
    let full_debug = full["debug_info"].as_u64().unwrap();
    let full_symbols = full["symbols"].as_u64().unwrap();
    assert!(full_debug > 0 && full_symbols > 0, "{full}");
    assert!(
        full_size - stripped_size >= full_debug,
        "stripping removes at least the debug information: {full}, stripped {stripped_size} B"
    );
}

#[test]
fn the_status_line_says_how_stripped_the_binary_is() {
    let p = greeter(", strip = \"debuginfo\"");
    let r = p.builds();
    let line = r
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("Compiled"))
        .unwrap_or_else(|| panic!("no Compiled line:\n{}", r.stderr));
    assert!(
        line.contains(
            "of it debug info and symbols (strip = \"debuginfo\"; \"symbols\" removes them)"
        ),
        "{line}"
    );

    p.set_spec(&greeter_spec(""));
    let r = p.builds();
    assert!(
        r.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("Compiled") && l.ends_with(", stripped")),
        "{}",
        r.stderr
    );
}

/// A package `cadder` whose build script compiles C with the `cc` crate (`csrc/add.c`, which
/// uses the C library: `snprintf`, `strlen`), for the platforms `platforms`. The `cc` crate
/// comes from the local registry cache at the version this repository locks (builds run
/// `--offline`: no network in tests).
pub(crate) fn c_project(platforms: &str) -> Project {
    let p = Project::new(&format!(
        "name = \"cadder\"\nplatforms = [{platforms}]\n[config]\nentrypoint = [\"/app\"]\n\
         [[layer]]\nname = \"app\"\n[[layer.add]]\ncargo = {{ bin = \"cadder\" }}\ndest = \"/app\"\n"
    ));
    p.file(
        "Cargo.toml",
        "[package]\nname = \"cadder\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [build-dependencies]\ncc = \"1\"\n\n[workspace]\n",
    )
    .file(
        "Cargo.lock",
        std::fs::read(repo_root().join("Cargo.lock")).unwrap(),
    )
    .file(
        "build.rs",
        "fn main() {\n    cc::Build::new().file(\"csrc/add.c\").compile(\"add\");\n}\n",
    )
    .file(
        "csrc/add.c",
        "#include <stdio.h>\n#include <string.h>\n\n\
         int c_describe_sum(int a, int b, char *out, int len) {\n    \
         snprintf(out, len, \"%d + %d = %d, computed in C\", a, b, a + b);\n    \
         return (int)strlen(out);\n}\n",
    )
    .file(
        "src/main.rs",
        "use std::os::raw::{c_char, c_int};\n\n\
         extern \"C\" {\n    fn c_describe_sum(a: c_int, b: c_int, out: *mut c_char, len: c_int) -> c_int;\n}\n\n\
         fn main() {\n    let mut buf = [0u8; 64];\n    \
         let n = unsafe { c_describe_sum(2, 3, buf.as_mut_ptr() as *mut c_char, 64) };\n    \
         println!(\"{}\", String::from_utf8_lossy(&buf[..n as usize]));\n}\n",
    );
    p
}

#[test]
fn a_crate_with_c_code_builds_and_runs_on_amd64_and_arm64() {
    require("musl-gcc");
    require("aarch64-linux-gnu-gcc");
    let p = c_project("\"linux/amd64\", \"linux/arm64\"");
    let r = p.cli().args(["--offline"]).run().ok();
    assert!(
        r.stderr.contains("Compiling cadder") || r.stderr.contains("Compiled"),
        "{}",
        r.stderr
    );

    for arch in ["amd64", "arm64"] {
        let layout = p.root().join(arch);
        skopeo([
            "copy".to_string(),
            "--override-arch".to_string(),
            arch.to_string(),
            format!("oci:{}:latest", p.out().display()),
            format!("oci:{}:latest", layout.display()),
        ])
        .ok();
        let bundle = p.root().join(format!("bundle-{arch}"));
        umoci_unpack(&layout, "latest", &bundle);
        let stdout = if arch == "amd64" {
            runc_run(&bundle).ok().stdout
        } else {
            require("qemu-aarch64-static");
            let rootfs = bundle.join("rootfs");
            run("qemu-aarch64-static", [rootfs.join("app")], &rootfs)
                .ok()
                .stdout
        };
        assert_eq!(stdout, "2 + 3 = 5, computed in C\n", "{arch}");
    }
}

#[test]
fn zigbuild_builds_c_code_for_musl_and_runs_under_runc() {
    require("cargo-zigbuild");
    let p = c_project("\"linux/amd64\"");
    edit_spec(&p.dir, |s| {
        format!("{s}[platform.\"linux/amd64\"]\nbuilder = \"zigbuild\"\n")
    });
    let r = p.cli().args(["--offline"]).run().ok();
    assert!(r.stderr.contains("with cargo zigbuild"), "{}", r.stderr);
    let bundle = p.root().join("bundle");
    umoci_unpack(&p.out(), "latest", &bundle);
    assert_eq!(runc_run(&bundle).ok().stdout, "2 + 3 = 5, computed in C\n");
}

#[test]
fn zigbuild_pins_the_glibc_version_of_a_gnu_target() {
    require("cargo-zigbuild");
    require("objdump");
    let p = c_project("\"linux/amd64\"");
    edit_spec(&p.dir, |s| {
        format!(
            "{s}[platform.\"linux/amd64\"]\nbuilder = \"zigbuild\"\n\
             target = \"x86_64-unknown-linux-gnu.2.31\"\n"
        )
    });
    // On scratch the glibc binary is refused (no loader); the build still leaves the binary.
    let r = p
        .cli()
        .args(["--offline", "--message-format", "json"])
        .run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let events = json_events(&r.stdout);
    let finished = of_kind(&events, "cargo-finished");
    let exe = finished[0]["executable"].as_str().unwrap().to_owned();
    assert!(
        exe.contains("/x86_64-unknown-linux-gnu/"),
        "cargo's directory of the plain triple: {exe}"
    );
    assert!(
        of_kind(&events, "error")[0]
            .to_string()
            .contains("ld-linux-x86-64.so.2"),
        "{}",
        r.stdout
    );
    // On a base with the host's loader and libraries it builds.
    glibc_tar(Path::new(&exe), &p.dir.join("glibc.tar"));
    edit_spec(&p.dir, |s| {
        format!(
            "from = \"stage:glibc\"\n{s}\n[[stage]]\nname = \"glibc\"\n[[stage.layer]]\n\
             name = \"libc\"\n[[stage.layer.add]]\ntar = \"glibc.tar\"\ndest = \"/\"\n"
        )
    });
    p.cli().args(["--offline", "--quiet"]).run().ok();

    let bundle = p.root().join("bundle");
    umoci_unpack(&p.out(), "latest", &bundle);
    let bin = bundle.join("rootfs/app");
    // The glibc symbol versions the binary needs: none newer than 2.31.
    let r = run(
        "objdump",
        [std::ffi::OsStr::new("-T"), bin.as_os_str()],
        Path::new("/"),
    )
    .ok();
    let mut versions: Vec<(u32, u32)> = r
        .stdout
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let v: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .collect();
    versions.sort();
    versions.dedup();
    let newest = *versions.last().expect("a dynamic glibc binary");
    assert!(
        newest <= (2, 31),
        "needs GLIBC_{}.{}: {versions:?}",
        newest.0,
        newest.1
    );
    // It runs in the image, on the host's (newer) glibc.
    let ran = runc_run(&bundle);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.stdout, "2 + 3 = 5, computed in C\n");
}
