//! The MCP rows of the benchmark: a `tools/call` round trip through
//! `McpServer` against `Host::call` of the same tool, side by side.
//!
//! - stdio: a client in this process drives `McpServer::serve_stdio`
//!   over an in-memory pipe (newline-delimited JSON-RPC, legacy
//!   handshake first), one call at a time, client and server on one
//!   single-threaded runtime: the layer's own work, without the
//!   wake-ups across cores and processes that the OS-pipes rows (a real
//!   `portcullis serve` process, and `cat` as the pipes' floor) show.
//! - HTTP: a keep-alive hyper client drives `McpServer::serve_http` on a
//!   loopback port with a bearer token, 2026-07-28 requests (stateless).
//! - Start: `portcullis serve plugins/portcullis.toml` as a process (the
//!   binary beside the examples), from spawn to the first `tools/list`
//!   answer, compile cache warm.

use super::{Bench, config, plugin};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use portcullis::{BearerToken, CallContext, Host, HttpOptions, McpServer};
use serde_json::{Value, json};
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const TOKEN: &str = "bench-token-0123456789abcdef";

/// Adds the MCP rows and a note with the layer's cost.
pub(crate) async fn rows(bench: &mut Bench) -> Result<()> {
    let (path, bytes) = plugin("hostile")?;
    let host = Host::builder()
        .plugin(config("hostile", &path, &bytes))
        .build()
        .await?;
    let library = bench
        .echo(
            "`Host::call` `hostile.echo` (the HTTP row's baseline)",
            &host,
        )
        .await;
    let (stdio_library, stdio) = stdio_rows(bench, host.clone())?;
    let http = http_row(bench, host).await?;
    bench.notes.push(format!(
        "MCP `tools/call` of `hostile.echo`, p50 over `Host::call` of the same tool: stdio (in-process client, client and server on one single-threaded runtime: the layer's own work) {:+.1} µs over {:.1} µs; Streamable HTTP (keep-alive loopback client, bearer token, 2026-07-28, event-stream answer) {:+.1} µs over {:.1} µs.",
        micros(stdio) - micros(stdio_library),
        micros(stdio_library),
        micros(http) - micros(library),
        micros(library),
    ));
    first_list(bench)?;
    process_row(bench).await?;
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A newline-delimited JSON-RPC client over an in-memory pipe.
struct StdioClient {
    writer: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>>,
    id: u64,
}

impl StdioClient {
    /// One request, then lines until its response.
    async fn rpc(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let request = request_line(self.id, method, params);
        self.writer
            .write_all(request.as_bytes())
            .await
            .expect("write");
        loop {
            let line = self.lines.next_line().await.expect("read").expect("a line");
            if let Some(answer) = answer_to(&line, self.id) {
                return answer;
            }
        }
    }
}

/// A JSON-RPC request as one newline-terminated line.
fn request_line(id: u64, method: &str, params: Value) -> String {
    let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    format!("{request}\n")
}

/// The params of the legacy `initialize` request every client here sends.
fn initialize_params() -> Value {
    json!({"protocolVersion": "2025-11-25", "capabilities": {},
           "clientInfo": {"name": "bench", "version": "1"}})
}

/// `line` parsed, if it is the answer to request `id`.
fn answer_to(line: &str, id: u64) -> Option<Value> {
    let message: Value = serde_json::from_str(line).expect("JSON");
    (message["id"] == json!(id)).then_some(message)
}

/// The MCP layer's own work over stdio: the client, the server and the
/// baseline `Host::call` on one single-threaded runtime on a thread of its
/// own, so no row waits for a wake-up across cores (what that costs on this
/// machine is in the OS-pipes rows of `process_row`). Returns the p50s of
/// the baseline and of the round trip.
fn stdio_rows(bench: &mut Bench, host: Host) -> Result<(Duration, Duration)> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?
                    .block_on(stdio_rows_here(bench, host))
                    .map_err(|e| e.to_string())
            })
            .join()
            .map_err(|_| "the stdio rows' thread panicked")?
            .map_err(Into::into)
    })
}

