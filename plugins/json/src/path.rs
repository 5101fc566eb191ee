//! A JSONPath subset: `$`, `.field`, `['field']`, `[n]`, `[-n]`, `[*]`,
//! `.*`, `..field`, `..*` and `..[n]`-style steps after `..`.

use portcullis_sdk::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name` or `['name']`.
    Member(String),
    /// `[n]`; negative counts from the end.
    Index(i64),
    /// `[*]` or `.*`.
    Wildcard,
    /// `..` followed by a step: that step applied at every depth.
    Descend(Box<Step>),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    steps: Vec<Step>,
}

/// One part of the path from the root to a value.
#[derive(Debug, Clone)]
enum Key {
    Member(String),
    Index(usize),
}

/// A selected value and where it is.
#[derive(Debug, Clone)]
pub struct Node<'v> {
    /// The value.
    pub value: &'v Value,
    keys: Vec<Key>,
}

impl Node<'_> {
    /// The normalized path, e.g. `$['items'][0]`.
    pub fn path(&self) -> String {
        let mut out = String::from("$");
        for key in &self.keys {
            match key {
                Key::Member(name) => {
                    out.push_str("['");
                    for c in name.chars() {
                        if c == '\'' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push_str("']");
                }
                Key::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

/// Longest path accepted, in characters.
const MAX_PATH_LEN: usize = 1000;

impl Path {
    /// Parses `text`.
    ///
    /// # Errors
    ///
    /// What is wrong and where, for a model to fix it.
    pub fn parse(text: &str) -> Result<Path, String> {
        if text.chars().count() > MAX_PATH_LEN {
            return Err(format!("a path has at most {MAX_PATH_LEN} characters"));
        }
        let chars: Vec<char> = text.trim().chars().collect();
        if chars.first() != Some(&'$') {
            return Err(format!(
                "a path starts with `$`, e.g. `$.items[0]`; got `{text}`"
            ));
        }
        let mut parser = Parser {
            chars: &chars,
            pos: 1,
            text,
        };
        let mut steps = Vec::new();
        while parser.pos < chars.len() {
            steps.push(parser.step()?);
        }
        Ok(Path { steps })
    }

    /// Every value the path selects in `root`, in document order.
    pub fn select<'v>(&self, root: &'v Value) -> Vec<Node<'v>> {
        let mut nodes = vec![Node {
            value: root,
            keys: Vec::new(),
        }];
        for step in &self.steps {
            let mut next = Vec::new();
            for node in &nodes {
                apply(step, node, &mut next);
            }
            nodes = next;
        }
        nodes
    }
}

fn apply<'v>(step: &Step, node: &Node<'v>, out: &mut Vec<Node<'v>>) {
    let child = |key: Key, value: &'v Value| {
        let mut keys = node.keys.clone();
        keys.push(key);
        Node { value, keys }
    };
    match step {
        Step::Member(name) => {
            if let Some(value) = node.value.get(name) {
                out.push(child(Key::Member(name.clone()), value));
            }
        }
        Step::Index(i) => {
            if let Value::Array(items) = node.value {
                let len = items.len() as i64;
                let index = if *i < 0 { len + i } else { *i };
                if (0..len).contains(&index) {
                    let index = index as usize;
                    out.push(child(Key::Index(index), &items[index]));
                }
            }
        }
        Step::Wildcard => match node.value {
            Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    out.push(child(Key::Index(i), value));
                }
            }
            Value::Object(map) => {
                for (name, value) in map {
                    out.push(child(Key::Member(name.clone()), value));
                }
            }
            _ => {}
        },
        Step::Descend(inner) => {
            // The node itself, then its descendants, in document order.
            apply(inner, node, out);
            let mut children = Vec::new();
            apply(&Step::Wildcard, node, &mut children);
            for c in &children {
                apply(step, c, out);
            }
        }
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!(
            "invalid path `{}` at character {}: {what}",
            self.text,
            self.pos + 1
        )
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn step(&mut self) -> Result<Step, String> {
        match self.peek() {
            Some('.') => {
                self.pos += 1;
                if self.peek() == Some('.') {
                    self.pos += 1;
                    let inner = if self.peek() == Some('[') {
                        self.bracket()?
                    } else {
                        self.dotted()?
                    };
                    Ok(Step::Descend(Box::new(inner)))
                } else {
                    self.dotted()
                }
            }
            Some('[') => self.bracket(),
            _ => Err(self.error("expected `.`, `..` or `[`")),
        }
    }

    /// After `.`: `*` or a name.
    fn dotted(&mut self) -> Result<Step, String> {
        if self.peek() == Some('*') {
            self.pos += 1;
            return Ok(Step::Wildcard);
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' || c == '-' || c == '$' {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.error("expected a field name or `*` (use `['name']` for other names)"));
        }
        Ok(Step::Member(self.chars[start..self.pos].iter().collect()))
    }

    /// `[*]`, `[n]`, `[-n]`, `['name']` or `["name"]`.
    fn bracket(&mut self) -> Result<Step, String> {
        self.pos += 1; // `[`
        let step = match self.peek() {
            Some('*') => {
                self.pos += 1;
                Step::Wildcard
            }
            Some(q @ ('\'' | '"')) => {
                self.pos += 1;
                let mut name = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("unterminated string")),
                        Some('\\') => {
                            self.pos += 1;
                            match self.peek() {
                                Some(c) => name.push(c),
                                None => return Err(self.error("unterminated string")),
                            }
                        }
                        Some(c) if c == q => break,
                        Some(c) => name.push(c),
                    }
                    self.pos += 1;
                }
                self.pos += 1; // closing quote
                Step::Member(name)
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let digits: String = self.chars[start..self.pos].iter().collect();
                let index = digits
                    .parse()
                    .map_err(|_| self.error("expected an array index"))?;
                Step::Index(index)
            }
            _ => return Err(self.error("expected `*`, an index or a quoted name after `[`")),
        };
        if self.peek() != Some(']') {
            return Err(self.error("expected `]`"));
        }
        self.pos += 1;
        Ok(step)
    }
}
