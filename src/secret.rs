//! Secrets: values that must never reach a log line, an error message or `--help`.
//!
//! Secrets are read from the environment (`NAME`) or from a file (`NAME_FILE`, the Docker/Kubernetes
//! secrets convention), never from command-line flags: flags show up in `ps` and shell history.

use std::fmt;

/// A secret string. `Debug` and `Display` print `<redacted>`; the value is only reachable through
/// [`Secret::expose`], so every use of it is greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("both {name} and {name}_FILE are set; set only one")]
    Ambiguous { name: String },
    #[error("could not read {name}_FILE ({path}): {source}")]
    File { name: String, path: String, source: std::io::Error },
    #[error("{name} is set but empty")]
    Empty { name: String },
}

/// Reads secret `name` from `$name` or from the file named by `$name_FILE`. Surrounding
/// whitespace (a trailing newline in a secrets file) is trimmed. `Ok(None)` when neither is set.
pub fn load_secret(name: &str) -> Result<Option<Secret>, SecretError> {
    load_secret_from(name, |key| std::env::var(key).ok())
}

/// [`load_secret`] over any variable source, so it can be tested without touching the process
/// environment.
pub fn load_secret_from(name: &str, var: impl Fn(&str) -> Option<String>) -> Result<Option<Secret>, SecretError> {
    let file_key = format!("{name}_FILE");
    let value = match (var(name), var(&file_key)) {
        (Some(_), Some(_)) => return Err(SecretError::Ambiguous { name: name.to_owned() }),
        (Some(value), None) => value,
        (None, Some(path)) => {
            std::fs::read_to_string(&path).map_err(|source| SecretError::File { name: name.to_owned(), path: path.clone(), source })?
        }
        (None, None) => return Ok(None),
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(SecretError::Empty { name: name.to_owned() });
    }
    Ok(Some(Secret::new(trimmed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn reads_from_env_or_file() {
        let from_env = load_secret_from("S", vars(&[("S", "abc")])).unwrap().unwrap();
        assert_eq!(from_env.expose(), "abc");

        let path = std::env::temp_dir().join(format!("secret-test-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let from_file = load_secret_from("S", vars(&[("S_FILE", path.to_str().unwrap())])).unwrap().unwrap();
        assert_eq!(from_file.expose(), "from-file");
        std::fs::remove_file(path).unwrap();

        assert!(load_secret_from("S", vars(&[])).unwrap().is_none());
    }

    #[test]
    fn refuses_ambiguity_and_empty_values() {
        assert!(matches!(load_secret_from("S", vars(&[("S", "a"), ("S_FILE", "/x")])), Err(SecretError::Ambiguous { .. })));
        assert!(matches!(load_secret_from("S", vars(&[("S", "  ")])), Err(SecretError::Empty { .. })));
    }

    #[test]
    fn errors_never_contain_the_value() {
        let error = load_secret_from("S", vars(&[("S_FILE", "/nonexistent/secret")])).unwrap_err();
        assert!(error.to_string().contains("S_FILE"));
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "<redacted> Secret(<redacted>)");
    }
}
