//! The `debian-glibc` example: a gnu-target binary on a layer of Debian's `libc6`,
//! `ca-certificates` and `tzdata`, built from REAL packages. The packages (with everything
//! `apt-cache depends` says they may need) are fetched once by `apt-get download` from the
//! machine's apt mirrors into a cache under cargo's target directory, then served on 127.0.0.1
//! as a repository made by `dpkg-scanpackages` and signed by a key made for the test (the
//! helpers of `debian.rs`): the build itself only talks to loopback. The image is unpacked by
//! `umoci` and run by `runc`; its dpkg database is read by `dpkg-query`, its CA bundle by
//! `openssl` and compared with the one the package's own `update-ca-certificates` makes.
//!
//! `the_example_builds_from_the_machines_apt_mirrors` (ignored: it needs the public mirrors)
//! builds the example as it is, from the mirrors the machine's apt is configured with:
//! `cargo test --test acceptance debian_glibc -- --ignored`.

use std::path::{Path, PathBuf};

use cargo_oci_image_test_support::*;

use crate::debian::{dpkg_query, Repo, Server, FORMAT};

/// What the example asks for.
const PACKAGES: [&str; 3] = ["libc6", "ca-certificates", "tzdata"];

/// What it installs in bookworm: the packages and what their `Depends` need (`debconf` for
/// the `debconf | debconf-2.0` of `ca-certificates` and `tzdata`).
const INSTALLED: [&str; 8] = [
    "ca-certificates",
    "debconf",
    "gcc-12-base",
    "libc6",
    "libgcc-s1",
    "libssl3",
    "openssl",
    "tzdata",
];

/// What the example prints before its certificate count (the zones of its `cmd`).
const TIMES: &str = "1700000000 is 2023-11-14 22:13:20 UTC (+00:00)\n  \
                     in Asia/Tokyo: 2023-11-15 07:13:20 JST (+09:00)\n  \
                     in America/New_York: 2023-11-14 17:13:20 EST (-05:00)\n";

/// The `.deb` files of [`PACKAGES`] and of every package `apt-cache depends` lists for them
/// (all alternatives and providers, so whatever the resolver picks is there), downloaded by
/// `apt-get download` once into `CARGO_TARGET_TMPDIR/debian-glibc-debs` and reused after.
fn real_debs() -> Vec<PathBuf> {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("debian-glibc-debs");
    if !cache.join("complete").exists() {
        for tool in ["apt-cache", "apt-get"] {
            require(tool);
        }
        let depends = run(
            "apt-cache",
            [
                "depends",
                "--recurse",
                "--no-recommends",
                "--no-suggests",
                "--no-conflicts",
                "--no-breaks",
                "--no-replaces",
                "--no-enhances",
            ]
            .into_iter()
            .chain(PACKAGES),
            Path::new("/"),
        );
        assert_eq!(
            depends.code,
            Some(0),
            "apt-cache depends failed (run `apt-get update` first): {}",
            depends.stderr
        );
        // Package names start a line; relations are indented, virtual packages in `<>`.
        let mut names: Vec<&str> = depends
            .stdout
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_alphanumeric()) && !l.contains(':'))
            .collect();
        names.sort_unstable();
        names.dedup();
        for p in PACKAGES {
            assert!(names.contains(&p), "{p} not in {names:?}");
        }
        let partial = cache.with_extension(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).unwrap();
        let download = run("apt-get", ["download"].into_iter().chain(names), &partial);
        assert_eq!(
            download.code,
            Some(0),
            "apt-get download failed: {}",
            download.stderr
        );
        std::fs::write(partial.join("complete"), "").unwrap();
        // Another test process may have finished first: either copy will do.
        let _ = std::fs::remove_dir_all(&cache);
        if std::fs::rename(&partial, &cache).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
    }
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    debs
}

/// `dpkg-query -W` lines (`NAME VERSION ARCH install ok installed`) for [`INSTALLED`], their
/// versions and architectures read from `debs` by `dpkg-deb --field`.
fn expected_dpkg_listing(debs: &[PathBuf]) -> String {
    let mut fields: Vec<String> = debs
        .iter()
        .map(|deb| {
            let out = run(
                "dpkg-deb",
                [
                    "--field".as_ref(),
                    deb.as_os_str(),
                    "Package".as_ref(),
                    "Version".as_ref(),
                    "Architecture".as_ref(),
                ],
                Path::new("/"),
            )
            .ok()
            .stdout;
            let value = |name: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap()
                    .to_string()
            };
            format!(
                "{} {} {} install ok installed\n",
                value("Package"),
                value("Version"),
                value("Architecture")
            )
        })
        .filter(|line| INSTALLED.contains(&line.split(' ').next().unwrap()))
        .collect();
    fields.sort();
    assert_eq!(fields.len(), INSTALLED.len(), "{fields:?}");
    fields.concat()
}

