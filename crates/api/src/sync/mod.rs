//! The WebSocket sync protocol (`research/convex-protocol.md` §3): reactive query
//! subscriptions, mutations, actions and authentication over one socket per client.
//!
//! - `messages`: the JSON shapes on the wire.
//! - `session`: one socket's state machine (versions, transitions, the mutation queue).
//! - `outbound`: the bounded write queue and the heartbeats.
//! - `shared`: limits and the memory of answered mutations, shared by all sockets.
//!
//! Subscriptions: every query is re-run only when [`crate::Backend::invalidated`] says a
//! commit may have changed what it read; all results of one Transition are computed at one
//! snapshot timestamp, so the client's view is always consistent.

pub mod messages;
mod outbound;
mod session;
mod shared;

use std::sync::Arc;

use axum::extract::ws::WebSocket;

pub use shared::{SyncConfig, SyncShared};

/// Serves one upgraded socket until it closes. The router should upgrade with
/// `WebSocketUpgrade::max_message_size(knobs::SYNC_MESSAGE_MAX_BYTES)` so oversized frames are
/// refused before they are buffered; the session checks the size again either way.
pub async fn serve(backend: Arc<dyn crate::Backend>, shared: Arc<SyncShared>, socket: WebSocket) {
    session::run(backend, shared, socket).await;
}
