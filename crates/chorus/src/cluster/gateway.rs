//! The client-protocol server of a cluster node: any node accepts any client request. The data
//! leader serves it itself; any other node forwards it, unchanged, to the leader's client
//! address (WebSocket connections are spliced through after the upgrade). During an election
//! a request waits (bounded) for a leader rather than failing at once.
//!
//! Cluster endpoints answered by every node itself: `GET /version`, `GET /api/cluster/status`
//! (admin), `POST /api/cluster/membership` (admin), `GET /metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tower_service::Service;

use super::{Node, Serving, admin, status};

/// How long a request waits for the data range to have a serving leader.
const LEADER_WAIT: Duration = Duration::from_millis(3_000);
/// Largest request body the gateway buffers to forward (the client protocol's own limit is
/// enforced by the leader; this only bounds the gateway's memory per request).
const FORWARD_BUFFER_MAX_BYTES: usize = 64 << 20;
/// Counts the hops of a forwarded request: a node whose view of the leader is stale forwards to
/// a node that knows better, which may forward once more; past [`FORWARD_MAX_HOPS`] a node only
/// serves or waits, so requests never loop.
const FORWARDED: &str = "x-chorus-forward-hops";
const FORWARD_MAX_HOPS: u64 = 2;

pub(crate) fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api/cluster/status", get(cluster_status))
        .route("/api/cluster/membership", post(admin::http_membership))
        .route("/api/cluster/checksums", get(checksums))
        .route("/api/cluster/faults", post(faults))
        .route("/metrics", get(metrics))
        .fallback(forward)
        .with_state(node)
}

async fn version() -> &'static str {
    concat!("chorus ", env!("CARGO_PKG_VERSION"))
}

/// `Authorization: Convex <admin key>` is required for the cluster endpoints.
pub(crate) fn is_admin(node: &Node, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Convex "))
        .is_some_and(|key| key.trim() == node.config.admin_key)
}

/// `Err` with the 401 answer unless the request carries the admin key; `what` names the
/// endpoint in the message.
pub(crate) fn require_admin(
    node: &Node,
    headers: &HeaderMap,
    what: &str,
) -> Result<(), Box<Response>> {
    if is_admin(node, headers) {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            format!("{what}: the admin key is required"),
        )))
    }
}

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "code": code, "message": message.into() })),
    )
        .into_response()
}

async fn cluster_status(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    if let Err(refused) = require_admin(&node, &headers, "the cluster status") {
        return *refused;
    }
    axum::Json(status::cluster(&node).await).into_response()
}

/// `POST /api/cluster/faults` (admin; only when the node runs with `CHORUS_FAULT_INJECTION=1`):
/// `{"blockNodes": [ids]}` makes this node drop every call to those nodes (their peer and
/// client addresses), replacing the previous set; `[]` heals. A partition is both sides
/// blocking each other. For the correctness harness only.
async fn faults(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = require_admin(&node, &headers, "faults") {
        return *refused;
    }
    if std::env::var("CHORUS_FAULT_INJECTION").as_deref() != Ok("1") {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "fault injection is off (start the node with CHORUS_FAULT_INJECTION=1)",
        );
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Faults {
        block_nodes: Vec<u64>,
    }
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("malformed faults: {e}"),
            );
        }
    };
    let mut addrs = std::collections::BTreeSet::new();
    for id in &faults.block_nodes {
        if let Some(peer) = node.peer_addr(*id) {
            addrs.insert(peer);
        }
        if let Some(api) = node.api_addr_of(*id).await {
            addrs.insert(api);
        }
    }
    node.client.set_blocked(addrs.clone());
    tracing::warn!(blocked = ?faults.block_nodes, "fault injection: dropping calls to these nodes");
    axum::Json(serde_json::json!({ "blockedNodes": faults.block_nodes, "blockedAddrs": addrs }))
        .into_response()
}

/// `GET /api/cluster/checksums` (admin): every known node's checksum of every range.
async fn checksums(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    if let Err(refused) = require_admin(&node, &headers, "checksums") {
        return *refused;
    }
    let mut out = Vec::new();
    for (id, addr) in node.known_peers() {
        for group in super::GROUPS {
            let result: Result<super::peer::Checksum, String> = if id == node.config.node_id {
                super::peer::local_checksum(&node, group).await
            } else {
                node.client
                    .call(
                        &addr,
                        &format!("/checksum/{group}"),
                        &(),
                        Duration::from_secs(30),
                    )
                    .await
            };
            out.push(match result {
                Ok(c) => serde_json::json!({
                    "node": id, "range": group, "term": c.term, "index": c.index,
                    "sha256": c.sha256, "records": c.records,
                }),
                Err(e) => serde_json::json!({ "node": id, "range": group, "error": e }),
            });
        }
    }
    axum::Json(serde_json::Value::Array(out)).into_response()
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        status::prometheus(&node),
    )
        .into_response()
}

