//! Stages and bases: `from` (scratch, a built-in base, a registry reference, an `oci:` layout,
//! an archive or another stage) with its `pull` policy, and the check that every stage a stage uses is
//! declared and that no stage needs itself. Registry references are parsed by
//! [`Reference`], the one reference grammar of the crate.

use std::path::Path;

use toml::Spanned;

use super::layers::check_layer_name;
use super::names::check_tag;
use super::paths::normalize;
use super::{Checker, Problem};
use crate::spec::error::ErrorKind;
use crate::spec::model::{Base, BuiltinBase, Source, Stage};
use crate::types::{PullPolicy, Reference};

impl Checker<'_> {
    /// The base of a stage (`from` and `pull`); `prefix` is the stage's key prefix (`stage[0].`).
    pub(super) fn base(
        &mut self,
        from: Option<&Spanned<String>>,
        pull_raw: Option<&Spanned<String>>,
        prefix: &str,
        spec_dir: &Path,
    ) -> Option<Base> {
        let pull = match pull_raw {
            None => Some(PullPolicy::default()),
            Some(pull) => self.check(pull, &format!("{prefix}pull"), |s| {
                s.parse::<PullPolicy>().map_err(|_| {
                    Problem::invalid("not a pull policy")
                        .help(r#"use "if-not-present" (the default), "always" or "never""#)
                })
            }),
        };
        let base = match from {
            None => Some(Base::Scratch),
            Some(from) => self.check(from, &format!("{prefix}from"), |s| {
                check_from(s, spec_dir, pull.unwrap_or_default())
            }),
        };
        if let (Some(p), Some(base)) = (pull_raw, &base) {
            if !matches!(base, Base::Registry { .. }) {
                self.problem(
                    p.span(),
                    &format!("{prefix}pull"),
                    &format!("{:?}", p.get_ref()),
                    Problem::invalid("only applies to a registry base").help(
                        "remove `pull`, or set `from` to a registry reference like \"alpine:3.20\"",
                    ),
                );
            }
        }
        base
    }

    /// Every stage a stage uses (as its base or through `from-stage`) exists, and no stage
    /// needs itself.
    pub(super) fn stage_references(&mut self, image: &Stage, stages: &[Stage]) {
        let all: Vec<&Stage> = stages.iter().chain(std::iter::once(image)).collect();
        let uses = |stage: &Stage| -> Vec<String> {
            let mut v = Vec::new();
            if let Base::Stage(name) = &stage.base {
                v.push(name.clone());
            }
            for layer in &stage.layers {
                for entry in &layer.entries {
                    if let Source::Stage { stage, .. } = &entry.source {
                        v.push(stage.clone());
                    }
                }
            }
            v
        };
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        for stage in &all {
            for used in uses(stage) {
                if !names.contains(&used.as_str()) {
                    let known = stages
                        .iter()
                        .map(|s| format!("`{}`", s.name))
                        .collect::<Vec<_>>()
                        .join(", ");
                    self.error(
                        ErrorKind::InvalidValue,
                        0..0,
                        "stage",
                        format!(
                            "stage `{}` uses stage `{used}`, which the spec does not declare",
                            stage.name
                        ),
                        "unknown stage",
                    )
                    .help = Some(if known.is_empty() {
                        "declare it with a `[[stage]]` table (`name`, `from`, `layer`)".to_owned()
                    } else {
                        format!("the declared stages are {known}")
                    });
                }
            }
        }
        // Cycles: walk each stage's uses; reaching the start again is a cycle.
        for start in &all {
            let mut stack: Vec<(String, Vec<String>)> = vec![(start.name.clone(), vec![])];
            let mut seen = std::collections::HashSet::new();
            while let Some((name, path)) = stack.pop() {
                let Some(stage) = all.iter().find(|s| s.name == name) else {
                    continue;
                };
                for used in uses(stage) {
                    let mut p = path.clone();
                    p.push(name.clone());
                    if used == start.name {
                        p.push(used.clone());
                        self.error(
                            ErrorKind::InvalidValue,
                            0..0,
                            "stage",
                            format!("stages use each other in a cycle: {}", p.join(" -> ")),
                            "cycle",
                        )
                        .help = Some("a stage can only use stages that do not use it".to_owned());
                        return;
                    }
                    if seen.insert(used.clone()) {
                        stack.push((used, p));
                    }
                }
            }
        }
    }
}

pub(super) fn check_from(from: &str, spec_dir: &Path, pull: PullPolicy) -> Result<Base, Problem> {
    if from == "scratch" {
        return Ok(Base::Scratch);
    }
    // `builtin:` is a scheme, never a registry reference (which would read it as
    // `docker.io/library/builtin:TAG`): an image of that name is written out in full.
    if let Some(name) = from.strip_prefix(BuiltinBase::SCHEME) {
        return BuiltinBase::ALL
            .into_iter()
            .find(|b| b.name() == from)
            .map(Base::Builtin)
            .ok_or_else(|| {
                let known: Vec<&str> = BuiltinBase::ALL.iter().map(|b| b.name()).collect();
                Problem::invalid(format!("there is no built-in base {name:?}")).help(format!(
                    "the built-in bases are {}; for an image called `builtin` in a registry, \
                     write its full reference, e.g. \"docker.io/library/builtin:{name}\"",
                    known.join(", ")
                ))
            });
    }
    if let Some(name) = from.strip_prefix("stage:") {
        check_layer_name(name)
            .map_err(|p| Problem::invalid(format!("bad stage name {name:?}: {}", p.reason)))?;
        return Ok(Base::Stage(name.to_owned()));
    }
    for prefix in ["oci:", "oci-archive:", "docker-archive:"] {
        let Some(rest) = from.strip_prefix(prefix) else {
            continue;
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((path, tag)) if !path.is_empty() && !tag.contains('/') => (path, Some(tag)),
            _ => (rest, None),
        };
        if path.is_empty() {
            return Err(Problem::invalid(format!("no path after `{prefix}`")).help(format!(
                r#"name the layout or archive, e.g. `from = "{prefix}base"` or `from = "{prefix}base:3.20"`"#
            )));
        }
        if let Some(tag) = tag {
            check_tag(tag)
                .map_err(|p| Problem::invalid(format!("bad tag {tag:?}: {}", p.reason)))?;
        }
        let path = normalize(&spec_dir.join(path)).unwrap_or_default();
        let tag = tag.map(str::to_owned);
        return Ok(match prefix {
            "oci:" => Base::OciLayout { path, tag },
            "oci-archive:" => Base::OciArchive { path, tag },
            _ => Base::DockerArchive { path, tag },
        });
    }
    match Reference::parse(from) {
        Ok(reference) => Ok(Base::Registry {
            reference: reference.to_string(),
            pull,
        }),
        Err(e) => Err(Problem::invalid(format!("not an image reference: {e}")).help(
            r#"use "scratch", "builtin:static", a registry reference like "alpine:3.20" or "ghcr.io/acme/base@sha256:...", or oci:PATH / oci-archive:FILE / docker-archive:FILE"#,
        )),
    }
}
