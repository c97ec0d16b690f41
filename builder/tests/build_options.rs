//! Library callers of `build::build` get the range checks the command line has.

use cargo_oci_image::build::{self, BuildOptions};

#[test]
fn a_source_date_epoch_after_the_year_9999_is_refused_by_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("image.toml");
    std::fs::write(
        &spec,
        "name = \"epoch\"\n[[layer]]\nname = \"l\"\n[[layer.add]]\ncontent = \"hi\"\ndest = \"/hi\"\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let opts = BuildOptions {
        output: Some(out.clone()),
        store: Some(dir.path().join("store")),
        source_date_epoch: Some(99_999_999_999_999),
        ..BuildOptions::default()
    };
    let err = build::build(&spec, &opts, &|_| {}).expect_err("year 3170843 is refused");
    assert!(matches!(err, build::Error::InvalidEpoch { .. }), "{err}");
    assert!(err.to_string().contains("SOURCE_DATE_EPOCH"), "{err}");
    assert!(!out.exists(), "nothing written");
}
