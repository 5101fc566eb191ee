//! How a secret is attached to a request: the injection primitive the
//! egress host function calls once a destination matched.

use super::Secret;
use super::scrub::{base64_padded, percent};
use crate::manifest::InjectEntry;

/// How a secret is attached, from the manifest's `inject`:
///
/// ```toml
/// inject = { header = "Authorization", format = "Bearer {}" }
/// inject = { header = "X-Api-Key" }              # format "{}"
/// inject = { basic = "api-user" }                # Authorization: Basic base64(user:secret)
/// inject = { query = "api_key" }                 # ?api_key=secret (percent-encoded)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InjectRule {
    /// A header whose value is `format` with `{}` replaced by the secret.
    Header {
        /// The header name, as configured.
        name: String,
        /// The value, with exactly one `{}`.
        format: String,
    },
    /// `Authorization: Basic base64(username:secret)`.
    Basic {
        /// The user name (may be empty).
        username: String,
    },
    /// A query parameter `name=secret`.
    Query {
        /// The parameter name.
        name: String,
    },
}

/// What to add to a request: the output of [`InjectRule::inject`]. The
/// value stays a [`Secret`] (its `Debug` is redacted).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Injection {
    /// Set this header (replacing any the plugin set of the same name).
    Header {
        /// Header name.
        name: String,
        /// Header value, containing the secret.
        value: Secret,
    },
    /// Add this query parameter.
    Query {
        /// Parameter name.
        name: String,
        /// The raw value (the secret).
        value: Secret,
    },
}

impl Injection {
    /// For [`Injection::Query`], `query` (without `?`, possibly empty) with
    /// `name=value` appended, both percent-encoded; `None` for a header.
    pub fn append_to_query(&self, query: &str) -> Option<Secret> {
        let Injection::Query { name, value } = self else {
            return None;
        };
        let name = percent(name.as_bytes(), true, false);
        let encoded = percent(value.expose_for_injection().as_bytes(), true, false);
        let mut out = String::with_capacity(query.len() + name.len() + encoded.len() + 2);
        out.push_str(query);
        if !query.is_empty() && !query.ends_with('&') {
            out.push('&');
        }
        out.push_str(&String::from_utf8_lossy(&name));
        out.push('=');
        out.push_str(&String::from_utf8_lossy(&encoded));
        Some(Secret::new(out))
    }
}

impl InjectRule {
    /// Checks the rule's own syntax (at load).
    ///
    /// # Errors
    ///
    /// A message: a header name that is not a token or is the host's;
    /// a format without exactly one `{}` or with line breaks; an empty or
    /// malformed query parameter name; a user name with `:`.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            InjectRule::Header { name, format } => {
                check_header_name(name)?;
                if format.matches("{}").count() != 1 {
                    return Err(format!(
                        "`format` must contain `{{}}` exactly once, got `{}`",
                        format.escape_debug()
                    ));
                }
                if format.contains(['\r', '\n', '\0']) {
                    return Err("`format` must not contain line breaks".into());
                }
                Ok(())
            }
            InjectRule::Basic { username } => {
                if username.contains([':', '\r', '\n', '\0']) {
                    return Err(
                        "the basic-auth user name must not contain `:` or line breaks".into(),
                    );
                }
                Ok(())
            }
            InjectRule::Query { name } => {
                if name.is_empty() || name.chars().any(|c| c.is_control() || "&=#?".contains(c)) {
                    return Err(format!(
                        "query parameter name `{}` is empty or has `&`, `=`, `#`, `?` or control characters",
                        name.escape_debug()
                    ));
                }
                Ok(())
            }
        }
    }

    /// What to add to a request to attach `secret` by this rule.
    ///
    /// # Errors
    ///
    /// The rule is invalid (see [`validate`](InjectRule::validate)), or a
    /// header value would contain a line break or NUL from the secret.
    pub fn inject(&self, secret: &Secret) -> Result<Injection, String> {
        self.validate()?;
        let value = secret.expose_for_injection();
        match self {
            InjectRule::Header { name, format } => {
                check_header_value(value)?;
                Ok(Injection::Header {
                    name: name.clone(),
                    value: Secret::new(format.replacen("{}", value, 1)),
                })
            }
            InjectRule::Basic { username } => {
                check_header_value(value)?;
                let mut credentials = format!("{username}:{value}");
                let encoded = format!("Basic {}", base64_padded(credentials.as_bytes()));
                super::zero_string(&mut credentials);
                Ok(Injection::Header {
                    name: "Authorization".into(),
                    value: Secret::new(encoded),
                })
            }
            InjectRule::Query { name } => Ok(Injection::Query {
                name: name.clone(),
                value: secret.clone(),
            }),
        }
    }

    /// The header this rule sets, lower case (`None` for a query
    /// parameter): a plugin may not set it itself.
    pub(crate) fn header(&self) -> Option<String> {
        match self {
            InjectRule::Header { name, .. } => Some(name.to_ascii_lowercase()),
            InjectRule::Basic { .. } => Some("authorization".into()),
            InjectRule::Query { .. } => None,
        }
    }

    /// A short description for `portcullis check` and errors, without the
    /// value: `header Authorization: Bearer {}`.
    pub fn describe(&self) -> String {
        match self {
            InjectRule::Header { name, format } => format!("header {name}: {format}"),
            InjectRule::Basic { username } => format!("basic auth as `{username}`"),
            InjectRule::Query { name } => format!("query parameter {name}"),
        }
    }
}

