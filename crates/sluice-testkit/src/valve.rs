//! A TCP forwarder that can be shut: a server that stops answering without dropping its
//! connections (a stalled database, a network partition), for tests of what happens meanwhile.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Forwards connections on `addr` to a target; while shut, bytes wait in both directions.
pub struct Valve {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Valve {
    /// Starts forwarding to `target`, open.
    pub async fn start(target: SocketAddr) -> Valve {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the valve");
        let addr = listener.local_addr().expect("valve address");
        let (open, rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            // Dropped with this task: every connection's pumps end with it.
            let mut pumps = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                pumps.spawn(pump(cr, sw, rx.clone()));
                pumps.spawn(pump(sr, cw, rx.clone()));
            }
        });
        Valve { addr, open, task }
    }

    /// Bytes stop moving (they are held, not dropped).
    pub fn shut(&self) {
        self.open.send_replace(false);
    }

    /// Bytes move again, the held ones first.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Valve {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut open: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if open.wait_for(|o| *o).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
