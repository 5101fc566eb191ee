//! Scrubbing: every secret value, in the forms it is likely to take on its
//! way back (raw, base64 and base64url at any alignment, hex, percent- and
//! JSON-encoded), replaced with `[redacted:NAME]` wherever the plugin or the
//! agent could see it. A second pass reads text whose JSON escapes are
//! decoded and line breaks dropped ([`view`](super::view)), so `\/` and
//! `\u00XX` escapes in any mix, and base64 wrapped at 64 or 76 columns,
//! are caught too.
//!
//! Scrubbing is defence in depth (design invariant 6): the host never hands
//! a secret to the guest, but a bound server may echo it, and that echo must
//! not reach tool output, logs, the audit log or error messages. A value
//! transformed in some other way (hashed, split, re-encoded twice) is not
//! recognised: binding secrets narrowly is the real
//! protection.

use super::Secret;
use super::view;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One encoded form of one secret.
struct Pattern {
    bytes: Vec<u8>,
    /// Index into `Scrubber::markers`.
    secret: usize,
}

/// Replaces every known form of every secret value with `[redacted:NAME]`.
///
/// Built once from all the host's secret values; cheap to share behind an
/// [`Arc`]. Its `Debug` output shows only the secrets' names. The forms
/// recognised for a value `v`:
///
/// - `v` itself;
/// - hex, lower and upper case;
/// - base64 and base64url, padded or not, at all three alignments: the
///   characters that encode only `v`'s bits when `v` starts at offset 0, 1
///   or 2 (mod 3) of a longer encoded stream, so `base64("user:" + v)` is
///   caught as well;
/// - percent-encoding (every byte outside `A-Za-z0-9-._~` as `%XX`, upper
///   and lower case, and the form variant with `+` for space);
/// - the inside of a JSON string (`\"`, `\\`, `\n`, `\u0001`, ...).
///
/// Matching is greedy, longest form first at each position.
#[derive(Default)]
pub struct Scrubber {
    patterns: Vec<Pattern>,
    /// Pattern indices by first byte, longest first.
    by_first: Vec<Vec<usize>>,
    markers: Vec<String>,
    max_len: usize,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("secrets", &self.markers)
            .field("forms", &self.patterns.len())
            .finish()
    }
}

impl Drop for Scrubber {
    fn drop(&mut self) {
        for pattern in &mut self.patterns {
            super::zero(&mut pattern.bytes);
        }
    }
}

impl Scrubber {
    /// A scrubber for `secrets`, given as `(name, value)` pairs. Values
    /// shorter than 8 bytes are scrubbed too, though such short values are
    /// refused when a host loads (they would match unrelated text).
    pub fn new<'a, I>(secrets: I) -> Scrubber
    where
        I: IntoIterator<Item = (&'a str, &'a Secret)>,
    {
        let mut scrubber = Scrubber::default();
        for (name, secret) in secrets {
            scrubber.add(name, secret.expose_for_injection().as_bytes());
        }
        scrubber.index();
        scrubber
    }