/// Where a client request goes: served here, or forwarded to the leader's address.
enum Route {
    Here(Arc<Serving>),
    Leader(String),
}

async fn route(node: &Node, may_forward: bool) -> Result<Route, String> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        if let Some(serving) = node.serving() {
            return Ok(Route::Here(serving));
        }
        let leader = node.data.metrics().current_leader;
        if let Some(id) = leader
            && id != node.config.node_id
            && may_forward
            && let Some(addr) = node.api_addr_of(id).await
        {
            return Ok(Route::Leader(addr));
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                ?leader,
                may_forward,
                "no serving leader to route a request to"
            );
            return Err(format!(
                "the data range has no serving leader reachable from node {} (leader: {leader:?})",
                node.config.node_id
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn forward(State(node): State<Arc<Node>>, request: Request) -> Response {
    let hops: u64 = request
        .headers()
        .get(FORWARDED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // A request whose forward could not even connect (the leader just died, its successor is
    // not known yet) never reached anyone: keep it and route again, within the wait.
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    let mut request = request;
    loop {
        match route(&node, hops < FORWARD_MAX_HOPS).await {
            Ok(Route::Here(serving)) => {
                let mut router = serving.router.clone();
                return match router.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
            }
            Ok(Route::Leader(addr)) => match proxy(&node, &addr, request, hops + 1).await {
                Ok(response) => return response,
                Err(Unsent(Some(back), e)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "forwarding did not connect; routing again");
                    request = back;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(Unsent(_, e)) => {
                    return error(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", e);
                }
            },
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", e),
        }
    }
}

/// A failed forward: the request back when it certainly was not delivered and can be sent
/// again (only bodiless requests are kept: a streamed body is consumed by the attempt).
struct Unsent(Option<Request>, String);

/// Sends `request` to the node at `addr` and streams its answer back; a WebSocket upgrade is
/// completed on both sides and the two connections are spliced.
async fn proxy(node: &Node, addr: &str, request: Request, hops: u64) -> Result<Response, Unsent> {
    // Buffer small bodies (every client-protocol call), so an undelivered request can be
    // retried; anything else (a WebSocket upgrade has no body) streams.
    let (parts, body) = request.into_parts();
    let bytes = match http_body_util::Limited::new(body, FORWARD_BUFFER_MAX_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Err(Unsent(None, format!("reading the request: {e}"))),
    };
    let rebuild = |parts: &http::request::Parts| {
        let mut copy = Request::new(Body::from(bytes.clone()));
        *copy.method_mut() = parts.method.clone();
        *copy.uri_mut() = parts.uri.clone();
        *copy.headers_mut() = parts.headers.clone();
        copy
    };
    let retry = rebuild(&parts);
    let request = Request::from_parts(parts, Body::from(bytes));
    proxy_once(node, addr, request, hops)
        .await
        .map_err(|(not_sent, e)| Unsent(not_sent.then_some(retry), e))
}

async fn proxy_once(
    node: &Node,
    addr: &str,
    mut request: Request,
    hops: u64,
) -> Result<Response, (bool, String)> {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let (parts, body) = request.into_parts();
    let mut outgoing = http::Request::builder()
        .method(parts.method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in &parts.headers {
        if name != header::HOST && name.as_str() != FORWARDED {
            outgoing = outgoing.header(name, value);
        }
    }
    outgoing = outgoing.header(FORWARDED, HeaderValue::from(hops));
    let body = body
        .map_err(|e| std::io::Error::other(e.to_string()))
        .boxed_unsync();
    let outgoing = outgoing
        .body(body)
        .map_err(|e| (false, format!("building the forwarded request: {e}")))?;
    let mut answer = node.client.send(outgoing).await.map_err(|e| {
        (
            e.not_sent,
            format!("forwarding to the leader at {addr}: {e}"),
        )
    })?;
    if let Some(client_upgrade) = client_upgrade
        && answer.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let leader_upgrade = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            let (Ok(client), Ok(leader)) = (client_upgrade.await, leader_upgrade.await) else {
                return;
            };
            let mut client = TokioIo::new(client);
            let mut leader = TokioIo::new(leader);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut leader).await;
        });
    }
    let (parts, body) = answer.into_parts();
    Ok(Response::from_parts(parts, Body::new(body)))
}