async fn stdio_rows_here(bench: &mut Bench, host: Host) -> Result<(Duration, Duration)> {
    let library = bench
        .echo(
            "`Host::call` `hostile.echo`, single-threaded runtime (the stdio row's baseline)",
            &host,
        )
        .await;
    let server = McpServer::new(host)?;
    let (client_side, server_side) = tokio::io::duplex(1 << 20);
    let (server_read, server_write) = tokio::io::split(server_side);
    let (client_read, writer) = tokio::io::split(client_side);
    let stop = CancellationToken::new();
    let serving = {
        let stop = stop.clone();
        tokio::spawn(async move { server.serve_stdio(server_read, server_write, stop).await })
    };
    let mut client = StdioClient {
        writer,
        lines: tokio::io::BufReader::new(client_read).lines(),
        id: 0,
    };
    client.rpc("initialize", initialize_params()).await;
    let client = Arc::new(Mutex::new(client));
    let p50 = bench
        .latency(
            "MCP stdio `tools/call` `hostile.echo` round trip, in-process client, same runtime",
            || {
                let client = Arc::clone(&client);
                async move {
                    let answer = client
                        .lock()
                        .await
                        .rpc(
                            "tools/call",
                            json!({"name": "hostile.echo", "arguments": {}}),
                        )
                        .await;
                    assert_eq!(answer["result"]["isError"], false, "{answer}");
                }
            },
        )
        .await;
    stop.cancel();
    serving.await??;
    Ok((library, p50))
}

async fn http_row(bench: &mut Bench, host: Host) -> Result<Duration> {
    let server = McpServer::new(host)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let options = HttpOptions::new().token(BearerToken::new("bench", TOKEN)?);
    let stop = CancellationToken::new();
    let serving = {
        let stop = stop.clone();
        tokio::spawn(async move { server.serve_http(listener, options, stop).await })
    };
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let sender = Arc::new(Mutex::new(sender));
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let body = Bytes::from(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"_meta": meta, "name": "hostile.echo", "arguments": {}}})
        .to_string(),
    );
    let authorization = format!("Bearer {TOKEN}");
    let host_header = addr.to_string();
    let p50 = bench
        .latency(
            "MCP Streamable HTTP `tools/call` `hostile.echo` round trip",
            || {
                let request = http::Request::post("/mcp")
                    .header("host", &host_header)
                    .header("authorization", &authorization)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", "hostile.echo")
                    .body(Full::new(body.clone()))
                    .expect("request");
                let sender = Arc::clone(&sender);
                async move {
                    let mut sender = sender.lock().await;
                    sender.ready().await.expect("the connection stays open");
                    let response = sender.send_request(request).await.expect("response");
                    assert_eq!(response.status(), 200);
                    let text = response
                        .into_body()
                        .collect()
                        .await
                        .expect("body")
                        .to_bytes();
                    assert!(
                        std::str::from_utf8(&text).is_ok_and(|t| t.contains("\"isError\":false")),
                        "{text:?}"
                    );
                }
            },
        )
        .await;
    stop.cancel();
    serving.await??;
    Ok(p50)
}

/// `portcullis serve` from spawn to its first `tools/list` answer.
fn first_list(bench: &mut Bench) -> Result<()> {
    let Some(binary) = super::portcullis_binary() else {
        bench.notes.push(
            "MCP start: skipped, no `portcullis` binary beside the examples (run `cargo build --release` first).".into(),
        );
        return Ok(());
    };
    let run = || -> Result<Duration> {
        let start = Instant::now();
        let mut child = std::process::Command::new(&binary)
            .args(["serve", "plugins/portcullis.toml"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize_params()});
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
        write!(stdin, "{init}\n{initialized}\n{list}\n")?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let wall = loop {
            let line = lines.next().ok_or("the server ended early")??;
            let message: Value = serde_json::from_str(&line)?;
            if message["id"] == 2 {
                break start.elapsed();
            }
        };
        drop(stdin);
        child.wait()?;
        Ok(wall)
    };
    run()?;
    let mut walls = (0..10).map(|_| run()).collect::<Result<Vec<_>>>()?;
    walls.sort();
    bench.notes.push(format!(
        "MCP start: `portcullis serve plugins/portcullis.toml` from spawn to the first `tools/list` answer over stdio (legacy handshake first; compile cache warm), median of 10: {:.1} ms (min {:.1}, max {:.1}).",
        walls[5].as_secs_f64() * 1e3,
        walls[0].as_secs_f64() * 1e3,
        walls[9].as_secs_f64() * 1e3
    ));
    Ok(())
}