    /// This scrubber plus `value` under `name`: for a value a source gave
    /// out for one call (a rotated or per-caller token) that the host did
    /// not know when it loaded. `None` when `value` is already known.
    pub fn with_value(&self, name: &str, value: &Secret) -> Option<Scrubber> {
        let bytes = value.expose_for_injection().as_bytes();
        if bytes.is_empty() || self.patterns.iter().any(|p| p.bytes == bytes) {
            return None;
        }
        let mut scrubber = Scrubber {
            patterns: self
                .patterns
                .iter()
                .map(|p| Pattern {
                    bytes: p.bytes.clone(),
                    secret: p.secret,
                })
                .collect(),
            by_first: Vec::new(),
            markers: self.markers.clone(),
            max_len: 0,
        };
        scrubber.add(name, bytes);
        scrubber.index();
        Some(scrubber)
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    fn add(&mut self, name: &str, value: &[u8]) {
        if value.is_empty() {
            return;
        }
        let secret = self.markers.len();
        self.markers.push(format!("[redacted:{name}]"));
        let mut forms: Vec<Vec<u8>> = vec![value.to_vec()];
        forms.push(hex(value, b"0123456789abcdef"));
        forms.push(hex(value, b"0123456789ABCDEF"));
        for alphabet in [BASE64, BASE64URL] {
            for offset in 0..3 {
                forms.push(base64_aligned(value, offset, alphabet));
            }
        }
        for upper in [true, false] {
            forms.push(percent(value, upper, false));
            forms.push(percent(value, upper, true));
        }
        if let Ok(text) = std::str::from_utf8(value)
            && let Ok(json) = serde_json::to_string(text)
        {
            forms.push(json.as_bytes()[1..json.len() - 1].to_vec());
        }
        for form in forms {
            if !form.is_empty() && !self.patterns.iter().any(|p| p.bytes == form) {
                self.patterns.push(Pattern {
                    bytes: form,
                    secret,
                });
            }
        }
    }

    fn index(&mut self) {
        self.by_first = vec![Vec::new(); 256];
        for (i, pattern) in self.patterns.iter().enumerate() {
            self.by_first[usize::from(pattern.bytes[0])].push(i);
        }
        for bucket in &mut self.by_first {
            bucket.sort_by_key(|&i| std::cmp::Reverse(self.patterns[i].bytes.len()));
        }
        self.max_len = self
            .patterns
            .iter()
            .map(|p| p.bytes.len())
            .max()
            .unwrap_or(0);
    }

    /// The longest form that starts at `input[at..]`, if any.
    fn match_at(&self, input: &[u8], at: usize) -> Option<&Pattern> {
        self.by_first
            .get(usize::from(input[at]))?
            .iter()
            .map(|&i| &self.patterns[i])
            .find(|p| input[at..].starts_with(&p.bytes))
    }

    /// Scrubs `input[..end]` into `out`, given that every byte after `end`
    /// is also in `input` (so a match may run past `end`). Returns where it
    /// stopped: `end`, or past it when the last match ran over.
    fn scrub_into(&self, input: &[u8], end: usize, out: &mut Vec<u8>) -> usize {
        let mut at = 0;
        let mut copied = 0;
        while at < end {
            if let Some(pattern) = self.match_at(input, at) {
                out.extend_from_slice(&input[copied..at]);
                out.extend_from_slice(self.markers[pattern.secret].as_bytes());
                at += pattern.bytes.len();
                copied = at;
            } else {
                at += 1;
            }
        }
        out.extend_from_slice(&input[copied..at]);
        at
    }

    /// `input` with every form of every secret replaced.
    pub fn scrub_bytes<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        if self.is_empty() || self.find(input).is_none() {
            return Cow::Borrowed(input);
        }
        let mut out = Vec::with_capacity(input.len());
        self.scrub_into(input, input.len(), &mut out);
        if view::needed(&out) {
            let matches = self.view_matches(&out);
            if !matches.is_empty() {
                let mut rewritten = Vec::with_capacity(out.len());
                let mut copied = 0;
                for (start, end, secret) in matches {
                    rewritten.extend_from_slice(&out[copied..start]);
                    rewritten.extend_from_slice(self.markers[secret].as_bytes());
                    copied = end;
                }
                rewritten.extend_from_slice(&out[copied..]);
                super::zero(&mut out);
                out = rewritten;
            }
        }
        Cow::Owned(out)
    }

    /// Every form found in the decoded view of `input`, as spans of
    /// `input` with the secret's index, in order, not overlapping.
    fn view_matches(&self, input: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut decoded = view::decode(input);
        let mut found = Vec::new();
        let mut at = 0;
        while at < decoded.bytes.len() {
            match self.match_at(&decoded.bytes, at) {
                Some(pattern) => {
                    let (start, end) = decoded.original(at, at + pattern.bytes.len());
                    found.push((start, end, pattern.secret));
                    at += pattern.bytes.len();
                }
                None => at += 1,
            }
        }
        super::zero(&mut decoded.bytes);
        found
    }

