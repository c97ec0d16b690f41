//! Multi-platform specs: `platforms`, `[platform."..."]`, entries limited to some platforms,
//! and what a spec becomes for one platform.

use super::*;
use crate::types::Platform;

fn p(s: &str) -> Platform {
    Platform::parse(s).unwrap()
}

const MULTI: &str = r#"
name = "x"
platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"]

[platform."linux/arm64"]
linker = "my-aarch64-gcc"
cc = "my-aarch64-cc"

[platform."linux/arm/v7"]
target = "armv7-unknown-linux-musleabi"

[[layer]]
name = "assets"
[[layer.add]]
content = "same everywhere"
dest = "/a"

[[layer]]
name = "app"
[[layer.add]]
cargo = { profile = "dev" }
dest = "/app"
[[layer.add]]
content = "arm64 only"
dest = "/etc/platform"
platforms = ["linux/arm64"]

[[layer]]
name = "arm-extras"
[[layer.add]]
content = "arm only"
dest = "/etc/arm"
platforms = ["linux/arm64", "linux/arm/v7"]
"#;

#[test]
fn platforms_and_their_settings_resolve() {
    let fixture = Fixture::new();
    let spec = fixture.parse(MULTI).unwrap();
    assert_eq!(
        spec.platforms,
        [p("linux/amd64"), p("linux/arm64"), p("linux/arm/v7")]
    );
    assert!(!spec.index);
    assert_eq!(
        spec.cargo_target(&p("linux/amd64")).as_deref(),
        Some("x86_64-unknown-linux-musl")
    );
    assert_eq!(
        spec.cargo_target(&p("linux/arm64")).as_deref(),
        Some("aarch64-unknown-linux-musl")
    );
    assert_eq!(
        spec.cargo_target(&p("linux/arm/v7")).as_deref(),
        Some("armv7-unknown-linux-musleabi")
    );
    assert_eq!(
        spec.platform_settings[&p("linux/arm64")].linker.as_deref(),
        Some("my-aarch64-gcc")
    );
    assert_eq!(
        spec.stage.layers[1].entries[1].platforms,
        [p("linux/arm64")]
    );
}

#[test]
fn a_spec_for_one_platform_keeps_its_entries_and_targets() {
    let fixture = Fixture::new();
    let spec = fixture.parse(MULTI).unwrap();
    let cargo = |s: &ImageSpec| match &s.stage.layers[1].entries[0].source {
        Source::Cargo(src) => src.clone(),
        other => panic!("not cargo: {other:?}"),
    };

    let amd64 = spec.for_platform(&p("linux/amd64"), "x86_64-unknown-linux-musl");
    let names: Vec<&str> = amd64.stage.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["assets", "app"],
        "a layer with nothing for amd64 is left out"
    );
    assert_eq!(amd64.stage.layers[1].entries.len(), 1);
    assert_eq!(cargo(&amd64).target, "x86_64-unknown-linux-musl");
    assert_eq!(cargo(&amd64).linker, None);
    assert_eq!(cargo(&amd64).cc, None);
    // The shared layer is exactly the same on every platform (same key, one blob).
    let arm64 = spec.for_platform(&p("linux/arm64"), "aarch64-unknown-linux-musl");
    assert_eq!(amd64.stage.layers[0], arm64.stage.layers[0]);
    let names: Vec<&str> = arm64.stage.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["assets", "app", "arm-extras"]);
    assert_eq!(arm64.stage.layers[1].entries.len(), 2);
    assert_eq!(cargo(&arm64).target, "aarch64-unknown-linux-musl");
    assert_eq!(cargo(&arm64).linker.as_deref(), Some("my-aarch64-gcc"));
    assert_eq!(cargo(&arm64).cc.as_deref(), Some("my-aarch64-cc"));
    assert_eq!(cargo(&arm64).profile, "dev");
}

#[test]
fn no_platforms_is_the_single_platform_spec_of_before() {
    let fixture = Fixture::new();
    let spec = fixture
        .parse("name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncargo = {}\ndest = \"/a\"\n")
        .unwrap();
    assert!(spec.platforms.is_empty());
    assert!(!spec.index);
    assert!(spec.platform_settings.is_empty());
    let amd64 = spec.for_platform(&Platform::linux_amd64(), "x86_64-unknown-linux-musl");
    assert_eq!(
        amd64, spec,
        "building for the default platform changes nothing"
    );
}

