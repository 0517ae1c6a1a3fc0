//! A response body fed from a channel, so a task can dribble chunks, stall, or fail the
//! connection — and notice when the client has gone.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::mpsc;

pub type Chunk = Result<Bytes, std::io::Error>;

#[derive(Debug)]
pub struct ChannelBody(mpsc::Receiver<Chunk>);

impl ChannelBody {
    pub fn channel() -> (mpsc::Sender<Chunk>, ChannelBody) {
        let (tx, rx) = mpsc::channel(4);
        (tx, ChannelBody(rx))
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}
