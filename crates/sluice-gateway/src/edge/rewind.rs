//! A connection whose first bytes were read already (to tell HTTP/2 from HTTP/1.1): they are
//! served again before the rest of the stream, so the server reads the connection whole. Writes,
//! flushes and shutdown go straight to the stream. Never grows: the bytes fit inline.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes read ahead: the HTTP/2 client preface.
pub(crate) const PREFIX_MAX: usize = 24;

#[derive(Debug)]
pub(crate) struct Rewind<T> {
    prefix: [u8; PREFIX_MAX],
    /// The next byte of `prefix` to serve, and where it ends.
    at: u8,
    len: u8,
    inner: T,
}

impl<T> Rewind<T> {
    /// `inner`, with the first `len` bytes of `prefix` served before it.
    pub(crate) fn new(prefix: [u8; PREFIX_MAX], len: usize, inner: T) -> Rewind<T> {
        Rewind {
            prefix,
            at: 0,
            len: len.min(PREFIX_MAX) as u8,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.len && buf.remaining() > 0 {
            let rest = &this.prefix[usize::from(this.at)..usize::from(this.len)];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n as u8; // n ≤ PREFIX_MAX
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn rewind<'a>(prefix: &[u8], stream: &'a [u8]) -> Rewind<&'a [u8]> {
        let mut buf = [0u8; PREFIX_MAX];
        buf[..prefix.len()].copy_from_slice(prefix);
        Rewind::new(buf, prefix.len(), stream)
    }

    /// Reads `prefix` + `stream` through a rewind, `chunk` bytes at a time at most, and checks
    /// what each read returned.
    async fn check(prefix: &[u8], stream: &[u8], chunk: usize, expected: &[&str]) {
        let mut r = rewind(prefix, stream);
        let mut reads = Vec::new();
        loop {
            let mut buf = vec![0u8; chunk];
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            reads.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        assert_eq!(reads, expected, "prefix {prefix:?}, reads of {chunk}");
    }

    #[tokio::test]
    async fn the_prefix_comes_first_then_the_stream() {
        // A read never mixes the two: the prefix ends one read, the stream starts the next.
        check(b"PO", b"ST / HTTP/1.1", 64, &["PO", "ST / HTTP/1.1"]).await;
        check(b"PRI * HTTP/2.0\r\n", b"\r\nSM", 64, &["PRI * HTTP/2.0\r\n", "\r\nSM"]).await;
        // Reads smaller than the prefix take it in parts.
        check(b"PRI * ", b"HTTP", 4, &["PRI ", "* ", "HTTP"]).await;
        check(b"PRI", b"", 1, &["P", "R", "I"]).await;
        // No prefix: just the stream; nothing after the prefix: just the prefix.
        check(b"", b"GET", 64, &["GET"]).await;
        check(b"G", b"", 64, &["G"]).await;
        // The whole preface, the most read ahead.
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        check(preface, b"frames", 24, &["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "frames"]).await;
    }

    #[tokio::test]
    async fn writes_flush_and_shutdown_go_to_the_stream() {
        let (ours, mut theirs) = tokio::io::duplex(256);
        let mut r = Rewind::new([0u8; PREFIX_MAX], 0, ours);
        assert_eq!(r.is_write_vectored(), r.inner.is_write_vectored());
        r.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let parts = [io::IoSlice::new(b"a: "), io::IoSlice::new(b"b\r\n")];
        let n = r.write_vectored(&parts).await.unwrap();
        assert!(n > 0, "a vectored write goes through");
        r.write_all(&b"a: b\r\n"[n..]).await.unwrap();
        r.flush().await.unwrap();
        r.shutdown().await.unwrap();
        let mut got = String::new();
        theirs.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "HTTP/1.1 200 OK\r\na: b\r\n", "in order, then end of stream");
    }
}