/// `tools/call` of `json.length` on a real `portcullis serve` process over
/// OS pipes (what a desktop client does), against `Host::call` of the same
/// tool in this process.
async fn process_row(bench: &mut Bench) -> Result<()> {
    let Some(binary) = super::portcullis_binary() else {
        return Ok(());
    };
    let (path, bytes) = plugin("json")?;
    let host = Host::builder()
        .plugin(config("json", &path, &bytes))
        .build()
        .await?;
    let ctx = CallContext::new();
    let arguments = r#"{"value": [1]}"#;
    let library = bench
        .latency(
            "`Host::call` `json.length` (the process row's baseline)",
            || async {
                host.call("json.length", arguments, &ctx)
                    .await
                    .expect("call");
            },
        )
        .await;
    // Blocking pipe I/O on the bench's thread, as a client process would
    // do it (the other worker thread is idle meanwhile).
    let (mut child, client) = PipeClient::spawn(
        std::process::Command::new(&binary)
            .args(["serve", "plugins/portcullis.toml"])
            .stderr(std::process::Stdio::null()),
    )?;
    client
        .lock()
        .map_err(|_| "poisoned")?
        .rpc("initialize", initialize_params());
    let served = json_length_row(
        bench,
        "MCP stdio `tools/call` `json.length`, `portcullis serve` process over OS pipes",
        &client,
        |answer| assert_eq!(answer["result"]["isError"], false, "{answer}"),
    )
    .await;
    drop(client);
    child.wait()?;
    // The transport's own floor: the same client and request line, echoed
    // by `cat` (what any server over stdio pays before doing anything).
    let (mut cat, echo) = PipeClient::spawn(&mut std::process::Command::new("cat"))?;
    let floor = json_length_row(
        bench,
        "floor: the same `tools/call` line echoed by a `cat` process over OS pipes",
        &echo,
        |echoed| assert_eq!(echoed["method"], "tools/call", "{echoed}"),
    )
    .await;
    drop(echo);
    cat.wait()?;
    bench.notes.push(format!(
        "MCP over OS pipes: a `portcullis serve` process answers `tools/call` of `json.length` in {:.1} µs p50: {:.1} µs is `Host::call` of the same tool in the bench process, {:.1} µs the pipes' round trip to a `cat` process with the same client and line, and the MCP layer adds the remaining **{:+.1} µs**.",
        micros(served),
        micros(library),
        micros(floor),
        micros(served) - micros(library) - micros(floor),
    ));
    Ok(())
}

/// Measures `tools/call` of `json.length` sent through `client`, each
/// answer checked by `check`; returns the row's p50.
async fn json_length_row(
    bench: &mut Bench,
    what: &str,
    client: &Arc<std::sync::Mutex<PipeClient>>,
    check: fn(&Value),
) -> Duration {
    bench
        .latency(what, || {
            let client = Arc::clone(client);
            async move {
                let answer = client.lock().expect("client").rpc(
                    "tools/call",
                    json!({"name": "json.length", "arguments": {"value": [1]}}),
                );
                check(&answer);
            }
        })
        .await
}

/// A newline-delimited JSON-RPC client over a child process's pipes.
struct PipeClient {
    writer: std::process::ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    id: u64,
}

impl PipeClient {
    /// Spawns `command` with its stdin and stdout piped, and a client on
    /// them.
    fn spawn(
        command: &mut std::process::Command,
    ) -> Result<(std::process::Child, Arc<std::sync::Mutex<PipeClient>>)> {
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let client = PipeClient {
            writer: child.stdin.take().ok_or("no stdin")?,
            lines: BufReader::new(child.stdout.take().ok_or("no stdout")?).lines(),
            id: 0,
        };
        Ok((child, Arc::new(std::sync::Mutex::new(client))))
    }

    /// One request, then lines until its response.
    fn rpc(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        // One write per message, as a client's line-buffered writer does.
        let request = request_line(self.id, method, params);
        self.writer.write_all(request.as_bytes()).expect("write");
        loop {
            let line = self.lines.next().expect("a line").expect("read");
            if let Some(answer) = answer_to(&line, self.id) {
                return answer;
            }
        }
    }
}
