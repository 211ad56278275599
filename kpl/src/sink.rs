//! [`ProducerSink`]: a producer as a [`futures::Sink`] of records into one stream.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::Sink;

use crate::error::{FlushError, PutError};
use crate::producer::Producer;
use crate::record::{PutHandle, Record};

/// A [`Sink`] of [`Record`]s into one stream (from [`Producer::sink`]).
///
/// * `poll_ready` waits for buffer budget (back-pressure), as `put` does.
/// * A record that fails for good is returned as the error of a later `poll_ready`,
///   `poll_flush` or `poll_close`, record included; the sink stays usable after it.
/// * `poll_flush` (and `poll_close`) sends everything buffered at once and completes when
///   every record sent into this sink is resolved. Closing the sink does not shut the
///   producer down; other clones keep working.
pub struct ProducerSink {
    producer: Producer,
    stream: Arc<str>,
    admitting: VecDeque<BoxFuture<'static, Result<PutHandle, PutError>>>,
    pending: FuturesUnordered<PutHandle>,
    flushing: Option<BoxFuture<'static, Result<(), FlushError>>>,
    /// A producer flush was sent since the last record was sent into the sink.
    flushed: bool,
}

impl std::fmt::Debug for ProducerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerSink")
            .field("stream", &self.stream)
            .field("admitting", &self.admitting.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl ProducerSink {
    pub(crate) fn new(producer: Producer, stream: String) -> ProducerSink {
        ProducerSink {
            producer,
            stream: stream.into(),
            admitting: VecDeque::new(),
            pending: FuturesUnordered::new(),
            flushing: None,
            flushed: false,
        }
    }

    /// Records sent into the sink and not yet resolved.
    pub fn pending(&self) -> usize {
        self.admitting.len() + self.pending.len()
    }

    /// Drives the records waiting for budget into the producer.
    fn poll_admit(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PutError>> {
        while let Some(f) = self.admitting.front_mut() {
            match f.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => {
                    self.admitting.pop_front();
                    self.pending.push(r?);
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Collects resolved records; the first failure is returned.
    fn poll_resolved(&mut self, cx: &mut Context<'_>, all: bool) -> Poll<Result<(), PutError>> {
        loop {
            match self.pending.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending if all => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl Sink<Record> for ProducerSink {
    type Error = PutError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), PutError>> {
        let this = self.get_mut();
        if let Poll::Ready(Err(e)) = this.poll_resolved(cx, false) {
            return Poll::Ready(Err(e));
        }
        this.poll_admit(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Record) -> Result<(), PutError> {
        let this = self.get_mut();
        let producer = this.producer.clone();
        let stream = this.stream.clone();
        this.flushed = false;
        this.admitting.push_back(Box::pin(
            async move { producer.put_record(&stream, item).await },
        ));
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), PutError>> {
        let this = self.get_mut();
        if let Err(e) = futures::ready!(this.poll_admit(cx)) {
            return Poll::Ready(Err(e));
        }
        if this.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if !this.flushed && this.flushing.is_none() {
            let producer = this.producer.clone();
            this.flushing = Some(Box::pin(async move { producer.flush().await }));
        }
        if let Some(f) = this.flushing.as_mut() {
            if f.as_mut().poll(cx).is_ready() {
                this.flushing = None;
                this.flushed = true;
            }
        }
        this.poll_resolved(cx, true)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), PutError>> {
        self.poll_flush(cx)
    }
}
