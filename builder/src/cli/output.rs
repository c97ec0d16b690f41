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

/// Prints `warning: MESSAGE` on stderr (bold yellow on a terminal), like cargo.
pub fn warning(message: &str) {
    let word = if color() {
        "\x1b[1;33mwarning\x1b[0m"
    } else {
        "warning"
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{word}: {message}");
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

/// Prints an error in one style: spec errors as a miette report with the offending line and a
/// hint, every other error as a miette report of its chain of causes (each said once, see
/// [`causes`]).
pub fn report_error(error: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    let handler = if color() {
        miette::GraphicalReportHandler::new()
    } else {
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
    };
    let mut rendered = String::new();
    let done = match find_spec_error(error) {
        Some(spec_error) => handler.render_report(&mut rendered, spec_error),
        // Long messages (paths, references, hints) stay on one line each, so they can be
        // searched and copied.
        None => handler
            .with_wrap_lines(false)
            .render_report(&mut rendered, &Chain::of(&causes(error))),
    };
    if done.is_ok() {
        let _ = writeln!(err, "{}", rendered.trim_end());
    } else {
        let _ = writeln!(err, "error: {error:#}");
    }
}

/// The messages of an error and its causes, outermost first, each said once: an error whose
/// message ends with its cause's (`pulling base image x: 401 Unauthorized` over `401
/// Unauthorized`) keeps only its own words.
pub fn causes(error: &anyhow::Error) -> Vec<String> {
    let mut messages: Vec<String> = error.chain().map(|e| e.to_string()).collect();
    for i in 0..messages.len().saturating_sub(1) {
        let (head, tail) = messages.split_at_mut(i + 1);
        let (message, next) = (&mut head[i], &tail[0]);
        if message.len() > next.len() && message.ends_with(next.as_str()) {
            let own = message[..message.len() - next.len()].trim_end_matches([':', ' ', '\n']);
            if !own.is_empty() {
                *message = own.to_string();
            }
        }
    }
    messages.dedup();
    messages
}

/// The `error` event that ends a JSON event stream: the message, its causes, and where a spec
/// error points (`file`, `line`, `column`, `key`, `help`). `image` names the image of a
/// multi-image build.
pub fn error_event(error: &anyhow::Error, image: Option<&str>) -> serde_json::Value {
    let mut messages = causes(error).into_iter();
    let mut event = serde_json::json!({
        "event": "error",
        "message": messages.next().unwrap_or_default(),
        "causes": messages.collect::<Vec<_>>(),
    });
    let fields = event.as_object_mut().expect("an object");
    if let Some(image) = image {
        fields.insert("image".into(), image.into());
    }
    if let Some(diagnostic) = find_spec_error(error).and_then(SpecError::diagnostic) {
        fields.insert("message".into(), diagnostic.message.clone().into());
        fields.insert("file".into(), diagnostic.file.display().to_string().into());
        fields.insert("line".into(), diagnostic.line.into());
        fields.insert("column".into(), diagnostic.column.into());
        fields.insert("key".into(), diagnostic.key.clone().into());
        if let Some(help) = &diagnostic.help {
            fields.insert("help".into(), help.clone().into());
        }
    }
    event
}

/// An error chain as a diagnostic: miette draws its causes under it.
#[derive(Debug)]
struct Chain {
    message: String,
    cause: Option<Box<Chain>>,
}

impl Chain {
    fn of(messages: &[String]) -> Chain {
        let (first, rest) = messages
            .split_first()
            .map_or(("", &[][..]), |(f, r)| (f.as_str(), r));
        Chain {
            message: first.to_string(),
            cause: (!rest.is_empty()).then(|| Box::new(Chain::of(rest))),
        }
    }
}

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Chain {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as _)
    }
}

impl miette::Diagnostic for Chain {}

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
