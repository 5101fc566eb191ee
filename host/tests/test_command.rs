//! `portcullis test`: the bundled plugins pass their tests files, and a
//! failing case makes the command exit non-zero in every output format.
//! Uses the real binary and the bundled plugins (run `plugins/build.sh`
//! first; the README's test command does).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn cache_dir() -> &'static Path {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

fn portcullis(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("PORTCULLIS_CACHE_DIR", cache_dir())
        .output()
        .expect("run portcullis")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `portcullis test` on a manifest under `plugins/` and checks that
/// every case passed.
fn passes_its_tests_files(manifest: &str) {
    let manifest = root().join(manifest);
    assert!(
        manifest.is_file(),
        "`{}` is missing: run `plugins/build.sh` first (the README's test command does)",
        manifest.display()
    );
    let out = portcullis(&[Path::new("test"), &manifest]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "{stdout}");
}

#[test]
fn the_bundled_plugins_pass_their_tests_files() {
    passes_its_tests_files("plugins/portcullis.toml");
}

/// The Python and JavaScript plugins, as `plugins/build.sh` pinned them
/// into `dist/languages.toml`.
#[test]
fn the_language_plugins_pass_their_tests_files() {
    passes_its_tests_files("plugins/dist/languages.toml");
}

/// The `json` plugin with one passing and one failing case.
fn failing_suite() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let component = root().join("plugins/dist/json.wasm");
    let sha = text(&portcullis(&[Path::new("hash"), &component]).stdout);
    let sha = sha.split_whitespace().next().expect("a hash");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            "[plugins.json]\nsource = {:?}\nsha256 = \"{sha}\"\n",
            component.display().to_string()
        ),
    )
    .expect("write manifest");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    std::fs::write(
        dir.path().join("tests/json.toml"),
        r#"
[[case]]
name = "length of three"
tool = "length"
arguments = { value = [1, 2, 3] }
expect.output = 3

[[case]]
name = "wrong on purpose <&>"
tool = "length"
arguments = { value = [1, 2] }
expect.output = 5
"#,
    )
    .expect("write tests");
    dir
}

