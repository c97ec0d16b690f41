//! `[config]`, the runtime configuration of the image (entrypoint, cmd, env, workdir, user,
//! labels, exposed ports, volumes, stop signal), and the string maps it shares with
//! `annotations`.

use std::collections::BTreeMap;

use toml::Spanned;

use super::paths::check_absolute;
use super::{Checker, Problem};
use crate::spec::error::ErrorKind;
use crate::spec::model::ImageConfig;
use crate::spec::raw::RawConfig;

impl Checker<'_> {
    pub(super) fn string_map(
        &mut self,
        map: BTreeMap<Spanned<String>, String>,
        table: &str,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, value) in map {
            if key.get_ref().is_empty() {
                self.error(
                    ErrorKind::InvalidValue,
                    key.span(),
                    table,
                    format!("invalid key \"\" in `{table}`: empty"),
                    "empty key",
                );
            }
            out.insert(key.into_inner(), value);
        }
        out
    }

    pub(super) fn config(&mut self, raw: RawConfig) -> ImageConfig {
        let mut env = BTreeMap::new();
        for (name, value) in raw.env.unwrap_or_default() {
            if let Err(reason) = check_env_name(name.get_ref()) {
                let message = format!(
                    "invalid environment variable name {:?} in `config.env`: {reason}",
                    name.get_ref()
                );
                let fixed: String = name
                    .get_ref()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let help = if check_env_name(&fixed).is_ok() {
                    format!("names are letters, digits and `_`, not starting with a digit: did you mean `{fixed}`?")
                } else {
                    "names are letters, digits and `_`, not starting with a digit (`RUST_LOG`)"
                        .to_owned()
                };
                self.error(
                    ErrorKind::InvalidValue,
                    name.span(),
                    "config.env",
                    message,
                    reason,
                )
                .help = Some(help);
            }
            env.insert(name.into_inner(), value);
        }
        if let Some(workdir) = &raw.workdir {
            self.check(workdir, "config.workdir", |s| check_absolute(s, "workdir"));
        }
        if let Some(user) = &raw.user {
            self.check(user, "config.user", check_user);
        }
        let labels = self.string_map(raw.labels.unwrap_or_default(), "config.labels");
        let mut exposed_ports = Vec::new();
        for (i, port) in raw.exposed_ports.iter().flatten().enumerate() {
            if let Some(port) = self.check(port, &format!("config.exposed-ports[{i}]"), check_port)
            {
                exposed_ports.push(port);
            }
        }
        exposed_ports.sort();
        exposed_ports.dedup();
        let mut volumes = Vec::new();
        for (i, volume) in raw.volumes.iter().flatten().enumerate() {
            if self
                .check(volume, &format!("config.volumes[{i}]"), |s| {
                    check_absolute(s, "volumes")
                })
                .is_some()
            {
                volumes.push(volume.get_ref().clone());
            }
        }
        volumes.sort();
        volumes.dedup();
        if let Some(signal) = &raw.stop_signal {
            self.check(signal, "config.stop-signal", check_signal);
        }
        ImageConfig {
            entrypoint: raw.entrypoint,
            cmd: raw.cmd,
            env,
            workdir: raw.workdir.map(Spanned::into_inner),
            user: raw.user.map(Spanned::into_inner),
            labels,
            exposed_ports,
            volumes,
            stop_signal: raw.stop_signal.map(Spanned::into_inner),
        }
    }
}

pub(super) fn check_env_name(name: &str) -> Result<(), &'static str> {
    match name.chars().next() {
        None => Err("empty"),
        Some(c) if c.is_ascii_digit() => Err("starts with a digit"),
        _ if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => Ok(()),
        _ => Err("only letters, digits and `_` are allowed"),
    }
}

pub(super) fn check_user(user: &str) -> Result<(), Problem> {
    let help = r#"write `user` or `user:group`, names or numeric ids, e.g. `user = "65532:65532"`"#;
    let (user_part, group) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    if !word(user_part) || group.is_some_and(|g| !word(g)) {
        return Err(Problem::invalid("not `user` or `user:group`").help(help));
    }
    Ok(())
}

pub(super) fn check_port(port: &str) -> Result<String, Problem> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        let help = match proto.to_ascii_lowercase().as_str() {
            p @ ("tcp" | "udp" | "sctp") => format!("protocols are lower-case: \"{number}/{p}\""),
            _ => format!("write \"{number}/tcp\", \"{number}/udp\" or \"{number}/sctp\""),
        };
        return Err(
            Problem::invalid(format!("unknown protocol `{proto}` (tcp, udp or sctp)")).help(help),
        );
    }
    match number.parse::<u32>() {
        Ok(n @ 1..=65535) if number.chars().all(|c| c.is_ascii_digit()) => {
            Ok(format!("{n}/{proto}"))
        }
        _ => Err(Problem::invalid("the port is not a number from 1 to 65535")
            .help(r#"write `PORT` or `PORT/PROTO`, e.g. "8080" or "53/udp""#)),
    }
}

pub(super) fn check_signal(signal: &str) -> Result<(), Problem> {
    if !signal.is_empty() && signal.chars().all(|c| c.is_ascii_digit()) {
        return match signal.parse::<u32>() {
            Ok(1..=64) => Ok(()),
            _ => Err(Problem::invalid("signal numbers are 1 to 64")),
        };
    }
    if let Some(name) = signal.strip_prefix("SIG") {
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '+' | '-'))
        {
            return Ok(());
        }
    }
    let upper = signal.to_ascii_uppercase();
    let suggestion = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Err(Problem::invalid("not a signal name (`SIGTERM`) or number")
        .help(format!("did you mean `stop-signal = {suggestion:?}`?")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_default_to_tcp() {
        assert_eq!(check_port("9000").ok(), Some("9000/tcp".to_owned()));
        assert_eq!(check_port("53/udp").ok(), Some("53/udp".to_owned()));
        assert!(check_port("0").is_err());
        assert!(check_port("65536").is_err());
        assert!(check_port("80/TCP").is_err());
        assert!(check_port("+80").is_err());
    }
}
