//! Where a secret may be sent: entries of the egress allowlist's grammar
//! ([`HttpRule`](crate::HttpRule), parsed and normalised the same way), with
//! their own method rule.

use crate::policy::allowlist::{self, HttpRule, Target};
use std::fmt;

/// One destination a secret is bound to: `"https://api.example.com/v1"` or
/// `{ url = "...", methods = ["GET"], allow_private = true }`.
///
/// The entry is read exactly like an egress allowlist entry (scheme, host
/// normalised by the WHATWG URL parser, `*.domain` for subdomains only,
/// port defaulting to the scheme's, path prefix), so the gate compares a
/// request with both in the same terms. Unlike an allowlist entry, no
/// `methods` means any method, and plain `http://` needs `allow_private`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pattern: HttpRule,
    /// Allowed methods, uppercase; empty means any method.
    methods: Vec<String>,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern.pattern())?;
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
    /// What is wrong, as a message for the manifest error: anything an
    /// allowlist entry refuses (a scheme other than `http`/`https`,
    /// userinfo, a query or fragment, a lone or misplaced `*`, a wildcard
    /// under a public suffix, a bad port), a method that is not a token, or
    /// plain `http://` without `allow_private`.
    pub fn parse(
        url: &str,
        methods: &[String],
        allow_private: bool,
    ) -> Result<Destination, String> {
        let pattern =
            HttpRule::parse(url, None, allow_private).map_err(|why| format!("`{url}` {why}"))?;
        if pattern.scheme() == "http" && !allow_private {
            return Err(format!(
                "`{url}`: a secret is never sent over plain `http://` unless the entry sets `allow_private = true`"
            ));
        }
        let methods = allowlist::methods(methods).map_err(|why| format!("`{url}` {why}"))?;
        Ok(Destination { pattern, methods })
    }

    /// Whether a request with `method` to `target` (as the egress gate
    /// parsed it) may carry the secret.
    ///
    /// Paths with `;`, `%25` or an encoded `.`, `/` or `\\` never match
    /// ([`allowlist::ambiguous_path`]): servers read them differently from
    /// the URL parser.
    pub(crate) fn matches(&self, method: &str, target: &Target) -> bool {
        self.pattern.covers(target)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && !allowlist::ambiguous_path(&target.path)
    }

    /// Whether `target` is under this destination as the URL parser reads
    /// it, but spelled so that a server may read it elsewhere.
    pub(crate) fn refuses_spelling(&self, target: &Target) -> bool {
        allowlist::ambiguous_path(&target.path)
            && (self.pattern.covers(target) || self.pattern.refuses_spelling(target))
    }

    /// Whether some request a plugin with `rules` as its allowlist may
    /// send could go to this destination (a secret bound only to
    /// destinations no rule reaches is a mistake).
    pub(crate) fn reachable_by(&self, rules: &[HttpRule]) -> bool {
        rules.iter().any(|rule| {
            rule.overlaps(&self.pattern)
                && (self.methods.is_empty()
                    || rule.methods().iter().any(|m| self.methods.contains(m)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Destination, String> {
        Destination::parse(url, &[], false)
    }

    /// Whether `d` lets a `method` request to `url` carry the secret.
    fn sends(d: &Destination, method: &str, url: &str) -> bool {
        let url = url::Url::parse(url).expect(url);
        d.matches(method, &Target::from_url(&url).expect("target"))
    }

    #[test]
    fn entry_is_normalised_like_an_allowlist_entry() {
        let d = parse("https://API.Example.com").expect("valid");
        assert_eq!(d.to_string(), "https://api.example.com:443");
        let d = parse("https://api.example.com:8443/v1").expect("valid");
        assert_eq!(d.to_string(), "https://api.example.com:8443/v1");
        // IPv6, IDN and trailing-dot hosts match the requests the gate
        // sends to them (each spelled differently in the entry).
        for (entry, url) in [
            ("https://[::1]:9000/x", "https://[0:0::1]:9000/x/y"),
            ("https://bücher.example", "https://xn--bcher-kva.example/"),
            ("https://api.example.com./v1", "https://api.example.com/v1"),
        ] {
            let d = Destination::parse(entry, &[], true).expect(entry);
            assert!(sends(&d, "GET", url), "{entry} does not cover {url}");
        }
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
            "https://*.co.uk",
            "https://",
            "https://api.example.com:0",
            "https://api.example.com:99999",
            "https://api.example.com/a?b=c",
            "https://api.example.com/#x",
        ] {
            assert!(parse(url).is_err(), "{url} accepted");
        }
        let err = Destination::parse("https://a.example.com", &["G ET".into()], false)
            .expect_err("refused");
        assert!(err.contains("invalid method"), "{err}");
    }

    #[test]
    fn plain_http_needs_allow_private() {
        let err = parse("http://localhost:8080").expect_err("refused");
        assert!(err.contains("allow_private"), "{err}");
        let d = Destination::parse("http://localhost:8080", &[], true).expect("allowed");
        assert!(sends(&d, "POST", "http://localhost:8080/"));
    }

    #[test]
    fn matches_needs_scheme_host_port_method_and_path() {
        let d = Destination::parse(
            "https://api.example.com/repos",
            &["get".into(), "POST".into()],
            false,
        )
        .expect("valid");
        assert!(sends(&d, "GET", "https://api.example.com/repos"));
        assert!(sends(&d, "POST", "https://API.example.com./repos/a/b"));
        assert!(!sends(&d, "GET", "http://api.example.com:443/repos"));
        assert!(!sends(&d, "GET", "https://api.example.com.evil.com/repos"));
        assert!(!sends(&d, "GET", "https://evil-api.example.com/repos"));
        assert!(!sends(&d, "GET", "https://api.example.com:8443/repos"));
        assert!(!sends(&d, "DELETE", "https://api.example.com/repos"));
        assert!(!sends(&d, "GET", "https://api.example.com/reposx"));
        assert!(!sends(&d, "GET", "https://api.example.com/"));
        assert!(!sends(&d, "GET", "https://api.example.com/repos/../admin"));
        assert!(!sends(
            &d,
            "GET",
            "https://api.example.com/repos/%2e%2e/admin"
        ));
        assert!(!sends(&d, "GET", "https://api.example.com/repos/a%2Fb"));
        assert!(!sends(&d, "GET", "https://api.example.com/repos/a%5cb"));
    }

    #[test]
    fn a_bound_path_refuses_semicolons_and_encoded_separators() {
        let d = parse("https://api.x.test/v1/public/").expect("valid");
        assert!(sends(&d, "GET", "https://api.x.test/v1/public/a"));
        for path in [
            "/v1/public/..;/admin",
            "/v1/public/a;b",
            "/v1/public/%252e%252e/admin",
            "/v1/public/a%2Fb",
            "/v1/public/a%5Cb",
        ] {
            let url = format!("https://api.x.test{path}");
            assert!(!sends(&d, "GET", &url), "{url}");
            let target = Target::from_url(&url::Url::parse(&url).expect("url")).expect("target");
            assert!(d.refuses_spelling(&target), "{url}");
        }
        // The URL parser resolves `%2e%2e` itself: outside the prefix.
        assert!(!sends(
            &d,
            "GET",
            "https://api.x.test/v1/public/%2e%2e/admin"
        ));
    }

    #[test]
    fn a_wildcard_under_a_private_public_suffix_is_refused() {
        for url in [
            "https://*.ngrok.app",
            "https://*.trycloudflare.com",
            "https://*.r2.dev",
            "https://*.github.io",
        ] {
            let err = parse(url).expect_err(url);
            assert!(err.contains("public suffix"), "{err}");
        }
        assert!(parse("https://*.mytunnel.ngrok.app").is_ok());
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let d = parse("https://*.example.com").expect("valid");
        assert!(sends(&d, "GET", "https://a.example.com/"));
        assert!(sends(&d, "PUT", "https://a.b.example.com/x"));
        assert!(!sends(&d, "GET", "https://example.com/"));
        assert!(!sends(&d, "GET", "https://aexample.com/"));
    }

    #[test]
    fn root_prefix_matches_every_path() {
        let d = parse("https://api.example.com/").expect("valid");
        assert!(sends(&d, "GET", "https://api.example.com/anything/at/all"));
    }
}
