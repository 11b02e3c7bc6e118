//! A minimal `--key value` argument parser (no clap: the load generator should build in
//! seconds). Keys may repeat (`--peer`); a key followed by another `--key` or by nothing is
//! a flag.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};

/// Parsed arguments: the subcommand words, then keyed values.
#[derive(Debug, Default)]
pub struct Args {
    /// Positional words (subcommand and scenario).
    pub words: Vec<String>,
    values: BTreeMap<String, Vec<String>>,
}

impl Args {
    /// Parses `argv` (without the program name).
    pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args> {
        let mut out = Args::default();
        let mut it = argv.into_iter().peekable();
        while let Some(a) = it.next() {
            if let Some(key) = a.strip_prefix("--") {
                if key.is_empty() {
                    bail!("bare --");
                }
                let value = match it.peek() {
                    Some(v) if !v.starts_with("--") => it.next().unwrap_or_default(),
                    _ => String::new(),
                };
                out.values.entry(key.to_string()).or_default().push(value);
            } else {
                out.words.push(a);
            }
        }
        Ok(out)
    }

    /// The last value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// The last value of `key`, or an error naming it.
    pub fn req(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| anyhow!("missing --{key}"))
    }

    /// Every value of a repeated key.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.values
            .get(key)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// A number, or `default` when absent.
    pub fn num<T: FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .replace('_', "")
                .parse()
                .map_err(|_| anyhow!("--{key}: not a number: {v}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_flags_and_repeats() {
        let a = Args::parse(
            [
                "client", "rate", "--peer", "a", "--peer", "b", "--quick", "--n", "1_000",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(a.words, ["client", "rate"]);
        assert_eq!(a.all("peer"), ["a", "b"]);
        assert_eq!(a.get("quick"), Some(""));
        assert_eq!(a.num::<u32>("n", 0).unwrap(), 1000);
        assert_eq!(a.num::<u32>("m", 7).unwrap(), 7);
        assert!(a.req("x").is_err());
    }
}
