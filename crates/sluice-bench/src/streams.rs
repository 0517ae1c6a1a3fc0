//! Memory per open stream: hold N streamed requests open through a proxy (the mock sends one
//! chunk and then waits), read the proxy's resident memory, and divide the growth by N. Client
//! and upstream connections are both counted, since both live in the proxy.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Raises this process's open-file limit (children inherit it).
pub fn raise_fd_limit(want: u64) -> u64 {
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, want, want);
    rlimit::increase_nofile_limit(want).unwrap_or(0)
}

/// The current soft open-file limit.
pub fn fd_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Opens `n` streams to `addr` and keeps them open until the returned handle is dropped.
pub struct Held {
    runtime: tokio::runtime::Runtime,
    bodies: Vec<(hyper::client::conn::http1::SendRequest<Full<Bytes>>, Incoming)>,
}

impl Held {
    pub fn len(&self) -> usize {
        self.bodies.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let bodies = std::mem::take(&mut self.bodies);
        self.runtime.block_on(async move { drop(bodies) });
    }
}

pub fn open(addr: SocketAddr, key: &str, body: &str, n: usize) -> anyhow::Result<Held> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let body = Bytes::from(body.to_owned());
    let key = key.to_owned();
    let bodies = runtime.block_on(async move {
        let mut held = Vec::with_capacity(n);
        let mut pending = tokio::task::JoinSet::new();
        let mut started = 0;
        while held.len() < n {
            while started < n && pending.len() < 256 {
                let (body, key) = (body.clone(), key.clone());
                pending.spawn(async move { one(addr, &key, body).await });
                started += 1;
            }
            match pending.join_next().await {
                Some(Ok(Ok(h))) => held.push(h),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        Ok::<_, anyhow::Error>(held)
    })?;
    Ok(Held { runtime, bodies })
}

async fn one(
    addr: SocketAddr,
    key: &str,
    body: Bytes,
) -> anyhow::Result<(hyper::client::conn::http1::SendRequest<Full<Bytes>>, Incoming)> {
    let stream = TcpStream::connect(addr).await.context("connect")?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::post("/v1/chat/completions")
        .header("host", "bench")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(body))?;
    let resp = send.send_request(req).await?;
    anyhow::ensure!(resp.status() == 200, "stream refused: {}", resp.status());
    let mut incoming = resp.into_body();
    // Wait for the first chunk: the stream is open end to end.
    let first = tokio::time::timeout(Duration::from_secs(30), incoming.frame())
        .await
        .context("first chunk")?;
    anyhow::ensure!(first.is_some(), "stream ended at once");
    Ok((send, incoming))
}
