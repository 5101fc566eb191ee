//! How names and paths are spelled where the allowlist cannot see it: which
//! domains are public suffixes (a wildcard under one covers strangers'
//! sites), and which request paths a server may read differently from the
//! URL parser. Pure functions, no I/O.

/// Whether `domain` (normalised, punycode) is itself a public suffix: a
/// single label, or a suffix of the Public Suffix List, its private
/// section included (`co.uk`, `github.io`, `ngrok.app`, `r2.dev`), compiled
/// in (the `psl` crate, pinned; nothing is fetched at run time).
pub(crate) fn public_suffix(domain: &str) -> bool {
    use psl::Psl;
    !domain.contains('.')
        || psl::List
            .suffix(domain.as_bytes())
            .is_some_and(|s| s.is_known() && s.as_bytes() == domain.as_bytes())
}

/// Path bytes that servers read differently from the URL parser: `;`
/// (path parameters, so `/v1/public/..;/admin` is `/admin` to Tomcat and
/// Spring), `%25` (a second round of decoding), encoded `.`, `/` and `\`,
/// and a raw `\`.
pub(crate) fn ambiguous_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    path.contains(';')
        || path.contains('\\')
        || ["%25", "%2e", "%2f", "%5c"]
            .iter()
            .any(|e| lower.contains(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::allowlist::HttpRule;

    #[test]
    fn wildcards_under_the_full_public_suffix_list_are_refused() {
        for entry in [
            "https://*.ngrok.app",
            "https://*.trycloudflare.com",
            "https://*.r2.dev",
            "https://*.co.uk",
            "https://*.com",
        ] {
            let err = HttpRule::parse(entry, None, false).expect_err(entry);
            assert!(err.contains("public suffix"), "{err}");
        }
        for entry in [
            "https://*.example.com",
            "https://*.a.ngrok.app",
            "https://*.corp.test",
        ] {
            assert!(HttpRule::parse(entry, None, false).is_ok(), "{entry}");
        }
    }

    #[test]
    fn ambiguous_spellings_are_recognised() {
        for path in ["/a;b", "/a%2Fb", "/a%5cb", "/a%2E", "/a%252e", "/a\\b"] {
            assert!(ambiguous_path(path), "{path}");
        }
        assert!(!ambiguous_path("/v1/public/a-b_c.d~e%20f"));
        assert!(public_suffix("ngrok.app") && public_suffix("com") && public_suffix("co.uk"));
        assert!(!public_suffix("example.com") && !public_suffix("a.ngrok.app"));
    }
}
