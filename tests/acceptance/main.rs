//! Acceptance tests: build the examples with the `cargo-image` binary and check the images with
//! real tools (oci-image-tool, skopeo, umoci, runc, GNU tar).

mod archives;
mod bad_input;
mod builtin_base;
mod cache;
mod cargo_builds;
mod cli;
mod debian;
mod debian_glibc;
mod dynamic;
mod events;
mod examples;
mod export;
mod ignore;
mod key_while_writing;
mod load;
mod lock;
mod messages;
mod outputs;
mod platforms;
mod provenance;
mod push_referrers;
mod push_requests;
mod push_streaming;
mod registry;
mod registry_tls;
mod remote_cache;
mod reproducible;
mod rootfs_import;
mod sbom;
mod sign;
mod spec_hardening;
mod stages;
mod untrusted;
mod workspace;
