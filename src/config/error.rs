use std::fmt;

/// A config problem, located. Displayed as `file:line:col: message`, the
/// form editors and CI annotators understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl ConfigError {
    pub fn io(file: &str, err: &std::io::Error) -> Self {
        ConfigError {
            file: file.to_owned(),
            line: 1,
            col: 1,
            message: format!("cannot read file: {err}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
    }
}

impl std::error::Error for ConfigError {}
