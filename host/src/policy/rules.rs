//! Approval rules: when a call needs a person's approval, decided from its
//! arguments alone.
//!
//! Grammar (one rule per string; a tool asks when *any* of its rules holds):
//!
//! ```text
//! rule     = pointer SP op SP literal
//! pointer  = "" | ("/" token)*       a JSON Pointer (RFC 6901), no spaces
//! op       = "==" | "!=" | "<" | "<=" | ">" | ">=" | "matches"
//! literal  = a JSON number, string, true, false or null
//! ```
//!
//! - `<`, `<=`, `>`, `>=` need a number literal; `matches` needs a string
//!   literal, a glob where `*` is any run of characters (including `/`) and
//!   `?` is one character; everything else matches itself.
//! - `==` and `!=` compare values of the literal's type (numbers by value,
//!   so `1 == 1.0`).
//! - Fail safe: when the pointer names no field, or a field of another type
//!   than the literal, the rule *holds* and the call asks for approval.
//!
//! Examples: `/amount > 100`, `/path matches "/out/*"`, `/force == true`.

use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;

/// A comparison operator of an [`ApprovalRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Matches,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Matches => "matches",
        }
    }
}

/// One condition under which a call needs approval, e.g. `/amount > 100`.
/// See the module docs for the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    pointer: String,
    op: Op,
    literal: Value,
}

impl ApprovalRule {
    /// Parses one rule.
    ///
    /// # Errors
    ///
    /// What is wrong with it, naming the part.
    pub fn parse(text: &str) -> Result<ApprovalRule, String> {
        let text = text.trim();
        let (pointer, rest) = text.split_once(char::is_whitespace).ok_or_else(|| {
            format!("`{text}`: expected `POINTER OP LITERAL`, e.g. `/amount > 100`")
        })?;
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(format!(
                "`{text}`: `{pointer}` is not a JSON Pointer (it must start with `/`)"
            ));
        }
        check_escapes(pointer).map_err(|e| format!("`{text}`: {e}"))?;
        let rest = rest.trim_start();
        let (op_text, literal_text) = rest.split_once(char::is_whitespace).ok_or_else(|| {
            format!("`{text}`: expected an operator and a literal after the pointer")
        })?;
        let op = match op_text {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "matches" => Op::Matches,
            other => {
                return Err(format!(
                    "`{text}`: unknown operator `{other}` (use ==, !=, <, <=, >, >= or matches)"
                ));
            }
        };
        let literal: Value = serde_json::from_str(literal_text.trim()).map_err(|_| {
            format!(
                "`{text}`: `{}` is not a literal (a JSON number, \"string\", true, false or null)",
                literal_text.trim()
            )
        })?;
        match (&literal, op) {
            (Value::Array(_) | Value::Object(_), _) => {
                return Err(format!(
                    "`{text}`: the literal must be a number, string, boolean or null"
                ));
            }
            (Value::Number(_), Op::Lt | Op::Le | Op::Gt | Op::Ge) => {}
            (_, Op::Lt | Op::Le | Op::Gt | Op::Ge) => {
                return Err(format!("`{text}`: `{op_text}` needs a number literal"));
            }
            (Value::String(_), Op::Matches) => {}
            (_, Op::Matches) => {
                return Err(format!(
                    "`{text}`: `matches` needs a string literal (a glob)"
                ));
            }
            _ => {}
        }
        Ok(ApprovalRule {
            pointer: pointer.to_string(),
            op,
            literal,
        })
    }

    /// Whether the rule holds for `arguments`, i.e. the call needs approval.
    /// A missing or mistyped field makes it hold.
    pub fn holds(&self, arguments: &Value) -> bool {
        let Some(field) = arguments.pointer(&self.pointer) else {
            return true;
        };
        match (&self.literal, field) {
            (Value::Number(want), Value::Number(got)) => match number_cmp(got, want) {
                Some(ord) => match self.op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Ne => ord != Ordering::Equal,
                    Op::Lt => ord == Ordering::Less,
                    Op::Le => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Ge => ord != Ordering::Less,
                    Op::Matches => true,
                },
                None => true,
            },
            (Value::String(pattern), Value::String(got)) if self.op == Op::Matches => {
                glob(pattern, got)
            }
            (want, got) if std::mem::discriminant(want) == std::mem::discriminant(got) => {
                match self.op {
                    Op::Eq => want == got,
                    Op::Ne => want != got,
                    _ => true,
                }
            }
            // Missing or mistyped: ask.
            _ => true,
        }
    }
}

