//! Secrets the plugin uses but never holds (design invariant 6).
//!
//! The manifest declares each secret once, with where its value comes from,
//! the destinations it is bound to and how it is attached:
//!
//! ```toml
//! [secrets.github]
//! source = "env:GITHUB_TOKEN"                  # or "file:github.token"
//! destinations = ["https://api.github.com/repos", { url = "https://uploads.github.com", methods = ["POST"] }]
//! inject = { header = "Authorization", format = "Bearer {}" }
//!
//! [plugins.issues]
//! secrets = ["github"]                         # the secrets it may name
//! ```
//!
//! Every source is read when the host is built: a missing, empty or short
//! (under 8 bytes) value fails the load, naming the secret. The values
//! build the host's [`Scrubber`], which removes them, raw and encoded, from
//! everything a plugin or an agent sees: tool output, captured stdio, plugin
//! logs, audit records and error messages.
//!
//! The value is attached to a request only inside the egress host function,
//! and only when a [`Destination`] matches; [`InjectRule::inject`] is the
//! primitive it calls (see `crate::egress`).

mod destination;
mod error_text;
mod inject;
mod scrub;
mod source;
mod view;

pub use destination::Destination;
pub use inject::{InjectRule, Injection};
pub use scrub::{Scrubber, StreamScrubber};
pub use source::{EnvSource, FileSource, SecretFuture, SecretRequest, SecretSource};

use crate::error::Error;
use crate::manifest::{DestinationEntry, InjectEntry, Manifest};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The shortest value accepted: shorter ones cannot be scrubbed reliably
/// (they turn up in unrelated text, and their encoded forms are shorter
/// still).
pub const MIN_SECRET_BYTES: usize = 8;

/// A secret value. `Debug` and `Display` print `[redacted]`; it has no
/// `Serialize`; the value is reachable only through
/// [`expose_for_injection`](Secret::expose_for_injection). Its bytes are
/// overwritten with zeros when it is dropped (best effort: copies made
/// before it was wrapped, or by whoever exposes it, are not).
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The raw value, for attaching it to a request. Every other use is a
    /// leak waiting to happen.
    pub fn expose_for_injection(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zero_string(&mut self.0);
    }
}

/// Overwrites `bytes`, spare capacity included, with zeros.
pub(crate) fn zero(bytes: &mut Vec<u8>) {
    bytes.resize(bytes.capacity(), 0);
    bytes.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&bytes);
}

/// Overwrites a string's bytes with zeros and leaves it empty.
pub(crate) fn zero_string(text: &mut String) {
    let mut bytes = std::mem::take(text).into_bytes();
    zero(&mut bytes);
}

/// A secret configured in code, validated when the host is built.
///
/// ```
/// use portcullis::SecretConfig;
/// use portcullis::manifest::{DestinationEntry, InjectEntry};
/// let github = SecretConfig::env("github", "GITHUB_TOKEN")
///     .destination(DestinationEntry::url("https://api.github.com/repos"))
///     .inject(InjectEntry::header("Authorization", "Bearer {}"));
/// # let _ = github;
/// ```
#[derive(Clone)]
pub struct SecretConfig {
    name: String,
    source: Arc<dyn SecretSource>,
    destinations: Vec<DestinationEntry>,
    inject: Option<InjectEntry>,
}

impl fmt::Debug for SecretConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretConfig")
            .field("name", &self.name)
            .field("source", &self.source.describe())
            .field("destinations", &self.destinations)
            .field("inject", &self.inject)
            .finish()
    }
}

impl SecretConfig {
    /// A secret whose value comes from `source` (a vault, say), with no
    /// destinations yet.
    pub fn new(name: impl Into<String>, source: impl SecretSource) -> SecretConfig {
        SecretConfig {
            name: name.into(),
            source: Arc::new(source),
            destinations: Vec::new(),
            inject: None,
        }
    }

    /// A secret read from the environment variable `var`.
    pub fn env(name: impl Into<String>, var: impl Into<String>) -> SecretConfig {
        SecretConfig::new(name, EnvSource::new(var))
    }

    /// A secret read from the file at `path` (a relative path is relative
    /// to the current directory).
    pub fn file(name: impl Into<String>, path: impl Into<PathBuf>) -> SecretConfig {
        SecretConfig::new(name, FileSource::new(path))
    }

    /// Binds the secret to one more destination.
    pub fn destination(mut self, entry: DestinationEntry) -> SecretConfig {
        self.destinations.push(entry);
        self
    }

    /// How the secret is attached.
    pub fn inject(mut self, entry: InjectEntry) -> SecretConfig {
        self.inject = Some(entry);
        self
    }

