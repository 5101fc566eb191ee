//! `portcullis test --record`: the fixtures of each recorded case, made
//! from the exchanges its real upstreams had through the egress gate
//! ([`portcullis::Fixtures::record`], every secret value already scrubbed
//! there), written back into the tests file the case came from.
//!
//! Nothing is written unless every case ran as its tests file expects. A
//! file is written whole: the new text goes to a temporary file beside it,
//! which is renamed over it, and only if the file still holds what was
//! read before the run (an editor's save in between is never lost). A TOML
//! file keeps its comments and layout (only each recorded case's
//! `[[case.fixture]]` tables are replaced); a JSON file is rewritten with
//! its keys in alphabetical order.

use super::Failure;
use super::fixtures::Spec;
use portcullis::Recorded;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The recorded cases of one run, by tests file.
#[derive(Debug, Default)]
pub(super) struct Recording {
    files: Vec<FileEdits>,
}

#[derive(Debug)]
struct FileEdits {
    path: PathBuf,
    /// The text the cases were read from.
    original: String,
    /// Index of the case in the file, its name, its new fixtures.
    cases: Vec<(usize, String, Vec<Spec>)>,
}

/// The fixtures standing for a case's recorded exchanges (see
/// [`Spec::recorded`]), or why there can be none.
pub(super) fn specs(old: &[Spec], recorded: &[Recorded]) -> Result<Vec<Spec>, String> {
    for r in recorded {
        if let Some(why) = &r.failed {
            return Err(format!(
                "cannot record `{} {}`: {why}",
                r.fixture.method, r.fixture.url
            ));
        }
    }
    Ok(recorded.iter().map(|r| Spec::recorded(r, old)).collect())
}

impl Recording {
    /// Keeps case `index` of the tests file at `path` (read as
    /// `original`), recorded as `specs`.
    pub(super) fn case(
        &mut self,
        path: &Path,
        original: &str,
        index: usize,
        name: &str,
        specs: Vec<Spec>,
    ) {
        let file = match self.files.iter_mut().position(|f| f.path == path) {
            Some(i) => &mut self.files[i],
            None => {
                self.files.push(FileEdits {
                    path: path.to_path_buf(),
                    original: original.to_string(),
                    cases: Vec::new(),
                });
                self.files.last_mut().expect("just pushed")
            }
        };
        file.cases.push((index, name.to_string(), specs));
    }

    /// Writes every file, each whole; returns the summary to print.
    pub(super) fn write(self) -> Result<String, Failure> {
        let fail = |path: &Path, why: String| Failure::Config {
            message: format!("cannot record into `{}`: {why}", path.display()),
            hint: Some("the file is unchanged; fix the cause and record again".into()),
        };
        // Every new text first: a file that cannot take its fixtures stops
        // the run before any file is written.
        let mut texts = Vec::new();
        for file in &self.files {
            let text = if file.path.extension().is_some_and(|e| e == "json") {
                edit_json(&file.original, &file.cases)
            } else {
                edit_toml(&file.original, &file.cases)
            }
            .map_err(|why| fail(&file.path, why))?;
            texts.push(text);
        }
        let mut summary = String::new();
        for (file, text) in self.files.iter().zip(texts) {
            replace(&file.path, &file.original, &text).map_err(|why| fail(&file.path, why))?;
            let exchanges: usize = file.cases.iter().map(|(_, _, s)| s.len()).sum();
            let _ = writeln!(
                summary,
                "recorded {exchanges} exchange(s) of {} case(s) into `{}`",
                file.cases.len(),
                file.path.display()
            );
            for (_, name, specs) in &file.cases {
                let _ = writeln!(summary, "  {name}");
                for spec in specs {
                    let _ = writeln!(
                        summary,
                        "    {} {} -> {}",
                        spec.method, spec.url, spec.status
                    );
                }
            }
        }
        if self.files.is_empty() {
            summary.push_str("recorded nothing: no case made an HTTP request\n");
        }
        summary.push_str(
            "secret values are written as [redacted:NAME]; request headers that carried one are listed in expect_headers by name only\n",
        );
        Ok(summary)
    }
}

