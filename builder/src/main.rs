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

/// Runs the command, then ends the process at once with its exit code: everything the command
/// writes or cleans up is done by the time `cli::run` returns (output files renamed into place,
/// temporary files removed, child processes waited for), and what is left is memory. A normal
/// exit would then run mimalloc's exit handler, which returns every arena to the kernel page by
/// page, while the threads freeing a build's trees in the background are still at it: 5% of a
/// warm build's time on the bench corpus (BENCHMARKS.md, "Warm builds: less memory, and no exit
/// handler").
fn main() {
    // `cargo image build` runs `cargo-image image build`: drop the subcommand name cargo passes.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "image") {
        args.remove(1);
    }
    let code = cli::run(args);
    // Rust's stdout is buffered by line; an exit that skips the runtime's cleanup flushes it here.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process without running exit handlers or destructors, which is
    // its point; no thread is left doing work whose result anything depends on (see above).
    unsafe { libc::_exit(i32::from(code)) }
}
