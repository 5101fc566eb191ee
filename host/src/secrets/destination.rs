//! Where a secret may be sent: entries shaped like the egress allowlist.

use std::fmt;

/// One destination a secret is bound to, parsed from an allowlist-shaped
/// entry: `"https://api.example.com/v1"` or `{ url = "...", methods =
/// ["GET"], allow_private = true }`.
///
/// The egress gate matches each outbound request against these with
/// [`Destination::matches`] and attaches the secret only on a match. The
/// scheme, host and port must be equal (the port defaults to the scheme's),
/// the method must be listed (any method when `methods` is absent), and the
/// path must be the prefix or lie under it, segment-wise.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Destination {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name or IP literal (IPv6 without brackets), or
    /// `*.example.com` for any name under `example.com` (not itself).
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// The path prefix, without a trailing `/` (`/` for every path).
    pub path_prefix: String,
    /// Allowed methods, uppercase; empty means any method.
    pub methods: Vec<String>,
    /// Whether private and local addresses (and, for a secret, plain
    /// `http://`) are allowed for this entry.
    pub allow_private: bool,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "{}://{host}:{}{}",
            self.scheme, self.port, self.path_prefix
        )?;
        if !self.methods.is_empty() {
            write!(f, " ({})", self.methods.join(", "))?;
        }
        Ok(())
    }
}

