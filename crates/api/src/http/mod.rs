//! The HTTP edge: the Convex HTTP API, the WebSocket upgrade into the sync protocol, the deploy
//! endpoints and CORS, as one axum [`Router`] over a [`Backend`] (protocol doc §2, §3.1, §5).
//!
//! Every refusal is an [`ApiError`] mapped once, in [`error_response`], to a status and a
//! `{"code", "message"}` body; a refused request reaches no backend method that runs or
//! changes anything. Request bodies are bounded (`knobs::HTTP_*`) before and after
//! decompression.

mod auth;
mod cors;
mod deploy;
mod error;
mod format;
mod functions;
mod request;

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use knobs::HTTP_WEBSOCKET_MESSAGE_MAX_BYTES;

pub use error::{error_response, short_code, status};
pub use format::{ValueFormat, clean_json};

use self::error::respond;
use crate::sync::SyncShared;
use crate::{ApiError, Backend, CallKind, DeployOp, ErrorCode};

/// What every handler shares: the backend and the sync sessions' shared state.
struct Edge {
    backend: Arc<dyn Backend>,
    sync: Arc<SyncShared>,
}

type EdgeState = State<Arc<Edge>>;

/// The whole HTTP surface of a node, serving `backend`.
pub fn router(backend: Arc<dyn Backend>) -> Router {
    let edge = Arc::new(Edge {
        backend,
        sync: Arc::new(SyncShared::default()),
    });
    Router::new()
        .route("/version", get(version))
        // Function calls.
        .route(
            "/api/query",
            post(|State(edge): EdgeState, req: Request| async move {
                respond(functions::post_call(&edge, req, CallKind::Query).await)
            })
            .get(|State(edge): EdgeState, req: Request| async move {
                respond(functions::get_query(&edge, req).await)
            }),
        )
        .route(
            "/api/mutation",
            post(|State(edge): EdgeState, req: Request| async move {
                respond(functions::post_call(&edge, req, CallKind::Mutation).await)
            }),
        )
        .route(
            "/api/action",
            post(|State(edge): EdgeState, req: Request| async move {
                respond(functions::post_call(&edge, req, CallKind::Action).await)
            }),
        )
        .route(
            "/api/function",
            post(|State(edge): EdgeState, req: Request| async move {
                respond(functions::post_call(&edge, req, CallKind::Any).await)
            }),
        )
        .route(
            "/api/run/{*path}",
            post(|State(edge): EdgeState, req: Request| async move {
                respond(functions::post_run(&edge, req).await)
            }),
        )
        .route(
            "/api/query_ts",
            post(|State(edge): EdgeState, req: Request| async move {
                respond(functions::query_ts(&edge, req).await)
            }),
        )
        .route(
            "/api/query_at_ts",
            post(|State(edge): EdgeState, req: Request| async move {
                respond(functions::query_at_ts(&edge, req).await)
            }),
        )
        .route(
            "/api/query_batch",
            post(|State(edge): EdgeState, req: Request| async move {
                respond(functions::query_batch(&edge, req).await)
            }),
        )
        // The WebSocket sync protocol: npm uses `/api/<client version>/sync`, Rust and Python
        // `/api/sync`.
        .route("/api/sync", get(sync))
        .route("/api/{version}/sync", get(sync))
        // Deploy.
        .route(
            "/api/get_config_hashes",
            deploy_route(DeployOp::GetConfigHashes),
        )
        .route(
            "/api/deploy2/evaluate_schema",
            deploy_route(DeployOp::EvaluateSchema),
        )
        .route(
            "/api/deploy2/evaluate_push",
            deploy_route(DeployOp::EvaluatePush),
        )
        .route("/api/deploy2/start_push", deploy_route(DeployOp::StartPush))
        .route(
            "/api/deploy2/wait_for_schema",
            deploy_route(DeployOp::WaitForSchema),
        )
        .route(
            "/api/deploy2/finish_push",
            deploy_route(DeployOp::FinishPush),
        )
        .route(
            "/api/deploy2/report_push_completed",
            post(|State(edge): EdgeState, req: Request| async move {
                respond(deploy::report_push_completed(&edge, req).await)
            }),
        )
        .route(
            "/api/v1/get_canonical_urls",
            get(|State(edge): EdgeState, req: Request| async move {
                respond(deploy::canonical_urls(&edge, req).await)
            }),
        )
        .route(
            "/api/stream_function_logs",
            get(|State(edge): EdgeState, req: Request| async move {
                respond(deploy::stream_function_logs(&edge, req).await)
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(edge)
        .layer(axum::middleware::from_fn(cors::cors))
}

fn deploy_route(op: DeployOp) -> axum::routing::MethodRouter<Arc<Edge>> {
    post(move |State(edge): EdgeState, req: Request| async move {
        respond(deploy::deploy(&edge, req, op).await)
    })
}

/// `GET /version`: answers once the node serves.
async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Upgrades to a WebSocket and hands it to a sync session.
async fn sync(
    State(edge): EdgeState,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => {
            let backend = Arc::clone(&edge.backend);
            let shared = Arc::clone(&edge.sync);
            upgrade
                .max_message_size(HTTP_WEBSOCKET_MESSAGE_MAX_BYTES)
                .max_frame_size(HTTP_WEBSOCKET_MESSAGE_MAX_BYTES)
                .on_upgrade(move |socket| crate::sync::serve(backend, shared, socket))
        }
        Err(rejection) => error_response(&ApiError::new(
            ErrorCode::BadRequest,
            format!("expected a WebSocket upgrade: {}", rejection.body_text()),
        )),
    }
}

/// No such endpoint (or not with this method): `404 {"code": "NotFound"}`.
async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    error_response(&ApiError::new(
        ErrorCode::NotFound,
        format!("no endpoint {method} {}", uri.path()),
    ))
}
