//! The response body every API request gets. It carries the request's [`Finish`], so the body
//! ending — or being dropped because the client left — is what reports the request.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::finish::Finish;
use crate::stream::relay::Relay;

#[derive(Debug)]
enum Inner {
    Full(Option<Bytes>),
    Relay(Box<Relay>),
}

#[derive(Debug)]
pub struct ResponseBody {
    inner: Inner,
    finish: Option<Finish>,
}

impl ResponseBody {
    /// A fixed body with no request behind it (health checks, metrics).
    pub fn plain(b: impl Into<Bytes>) -> ResponseBody {
        ResponseBody {
            inner: Inner::Full(Some(b.into())),
            finish: None,
        }
    }
    /// A fixed body that reports `finish` once sent.
    pub fn full(b: Bytes, finish: Finish) -> ResponseBody {
        ResponseBody {
            inner: Inner::Full(Some(b)),
            finish: Some(finish),
        }
    }
    pub fn relay(relay: Relay, finish: Finish) -> ResponseBody {
        ResponseBody {
            inner: Inner::Relay(Box::new(relay)),
            finish: Some(finish),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let next = match &mut this.inner {
            Inner::Full(b) => b.take(),
            Inner::Relay(r) => match &mut this.finish {
                Some(f) => match r.poll_next(cx, f) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(x) => x,
                },
                None => None,
            },
        };
        match next {
            Some(b) => {
                if let Some(f) = &mut this.finish {
                    f.first_byte();
                }
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            None => {
                if let Some(f) = &mut this.finish {
                    f.complete();
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Inner::Relay(r) => r.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Relay(_) => SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let Some(finish) = &mut self.finish else { return };
        match &self.inner {
            // Sent whole (hyper may stop polling once it has the exact length): a normal end.
            Inner::Full(b) if b.as_ref().is_none_or(Bytes::is_empty) => {
                finish.first_byte();
                finish.complete();
            }
            // The client left mid-stream: record what was relayed; Finish's drop says client_closed.
            Inner::Relay(r) if !r.is_done() => r.settle(finish),
            _ => {}
        }
    }
}
