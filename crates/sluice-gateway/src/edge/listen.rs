//! Listening sockets and the hand-over between processes.
//!
//! With `server.reuse_port` (the default) both listeners are bound with SO_REUSEPORT, so a new
//! process can bind the same ports while the old one still serves. On Linux a one-instruction
//! classic BPF program is attached to the port's reuse group: "the socket at index 1". The
//! group holds sockets in the order they started listening, so while two processes share the
//! port every new connection goes to the newer one, and the old one receives nothing it would
//! have to reset when it closes its listener; with one process the index is out of range and
//! the kernel falls back to its hash, which has one socket to choose from.
//!
//! A socket is bound early (a taken port fails the start before anything else is built) and
//! starts listening only when the gateway is about to serve, so a new process takes new
//! connections only once it can answer them.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Backlog of the listening sockets (what `TcpListener::bind` uses too).
const BACKLOG: u32 = 1024;

/// A bound, not yet listening socket.
#[derive(Debug)]
pub struct Bound {
    socket: TcpSocket,
    reuse_port: bool,
    pub addr: SocketAddr,
}

/// Binds `addr` (SO_REUSEADDR always, SO_REUSEPORT when asked).
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<Bound> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    let addr = socket.local_addr()?;
    Ok(Bound {
        socket,
        reuse_port,
        addr,
    })
}

impl Bound {
    /// Starts listening; with reuse_port, new connections on this port now come here.
    pub fn listen(self) -> std::io::Result<TcpListener> {
        let listener = self.socket.listen(BACKLOG)?;
        if self.reuse_port
            && let Err(e) = steer_to_newest(&listener)
        {
            // The port still works; during a hand-over the kernel then spreads new connections
            // over both processes, and the old one takes what reached it before it closes.
            tracing::warn!(addr = %self.addr, error = %e, "cannot steer new connections to the newest process");
        }
        Ok(listener)
    }
}

#[cfg(target_os = "linux")]
fn steer_to_newest(listener: &TcpListener) -> std::io::Result<()> {
    use nix::libc::{sock_filter, sock_fprog};
    use nix::sys::socket::{setsockopt, sockopt::AttachReusePortCbpf};
    // BPF_RET | BPF_K: return the constant 1.
    let mut program = [sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 1,
    }];
    let prog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    setsockopt(listener, AttachReusePortCbpf, &prog).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn steer_to_newest(_listener: &TcpListener) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_listener_on_the_port_takes_the_new_connections() {
        let first = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = first.addr;
        let first = first.listen().unwrap();
        // Alone, the first listener gets everything.
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        first.accept().await.unwrap();

        let second = bind(addr, true).unwrap().listen().unwrap();
        for _ in 0..20 {
            let _c = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio::time::timeout(std::time::Duration::from_secs(2), second.accept())
                .await
                .unwrap()
                .unwrap();
        }
        let stray = tokio::time::timeout(std::time::Duration::from_millis(50), first.accept()).await;
        assert!(stray.is_err(), "the old listener got a new connection");

        // Once the old one is gone, the new one still gets everything.
        drop(first);
        for _ in 0..5 {
            let _c = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio::time::timeout(std::time::Duration::from_secs(2), second.accept())
                .await
                .unwrap()
                .unwrap();
        }
    }

    #[tokio::test]
    async fn without_reuse_port_the_port_is_exclusive() {
        let first = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = first.addr;
        let _l = first.listen().unwrap();
        assert!(bind(addr, false).and_then(Bound::listen).is_err());
    }
}
