//! Field-level problems with a request, all reported at once against the field that has them
//! (`items[3].url`, `decisions[0].territorial_scope[1]`).

/// Field-level problems with a request, reported to callers as `google.rpc.BadRequest`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldViolations(Vec<(String, String)>);

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    /// One violation, for the common case of a single bad field.
    pub fn single(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut v = Self::new();
        v.add(field, description);
        v
    }

    /// Records that `field` (a path such as `items[3].url`) is wrong, and why.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(f, d)| (f.as_str(), d.as_str()))
    }

    /// The fields named, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|(f, _)| f.as_str()).collect()
    }

    /// Appends another set of violations.
    pub fn extend(&mut self, other: FieldViolations) {
        self.0.extend(other.0);
    }

    /// `Ok(())` when nothing was recorded.
    pub fn into_result(self) -> Result<(), FieldViolations> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl std::fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(field, d)| format!("{field}: {d}")).collect();
        write!(f, "{}", parts.join("; "))
    }
}

impl std::error::Error for FieldViolations {}
