//! The real Python MCP client (`mcp==2.3.0`, pinned in
//! `tests/python/requirements.txt`) against `portcullis serve` over stdio,
//! in both modes: `auto` (2026-07-28, no handshake) and `legacy`
//! (`initialize`).
//!
//! The client is installed from PyPI into `$CARGO_TARGET_DIR/mcp-venv` on
//! first use (under a lock file, so parallel tests install it once). When
//! that fails, the test fails under `CI=true` and is skipped with a loud
//! message otherwise (no Python, no network).

use super::mcp::{Setup, assert_audit_verifies, portcullis_bin};
use portcullis_tests::repo_root;
use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

/// The target directory (`target/<profile>/deps/<test>` -> `target`).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("the test binary's path");
            exe.ancestors()
                .nth(3)
                .expect("target/<profile>/deps/<test>")
                .to_path_buf()
        })
}

/// The virtualenv's Python with the pinned client, installing it if needed;
/// `None` (after a loud message) when it cannot be installed outside CI.
fn python() -> Option<PathBuf> {
    match install() {
        Ok(python) => Some(python),
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the Python MCP client could not be installed: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "\n!!! SKIPPED: the Python MCP client could not be installed: {reason}\n\
                 !!! (under CI=true this fails the test)\n"
            );
            None
        }
    }
}

fn install() -> Result<PathBuf, String> {
    let requirements = repo_root().join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("{}: {e}", requirements.display()))?;
    let target = target_dir();
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let venv = target.join("mcp-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.installed");
    // One installer at a time; the others wait and then find it done.
    let lock = File::create(target.join("mcp-venv.lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| format!("locking: {e}"))?;
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && python.is_file() {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
    Ok(python)
}

pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn run_client(script: &str, mode: &str) -> Option<String> {
    run_client_with(script, &[mode])
}

/// Runs `script BIN MANIFEST ARGS...`; returns the audit log.
fn run_client_with(script: &str, args: &[&str]) -> Option<String> {
    let python = python()?;
    let setup = Setup::new();
    let output = Command::new(python)
        .arg(repo_root().join("tests/python").join(script))
        .arg(portcullis_bin())
        .arg(setup.manifest())
        .args(args)
        .env("PORTCULLIS_CACHE_DIR", setup.dir.path().join("cache"))
        .output()
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}\n{stderr}");
    assert_audit_verifies(&setup.audit());
    Some(std::fs::read_to_string(setup.audit()).expect("audit log"))
}

#[test]
fn python_client_in_auto_mode_uses_the_2026_era() {
    run_client("stdio_client.py", "auto");
}

#[test]
fn python_client_in_legacy_mode_uses_initialize() {
    run_client("stdio_client.py", "legacy");
}

#[test]
fn python_elicitation_callback_accepting_runs_the_call_in_legacy_mode() {
    let Some(log) = run_client_with("stdio_elicitation.py", &["legacy", "accept"]) else {
        return;
    };
    assert!(log.contains("\"approved\":true"), "{log}");
    assert!(
        log.contains("through MCP elicitation (elicitation/create"),
        "{log}"
    );
}

#[test]
fn python_elicitation_callback_declining_refuses_the_call_in_legacy_mode() {
    let Some(log) = run_client_with("stdio_elicitation.py", &["legacy", "decline"]) else {
        return;
    };
    assert!(
        log.contains("declined by a person through MCP elicitation"),
        "{log}"
    );
    assert!(!log.contains("\"approved\":true"), "{log}");
}

#[test]
fn python_elicitation_callback_accepting_runs_the_call_in_auto_mode() {
    let Some(log) = run_client_with("stdio_elicitation.py", &["auto", "accept"]) else {
        return;
    };
    assert!(
        log.contains("through MCP elicitation (input_required"),
        "{log}"
    );
}

#[test]
fn python_elicitation_callback_declining_refuses_the_call_in_auto_mode() {
    let Some(log) = run_client_with("stdio_elicitation.py", &["auto", "decline"]) else {
        return;
    };
    assert!(
        log.contains("declined by a person through MCP elicitation (input_required"),
        "{log}"
    );
    assert!(!log.contains("\"approved\":true"), "{log}");
}

/// Runs `http_client.py URL TOKEN MODE` against `portcullis serve --http`;
/// returns the audit log.
fn run_http_client(mode: &str) -> Option<String> {
    use super::mcp_http::{HttpServer, TOKEN, TOKEN_NAME};
    let python = python()?;
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &[]);
    let url = format!("http://{}/mcp", server.addr);
    let output = Command::new(python)
        .arg(repo_root().join("tests/python/http_client.py"))
        .args([url.as_str(), TOKEN, mode])
        .output()
        .expect("the client runs");
    server.stop();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}\n{stderr}");
    assert_audit_verifies(&setup.audit());
    let log = std::fs::read_to_string(setup.audit()).expect("audit log");
    let started = super::mcp::call_started(&setup.audit());
    assert_eq!(started["transport"], "http", "{started}");
    assert_eq!(started["authenticated"], TOKEN_NAME, "{started}");
    assert_eq!(started["client_name"], "mcp", "{started}");
    assert!(log.contains("\"approved\":true"), "{log}");
    assert!(log.contains("\"approver\":\"client\""), "{log}");
    Some(log)
}

#[test]
fn python_http_client_in_auto_mode_uses_the_2026_era() {
    run_http_client("auto");
}

#[test]
fn python_http_client_in_legacy_mode_uses_initialize_and_a_session() {
    run_http_client("legacy");
}
