//! Every stage of the walk is timed in one place: a `stages` object in the log line, the
//! `sluice_stage_duration_seconds` histogram, and a `server-timing` header where a route asks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use serde_json::json;
use sluice_testkit::*;

#[tokio::test]
async fn each_stage_is_timed_in_the_log_line_the_histogram_and_server_timing() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with_routes(
        &mock,
        "  - name: timed\n    match: { models: [other] }\n    server_timing: true\n    queue: { max_concurrency: 2 }\n",
    ))
    .await;
    let ask = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "x"}], "mock": {"latency_ms": 30}});
    let plain = gw.chat(KEY, &ask("chat")).await;
    assert_eq!(plain.status, 200);
    assert!(plain.header("server-timing").is_none(), "only where the route asks");
    let timed = gw.chat(KEY, &ask("other")).await;
    assert_eq!(timed.status, 200);

    let lines = gw.log_lines(2).await;
    let stages = |i: usize| lines[i]["stages"].as_object().unwrap().clone();
    // (The JSON map here sorts its keys; the log line itself is in walk order, as the header.)
    let names = |i: usize| stages(i).keys().cloned().collect::<Vec<_>>();
    // A stage the request did not run (a queue on a route without one) has no time.
    assert_eq!(names(0), ["admit", "auth", "read", "route", "upstream_ttfb"]);
    assert_eq!(names(1), ["admit", "auth", "queue", "read", "route", "upstream_ttfb"]);
    let upstream = stages(1)["upstream_ttfb"].as_f64().unwrap();
    assert!(upstream >= 30.0, "the upstream's 30 ms are in its stage: {upstream}");
    let total: f64 = stages(1).values().map(|v| v.as_f64().unwrap()).sum();
    assert!(
        total <= lines[1]["latency_ms"].as_f64().unwrap(),
        "stages are parts of the request"
    );

    let header = timed.header("server-timing").unwrap();
    let parts: Vec<&str> = header.split(", ").map(|p| p.split(';').next().unwrap()).collect();
    assert_eq!(
        parts,
        ["auth", "read", "route", "admit", "queue", "upstream_ttfb"],
        "{header}"
    );
    assert!(header.contains("upstream_ttfb;dur="), "{header}");

    let m = gw.metrics().await;
    for (route, stage, n) in [
        ("default", "auth", 1),
        ("default", "upstream_ttfb", 1),
        ("timed", "queue", 1),
        ("timed", "admit", 1),
    ] {
        let series = format!("sluice_stage_duration_seconds_count{{route=\"{route}\",stage=\"{stage}\"}} {n}");
        assert!(m.contains(&series), "{series}\n{m}");
    }
    assert!(!m.contains("route=\"default\",stage=\"queue\""), "{m}");
}

#[tokio::test]
async fn a_stream_reports_its_first_content_token_and_its_time_per_output_token() {
    let mut up = ScriptedUpstream::start().await;
    let yaml = format!(
        "deployments:\n  - {{ name: scripted, provider: openai, base_url: \"{}\", model: upstream-a, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}\nmodels:\n  - {{ name: chat, deployments: [scripted] }}\nroutes:\n  - name: default\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        up.base_url(),
        key_hash(KEY)
    );
    let gw = std::sync::Arc::new(TestGateway::start(&yaml).await);
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": true});
    let client = {
        let gw = gw.clone();
        tokio::spawn(async move { read_all(gw.stream(KEY, &body).await.into_body()).await })
    };
    // The role chunk at once; the first content token only 300 ms later.
    let s = up.next_stream().await;
    s.send("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for piece in ["one ", "two ", "three"] {
        s.send(&chunk(piece)).await;
    }
    s.send("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":3,\"total_tokens\":4}}\n\ndata: [DONE]\n\n").await;
    drop(s);
    let text = client.await.unwrap();
    assert!(text.contains("three"), "{text}");
    let plain = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": false});
    let whole = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.chat(KEY, &plain).await })
    };
    let s = up.next_stream().await;
    s.send(r#"{"id":"c","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#).await;
    drop(s);
    let _ = whole.await.unwrap();

    let lines = gw.log_lines(2).await;
    let (streamed, whole) = (&lines[0], &lines[1]);
    let ttft = streamed["ttft_ms"].as_f64().unwrap();
    let tpot = streamed["tpot_ms"].as_f64().unwrap();
    assert!(ttft >= 300.0, "the first content token, not the role chunk: {streamed}");
    assert_eq!(streamed["completion_tokens"], 3);
    // By definition: the first token's time plus a token's time for each of the others is the
    // whole stream.
    let total = streamed["latency_ms"].as_f64().unwrap();
    assert!((ttft + tpot * 2.0 - total).abs() < 1.0, "{streamed}");
    assert!(
        whole["ttft_ms"].is_null() && whole["tpot_ms"].is_null(),
        "a whole answer has no first token: {whole}"
    );

    let metrics = gw.metrics().await;
    for series in [
        r#"sluice_time_to_first_token_seconds_count{model="chat"} 1"#,
        r#"sluice_time_per_output_token_seconds_count{model="chat"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}
