//! The response body every API request gets. It carries the request's [`Finish`], so the body
//! ending — or being dropped because the client left — is what reports the request.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::finish::Finish;
use crate::stream::live::LiveBody;
use crate::stream::relay::Relay;

#[derive(Debug)]
enum Inner {
    Full(Option<Bytes>),
    Relay(Box<Relay>),
    Paced(Paced),
    Live(Box<LiveBody>),
}

/// Events sent one by one, `every` apart (a paced replay of a stored answer).
#[derive(Debug)]
struct Paced {
    events: VecDeque<Bytes>,
    every: Duration,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Paced {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(wait) = &mut self.wait {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
        let next = self.events.pop_front();
        if next.is_some() && !self.events.is_empty() {
            self.wait = Some(Box::pin(tokio::time::sleep(self.every)));
        }
        Poll::Ready(next)
    }
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
    /// Events sent one by one, `every` apart, that report `finish` once all are sent.
    pub fn paced(events: Vec<Bytes>, every: Duration, finish: Finish) -> ResponseBody {
        ResponseBody {
            inner: Inner::Paced(Paced {
                events: events.into(),
                every,
                wait: None,
            }),
            finish: Some(finish),
        }
    }
    /// Another request's answer as it arrives (a streaming follower).
    pub fn live(live: LiveBody, finish: Finish) -> ResponseBody {
        ResponseBody {
            inner: Inner::Live(Box::new(live)),
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
            Inner::Paced(p) => match p.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(x) => x,
            },
            Inner::Relay(r) => match &mut this.finish {
                Some(f) => match r.poll_next(cx, f) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(x) => x,
                },
                None => None,
            },
            Inner::Live(l) => match &mut this.finish {
                Some(f) => match l.poll_next(cx, f) {
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
            Inner::Live(l) => l.is_done(),
            Inner::Paced(p) => p.events.is_empty() && p.wait.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Relay(_) | Inner::Paced(_) | Inner::Live(_) => SizeHint::default(),
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