    /// `input` with every form of every secret replaced. The forms other
    /// than the raw value are ASCII, so the result stays valid UTF-8.
    pub fn scrub_str<'a>(&self, input: &'a str) -> Cow<'a, str> {
        match self.scrub_bytes(input.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(input),
            Cow::Owned(bytes) => Cow::Owned(
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        }
    }

    /// Scrubs every string and object key of `value` in place. A number
    /// whose digits contain a secret becomes the scrubbed string.
    pub fn scrub_json(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(text) => {
                if let Cow::Owned(clean) = self.scrub_str(text) {
                    *text = clean;
                }
            }
            Value::Number(number) => {
                let text = number.to_string();
                if let Cow::Owned(clean) = self.scrub_str(&text) {
                    *value = Value::String(clean);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.scrub_json(&mut item);
                    map.insert(self.scrub_str(&key).into_owned(), item);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// The name of the first secret any of whose forms occurs in `input`.
    pub fn find(&self, input: &[u8]) -> Option<&str> {
        if self.is_empty() {
            return None;
        }
        let secret = (0..input.len())
            .find_map(|at| self.match_at(input, at))
            .map(|p| p.secret)
            .or_else(|| {
                if !view::needed(input) {
                    return None;
                }
                self.view_matches(input)
                    .first()
                    .map(|&(_, _, secret)| secret)
            })?;
        let marker = &self.markers[secret];
        Some(&marker["[redacted:".len()..marker.len() - 1])
    }

    /// A scrubber for a stream that arrives in chunks.
    pub fn stream(self: &Arc<Self>) -> StreamScrubber {
        StreamScrubber {
            scrubber: Arc::clone(self),
            pending: Vec::new(),
        }
    }
}

/// Scrubs a stream chunk by chunk, catching values split across chunks.
///
/// It holds back the last (longest form − 1) bytes of what it has seen,
/// since they may be the start of a form that the next chunk completes;
/// [`finish`](StreamScrubber::finish) releases them. The concatenated
/// output equals [`Scrubber::scrub_bytes`] of the concatenated input.
#[derive(Debug)]
pub struct StreamScrubber {
    scrubber: Arc<Scrubber>,
    pending: Vec<u8>,
}

impl StreamScrubber {
    /// Takes the next chunk; returns the bytes that are final.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let max = self.scrubber.max_len;
        if max == 0 {
            return chunk.to_vec();
        }
        self.pending.extend_from_slice(chunk);
        if self.pending.len() < max {
            return Vec::new();
        }
        // Every form starting at or before `end` fits in what we have.
        let end = self.pending.len() - max + 1;
        let mut out = Vec::with_capacity(end);
        let stopped = self.scrubber.scrub_into(&self.pending, end, &mut out);
        let rest = self.pending.split_off(stopped);
        super::zero(&mut self.pending);
        self.pending = rest;
        out
    }

    /// Ends the stream; returns the bytes held back, scrubbed.
    pub fn finish(mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pending.len());
        self.scrubber
            .scrub_into(&self.pending, self.pending.len(), &mut out);
        super::zero(&mut self.pending);
        out
    }
}

fn hex(value: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    value
        .iter()
        .flat_map(|b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]])
        .collect()
}

/// Unpadded base64 of `bytes`.
pub(crate) fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = group.len() + 1;
        for i in 0..chars {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize]);
        }
    }
    out
}

