//! HTTPS: the egress gate connects to the checked address and verifies the
//! certificate against the name in the URL, through both HTTP interfaces.
//! A loopback TLS server presents certificates from a throwaway test CA
//! (`tests/fixtures/tls`, whose key no longer exists).

use portcullis::manifest::HttpTable;
use portcullis::{Host, Limits};
use portcullis_tests::net::read_request;
use portcullis_tests::{Interface, Net, repo_root};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::pem::PemObject as _};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures/tls").join(name)).expect("read fixture")
}

/// A loopback HTTPS server presenting the certificate of `name`; counts
/// the requests that reached it through a completed handshake.
struct TlsServer {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl TlsServer {
    async fn start(name: &str) -> TlsServer {
        let certs =
            rustls::pki_types::CertificateDer::pem_slice_iter(&fixture(&format!("{name}.pem")))
                .collect::<Result<Vec<_>, _>>()
                .expect("certificate");
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(&fixture(&format!("{name}.key")))
                .expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if read_request(&mut tls).await.is_none() {
                        return;
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\nhello https",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsServer { port, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// `plugin` allowed to reach `https://allowed.test:PORT` (on loopback, so
/// with the opt-in), trusting the test CA when `trust`.
async fn host_for(net: &Net, port: u16, trust: bool) -> Host {
    let entry = HttpTable::new(format!("https://allowed.test:{port}"))
        .allow_private(true)
        .into();
    net.host_with(vec![entry], Limits::default(), |b| {
        if trust {
            b.trust_root_pem(fixture("ca.pem"))
        } else {
            b
        }
    })
    .await
}

/// `https://allowed.test:PORT/` through `net`'s plugin; the outcome.
async fn fetch(net: &Net, host: &Host, port: u16) -> Value {
    net.one(
        host,
        json!({"url": format!("https://allowed.test:{port}/")}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_reaches_a_host_whose_certificate_matches_the_url() {
    let server = TlsServer::start("allowed.test").await;
    for via in Interface::BOTH {
        let net = Net::start(via).await;
        let host = host_for(&net, server.port, true).await;
        let out = fetch(&net, &host, server.port).await;
        assert_eq!(out["status"], 200, "{via}: {out}");
        assert_eq!(out["body"], "hello https", "{via}: {out}");
    }
    assert_eq!(server.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_refuses_a_valid_certificate_for_another_name() {
    // A certificate from a trusted CA, but for `other.test`: the name in the
    // URL is what is verified.
    let server = TlsServer::start("other.test").await;
    let net = Net::start(Interface::Tool).await;
    let host = host_for(&net, server.port, true).await;
    let out = fetch(&net, &host, server.port).await;
    assert_eq!(out["error"], "upstream", "{out}");
    let message = out["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("TLS with `allowed.test` failed")
            && message.contains("certificate not valid for name \"allowed.test\""),
        "{message}"
    );

    let net = Net::start(Interface::Wasi).await;
    let host = host_for(&net, server.port, true).await;
    let out = fetch(&net, &host, server.port).await;
    assert_eq!(out["error"], "response", "{out}");
    assert!(
        out["message"]
            .as_str()
            .is_some_and(|m| m.contains("certificate not valid for name")),
        "{out}"
    );
    assert_eq!(server.requests(), 0, "a request crossed a failed handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_trusts_only_the_public_roots_unless_told_otherwise() {
    let server = TlsServer::start("allowed.test").await;
    let net = Net::start(Interface::Tool).await;
    let host = host_for(&net, server.port, false).await;
    let out = fetch(&net, &host, server.port).await;
    assert_eq!(out["error"], "upstream", "{out}");
    assert!(
        out["message"]
            .as_str()
            .is_some_and(|m| m.contains("UnknownIssuer")),
        "{out}"
    );
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_trusted_root_that_is_not_a_certificate_is_refused_at_build() {
    for pem in [
        b"not pem at all".to_vec(),
        fixture("allowed.test.key"),
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".to_vec(),
    ] {
        let result = Host::builder().trust_root_pem(pem).build().await;
        let error = result.expect_err("refused");
        assert!(error.to_string().contains("trusted root"), "{error}");
    }
}
