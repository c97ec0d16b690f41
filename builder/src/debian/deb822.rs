//! Control files: the `Field: value` paragraphs (RFC 822 style, "deb822") that `Release`,
//! `Packages`, a package's `control`, dpkg's `status` and apt's `.sources` files are made of.
//!
//! A paragraph is a run of non-blank lines; a line starting with a space or a tab continues the
//! field above it (multi-line fields such as `Description` or `Release`'s `SHA256` list).
//! Field names compare case-insensitively, as dpkg compares them; the order of the fields is
//! kept, so a package's own `control` paragraph can be written into dpkg's `status` as it came.

/// One paragraph: its fields in the order they were written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    /// `(name, value)`: the value without the space after the colon; continuation lines are
    /// joined with `\n` and keep their leading space.
    pub fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of field `name` (case-insensitive), trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// The paragraph as a control file writes it (no trailing blank line).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.fields {
            out.push_str(name);
            out.push(':');
            if !value.starts_with('\n') && !value.is_empty() {
                out.push(' ');
            }
            out.push_str(value);
            out.push('\n');
        }
        out
    }
}

/// The paragraphs of `text`. Comment lines (`#` in the first column, as apt's `.sources`
/// files have them) are skipped; a line that is neither a field nor a continuation is an
/// error giving its 1-based number.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, usize> {
    let mut out = Vec::new();
    let mut current = Paragraph::default();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(number + 1);
            };
            value.push('\n');
            value.push_str(line);
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(number + 1);
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(number + 1);
        }
        current
            .fields
            .push((name.to_string(), value.trim_start().trim_end().to_string()));
    }
    if !current.fields.is_empty() {
        out.push(current);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_keep_their_continuation_lines_and_field_order() {
        let text = "Package: a\nDescription: short\n more\n .\n end\n\n\nPackage: b\nVersion: 1\n";
        let ps = parse(text).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("description"), Some("short\n more\n .\n end"));
        assert_eq!(ps[1].get("Version"), Some("1"));
        assert_eq!(
            ps[0].to_text(),
            "Package: a\nDescription: short\n more\n .\n end\n"
        );
    }

    #[test]
    fn a_line_that_is_not_a_field_names_its_number() {
        assert_eq!(parse("Package: a\nnonsense\n"), Err(2));
        assert_eq!(parse(" continued\n"), Err(1));
    }
}
