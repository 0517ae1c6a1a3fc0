//! A client that leaves cancels the upstream at once, and its request is reported exactly once
//! as `client_closed` with the tokens relayed so far.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use serde_json::json;
use sluice_testkit::*;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn disconnect_before_the_first_byte_cancels_upstream() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "mock": {"latency_ms": 10_000}});
    let s = raw_chat(&gw, &body).await;
    assert!(
        eventually(|| mock_stats(&mock)["in_flight"] == 1).await,
        "request reached the upstream"
    );
    drop(s);
    assert!(
        eventually(|| mock_stats(&mock)["cancelled"] == 1).await,
        "upstream saw the cancel: {}",
        mock_stats(&mock)
    );
    let lines = gw.log_lines(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines_after = gw.log_lines(1).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines_after.len(), 1, "exactly one line");
    assert_eq!(lines[0]["error_class"], "client_closed");
    assert_eq!(lines[0]["status"], 499);
    assert_eq!(lines[0]["completion_tokens"], 0);
}

#[tokio::test]
async fn disconnect_mid_stream_cancels_upstream_and_logs_tokens_relayed() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": true,
                      "mock": {"chunks": 1000, "chunk_delay_ms": 20}});
    let mut s = raw_chat(&gw, &body).await;
    // Read until a few content chunks have arrived.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The role chunk plus at least three content chunks.
    while seen.windows(12).filter(|w| w == br#"{"content":""#).count() < 4 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(s);
    assert!(
        eventually(|| mock_stats(&mock)["cancelled"] == 1).await,
        "upstream saw the cancel: {}",
        mock_stats(&mock)
    );
    let lines = gw.log_lines(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.log_lines(1).await.len(), 1, "exactly one line");
    let l = &lines[0];
    assert_eq!(l["error_class"], "client_closed");
    assert_eq!(l["status"], 200, "headers had been sent");
    assert_eq!(l["usage_estimated"], true);
    let relayed = l["completion_tokens"].as_u64().unwrap();
    assert!((3..1000).contains(&relayed), "tokens relayed so far, got {relayed}");
    assert!(l["ttfb_ms"].as_f64().is_some());
}

#[tokio::test]
async fn disconnect_of_an_http2_stream_cancels_upstream() {
    use http_body_util::{BodyExt, Full};
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": true,
                      "mock": {"chunks": 1000, "chunk_delay_ms": 20}});
    let req = request(
        http::Method::POST,
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &[],
        body.to_string().into(),
    );
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let mut b = resp.into_body();
    let first = b.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(b); // RST_STREAM
    assert!(
        eventually(|| mock_stats(&mock)["cancelled"] == 1).await,
        "upstream saw the cancel: {}",
        mock_stats(&mock)
    );
    let lines = gw.log_lines(1).await;
    assert_eq!(lines[0]["error_class"], "client_closed");
}
