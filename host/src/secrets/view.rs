//! A decoded view of text for the scrubber's second pass: JSON escapes
//! decoded (`\/`, `\"`, `\u002b`, surrogate pairs, in any mix) and line
//! breaks dropped (literal or escaped, so base64 wrapped at 64 or 76
//! columns reads as one run), each byte remembering the span of the
//! original it came from. A secret found in the view is redacted over that
//! span of the original, whatever mix of spellings an echo used.

/// The decoded bytes and, for each, its span `[start, end)` in the
/// original.
pub(super) struct View {
    pub(super) bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl View {
    /// The span of the original that view bytes `[from, to)` came from.
    pub(super) fn original(&self, from: usize, to: usize) -> (usize, usize) {
        (self.spans[from].0, self.spans[to - 1].1)
    }
}

/// Whether `input` reads differently in the view: only then is a second
/// pass worth making.
pub(super) fn needed(input: &[u8]) -> bool {
    input.iter().any(|&b| matches!(b, b'\\' | b'\n' | b'\r'))
}

/// The view of `input`.
pub(super) fn decode(input: &[u8]) -> View {
    let mut view = View {
        bytes: Vec::with_capacity(input.len()),
        spans: Vec::with_capacity(input.len()),
    };
    let mut at = 0;
    while at < input.len() {
        let b = input[at];
        if b == b'\n' || b == b'\r' {
            at += 1;
            continue;
        }
        if b == b'\\'
            && let Some((decoded, used)) = escape(&input[at..])
        {
            let mut buf = [0u8; 4];
            let bytes: &[u8] = match decoded {
                Decoded::Drop => &[],
                Decoded::Char(c) => c.encode_utf8(&mut buf).as_bytes(),
            };
            for &byte in bytes {
                view.bytes.push(byte);
                view.spans.push((at, at + used));
            }
            at += used;
            continue;
        }
        view.bytes.push(b);
        view.spans.push((at, at + 1));
        at += 1;
    }
    view
}

enum Decoded {
    /// An escaped line break: dropped like a literal one.
    Drop,
    Char(char),
}

/// The JSON escape at the start of `input` and how many bytes it takes.
fn escape(input: &[u8]) -> Option<(Decoded, usize)> {
    let simple = |c: char| Some((Decoded::Char(c), 2));
    match *input.get(1)? {
        b'"' => simple('"'),
        b'\\' => simple('\\'),
        b'/' => simple('/'),
        b'b' => simple('\u{8}'),
        b'f' => simple('\u{c}'),
        b't' => simple('\t'),
        b'n' | b'r' => Some((Decoded::Drop, 2)),
        b'u' => {
            let high = hex4(input.get(2..6)?)?;
            if (0xD800..0xDC00).contains(&high)
                && input.get(6..8) == Some(b"\\u")
                && let Some(low) = input.get(8..12).and_then(hex4)
                && (0xDC00..0xE000).contains(&low)
            {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return char::from_u32(code).map(|c| (Decoded::Char(c), 12));
            }
            char::from_u32(high).map(|c| (Decoded::Char(c), 6))
        }
        _ => None,
    }
}

fn hex4(digits: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(digits).ok()?;
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::decode;
    use crate::secrets::{Scrubber, Secret};

    const VALUE: &str = "s3cr3t-T0ken/with+odd=chars";

    fn scrubber() -> Scrubber {
        Scrubber::new([("api", &Secret::new(VALUE))])
    }

    #[test]
    fn scrubber_recognises_json_slash_and_unicode_escapes() {
        let s = scrubber();
        for echo in [
            r#"{"t":"s3cr3t-T0ken\/with+odd=chars"}"#,
            r#"{"t":"s3cr3t-T0ken/with\u002bodd\u003dchars"}"#,
            r#"{"t":"\u0073\u0033cr3t-T0ken\/with\u002Bodd=chars"}"#,
        ] {
            let clean = s.scrub_str(echo);
            assert_eq!(clean, r#"{"t":"[redacted:api]"}"#, "{echo}");
            assert_eq!(s.find(echo.as_bytes()), Some("api"), "{echo}");
        }
    }

    #[test]
    fn scrubber_recognises_base64_wrapped_at_64_and_76_columns() {
        let s = scrubber();
        // A long prefix puts the value across the line break.
        let mut plain = "x".repeat(40).into_bytes();
        plain.extend_from_slice(VALUE.as_bytes());
        plain.extend_from_slice(&[b'y'; 40]);
        let encoded = String::from_utf8(crate::secrets::scrub::base64(
            &plain,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        ))
        .expect("ascii");
        for width in [64, 76] {
            for newline in ["\n", "\r\n", "\\n"] {
                let wrapped = encoded
                    .as_bytes()
                    .chunks(width)
                    .map(|c| std::str::from_utf8(c).expect("ascii"))
                    .collect::<Vec<_>>()
                    .join(newline);
                let clean = s.scrub_str(&wrapped);
                assert!(clean.contains("[redacted:api]"), "{width}: {clean}");
                assert!(s.find(wrapped.as_bytes()).is_some(), "{width}");
            }
        }
    }

    #[test]
    fn escapes_decode_and_line_breaks_drop() {
        let view = decode(
            br#"a\/b\u002B\u002bc\"\\d\nE\r
F\ud83d\ude00"#,
        );
        assert_eq!(
            String::from_utf8(view.bytes.clone()).expect("utf-8"),
            "a/b++c\"\\dEF\u{1F600}"
        );
        // `\/` is two bytes of the original, `\u002B` six.
        assert_eq!(view.original(1, 2), (1, 3));
        assert_eq!(view.original(3, 4), (4, 10));
    }

    #[test]
    fn broken_escapes_stay_as_written() {
        let view = decode(br"\u12\x\");
        assert_eq!(view.bytes, br"\u12\x\");
    }
}
