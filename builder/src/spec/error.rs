//! Spec errors: what went wrong, where (file, line, column, key), and how to fix it.
//!
//! Every problem found in a spec becomes a [`SpecDiagnostic`]: a plain one-line `Display`
//! (`image.toml:12:1: unknown key `config.entrypont``) for logs, and a [`miette::Diagnostic`]
//! with the source snippet, a label on the offending span and a hint for terminals. Validation
//! collects every problem it can find; the first is the error, the others are its
//! [`related`](miette::Diagnostic::related) diagnostics.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

/// An error reading or validating an image spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("could not read the image spec {}", path.display())]
    ReadSpec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The spec is not valid TOML, or does not have the shape of a spec (unknown key, wrong
    /// type, missing key).
    #[error(transparent)]
    ParseSpec(Box<SpecDiagnostic>),
    /// The spec is well-formed, but a value breaks a rule (bad name, path escaping the
    /// context, several sources in one entry...).
    #[error(transparent)]
    ValidateSpec(Box<SpecDiagnostic>),
    /// `cargo metadata` could not describe the workspace the images are looked for in.
    #[error("could not read the cargo workspace: {0}")]
    Cargo(#[from] crate::cargo::Error),
    /// A cargo workspace's images cannot be made as asked (an unknown `-p` package, a package
    /// with no binary and no image metadata...). `manifest` is the Cargo.toml at fault.
    #[error("{}: {message}", manifest.display())]
    Workspace {
        manifest: PathBuf,
        message: String,
        help: Option<String>,
    },
}

impl SpecError {
    /// The diagnostic for errors that point into the spec (`None` for I/O errors).
    pub fn diagnostic(&self) -> Option<&SpecDiagnostic> {
        match self {
            SpecError::ReadSpec { .. } | SpecError::Cargo(_) | SpecError::Workspace { .. } => None,
            SpecError::ParseSpec(d) | SpecError::ValidateSpec(d) => Some(d),
        }
    }
}

impl Diagnostic for SpecError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self {
            SpecError::ReadSpec { .. } => Some(Box::new("spec::read")),
            SpecError::Cargo(_) => Some(Box::new("spec::cargo-metadata")),
            SpecError::Workspace { .. } => Some(Box::new("spec::workspace")),
            SpecError::ParseSpec(d) | SpecError::ValidateSpec(d) => d.code(),
        }
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self {
            SpecError::ReadSpec { source, .. } => {
                Some(Box::new(if source.kind() == std::io::ErrorKind::NotFound {
                    "create an `image.toml` there, or pass the spec file with `--spec <PATH>`"
                } else {
                    "check the file's permissions, or pass another spec file with `--spec <PATH>`"
                }))
            }
            SpecError::Cargo(_) => None,
            SpecError::Workspace { help, .. } => help.as_ref().map(|h| Box::new(h) as _),
            SpecError::ParseSpec(d) | SpecError::ValidateSpec(d) => d.help(),
        }
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.diagnostic().and_then(|d| d.source_code())
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.diagnostic().and_then(|d| d.labels())
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        self.diagnostic().and_then(|d| d.related())
    }
}

/// What kind of rule a spec broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file is not valid TOML.
    Syntax,
    /// A key the spec does not know.
    UnknownKey,
    /// A value of the wrong TOML type.
    WrongType,
    /// A required key is absent.
    MissingKey,
    /// A value of the right type that breaks a rule (bad name, tag, port, mode, path...).
    InvalidValue,
    /// Keys that cannot go together (several sources in one entry, `include` without `path`).
    ConflictingKeys,
    /// An `[[layer.add]]` entry without a content source.
    MissingSource,
    /// A name used twice.
    Duplicate,
    /// A host path leaving the build context (or a context leaving the spec's directory).
    EscapesContext,
    /// The build context directory does not exist.
    ContextNotFound,
    /// Something this version of cargo-image does not support yet.
    Unsupported,
}

impl ErrorKind {
    /// A stable identifier, shown as the diagnostic code (`spec::unknown-key`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "spec::syntax",
            ErrorKind::UnknownKey => "spec::unknown-key",
            ErrorKind::WrongType => "spec::wrong-type",
            ErrorKind::MissingKey => "spec::missing-key",
            ErrorKind::InvalidValue => "spec::invalid-value",
            ErrorKind::ConflictingKeys => "spec::conflicting-keys",
            ErrorKind::MissingSource => "spec::missing-source",
            ErrorKind::Duplicate => "spec::duplicate",
            ErrorKind::EscapesContext => "spec::escapes-context",
            ErrorKind::ContextNotFound => "spec::context-not-found",
            ErrorKind::Unsupported => "spec::unsupported",
        }
    }
}

