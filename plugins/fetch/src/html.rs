//! HTML to readable text: drops scripts, styles and markup, keeps the
//! structure a reader needs (headings, paragraphs, list items, links in
//! markdown), decodes entities and collapses whitespace. Not a full HTML
//! parser: it needs to be small and predictable, not perfect.

/// A converted document.
pub(crate) struct Doc {
    pub(crate) title: Option<String>,
    pub(crate) text: String,
}

/// Elements whose content is never shown.
const HIDDEN: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "head", "iframe", "object",
];
/// Elements that start a new line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "tr",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "main",
    "aside",
    "ul",
    "ol",
    "table",
    "pre",
    "blockquote",
    "hr",
    "form",
    "figure",
    "dl",
    "dt",
    "dd",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "body",
    "html",
];

pub(crate) fn convert(html: &str, markdown: bool) -> Doc {
    let mut out = String::with_capacity(html.len() / 2);
    let mut title = None;
    let mut hidden: Option<String> = None;
    let mut link: Option<String> = None;
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if hidden.is_none() {
                push_text(&mut out, rest);
            }
            break;
        };
        if hidden.is_none() {
            push_text(&mut out, &rest[..lt]);
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let end = tag_end(rest);
        let tag = &rest[1..end.saturating_sub(1).max(1)];
        rest = &rest[end..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(open) = &hidden {
            if closing && *open == name {
                hidden = None;
            } else if !closing && name == "title" {
                rest = read_title(rest, &mut title);
            }
            continue;
        }
        if !closing && HIDDEN.contains(&name.as_str()) && !tag.ends_with('/') {
            hidden = Some(name);
            continue;
        }
        if name == "title" && !closing {
            rest = read_title(rest, &mut title);
            continue;
        }
        if markdown && name == "a" {
            if closing {
                if let Some(href) = link.take() {
                    out.push_str(&format!("]({href})"));
                }
            } else if let Some(href) =
                attribute(tag, "href").filter(|h| !h.starts_with("javascript:"))
            {
                out.push('[');
                link = Some(href);
            }
            continue;
        }
        if BLOCKS.contains(&name.as_str()) {
            out.push('\n');
            if !closing && markdown {
                match name.as_str() {
                    "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                        let level = usize::from(name.as_bytes()[1] - b'0');
                        out.push('\n');
                        out.push_str(&"#".repeat(level));
                        out.push(' ');
                    }
                    "li" => out.push_str("- "),
                    "p" => out.push('\n'),
                    _ => {}
                }
            }
        }
    }
    Doc {
        title,
        text: collapse(&out),
    }
}

/// The index just past the `>` that ends the tag at the start of `s`,
/// skipping quoted attribute values.
fn tag_end(s: &str) -> usize {
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return i + 1,
            _ => {}
        }
    }
    s.len()
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let at = lower.find(&format!("{name}="))? + name.len() + 1;
    let value = &tag[at..];
    let value = match value.chars().next()? {
        q @ ('"' | '\'') => value[1..].split(q).next()?,
        _ => value
            .split(|c: char| c.is_whitespace() || c == '>')
            .next()?,
    };
    let mut decoded = String::new();
    push_text(&mut decoded, value);
    Some(decoded.trim().to_string())
}

/// Reads a `<title>` element's text from `rest` (just after the opening
/// tag) into `title`, unless a title was already read: the first one is
/// the page's. Returns what follows the text.
fn read_title<'a>(rest: &'a str, title: &mut Option<String>) -> &'a str {
    let close = rest
        .to_ascii_lowercase()
        .find("</title")
        .unwrap_or(rest.len());
    if title.is_none() {
        let mut t = String::new();
        push_text(&mut t, &rest[..close]);
        *title = Some(t.trim().to_string()).filter(|t| !t.is_empty());
    }
    &rest[close..]
}

/// Appends text with entities decoded.
fn push_text(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[..rest.len().min(12)].find(';');
        let decoded = end.and_then(|end| entity(&rest[1..end]).map(|c| (c, end)));
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

fn entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "copy" => '©',
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code).filter(|c| !c.is_control() || *c == '\n')?
        }
    })
}

/// Runs of spaces become one space, lines are trimmed, and at most one
/// blank line separates blocks.
fn collapse(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() || line == "-" {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(&line);
    }
    out
}
