//! Debian packages as a layer, from a Debian-style repository made in the test and served on
//! 127.0.0.1: `.deb` files built by `dpkg-deb --build` (or real ones: `debian_glibc.rs`), the
//! `Packages` index by
//! `dpkg-scanpackages`, the `Release` signed (`InRelease`) by `gpg --clearsign` with a key
//! made for the test, served by `python3 -m http.server`. The image is unpacked by `umoci` and
//! its dpkg database read by `dpkg-query --admindir`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cargo_oci_image_test_support::*;

/// One package of the test repository: name, version, architecture, control fields after
/// `Architecture`, and files (path, content).
struct Pkg {
    name: &'static str,
    version: &'static str,
    arch: &'static str,
    fields: &'static str,
    files: &'static [(&'static str, &'static str)],
    /// `dpkg-deb -Z` (xz, gzip, zstd or none).
    compression: &'static str,
}

/// The packages of the test repository (amd64 and arm64 `Packages` both list the `all` ones).
const PACKAGES: &[Pkg] = &[
    Pkg {
        name: "foo-tools",
        version: "1.0-1",
        arch: "amd64",
        fields: "Depends: libfoo1 (>= 2.0), hello-data, mail-transport-agent\nPre-Depends: missing-thing | tiny-base\n",
        files: &[("usr/bin/foo", "#!/bin/sh\necho foo\n")],
        compression: "xz",
    },
    Pkg {
        name: "libfoo1",
        version: "2.1-1",
        arch: "amd64",
        fields: "Multi-Arch: same\nDepends: tiny-base (>= 1.0)\n",
        files: &[("usr/lib/x86_64-linux-gnu/libfoo.so.1", "not really a library\n")],
        compression: "zstd",
    },
    Pkg {
        name: "libfoo1",
        version: "1.9-1",
        arch: "amd64",
        fields: "Multi-Arch: same\n",
        files: &[("usr/lib/x86_64-linux-gnu/libfoo.so.1", "an old library\n")],
        compression: "gzip",
    },
    Pkg {
        name: "hello-data",
        version: "3:0.5+dfsg-2",
        arch: "all",
        fields: "",
        files: &[
            ("usr/share/hello/greeting", "hello\n"),
            ("usr/share/doc/hello-data/copyright", "public domain\n"),
        ],
        compression: "xz",
    },
    Pkg {
        name: "tiny-base",
        version: "1.2",
        arch: "amd64",
        fields: "",
        files: &[("etc/tiny-release", "tiny 1.2\n")],
        compression: "none",
    },
    Pkg {
        name: "tiny-mta",
        version: "0.1",
        arch: "amd64",
        fields: "Provides: mail-transport-agent\n",
        files: &[("usr/sbin/sendmail", "#!/bin/sh\n")],
        compression: "xz",
    },
    Pkg {
        name: "cyc-a",
        version: "1",
        arch: "all",
        fields: "Depends: cyc-b\n",
        files: &[("usr/share/cyc/a", "a\n")],
        compression: "xz",
    },
    Pkg {
        name: "cyc-b",
        version: "1",
        arch: "all",
        fields: "Depends: cyc-a (= 1)\n",
        files: &[("usr/share/cyc/b", "b\n")],
        compression: "xz",
    },
    Pkg {
        name: "ca-certificates",
        version: "20250101",
        arch: "all",
        fields: "",
        // A certificate without its last newline, in a directory that sorts first.
        files: &[
            ("usr/share/ca-certificates/mozilla/B_Root.crt", "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"),
            ("usr/share/ca-certificates/mozilla/A_Root.crt", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
            ("usr/share/ca-certificates/extra/Z_Root.crt", "-----BEGIN CERTIFICATE-----\nZZZZ\n-----END CERTIFICATE-----\n"),
            ("usr/share/ca-certificates/mozilla/README", "not a certificate\n"),
        ],
        compression: "xz",
    },
    Pkg {
        name: "needs-new",
        version: "1",
        arch: "all",
        fields: "Depends: libfoo1 (>= 3.0)\n",
        files: &[("usr/share/needs-new/x", "x\n")],
        compression: "xz",
    },
];

/// A signed repository under `ROOT/repo` and the keyring that verifies it (`ROOT/keyring.gpg`),
/// with the throwaway gpg home that signed it.
pub(crate) struct Repo {
    pub(crate) root: PathBuf,
    gnupg: PathBuf,
}

impl Repo {
    /// The repository of [`PACKAGES`], suite `stable` (codename `test`).
    fn new(root: &Path) -> Repo {
        let repo = Repo::empty(root);
        for p in PACKAGES {
            build_deb(p, &repo.pool(), &root.join("build"));
        }
        repo.index("stable", "test");
        repo
    }

    /// A repository of the `.deb` files `debs` (real packages), suite and codename `suite`.
    pub(crate) fn of_debs(root: &Path, suite: &str, debs: &[PathBuf]) -> Repo {
        let repo = Repo::empty(root);
        for deb in debs {
            std::fs::copy(deb, repo.pool().join(deb.file_name().unwrap())).unwrap();
        }
        repo.index(suite, suite);
        repo
    }

    /// An empty pool and a signing key made for the test.
    fn empty(root: &Path) -> Repo {
        for tool in ["dpkg-deb", "dpkg-scanpackages", "gpg", "xz", "python3"] {
            require(tool);
        }
        let repo = Repo {
            root: root.to_path_buf(),
            gnupg: root.join("gnupg"),
        };
        std::fs::create_dir_all(&repo.gnupg).unwrap();
        set_private(&repo.gnupg);
        std::fs::create_dir_all(repo.pool()).unwrap();
        repo.gpg(&[
            "--quick-gen-key",
            "Test Archive <archive@example.invalid>",
            "default",
            "default",
            "never",
        ]);
        let keyring = repo.gpg_output(&["--export"]);
        std::fs::write(root.join("keyring.gpg"), keyring).unwrap();
        repo
    }

    fn pool(&self) -> PathBuf {
        self.root.join("repo/pool/main")
    }

    /// Runs gpg with the test's home, no passphrase, no agent prompts.
    fn gpg(&self, args: &[&str]) {
        let out = Command::new("gpg")
            .env("GNUPGHOME", &self.gnupg)
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn gpg_output(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--batch", "--quiet"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    /// `dists/SUITE`: `Packages` (plain and xz) per architecture by `dpkg-scanpackages`,
    /// `Release` with their SHA-256s, `InRelease` clear-signed by the test key.
    fn index(&self, suite: &str, codename: &str) {
        let repo = self.root.join("repo");
        let dists = repo.join(format!("dists/{suite}"));
        let mut sums = String::new();
        for arch in ["amd64", "arm64"] {
            let dir = dists.join(format!("main/binary-{arch}"));
            std::fs::create_dir_all(&dir).unwrap();
            let scan = Command::new("dpkg-scanpackages")
                .args(["--multiversion", "--arch", arch, "pool"])
                .current_dir(&repo)
                .stderr(Stdio::null())
                .output()
                .unwrap();
            assert!(scan.status.success());
            std::fs::write(dir.join("Packages"), &scan.stdout).unwrap();
            run("xz", ["-k", "-f", "Packages"], &dir).ok();
            for name in ["Packages", "Packages.xz"] {
                let bytes = std::fs::read(dir.join(name)).unwrap();
                sums.push_str(&format!(
                    " {} {} main/binary-{arch}/{name}\n",
                    sha256(&bytes).trim_start_matches("sha256:"),
                    bytes.len()
                ));
            }
        }
        let release = format!(
            "Origin: Test\nLabel: Test\nSuite: {suite}\nCodename: {codename}\n\
             Date: Sat, 01 Jan 2000 00:00:00 UTC\nArchitectures: amd64 arm64\n\
             Components: main\nDescription: a repository made by a test\nSHA256:\n{sums}"
        );
        std::fs::write(dists.join("Release"), release).unwrap();
        let _ = std::fs::remove_file(dists.join("InRelease"));
        self.gpg(&[
            "--digest-algo",
            "SHA512",
            "--clearsign",
            "-o",
            dists.join("InRelease").to_str().unwrap(),
            dists.join("Release").to_str().unwrap(),
        ]);
    }

    pub(crate) fn keyring(&self) -> PathBuf {
        self.root.join("keyring.gpg")
    }
}

impl Drop for Repo {
    /// Stops the gpg-agent gpg started for the test's home.
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// Builds `p` with `dpkg-deb --build` into `pool`.
fn build_deb(p: &Pkg, pool: &Path, build: &Path) {
    let dir = build.join(format!(
        "{}_{}_{}",
        p.name,
        p.version.replace(':', "%"),
        p.arch
    ));
    std::fs::create_dir_all(dir.join("DEBIAN")).unwrap();
    let control = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\n{}Maintainer: Test <test@example.invalid>\n\
         Description: test package {}\n a package made by a test\n",
        p.name, p.version, p.arch, p.fields, p.name
    );
    std::fs::write(dir.join("DEBIAN/control"), control).unwrap();
    let mut md5sums = String::new();
    for (path, content) in p.files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        if path.contains("bin/") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        md5sums.push_str(&format!("{}  {path}\n", md5(content.as_bytes())));
    }
    std::fs::write(dir.join("DEBIAN/md5sums"), md5sums).unwrap();
    let deb = pool.join(format!(
        "{}_{}_{}.deb",
        p.name,
        p.version.split(':').next_back().unwrap(),
        p.arch
    ));
    run(
        "dpkg-deb",
        [
            "--root-owner-group",
            &format!("-Z{}", p.compression),
            "--build",
            dir.to_str().unwrap(),
            deb.to_str().unwrap(),
        ],
        build,
    )
    .ok();
}

/// The MD5 of `bytes` as `md5sum` prints it.
fn md5(bytes: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_string()
}

fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// `python3 -m http.server` on 127.0.0.1 serving `dir`, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start(dir: &Path) -> Server {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .unwrap_or_else(|| panic!("http.server said {line:?}"))
            .to_string();
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A spec installing `packages` of the test repository's `stable` suite.
fn spec(url: &str, keyring: &Path, packages: &str, extra: &str) -> String {
    format!(
        r#"name = "deb"
epoch = 1000
{extra}
[debian]
mirrors = ["{url}"]
keyring = "{}"

[[layer]]
name = "packages"
[[layer.add]]
debian = {{ suite = "stable", packages = [{packages}] }}
"#,
        keyring.display()
    )
}

/// `dpkg-query -W` over the image's dpkg database, one `NAME VERSION ARCH` line each.
pub(crate) fn dpkg_query(rootfs: &Path, args: &[&str]) -> String {
    require("dpkg-query");
    let admindir = rootfs.join("var/lib/dpkg");
    run(
        "dpkg-query",
        [format!("--admindir={}", admindir.display())]
            .into_iter()
            .chain(args.iter().map(|s| s.to_string())),
        rootfs,
    )
    .ok()
    .stdout
}

pub(crate) const FORMAT: &str = "-f=${Package} ${Version} ${Architecture} ${Status}\n";

#[test]
fn packages_install_with_their_dependencies_and_dpkg_lists_exactly_them() {
    let p = Project::new("");
    let repo = Repo::new(p.root());
    let server = Server::start(&repo.root.join("repo"));
    p.set_spec(&spec(&server.url, &repo.keyring(), r#""foo-tools""#, ""));
    p.builds();
    oci_image_tool_validate(&p.out(), "latest");

    let bundle = p.root().join("bundle");
    umoci_unpack(&p.out(), "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("usr/bin/foo")).unwrap(),
        "#!/bin/sh\necho foo\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("usr/lib/x86_64-linux-gnu/libfoo.so.1")).unwrap(),
        "not really a library\n",
        "the highest version that meets `>= 2.0`"
    );
    // Alternatives (`missing-thing | tiny-base`), a virtual package (`mail-transport-agent`,
    // provided by tiny-mta), a versioned dependency, an epoch; nothing more.
    assert_eq!(
        dpkg_query(&rootfs, &["-W", FORMAT]),
        "foo-tools 1.0-1 amd64 install ok installed\n\
         hello-data 3:0.5+dfsg-2 all install ok installed\n\
         libfoo1 2.1-1 amd64 install ok installed\n\
         tiny-base 1.2 amd64 install ok installed\n\
         tiny-mta 0.1 amd64 install ok installed\n"
    );
    assert!(
        !rootfs.join("etc/ssl").exists(),
        "no CA bundle without ca-certificates"
    );
    let listed = dpkg_query(&rootfs, &["-L", "foo-tools"]);
    assert!(listed.lines().any(|l| l == "/usr/bin/foo"), "{listed}");
    let listed = dpkg_query(&rootfs, &["-L", "libfoo1:amd64"]);
    assert!(
        listed
            .lines()
            .any(|l| l == "/usr/lib/x86_64-linux-gnu/libfoo.so.1"),
        "{listed}"
    );
    // The md5sums dpkg keeps match the files in the image.
    let sums =
        std::fs::read_to_string(rootfs.join("var/lib/dpkg/info/hello-data.md5sums")).unwrap();
    let check = Command::new("md5sum")
        .args(["-c", "--quiet", "var/lib/dpkg/info/hello-data.md5sums"])
        .current_dir(&rootfs)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{sums}: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    // Owners and mtimes are normalised; modes are the packages'.
    let listing = tar_list_verbose(&p.first_layer());
    assert!(listing.contains("-rwxr-xr-x 0/0"), "{listing}");
    assert!(!listing.contains(" 1/"), "{listing}");
}

#[test]
fn ca_certificates_gets_its_bundle_from_the_packages_certificates_then_the_sites() {
    let p = Project::new("");
    let repo = Repo::new(p.root());
    let server = Server::start(&repo.root.join("repo"));
    let site = "-----BEGIN CERTIFICATE-----\nSITE\n-----END CERTIFICATE-----\n";
    let layer = format!(
        "[[layer.add]]\ncontent = \"{}\"\ndest = \"/usr/local/share/ca-certificates/site.crt\"\n\
         [[layer.add]]\ncontent = \"notes\\n\"\ndest = \"/usr/local/share/ca-certificates/notes.txt\"\n",
        site.replace('\n', "\\n")
    );
    p.set_spec(&(spec(&server.url, &repo.keyring(), r#""ca-certificates""#, "") + &layer));
    p.builds();
    let bundle = p.root().join("bundle");
    umoci_unpack(&p.out(), "latest", &bundle);
    let rootfs = bundle.join("rootfs");
    // update-ca-certificates' order: the package's `*.crt` in byte order of their paths (extra/
    // before mozilla/, A before B), a newline after a certificate that lacks one, then the
    // site's; other files left out.
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap(),
        format!(
            "-----BEGIN CERTIFICATE-----\nZZZZ\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n{site}"
        )
    );
    assert_eq!(
        stat(&rootfs.join("etc/ssl/certs/ca-certificates.crt")),
        (0o644, 0, 0)
    );
    // The bundle is not a file of the package: dpkg does not list it.
    let listed = dpkg_query(&rootfs, &["-L", "ca-certificates"]);
    assert!(!listed.contains("ca-certificates.crt"), "{listed}");

    // A bundle the layer has already is kept.
    let own =
        "[[layer.add]]\ncontent = \"mine\\n\"\ndest = \"/etc/ssl/certs/ca-certificates.crt\"\n";
    p.set_spec(&(spec(&server.url, &repo.keyring(), r#""ca-certificates""#, "") + own));
    std::fs::remove_dir_all(p.out()).unwrap();
    p.builds();
    let bundle = p.root().join("bundle-own");
    umoci_unpack(&p.out(), "latest", &bundle);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/ssl/certs/ca-certificates.crt")).unwrap(),
        "mine\n"
    );
}

#[test]
fn the_same_packages_give_the_same_digest_in_two_runs_and_two_checkouts() {
    let p = Project::new("");
    let repo = Repo::new(p.root());
    let server = Server::start(&repo.root.join("repo"));
    let text = spec(&server.url, &repo.keyring(), r#""foo-tools", "cyc-a""#, "");
    p.set_spec(&text);
    p.builds();
    let first = manifest_digest(&p.out());
    std::fs::remove_dir_all(p.out()).unwrap();
    p.builds();
    assert_eq!(manifest_digest(&p.out()), first);

    let other = Project::new(&text);
    other.builds();
    assert_eq!(manifest_digest(&other.out()), first);
    // A dependency cycle (cyc-a -> cyc-b -> cyc-a) installs both, once.
    let bundle = other.root().join("bundle");
    umoci_unpack(&other.out(), "latest", &bundle);
    let listed = dpkg_query(&bundle.join("rootfs"), &["-W", "-f=${Package}\n", "cyc-*"]);
    assert_eq!(listed, "cyc-a\ncyc-b\n");
}

#[test]
fn a_tampered_deb_is_refused_naming_the_package() {
    let p = Project::new("");
    let repo = Repo::new(p.root());
    let deb = repo.root.join("repo/pool/main/tiny-base_1.2_amd64.deb");
    let mut bytes = std::fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&deb, bytes).unwrap();
    let server = Server::start(&repo.root.join("repo"));
    p.set_spec(&spec(&server.url, &repo.keyring(), r#""foo-tools""#, ""));
    let err = p.fails();
    assert!(err.contains("package `tiny-base`"), "{err}");
    assert!(err.contains("the Packages index says sha256:"), "{err}");
}

#[test]
fn a_release_signed_by_another_key_or_altered_after_signing_is_refused() {
    let p = Project::new("");
    let repo = Repo::new(p.root());
    let server = Server::start(&repo.root.join("repo"));
    // Another key: the keyring of a second repository.
    let other = Repo::new(&p.root().join("other"));
    p.set_spec(&spec(&server.url, &other.keyring(), r#""tiny-base""#, ""));
    let err = p.fails();
    assert!(
        err.contains("dists/stable/InRelease does not verify with"),
        "{err}"
    );
    assert!(err.contains("no signature on it verifies"), "{err}");

    // The right key, but the signed text altered: a package index swapped.
    let in_release = repo.root.join("repo/dists/stable/InRelease");
    let text = std::fs::read_to_string(&in_release).unwrap();
    std::fs::write(
        &in_release,
        text.replace("Codename: test", "Codename: evil"),
    )
    .unwrap();
    p.set_spec(&spec(&server.url, &repo.keyring(), r#""tiny-base""#, ""));
    let err = p.fails();
    assert!(err.contains("no signature on it verifies"), "{err}");
}

#[test]
fn an_unknown_package_and_an_unsatisfiable_dependency_are_named() {
    let p = Project::new("");
    let repo = Repo::new(p.root());
    let server = Server::start(&repo.root.join("repo"));
    p.set_spec(&spec(
        &server.url,
        &repo.keyring(),
        r#""no-such-package""#,
        "",
    ));
    let err = p.fails();
    assert!(err.contains("no package `no-such-package`"), "{err}");

    p.set_spec(&spec(&server.url, &repo.keyring(), r#""needs-new""#, ""));
    let err = p.fails();
    assert!(
        err.contains("`needs-new 1` depends on `libfoo1 (>= 3.0)`, which nothing in the suite satisfies (it has libfoo1 2.1-1)"),
        "{err}"
    );
}

#[test]
fn the_lock_pins_the_packages_so_a_locked_warm_build_needs_no_mirror_and_the_sbom_lists_them() {
    let p = Project::new("");
    let repo = Repo::new(p.root());
    let server = Server::start(&repo.root.join("repo"));
    let text = spec(
        &server.url,
        &repo.keyring(),
        r#""foo-tools""#,
        r#"sbom = ["cyclonedx", "spdx"]"#,
    );
    p.set_spec(&text);
    p.builds();
    let first = manifest_digest(&p.out());
    let lock = std::fs::read_to_string(p.dir.join("image.lock")).unwrap();
    assert!(lock.contains("[[debian]]\nsuite = \"stable\""), "{lock}");
    assert!(lock.contains("platform = \"linux/amd64\""), "{lock}");
    let libfoo = sha256_file(&repo.root.join("repo/pool/main/libfoo1_2.1-1_amd64.deb"));
    assert!(
        lock.contains(&format!(
            "{{ name = \"libfoo1\", version = \"2.1-1\", architecture = \"amd64\", filename = \"pool/main/libfoo1_2.1-1_amd64.deb\", sha256 = \"{libfoo}\" }}"
        )),
        "{lock}"
    );

    // The SBOMs list every package by its purl and pass the formats' validators.
    let (_, cdx) = &sbom_referrers(&p.out())[0];
    crate::sbom::validate(cdx);
    let doc: Value = read_json(cdx);
    let purls: Vec<&str> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .filter(|p| p.starts_with("pkg:deb/"))
        .collect();
    assert_eq!(
        purls,
        [
            "pkg:deb/debian/foo-tools@1.0-1?arch=amd64",
            "pkg:deb/debian/hello-data@3%3A0.5%2Bdfsg-2?arch=all",
            "pkg:deb/debian/libfoo1@2.1-1?arch=amd64",
            "pkg:deb/debian/tiny-base@1.2?arch=amd64",
            "pkg:deb/debian/tiny-mta@0.1?arch=amd64",
        ]
    );
    let (_, spdx) = &spdx_referrers(&p.out())[0];
    crate::sbom::validate_spdx(spdx);
    let spdx_text = std::fs::read_to_string(spdx).unwrap();
    assert!(spdx_text.contains("pkg:deb/debian/libfoo1@2.1-1?arch=amd64"));

    // No mirror any more: a locked build takes the pinned files from the store.
    drop(server);
    std::fs::remove_dir_all(p.out()).unwrap();
    let r = p.cli().args(["--locked"]).run().ok();
    assert!(r.stderr.contains("(image.lock)"), "{}", r.stderr);
    assert_eq!(manifest_digest(&p.out()), first);

    // A package the lock does not pin is an error with --locked.
    std::fs::remove_dir_all(p.out()).unwrap();
    p.set_spec(&spec(
        &server_url_gone(),
        &repo.keyring(),
        r#""foo-tools", "cyc-a""#,
        r#"sbom = ["cyclonedx", "spdx"]"#,
    ));
    let r = p.cli().args(["--locked"]).run();
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("the Debian packages `foo-tools`, `cyc-a` of suite `stable` for linux/amd64 are not pinned in"),
        "{}",
        r.stderr
    );
    assert!(!p.out().exists());
}

/// A mirror URL nothing listens on.
fn server_url_gone() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
