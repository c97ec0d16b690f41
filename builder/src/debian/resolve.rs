//! Dependency resolution: the packages an entry names, and everything their `Pre-Depends` and
//! `Depends` need, picked from one architecture's `Packages` indexes.
//!
//! The resolver is deliberately simple and deterministic, as apko's and rules_distroless's
//! are: it never backtracks. Packages are taken breadth-first from the names the spec lists;
//! each dependency group (`a | b`) is satisfied by a package already taken when one fits (by
//! name and version, or by a `Provides` of the name, versioned when the relation is), else by
//! its first alternative the suite can satisfy: the highest version of that name that meets
//! the constraint, or else the provider of that virtual name first in name order. A package is
//! taken once: two relations wanting two versions of one name is an error naming both.
//! Cycles (`libc6` and `libgcc-s1` depend on each other) end where a package is already
//! taken. `Recommends`, `Suggests`, `Conflicts` and `Breaks` are not followed; packages of
//! priority `required` are not added unless named (the image is what the spec lists and what
//! that needs, nothing more).

use std::collections::{BTreeMap, VecDeque};

use super::deb822::Paragraph;
use super::version::{self, parse_relations, Relation};

/// One package of a `Packages` index.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The `.deb`'s path under the mirror's root (`pool/main/...`).
    pub filename: String,
    /// The `.deb`'s SHA-256, lower-case hex.
    pub sha256: String,
    /// `(name, version)` of what it provides.
    pub provides: Vec<(String, Option<String>)>,
    /// `Pre-Depends` then `Depends`.
    pub depends: Vec<Vec<Relation>>,
}

impl Candidate {
    /// The index entry `p`, or the name of its first missing or unreadable field.
    pub fn from_paragraph(p: &Paragraph) -> Result<Candidate, &'static str> {
        let field = |name: &'static str| p.get(name).ok_or(name);
        let mut depends = Vec::new();
        for name in ["Pre-Depends", "Depends"] {
            if let Some(value) = p.get(name) {
                depends.extend(parse_relations(value).ok_or(name)?);
            }
        }
        let provides = match p.get("Provides") {
            Some(value) => parse_relations(value)
                .ok_or("Provides")?
                .into_iter()
                .flatten()
                .map(|r| (r.name, r.constraint.map(|(_, v)| v)))
                .collect(),
            None => Vec::new(),
        };
        let sha256 = field("SHA256")?.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("SHA256");
        }
        Ok(Candidate {
            name: field("Package")?.to_string(),
            version: field("Version")?.to_string(),
            architecture: field("Architecture")?.to_string(),
            filename: field("Filename")?.to_string(),
            sha256,
            provides,
            depends,
        })
    }
}

/// The packages of one suite and architecture, by name and by what they provide.
#[derive(Debug, Default)]
pub struct Index {
    pub packages: Vec<Candidate>,
    by_name: BTreeMap<String, Vec<usize>>,
    providers: BTreeMap<String, Vec<usize>>,
}

impl Index {
    /// Adds a package; the first index to list a `(name, version)` keeps it.
    pub fn add(&mut self, c: Candidate) {
        let same = self.by_name.get(&c.name).is_some_and(|ids| {
            ids.iter()
                .any(|&i| version::compare(&self.packages[i].version, &c.version).is_eq())
        });
        if same {
            return;
        }
        let id = self.packages.len();
        self.by_name.entry(c.name.clone()).or_default().push(id);
        for (name, _) in &c.provides {
            self.providers.entry(name.clone()).or_default().push(id);
        }
        self.packages.push(c);
    }

    /// The versions of `name` that meet `r`, highest first.
    fn versions(&self, r: &Relation) -> Vec<usize> {
        let mut ids: Vec<usize> = self
            .by_name
            .get(&r.name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| r.accepts(&self.packages[i].version))
            .collect();
        ids.sort_by(|&a, &b| {
            version::compare(&self.packages[b].version, &self.packages[a].version)
        });
        ids
    }

    /// The packages providing `r` (versioned when `r` is), in name order, highest version first.
    fn providing(&self, r: &Relation) -> Vec<usize> {
        let mut ids: Vec<usize> = self
            .providers
            .get(&r.name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| provides(&self.packages[i], r))
            .collect();
        ids.sort_by(|&a, &b| {
            let (a, b) = (&self.packages[a], &self.packages[b]);
            a.name
                .cmp(&b.name)
                .then_with(|| version::compare(&b.version, &a.version))
        });
        ids
    }
}

/// Whether `c` provides what `r` asks for: an unversioned relation takes any `Provides` of the
/// name, a versioned one only a versioned `Provides` that meets it.
fn provides(c: &Candidate, r: &Relation) -> bool {
    c.provides.iter().any(|(name, v)| {
        name == &r.name
            && match (&r.constraint, v) {
                (None, _) => true,
                (Some(_), Some(v)) => r.accepts(v),
                (Some(_), None) => false,
            }
    })
}

