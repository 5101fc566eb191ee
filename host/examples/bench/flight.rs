//! 500 calls in flight at once, each waiting in a host call on a slow
//! loopback endpoint: all must complete, and the process's peak RSS must
//! stay under 1 GiB. The row runs in a child process of its own
//! (`bench --in-flight`), so that its peak is the burst's and not that of
//! the rows before it (the kernel's peak counter cannot always be reset).

use super::{Bench, config, plugin, rss_mib};
use portcullis::{CallContext, Host};
use std::time::{Duration, Instant};

/// Runs this bench again as `--in-flight` and takes the row's note from
/// the child's output.
///
/// # Errors
///
/// The child could not run or failed.
pub(crate) fn in_own_process(
    bench: &mut Bench,
    quick: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.arg("--in-flight");
    if quick {
        command.arg("--quick");
    }
    let output = command.stderr(std::process::Stdio::inherit()).output()?;
    if !output.status.success() {
        return Err(format!("`bench --in-flight` exited with {}", output.status).into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let note = stdout
        .lines()
        .find(|l| l.contains("calls in flight at once"))
        .ok_or("`bench --in-flight` printed no result")?;
    bench
        .notes
        .push(format!("{note} (in a process of its own)"));
    Ok(())
}

/// A loopback HTTP endpoint that answers every request after `delay`.
async fn slow_endpoint(delay: Duration) -> std::io::Result<std::net::SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                tokio::time::sleep(delay).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Ok(addr)
}

/// 500 calls at once, each waiting in a host call (`fetch.fetch`) on an
/// endpoint that answers after 500 ms: how many complete, and the peak RSS
/// while they are in flight.
pub(crate) async fn in_flight(
    bench: &mut Bench,
    quick: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let calls: u32 = if quick { 100 } else { 500 };
    let (fetch_path, fetch) = plugin("fetch")?;
    let addr = slow_endpoint(Duration::from_millis(500)).await?;
    let base = format!("http://{addr}");
    let host =
        Host::builder()
            .max_concurrent_calls(calls + 12)
            .plugin(config("fetch", &fetch_path, &fetch).http(
                portcullis::manifest::HttpEntry::Table(portcullis::manifest::HttpTable {
                    url: base.clone(),
                    methods: None,
                    allow_private: true,
                }),
            ))
            .build()
            .await?;
    let args = serde_json::json!({ "url": format!("{base}/slow") }).to_string();
    host.call("fetch.fetch", &args, &CallContext::new()).await?;
    let before = rss_mib().0;
    // Reset the peak (VmHWM) to the current RSS, where the kernel allows it.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let start = Instant::now();
    let handles: Vec<_> = (0..calls)
        .map(|_| {
            let host = host.clone();
            let args = args.clone();
            tokio::spawn(async move { host.call("fetch.fetch", &args, &CallContext::new()).await })
        })
        .collect();
    let mut ok = 0;
    let mut failed = Vec::new();
    for handle in handles {
        match handle.await? {
            Ok(_) => ok += 1,
            Err(e) => failed.push(e.kind()),
        }
    }
    let wall = start.elapsed();
    let (_, peak) = rss_mib();
    failed.dedup();
    bench.notes.push(format!(
        "{calls} calls in flight at once (`fetch.fetch`, each waiting 500 ms on a loopback endpoint): {ok} of {calls} completed in {:.2} s{}; RSS {before:.1} MiB before, peak {peak:.1} MiB during{}.",
        wall.as_secs_f64(),
        if failed.is_empty() { String::new() } else { format!(", failures: {failed:?}") },
        if reset { "" } else { " (peak not reset: process-wide peak)" }
    ));
    Ok(())
}
