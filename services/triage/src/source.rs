//! A policy file being read: every problem in it is reported as `file:line: what`, so an operator
//! goes straight to the line to fix.

use serde::de::DeserializeOwned;

/// The text of a policy file and the name to report it by (its path, or `built-in <name>`).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

impl<'a> Source<'a> {
    pub fn new(name: &'a str, text: &'a str) -> Self {
        Source { name, text }
    }

    /// The 1-based line holding byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    /// A problem found at byte `offset`.
    pub fn error_at(&self, offset: usize, what: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("{}:{}: {what}", self.name, self.line_of(offset))
    }

    /// Parses the file as TOML into `T`; a syntax error, an unknown field or a wrong type names
    /// its line.
    pub fn parse<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        toml::from_str(self.text).map_err(|e| match e.span() {
            Some(span) => self.error_at(span.start, e.message()),
            None => anyhow::anyhow!("{}: {}", self.name, e.message()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
    }

    #[test]
    fn problems_name_the_file_and_line() {
        let source = Source::new("rules.toml", "# comment\n\nname = \"x\"\nnmae = \"y\"\n");
        let err = source.parse::<Sample>().unwrap_err().to_string();
        assert!(err.starts_with("rules.toml:4: "), "{err}");
        assert!(err.contains("nmae"), "{err}");
        assert_eq!(source.line_of(0), 1);
        assert_eq!(source.line_of(11), 3);
    }
}
