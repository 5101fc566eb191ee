//! The per-plugin HTTP allowlist: grammar, parsing, normalisation and
//! matching. Pure functions, no I/O.
//!
//! An entry is `scheme://host[:port][/path-prefix]`:
//!
//! - `scheme` is `http` or `https`; a missing port means the scheme's
//!   default (80, 443), so `https://api.example.com` allows port 443 only;
//! - `host` is an exact name or IP literal, or `*.domain`, which matches
//!   subdomains of `domain` only (not `domain` itself, not
//!   `evildomain`, not `domain.evil.net`). A lone `*`, a `*` anywhere else,
//!   and a wildcard directly under a public suffix (`*.com`, `*.co.uk`,
//!   `*.github.io`, `*.ngrok.app`: the full Public Suffix List, private
//!   section included, plus every single label) are refused;
//! - the path, if any, is a prefix the request's path must start with, on
//!   a segment boundary unless it ends with `/`; under an entry with a
//!   path, a request path with `;`, `%25` or an encoded `.`, `/` or `\`
//!   is refused (servers read those differently from the URL parser);
//! - userinfo, a query or a fragment are refused.
//!
//! Each entry may list methods; without them it allows `GET` and `HEAD`
//! only, so a plain entry never lets a plugin change anything remotely.
//! Hosts are normalised the same way on both sides (lowercase, trailing dot
//! dropped, IDN to punycode, IPv4 literals in every spelling to dotted
//! decimal) by the WHATWG URL parser.

pub(crate) use super::spelling::ambiguous_path;
use super::spelling::public_suffix;
use url::{Host, Url};

/// Methods an entry allows when it lists none.
pub(crate) const DEFAULT_METHODS: &[&str] = &["GET", "HEAD"];

/// The host part of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this normalised host (a name, or an IP literal as the URL
    /// parser writes it, IPv6 in brackets).
    Exact(String),
    /// Any name ending in `.` + this domain, with at least one more label.
    Subdomains(String),
}

/// One validated allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    scheme: String,
    host: HostPattern,
    port: u16,
    path: String,
    methods: Vec<String>,
    allow_private: bool,
}

/// What a request is, as the gate checks it: taken from the one parsed
/// [`Url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) scheme: String,
    /// Normalised host: a name without trailing dot, or an IP literal.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
}

