//! Validation findings: every problem names the key path it is about, so an operator can go
//! straight to the line. Pure validation and the environment checks both report through here.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects every error and warning of one validation run, instead of stopping at the first.
#[derive(Debug, Default)]
pub struct Issues {
    pub errors: Vec<ConfigIssue>,
    pub warnings: Vec<String>,
}

impl Issues {
    pub fn new() -> Issues {
        Issues::default()
    }

    /// Records an error; the same error twice (a shared setting checked per stream) is said once.
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let issue = ConfigIssue { path: path.into(), message: message.into() };
        if !self.errors.contains(&issue) {
            self.errors.push(issue);
        }
    }

    /// A setting that works but that an operator should hear about at every start.
    pub fn warn(&mut self, path: impl AsRef<str>, message: impl AsRef<str>) {
        self.warnings.push(format!("{}: {}", path.as_ref(), message.as_ref()));
    }

    /// The value, or an "is required" error at `path`.
    pub fn required<T: Clone>(&mut self, v: &Option<T>, path: impl Into<String>) -> Option<T> {
        if v.is_none() {
            self.add(path, "is required");
        }
        v.clone()
    }

    /// An error unless `min <= d <= max`: an absurd duration (a `lag` of 10,000 years) is a
    /// mistake to report, not a number to overflow on later.
    pub fn within(
        &mut self,
        path: impl Into<String>,
        d: std::time::Duration,
        min: std::time::Duration,
        max: std::time::Duration,
    ) {
        if d < min || d > max {
            let f = |x: std::time::Duration| humantime::format_duration(x).to_string();
            self.add(path, format!("must be between {} and {}", f(min), f(max)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}
