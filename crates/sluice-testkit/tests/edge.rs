//! The edge: HTTP/1.1 and HTTP/2 (h2c and TLS with ALPN) on one port, and the connection limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use sluice_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn chat() -> Bytes {
    Bytes::from(
        json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "mock": {"chunks": 2}}).to_string(),
    )
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served_on_the_same_port() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let resp = client
        .request(request(
            Method::POST,
            &gw.url("/v1/chat/completions"),
            Some(KEY),
            &[],
            chat(),
        ))
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    // And HTTP/1.1 on the same port.
    assert_eq!(
        gw.post_raw("/v1/chat/completions", Some(KEY), &[], chat()).await.status,
        200
    );
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn tls_negotiates_h2_and_http1() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mock = mock().await;
    let yaml = format!(
        "server:\n  listen: \"127.0.0.1:0\"\n  tls: {{ cert_file: \"{}\", key_file: \"{}\" }}\n{}",
        fixture("localhost.crt"),
        fixture("localhost.key"),
        config_with(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(fixture("ca.crt")).unwrap();
    use rustls_pki_types::pem::PemObject;
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    for (h2, version) in [(true, http::Version::HTTP_2), (false, http::Version::HTTP_11)] {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_only();
        let connector = if h2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let url = format!("https://localhost:{}/v1/chat/completions", gw.addr.port());
        let resp = client
            .request(request(Method::POST, &url, Some(KEY), &[], chat()))
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("Sluice"));
    }
}

async fn raw(gw: &TestGateway, text: String) -> String {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(text.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn header_count_and_size_are_limited() {
    let mock = mock().await;
    let yaml = format!(
        "server: {{ listen: \"127.0.0.1:0\", max_headers: 20, max_header_bytes: 8192 }}\n{}",
        config_with(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let many: String = (0..40).map(|i| format!("x-h{i}: v\r\n")).collect();
    let resp = raw(
        &gw,
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}connection: close\r\n\r\n"),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 431"), "too many headers: {resp:?}");
    let big = "a".repeat(20_000);
    let resp = raw(
        &gw,
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\nconnection: close\r\n\r\n"),
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 431") || resp.is_empty(),
        "header too large: {resp:?}"
    );
    let resp = raw(
        &gw,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_owned(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp:?}");
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let mock = mock().await;
    let yaml = format!(
        "server: {{ listen: \"127.0.0.1:0\", header_read_timeout_ms: 300, idle_timeout_ms: 300 }}\n{}",
        config_with(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    // Headers that never finish.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    assert!(n.is_ok(), "the connection was closed by the header read timeout");

    // An idle HTTP/2 connection gets closed (GOAWAY, then EOF).
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(TcpStream::connect(gw.addr).await.unwrap()),
    )
    .await
    .unwrap();
    let conn_task = tokio::spawn(conn);
    let req = request(Method::GET, &gw.url("/healthz"), None, &[], Bytes::new());
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(3), conn_task).await;
    assert!(ended.is_ok(), "idle HTTP/2 connection closed by the gateway");
    let _ = s.shutdown().await;
}
