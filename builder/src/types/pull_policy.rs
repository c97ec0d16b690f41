//! [`PullPolicy`]: when a build contacts the registry for a base image (`pull` in the spec).

use std::str::FromStr;

/// When to contact the registry for a base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Use the store when it holds the reference (a digest, or a tag resolved before); pull
    /// otherwise.
    #[default]
    IfNotPresent,
    /// Always resolve the tag again (blobs already held are not downloaded again).
    Always,
    /// Never use the network; fail if the store does not hold the reference.
    Never,
}

impl FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "if-not-present" => Ok(Self::IfNotPresent),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => Err(format!(
                "invalid pull policy `{other}`: expected `if-not-present`, `always` or `never`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PullPolicy;

    #[test]
    fn pull_policy_parses() {
        assert_eq!("never".parse(), Ok(PullPolicy::Never));
        assert_eq!("always".parse(), Ok(PullPolicy::Always));
        assert_eq!("if-not-present".parse(), Ok(PullPolicy::IfNotPresent));
        assert!("sometimes".parse::<PullPolicy>().is_err());
    }
}
