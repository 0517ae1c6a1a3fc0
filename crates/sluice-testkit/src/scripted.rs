//! An upstream the test drives frame by frame: each response body is fed from a channel the test
//! holds, so a test can prove the gateway forwards a chunk before the next one exists.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Tx = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

/// Each request gets an SSE response whose body the test writes through `next_stream`.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    streams: mpsc::Receiver<Tx>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl ScriptedUpstream {
    pub async fn start() -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (streams_tx, streams) = mpsc::channel::<Tx>(16);
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let streams_tx = streams_tx.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let streams_tx = streams_tx.clone();
                        let seen = seen.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            seen.lock()
                                .expect("lock")
                                .push(String::from_utf8_lossy(&body).into_owned());
                            let (tx, rx) = mpsc::channel(16);
                            let _ = streams_tx.send(tx).await;
                            let stream = futures_stream(rx);
                            let mut r = Response::new(StreamBody::new(stream));
                            *r.status_mut() = StatusCode::OK;
                            r.headers_mut()
                                .insert("content-type", http::HeaderValue::from_static("text/event-stream"));
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        ScriptedUpstream { addr, streams, bodies }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The sender for the next request's response body. Dropping it ends the body cleanly;
    /// sending an `Err` aborts the connection.
    pub async fn next_stream(&mut self) -> ScriptedStream {
        let tx = tokio::time::timeout(std::time::Duration::from_secs(10), self.streams.recv())
            .await
            .expect("a request reached the upstream")
            .expect("upstream running");
        ScriptedStream { tx }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().expect("lock").clone()
    }
}

pub struct ScriptedStream {
    tx: Tx,
}

impl ScriptedStream {
    pub async fn send(&self, text: &str) {
        self.tx
            .send(Ok(Frame::data(Bytes::from(text.to_owned()))))
            .await
            .expect("body open");
    }
    pub async fn abort(self) {
        let _ = self.tx.send(Err(std::io::Error::other("scripted abort"))).await;
    }
    /// Resolves when the gateway stops reading this body (it cancelled the request).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

fn futures_stream(
    mut rx: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A chat chunk carrying `content`.
pub fn chunk(content: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    )
}