/// `original` with each recorded case's `[[case.fixture]]` tables
/// replaced; everything else as it was.
fn edit_toml(original: &str, cases: &[(usize, String, Vec<Spec>)]) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = original.parse().map_err(|e| format!("{e}"))?;
    let Some(array) = doc
        .get_mut("case")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
    else {
        return Err("its cases are not `[[case]]` tables".into());
    };
    for (index, name, specs) in cases {
        let case = array
            .get_mut(*index)
            .ok_or_else(|| format!("case `{name}` is no longer in it"))?;
        case.remove("fixture");
        if specs.is_empty() {
            continue;
        }
        let mut tables = toml_edit::ArrayOfTables::new();
        for (i, spec) in specs.iter().enumerate() {
            let mut table = table(spec)?;
            if i == 0 {
                table
                    .decor_mut()
                    .set_prefix("# Recorded by `portcullis test --record`.\n");
            }
            tables.push(table);
        }
        // New tables have no position: they print right after their
        // case's own keys (before the next case).
        case.insert("fixture", toml_edit::Item::ArrayOfTables(tables));
    }
    let text = doc.to_string();
    // What is written must read back as the same cases.
    let _: super::TestsFile = toml::from_str(&text).map_err(|e| format!("{e}"))?;
    Ok(text)
}

/// `original` (JSON) with each recorded case's `fixture` replaced.
fn edit_json(original: &str, cases: &[(usize, String, Vec<Spec>)]) -> Result<String, String> {
    let mut doc: Value = serde_json::from_str(original).map_err(|e| format!("{e}"))?;
    for (index, name, specs) in cases {
        let case = doc
            .get_mut("case")
            .and_then(|c| c.get_mut(*index))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("case `{name}` is no longer in it"))?;
        case.remove("fixture");
        if !specs.is_empty() {
            let specs = serde_json::to_value(specs).map_err(|e| format!("{e}"))?;
            case.insert("fixture".into(), specs);
        }
    }
    let mut text = serde_json::to_string_pretty(&doc).map_err(|e| format!("{e}"))?;
    text.push('\n');
    Ok(text)
}

/// One `[[case.fixture]]` table, in the order `portcullis test --help`
/// documents, defaults left out.
fn table(spec: &Spec) -> Result<toml_edit::Table, String> {
    use toml_edit::{Array, InlineTable, value};
    let strings = |items: &[String]| {
        let mut array = Array::new();
        for item in items {
            array.push(item.as_str());
        }
        value(array)
    };
    let mut t = toml_edit::Table::new();
    if spec.method != "GET" {
        t.insert("method", value(&spec.method));
    }
    t.insert("url", value(&spec.url));
    if let Some(body) = &spec.request_body {
        t.insert("request_body", value(body));
    }
    if !spec.addresses.is_empty() {
        let addresses: Vec<String> = spec.addresses.iter().map(ToString::to_string).collect();
        t.insert("addresses", strings(&addresses));
    }
    if spec.status != 200 {
        t.insert("status", value(i64::from(spec.status)));
    }
    if !spec.headers.is_empty() {
        let mut headers = InlineTable::new();
        for (k, v) in &spec.headers {
            headers.insert(k, v.as_str().into());
        }
        t.insert("headers", value(headers));
    }
    if let Some(json) = &spec.json {
        let mut json = toml_value(json).ok_or("a JSON body has no TOML form")?;
        // One element a line: a recorded list stays readable.
        if let toml_edit::Value::Array(array) = &mut json
            && array.len() > 1
        {
            for item in array.iter_mut() {
                item.decor_mut().set_prefix("\n  ");
            }
            array.set_trailing_comma(true);
            array.set_trailing("\n");
        }
        t.insert("json", value(json));
    }
    if let Some(body) = &spec.body {
        t.insert("body", value(body));
    }
    if spec.delay_ms != 0 {
        let delay = i64::try_from(spec.delay_ms).map_err(|e| format!("{e}"))?;
        t.insert("delay_ms", value(delay));
    }
    if !spec.expect_headers.is_empty() {
        t.insert("expect_headers", strings(&spec.expect_headers));
    }
    if !spec.absent_headers.is_empty() {
        t.insert("absent_headers", strings(&spec.absent_headers));
    }
    Ok(t)
}

