//! `sockets`: a TEST-ONLY plugin that imports `wasi:sockets` (it opens a TCP
//! connection). The host never links `wasi:sockets`, so loading this
//! component must fail with the list of offending imports.

use portcullis_sdk::{Args, Plugin, Tool, ToolError, Value, json};

struct Sockets;

impl Plugin for Sockets {
    fn tools() -> Vec<Tool> {
        vec![Tool::new(
            "connect",
            "opens a TCP connection to 127.0.0.1:9",
        )]
    }

    fn call(_tool: &str, _args: Args<'_>) -> Result<Value, ToolError> {
        std::net::TcpStream::connect("127.0.0.1:9")
            .map(|_| json!("connected"))
            .map_err(|e| ToolError::Internal(e.to_string()))
    }
}

portcullis_sdk::export_plugin!(Sockets);