/// One problem in a spec, located in its file.
///
/// `Display` is one line, `FILE:LINE:COLUMN: MESSAGE`, and the message always names the key
/// at fault; the hint, the snippet and the other problems are in the [`Diagnostic`] impl.
#[derive(Debug)]
pub struct SpecDiagnostic {
    /// The spec file, as given by the caller.
    pub file: PathBuf,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column (in characters) of the problem.
    pub column: usize,
    /// The key at fault as a dotted path with array indices (`layer[0].add[1].dest`); empty
    /// when no key is involved (a TOML syntax error).
    pub key: String,
    /// What kind of rule was broken.
    pub kind: ErrorKind,
    /// What is wrong, naming the key (lower-case, no trailing period).
    pub message: String,
    /// How to fix it, when there is something to say.
    pub help: Option<String>,
    /// The I/O error behind the problem (a missing context directory).
    pub cause: Option<std::io::Error>,
    /// Further problems found in the same spec.
    pub others: Vec<SpecDiagnostic>,
    source_code: NamedSource<String>,
    labels: Vec<LabeledSpan>,
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        match self.others.len() {
            0 => Ok(()),
            1 => write!(f, " (and 1 more error)"),
            n => write!(f, " (and {n} more errors)"),
        }
    }
}

impl std::error::Error for SpecDiagnostic {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_ref().map(|e| e as _)
    }
}

impl Diagnostic for SpecDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.kind.as_str()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as _)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source_code)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.others.is_empty() {
            None
        } else {
            Some(Box::new(self.others.iter().map(|d| d as &dyn Diagnostic)))
        }
    }
}

/// The spec file being read: its name for messages and its text for snippets.
pub(crate) struct SpecSource<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    /// Where the spec's table is in the file: `""` for `image.toml`,
    /// `"package.metadata.image."` for a Cargo.toml. Keys in messages are prefixed with it.
    pub prefix: &'a str,
}

impl SpecSource<'_> {
    /// A diagnostic at `span` (byte offsets into the text). Spans over several lines (whole
    /// tables) are cut to their first line so the snippet stays short.
    pub fn diagnostic(
        &self,
        kind: ErrorKind,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> SpecDiagnostic {
        let span = self.first_line(span);
        let (line, column) = line_column(self.text, span.start);
        let mut key = key.into();
        let mut message = message.into();
        if !self.prefix.is_empty() {
            let full = format!("{}{key}", self.prefix);
            if !key.is_empty() {
                message = message.replacen(&format!("`{key}"), &format!("`{full}"), 1);
            }
            key = full.trim_end_matches('.').to_owned();
        }
        SpecDiagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            kind,
            message,
            help: None,
            cause: None,
            others: Vec::new(),
            source_code: NamedSource::new(self.file.display().to_string(), self.text.to_owned())
                .with_language("TOML"),
            labels: vec![LabeledSpan::new_primary_with_span(Some(label.into()), span)],
        }
    }

    /// Cut `span` to the end of its first line, and into the text.
    pub fn first_line(&self, span: Range<usize>) -> Range<usize> {
        let boundary = |mut i: usize| {
            i = i.min(self.text.len());
            while !self.text.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let start = boundary(span.start);
        let end = boundary(span.end).max(start);
        let end = self.text[start..end]
            .find('\n')
            .map_or(end, |nl| start + nl);
        let end = if self.text[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        start..end
    }
}

impl SpecDiagnostic {
    /// Add a hint.
    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Add a hint if there is one.
    pub(crate) fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// Add a secondary label (such as "first used here").
    pub(crate) fn with_label(
        mut self,
        source: &SpecSource<'_>,
        span: Range<usize>,
        label: &str,
    ) -> Self {
        let span = source.first_line(span);
        self.labels
            .push(LabeledSpan::new_with_span(Some(label.to_owned()), span));
        self
    }

    /// Attach the I/O error behind the problem.
    pub(crate) fn with_cause(mut self, cause: std::io::Error) -> Self {
        self.cause = Some(cause);
        self
    }
}

/// 1-based line and character column of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}
