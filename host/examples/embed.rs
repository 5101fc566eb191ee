//! Embedding Portcullis in an agent runtime: load the bundled manifest, list
//! the tools a model may call, and call one.
//!
//! ```sh
//! plugins/build.sh && cargo run --example embed
//! ```

use portcullis::{CallContext, Host};

#[tokio::main]
async fn main() -> Result<(), portcullis::Error> {
    let host = Host::from_manifest("plugins/portcullis.toml").await?;
    for tool in host.tools() {
        println!(
            "{} ({}): {}",
            tool.name,
            tool.effect.as_str(),
            tool.description
        );
    }
    let ctx = CallContext::new().caller("example-agent");
    let output = host
        .call("files.list_dir", r#"{"path": "/sample"}"#, &ctx)
        .await?;
    println!("{}", output.value);
    Ok(())
}
