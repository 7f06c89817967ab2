use crate::Error;
use std::str::FromStr;

/// A deployment's configuration: the key/value pairs of its `config` table.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A configuration holding these pairs.
    pub fn new<K: Into<String>, V: Into<String>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Config {
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::new(format!("config key `{key}` is required")))
    }

    /// The value of `key` parsed as `T`, `None` when unset, or an error naming the key, the
    /// value and why it does not parse.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|v| {
                v.parse::<T>().map_err(|e| {
                    Error::new(format!("config key `{key}`: invalid value `{v}`: {e}"))
                })
            })
            .transpose()
    }

    /// The value of `key`, which must be one of `choices`; `None` when unset.
    pub fn choice(&self, key: &str, choices: &[&str]) -> Result<Option<&str>, Error> {
        match self.get(key) {
            Some(v) if !choices.contains(&v) => Err(Error::new(format!(
                "config key `{key}`: invalid value `{v}`, expected one of: {}",
                choices.join(", ")
            ))),
            other => Ok(other),
        }
    }

    /// Refuses keys other than `known`, so that a typo is an error rather than a silently
    /// ignored setting.
    pub fn allow_only(&self, known: &[&str]) -> Result<(), Error> {
        match self
            .entries
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(Error::new(format!(
                "unknown config key `{k}`; known keys: {}",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// Every pair, in the order given.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_errors_name_the_key() {
        let c = Config::new([("unit", "ms"), ("n", "x")]);
        assert_eq!(c.get("unit"), Some("ms"));
        assert_eq!(c.get("nope"), None);
        assert_eq!(
            c.require("field").unwrap_err().message(),
            "config key `field` is required"
        );
        assert_eq!(
            c.parse::<u32>("n").unwrap_err().message(),
            "config key `n`: invalid value `x`: invalid digit found in string"
        );
        assert_eq!(c.parse::<u32>("absent").unwrap(), None);
        assert_eq!(c.choice("unit", &["ms", "s"]).unwrap(), Some("ms"));
        assert_eq!(
            c.choice("unit", &["s", "us"]).unwrap_err().message(),
            "config key `unit`: invalid value `ms`, expected one of: s, us"
        );
        assert_eq!(
            c.allow_only(&["unit"]).unwrap_err().message(),
            "unknown config key `n`; known keys: unit"
        );
        assert!(c.allow_only(&["unit", "n"]).is_ok());
    }

    #[test]
    fn the_last_value_of_a_repeated_key_wins() {
        let c = Config::new([("k", "1"), ("k", "2")]);
        assert_eq!(c.get("k"), Some("2"));
    }
}