impl Target {
    /// The parts of `url` the allowlist looks at.
    ///
    /// # Errors
    ///
    /// Why the URL cannot be used: not http(s), userinfo, no host.
    pub(crate) fn from_url(url: &Url) -> Result<Target, String> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "scheme `{scheme}` is not allowed: use http or https"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("URLs with userinfo (`user@host`) are refused".into());
        }
        let host = match url.host() {
            Some(Host::Domain(d)) => d.trim_end_matches('.').to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err("the URL has no host".into()),
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| "the URL has no port".to_string())?;
        Ok(Target {
            scheme: scheme.to_string(),
            host,
            port,
            path: url.path().to_string(),
        })
    }

    /// `scheme://host:port`.
    pub(crate) fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl HttpRule {
    /// Parses and validates one entry.
    ///
    /// # Errors
    ///
    /// What is wrong with it, in a phrase that follows the entry's text.
    pub fn parse(
        entry: &str,
        methods: Option<&[String]>,
        allow_private: bool,
    ) -> Result<HttpRule, String> {
        let Some((scheme, rest)) = entry.split_once("://") else {
            return Err("must be `scheme://host[:port][/path]`".into());
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("has scheme `{scheme}`: use http or https"));
        }
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        if rest.contains('*') || rest.is_empty() {
            return Err(
                "has a `*` that is not a leading `*.` label (a lone `*` is refused)".into(),
            );
        }
        let url =
            Url::parse(&format!("{scheme}://{rest}")).map_err(|e| format!("is not a URL: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() || rest.contains('@') {
            return Err("has userinfo (`user@`), which is refused".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("has a query or fragment; allowlist entries end at the path".into());
        }
        let target = Target::from_url(&url)?;
        if target.port == 0 {
            return Err("has port 0, which no server listens on".into());
        }
        let host = if wildcard {
            if !matches!(url.host(), Some(Host::Domain(_))) {
                return Err("puts a wildcard on an IP address".into());
            }
            let domain = target.host.clone();
            if public_suffix(&domain) {
                return Err(format!(
                    "puts a wildcard directly under the public suffix `{domain}`"
                ));
            }
            HostPattern::Subdomains(domain)
        } else {
            HostPattern::Exact(target.host.clone())
        };
        let methods = match methods {
            None => DEFAULT_METHODS.iter().map(|m| (*m).to_string()).collect(),
            Some([]) => return Err("lists no methods; leave `methods` out for GET and HEAD".into()),
            Some(list) => self::methods(list)?,
        };
        Ok(HttpRule {
            scheme: target.scheme,
            host,
            port: target.port,
            path: target.path,
            methods,
            allow_private,
        })
    }

    /// Whether connections may go to private and other special-purpose
    /// addresses (an explicit opt-in for local services and tests).
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// The methods the entry allows, uppercase.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    /// Whether the entry allows a method other than `GET` and `HEAD`: a
    /// tool with such a grant can change things remotely.
    pub fn allows_writes(&self) -> bool {
        self.methods
            .iter()
            .any(|m| !DEFAULT_METHODS.contains(&m.as_str()))
    }

    fn host_matches(&self, host: &str) -> bool {
        match &self.host {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .and_then(|prefix| prefix.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.starts_with('[')),
        }
    }

    fn path_matches(&self, path: &str) -> bool {
        self.path_prefix_matches(path) && (self.path == "/" || !ambiguous_path(path))
    }

    /// Whether the entry has a path and `path` lies under it as the URL
    /// parser reads it, but spelled so that a server may not
    /// ([`ambiguous_path`]).
    pub(crate) fn refuses_spelling(&self, target: &Target) -> bool {
        self.path != "/"
            && self.scheme == target.scheme
            && self.port == target.port
            && self.host_matches(&target.host)
            && self.path_prefix_matches(&target.path)
            && ambiguous_path(&target.path)
    }

    fn path_prefix_matches(&self, path: &str) -> bool {
        let prefix = self.path.as_str();
        if prefix == "/" || path == prefix {
            return true;
        }
        if prefix.ends_with('/') {
            return path.starts_with(prefix);
        }
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Whether the entry allows `method` on `target`.
    pub(crate) fn allows(&self, method: &str, target: &Target) -> bool {
        self.covers(target) && self.methods.iter().any(|m| m == method)
    }

    /// Whether `target` is at the entry's scheme, host, port and path,
    /// whatever the method.
    pub(crate) fn covers(&self, target: &Target) -> bool {
        self.scheme == target.scheme
            && self.port == target.port
            && self.host_matches(&target.host)
            && self.path_matches(&target.path)
    }

    /// Whether some request could match both `self` and `other`: same
    /// scheme and port, hosts and path prefixes that overlap (methods
    /// aside).
    pub(crate) fn overlaps(&self, other: &HttpRule) -> bool {
        let hosts = match (&self.host, &other.host) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(a), HostPattern::Subdomains(_)) => other.host_matches(a),
            (HostPattern::Subdomains(_), HostPattern::Exact(b)) => self.host_matches(b),
            (HostPattern::Subdomains(a), HostPattern::Subdomains(b)) => {
                a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
            }
        };
        self.scheme == other.scheme
            && self.port == other.port
            && hosts
            && (self.path_matches(&other.path) || other.path_matches(&self.path))
    }

    /// `scheme://host:port[/path]`, the entry without its methods and
    /// opt-in.
    pub(crate) fn pattern(&self) -> String {
        let host = match &self.host {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Subdomains(d) => format!("*.{d}"),
        };
        let path = if self.path == "/" { "" } else { &self.path };
        format!("{}://{host}:{}{path}", self.scheme, self.port)
    }

    /// The scheme, `http` or `https`.
    pub(crate) fn scheme(&self) -> &str {
        &self.scheme
    }
}

/// The methods of `list`, checked and uppercase, without repeats.
///
/// # Errors
///
/// The first that is not an HTTP method.
pub(crate) fn methods(list: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for m in list {
        let upper = m.to_ascii_uppercase();
        if !valid_method(&upper) {
            return Err(format!("has an invalid method `{}`", m.escape_debug()));
        }
        if !out.contains(&upper) {
            out.push(upper);
        }
    }
    Ok(out)
}

impl std::fmt::Display for HttpRule {
    /// The entry in its normalised form, as the manifest would write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.pattern())?;
        if self
            .methods
            .iter()
            .map(String::as_str)
            .ne(DEFAULT_METHODS.iter().copied())
        {
            write!(f, " ({})", self.methods.join(", "))?;
        }
        if self.allow_private {
            f.write_str(" [private addresses allowed]")?;
        }
        Ok(())
    }
}

/// Request headers the host sets or owns, lower case: `Host` (no domain
/// fronting), hop-by-hop headers (RFC 9110 7.6.1), framing and encoding.
/// Every `proxy-` header is the host's too (see [`host_header`]).
const HOST_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "accept-encoding",
    "expect",
];

/// Whether request header `name` (any case) is the host's: neither a plugin
/// nor a secret's injection rule may set it.
pub(crate) fn host_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    HOST_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-")
}

