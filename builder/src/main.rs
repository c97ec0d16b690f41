//! The `cargo-image` binary: a thin layer over the library. It parses arguments, turns library
//! events into cargo-style status lines (or JSON), and decides exit codes in one place:
//! 0 ok, 1 build error, 2 usage error.
// Argument docs are clap help texts, where `<target-dir>` is a placeholder, not HTML.
#![allow(rustdoc::invalid_html_tags)]

mod cli;

/// mimalloc rather than the system allocator: the builds allocate per walked file from several
/// threads at once (see the comment on the dependency in Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // `cargo image build` runs `cargo-image image build`: drop the subcommand name cargo passes.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "image") {
        args.remove(1);
    }
    cli::run(args)
}
