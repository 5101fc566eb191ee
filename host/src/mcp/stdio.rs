//! This process's stdin and stdout as an MCP transport (what
//! `portcullis serve` and an embedder's own server binary use).

pub(super) type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
pub(super) type Writer = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// The process's stdin and stdout. Pipes (what MCP clients start a server
/// with) are read and written non-blocking on the runtime's own I/O
/// driver; tokio's `stdin()`/`stdout()` hand every read and write to a
/// blocking thread, which cost ~30 µs a `tools/call` in the benchmark.
/// Anything else (a file, a terminal), and a stdout that shares its pipe
/// with stderr (whose writes must never see `EAGAIN`), keeps tokio's.
pub(super) fn process() -> (Reader, Writer) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use tokio::net::unix::pipe;
        let own =
            |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().ok().map(std::fs::File::from);
        let reader: Reader = match own(std::io::stdin().as_fd()).map(pipe::Receiver::from_file) {
            Some(Ok(pipe)) => Box::new(pipe),
            _ => Box::new(tokio::io::stdin()),
        };
        let stdout = std::io::stdout();
        let writer: Writer = match own(stdout.as_fd())
            .filter(|_| !same_pipe(&stdout.as_fd(), &std::io::stderr().as_fd()))
            .map(pipe::Sender::from_file)
        {
            Some(Ok(pipe)) => Box::new(pipe),
            _ => Box::new(tokio::io::stdout()),
        };
        (reader, writer)
    }
    #[cfg(not(unix))]
    {
        (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout()))
    }
}

/// Whether two descriptors are the same file (device and inode): a pipe
/// shared by stdout and stderr, say.
#[cfg(unix)]
fn same_pipe(a: &std::os::fd::BorrowedFd<'_>, b: &std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let meta = |fd: &std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .ok()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()))
    };
    match (meta(a), meta(b)) {
        (Some(a), Some(b)) => a == b,
        // Unknown: assume shared, keep the blocking writer.
        _ => true,
    }
}
