//! The `fetch` example plugin: an allowed page comes back as readable
//! markdown, redirects inside the allowlist are followed hop by hop, and a
//! redirect out of it is refused (the loopback network of
//! `portcullis_tests::net`, whose canary must see no connection).

use portcullis::{CallContext, Host, PluginConfig};
use portcullis_tests::{Interface, Net, plugin_path, plugin_sha};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_returns_readable_markdown_from_an_allowed_page() {
    let net = Net::start(Interface::Tool).await;
    let host = Host::builder()
        .resolver(net.resolver())
        .plugin(
            PluginConfig::new("fetch", plugin_path("fetch"))
                .sha256(plugin_sha("fetch"))
                .http(net.allowed_entry()),
        )
        .build()
        .await
        .expect("fetch loads");
    let base = net.url("");
    let out = host
        .call(
            "fetch.fetch",
            &json!({"url": format!("{base}/page")}).to_string(),
            &CallContext::new(),
        )
        .await
        .expect("fetched");
    // The page's title is the first one, not a later one in the body.
    assert_eq!(out.value["title"], "Test & page");
    let content = out.value["content"].as_str().expect("content");
    assert!(!content.contains("an icon"), "{content}");
    assert!(content.contains("# Welcome"), "{content}");
    assert!(content.contains("Some bold text <here>."), "{content}");
    assert!(content.contains("- [two](/hello)"), "{content}");
    assert!(!content.contains("var x"), "{content}");

    // Redirects inside the allowlist are followed, each hop checked.
    let out = host
        .call(
            "fetch.fetch",
            &json!({"url": format!("{base}/redirect?to=/hello")}).to_string(),
            &CallContext::new(),
        )
        .await
        .expect("fetched");
    assert_eq!(out.value["content"], "hello from allowed");
    assert_eq!(out.value["url"], format!("{base}/hello"));

    // A redirect out of the allowlist is refused, not followed.
    let err = host
        .call(
            "fetch.fetch",
            &json!({"url": format!("{base}/redirect?to=http://canary.test:{}/", net.c())})
                .to_string(),
            &CallContext::new(),
        )
        .await
        .expect_err("denied");
    assert!(err.to_string().contains("denied"), "{err}");
}
