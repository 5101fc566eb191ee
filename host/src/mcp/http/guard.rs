//! The checks a Streamable HTTP request passes before the MCP layer sees
//! it, each a pure function of the request's head or body: the `Host`
//! header against the bound address (DNS-rebinding defence), the `Origin`
//! header against the allowed origins, the bearer token (compared in
//! constant time), and the body's JSON nesting depth.

use sha2::{Digest, Sha256};
use std::net::SocketAddr;

/// The fewest bytes a bearer token's secret may have.
pub const MIN_TOKEN_BYTES: usize = 16;

/// A bearer token a client may present, and the name it is known by (the
/// caller identity of the calls made with it). Only the secret's sha256
/// is kept.
#[derive(Clone)]
pub struct BearerToken {
    name: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadToken {
    /// The secret is shorter than [`MIN_TOKEN_BYTES`].
    #[error("the bearer token has {bytes} bytes; at least {MIN_TOKEN_BYTES} are needed")]
    TooShort {
        /// How many bytes it had.
        bytes: usize,
    },
    /// The secret holds whitespace or control characters, or is not
    /// ASCII (it could not travel in an `Authorization` header).
    #[error("the bearer token holds characters other than printable ASCII")]
    NotPrintable,
    /// The name is not 1-64 characters of `[A-Za-z0-9_.@-]`.
    #[error("the token name `{0}` is not 1-64 characters of letters, digits, `_`, `.`, `@` or `-`")]
    BadName(String),
}

impl BearerToken {
    /// A token named `name` (the caller identity of the calls made with
    /// it) whose secret is `secret`.
    ///
    /// # Errors
    ///
    /// [`BadToken`] for a short or unprintable secret or a bad name.
    pub fn new(name: &str, secret: &str) -> Result<BearerToken, BadToken> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b));
        if !name_ok {
            return Err(BadToken::BadName(crate::text::sanitize_text(name, 64)));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BadToken::NotPrintable);
        }
        if secret.len() < MIN_TOKEN_BYTES {
            return Err(BadToken::TooShort {
                bytes: secret.len(),
            });
        }
        Ok(BearerToken {
            name: name.to_string(),
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// The token's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tokens in a token file: one per line, `NAME:SECRET` or just
    /// `SECRET` (named `default_name`); blank lines and lines starting
    /// with `#` are skipped.
    ///
    /// # Errors
    ///
    /// The line number and why its token was refused.
    pub fn parse_file(text: &str, default_name: &str) -> Result<Vec<BearerToken>, String> {
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, secret) = line.split_once(':').unwrap_or((default_name, line));
            let token = BearerToken::new(name.trim(), secret.trim())
                .map_err(|e| format!("line {}: {e}", i + 1))?;
            tokens.push(token);
        }
        Ok(tokens)
    }
}

/// The name of the token `authorization` (an `Authorization` header's
/// value) presents, if it is one of `tokens`. Every token is compared, in
/// constant time, whatever matched: the time taken says nothing about
/// which bytes were right.
pub(super) fn authenticate<'t>(
    tokens: &'t [BearerToken],
    authorization: Option<&[u8]>,
) -> Option<&'t str> {
    let value = authorization?;
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let presented: [u8; 32] = Sha256::digest(value.get(7..)?.trim_ascii()).into();
    let mut found = None;
    for token in tokens {
        if crate::hash::constant_time_eq(&token.digest, &presented) {
            found = Some(token.name.as_str());
        }
    }
    found
}

/// The `Host` values (`host:port`, lowercase) a client may send to the
/// server bound at `bound`: for a loopback address the loopback names
/// (`localhost`, `127.0.0.1`, `[::1]`); otherwise the address itself; plus
/// each of `extra` (a name, with the bound port unless it names one).
pub(super) fn allowed_hosts(bound: SocketAddr, extra: &[String]) -> Vec<String> {
    let port = bound.port();
    let mut names: Vec<String> = if bound.ip().is_loopback() {
        vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]
    } else {
        match bound {
            SocketAddr::V4(a) => vec![a.ip().to_string()],
            SocketAddr::V6(a) => vec![format!("[{}]", a.ip())],
        }
    };
    names.extend(extra.iter().map(|h| h.to_ascii_lowercase()));
    names
        .into_iter()
        .map(|h| {
            if has_port(&h) {
                h
            } else {
                format!("{h}:{port}")
            }
        })
        .collect()
}

