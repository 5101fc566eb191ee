//! `sockets`: a TEST-ONLY plugin that imports `wasi:sockets` (it opens a TCP
//! connection). The host never links `wasi:sockets`, so loading this
//! component must fail with the list of offending imports.

use portcullis_sdk::prelude::*;

portcullis_sdk::export_plugin! {
    /// opens a TCP connection to 127.0.0.1:9
    connect: read,
}

fn connect(_: NoInput) -> Result<&'static str, ToolError> {
    std::net::TcpStream::connect("127.0.0.1:9")
        .map(|_| "connected")
        .map_err(|e| ToolError::internal(e.to_string()))
}
