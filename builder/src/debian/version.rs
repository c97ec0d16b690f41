//! Debian versions and the relations between packages (`Depends`, `Pre-Depends`, `Provides`).
//!
//! Versions compare as dpkg compares them (`[epoch:]upstream[-revision]`, Debian Policy 5.6.12):
//! the epoch as a number, then the upstream version and the revision each by alternating runs
//! of non-digits (letters sort before non-letters, `~` before everything, even the end) and
//! digits (as numbers). A relation field is a comma-separated list of groups of alternatives
//! (`a (>= 1.2) | b, c:any`); the architecture qualifier (`:any`, `:native`, `:amd64`) is
//! dropped: one architecture is resolved at a time.

use std::cmp::Ordering;

/// Compares two Debian versions the way `dpkg --compare-versions` does.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

/// `(epoch, upstream, revision)` of a version.
fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), rest),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// The sort weight of a non-digit character: `~` first, then the end of the string, then
/// letters, then everything else.
fn weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // The non-digit run.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let order = weight(ca).cmp(&weight(cb));
            if order != Ordering::Equal {
                return order;
            }
            a = &a[1..];
            b = &b[1..];
        }
        // The digit run, as a number (leading zeros ignored).
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let na = trim_zeros(&a[..da]);
        let nb = trim_zeros(&b[..db]);
        let order = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
        if order != Ordering::Equal {
            return order;
        }
        a = &a[da..];
        b = &b[db..];
    }
    Ordering::Equal
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

/// A version constraint's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" | "<" => Op::Lt,
            "<=" => Op::Le,
            "=" => Op::Eq,
            ">=" => Op::Ge,
            ">>" | ">" => Op::Gt,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// One alternative of a relation: a package name and an optional version constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    pub constraint: Option<(Op, String)>,
}

impl Relation {
    /// Whether `version` satisfies the constraint (any version does when there is none).
    pub fn accepts(&self, version: &str) -> bool {
        let Some((op, wanted)) = &self.constraint else {
            return true;
        };
        let order = compare(version, wanted);
        match op {
            Op::Lt => order == Ordering::Less,
            Op::Le => order != Ordering::Greater,
            Op::Eq => order == Ordering::Equal,
            Op::Ge => order != Ordering::Less,
            Op::Gt => order == Ordering::Greater,
        }
    }
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.constraint {
            Some((op, v)) => write!(f, "{} ({} {v})", self.name, op.as_str()),
            None => f.write_str(&self.name),
        }
    }
}

/// The groups of alternatives of a relation field (`a (>= 1) | b, c`); `None` when a part
/// cannot be read.
pub fn parse_relations(field: &str) -> Option<Vec<Vec<Relation>>> {
    let mut groups = Vec::new();
    for group in field.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alt in group.split('|') {
            alternatives.push(parse_relation(alt.trim())?);
        }
        groups.push(alternatives);
    }
    Some(groups)
}

fn parse_relation(text: &str) -> Option<Relation> {
    // Architecture restrictions (`[amd64]`) and build profiles (`<!nocheck>`) only appear in
    // source packages; drop them if a repository has them anyway. They follow the version
    // constraint, whose own `<` (`<=`, `<<`) must stay.
    let after_constraint = text.find(')').map_or(0, |i| i + 1);
    let end = text[after_constraint..]
        .find(['[', '<'])
        .map_or(text.len(), |i| after_constraint + i);
    let text = text[..end].trim();
    let (name, constraint) = match text.split_once('(') {
        Some((name, rest)) => {
            let inner = rest.strip_suffix(')')?.trim();
            let split = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let op = Op::parse(inner[..split].trim())?;
            let version = inner[split..].trim();
            if version.is_empty() {
                return None;
            }
            (name.trim(), Some((op, version.to_string())))
        }
        None => (text, None),
    };
    let name = name.split(':').next().unwrap_or("").trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some(Relation {
        name: name.to_string(),
        constraint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_dpkg_compares_them() {
        for (a, b, order) in [
            ("1.0", "1.0", Ordering::Equal),
            ("1.0", "1.1", Ordering::Less),
            ("1:1.0", "2.0", Ordering::Greater),
            ("1.0~rc1", "1.0", Ordering::Less),
            ("1.0", "1.0+b1", Ordering::Less),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Ordering::Less),
            ("1.0a", "1.0", Ordering::Greater),
            ("1.0-1", "1.0-1~bpo1", Ordering::Greater),
            ("010", "10", Ordering::Equal),
            ("1.2.3", "1.2.10", Ordering::Less),
        ] {
            assert_eq!(compare(a, b), order, "{a} vs {b}");
        }
    }

    #[test]
    fn relation_fields_give_groups_of_alternatives() {
        let groups =
            parse_relations("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, perl:any").unwrap();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[1].len(), 2);
        assert_eq!(groups[1][1].name, "debconf-2.0");
        assert_eq!(groups[2][0].name, "perl");
        assert!(groups[0][0].accepts("2.36-9"));
        assert!(!groups[0][0].accepts("2.31"));
        assert_eq!(groups[0][0].to_string(), "libc6 (>= 2.34)");
        assert!(parse_relations("a (>= )").is_none());
    }

    #[test]
    fn upper_bounds_are_read_and_restrictions_after_them_dropped() {
        // `0ad` in bookworm's Packages: a `<=` bound, which must not be cut as a build profile.
        let groups = parse_relations("0ad-data (>= 0.0.26), 0ad-data (<= 0.0.26-3)").unwrap();
        assert_eq!(groups[1][0].to_string(), "0ad-data (<= 0.0.26-3)");
        assert!(groups[1][0].accepts("0.0.26-3"));
        assert!(!groups[1][0].accepts("0.0.26-4"));
        let groups = parse_relations("a (<< 2) [amd64] <!nocheck>, b <!nodoc>, c [i386]").unwrap();
        assert_eq!(groups[0][0].to_string(), "a (<< 2)");
        assert_eq!(groups[1][0].to_string(), "b");
        assert_eq!(groups[2][0].to_string(), "c");
    }
}