fn has_port(authority: &str) -> bool {
    match authority.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

/// Whether the `Host` header `host` names this server. A missing header
/// is refused (HTTP/1.1 requires it); without a port the scheme's default
/// (80) is meant.
pub(super) fn host_allowed(allowed: &[String], host: Option<&[u8]>) -> bool {
    let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let host = if has_port(&host) {
        host
    } else {
        format!("{host}:80")
    };
    allowed.contains(&host)
}

/// Whether a request with this `Origin` header may go on: none (not a
/// browser, or a same-origin request that does not say), or exactly one
/// of `allowed` (scheme, host and port; case-insensitive).
pub(super) fn origin_allowed(allowed: &[String], origin: Option<&[u8]>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let origin = origin.trim().trim_end_matches('/');
    allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// Whether the JSON text `body` nests arrays and objects deeper than
/// `max`. A scan of the bytes (strings skipped), before anything parses
/// it; malformed JSON is left to the parser.
pub(super) fn too_deep(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_secret_and_name_the_caller() {
        let tokens = vec![
            BearerToken::new("alice", "0123456789abcdef-alice").expect("token"),
            BearerToken::new("bob", "0123456789abcdef-bob").expect("token"),
        ];
        let auth = |v: &str| authenticate(&tokens, Some(v.as_bytes()));
        assert_eq!(auth("Bearer 0123456789abcdef-bob"), Some("bob"));
        assert_eq!(auth("bearer 0123456789abcdef-alice"), Some("alice"));
        assert_eq!(auth("Bearer 0123456789abcdef-carol"), None);
        assert_eq!(auth("Basic 0123456789abcdef-bob"), None);
        assert_eq!(auth("Bearer"), None);
        assert_eq!(authenticate(&tokens, None), None);
        assert_eq!(
            BearerToken::new("x", "short").map(drop),
            Err(BadToken::TooShort { bytes: 5 })
        );
        assert!(BearerToken::new("a b", "0123456789abcdef").is_err());
        assert!(BearerToken::new("a", "0123456789abcdef\u{7}").is_err());
        let parsed = BearerToken::parse_file(
            "# tokens\n\nci:0123456789abcdef\n  0123456789abcdeg  \n",
            "token",
        )
        .expect("parses");
        let names: Vec<&str> = parsed.iter().map(BearerToken::name).collect();
        assert_eq!(names, ["ci", "token"]);
        let bad = BearerToken::parse_file("ok:0123456789abcdef\nx:short\n", "t");
        assert!(bad.expect_err("line 2").starts_with("line 2:"));
    }

    #[test]
    fn host_header_must_name_the_bound_address() {
        let loopback = allowed_hosts("127.0.0.1:8080".parse().expect("addr"), &[]);
        let ok = |h: &str| host_allowed(&loopback, Some(h.as_bytes()));
        assert!(ok("127.0.0.1:8080"));
        assert!(ok("LOCALHOST:8080"));
        assert!(ok("[::1]:8080"));
        assert!(!ok("127.0.0.1:8081"));
        assert!(!ok("evil.example:8080"));
        assert!(!ok("localhost"));
        assert!(!host_allowed(&loopback, None));
        let public = allowed_hosts(
            "10.0.0.5:80".parse().expect("addr"),
            &["mcp.example".into(), "alt.example:8443".into()],
        );
        let ok = |h: &str| host_allowed(&public, Some(h.as_bytes()));
        assert!(ok("10.0.0.5"));
        assert!(ok("mcp.example"));
        assert!(ok("alt.example:8443"));
        assert!(!ok("localhost:80"));
        assert!(!ok("alt.example"));
    }

    #[test]
    fn only_listed_origins_pass() {
        let allowed = vec!["https://app.example".to_string()];
        assert!(origin_allowed(&allowed, None));
        assert!(origin_allowed(&allowed, Some(b"https://APP.example")));
        assert!(!origin_allowed(&allowed, Some(b"https://app.example:8443")));
        assert!(!origin_allowed(&allowed, Some(b"http://evil.example")));
        assert!(!origin_allowed(&[], Some(b"null")));
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert!(!too_deep(br#"{"a":[{"b":1}]}"#, 3));
        assert!(too_deep(br#"{"a":[{"b":[1]}]}"#, 3));
        assert!(!too_deep(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(too_deep(deep.as_bytes(), 64));
    }
}
