//! A streaming follower's body: the leader's tape read from the start and then as it grows,
//! each event written in this client's format (with its own answer id). When the tape ends
//! whole, the follower's record gets the answer's usage and what it saved; when it breaks off,
//! the client gets an error event in its format, as the leader's client did.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use sluice_cache::{Read, Tape, TapeEnd};
use sluice_providers::chat::Delta;
use sluice_providers::translate::ClientEncoder;

use crate::finish::Finish;
use crate::flow::Live;

pub struct LiveBody {
    tape: Arc<Tape>,
    /// Events of the tape read so far.
    at: usize,
    encoder: ClientEncoder,
    id: String,
    out: VecDeque<Bytes>,
    scratch: Vec<Bytes>,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The stream's end event was written (the tape may end without one: the leader's stages
    /// see the end after its last event).
    ended: bool,
    done: bool,
}

impl std::fmt::Debug for LiveBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveBody")
            .field("at", &self.at)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl LiveBody {
    pub fn new(live: Live) -> LiveBody {
        LiveBody {
            tape: live.tape,
            at: 0,
            encoder: ClientEncoder::new(live.wire, live.include_usage),
            id: live.id,
            out: VecDeque::new(),
            scratch: Vec::new(),
            wait: None,
            ended: false,
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done && self.out.is_empty()
    }

    pub fn poll_next(&mut self, cx: &mut Context<'_>, finish: &mut Finish) -> Poll<Option<Bytes>> {
        loop {
            if let Some(b) = self.out.pop_front() {
                return Poll::Ready(Some(b));
            }
            if self.done {
                return Poll::Ready(None);
            }
            if let Some(wait) = &mut self.wait {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            match self.tape.read(self.at) {
                Read::Deltas(deltas) => {
                    self.at += deltas.len();
                    for mut d in deltas {
                        match &mut d {
                            Delta::Start { id, .. } => id.clone_from(&self.id),
                            Delta::Usage(u) => finish.set_usage(*u, false),
                            Delta::End => self.ended = true,
                            _ => {}
                        }
                        self.encoder.encode(&d, &mut self.scratch);
                    }
                    self.out.extend(self.scratch.drain(..));
                }
                Read::End(TapeEnd::Whole { cost_micros }) => {
                    if !self.ended {
                        self.encoder.encode(&Delta::End, &mut self.scratch);
                        self.out.extend(self.scratch.drain(..));
                    }
                    finish.cache_saved(cost_micros);
                    self.done = true;
                }
                Read::End(TapeEnd::Broken) => {
                    let message = "The answer this request shared with an identical one in flight broke off.";
                    self.out.push_back(self.encoder.error_event("upstream_error", message));
                    finish.fail("upstream_stream", "upstream_error");
                    self.done = true;
                }
                Read::Nothing => {
                    self.wait = Some(Box::pin(self.tape.clone().changed(self.at)));
                }
            }
        }
    }
}
