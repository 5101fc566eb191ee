//! Where secret values come from: the [`SecretSource`] trait, what a
//! source is asked ([`SecretRequest`]), and the built-in `env:` and
//! `file:` sources.

use super::Secret;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

/// What a [`SecretSource`] is asked for: the secret's name and, for a
/// request made during a call, who and what it is for (so a vault can issue
/// short-lived or per-caller credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretRequest {
    /// The secret's name in the manifest.
    pub secret: String,
    /// The plugin making the request (`None` at load).
    pub plugin: Option<String>,
    /// The tool being called, as its plugin names it (`list`; the plugin
    /// is in [`plugin`](SecretRequest::plugin)); `None` at load.
    pub tool: Option<String>,
    /// The call's id, as in the audit log (`None` at load).
    pub call_id: Option<u64>,
    /// The caller from the call's `CallContext`, if set.
    pub caller: Option<String>,
}

impl SecretRequest {
    /// The request made once when the host is built, to check the source
    /// and learn the value to scrub.
    pub fn at_load(secret: impl Into<String>) -> SecretRequest {
        SecretRequest {
            secret: secret.into(),
            plugin: None,
            tool: None,
            call_id: None,
            caller: None,
        }
    }

    /// A request made during a call.
    pub fn for_call(
        secret: impl Into<String>,
        plugin: impl Into<String>,
        tool: impl Into<String>,
        call_id: u64,
        caller: Option<String>,
    ) -> SecretRequest {
        SecretRequest {
            secret: secret.into(),
            plugin: Some(plugin.into()),
            tool: Some(tool.into()),
            call_id: Some(call_id),
            caller,
        }
    }
}

/// The future a [`SecretSource`] returns.
pub type SecretFuture<'a> = Pin<Box<dyn Future<Output = Result<Secret, String>> + Send + 'a>>;

/// Where a secret's value comes from. Asked once when the host is built
/// (with [`SecretRequest::at_load`]) and again by the egress gate for each
/// request that attaches the secret, with the call's context:
/// rotation and per-caller credentials need nothing more.
///
/// `env:VAR` ([`EnvSource`]) and `file:PATH` ([`FileSource`]) are built in;
/// configure your own with [`SecretConfig::new`](crate::SecretConfig::new).
pub trait SecretSource: Send + Sync + 'static {
    /// The value, synchronously. The default says the source has none.
    ///
    /// # Errors
    ///
    /// Why there is no value, for the message (never the value itself).
    fn get(&self, request: &SecretRequest) -> Result<Secret, String> {
        let _ = request;
        Err("this source has no synchronous value".into())
    }

    /// The value, possibly waiting (a vault, a token exchange). The default
    /// calls [`get`](SecretSource::get).
    fn fetch<'a>(&'a self, request: &'a SecretRequest) -> SecretFuture<'a> {
        Box::pin(std::future::ready(self.get(request)))
    }

    /// What the source is, for messages: `env:GITHUB_TOKEN`. Never the
    /// value.
    fn describe(&self) -> String {
        "a source configured in code".into()
    }
}

/// `env:VAR`: the host process's environment variable `VAR`, read on every
/// request (so a restart-free rotation is a `setenv` away).
#[derive(Debug, Clone)]
pub struct EnvSource {
    var: String,
}

impl EnvSource {
    /// Reads the environment variable `var`.
    pub fn new(var: impl Into<String>) -> EnvSource {
        EnvSource { var: var.into() }
    }
}

impl SecretSource for EnvSource {
    fn get(&self, _: &SecretRequest) -> Result<Secret, String> {
        match std::env::var(&self.var) {
            Ok(value) => Ok(Secret::new(value)),
            Err(std::env::VarError::NotPresent) => {
                Err(format!("environment variable `{}` is not set", self.var))
            }
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "environment variable `{}` is not valid UTF-8",
                self.var
            )),
        }
    }

    fn describe(&self) -> String {
        format!("env:{}", self.var)
    }
}

/// `file:PATH`: the contents of a file, read on every request, without one
/// trailing line break (`\n` or `\r\n`).
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// Reads the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource { path: path.into() }
    }
}

impl SecretSource for FileSource {
    fn get(&self, _: &SecretRequest) -> Result<Secret, String> {
        let mut text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("failed to read `{}`: {e}", self.path.display()))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Ok(Secret::new(text))
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_source_drops_one_trailing_line_break() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "abcdefgh-1234\r\n").expect("write");
        let value = FileSource::new(&path)
            .get(&SecretRequest::at_load("t"))
            .expect("read");
        assert_eq!(value.expose_for_injection(), "abcdefgh-1234");
        let missing = FileSource::new(dir.path().join("nope"))
            .get(&SecretRequest::at_load("t"))
            .expect_err("missing");
        assert!(missing.contains("failed to read"), "{missing}");
    }

    #[test]
    fn env_source_names_a_missing_variable() {
        let err = EnvSource::new("PORTCULLIS_TEST_SURELY_UNSET")
            .get(&SecretRequest::at_load("t"))
            .expect_err("unset");
        assert!(
            err.contains("`PORTCULLIS_TEST_SURELY_UNSET` is not set"),
            "{err}"
        );
    }
}
