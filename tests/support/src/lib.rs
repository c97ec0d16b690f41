//! What every test crate of the workspace shares: the library's own integration tests
//! (`builder/tests`, as a dev-dependency), the acceptance tests (`tests/acceptance`) and the bench
//! (`tests/bench`). One copy of each helper, so a test reads as what it checks.
//!
//! - [`cli`]: the `cargo-image` binary under test, built once per run, and the ways to run it
//!   (captured, spawned, wrapped in `timeout`/`prlimit`/`sh -c umask`), its JSON events.
//! - [`tools`]: the peer tools nobody here wrote (skopeo, umoci, runc, oci-image-tool, GNU tar,
//!   sha256sum) that check what it writes. Every peer tool is required: a missing one fails the
//!   test with a message naming `just deps`, never a silent skip.
//! - [`layout`]: reading an OCI layout's `index.json` and blobs.
//! - [`files`]: the repository, its examples copied to a temporary directory, trees walked and
//!   compared, deterministic noise.
//! - [`project`]: a scratch project (a spec and the files beside it) that builds or is refused.
//! - [`registry`]: a real `docker-registry` on loopback (htpasswd auth, TLS) and a
//!   fault-injecting proxy in front of it.
//!
//! It depends on no crate of the workspace: it drives the binary, and the library's tests pass
//! it the library's values.

pub mod cli;
pub mod files;
pub mod layout;
pub mod project;
pub mod registry;
pub mod tools;

pub use serde_json::Value;
pub use tempfile::TempDir;

/// An error and its sources on one line, ` | `-joined (what a test matches a message against).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(" | ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub use cli::{
    build, build_cargo_image, build_events, build_with_format, cargo_image, cargo_image_bin,
    json_events, of_kind, CargoImage,
};
pub use files::{
    build_two_checkouts, build_two_checkouts_with, checkout, checkout_with, copy_tree,
    example_copy, repo_root, stat, tree_bytes, walk, Noise,
};
pub use layout::{
    blob_json, blob_path, first_layer_blob, manifest_digest, read_json, referrers, sbom_referrers,
    spdx_referrers,
};
pub use project::{build_base_layout, edit_file, edit_spec, spec_on_base, write_spec, Project};
pub use tools::{
    files_opened, glibc_tar, loader_members, oci_image_tool_validate, require, run, run_command,
    runc_run, sha256, sha256_file, skopeo, skopeo_copy_gzip, skopeo_inspect, skopeo_pull, tar_list,
    tar_list_verbose, umoci_layout, umoci_unpack, Run,
};