    /// Validates the configuration (not the value: see [`load`]).
    pub(crate) fn validate(self, origin: &Path) -> Result<SecretPolicy, Error> {
        let name = self.name;
        let err = |message: String| Error::manifest(origin, format!("secret `{name}`: {message}"));
        if !crate::policy::valid_name(&name) {
            return Err(err("the name is invalid".into()).with_hint(
                "use 1-64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter",
            ));
        }
        if self.destinations.is_empty() {
            return Err(err("`destinations` is empty".into()).with_hint(
                "bind the secret to the URLs it is for, e.g. `destinations = [\"https://api.example.com\"]`",
            ));
        }
        let mut destinations = Vec::new();
        for entry in &self.destinations {
            let (url, methods, allow_private) = entry.parts();
            let destination = Destination::parse(url, methods, allow_private)
                .map_err(|m| err(format!("`destinations`: {m}")))?;
            destinations.push(destination);
        }
        let inject = self
            .inject
            .ok_or_else(|| {
                err("`inject` is missing".into()).with_hint(
                    "say how the secret is attached, e.g. `inject = { header = \"Authorization\", format = \"Bearer {}\" }`",
                )
            })?
            .rule()
            .map_err(|m| err(format!("`inject`: {m}")))?;
        inject
            .validate()
            .map_err(|m| err(format!("`inject`: {m}")))?;
        Ok(SecretPolicy {
            name,
            source: self.source,
            destinations,
            inject,
        })
    }
}

/// A validated secret: its name, source, destinations and injection rule.
/// It holds no value.
#[derive(Clone)]
#[non_exhaustive]
pub struct SecretPolicy {
    /// The secret's name.
    pub name: String,
    /// Where its value comes from.
    pub source: Arc<dyn SecretSource>,
    /// Where it may be sent.
    pub destinations: Vec<Destination>,
    /// How it is attached.
    pub inject: InjectRule,
}

impl fmt::Debug for SecretPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretPolicy")
            .field("name", &self.name)
            .field("source", &self.source.describe())
            .field("destinations", &self.destinations)
            .field("inject", &self.inject)
            .finish()
    }
}

impl SecretPolicy {
    /// Whether a `method` request to `target` may carry this secret: one
    /// of its destinations matches.
    pub(crate) fn allows(&self, method: &str, target: &crate::policy::allowlist::Target) -> bool {
        self.destinations.iter().any(|d| d.matches(method, target))
    }

    /// The destination `target` lies under as the URL parser reads it,
    /// though spelled so that a server may read it elsewhere (`;`, `%25`,
    /// an encoded `.`, `/` or `\\`).
    pub(crate) fn refusing_spelling(
        &self,
        target: &crate::policy::allowlist::Target,
    ) -> Option<&Destination> {
        self.destinations
            .iter()
            .find(|d| d.refuses_spelling(target))
    }
}

/// Validates the `[secrets.NAME]` tables of a manifest. `file:` paths are
/// relative to the manifest's folder.
///
/// # Errors
///
/// [`Error::Manifest`] naming the secret and field.
pub fn from_manifest(manifest: &Manifest, path: &Path) -> Result<Vec<SecretPolicy>, Error> {
    let base = crate::fs::folder_of(path);
    manifest
        .secrets
        .iter()
        .map(|(name, entry)| {
            let source: Arc<dyn SecretSource> = match entry.source.split_once(':') {
                Some(("env", var)) if !var.is_empty() => Arc::new(EnvSource::new(var)),
                Some(("file", file)) if !file.is_empty() => {
                    Arc::new(FileSource::new(crate::policy::resolve(base, Path::new(file))))
                }
                _ => {
                    return Err(Error::manifest(
                        path,
                        format!("secret `{name}`: unknown `source` `{}`", entry.source),
                    )
                    .with_hint("use `env:VARIABLE` or `file:PATH` (relative to the manifest's folder); other sources are configured in code with `SecretConfig::new`"));
                }
            };
            SecretConfig {
                name: name.clone(),
                source,
                destinations: entry.destinations.clone(),
                inject: Some(entry.inject.clone()),
            }
            .validate(path)
        })
        .collect()
}