#[test]
fn a_failing_case_exits_non_zero_in_every_format() {
    let dir = failing_suite();
    let manifest = dir.path().join("portcullis.toml");

    let out = portcullis(&[Path::new("test"), &manifest]);
    assert_eq!(out.status.code(), Some(1));
    let table = text(&out.stdout);
    assert!(table.contains("FAILED"), "{table}");
    assert_eq!(table.lines().last(), Some("1 passed, 1 failed"), "{table}");

    let out = portcullis(&[
        Path::new("test"),
        &manifest,
        Path::new("--format"),
        Path::new("json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["passed"], 1);
    assert_eq!(doc["failed"], 1);
    assert_eq!(doc["cases"][1]["passed"], false);

    let out = portcullis(&[
        Path::new("test"),
        &manifest,
        Path::new("--format"),
        Path::new("junit"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let xml = text(&out.stdout);
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(xml.contains("wrong on purpose &lt;&amp;&gt;"), "{xml}");

    // A filter that selects only the passing tool's cases... both are
    // `length`, so filtering by another tool runs nothing and passes.
    let out = portcullis(&[Path::new("test"), &manifest, Path::new("json.keys")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn a_manifest_without_tests_files_is_a_configuration_error() {
    let dir = failing_suite();
    std::fs::remove_dir_all(dir.path().join("tests")).expect("rm");
    let out = portcullis(&[Path::new("test"), &dir.path().join("portcullis.toml")]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn fixture_cases_run_through_the_egress_gate_and_never_show_the_secret() {
    // The bundled suite: a fixture-served success, denials, a secret
    // injection assertion and limit hits.
    let manifest = root().join("plugins/tests/tracker/portcullis.toml");
    let out = portcullis(&[Path::new("test"), &manifest]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("lists the tracker's issues"), "{stdout}");

    // A case claiming the bound secret does not arrive fails, naming the
    // header and never its value.
    let token = "fixture-test-token-0123456789";
    let dir = issues_folder(
        token,
        r#"destinations = ["https://issues.example.com/api/v1"]
inject = { header = "Authorization", format = "Bearer {}" }"#,
        r#"http = ["https://issues.example.com/api/v1/"]"#,
        r#"
[[case]]
name = "claims no credential is sent"
tool = "list"
expect.output = { count = 0 }
[[case.fixture]]
url = "https://issues.example.com/api/v1/issues?limit=20"
json = []
absent_headers = ["authorization"]
"#,
    );
    let out = portcullis(&[Path::new("test"), &dir.path().join("portcullis.toml")]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("received a `authorization` header"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(token) && !stderr.contains(token),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn a_writing_case_leaves_the_granted_folder_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("a.txt"), "original").expect("write");
    let component = root().join("plugins/dist/files.wasm");
    let sha = text(&portcullis(&[Path::new("hash"), &component]).stdout);
    let sha = sha.split_whitespace().next().expect("a hash");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            "[plugins.files]\nsource = {:?}\nsha256 = \"{sha}\"\ndirs = [{{ host = \"data\", guest = \"/data\", mode = \"read-write\" }}]\n",
            component.display().to_string()
        ),
    )
    .expect("write manifest");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    std::fs::write(
        dir.path().join("tests/files.toml"),
        r#"
[[case]]
name = "writes a new file"
tool = "write_file"
arguments = { path = "/data/new.txt", content = "written by a case" }
expect.output = {}

[[case]]
name = "overwrites an existing file"
tool = "write_file"
arguments = { path = "/data/a.txt", content = "changed" }
expect.output = {}

[[case]]
name = "each case starts from the original folder"
tool = "read_file"
arguments = { path = "/data/new.txt" }
expect.error = "not-found"
"#,
    )
    .expect("write tests");
    let out = portcullis(&[Path::new("test"), &dir.path().join("portcullis.toml")]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.ends_with("3 passed, 0 failed\n"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(data.join("a.txt")).expect("read"),
        "original"
    );
    assert!(
        !data.join("new.txt").exists(),
        "the case wrote into the author's folder"
    );
}

// ---------------------------------------------------------------------------
// `--record`: a real loopback upstream, recorded, then shut down.

/// The token of the recording tests (a made-up value).
const TOKEN: &str = "record-test-token-0123456789abcdef";

/// A loopback issue tracker that is careless with credentials: its one
/// issue's title and an `x-echo` header repeat the request target and the
/// `Authorization` header it received.
struct Upstream {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut target = String::new();
                let mut auth = String::new();
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                if let Some(t) = line.split_whitespace().nth(1) {
                    target = t.to_string();
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("authorization")
                    {
                        auth = v.trim().to_string();
                    }
                }
                let seen = format!("seen {target} with {auth}");
                let body = serde_json::json!([{ "id": 1, "title": seen, "state": "open" }]);
                let body = body.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-echo: {seen}\r\nset-cookie: session={auth}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Upstream {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening: the port refuses connections from now on.
    fn shut_down(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("upstream thread");
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A folder with the issues plugin allowed to reach `api` (loopback, so
/// `allow_private`), secret `tracker` bound to it and injected as `inject`,
/// and a tests file with one case whose fixture is out of date.
fn recording_suite(api: &str, inject: &str) -> tempfile::TempDir {
    issues_folder(
        TOKEN,
        &format!(
            r#"destinations = [{{ url = "{api}", allow_private = true }}]
inject = {inject}"#
        ),
        &format!(r#"http = [{{ url = "{api}/", allow_private = true }}]"#),
        &format!(
            r#"# The author's notes stay.
[[case]]
name = "lists the tracker's one issue"
tool = "list"
arguments = {{ base_url = "{api}" }}
expect.output = {{ count = 1 }}
[[case.fixture]]
url = "{api}/issues?limit=20"
json = []
absent_headers = ["cookie"]

[[case]]
name = "a tracker outside the allowlist is denied"
tool = "list"
arguments = {{ base_url = "https://evil.example/api/v1" }}
expect.error = "denied"
"#
        ),
    )
}

/// A folder with the issues plugin (granted `http`, the TOML line), secret
/// `tracker` holding `token` and bound as `binding` says (its
/// `destinations` and `inject` lines), and `tests/issues.toml` holding
/// `tests`.
fn issues_folder(token: &str, binding: &str, http: &str, tests: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("tracker.token"), token).expect("token");
    let component = root().join("plugins/dist/issues.wasm");
    let sha = text(&portcullis(&[Path::new("hash"), &component]).stdout);
    let sha = sha.split_whitespace().next().expect("a hash");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            r#"[secrets.tracker]
source = "file:tracker.token"
{binding}

[plugins.issues]
source = {:?}
sha256 = "{sha}"
{http}
secrets = ["tracker"]
"#,
            component.display().to_string()
        ),
    )
    .expect("write manifest");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    std::fs::write(dir.path().join("tests/issues.toml"), tests).expect("write tests");
    dir
}

/// Every file under `dir`, as text.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).expect("ls") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.push_str(&all_text(&path));
        } else if path.file_name().is_some_and(|n| n != "tracker.token") {
            out.push_str(&String::from_utf8_lossy(
                &std::fs::read(&path).expect("read"),
            ));
        }
    }
    out
}

/// Records the suite, shuts the upstream down, runs the suite offline.
/// Returns the tests file as recorded.
fn record_then_replay(inject: &str) -> String {
    let mut upstream = Upstream::start();
    let api = format!("http://{}/api/v1", upstream.addr);
    let dir = recording_suite(&api, inject);
    let manifest = dir.path().join("portcullis.toml");
    let out = portcullis(&[Path::new("test"), &manifest, Path::new("--record")]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("recorded 1 exchange(s) of 1 case(s)"),
        "{stdout}"
    );
    upstream.shut_down();

    let recorded = std::fs::read_to_string(dir.path().join("tests/issues.toml")).expect("read");
    assert!(
        recorded.starts_with("# The author's notes stay."),
        "{recorded}"
    );
    assert!(recorded.contains("[redacted:tracker]"), "{recorded}");
    assert!(!recorded.contains("addresses"), "{recorded}");
    assert!(!recorded.contains("set-cookie"), "{recorded}");
    assert!(
        recorded.contains("absent_headers = [\"cookie\"]"),
        "{recorded}"
    );
    for what in [&stdout, &stderr, &all_text(dir.path())] {
        assert!(!what.contains(TOKEN), "{what}");
    }

    let out = portcullis(&[Path::new("test"), &manifest]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.ends_with("2 passed, 0 failed\n"), "{stdout}");
    recorded
}

#[test]
fn a_recorded_suite_passes_offline_once_the_upstream_is_gone() {
    let recorded = record_then_replay(r#"{ header = "Authorization", format = "Bearer {}" }"#);
    // The injected header is expected by name; the echo is scrubbed.
    assert!(
        recorded.contains("expect_headers = [\"authorization\"]"),
        "{recorded}"
    );
    assert!(
        recorded.contains("with Bearer [redacted:tracker]"),
        "{recorded}"
    );
}

#[test]
fn the_secret_value_appears_nowhere_in_the_recorded_files() {
    // In the URL this time (query injection), echoed in a header and the
    // body; offline, the scrubbed URL matches the re-injected one.
    let recorded = record_then_replay(r#"{ query = "api_key" }"#);
    assert!(
        recorded.contains("?limit=20&api_key=[redacted:tracker]"),
        "{recorded}"
    );
}

#[test]
fn a_failed_recording_leaves_the_tests_file_untouched() {
    let mut upstream = Upstream::start();
    let api = format!("http://{}/api/v1", upstream.addr);
    upstream.shut_down();
    let dir = recording_suite(
        &api,
        r#"{ header = "Authorization", format = "Bearer {}" }"#,
    );
    let tests = dir.path().join("tests/issues.toml");
    let before = std::fs::read(&tests).expect("read");
    let out = portcullis(&[
        Path::new("test"),
        &dir.path().join("portcullis.toml"),
        Path::new("--record"),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("cannot record `GET "), "{stdout}");
    assert!(stdout.contains("the tests files are unchanged"), "{stdout}");
    assert_eq!(std::fs::read(&tests).expect("read"), before);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tests"))
            .expect("ls")
            .count(),
        1,
        "no temporary file is left behind"
    );

    // The upstream answers and one case records, but another fails its
    // expectation: nothing is written either.
    let upstream = Upstream::start();
    let api = format!("http://{}/api/v1", upstream.addr);
    let dir = recording_suite(
        &api,
        r#"{ header = "Authorization", format = "Bearer {}" }"#,
    );
    let tests = dir.path().join("tests/issues.toml");
    let mut edited = std::fs::read_to_string(&tests).expect("read");
    edited.push_str(&format!(
        "\n[[case]]\nname = \"expects too many\"\ntool = \"list\"\narguments = {{ base_url = \"{api}\" }}\nexpect.output = {{ count = 5 }}\n"
    ));
    std::fs::write(&tests, &edited).expect("write");
    let out = portcullis(&[
        Path::new("test"),
        &dir.path().join("portcullis.toml"),
        Path::new("--record"),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("2 passed, 1 failed"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&tests).expect("read"), edited);
    drop(upstream);
}
