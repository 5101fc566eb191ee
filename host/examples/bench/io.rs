//! Rows for a call's I/O: file operations on a granted directory (in place,
//! the default, against tokio's blocking threads) and HTTP requests through
//! the egress gate (a kept-alive connection against one per request).

use super::{Bench, config, plugin};
use portcullis::manifest::{HttpEntry, HttpTable};
use portcullis::{CallContext, DirMode, Host};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Files in the searched tree: 10 folders of 100 small text files.
const FOLDERS: usize = 10;
const FILES_PER_FOLDER: usize = 100;

/// `files.search` over 1,000 files (each an open, a stat and a read, so
/// about 3,000 file operations per call), with file operations in place and
/// on blocking threads; the stat-sized call (`hostile.list` of a one-entry
/// directory) both ways too.
pub(crate) async fn files(
    bench: &mut Bench,
    scratch: &Path,
    quick: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let tree = scratch.join("tree");
    for folder in 0..FOLDERS {
        let dir = tree.join(format!("d{folder}"));
        std::fs::create_dir_all(&dir)?;
        for file in 0..FILES_PER_FOLDER {
            std::fs::write(
                dir.join(format!("f{file}.txt")),
                format!("first line\nsecond line of {folder}-{file}\nthird line\n"),
            )?;
        }
    }
    let one = scratch.join("one");
    std::fs::create_dir_all(&one)?;
    std::fs::write(one.join("a.txt"), "a")?;
    let (files_path, files) = plugin("files")?;
    let (hostile_path, hostile) = plugin("hostile")?;
    let searches = if quick { 20 } else { 200 };
    let search = r#"{"path": "/tree", "pattern": "no such text"}"#;
    let mut p50 = Vec::new();
    for (in_place, how) in [(true, "in place"), (false, "on blocking threads")] {
        let host = Host::builder()
            .file_io_in_place(in_place)
            .plugin(config("files", &files_path, &files).dir(&tree, "/tree", DirMode::ReadOnly))
            .plugin(config("hostile", &hostile_path, &hostile).dir(&one, "/one", DirMode::ReadOnly))
            .build()
            .await?;
        let ctx = CallContext::new();
        let searched = bench
            .latency_n(
                &format!("`Host::call`, `files.search` over 1,000 files, file I/O {how}"),
                searches,
                || async {
                    host.call("files.search", search, &ctx).await.expect("call");
                },
            )
            .await;
        let listed = bench
            .latency(
                &format!("`Host::call`, `hostile.list` of a one-file grant, file I/O {how}"),
                || async {
                    host.call("hostile.list", r#"{"path": "/one"}"#, &ctx)
                        .await
                        .expect("call");
                },
            )
            .await;
        p50.push((searched, listed));
    }
    let ratio = |a: std::time::Duration, b: std::time::Duration| b.as_secs_f64() / a.as_secs_f64();
    bench.notes.push(format!(
        "File operations in place (the default) against on tokio's blocking threads (`HostBuilder::file_io_in_place(false)`), p50: `files.search` over 1,000 files {:.2} ms against {:.2} ms ({:.2}x), `hostile.list` of one file {:.1} µs against {:.1} µs ({:.2}x).",
        p50[0].0.as_secs_f64() * 1e3,
        p50[1].0.as_secs_f64() * 1e3,
        ratio(p50[0].0, p50[1].0),
        p50[0].1.as_secs_f64() * 1e6,
        p50[1].1.as_secs_f64() * 1e6,
        ratio(p50[0].1, p50[1].1),
    ));
    Ok(())
}

/// Ten GET requests in one call (`egress.send`) to a loopback server that
/// keeps connections alive, and to one that closes each: what the call's
/// kept connection saves per request (every request is still checked).
pub(crate) async fn http(bench: &mut Bench, quick: bool) -> Result<(), Box<dyn std::error::Error>> {
    const REQUESTS: usize = 10;
    let (egress_path, egress) = plugin("egress")?;
    let calls = if quick { 50 } else { 500 };
    let floor = floor_requests(bench, REQUESTS, calls).await?;
    let mut p50 = Vec::new();
    for (keep_alive, how) in [(true, "kept alive"), (false, "closed after each")] {
        let (base, host) = egress_host(&egress_path, &egress, keep_alive).await?;
        let args = serde_json::json!({
            "requests": [{ "url": format!("{base}/ok"), "times": REQUESTS }]
        })
        .to_string();
        let ctx = CallContext::new();
        let out = host.call("egress.send", &args, &ctx).await?;
        if out.value.as_array().map(Vec::len) != Some(REQUESTS) {
            return Err(format!("unexpected output: {}", out.value).into());
        }
        let row = bench
            .latency_n(
                &format!(
                    "`Host::call`, {REQUESTS} HTTP requests (`egress.send`), connection {how}"
                ),
                calls,
                || async {
                    host.call("egress.send", &args, &ctx).await.expect("call");
                },
            )
            .await;
        p50.push(row);
    }
    // The marginal request on the call's kept connection: one call making
    // one request against one making REQUESTS + 1, both kept alive, so the
    // instance, the call's checks and the connect cancel out.
    let (base, host) = egress_host(&egress_path, &egress, true).await?;
    let ctx = CallContext::new();
    let mut marginal = Vec::new();
    for times in [1, REQUESTS + 1] {
        let args = serde_json::json!({
            "requests": [{ "url": format!("{base}/ok"), "times": times }]
        })
        .to_string();
        marginal.push(
            bench
                .latency_n(
                    &format!(
                        "`Host::call`, {times} HTTP request(s) on the call's kept-alive connection"
                    ),
                    calls,
                    || async {
                        host.call("egress.send", &args, &ctx).await.expect("call");
                    },
                )
                .await,
        );
    }
    let marginal_us =
        (marginal[1].as_secs_f64() - marginal[0].as_secs_f64()) * 1e6 / REQUESTS as f64;
    let per_request = |d: std::time::Duration| d.as_secs_f64() * 1e6 / REQUESTS as f64;
    bench.notes.push(format!(
        "HTTP, one more request on a kept-alive connection (p50 of a call making {} requests minus one making 1, per request; the instance, the call's checks and the connect cancel out): {marginal_us:.1} µs through the gate against {:.1} µs on the floor's kept-alive hyper connection ({:.2}x).",
        REQUESTS + 1,
        per_request(floor),
        marginal_us / per_request(floor),
    ));
    bench.notes.push(format!(
        "HTTP through the egress gate, {REQUESTS} requests per call to a loopback server, p50 per request: {:.1} µs on a kept-alive connection, {:.1} µs with a new connection each ({:.2}x); the floor, the same requests from the host process on one kept-alive hyper connection (no wasm, no checks), {:.1} µs: the gate's kept-alive request, the call's own cost included, is {:.2}x the floor's.",
        per_request(p50[0]),
        per_request(p50[1]),
        p50[1].as_secs_f64() / p50[0].as_secs_f64(),
        per_request(floor),
        p50[0].as_secs_f64() / floor.as_secs_f64()
    ));
    Ok(())
}

/// A loopback server (keeping connections alive or not) and a host whose
/// `egress` plugin may reach it: the server's base URL and the host.
async fn egress_host(
    path: &Path,
    bytes: &[u8],
    keep_alive: bool,
) -> Result<(String, Host), Box<dyn std::error::Error>> {
    let addr = server(keep_alive).await?;
    let base = format!("http://{addr}");
    let host = Host::builder()
        .plugin(
            config("egress", path, bytes).http(HttpEntry::Table(HttpTable {
                url: base.clone(),
                methods: None,
                allow_private: true,
            })),
        )
        .build()
        .await?;
    Ok((base, host))
}

/// The floor for HTTP: `requests` GETs in a row from the host process on
/// one kept-alive hyper connection to the same kind of server, measured
/// `calls` times; the row's p50.
async fn floor_requests(
    bench: &mut Bench,
    requests: usize,
    calls: usize,
) -> Result<std::time::Duration, Box<dyn std::error::Error>> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    let addr = server(true).await?;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
    let url = format!("http://{addr}/ok");
    let p50 = bench
        .latency_n(
            &format!("floor: {requests} HTTP requests on one kept-alive hyper connection, no wasm"),
            calls,
            || {
                let sender = std::sync::Arc::clone(&sender);
                let url = url.clone();
                async move {
                    let mut sender = sender.lock().await;
                    for _ in 0..requests {
                        let request = hyper::Request::get(&url)
                            .header("host", addr.to_string())
                            .body(Empty::<Bytes>::new())
                            .expect("request");
                        sender.ready().await.expect("the connection is ready");
                        let response = sender.send_request(request).await.expect("send");
                        let body = response.into_body().collect().await.expect("body");
                        assert_eq!(body.to_bytes().as_ref(), b"ok");
                    }
                }
            },
        )
        .await;
    Ok(p50)
}

/// A loopback HTTP/1.1 server answering every GET with `ok`, keeping each
/// connection open for the next request or closing it after one.
async fn server(keep_alive: bool) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let response: &'static [u8] = if keep_alive {
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
    } else {
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    };
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    // Requests carry no body: each ends at its blank line.
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        if socket.write_all(response).await.is_err() || !keep_alive {
                            return;
                        }
                    }
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    Ok(addr)
}
