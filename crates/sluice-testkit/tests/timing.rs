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