/// Why resolution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("no package `{name}` (and nothing provides it)")]
    Unknown { name: String },
    #[error(
        "`{package}` depends on `{relation}`, which nothing in the suite satisfies{found}{chain}"
    )]
    Unsatisfiable {
        package: String,
        relation: String,
        /// `" (it has NAME VERSION)"` when the name exists in other versions, or empty.
        found: String,
        /// `" (wanted by a <- b)"` when `package` was not named in the spec, or empty.
        chain: String,
    },
}

/// The packages `wanted` names and everything they depend on, as indexes into
/// `index.packages`, sorted by name.
pub fn resolve(index: &Index, wanted: &[String]) -> Result<Vec<usize>, Problem> {
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    // Who pulled each package in (for the messages).
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::new();
    for name in wanted {
        let r = Relation {
            name: name.clone(),
            constraint: None,
        };
        let Some(&id) = index.versions(&r).first().or(index.providing(&r).first()) else {
            return Err(Problem::Unknown { name: name.clone() });
        };
        if taken.insert(index.packages[id].name.clone(), id).is_none() {
            queue.push_back(id);
        }
    }
    while let Some(id) = queue.pop_front() {
        let package = &index.packages[id];
        'groups: for group in &package.depends {
            // Already satisfied?
            for r in group {
                if taken
                    .get(&r.name)
                    .is_some_and(|&t| r.accepts(&index.packages[t].version))
                    || taken.values().any(|&t| provides(&index.packages[t], r))
                {
                    continue 'groups;
                }
            }
            for r in group {
                let free = |&&c: &&usize| !taken.contains_key(&index.packages[c].name);
                let pick = index
                    .versions(r)
                    .iter()
                    .find(free)
                    .or(index.providing(r).iter().find(free))
                    .copied();
                if let Some(pick) = pick {
                    taken.insert(index.packages[pick].name.clone(), pick);
                    parent.insert(pick, id);
                    queue.push_back(pick);
                    continue 'groups;
                }
            }
            let relation = group
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ");
            let found = group
                .iter()
                .find_map(|r| {
                    let have = taken.get(&r.name).copied().or_else(|| {
                        index.by_name.get(&r.name).and_then(|ids| {
                            ids.iter().copied().max_by(|&a, &b| {
                                version::compare(
                                    &index.packages[a].version,
                                    &index.packages[b].version,
                                )
                            })
                        })
                    })?;
                    Some(format!(
                        " (it has {} {})",
                        r.name, index.packages[have].version
                    ))
                })
                .unwrap_or_default();
            let mut names = Vec::new();
            let mut at = id;
            while let Some(&up) = parent.get(&at) {
                names.push(index.packages[up].name.clone());
                at = up;
            }
            let chain = if names.is_empty() {
                String::new()
            } else {
                format!(
                    " (`{}` is wanted by `{}`)",
                    package.name,
                    names.join("` <- `")
                )
            };
            return Err(Problem::Unsatisfiable {
                package: format!("{} {}", package.name, package.version),
                relation,
                found,
                chain,
            });
        }
    }
    Ok(taken.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::deb822;

    fn index(text: &str) -> Index {
        let mut index = Index::default();
        for p in deb822::parse(text).unwrap() {
            index.add(Candidate::from_paragraph(&p).unwrap());
        }
        index
    }

    fn stanza(name: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: pool/{name}.deb\nSize: 1\nSHA256: {}\n{extra}\n",
            "0".repeat(64)
        )
    }

    fn names(index: &Index, ids: &[usize]) -> Vec<String> {
        ids.iter()
            .map(|&i| format!("{}={}", index.packages[i].name, index.packages[i].version))
            .collect()
    }

    #[test]
    fn alternatives_virtual_packages_versions_and_cycles_resolve() {
        let text = [
            stanza(
                "app",
                "1",
                "Depends: libc (>= 2), mta | mail-transport-agent, gone | ok",
            ),
            stanza("libc", "1", ""),
            stanza("libc", "3", "Depends: libgcc"),
            stanza("libgcc", "1", "Depends: libc"),
            stanza("postfix", "1", "Provides: mail-transport-agent"),
            stanza("exim", "1", "Provides: mail-transport-agent"),
            stanza("ok", "1", ""),
        ]
        .join("\n");
        let index = index(&text);
        let ids = resolve(&index, &["app".into()]).unwrap();
        assert_eq!(
            names(&index, &ids),
            ["app=1", "exim=1", "libc=3", "libgcc=1", "ok=1"]
        );
    }

    #[test]
    fn an_unknown_or_unsatisfiable_package_is_named() {
        let text = [
            stanza("app", "1", "Depends: lib"),
            stanza("lib", "1", "Depends: base (>= 5)"),
            stanza("base", "4", ""),
        ]
        .join("\n");
        let index = index(&text);
        assert_eq!(
            resolve(&index, &["nope".into()]),
            Err(Problem::Unknown {
                name: "nope".into()
            })
        );
        let err = resolve(&index, &["app".into()]).unwrap_err().to_string();
        assert_eq!(
            err,
            "`lib 1` depends on `base (>= 5)`, which nothing in the suite satisfies (it has base 4) (`lib` is wanted by `app`)"
        );
    }
}
