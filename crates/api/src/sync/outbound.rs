//! The writing half of a sync socket: a bounded queue drained by one writer task, which also
//! owns the heartbeats (`{"type":"Ping"}` after outbound silence, WebSocket Ping frames).
//!
//! The session never waits for the client to read: it enqueues with `try_send`, and a client
//! that lets the queue fill (by messages or by bytes) is disconnected instead of buffered for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt as _;
use futures_util::stream::SplitSink;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::messages::ServerMessage;
use super::shared::SyncConfig;

const PING_TEXT: &str = r#"{"type":"Ping"}"#;

enum Outgoing {
    Text(String),
    /// Send this close frame, then stop writing.
    Close(Option<CloseFrame>),
}

/// The queue was full (or the writer is gone): the client is not keeping up.
#[derive(Debug)]
pub(crate) struct Overflow;

/// The session's handle on the queue.
pub(crate) struct Outbound {
    tx: mpsc::Sender<Outgoing>,
    /// Bytes enqueued and not yet written. Invariant: the sum of the lengths of the `Text`
    /// items in the queue plus the one being written.
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The writer task; aborted when dropped, so it never outlives its session.
pub(crate) struct Writer(JoinHandle<()>);

impl Writer {
    /// Waits until the writer has stopped (after a close frame, or when the socket broke).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.0).await;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Outbound {
    pub fn start(sink: SplitSink<WebSocket, Message>, config: &SyncConfig) -> (Outbound, Writer) {
        let (tx, rx) = mpsc::channel(config.outbound_max_messages.max(1));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(write(
            sink,
            rx,
            queued_bytes.clone(),
            config.heartbeat_interval,
            config.ws_ping_interval,
        ));
        let outbound = Outbound {
            tx,
            queued_bytes,
            max_bytes: config.outbound_max_bytes,
        };
        (outbound, Writer(task))
    }

    /// Enqueues a message. A message larger than the byte bound still goes out when nothing
    /// else waits, so every message the session can produce can be delivered to a reader.
    pub fn send(&self, message: &ServerMessage) -> Result<(), Overflow> {
        let text = match serde_json::to_string(message) {
            Ok(text) => text,
            // Our message types hold only strings, numbers and JSON values: serializing them
            // cannot fail.
            Err(e) => unreachable!("server message does not serialize: {e}"),
        };
        let len = text.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::SeqCst);
        if before > 0 && before + len > self.max_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::SeqCst);
            return Err(Overflow);
        }
        self.tx.try_send(Outgoing::Text(text)).map_err(|_| {
            self.queued_bytes.fetch_sub(len, Ordering::SeqCst);
            Overflow
        })
    }

    /// Enqueues a close frame after whatever is queued. `false` when it cannot be (full queue,
    /// writer gone); the caller then simply drops the socket.
    pub fn close(&self, frame: Option<CloseFrame>) -> bool {
        self.tx.try_send(Outgoing::Close(frame)).is_ok()
    }

    /// Resolves when the writer has stopped (the socket broke or a close frame went out).
    pub async fn writer_gone(&self) {
        self.tx.closed().await;
    }
}

async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
    heartbeat_interval: std::time::Duration,
    ws_ping_interval: std::time::Duration,
) {
    let heartbeat = tokio::time::sleep(heartbeat_interval);
    tokio::pin!(heartbeat);
    let mut ws_pings =
        tokio::time::interval_at(Instant::now() + ws_ping_interval, ws_ping_interval);
    ws_pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Some(Outgoing::Text(text)) => {
                    let len = text.len();
                    let sent = sink.send(Message::Text(text.into())).await;
                    queued_bytes.fetch_sub(len, Ordering::SeqCst);
                    if sent.is_err() {
                        return;
                    }
                    heartbeat.as_mut().reset(Instant::now() + heartbeat_interval);
                }
                Some(Outgoing::Close(frame)) => {
                    let _ = sink.send(Message::Close(frame)).await;
                    return;
                }
                None => {
                    let _ = sink.close().await;
                    return;
                }
            },
            () = &mut heartbeat => {
                if sink.send(Message::Text(PING_TEXT.into())).await.is_err() {
                    return;
                }
                heartbeat.as_mut().reset(Instant::now() + heartbeat_interval);
            }
            _ = ws_pings.tick() => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_text_is_the_ping_message() {
        assert_eq!(
            serde_json::to_string(&ServerMessage::Ping).ok().as_deref(),
            Some(PING_TEXT)
        );
    }
}