#[test]
fn an_index_can_be_asked_for_one_platform() {
    let fixture = Fixture::new();
    let spec = fixture
        .parse("name = \"x\"\nplatforms = [\"linux/arm64\"]\nindex = true\n")
        .unwrap();
    assert_eq!(spec.platforms, [p("linux/arm64")]);
    assert!(spec.index);
}

#[test]
fn a_pinned_target_is_fine_for_one_platform() {
    let fixture = Fixture::new();
    let spec = fixture
        .parse("name = \"x\"\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncargo = { target = \"x86_64-unknown-linux-gnu\" }\ndest = \"/a\"\n")
        .unwrap();
    assert_eq!(spec.pinned_cargo_target(), Some("x86_64-unknown-linux-gnu"));
    let amd64 = spec.for_platform(&Platform::linux_amd64(), "x86_64-unknown-linux-musl");
    match &amd64.stage.layers[0].entries[0].source {
        Source::Cargo(src) => assert_eq!(src.target, "x86_64-unknown-linux-gnu"),
        other => panic!("not cargo: {other:?}"),
    }
}

refuse!(
    platform_builder_unknown,
    "name = \"x\"\n[platform.\"linux/amd64\"]\nbuilder = \"cross\"\n"
);
refuse!(
    platform_zigbuild_with_a_linker,
    "name = \"x\"\n[platform.\"linux/arm64\"]\nbuilder = \"zigbuild\"\nlinker = \"aarch64-linux-gnu-gcc\"\n"
);

#[test]
fn zigbuild_platforms_build_with_zigbuild_and_keep_glibc_suffixes() {
    let fixture = Fixture::new();
    let spec = fixture
        .parse(
            "name = \"x\"\n[platform.\"linux/amd64\"]\nbuilder = \"zigbuild\"\n\
             target = \"x86_64-unknown-linux-gnu.2.31\"\n[[layer]]\nname = \"a\"\n\
             [[layer.add]]\ncargo = {}\ndest = \"/a\"\n",
        )
        .unwrap();
    let target = spec.cargo_target(&Platform::linux_amd64()).unwrap();
    assert_eq!(target, "x86_64-unknown-linux-gnu.2.31");
    let amd64 = spec.for_platform(&Platform::linux_amd64(), &target);
    match &amd64.stage.layers[0].entries[0].source {
        Source::Cargo(src) => {
            assert_eq!(src.builder, crate::cargo::Builder::Zigbuild);
            assert_eq!(src.target, "x86_64-unknown-linux-gnu.2.31");
        }
        other => panic!("not cargo: {other:?}"),
    }
}

refuse!(platform_invalid, "name = \"x\"\nplatforms = [\"linux\"]\n");
refuse!(
    platform_upper_case,
    "name = \"x\"\nplatforms = [\"linux/ARM64\"]\n"
);
refuse!(
    platform_not_linux,
    "name = \"x\"\nplatforms = [\"windows/amd64\"]\n"
);
refuse!(
    platform_unknown,
    "name = \"x\"\nplatforms = [\"linux/amd64\", \"linux/mips64\"]\n"
);
refuse!(
    platform_duplicate,
    "name = \"x\"\nplatforms = [\"linux/amd64\", \"linux/amd64\"]\n"
);
refuse!(platforms_empty, "name = \"x\"\nplatforms = []\n");
refuse!(
    platform_table_bad_key,
    "name = \"x\"\n[platform.\"arm64\"]\ntarget = \"aarch64-unknown-linux-musl\"\n"
);
refuse!(
    platform_table_unknown_key,
    "name = \"x\"\n[platform.\"linux/arm64\"]\nlinkr = \"gcc\"\n"
);
refuse!(
    entry_platform_not_built,
    "name = \"x\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncontent = \"\"\ndest = \"/a\"\nplatforms = [\"linux/arm/v7\"]\n"
);
refuse!(
    pinned_target_with_several_platforms,
    "name = \"x\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n[[layer]]\nname = \"a\"\n[[layer.add]]\ncargo = { target = \"x86_64-unknown-linux-musl\" }\ndest = \"/a\"\n"
);

#[test]
fn an_unknown_platform_with_a_target_is_accepted() {
    let fixture = Fixture::new();
    let spec = fixture
        .parse("name = \"x\"\nplatforms = [\"linux/mips64le\"]\n[platform.\"linux/mips64le\"]\ntarget = \"mips64el-unknown-linux-muslabi64\"\n")
        .unwrap();
    assert_eq!(
        spec.cargo_target(&p("linux/mips64le")).as_deref(),
        Some("mips64el-unknown-linux-muslabi64")
    );
}
