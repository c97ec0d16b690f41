//! Spec tests: the resolved form of good specs, and one snapshot per rule of what a user
//! sees for a bad one (the one-line `Display` for logs, then the rendered report).

use std::path::{Path, PathBuf};

use miette::{GraphicalReportHandler, GraphicalTheme};

use super::*;
use crate::cargo::Strip;

/// A temporary spec directory with a `site/` folder, so relative paths have a context.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("site")).expect("mkdir site");
        Fixture { dir }
    }

    fn spec_path(&self) -> PathBuf {
        self.dir.path().join("image.toml")
    }

    fn parse(&self, text: &str) -> Result<ImageSpec, SpecError> {
        parse(text, &self.spec_path())
    }

    /// The text a user sees for `text`'s error, with the temporary directory redacted.
    fn error(&self, text: &str) -> String {
        let error = self.parse(text).expect_err("the spec should be refused");
        self.render(&error)
    }

    fn render(&self, error: &SpecError) -> String {
        let mut report = String::new();
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .render_report(&mut report, error)
            .expect("render");
        let display = error.to_string();
        if let Some(diagnostic) = error.diagnostic() {
            // Every located message names its key, so plain logs are enough to fix it.
            assert!(
                display.contains(&format!(":{}:{}: ", diagnostic.line, diagnostic.column)),
                "{display}"
            );
            if diagnostic.kind != ErrorKind::Syntax {
                assert!(!diagnostic.key.is_empty(), "no key for {display}");
                let last = diagnostic.key.rsplit('.').next().unwrap_or_default();
                let last = last.split('[').next().unwrap_or_default();
                assert!(
                    display.contains(last),
                    "the message names no key: {display}"
                );
            }
        }
        let text = format!("{display}\n\n{report}");
        let canonical = self.dir.path().canonicalize().expect("canonical tempdir");
        text.replace(&self.dir.path().display().to_string(), "[TMP]")
            .replace(&canonical.display().to_string(), "[TMP]")
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Snapshot the error a spec produces.
macro_rules! refuse {
    ($name:ident, $text:expr) => {
        #[test]
        fn $name() {
            let fixture = Fixture::new();
            insta::assert_snapshot!(fixture.error($text));
        }
    };
}

const FULL: &str = r#"#:schema ../../schema/image.schema.json
name = "ghcr.io/acme/hello"
tags = ["latest", "0.1.0"]
from = "oci:base:3.20"
epoch = 1700000000
compression = "zstd"
context = "."

[config]
entrypoint = ["/usr/local/bin/hello"]
cmd = ["--port", "8080"]
env = { RUST_LOG = "info", _X1 = "" }
workdir = "/srv"
user = "65532:65532"
labels = { "org.example.team" = "infra" }
exposed-ports = ["9000", "8080/tcp", "53/udp", "9000/tcp"]
volumes = ["/data", "/cache"]
stop-signal = "SIGTERM"

[annotations]
"org.opencontainers.image.source" = "https://example.com/repo"

[[layer]]
name = "app"
[[layer.add]]
cargo = { package = "hello", bin = "hello", profile = "release", features = ["y", "x"], all-features = false, no-default-features = true, target = "aarch64-unknown-linux-musl", strip = "debuginfo" }
dest = "/usr/local/bin/hello"
mode = "0755"
dir-mode = 0o750
owner = "1000:1000"
[[layer.add]]
cargo = {}
dest = "/usr/local/bin/"

[[layer]]
name = "files"
[[layer.add]]
path = "site/./a/.."
dest = "/srv/www/"
include = ["**/*.html"]
exclude = ["*.map", "drafts/"]
[[layer.add]]
content = "hello\n"
dest = "/etc/../etc/motd"
mode = 0o644
owner = "7"
[[layer.add]]
dir = true
dest = "/data"
[[layer.add]]
symlink = "/usr/local/bin/hello"
dest = "/bin/app"
[[layer.add]]
tar = "rootfs.tar.gz"
"#;

#[test]
fn full_spec_resolves() {
    let fixture = Fixture::new();
    let spec = fixture.parse(FULL).expect("valid spec");
    let dir = fixture.dir.path().canonicalize().unwrap();
    assert_eq!(spec.spec_path, fixture.spec_path());
    assert_eq!(spec.context, dir);
    assert_eq!(spec.name, "ghcr.io/acme/hello");
    assert_eq!(spec.tags, ["latest", "0.1.0"]);
    assert_eq!(spec.epoch, 1_700_000_000);
    assert_eq!(spec.compression, crate::types::Compression::Zstd);
    assert_eq!(
        spec.annotations["org.opencontainers.image.source"],
        "https://example.com/repo"
    );
    assert_eq!(
        spec.stage.base,
        Base::OciLayout {
            path: fixture.dir.path().join("base"),
            tag: Some("3.20".to_owned())
        }
    );
    let config = &spec.stage.config;
    assert_eq!(
        config.entrypoint.as_deref(),
        Some(&["/usr/local/bin/hello".to_owned()][..])
    );
    assert_eq!(
        config.cmd.as_deref(),
        Some(&["--port".to_owned(), "8080".to_owned()][..])
    );
    assert_eq!(config.env.keys().collect::<Vec<_>>(), ["RUST_LOG", "_X1"]);
    assert_eq!(config.workdir.as_deref(), Some("/srv"));
    assert_eq!(config.user.as_deref(), Some("65532:65532"));
    assert_eq!(config.labels["org.example.team"], "infra");
    assert_eq!(config.exposed_ports, ["53/udp", "8080/tcp", "9000/tcp"]);
    assert_eq!(config.volumes, ["/cache", "/data"]);
    assert_eq!(config.stop_signal.as_deref(), Some("SIGTERM"));

    let [app, files] = spec.stage.layers.as_slice() else {
        panic!("two layers")
    };
    assert_eq!(app.name, "app");
    assert_eq!(
        app.entries[0],
        EntrySpec {
            dest: "usr/local/bin/hello".to_owned(),
            dest_is_dir: false,
            source: Source::Cargo(CargoSource {
                package: Some("hello".to_owned()),
                bin: Some("hello".to_owned()),
                profile: "release".to_owned(),
                features: vec!["x".to_owned(), "y".to_owned()],
                all_features: false,
                no_default_features: true,
                target: "aarch64-unknown-linux-musl".to_owned(),
                target_pinned: true,
                linker: None,
                cc: None,
                strip: Strip::Debuginfo,
                builder: Default::default(),
            }),
            owner: Owner {
                uid: 1000,
                gid: 1000
            },
            mode: Some(0o755),
            dir_mode: Some(0o750),
            platforms: vec![],
        }
    );
    assert_eq!(
        app.entries[1],
        EntrySpec {
            dest: "usr/local/bin".to_owned(),
            dest_is_dir: true,
            source: Source::Cargo(CargoSource {
                package: None,
                bin: None,
                profile: "release".to_owned(),
                features: vec![],
                all_features: false,
                no_default_features: false,
                target: "x86_64-unknown-linux-musl".to_owned(),
                target_pinned: false,
                linker: None,
                cc: None,
                strip: Strip::Symbols,
                builder: Default::default(),
            }),
            owner: Owner::default(),
            mode: None,
            dir_mode: None,
            platforms: vec![],
        }
    );
    assert_eq!(files.name, "files");
    let sources: Vec<(&str, bool, &Source)> = files
        .entries
        .iter()
        .map(|e| (e.dest.as_str(), e.dest_is_dir, &e.source))
        .collect();
    assert_eq!(
        sources,
        [
            (
                "srv/www",
                true,
                &Source::Path {
                    path: PathBuf::from("site"),
                    include: vec!["**/*.html".to_owned()],
                    exclude: vec!["*.map".to_owned(), "drafts/".to_owned()],
                }
            ),
            ("etc/motd", false, &Source::Content(b"hello\n".to_vec())),
            ("data", false, &Source::Dir),
            (
                "bin/app",
                false,
                &Source::Symlink("/usr/local/bin/hello".to_owned())
            ),
            ("", true, &Source::tar(PathBuf::from("rootfs.tar.gz"))),
        ]
    );
    assert_eq!(files.entries[1].mode, Some(0o644));
    assert_eq!(files.entries[1].owner, Owner { uid: 7, gid: 7 });
}

#[test]
fn minimal_spec_gets_defaults() {
    let fixture = Fixture::new();
    let spec = fixture.parse("name = \"hello\"\n").expect("valid spec");
    assert_eq!(spec.tags, ["latest"]);
    assert_eq!(spec.epoch, DEFAULT_EPOCH);
    assert_eq!(spec.compression, crate::types::Compression::Gzip);
    assert_eq!(spec.stage.base, Base::Scratch);
    assert_eq!(spec.stage.name, "image");
    assert!(spec.stage.layers.is_empty());
    assert_eq!(spec.stage.config, ImageConfig::default());
    assert_eq!(spec.context, fixture.dir.path().canonicalize().unwrap());
}

#[test]
fn strip_takes_cargo_booleans_and_names() {
    let fixture = Fixture::new();
    for (written, strip) in [
        ("true", Strip::Symbols),
        ("false", Strip::None),
        ("\"none\"", Strip::None),
        ("\"debuginfo\"", Strip::Debuginfo),
        ("\"symbols\"", Strip::Symbols),
    ] {
        let spec = fixture
            .parse(&format!(
                "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\n\
                 cargo = {{ strip = {written} }}\ndest = \"/a\"\n"
            ))
            .expect("valid spec");
        let Source::Cargo(src) = &spec.stage.layers[0].entries[0].source else {
            panic!("a cargo entry")
        };
        assert_eq!(src.strip, strip, "strip = {written}");
    }
}

#[test]
fn host_paths_are_relative_to_the_context() {
    let fixture = Fixture::new();
    std::fs::create_dir_all(fixture.dir.path().join("site/www")).unwrap();
    let absolute = fixture.dir.path().join("site/www/index.html");
    let text = format!(
        "name = \"x\"\ncontext = \"site\"\n[[layer]]\nname = \"a\"\n\
         [[layer.add]]\npath = \"www/./sub/..\"\ndest = \"/a\"\n\
         [[layer.add]]\npath = {absolute:?}\ndest = \"/b\"\n\
         [[layer.add]]\npath = \".\"\ndest = \"/c\"\n"
    );
    let spec = fixture.parse(&text).expect("valid spec");
    assert_eq!(
        spec.context,
        fixture.dir.path().join("site").canonicalize().unwrap()
    );
    let paths: Vec<_> = spec.stage.layers[0]
        .entries
        .iter()
        .map(|e| match &e.source {
            Source::Path { path, .. } => path.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        paths,
        [
            PathBuf::from("www"),
            PathBuf::from("www/index.html"),
            PathBuf::new()
        ]
    );
}

#[test]
fn oci_base_without_tag() {
    let fixture = Fixture::new();
    let spec = fixture
        .parse("name = \"x\"\nfrom = \"oci:layouts/base\"\n")
        .unwrap();
    assert_eq!(
        spec.stage.base,
        Base::OciLayout {
            path: fixture.dir.path().join("layouts/base"),
            tag: None
        }
    );
}

#[test]
fn load_reads_the_file() {
    let fixture = Fixture::new();
    std::fs::write(fixture.spec_path(), "name = \"hello\"\n").unwrap();
    assert_eq!(load(&fixture.spec_path()).unwrap().name, "hello");
}

#[test]
fn load_names_a_missing_file() {
    let fixture = Fixture::new();
    let error = load(&fixture.dir.path().join("nope/image.toml")).unwrap_err();
    assert!(matches!(error, SpecError::ReadSpec { .. }));
    insta::assert_snapshot!(fixture.render(&error));
}

#[test]
fn errors_are_collected() {
    let fixture = Fixture::new();
    let error = fixture
        .parse(
            "name = \"Hello\"\ntags = [\"-x\"]\n[config]\nworkdir = \"srv\"\n[[layer]]\nname = \"a\"\n\
             [[layer.add]]\ncontent = \"x\"\ndest = \"etc\"\n",
        )
        .unwrap_err();
    let diagnostic = error.diagnostic().unwrap();
    assert_eq!(diagnostic.others.len(), 3);
    insta::assert_snapshot!(fixture.render(&error));
}

#[test]
fn schema_and_validation_agree_on_names() {
    let schema = json_schema();
    let validator = jsonschema::draft7::new(&schema).expect("valid schema");
    for (name, valid) in [
        ("hello", true),
        ("ghcr.io/acme/hello", true),
        ("localhost:5000/a/b-c", true),
        ("a__b", true),
        ("Hello", false),
        ("a//b", false),
        ("a-", false),
        ("a___b", false),
        ("a.-b", false),
    ] {
        let instance = serde_json::json!({ "name": name });
        assert_eq!(validator.is_valid(&instance), valid, "schema on {name}");
        let fixture = Fixture::new();
        assert_eq!(
            fixture.parse(&format!("name = {name:?}\n")).is_ok(),
            valid,
            "parse on {name}"
        );
    }
}

// Malformed TOML.
refuse!(syntax_unterminated_string, "name = \"hello\n");
refuse!(syntax_bare_value, "name = hello\n");
refuse!(syntax_duplicate_key, "name = \"a\"\nname = \"b\"\n");

// Unknown keys.
refuse!(
    unknown_key_typo,
    "name = \"x\"\n[config]\nentrypont = [\"/app\"]\n"
);
refuse!(
    unknown_key_top_level_below_header,
    "name = \"x\"\n[config]\ncmd = []\ntags = [\"v1\"]\n"
);
refuse!(
    unknown_key_config_at_top_level,
    "name = \"x\"\nentrypoint = [\"/app\"]\n"
);
refuse!(
    unknown_key_in_entry,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"\"\ndest = \"/a\"\ncolor = \"red\"\n"
);
refuse!(
    unknown_key_in_cargo,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncargo = { pakage = \"x\" }\ndest = \"/a\"\n"
);
refuse!(
    unknown_strip_setting,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncargo = { strip = \"all\" }\ndest = \"/a\"\n"
);

// Wrong types.
refuse!(
    wrong_type_string_for_list,
    "name = \"x\"\n[config]\ncmd = \"serve\"\n"
);
refuse!(
    wrong_type_table_for_layers,
    "name = \"x\"\n[layer]\nname = \"a\"\n"
);
refuse!(wrong_type_epoch, "name = \"x\"\nepoch = \"2024\"\n");
refuse!(
    wrong_type_port,
    "name = \"x\"\n[config]\nexposed-ports = [8080]\n"
);
refuse!(wrong_type_mode, "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ndir = true\ndest = \"/d\"\ndir-mode = true\n");
refuse!(negative_epoch, "name = \"x\"\nepoch = -1\n");
refuse!(
    unknown_compression,
    "name = \"x\"\ncompression = \"zstandard\"\n"
);

// Missing keys.
refuse!(
    missing_name,
    "#:schema ../schema/image.schema.json\ntags = [\"v1\"]\n"
);
refuse!(
    missing_layer_name,
    "name = \"x\"\n[[layer]]\n[[layer.add]]\ncontent = \"\"\ndest = \"/a\"\n"
);
refuse!(
    layer_without_add,
    "name = \"x\"\n[[layer]]\nname = \"empty\"\n"
);
refuse!(
    layer_with_empty_add,
    "name = \"x\"\n[[layer]]\nname = \"empty\"\nadd = []\n"
);
refuse!(
    missing_dest,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"hi\"\n"
);

// Invalid values.
refuse!(invalid_name_upper_case, "name = \"Acme/Hello\"\n");
refuse!(invalid_name_separator, "name = \"hello--/world_\"\n");
refuse!(
    invalid_tag,
    "name = \"x\"\ntags = [\"latest\", \"v1+build\"]\n"
);
refuse!(empty_tags, "name = \"x\"\ntags = []\n");
refuse!(duplicate_tag, "name = \"x\"\ntags = [\"v1\", \"v1\"]\n");
refuse!(
    invalid_port_number,
    "name = \"x\"\n[config]\nexposed-ports = [\"80\", \"70000/udp\"]\n"
);
refuse!(
    invalid_port_protocol,
    "name = \"x\"\n[config]\nexposed-ports = [\"80/TCP\"]\n"
);
refuse!(
    invalid_env_name,
    "name = \"x\"\n[config]\nenv = { \"RUST-LOG\" = \"info\" }\n"
);
refuse!(
    invalid_workdir,
    "name = \"x\"\n[config]\nworkdir = \"srv\"\n"
);
refuse!(invalid_user, "name = \"x\"\n[config]\nuser = \"app:\"\n");
refuse!(
    invalid_stop_signal,
    "name = \"x\"\n[config]\nstop-signal = \"term\"\n"
);
refuse!(invalid_epoch, "name = \"x\"\nepoch = 999999999999\n");
refuse!(bad_registry_base, "name = \"x\"\nfrom = \"Alpine:3.20\"\n");
refuse!(
    pull_policy_unknown,
    "name = \"x\"\nfrom = \"alpine\"\npull = \"sometimes\"\n"
);
refuse!(
    pull_without_registry_base,
    "name = \"x\"\npull = \"always\"\n"
);
refuse!(
    ignore_file_escapes_context,
    "name = \"x\"\nignore-file = \"../.dockerignore\"\n"
);
refuse!(wrong_type_ignore_file, "name = \"x\"\nignore-file = 1\n");

refuse!(sbom_unknown_format, "name = \"x\"\nsbom = \"spdx-json\"\n");
refuse!(sbom_empty_list, "name = \"x\"\nsbom = []\n");

#[test]
fn sbom_is_on_off_a_format_or_a_list_of_formats() {
    use crate::types::SbomFormat::{CycloneDx, Spdx};
    let fixture = Fixture::new();
    let formats = |line: &str| {
        fixture
            .parse(&format!("name = \"x\"\n{line}"))
            .expect("valid spec")
            .sbom
    };
    assert_eq!(formats(""), [CycloneDx]);
    assert_eq!(formats("sbom = true\n"), [CycloneDx]);
    assert_eq!(formats("sbom = false\n"), []);
    assert_eq!(formats("sbom = \"spdx\"\n"), [Spdx]);
    assert_eq!(formats("sbom = \"cyclonedx\"\n"), [CycloneDx]);
    assert_eq!(
        formats("sbom = [\"spdx\", \"cyclonedx\", \"spdx\"]\n"),
        [CycloneDx, Spdx]
    );
}

#[test]
fn ignore_file_is_on_off_or_a_path_in_the_context() {
    let fixture = Fixture::new();
    let setting = |line: &str| {
        fixture
            .parse(&format!("name = \"x\"\ncontext = \"site\"\n{line}"))
            .expect("valid spec")
            .ignore_file
    };
    assert_eq!(setting(""), IgnoreFileSetting::Default);
    assert_eq!(setting("ignore-file = true\n"), IgnoreFileSetting::Default);
    assert_eq!(setting("ignore-file = false\n"), IgnoreFileSetting::Off);
    assert_eq!(
        setting("ignore-file = \"./conf/../build.ignore\"\n"),
        IgnoreFileSetting::File(PathBuf::from("build.ignore"))
    );
}

#[test]
fn registry_and_archive_bases_resolve() {
    use crate::types::PullPolicy;
    let fixture = Fixture::new();
    let base = |text: &str| fixture.parse(text).expect("valid spec").stage.base;
    assert_eq!(
        base("name = \"x\"\nfrom = \"alpine:3.20\"\n"),
        Base::Registry {
            reference: "docker.io/library/alpine:3.20".into(),
            pull: PullPolicy::IfNotPresent
        }
    );
    assert_eq!(
        base("name = \"x\"\nfrom = \"localhost:5000/base\"\npull = \"never\"\n"),
        Base::Registry {
            reference: "localhost:5000/base:latest".into(),
            pull: PullPolicy::Never
        }
    );
    assert!(matches!(
        base("name = \"x\"\nfrom = \"oci-archive:base.tar:1.0\"\n"),
        Base::OciArchive { tag: Some(t), .. } if t == "1.0"
    ));
    assert!(matches!(
        base("name = \"x\"\nfrom = \"docker-archive:saved.tar\"\n"),
        Base::DockerArchive { tag: None, .. }
    ));
}

#[test]
fn builtin_is_a_scheme_and_a_registry_image_called_builtin_is_written_in_full() {
    let fixture = Fixture::new();
    let base = |text: &str| fixture.parse(text).expect("valid spec").stage.base;
    assert_eq!(
        base("name = \"x\"\nfrom = \"builtin:static\"\n"),
        Base::Builtin(BuiltinBase::Static)
    );
    assert_eq!(
        base("name = \"x\"\nfrom = \"docker.io/library/builtin:static\"\n"),
        Base::Registry {
            reference: "docker.io/library/builtin:static".into(),
            pull: crate::types::PullPolicy::IfNotPresent
        }
    );
}
refuse!(
    builtin_base_unknown,
    "name = \"x\"\nfrom = \"builtin:alpine\"\n"
);
refuse!(
    builtin_base_with_pull,
    "name = \"x\"\nfrom = \"builtin:static\"\npull = \"always\"\n"
);
refuse!(
    mode_decimal,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"\"\ndest = \"/a\"\nmode = 755\n"
);
refuse!(
    mode_not_octal,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"\"\ndest = \"/a\"\nmode = \"0789\"\n"
);
refuse!(
    mode_too_large,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"\"\ndest = \"/a\"\nmode = 0o17777\n"
);
refuse!(
    invalid_owner,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"\"\ndest = \"/a\"\nowner = \"root:root\"\n"
);
refuse!(
    invalid_layer_name,
    "name = \"x\"\n[[layer]]\nname = \"my layer\"\n[[layer.add]]\ncontent = \"\"\ndest = \"/a\"\n"
);
refuse!(
    invalid_glob,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\npath = \"site\"\ndest = \"/a/\"\ninclude = [\"**/*.{html\"]\n"
);
refuse!(
    dir_false,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ndir = false\ndest = \"/a\"\n"
);

// Destinations.
refuse!(
    dest_not_absolute,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"\"\ndest = \"etc/motd\"\n"
);
refuse!(dest_escapes_root, "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"\"\ndest = \"/../etc/motd\"\n");
refuse!(
    dest_root_for_file,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\nsymlink = \"/x\"\ndest = \"/\"\n"
);
refuse!(
    dest_dir_for_content,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"hi\"\ndest = \"/etc/\"\n"
);

// Host paths and the context.
refuse!(path_escapes_context, "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\npath = \"site/../../x\"\ndest = \"/x\"\n");
refuse!(
    tar_absolute_outside,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ntar = \"/etc/rootfs.tar\"\n"
);
refuse!(context_escapes, "name = \"x\"\ncontext = \"../other\"\n");
refuse!(context_missing, "name = \"x\"\ncontext = \"build\"\n");

// Layers and entries.
refuse!(
    duplicate_layer_name,
    "name = \"x\"\n[[layer]]\nname = \"app\"\n[[layer.add]]\ncontent = \"\"\ndest = \"/a\"\n\
     [[layer]]\nname = \"app\"\n[[layer.add]]\ncontent = \"\"\ndest = \"/b\"\n"
);
refuse!(
    no_source,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ndest = \"/a\"\nmode = \"0644\"\n"
);
refuse!(
    several_sources,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\npath = \"site\"\ncontent = \"hi\"\ndest = \"/a\"\n"
);
refuse!(
    include_without_path,
    "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"hi\"\ndest = \"/a\"\ninclude = [\"*.html\"]\n"
);
refuse!(
    cache_from_not_a_repository,
    "name = \"x\"\ncache-from = [\"127.0.0.1:5000/cache\", \"Bad Repo\"]\n"
);
refuse!(mode_on_dir, "name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ndir = true\ndest = \"/a\"\nmode = \"0700\"\n");

#[test]
fn cache_keys_are_read_in_order() {
    let fixture = Fixture::new();
    let spec = fixture
        .parse("name = \"x\"\ncache-from = [\"ghcr.io/acme/cache\", \"127.0.0.1:5000/c\"]\ncache-to = [\"127.0.0.1:5000/c\"]\n")
        .unwrap();
    assert_eq!(spec.cache_from, ["ghcr.io/acme/cache", "127.0.0.1:5000/c"]);
    assert_eq!(spec.cache_to, ["127.0.0.1:5000/c"]);
    let none = fixture.parse("name = \"x\"\n").unwrap();
    assert!(none.cache_from.is_empty() && none.cache_to.is_empty());
}

#[test]
fn spec_path_is_absolute_in_the_result() {
    let fixture = Fixture::new();
    let spec = fixture.parse("name = \"x\"\n").unwrap();
    assert!(spec.spec_path.is_absolute());
    assert!(Path::new(&spec.spec_path).ends_with("image.toml"));
}

#[test]
fn tag_templates_take_the_package_version() {
    let f = Fixture::new();
    std::fs::write(
        f.dir.path().join("Cargo.toml"),
        "[package]\nname = \"svc\"\nversion = \"2.4.0-rc.1\"\nedition = \"2021\"\n[workspace]\n",
    )
    .unwrap();
    std::fs::create_dir(f.dir.path().join("src")).unwrap();
    std::fs::write(f.dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    let spec = f
        .parse("name = \"svc\"\ntags = [\"{version}\", \"v{version}-x\", \"latest\"]\n")
        .unwrap();
    assert_eq!(spec.tags, ["2.4.0-rc.1", "v2.4.0-rc.1-x", "latest"]);
}

#[test]
fn tag_templates_without_a_value_are_errors() {
    let f = Fixture::new();
    // No Cargo.toml here and no git checkout: the error says which template and why.
    let shown = f.error("name = \"svc\"\ntags = [\"latest\", \"{git_short_sha}\"]\n");
    assert!(
        shown.contains("invalid `tags[1]` \"{git_short_sha}\""),
        "{shown}"
    );
    assert!(shown.contains("not in a git checkout"), "{shown}");
    let shown = f.error("name = \"svc\"\ntags = [\"{branch}\"]\n");
    assert!(shown.contains("unknown template `{branch}`"), "{shown}");
}

#[test]
fn registry_goes_in_front_of_the_name() {
    let f = Fixture::new();
    let spec = f
        .parse("name = \"svc\"\nregistry = \"ghcr.io/acme/\"\n")
        .unwrap();
    assert_eq!(spec.name, "ghcr.io/acme/svc");
    let shown = f.error("name = \"svc\"\nregistry = \"Not A Registry\"\n");
    assert!(shown.contains("invalid `registry`"), "{shown}");
}
mod platforms;
