//! When a call needs a person's approval: the effect a tool declares, the
//! floor its grants raise that effect to, the setting per tool (never,
//! always, or rules), and the rules themselves, decided from the call's
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
//! - Path rules: a rule whose string literal starts with `/` compares
//!   paths, so the field's value is first spelled as the filesystem will
//!   read it (wasi-libc resolves a relative path against `/`): repeated
//!   `/`, `.` segments and a trailing `/` are dropped and `..` never climbs
//!   above `/`. A `..` that removes a segment makes the rule hold: the
//!   segment may be a symlink, so only the filesystem knows where the path
//!   ends. So `{"path": "//out/x"}` is asked about under
//!   `/path matches "/out/*"`.
//! - Fail safe: when the pointer names no field, or a field of another type
//!   than the literal, the rule *holds* and the call asks for approval.
//!
//! Examples: `/amount > 100`, `/path matches "/out/*"`, `/force == true`.

use super::{DirMode, PluginPolicy};
use crate::error::Error;
use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;
use std::path::Path;

/// What running a tool can do to the world outside the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Effect {
    /// Only reads data.
    Read,
    /// Creates or changes data.
    Write,
    /// Deletes data or does something irreversible.
    Destructive,
}

impl Effect {
    /// `read`, `write` or `destructive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Read => "read",
            Effect::Write => "write",
            Effect::Destructive => "destructive",
        }
    }
}

impl PluginPolicy {
    /// Whether any directory grant is read-write.
    pub(crate) fn writable(&self) -> bool {
        self.dirs.iter().any(|d| d.mode == DirMode::ReadWrite)
    }

    /// The least effect the grants allow every tool of the plugin: a
    /// read-write directory or egress with methods beyond `GET` and `HEAD`
    /// makes a tool at least `write`.
    pub(crate) fn effect_floor(&self) -> Effect {
        if self.writable() || self.http.iter().any(|r| r.allows_writes()) {
            Effect::Write
        } else {
            Effect::Read
        }
    }
}

/// When calls of a tool need a person's approval.
///
/// The floor follows the tool's effect as the host sees it (raised by
/// read-write grants): `destructive` always asks and cannot be configured
/// lower; `write` asks unless configured (`never` or rules); `read` never
/// asks unless configured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApprovalSetting {
    /// No approval needed.
    Never,
    /// Every call needs approval.
    Always,
    /// A call needs approval when any rule holds for its arguments.
    Rules(Vec<ApprovalRule>),
}

impl ApprovalSetting {
    /// Why a call with `arguments` needs approval, or `None` if it does not.
    pub fn requires(&self, arguments: &serde_json::Value) -> Option<String> {
        match self {
            ApprovalSetting::Never => None,
            ApprovalSetting::Always => Some("the tool always needs approval".into()),
            ApprovalSetting::Rules(rules) => rules
                .iter()
                .find(|r| r.holds(arguments))
                .map(|r| format!("rule `{r}` holds (or its field is missing or mistyped)")),
        }
    }

    /// `never`, `always`, or the rules joined with ` or `.
    pub fn describe(&self) -> String {
        match self {
            ApprovalSetting::Never => "never".into(),
            ApprovalSetting::Always => "always".into(),
            ApprovalSetting::Rules(rules) => {
                let rules: Vec<String> = rules.iter().map(|r| format!("`{r}`")).collect();
                format!("when {}", rules.join(" or "))
            }
        }
    }
}

/// When each tool of a plugin needs approval: the configured setting, never
/// below the floor of its effect. `tools` are the plugin's tools with their
/// effects already raised to the floor; every configured tool must be one
/// of them.
pub(crate) fn approval_settings(
    policy: &PluginPolicy,
    tools: &[(&str, Effect)],
    origin: &Path,
) -> Result<Vec<ApprovalSetting>, Error> {
    if let Some(unknown) = policy
        .approvals
        .keys()
        .find(|name| !tools.iter().any(|(t, _)| t == name))
    {
        let names: Vec<&str> = tools.iter().map(|(t, _)| *t).collect();
        return Err(Error::manifest(
            origin,
            format!(
                "plugin `{}`: `tools.{unknown}` configures a tool the plugin does not offer",
                policy.name
            ),
        )
        .with_hint(format!("its tools are: {}", names.join(", "))));
    }
    tools
        .iter()
        .map(|&(name, effect)| {
            let configured = policy.approvals.get(name);
            Ok(match (effect, configured) {
                (Effect::Destructive, None | Some(ApprovalSetting::Always)) => {
                    ApprovalSetting::Always
                }
                (Effect::Destructive, Some(_)) => {
                    return Err(Error::manifest(
                        origin,
                        format!(
                            "plugin `{}`: tool `{name}` is destructive, so every call needs approval; `tools.{name}.approval` cannot lower that",
                            policy.name
                        ),
                    )
                    .with_hint(format!("remove `tools.{name}.approval` or set it to \"always\"")));
                }
                (_, Some(setting)) => setting.clone(),
                (Effect::Write, None) => ApprovalSetting::Always,
                (_, None) => ApprovalSetting::Never,
            })
        })
        .collect()
}

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
            (Value::String(want), Value::String(got)) if want.starts_with('/') => {
                let Some(got) = normalise_path(got) else {
                    return true;
                };
                match self.op {
                    Op::Matches => glob(want, &got),
                    Op::Eq => *want == got,
                    Op::Ne => *want != got,
                    _ => true,
                }
            }
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

/// `path` as the filesystem reads it: absolute (a relative path starts at
/// `/`, as wasi-libc's working directory), no empty or `.` segments, no
/// trailing `/`, a `..` at the top staying at `/`. `None` when a `..`
/// removes a segment: that segment may be a symlink, so the lexical result
/// may not be where the path ends.
fn normalise_path(path: &str) -> Option<String> {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_some() {
                    return None;
                }
            }
            other => segments.push(other),
        }
    }
    Some(format!("/{}", segments.join("/")))
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
    fn path_rules_see_every_spelling_of_a_path() {
        let rule = "/path matches \"/out/*\"";
        for path in [
            "/out/x",
            "//out/x",
            "/./out/x",
            "/out/./x",
            "/out//x",
            "/out/x/",
            "out/x",
            "./out/x",
            "/../out/x",
            "/../../out/x",
            "/in/../out/x",
            "/out/sub/../../in/x",
        ] {
            assert!(holds(rule, json!({ "path": path })), "{path}");
        }
        for path in ["/in/x", "//in/x", "/./in//x/", "/../in/x", "/outside/x"] {
            assert!(!holds(rule, json!({ "path": path })), "{path}");
        }
        assert!(holds("/p == \"/a/b\"", json!({"p": "//a/./b/"})));
        assert!(!holds("/p != \"/a/b\"", json!({"p": "/a//b"})));
        assert!(holds("/p != \"/a/b\"", json!({"p": "/a/c/../b"})));
        // Not a path rule: the value is compared as written.
        assert!(!holds("/p matches \"a/*\"", json!({"p": "./a/x"})));
    }

    #[test]
    fn paths_normalise_as_the_filesystem_reads_them() {
        for (path, want) in [
            ("", Some("/")),
            ("/", Some("/")),
            ("//", Some("/")),
            ("/..", Some("/")),
            ("a/b/", Some("/a/b")),
            ("/a/./b//c/", Some("/a/b/c")),
            ("/../../a", Some("/a")),
            ("/a/..", None),
            ("/a/b/../c", None),
        ] {
            assert_eq!(normalise_path(path).as_deref(), want, "{path}");
        }
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