impl Destination {
    /// Parses and validates one entry.
    ///
    /// # Errors
    ///
    /// What is wrong, as a message for the manifest error: a scheme other
    /// than `http`/`https`, userinfo, a query or fragment, an empty or lone
    /// `*` host, a bad port, a method that is not a token, or plain
    /// `http://` without `allow_private`.
    pub fn parse(
        url: &str,
        methods: &[String],
        allow_private: bool,
    ) -> Result<Destination, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not a URL (`https://host/path`)"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return Err(format!("`{url}`: the scheme must be `https` or `http`")),
        };
        if scheme == "http" && !allow_private {
            return Err(format!(
                "`{url}`: a secret is never sent over plain `http://` unless the entry sets `allow_private = true`"
            ));
        }
        if rest.contains(['?', '#']) {
            return Err(format!("`{url}`: a destination has no query or fragment"));
        }
        if rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return Err(format!("`{url}` contains a forbidden character"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!("`{url}`: a destination has no userinfo (`user@`)"));
        }
        let (host, port) = split_port(authority).map_err(|why| format!("`{url}`: {why}"))?;
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        if host == "*" || (host.contains('*') && !valid_wildcard(&host)) {
            return Err(format!(
                "`{url}`: `*` is allowed only as the first label (`*.example.com`)"
            ));
        }
        if path.split('/').any(|s| s == "." || s == "..") {
            return Err(format!("`{url}`: the path has `.` or `..` segments"));
        }
        let path_prefix = match path.trim_end_matches('/') {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        let mut checked = Vec::new();
        for method in methods {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(format!("`{url}`: method `{method}` is not an HTTP method"));
            }
            let method = method.to_ascii_uppercase();
            if !checked.contains(&method) {
                checked.push(method);
            }
        }
        Ok(Destination {
            scheme,
            host,
            port: port.unwrap_or(default_port),
            path_prefix,
            methods: checked,
            allow_private,
        })
    }

    /// Whether a request to `scheme://host:port/path` with `method` may
    /// carry the secret. `host` is the request's host as parsed by the
    /// egress gate (IPv6 without brackets), `path` its path without query.
    ///
    /// Paths with `.`/`..` segments, encoded dots, slashes or backslashes
    /// never match: the gate must pass the normalised path it will send.
    pub fn matches(&self, scheme: &str, host: &str, port: u16, method: &str, path: &str) -> bool {
        if !scheme.eq_ignore_ascii_case(&self.scheme) || port != self.port {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(parent) => host
                .strip_suffix(parent)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == self.host,
        };
        if !host_ok {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
        {
            return false;
        }
        if !path.starts_with('/') || !plain_path(path) {
            return false;
        }
        self.path_prefix == "/"
            || path == self.path_prefix
            || path
                .strip_prefix(self.path_prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// No dot segments, no encoded `.`, `/` or `\`, no backslash.
fn plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !(path.contains('\\')
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || path.split('/').any(|s| s == "." || s == ".."))
}

fn valid_wildcard(host: &str) -> bool {
    host.strip_prefix("*.").is_some_and(|parent| {
        !parent.contains('*') && parent.contains('.') && !parent.starts_with('.')
    })
}

/// `host[:port]` or `[v6][:port]` into host and port.
fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed `[` in the host")?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or("junk after `]`")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("port `{p}` is not 1-65535"))?,
        ),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Destination, String> {
        Destination::parse(url, &[], false)
    }

    #[test]
    fn https_entry_parses_with_default_port_and_root_prefix() {
        let d = parse("https://API.Example.com").expect("valid");
        assert_eq!(
            (
                d.scheme.as_str(),
                d.host.as_str(),
                d.port,
                d.path_prefix.as_str()
            ),
            ("https", "api.example.com", 443, "/")
        );
        let d = parse("https://api.example.com:8443/v1/").expect("valid");
        assert_eq!((d.port, d.path_prefix.as_str()), (8443, "/v1"));
        let d = parse("https://[::1]:9000/x").expect("valid");
        assert_eq!((d.host.as_str(), d.port), ("::1", 9000));
    }

    #[test]
    fn invalid_syntax_is_refused() {
        for url in [
            "api.example.com",
            "ftp://api.example.com",
            "https://user:pw@api.example.com",
            "https://*",
            "https://*/x",
            "https://api.*.com",
            "https://*.com",
            "https://",
            "https://api.example.com:0",
            "https://api.example.com:99999",
            "https://api.example.com/a?b=c",
            "https://api.example.com/#x",
            "https://api.example.com/a/../b",
            "https://api.example.com/a b",
        ] {
            assert!(parse(url).is_err(), "{url} accepted");
        }
        assert!(Destination::parse("https://a.example.com", &["G ET".into()], false).is_err());
    }

    #[test]
    fn plain_http_needs_allow_private() {
        let err = parse("http://localhost:8080").expect_err("refused");
        assert!(err.contains("allow_private"), "{err}");
        let d = Destination::parse("http://localhost:8080", &[], true).expect("allowed");
        assert_eq!(d.port, 8080);
    }

    #[test]
    fn matches_needs_scheme_host_port_method_and_path() {
        let d = Destination::parse(
            "https://api.example.com/repos",
            &["get".into(), "POST".into()],
            false,
        )
        .expect("valid");
        assert!(d.matches("https", "api.example.com", 443, "GET", "/repos"));
        assert!(d.matches("HTTPS", "API.example.com.", 443, "post", "/repos/a/b"));
        assert!(!d.matches("http", "api.example.com", 443, "GET", "/repos"));
        assert!(!d.matches("https", "api.example.com.evil.com", 443, "GET", "/repos"));
        assert!(!d.matches("https", "evil-api.example.com", 443, "GET", "/repos"));
        assert!(!d.matches("https", "api.example.com", 8443, "GET", "/repos"));
        assert!(!d.matches("https", "api.example.com", 443, "DELETE", "/repos"));
        assert!(!d.matches("https", "api.example.com", 443, "GET", "/reposx"));
        assert!(!d.matches("https", "api.example.com", 443, "GET", "/"));
        assert!(!d.matches("https", "api.example.com", 443, "GET", "/repos/../admin"));
        assert!(!d.matches(
            "https",
            "api.example.com",
            443,
            "GET",
            "/repos/%2e%2e/admin"
        ));
        assert!(!d.matches("https", "api.example.com", 443, "GET", "/repos%2Fx"));
        assert!(!d.matches("https", "api.example.com", 443, "GET", "repos"));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let d = parse("https://*.example.com").expect("valid");
        assert!(d.matches("https", "a.example.com", 443, "GET", "/"));
        assert!(d.matches("https", "a.b.example.com", 443, "PUT", "/x"));
        assert!(!d.matches("https", "example.com", 443, "GET", "/"));
        assert!(!d.matches("https", "aexample.com", 443, "GET", "/"));
    }

    #[test]
    fn root_prefix_matches_every_path() {
        let d = parse("https://api.example.com/").expect("valid");
        assert!(d.matches("https", "api.example.com", 443, "GET", "/anything/at/all"));
        assert_eq!(d.to_string(), "https://api.example.com:443/");
    }
}