impl fmt::Display for ApprovalRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.pointer, self.op.as_str(), self.literal)
    }
}

/// `~` in a JSON Pointer must be `~0` or `~1`.
fn check_escapes(pointer: &str) -> Result<(), String> {
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!("`{pointer}`: `~` must be followed by 0 or 1"));
        }
    }
    Ok(())
}

fn number_cmp(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// Glob match: `*` any run of characters, `?` one character. Backtracks to
/// the last `*` only, so it takes at most O(pattern × text) steps (never
/// exponential).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(rule: &str, args: Value) -> bool {
        ApprovalRule::parse(rule).expect("rule parses").holds(&args)
    }

    #[test]
    fn number_comparisons() {
        assert!(holds("/amount > 100", json!({"amount": 150})));
        assert!(!holds("/amount > 100", json!({"amount": 100})));
        assert!(holds("/amount >= 100", json!({"amount": 100})));
        assert!(!holds("/amount < 1.5", json!({"amount": 2})));
        assert!(holds("/amount <= 1.5", json!({"amount": 1.5})));
        assert!(holds("/amount == 1", json!({"amount": 1.0})));
        assert!(holds("/amount != 1", json!({"amount": 2})));
    }

    #[test]
    fn missing_or_mistyped_field_needs_approval() {
        assert!(holds("/amount > 100", json!({})));
        assert!(holds("/amount > 100", json!({"amount": "5"})));
        assert!(holds("/amount > 100", json!({"amount": null})));
        assert!(holds("/force == false", json!({"force": "false"})));
        assert!(holds("/path matches \"/out/*\"", json!({"path": 3})));
    }

    #[test]
    fn strings_booleans_and_nested_pointers() {
        assert!(holds("/mode == \"fast\"", json!({"mode": "fast"})));
        assert!(!holds("/mode == \"fast\"", json!({"mode": "slow"})));
        assert!(holds("/a/b/0 == true", json!({"a": {"b": [true]}})));
        assert!(holds("/a~1b == 1", json!({"a/b": 1})));
    }

    #[test]
    fn glob_matching() {
        assert!(holds(
            "/path matches \"/out/*\"",
            json!({"path": "/out/a/b.txt"})
        ));
        assert!(!holds("/path matches \"/out/*\"", json!({"path": "/in/a"})));
        assert!(holds("/p matches \"a?c\"", json!({"p": "abc"})));
        assert!(!holds("/p matches \"a?c\"", json!({"p": "abbc"})));
        assert!(holds("/p matches \"*.csv\"", json!({"p": "x.y.csv"})));
        assert!(glob("", ""));
        assert!(glob("**", "anything"));
        assert!(!glob("a*b*c", "aXbY"));
    }

    #[test]
    fn invalid_rules_are_refused_naming_the_part() {
        for (rule, part) in [
            ("amount > 100", "not a JSON Pointer"),
            ("/amount", "expected"),
            ("/amount >", "expected an operator"),
            ("/amount ~= 1", "unknown operator"),
            ("/amount > \"x\"", "needs a number"),
            ("/path matches 3", "needs a string"),
            ("/amount > 1e", "not a literal"),
            ("/x == [1]", "number, string"),
            ("/a~2 == 1", "`~` must be"),
        ] {
            let err = ApprovalRule::parse(rule).expect_err(rule);
            assert!(err.contains(part), "{rule}: {err}");
        }
    }

    #[test]
    fn rules_display_as_written() {
        let rule = ApprovalRule::parse("/path   matches  \"/out/*\"").expect("parses");
        assert_eq!(rule.to_string(), "/path matches \"/out/*\"");
    }
}
