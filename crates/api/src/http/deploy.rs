//! The endpoints `npx convex deploy` / `convex dev` call (protocol doc §5). All need the admin
//! key, from `Authorization: Convex <key>`, `?adminKey=`, or the `adminKey` field of the JSON
//! body. Bodies may be brotli-compressed.
//!
//! The CLI retries network errors and 404s (with delays up to 16 s) but stops on any other
//! non-2xx, so refusals here use 4xx codes other than 404 unless the endpoint truly is absent.

use std::time::Duration;

use axum::Json;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use knobs::{HTTP_DEPLOY_BODY_MAX_BYTES, HTTP_LOG_STREAM_POLL_MS};
use serde_json::json;

use super::Edge;
use super::auth::{identify, require_admin};
use super::error::bad_request;
use super::request::{QueryParams, parse_json, read_body};
use crate::{ApiError, DeployOp, Identity};

/// Credentials from the header or query string; presented-but-wrong ones are refused before
/// the body is read.
fn header_identity(edge: &Edge, req: &Request) -> Result<(Identity, QueryParams), ApiError> {
    let params = QueryParams::parse(req.uri().query())?;
    let identity = identify(&*edge.backend, req.headers(), &params)?;
    Ok((identity, params))
}

/// Reads a deploy body (brotli undone) and checks the admin key against it.
async fn admin_body(edge: &Edge, req: Request) -> Result<serde_json::Value, ApiError> {
    let (identity, _) = header_identity(edge, &req)?;
    if let Identity::User(_) = identity {
        require_admin(&identity, &*edge.backend, None)?;
    }
    let (parts, body) = req.into_parts();
    let bytes = read_body(&parts.headers, body, HTTP_DEPLOY_BODY_MAX_BYTES).await?;
    let json = parse_json(&bytes)?;
    let body_key = match json.get("adminKey") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(key)) => Some(key.as_str()),
        Some(_) => return Err(bad_request("adminKey must be a string")),
    };
    require_admin(&identity, &*edge.backend, body_key)?;
    Ok(json)
}

/// `POST /api/get_config_hashes`, `/api/deploy2/*`: the decoded body goes to the backend as is.
pub(super) async fn deploy(edge: &Edge, req: Request, op: DeployOp) -> Result<Response, ApiError> {
    let body = admin_body(edge, req).await?;
    let answer = edge.backend.deploy(op, body).await?;
    Ok(Json(answer).into_response())
}

/// `POST /api/deploy2/report_push_completed`: the CLI reports its tracing spans; nothing to do
/// but answer `null` (as the real backend does) so it does not retry.
pub(super) async fn report_push_completed(edge: &Edge, req: Request) -> Result<Response, ApiError> {
    admin_body(edge, req).await?;
    Ok(Json(serde_json::Value::Null).into_response())
}

/// `GET /api/v1/get_canonical_urls`: `convex dev` writes these into `.env.local`. HTTP actions
/// are served on the same URL.
pub(super) async fn canonical_urls(edge: &Edge, req: Request) -> Result<Response, ApiError> {
    let (identity, _) = header_identity(edge, &req)?;
    require_admin(&identity, &*edge.backend, None)?;
    let url = edge.backend.canonical_url();
    Ok(Json(json!({ "convexCloudUrl": url, "convexSiteUrl": url })).into_response())
}

/// `GET /api/stream_function_logs?cursor=N`: no log streaming yet, so hold the poll for a
/// bounded while (the CLI polls in a loop) and answer with no entries and the same cursor.
pub(super) async fn stream_function_logs(edge: &Edge, req: Request) -> Result<Response, ApiError> {
    let (identity, params) = header_identity(edge, &req)?;
    require_admin(&identity, &*edge.backend, None)?;
    let cursor = match params.get("cursor") {
        None | Some("") => json!(0),
        Some(text) => match text.parse::<u64>() {
            Ok(n) => json!(n),
            // The real server's cursors are milliseconds and may come back as floats.
            Err(_) => match text.parse::<f64>() {
                Ok(f) if f.is_finite() && f >= 0.0 => json!(f),
                _ => {
                    return Err(bad_request(format!(
                        "cursor must be a number, not {text:?}"
                    )));
                }
            },
        },
    };
    tokio::time::sleep(Duration::from_millis(HTTP_LOG_STREAM_POLL_MS)).await;
    Ok(Json(json!({ "entries": [], "newCursor": cursor })).into_response())
}