/// `json` as a TOML value; `None` when TOML cannot hold it (a `null`, an
/// integer past `i64`).
pub(super) fn toml_value(json: &Value) -> Option<toml_edit::Value> {
    Some(match json {
        Value::Null => return None,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None if n.is_f64() => n.as_f64()?.into(),
            None => return None,
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push(toml_value(item)?);
            }
            array.into()
        }
        Value::Object(map) => {
            let mut table = toml_edit::InlineTable::new();
            for (k, v) in map {
                table.insert(k, toml_value(v)?);
            }
            table.into()
        }
    })
}

/// Replaces the file at `path` with `text`, whole: written to a temporary
/// file beside it and renamed over it, only if it still reads `original`.
fn replace(path: &Path, original: &str, text: &str) -> Result<(), String> {
    let now = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    if now != original {
        return Err("it changed while the cases ran".into());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.recording-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.set_permissions(std::fs::metadata(path)?.permissions())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml: &str) -> Spec {
        toml::from_str(toml).expect("a fixture")
    }

    #[test]
    fn recorded_fixtures_land_in_their_own_case_and_keep_the_comments() {
        let original = r#"# the author's comment
[[case]]
name = "one"
tool = "list"
expect.output = { count = 1 }
[[case.fixture]]
url = "https://old.example/"
body = "old"

[[case]]
name = "two" # kept
tool = "list"
expect.error = "denied"
"#;
        let one = vec![spec(
            "url = \"https://a.example/x?k=[redacted:t]\"\njson = [{ id = 1 }, { id = 2 }]\nexpect_headers = [\"authorization\"]",
        )];
        let two = vec![spec(
            "method = \"POST\"\nurl = \"https://b.example/\"\nstatus = 201\nbody = 'say \"hi\"'",
        )];
        let text =
            edit_toml(original, &[(0, "one".into(), one), (1, "two".into(), two)]).expect("edited");
        assert!(text.starts_with("# the author's comment\n"), "{text}");
        assert!(text.contains("name = \"two\" # kept"), "{text}");
        assert!(!text.contains("old.example"), "{text}");
        let doc: toml::Table = toml::from_str(&text).expect("TOML");
        let cases = doc["case"].as_array().expect("cases");
        assert_eq!(
            cases[0]["fixture"][0]["url"].as_str(),
            Some("https://a.example/x?k=[redacted:t]"),
            "{text}"
        );
        assert_eq!(
            cases[0]["fixture"][0]["json"][1]["id"].as_integer(),
            Some(2)
        );
        assert_eq!(cases[1]["fixture"][0]["status"].as_integer(), Some(201));
        assert_eq!(cases[1]["fixture"][0]["body"].as_str(), Some("say \"hi\""));
        assert_eq!(cases[0]["fixture"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn a_json_tests_file_gets_its_fixtures_in_the_same_structure() {
        let original = r#"{"case": [
            {"name": "one", "tool": "list", "expect": {"output": {"count": 1}},
             "fixture": [{"url": "https://old.example/"}]},
            {"name": "two", "tool": "list", "expect": {"error": "denied"}}
        ]}"#;
        let specs = vec![spec(
            "url = \"https://a.example/x\"\nbody = \"null\"\nexpect_headers = [\"authorization\"]",
        )];
        let text = edit_json(original, &[(0, "one".into(), specs)]).expect("edited");
        let file: super::super::TestsFile = serde_json::from_str(&text).expect("a tests file");
        assert_eq!(file.case.len(), 2);
        assert_eq!(file.case[0].fixture.len(), 1);
        assert_eq!(file.case[0].fixture[0].url, "https://a.example/x");
        assert_eq!(file.case[0].fixture[0].body.as_deref(), Some("null"));
        assert!(file.case[1].fixture.is_empty());
        assert!(!text.contains("old.example"), "{text}");
    }

    #[test]
    fn null_has_no_toml_form() {
        assert!(toml_value(&serde_json::json!({"a": [1, null]})).is_none());
        assert!(toml_value(&serde_json::json!({"a": [1, 2.5, "x", true]})).is_some());
    }

    #[test]
    fn a_file_changed_meanwhile_is_not_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "edited").expect("write");
        assert!(replace(&path, "original", "new").is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "edited");
        replace(&path, "edited", "new").expect("replaced");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
