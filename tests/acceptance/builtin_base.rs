//! The built-in base `builtin:static`: what a static service needs at run time (CA bundle,
//! users, `/tmp`), checked by a program running in the image under runc and by openssl; the
//! same bytes from two checkouts.

use std::path::Path;

use cargo_oci_image_test_support::*;

/// A static program that checks the runtime basics from inside the image: the CA bundle holds
/// ISRG Root X1 (the first line of its base64), `getpwnam("nonroot")` (musl reads
/// `/etc/passwd`), its own uid, and a write to `/tmp`.
const PROBE: &str = r#"use std::ffi::{c_char, CStr};

#[repr(C)]
struct Passwd {
    name: *const c_char,
    passwd: *const c_char,
    uid: u32,
    gid: u32,
    gecos: *const c_char,
    dir: *const c_char,
    shell: *const c_char,
}

extern "C" {
    fn getpwnam(name: *const c_char) -> *const Passwd;
    fn getuid() -> u32;
    fn getgid() -> u32;
}

fn main() {
    let pem = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").expect("CA bundle");
    let isrg = pem.contains("\nMIIFazCCA1OgAwIBAgIRAIIQz7DSQONZRGPgu2OCiwAwDQYJKoZIhvcNAQELBQAw\n");
    let pw = unsafe { getpwnam(c"nonroot".as_ptr()) };
    assert!(!pw.is_null(), "getpwnam(nonroot) found nothing");
    let (uid, gid, home) = unsafe {
        let pw = &*pw;
        (pw.uid, pw.gid, CStr::from_ptr(pw.dir).to_str().unwrap().to_owned())
    };
    let (me, my_group) = unsafe { (getuid(), getgid()) };
    std::fs::write("/tmp/probe", "written").expect("write to /tmp");
    let back = std::fs::read_to_string("/tmp/probe").unwrap();
    println!(
        "certs={} isrg={isrg} nonroot={uid}:{gid} home={home} running-as={me}:{my_group} tmp={back}",
        pem.matches("-----BEGIN CERTIFICATE-----").count()
    );
}
"#;

#[test]
fn a_zero_config_image_runs_on_the_builtin_base_as_nonroot_with_ca_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("probe");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), PROBE).unwrap();
    let out = tmp.path().join("out");
    let events = build_events(&dir, &["--output", "../out"]);
    let bases = of_kind(&events, "base-resolved");
    assert_eq!(bases.len(), 1, "{events:?}");
    assert_eq!(bases[0]["base"], "builtin:static");

    let config = skopeo_inspect(&out, "latest", Some("--config"));
    assert_eq!(config["config"]["User"], "65532:65532", "{config}");
    let raw = skopeo_inspect(&out, "latest", Some("--raw"));
    assert_eq!(raw["layers"].as_array().unwrap().len(), 2, "{raw}");
    // The OCI base annotations name the built-in base and its digest (build::builtin's golden).
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.base.name"],
        "builtin:static"
    );
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.base.digest"],
        "sha256:0800f8a5361a64d875b9d30a4d593a1f45a277bfa2495dc10cac1cd6a359fdd9"
    );

    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    // openssl reads every certificate of the bundle and finds ISRG Root X1 among them.
    require("openssl");
    let bundle_file = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let listed = run(
        "openssl",
        [
            "storeutl".as_ref(),
            "-noout".as_ref(),
            "-text".as_ref(),
            "-certs".as_ref(),
            bundle_file.as_os_str(),
        ],
        Path::new("/"),
    )
    .ok();
    let subjects = listed
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("Subject:"))
        .count();
    assert!(subjects > 100, "{subjects} certificates");
    assert!(
        listed
            .stdout
            .contains("Subject: C=US, O=Internet Security Research Group, CN=ISRG Root X1"),
        "no ISRG Root X1 in the bundle"
    );
    assert_eq!(stat(&rootfs.join("tmp")), (0o1777, 0, 0));
    assert_eq!(stat(&rootfs.join("home/nonroot")), (0o700, 65532, 65532));

    let ran = runc_run(&bundle);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        ran.stdout.trim(),
        format!(
            "certs={subjects} isrg=true nonroot=65532:65532 home=/home/nonroot \
             running-as=65532:65532 tmp=written"
        )
    );
}

#[test]
fn the_builtin_base_is_identical_from_two_checkouts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // The workspace example's zero-config crate is on the built-in base.
    let mut layouts = Vec::new();
    for (i, (dest, reverse, mode, mtime, umask)) in [
        ("a/workspace", false, 0o644, "2001-02-03 04:05:06", "022"),
        (
            "somewhere/much/deeper/b/workspace",
            true,
            0o600,
            "2022-12-31 23:59:59",
            "077",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = root.join(dest);
        checkout("workspace", &dir, reverse, mode, mtime);
        let out = root.join(format!("out-{i}"));
        cargo_image(&dir)
            .args(["build", "--quiet", "-p", "cli-tool", "--output"])
            .arg_path(&out)
            .run_with_umask(umask)
            .ok();
        layouts.push(out);
    }
    let manifests: Vec<Value> = layouts
        .iter()
        .map(|l| skopeo_inspect(l, "latest", Some("--raw")))
        .collect();
    let base_layer = |m: &Value| m["layers"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(base_layer(&manifests[0]), base_layer(&manifests[1]));
    // The base's layer is the one its pinned content makes (build::builtin's golden test).
    assert_eq!(
        base_layer(&manifests[0]),
        "sha256:b998528405655fee477f527e26114558952dfcf1489e51d08f18f38b8bacb13d"
    );
    assert_eq!(manifest_digest(&layouts[0]), manifest_digest(&layouts[1]));
}

#[test]
fn a_workspace_from_key_puts_zero_config_images_back_on_scratch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bare");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"bare\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n\
         [workspace.metadata.image]\nfrom = \"scratch\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        "fn main() { println!(\"bare\"); }\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let events = build_events(&dir, &["--output", "../out"]);
    assert!(of_kind(&events, "base-resolved").is_empty(), "{events:?}");
    let raw = skopeo_inspect(&out, "latest", Some("--raw"));
    assert_eq!(raw["layers"].as_array().unwrap().len(), 1, "{raw}");
    let config = skopeo_inspect(&out, "latest", Some("--config"));
    assert!(config["config"]["User"].is_null(), "{config}");
}