/// Padded standard base64 (`=` to a multiple of 4), as in Basic auth.
pub(crate) fn base64_padded(bytes: &[u8]) -> String {
    let mut out = base64(bytes, BASE64);
    while !out.len().is_multiple_of(4) {
        out.push(b'=');
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The base64 characters that encode only `value`'s bits when it starts
/// `offset` bytes (mod 3) into a longer stream: the first characters share
/// bits with the bytes before it and the last with the bytes after it, so
/// both edges are cut.
fn base64_aligned(value: &[u8], offset: usize, alphabet: &[u8; 64]) -> Vec<u8> {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(value);
    let encoded = base64(&padded, alphabet);
    let start = (8 * offset).div_ceil(6);
    let end = (8 * (offset + value.len())) / 6;
    super::zero(&mut padded);
    encoded
        .get(start..end)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// Percent-encoding of every byte outside the unreserved set; with `form`,
/// a space is `+`.
pub(crate) fn percent(value: &[u8], upper: bool, form: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else if form && b == b' ' {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[
                b'%',
                digits[usize::from(b >> 4)],
                digits[usize::from(b & 15)],
            ]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "s3cr3t-T0ken/with+odd=chars";

    fn scrubber() -> Scrubber {
        Scrubber::new([("api", &Secret::new(VALUE))])
    }

    fn scrub(input: &[u8]) -> String {
        String::from_utf8_lossy(&scrubber().scrub_bytes(input)).into_owned()
    }

    #[test]
    fn raw_value_is_replaced_with_its_name() {
        assert_eq!(
            scrub(format!("token={VALUE}; again {VALUE}").as_bytes()),
            "token=[redacted:api]; again [redacted:api]"
        );
        assert_eq!(scrub(b"nothing here"), "nothing here");
    }

    #[test]
    fn a_value_given_out_for_one_call_is_scrubbed_with_the_known_ones() {
        let rotated = Secret::new("rotated-0123456789-token");
        let grown = scrubber()
            .with_value("api", &rotated)
            .expect("a new value extends the scrubber");
        let text = format!(
            "{VALUE} {} {}",
            rotated.expose_for_injection(),
            base64_padded(b"rotated-0123456789-token")
        );
        assert_eq!(
            grown.scrub_str(&text),
            "[redacted:api] [redacted:api] [redacted:api]"
        );
        assert!(scrubber().with_value("api", &Secret::new(VALUE)).is_none());
    }

    #[test]
    fn hex_in_both_cases_is_replaced() {
        let lower = hex(VALUE.as_bytes(), b"0123456789abcdef");
        let upper = hex(VALUE.as_bytes(), b"0123456789ABCDEF");
        for form in [lower, upper] {
            let text = format!("x{}y", String::from_utf8_lossy(&form));
            assert_eq!(scrub(text.as_bytes()), "x[redacted:api]y");
        }
    }

    #[test]
    fn base64_is_replaced_at_all_three_alignments() {
        // The value at every offset mod 3 inside a longer stream, padded
        // and not, standard and url-safe.
        for prefix in ["", "u", "us", "use", "user:", "a-longer-prefix:"] {
            for suffix in ["", "!", "?x", "tail"] {
                let stream = format!("{prefix}{VALUE}{suffix}");
                for encoded in [
                    base64_padded(stream.as_bytes()),
                    String::from_utf8_lossy(&base64(stream.as_bytes(), BASE64URL)).into_owned(),
                ] {
                    let out = scrub(encoded.as_bytes());
                    assert!(
                        out.contains("[redacted:api]"),
                        "{prefix:?}+{suffix:?}: {encoded} -> {out}"
                    );
                }
            }
        }
    }

    #[test]
    fn aligned_base64_forms_are_stable_substrings() {
        let value = b"12345678";
        for offset in 0..3 {
            let form = base64_aligned(value, offset, BASE64);
            for before in 0..3u8 {
                let mut stream = vec![0xA5; offset + 3 * usize::from(before)];
                stream.extend_from_slice(value);
                stream.extend_from_slice(&[0xFF, 0x00]);
                let encoded = base64(&stream, BASE64);
                assert!(
                    encoded.windows(form.len()).any(|w| w == form),
                    "offset {offset}"
                );
            }
        }
    }

    #[test]
    fn percent_encoded_forms_are_replaced() {
        assert_eq!(
            scrub(b"q=s3cr3t-T0ken%2Fwith%2Bodd%3Dchars&x=1"),
            "q=[redacted:api]&x=1"
        );
        assert_eq!(
            scrub(b"q=s3cr3t-T0ken%2fwith%2bodd%3dchars"),
            "q=[redacted:api]"
        );
        let spaced = Scrubber::new([("s", &Secret::new("has a space"))]);
        assert_eq!(spaced.scrub_str("v=has+a+space"), "v=[redacted:s]");
        assert_eq!(spaced.scrub_str("v=has%20a%20space"), "v=[redacted:s]");
    }

    #[test]
    fn json_escaped_form_is_replaced() {
        let quoted = Scrubber::new([("q", &Secret::new("pa\"ss\\word"))]);
        let line = serde_json::json!({ "args": "pa\"ss\\word" }).to_string();
        assert_eq!(quoted.scrub_str(&line), r#"{"args":"[redacted:q]"}"#);
    }

    #[test]
    fn json_values_are_scrubbed_in_strings_keys_and_numbers() {
        let digits = Scrubber::new([("pin", &Secret::new("98765432"))]);
        let mut value = serde_json::json!({
            "98765432": [1, 98765432, "x98765432y"],
            "ok": true
        });
        digits.scrub_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "[redacted:pin]": [1, "[redacted:pin]", "x[redacted:pin]y"],
                "ok": true
            })
        );
    }

    #[test]
    fn longest_form_wins_and_each_secret_keeps_its_name() {
        let both = Scrubber::new([
            ("short", &Secret::new("abcdefgh")),
            ("long", &Secret::new("abcdefgh-and-more")),
        ]);
        assert_eq!(
            both.scrub_str("abcdefgh-and-more abcdefgh"),
            "[redacted:long] [redacted:short]"
        );
        assert_eq!(both.find(b"..abcdefgh.."), Some("short"));
        assert_eq!(both.find(b"nothing"), None);
    }

    #[test]
    fn stream_catches_a_value_split_across_two_chunks() {
        let scrubber = Arc::new(scrubber());
        let text = format!("before {VALUE} after, and {VALUE}");
        for split in 0..=text.len() {
            let mut stream = scrubber.stream();
            let mut out = stream.push(&text.as_bytes()[..split]);
            out.extend(stream.push(&text.as_bytes()[split..]));
            out.extend(stream.finish());
            assert_eq!(
                String::from_utf8_lossy(&out),
                "before [redacted:api] after, and [redacted:api]",
                "split at {split}"
            );
        }
    }

    #[test]
    fn stream_of_single_bytes_matches_one_shot() {
        let scrubber = Arc::new(scrubber());
        let encoded = base64_padded(format!("user:{VALUE}").as_bytes());
        let text = format!("{VALUE}|{encoded}|plain");
        let mut stream = scrubber.stream();
        let mut out = Vec::new();
        for b in text.as_bytes() {
            out.extend(stream.push(std::slice::from_ref(b)));
        }
        out.extend(stream.finish());
        assert_eq!(out, scrubber.scrub_bytes(text.as_bytes()).into_owned());
    }

    #[test]
    fn empty_scrubber_passes_everything_through() {
        let empty = Arc::new(Scrubber::default());
        assert!(empty.is_empty());
        assert!(matches!(empty.scrub_str("abc"), Cow::Borrowed("abc")));
        let mut stream = empty.stream();
        assert_eq!(stream.push(b"abc"), b"abc");
        assert!(stream.finish().is_empty());
    }

    #[test]
    fn debug_shows_names_only() {
        let text = format!("{:?}", scrubber());
        assert!(
            text.contains("[redacted:api]") && !text.contains("s3cr3t"),
            "{text}"
        );
    }
}
