//! `portcullis test`: run each plugin's tests file through the real host.
//!
//! The cases of plugin `NAME` are in `tests/NAME.toml` (or `.json`) beside
//! the manifest. Each case names a tool, its arguments and what is
//! expected: an output matched as a JSON subset, JSON Pointer equalities,
//! or a typed error kind. The host is built from the manifest exactly as
//! `portcullis call` builds it (pins, grants, limits, egress), except that
//! every approval is granted, so a case tests the tool, not the approver,
//! and HTTP is served offline by the case's fixtures ([`fixtures`]) behind
//! the real egress gate.
//! Results print as a table with a `N passed, N failed` line, as JSON or as
//! JUnit XML; any failure exits with 1. With `--record` the cases run
//! against the real upstreams instead and their fixtures are written back
//! ([`record`]).

mod copies;
mod fixtures;
mod record;

use super::Failure;
use portcullis::{
    ApprovalRequest, Approver, CallContext, Decision, Error, Fixtures, HostBuilder, ToolError,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
A tests file (tests/PLUGIN.toml beside the manifest):

  [[case]]
  name = \"lists the sample folder\"
  tool = \"list_dir\"                       # the tool, without the plugin
  arguments = { path = \"/sample\" }        # default {}
  expect.output = { entries = [] }         # a JSON subset of the output
  expect.pointers = { \"/entries/0/name\" = \"a.txt\" }   # JSON Pointer equalities

  [[case]]
  name = \"a missing file is not-found\"
  tool = \"read_file\"
  arguments = { path = \"/sample/none\" }
  expect.error = \"not-found\"

  [[case]]
  name = \"the token goes to the tracker\"
  tool = \"list\"
  expect.output = { count = 0 }
  [[case.fixture]]                        # served offline by the real gate
  method = \"GET\"                          # default GET
  url = \"https://issues.example.com/api/v1/issues?limit=20\"
  request_body = \"...\"                    # optional: the body must equal it
  addresses = [\"8.8.8.8\"]                 # what the host resolves to (default)
  status = 200                            # default 200
  headers = { etag = \"x\" }
  json = []                               # or body = \"text\"
  delay_ms = 0
  expect_headers = [\"authorization\"]      # must arrive; value never in the result
  absent_headers = [\"cookie\"]             # must not arrive

Every request passes the egress gate as in production (allowlist, address
check, method and path rules, secret binding and injection, limits, audit
records); only the send is answered by the case's fixtures. A host name
resolves only to its fixtures' addresses, so nothing reaches the network.

Recording (--record): the cases run against the real allowlisted upstreams
instead, through the same gate (names resolve as in production), and each
case's [[case.fixture]] tables are replaced by what its requests got, in the
tests file itself. Secret values are scrubbed from everything written (URL,
request body, response headers and body read [redacted:NAME]; a request
header that carried a secret is listed by name in expect_headers); `date`
and cookie headers are left out. A case with `record = false` keeps its
fixtures and runs offline. Nothing is written unless every case passes; a
file is replaced whole (a temporary file renamed over it), and only if it
did not change meanwhile. A TOML file keeps its comments; a JSON file is
rewritten with sorted keys. Offline, a `[redacted:NAME]` in a fixture's URL
or request_body matches whatever value the secret has.

Error kinds: invalid-input, not-found, denied, internal (the tool's own),
validation (arguments refused by the schema), limit or limit:NAME (fuel,
memory, resources, time, output), approval-denied, suspicious, crashed,
invalid-output, unknown-tool. The same structure in JSON: tests/PLUGIN.json.

Examples:
  portcullis test plugins/portcullis.toml
  portcullis test plugins/portcullis.toml files.read_file --format junit
  portcullis test plugins/portcullis.toml issues --record")]
pub(crate) struct Args {
    /// The manifest (`portcullis.toml`).
    pub(crate) manifest: PathBuf,
    /// Only this plugin (`PLUGIN`) or tool (`PLUGIN.TOOL`).
    filter: Option<String>,
    /// How to print the results.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Run the cases against the real upstreams and write what they
    /// answered into the tests files as fixtures, secrets scrubbed.
    #[arg(long)]
    record: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A table and a `N passed, N failed` line.
    Table,
    /// One JSON document.
    Json,
    /// JUnit XML, for CI.
    Junit,
}

/// One tests file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestsFile {
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    tool: String,
    #[serde(default = "empty_object")]
    arguments: Value,
    expect: Expect,
    /// The HTTP exchanges the case serves offline.
    #[serde(default)]
    fixture: Vec<fixtures::Spec>,
    /// `false`: `--record` keeps this case's fixtures (a denial or limit
    /// they stage) and runs it offline.
    #[serde(default = "yes")]
    record: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    output: Option<Value>,
    #[serde(default)]
    pointers: serde_json::Map<String, Value>,
    error: Option<String>,
}

fn empty_object() -> Value {
    json!({})
}

/// The outcome of one case.
#[derive(Debug)]
struct Outcome {
    plugin: String,
    tool: String,
    case: String,
    /// `None` when it passed, else why not.
    failure: Option<String>,
}

/// Every approval granted: a case tests the tool, not the approver.
#[derive(Debug)]
struct ApproveAll;

impl Approver for ApproveAll {
    fn decide(&self, request: &ApprovalRequest) -> Decision {
        request.approve_by("portcullis test")
    }
}

/// Runs the cases; `make` gives a host builder for a manifest (the one
/// given, or a per-case copy granting temporary copies of its folders).
pub(crate) async fn run(
    args: &Args,
    make: impl Fn(&Path) -> HostBuilder,
) -> Result<ExitCode, Failure> {
    let served = Arc::new(Fixtures::default());
    let build = |manifest: &Path| {
        make(manifest)
            .approver(ApproveAll)
            .http_fixtures(Arc::clone(&served))
            .build()
    };
    let host = build(&args.manifest).await?;
    let base = args
        .manifest
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let (only_plugin, only_tool) = match args.filter.as_deref() {
        None => (None, None),
        Some(f) => match f.split_once('.') {
            Some((p, t)) => (Some(p), Some(t)),
            None => (Some(f), None),
        },
    };
    let mut outcomes = Vec::new();
    let mut files = 0;
    let mut recording = record::Recording::default();
    for policy in host.policies() {
        if only_plugin.is_some_and(|p| p != policy.name) {
            continue;
        }
        let Some((path, text, cases)) = read_cases(&base, &policy.name)? else {
            continue;
        };
        files += 1;
        for (index, case) in cases.into_iter().enumerate() {
            if only_tool.is_some_and(|t| t != case.tool) {
                continue;
            }
            let qualified = format!("{}.{}", policy.name, case.tool);
            let records = args.record && case.record;
            if records {
                served.record();
            } else {
                served.set(case.fixture.iter().map(fixtures::Spec::fixture).collect());
            }
            let arguments = case.arguments.to_string();
            let writable = policy
                .dirs
                .iter()
                .any(|d| d.mode == portcullis::DirMode::ReadWrite);
            let result = if !writable {
                host.call(&qualified, &arguments, &CallContext::new()).await
            } else {
                // A plugin that may write gets fresh copies of its folders
                // per case: the author's stay as they are. (Read-only
                // grants cannot be changed; copying them costs a load.)
                let copies = copies::Copies::make(&args.manifest, policy)?;
                let copied = build(&copies.manifest()).await?;
                copied
                    .call(&qualified, &arguments, &CallContext::new())
                    .await
            }
            .map(|out| out.value);
            let shown = match &result {
                Ok(value) => value.to_string(),
                Err(e) => e.to_string(),
            };
            let received = served.take_received();
            let recorded = records.then(|| record::specs(&case.fixture, &served.take_recorded()));
            let specs = match &recorded {
                Some(Ok(specs)) => specs,
                _ => &case.fixture,
            };
            let failure = match &recorded {
                Some(Err(why)) => Some(why.clone()),
                _ => judge(&case.expect, result)
                    .and_then(|()| fixtures::judge(specs, &received, &shown))
                    .err(),
            };
            if let Some(Ok(specs)) = recorded
                && !specs.is_empty()
            {
                recording.case(&path, &text, index, &case.name, specs);
            }
            outcomes.push(Outcome {
                plugin: policy.name.clone(),
                tool: case.tool.clone(),
                failure,
                case: case.name,
            });
        }
    }
    if files == 0 {
        return Err(Failure::Config {
            message: format!(
                "no tests file for {} in `{}`",
                args.filter
                    .as_deref()
                    .unwrap_or("any plugin of the manifest"),
                base.join("tests").display()
            ),
            hint: Some(
                "write tests/PLUGIN.toml beside the manifest (see `portcullis test --help`)".into(),
            ),
        });
    }
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    let passed = outcomes.len() - failed;
    match args.format {
        Format::Table => print_table(&outcomes, passed, failed),
        Format::Json => print_json(&outcomes, passed, failed),
        Format::Junit => print_junit(&outcomes, failed),
    }
    if args.record {
        // The summary is data in a table run, a note beside JSON or XML.
        let summary = if failed == 0 {
            recording.write()?
        } else {
            format!("recorded nothing: {failed} case(s) failed; the tests files are unchanged\n")
        };
        if args.format == Format::Table {
            outln!("{}", summary.trim_end());
        } else {
            eprint!("{summary}");
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The cases of `plugin`, from `tests/PLUGIN.toml` or `.json`, with that
/// file's path and text; `None` if it has no tests file.
fn read_cases(base: &Path, plugin: &str) -> Result<Option<(PathBuf, String, Vec<Case>)>, Failure> {
    for ext in ["toml", "json"] {
        let path = base.join("tests").join(format!("{plugin}.{ext}"));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Failure::Config {
                    message: format!("cannot read `{}`: {e}", path.display()),
                    hint: None,
                });
            }
        };
        let parsed: Result<TestsFile, String> = if ext == "toml" {
            toml::from_str(&text).map_err(|e| e.to_string())
        } else {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        };
        let file = parsed.map_err(|e| Failure::Config {
            message: format!("`{}` is not a valid tests file: {e}", path.display()),
            hint: Some("see `portcullis test --help` for the format".into()),
        })?;
        for case in &file.case {
            fixtures::check(&case.fixture).map_err(|why| Failure::Config {
                message: format!("`{}`: case `{}`: {why}", path.display(), case.name),
                hint: Some("see `portcullis test --help` for the format".into()),
            })?;
            let e = &case.expect;
            if e.error.is_some() && (e.output.is_some() || !e.pointers.is_empty()) {
                return Err(Failure::Config {
                    message: format!(
                        "`{}`: case `{}` expects both an error and an output",
                        path.display(),
                        case.name
                    ),
                    hint: None,
                });
            }
        }
        return Ok(Some((path, text, file.case)));
    }
    Ok(None)
}

/// Whether a call's result is what the case expects; why not otherwise.
fn judge(expect: &Expect, result: Result<Value, Error>) -> Result<(), String> {
    match (result, &expect.error) {
        (Ok(value), None) => {
            if let Some(output) = &expect.output
                && !is_subset(output, &value)
            {
                return Err(format!("output {value} does not contain {output}"));
            }
            for (pointer, want) in &expect.pointers {
                match value.pointer(pointer) {
                    Some(got) if got == want => {}
                    Some(got) => return Err(format!("{pointer} is {got}, expected {want}")),
                    None => return Err(format!("{pointer} is absent from {value}")),
                }
            }
            Ok(())
        }
        (Ok(value), Some(kind)) => Err(format!("expected error `{kind}`, got output {value}")),
        (Err(e), None) => Err(format!("expected an output, got {} ({e})", error_kind(&e))),
        (Err(e), Some(kind)) => {
            let got = error_kind(&e);
            if got == *kind || (kind == "limit" && got.starts_with("limit:")) {
                Ok(())
            } else {
                Err(format!("expected error `{kind}`, got `{got}` ({e})"))
            }
        }
    }
}

/// The typed kind of a call's error, as tests files name it.
fn error_kind(e: &Error) -> String {
    match e {
        Error::Tool { error, .. } => match error {
            ToolError::InvalidInput(_) => "invalid-input",
            ToolError::NotFound(_) => "not-found",
            ToolError::Denied(_) => "denied",
            ToolError::Internal(_) => "internal",
            _ => "tool-error",
        }
        .into(),
        Error::InvalidArguments { .. } => "validation".into(),
        Error::LimitExceeded { limit, .. } => format!("limit:{}", limit.as_str()),
        Error::ApprovalDenied { .. } => "approval-denied".into(),
        Error::Suspicious { .. } => "suspicious".into(),
        Error::Crashed { .. } => "crashed".into(),
        Error::InvalidOutput { .. } => "invalid-output".into(),
        Error::UnknownTool { .. } => "unknown-tool".into(),
        _ => "error".into(),
    }
}

/// Every member of `want` is in `got`: objects by key (extra keys allowed),
/// arrays element by element with the same length, the rest by equality.
fn is_subset(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| is_subset(v, gv))),
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| is_subset(a, b))
        }
        _ => want == got,
    }
}

fn print_table(outcomes: &[Outcome], passed: usize, failed: usize) {
    let width = outcomes
        .iter()
        .map(|o| o.plugin.len() + o.tool.len() + 1)
        .max()
        .unwrap_or(4)
        .max(4);
    outln!("{:<6} {:<width$} case", "result", "tool");
    for o in outcomes {
        let tool = format!("{}.{}", o.plugin, o.tool);
        match &o.failure {
            None => outln!("{:<6} {tool:<width$} {}", "ok", o.case),
            Some(why) => outln!("{:<6} {tool:<width$} {}\n       {why}", "FAILED", o.case),
        }
    }
    outln!("{passed} passed, {failed} failed");
}

fn print_json(outcomes: &[Outcome], passed: usize, failed: usize) {
    let cases: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            json!({
                "plugin": o.plugin,
                "tool": o.tool,
                "case": o.case,
                "passed": o.failure.is_none(),
                "failure": o.failure,
            })
        })
        .collect();
    let doc = json!({ "passed": passed, "failed": failed, "cases": cases });
    outln!("{doc:#}");
}

fn print_junit(outcomes: &[Outcome], failed: usize) {
    outln!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    outln!(
        "<testsuite name=\"portcullis\" tests=\"{}\" failures=\"{failed}\">",
        outcomes.len()
    );
    for o in outcomes {
        let class = xml(&format!("{}.{}", o.plugin, o.tool));
        let name = xml(&o.case);
        match &o.failure {
            None => outln!("  <testcase classname=\"{class}\" name=\"{name}\"/>"),
            Some(why) => {
                let why = xml(why);
                outln!(
                    "  <testcase classname=\"{class}\" name=\"{name}\">\n    <failure message=\"{why}\"/>\n  </testcase>"
                );
            }
        }
    }
    outln!("</testsuite>");
}

/// Escapes text for an XML attribute; control characters XML cannot hold
/// become spaces.
fn xml(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&apos;".into(),
            '\n' | '\t' | '\r' => c.to_string(),
            c if c.is_control() => " ".into(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_subset_allows_extra_keys_but_not_extra_elements() {
        let got = json!({"a": 1, "b": [{"x": 1, "y": 2}], "c": "z"});
        assert!(super::is_subset(&json!({"b": [{"x": 1}]}), &got));
        assert!(!super::is_subset(&json!({"b": []}), &got));
        assert!(!super::is_subset(&json!({"a": 2}), &got));
        assert!(!super::is_subset(&json!({"d": null}), &got));
    }

    #[test]
    fn junit_text_is_escaped() {
        assert_eq!(
            super::xml("<a & \"b\">\u{1}"),
            "&lt;a &amp; &quot;b&quot;&gt; "
        );
    }
}