/// Runs the unpacked image with runc and checks what it prints: the zone conversions glibc
/// made from the image's zoneinfo, and the number of certificates in the image's bundle, which
/// is every certificate `ca-certificates` ships.
fn check_runs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    assert!(
        rootfs.join("lib64/ld-linux-x86-64.so.2").exists(),
        "the loader the gnu binary asks for"
    );
    let shipped = walk(&rootfs.join("usr/share/ca-certificates"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .count();
    assert!(shipped > 100, "{shipped} certificates shipped");
    let ran = runc_run(bundle);
    assert_eq!(ran.code, Some(0), "runc run failed: {}", ran.stderr);
    assert_eq!(
        ran.stdout,
        format!("{TIMES}/etc/ssl/certs/ca-certificates.crt: {shipped} certificates\n")
    );
}

/// Checks the image's CA bundle with tools we did not write: OpenSSL reads `shipped`
/// certificates out of it and verifies one of them with it, and it is byte for byte the
/// bundle the package's own `update-ca-certificates` makes from the same certificates, all
/// selected, as its `postinst` selects them on a fresh install.
fn check_ca_bundle(rootfs: &Path, work: &Path) {
    require("openssl");
    let bundle = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let certs_dir = rootfs.join("usr/share/ca-certificates");
    let mut shipped: Vec<String> = walk(&certs_dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .map(|p| {
            p.strip_prefix(&certs_dir)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    shipped.sort();

    let pkcs7 = work.join("bundle.p7");
    run(
        "openssl",
        [
            "crl2pkcs7".as_ref(),
            "-nocrl".as_ref(),
            "-certfile".as_ref(),
            bundle.as_os_str(),
            "-out".as_ref(),
            pkcs7.as_os_str(),
        ],
        work,
    )
    .ok();
    let printed = run(
        "openssl",
        [
            "pkcs7".as_ref(),
            "-in".as_ref(),
            pkcs7.as_os_str(),
            "-print_certs".as_ref(),
            "-noout".as_ref(),
        ],
        work,
    )
    .ok()
    .stdout;
    let subjects = printed.lines().filter(|l| l.starts_with("subject")).count();
    assert_eq!(subjects, shipped.len(), "{printed}");
    let isrg = certs_dir.join("mozilla/ISRG_Root_X1.crt");
    let verified = run(
        "openssl",
        [
            "verify".as_ref(),
            "-CAfile".as_ref(),
            bundle.as_os_str(),
            isrg.as_os_str(),
        ],
        work,
    )
    .ok();
    assert!(verified.stdout.ends_with(": OK\n"), "{}", verified.stdout);

    // The package's script, told to read the image's certificates and write elsewhere.
    let conf = work.join("ca-certificates.conf");
    std::fs::write(&conf, shipped.join("\n") + "\n").unwrap();
    let etc = work.join("etc-ssl-certs");
    let local = work.join("local");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&local).unwrap();
    run(
        "sh",
        [
            rootfs.join("usr/sbin/update-ca-certificates").as_os_str(),
            "--certsconf".as_ref(),
            conf.as_os_str(),
            "--certsdir".as_ref(),
            certs_dir.as_os_str(),
            "--localcertsdir".as_ref(),
            local.as_os_str(),
            "--etccertsdir".as_ref(),
            etc.as_os_str(),
            "--hooksdir".as_ref(),
            "".as_ref(),
        ],
        work,
    )
    .ok();
    assert!(
        std::fs::read(etc.join("ca-certificates.crt")).unwrap() == std::fs::read(&bundle).unwrap(),
        "the image's bundle differs from update-ca-certificates' ({})",
        etc.display()
    );
}

#[test]
fn the_example_runs_on_real_debian_packages_from_a_loopback_mirror() {
    let debs = real_debs();
    let (tmp, dir) = example_copy("debian-glibc");
    let _ = std::fs::remove_file(dir.join("image.lock"));
    let repo = Repo::of_debs(&tmp.path().join("mirror"), "bookworm", &debs);
    let server = Server::start(&repo.root.join("repo"));
    // The example as it is, pointed at the loopback mirror and its key.
    let spec = std::fs::read_to_string(dir.join("image.toml")).unwrap();
    std::fs::write(
        dir.join("image.toml"),
        format!(
            "{spec}\n[debian]\nmirrors = [\"{}\"]\nkeyring = \"{}\"\n",
            server.url,
            repo.keyring().display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("layout");
    let digest = build(&dir, Path::new("image.toml"), &out);
    oci_image_tool_validate(&out, "latest");
    let config = skopeo_inspect(&out, "latest", Some("--config"));
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["Asia/Tokyo", "America/New_York"])
    );

    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        dpkg_query(&rootfs, &["-W", FORMAT]),
        expected_dpkg_listing(&debs)
    );
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    check_ca_bundle(&rootfs, &work);
    check_runs(&bundle);

    // Another checkout, resolved afresh from the same mirror: the same image.
    let (other_tmp, other) = example_copy("debian-glibc");
    let _ = std::fs::remove_file(other.join("image.lock"));
    std::fs::copy(dir.join("image.toml"), other.join("image.toml")).unwrap();
    let other_out = other_tmp.path().join("layout");
    assert_eq!(build(&other, Path::new("image.toml"), &other_out), digest);
}

#[test]
#[ignore = "needs the machine's apt mirrors (deb.debian.org): run with --ignored"]
fn the_example_builds_from_the_machines_apt_mirrors() {
    let (tmp, dir) = example_copy("debian-glibc");
    let _ = std::fs::remove_file(dir.join("image.lock"));
    let out = tmp.path().join("layout");
    build(&dir, Path::new("image.toml"), &out);
    let lock = std::fs::read_to_string(dir.join("image.lock")).unwrap();
    for p in PACKAGES {
        assert!(lock.contains(&format!("{{ name = \"{p}\"")), "{lock}");
    }
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    let listed = dpkg_query(&rootfs, &["-W", "-f=${Package}\n"]);
    for p in INSTALLED {
        assert!(listed.lines().any(|l| l == p), "{p}: {listed}");
    }
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    check_ca_bundle(&rootfs, &work);
    check_runs(&bundle);
}