fn check_header_name(name: &str) -> Result<(), String> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!(
            "`{}` is not a valid header name",
            name.escape_debug()
        ));
    }
    if crate::policy::allowlist::host_header(name) {
        return Err(format!(
            "header `{name}` is set by the host (`Host`, hop-by-hop, framing, encoding or `proxy-`); a secret cannot be attached to it"
        ));
    }
    Ok(())
}

fn check_header_value(value: &str) -> Result<(), String> {
    if value.contains(['\r', '\n', '\0']) {
        return Err("the secret contains a line break or NUL, so it cannot go in a header".into());
    }
    Ok(())
}

/// The raw `inject` entry becomes a rule here, in the step that validates
/// secrets, not in the manifest's raw shapes.
impl InjectEntry {
    /// The rule this entry describes.
    ///
    /// # Errors
    ///
    /// None or several of `header`, `basic`, `query`; `format` without
    /// `header`.
    pub fn rule(&self) -> Result<InjectRule, String> {
        match (&self.header, &self.basic, &self.query, &self.format) {
            (Some(name), None, None, format) => Ok(InjectRule::Header {
                name: name.clone(),
                format: format.clone().unwrap_or_else(|| "{}".into()),
            }),
            (None, Some(username), None, None) => Ok(InjectRule::Basic {
                username: username.clone(),
            }),
            (None, None, Some(name), None) => Ok(InjectRule::Query { name: name.clone() }),
            (None, _, _, Some(_)) => Err("`format` goes with `header`".into()),
            _ => Err("set exactly one of `header`, `basic` and `query`".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, format: &str) -> InjectRule {
        InjectRule::Header {
            name: name.into(),
            format: format.into(),
        }
    }

    fn expose(injection: &Injection) -> (&str, &str) {
        match injection {
            Injection::Header { name, value } | Injection::Query { name, value } => {
                (name.as_str(), value.expose_for_injection())
            }
        }
    }

    #[test]
    fn header_rule_formats_the_value() {
        let secret = Secret::new("tok-12345678");
        let bearer = header("Authorization", "Bearer {}")
            .inject(&secret)
            .expect("ok");
        assert_eq!(expose(&bearer), ("Authorization", "Bearer tok-12345678"));
        let key = header("X-Api-Key", "{}").inject(&secret).expect("ok");
        assert_eq!(expose(&key), ("X-Api-Key", "tok-12345678"));
        assert!(!format!("{bearer:?}").contains("tok-"), "{bearer:?}");
    }

    #[test]
    fn basic_auth_is_base64_of_user_colon_secret() {
        let rule = InjectRule::Basic {
            username: "Aladdin".into(),
        };
        let injected = rule.inject(&Secret::new("open sesame")).expect("ok");
        assert_eq!(
            expose(&injected),
            ("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
    }

    #[test]
    fn query_rule_appends_a_percent_encoded_parameter() {
        let rule = InjectRule::Query {
            name: "api_key".into(),
        };
        let injected = rule.inject(&Secret::new("a&b=c d/12345")).expect("ok");
        assert_eq!(expose(&injected), ("api_key", "a&b=c d/12345"));
        let query = injected.append_to_query("q=1").expect("a query");
        assert_eq!(
            query.expose_for_injection(),
            "q=1&api_key=a%26b%3Dc%20d%2F12345"
        );
        let query = injected.append_to_query("").expect("a query");
        assert_eq!(
            query.expose_for_injection(),
            "api_key=a%26b%3Dc%20d%2F12345"
        );
    }

    #[test]
    fn the_hosts_own_headers_are_refused() {
        for name in [
            "Host",
            "connection",
            "Transfer-Encoding",
            "Proxy-Authorization",
            "proxy-anything",
            "TE",
            "Upgrade",
            "Accept-Encoding",
            "expect",
            "content-length",
        ] {
            let err = header(name, "{}").validate().expect_err("refused");
            assert!(err.contains("is set by the host"), "{name}: {err}");
        }
        for name in ["", "X Api", "X:Api", "X-Api\r\n"] {
            let err = header(name, "{}").validate().expect_err("refused");
            assert!(err.contains("not a valid header name"), "{name:?}: {err}");
        }
    }

    #[test]
    fn format_needs_exactly_one_placeholder() {
        assert!(header("X", "Bearer").validate().is_err());
        assert!(header("X", "{}{}").validate().is_err());
        assert!(header("X", "a\r\n{}").validate().is_err());
        assert!(InjectRule::Query { name: "a=b".into() }.validate().is_err());
        assert!(
            InjectRule::Basic {
                username: "a:b".into()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn a_secret_with_a_line_break_never_goes_in_a_header() {
        let err = header("X-Key", "{}")
            .inject(&Secret::new("12345678\r\nEvil: 1"))
            .expect_err("refused");
        assert!(err.contains("line break"), "{err}");
    }

    #[test]
    fn an_inject_entry_needs_exactly_one_kind() {
        assert!(
            InjectEntry {
                header: Some("X".into()),
                query: Some("k".into()),
                ..InjectEntry::default()
            }
            .rule()
            .is_err()
        );
        assert!(
            InjectEntry {
                format: Some("{}".into()),
                ..InjectEntry::default()
            }
            .rule()
            .is_err()
        );
    }
}