/// Asks every source for its value once, checks it, and builds the
/// scrubber from all values.
///
/// # Errors
///
/// [`Error::Manifest`] naming the secret: the source failed, or the value
/// is empty, shorter than [`MIN_SECRET_BYTES`], or cannot be attached by
/// its rule (a line break in a header value).
pub(crate) async fn load(secrets: &[SecretPolicy], origin: &Path) -> Result<Scrubber, Error> {
    let mut values = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let name = &secret.name;
        let from = secret.source.describe();
        let err = |message: String| Error::manifest(origin, format!("secret `{name}`: {message}"));
        let value = secret
            .source
            .fetch(&SecretRequest::at_load(name.clone()))
            .await
            .map_err(|reason| {
                let error = err(format!("its source `{from}` failed: {reason}"));
                if from.starts_with("env:") {
                    error.with_hint("set the variable before starting the host")
                } else if from.starts_with("file:") {
                    error.with_hint("create the file before starting the host")
                } else {
                    error
                }
            })?;
        if value.is_empty() {
            return Err(err(format!("the value from `{from}` is empty"))
                .with_hint("an empty secret is always a mistake; set the value"));
        }
        if value.len() < MIN_SECRET_BYTES {
            return Err(err(format!(
                "the value from `{from}` is {} bytes; at least {MIN_SECRET_BYTES} are needed to scrub it reliably",
                value.len()
            )));
        }
        if value.len() < 2 * MIN_SECRET_BYTES {
            // Scrubbed, but short values turn up by chance in unrelated
            // text and are easier to guess.
            tracing::warn!(
                "secret `{name}`: the value from `{from}` is only {} bytes; real credentials are usually 16 or more",
                value.len()
            );
        }
        secret
            .inject
            .inject(&value)
            .map_err(|m| err(format!("`inject`: {m}")))?;
        values.push((name.as_str(), value));
    }
    Ok(Scrubber::new(values.iter().map(|(n, v)| (*n, v))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_and_display_are_redacted() {
        let secret = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
        assert_eq!(secret.expose_for_injection(), "hunter2-hunter2");
    }

    #[test]
    fn zero_clears_every_byte() {
        let mut bytes = Vec::with_capacity(32);
        bytes.extend_from_slice(b"sensitive");
        zero(&mut bytes);
        assert!(bytes.iter().all(|&b| b == 0));
    }

    fn config(value: &str) -> SecretConfig {
        struct Fixed(String);
        impl SecretSource for Fixed {
            fn get(&self, _: &SecretRequest) -> Result<Secret, String> {
                Ok(Secret::new(self.0.clone()))
            }
        }
        SecretConfig::new("api", Fixed(value.into()))
            .destination(DestinationEntry::url("https://api.example.com"))
            .inject(InjectEntry::header("X-Api-Key", "{}"))
    }

    async fn load_one(config: SecretConfig) -> Result<Scrubber, String> {
        let origin = Path::new("m.toml");
        let policy = config.validate(origin).map_err(|e| e.to_string())?;
        load(&[policy], origin).await.map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn empty_and_short_values_are_refused_naming_the_secret() {
        let err = load_one(config("")).await.expect_err("empty");
        assert!(
            err.contains("secret `api`") && err.contains("empty"),
            "{err}"
        );
        let err = load_one(config("1234567")).await.expect_err("short");
        assert!(
            err.contains("secret `api`") && err.contains("7 bytes"),
            "{err}"
        );
        let err = load_one(config("12345678\nX"))
            .await
            .expect_err("line break");
        assert!(err.contains("line break"), "{err}");
        let scrubber = load_one(config("12345678")).await.expect("long enough");
        assert_eq!(scrubber.scrub_str("a12345678b"), "a[redacted:api]b");
    }

    #[test]
    fn configuration_is_checked_before_any_value() {
        let origin = Path::new("m.toml");
        let no_destinations = SecretConfig::env("api", "X").inject(InjectEntry::query("k"));
        let err = no_destinations
            .validate(origin)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("`destinations` is empty"), "{err}");
        let plain_http = SecretConfig::env("api", "X")
            .destination(DestinationEntry::url("http://api.example.com"))
            .inject(InjectEntry::query("k"));
        let err = plain_http
            .validate(origin)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("allow_private"), "{err}");
        let no_inject = SecretConfig::env("api", "X")
            .destination(DestinationEntry::url("https://api.example.com"));
        let err = no_inject.validate(origin).expect_err("refused");
        assert!(err.to_string().contains("`inject` is missing"), "{err}");
        let policy = SecretConfig::env("api", "X")
            .destination(DestinationEntry::Table {
                url: "http://127.0.0.1:9000/hook".into(),
                methods: Some(vec!["POST".into()]),
                allow_private: true,
            })
            .inject(InjectEntry::basic("bot"))
            .validate(origin)
            .expect("valid");
        let target = crate::policy::allowlist::Target::from_url(
            &url::Url::parse("http://127.0.0.1:9000/hook/1").expect("url"),
        )
        .expect("target");
        assert!(policy.allows("POST", &target));
        assert!(!policy.allows("GET", &target));
        assert!(!format!("{policy:?}").contains("Arc"));
    }
}
