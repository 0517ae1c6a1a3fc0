//! The bench's reference processes over real sockets: the canned upstream answers every request
//! with its chat completion, and the bare proxy forwards a request to it and the answer back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sluice_bench::reference::{Reference, serve};

fn free() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Starts `what` on a thread of its own (it serves until the test process ends).
fn start(what: Reference) -> SocketAddr {
    let addr = free();
    std::thread::spawn(move || serve(what, addr));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    addr
}

/// Two POSTs on one keep-alive connection; returns each answer (head and body).
fn two_posts(addr: SocketAddr, body: &str) -> Vec<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    for _ in 0..2 {
        write!(
            s,
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len: usize = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("a content-length");
                if got.len() >= head_end + 4 + len {
                    break;
                }
            }
        }
        out.push(String::from_utf8(got).unwrap());
    }
    out
}

#[test]
fn the_bare_proxy_forwards_to_the_canned_upstream_on_kept_alive_connections() {
    let upstream = start(Reference::Upstream);
    let proxy = start(Reference::Proxy {
        upstream: upstream.to_string(),
    });
    let body = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;
    let direct = two_posts(upstream, body);
    let proxied = two_posts(proxy, body);
    for answer in direct.iter().chain(&proxied) {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let json: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(json["object"], "chat.completion");
        assert_eq!(json["usage"]["completion_tokens"], 16);
    }
    assert_eq!(
        direct[0].split("\r\n\r\n").nth(1),
        proxied[0].split("\r\n\r\n").nth(1),
        "the proxy passes the answer through unchanged"
    );
}