/// A method is an HTTP token; the gate compares them uppercase.
pub(crate) fn valid_method(method: &str) -> bool {
    !method.is_empty()
        && method.len() <= 32
        && method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// Why no rule allows `method` on `target`, and the manifest line that
/// would allow it.
pub(crate) fn explain(rules: &[HttpRule], method: &str, target: &Target) -> (String, String) {
    let origin = target.origin();
    let same_host: Vec<&HttpRule> = rules
        .iter()
        .filter(|r| r.host_matches(&target.host))
        .collect();
    let same_origin: Vec<&&HttpRule> = same_host
        .iter()
        .filter(|r| r.scheme == target.scheme && r.port == target.port)
        .collect();
    let reason = if same_host.is_empty() {
        format!("host `{}` is not in this plugin's allowlist", target.host)
    } else if same_origin.is_empty() {
        format!(
            "`{origin}` is not in this plugin's allowlist (the host is allowed only as {})",
            same_host
                .iter()
                .map(|r| format!("`{}://{}:{}`", r.scheme, target.host, r.port))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if !same_origin.iter().any(|r| r.path_matches(&target.path)) {
        format!(
            "path `{}` on `{origin}` is outside the allowed prefixes {}",
            target.path,
            same_origin
                .iter()
                .map(|r| format!("`{}`", r.path))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            "method `{method}` is not allowed for `{origin}{}`",
            target.path
        )
    };
    let url = if target.port == default_port(&target.scheme) {
        format!("{}://{}{}", target.scheme, target.host, target.path)
    } else {
        format!("{origin}{}", target.path)
    };
    let line = if DEFAULT_METHODS.contains(&method) {
        format!("http = [\"{url}\"]")
    } else {
        format!("http = [{{ url = \"{url}\", methods = [\"{method}\"] }}]")
    };
    (reason, line)
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(entry: &str) -> HttpRule {
        HttpRule::parse(entry, None, false).unwrap_or_else(|e| panic!("{entry}: {e}"))
    }

    fn target(url: &str) -> Target {
        Target::from_url(&Url::parse(url).expect(url)).expect(url)
    }

    fn allows(entry: &str, method: &str, url: &str) -> bool {
        rule(entry).allows(method, &target(url))
    }

    #[test]
    fn exact_host_with_default_port() {
        assert!(allows(
            "https://api.example.com",
            "GET",
            "https://api.example.com/x"
        ));
        assert!(allows(
            "https://api.example.com",
            "GET",
            "https://api.example.com:443/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "GET",
            "https://api.example.com:8443/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "GET",
            "http://api.example.com/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "GET",
            "https://example.com/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "GET",
            "https://x.api.example.com/"
        ));
    }

    #[test]
    fn explicit_port_must_match() {
        assert!(allows("http://a.test:8080", "GET", "http://a.test:8080/"));
        assert!(!allows("http://a.test:8080", "GET", "http://a.test/"));
        assert!(!allows("http://a.test:8080", "GET", "http://a.test:8081/"));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let entry = "https://*.example.com";
        assert!(allows(entry, "GET", "https://a.example.com/"));
        assert!(allows(entry, "GET", "https://a.b.example.com/"));
        assert!(!allows(entry, "GET", "https://example.com/"));
        assert!(!allows(entry, "GET", "https://evilexample.com/"));
        assert!(!allows(entry, "GET", "https://example.com.evil.net/"));
        assert!(!allows(entry, "GET", "https://a.example.com.evil.net/"));
        assert!(!allows(entry, "GET", "https://a.example.co/"));
    }

    #[test]
    fn hosts_are_normalised_before_matching() {
        assert!(allows(
            "https://api.example.com",
            "GET",
            "https://API.Example.COM./x"
        ));
        assert!(allows(
            "https://API.example.com.",
            "GET",
            "https://api.example.com/x"
        ));
        assert!(allows(
            "https://bücher.example",
            "GET",
            "https://xn--bcher-kva.example/"
        ));
        assert!(allows(
            "https://xn--bcher-kva.example",
            "GET",
            "https://BÜCHER.example/"
        ));
        assert!(allows(
            "https://*.example.com",
            "GET",
            "https://A.EXAMPLE.COM./"
        ));
    }

    #[test]
    fn ip_literals_in_every_spelling_normalise_to_one_form() {
        for spelling in [
            "http://127.0.0.1:8080/",
            "http://2130706433:8080/",
            "http://0x7f000001:8080/",
            "http://0x7f.1:8080/",
            "http://0177.0.0.1:8080/",
            "http://127.1:8080/",
            "http://127.0.1:8080/",
        ] {
            assert_eq!(target(spelling).host, "127.0.0.1", "{spelling}");
            assert!(
                allows("http://127.0.0.1:8080", "GET", spelling),
                "{spelling}"
            );
        }
        assert_eq!(target("http://[::FFFF:7f00:1]/").host, "[::ffff:127.0.0.1]");
        assert_eq!(target("http://[0:0::1]/").host, "[::1]");
    }

    #[test]
    fn methods_default_to_get_and_head() {
        assert!(allows("https://a.test", "GET", "https://a.test/"));
        assert!(allows("https://a.test", "HEAD", "https://a.test/"));
        assert!(!allows("https://a.test", "POST", "https://a.test/"));
        let post = HttpRule::parse("https://a.test", Some(&["post".into()]), false).expect("ok");
        assert!(post.allows("POST", &target("https://a.test/")));
        assert!(!post.allows("GET", &target("https://a.test/")));
        assert!(post.allows_writes());
        assert!(!rule("https://a.test").allows_writes());
    }

    #[test]
    fn path_prefixes_match_on_segment_boundaries() {
        assert!(allows("https://a.test/v1", "GET", "https://a.test/v1"));
        assert!(allows(
            "https://a.test/v1",
            "GET",
            "https://a.test/v1/users"
        ));
        assert!(!allows("https://a.test/v1", "GET", "https://a.test/v10"));
        assert!(!allows("https://a.test/v1/", "GET", "https://a.test/v1"));
        assert!(allows("https://a.test/v1/", "GET", "https://a.test/v1/x"));
        // Dot segments (also percent-encoded) are resolved before matching.
        assert!(!allows(
            "https://a.test/v1/",
            "GET",
            "https://a.test/v1/../admin"
        ));
        assert!(!allows(
            "https://a.test/v1/",
            "GET",
            "https://a.test/v1/%2e%2e/admin"
        ));
    }

    #[test]
    fn a_path_rule_refuses_semicolons_and_encoded_separators() {
        let r = rule("https://api.x.test/v1/public/");
        assert!(r.allows("GET", &target("https://api.x.test/v1/public/a")));
        for url in [
            "https://api.x.test/v1/public/..;/admin",
            "https://api.x.test/v1/public/a;b",
            "https://api.x.test/v1/public/%252e%252e/admin",
            "https://api.x.test/v1/public/a%2fb",
            "https://api.x.test/v1/public/a%5Cb",
        ] {
            assert!(!r.allows("GET", &target(url)), "{url}");
            assert!(r.refuses_spelling(&target(url)), "{url}");
        }
        // An entry without a path leaves the path to the server.
        assert!(allows(
            "https://api.x.test",
            "GET",
            "https://api.x.test/a;b"
        ));
    }

    #[test]
    fn bad_entries_are_refused() {
        for entry in [
            "*",
            "https://*",
            "https://*.com",
            "https://*.co.uk",
            "https://*.github.io",
            "https://*.ngrok.app",
            "https://*.trycloudflare.com",
            "https://*.r2.dev",
            "https://*.s3.amazonaws.com",
            "https://a.*.example.com",
            "https://*example.com",
            "https://user@example.com",
            "https://user:pw@example.com",
            "https://example.com/?q=1",
            "https://example.com/#f",
            "ftp://example.com",
            "example.com",
            "https://*.127.0.0.1",
            "https://",
        ] {
            assert!(
                HttpRule::parse(entry, None, false).is_err(),
                "{entry} accepted"
            );
        }
        assert!(HttpRule::parse("https://a.test", Some(&[]), false).is_err());
        assert!(HttpRule::parse("https://a.test", Some(&["GE T".into()]), false).is_err());
    }

    #[test]
    fn request_urls_with_userinfo_or_other_schemes_are_refused() {
        for url in [
            "https://user@a.test/",
            "https://:pw@a.test/",
            "file:///etc/passwd",
            "ftp://a.test/",
            "data:text/plain,hi",
        ] {
            assert!(
                Target::from_url(&Url::parse(url).expect(url)).is_err(),
                "{url}"
            );
        }
    }

    #[test]
    fn explanations_name_the_cause_and_the_line_to_add() {
        let rules = [rule("https://api.example.com/v1/")];
        let (why, line) = explain(&rules, "GET", &target("https://other.test/"));
        assert!(why.contains("host `other.test`"), "{why}");
        assert_eq!(line, "http = [\"https://other.test/\"]");
        let (why, line) = explain(&rules, "GET", &target("https://api.example.com:8443/v1/x"));
        assert!(why.contains("`https://api.example.com:8443`"), "{why}");
        assert_eq!(line, "http = [\"https://api.example.com:8443/v1/x\"]");
        let (why, _) = explain(&rules, "GET", &target("https://api.example.com/v2"));
        assert!(why.contains("outside the allowed prefixes `/v1/`"), "{why}");
        let (why, line) = explain(&rules, "POST", &target("https://api.example.com/v1/x"));
        assert!(why.contains("method `POST`"), "{why}");
        assert_eq!(
            line,
            "http = [{ url = \"https://api.example.com/v1/x\", methods = [\"POST\"] }]"
        );
    }
}
