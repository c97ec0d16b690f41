//! How the CLI talks to people: cargo-style status lines on stderr, coloured only when stderr is
//! a terminal (and `NO_COLOR` is unset), and errors with their causes.

use std::io::{IsTerminal, Write};

use cargo_oci_image::build;
use cargo_oci_image::spec::SpecError;

/// How much the CLI says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// `word` right-aligned in 12 columns (bold green on a terminal), then `message`, like cargo.
pub fn status_line(word: &str, message: &str) -> String {
    if color() {
        format!("\x1b[1;32m{word:>12}\x1b[0m {message}")
    } else {
        format!("{word:>12} {message}")
    }
}

/// Prints a [`status_line`] on stderr.
pub fn status(word: &str, message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", status_line(word, message));
}

/// A byte count for people: `812 B`, `1.4 KiB`, `12.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `sha256:0123456789ab` — a digest shortened for status lines.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", &hex[..hex.len().min(12)]),
        None => digest.to_string(),
    }
}

/// Prints an error: spec errors as a miette report with the offending line, others as
/// `error: ...` followed by their causes.
pub fn report_error(error: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    if let Some(spec_error) = find_spec_error(error) {
        let handler = if color() {
            miette::GraphicalReportHandler::new()
        } else {
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        };
        let mut rendered = String::new();
        if handler.render_report(&mut rendered, spec_error).is_ok() {
            let _ = writeln!(err, "{}", rendered.trim_end());
            return;
        }
    }
    let prefix = if color() {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    };
    let _ = writeln!(err, "{prefix}: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(err, "\nCaused by:\n  {cause}");
    }
}

fn find_spec_error(error: &anyhow::Error) -> Option<&SpecError> {
    // `build::Error::Spec` is transparent: it forwards Display and source to the spec error, so
    // the spec error never shows up as a link of the chain on its own.
    error.chain().find_map(|e| {
        e.downcast_ref::<SpecError>()
            .or_else(|| match e.downcast_ref::<build::Error>() {
                Some(build::Error::Spec(spec)) => Some(spec),
                _ => None,
            })
    })
}
