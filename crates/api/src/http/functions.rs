//! Function-call endpoints (protocol doc §2.2, §2.3): `/api/query`, `/api/mutation`,
//! `/api/action`, `/api/function`, `/api/run/{path}`, `/api/query_ts`, `/api/query_at_ts`,
//! `/api/query_batch`, and `GET /api/query`.
//!
//! A function that ran answers 200 with `status: "success" | "error"`; everything refused before
//! a function runs (credentials, body, arguments) is an [`ApiError`].

use axum::Json;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use knobs::{HTTP_FUNCTION_BODY_MAX_BYTES, HTTP_QUERY_BATCH_MAX_QUERIES};
use serde_json::{Map, json};
use value::Value;

use super::Edge;
use super::auth::{identify, require_admin};
use super::error::bad_request;
use super::format::{ValueFormat, function_result_json, json_type, parse_args};
use super::request::{QueryParams, parse_json, parse_json_object, percent_decode, read_body};
use crate::{ApiError, CallKind, CallRequest, FunctionResult, Identity, Ts};

/// What the common part of a function-call request decodes to.
struct Call {
    path: String,
    args: Value,
    format: ValueFormat,
}

/// Credentials and the JSON object body of a POST.
async fn identity_and_body(
    edge: &Edge,
    req: Request,
) -> Result<(Parts, Identity, Map<String, serde_json::Value>), ApiError> {
    let (parts, body) = req.into_parts();
    let params = QueryParams::parse(parts.uri.query())?;
    // Credentials first: a wrong key is refused without reading the body.
    let identity = identify(&*edge.backend, &parts.headers, &params)?;
    let bytes = read_body(&parts.headers, body, HTTP_FUNCTION_BODY_MAX_BYTES).await?;
    let body = parse_json_object(&bytes)?;
    Ok((parts, identity, body))
}

/// `{path, args, format}`; `format` defaults to clean JSON (what the backend picks for
/// current npm and Python clients and for unknown ones).
fn parse_call(body: &Map<String, serde_json::Value>) -> Result<Call, ApiError> {
    let path = match body.get("path") {
        Some(serde_json::Value::String(path)) if !path.is_empty() => path.clone(),
        Some(serde_json::Value::String(_)) => return Err(bad_request("path must not be empty")),
        Some(other) => {
            return Err(bad_request(format!(
                "path must be a string, not {}",
                json_type(other)
            )));
        }
        None => return Err(bad_request("missing field path")),
    };
    Ok(Call {
        path,
        args: parse_args(body.get("args"))?,
        format: ValueFormat::parse(body.get("format"), ValueFormat::Clean)?,
    })
}

/// Runs one call on the backend method for its kind.
async fn run(edge: &Edge, call: CallRequest, ts: Option<Ts>) -> Result<FunctionResult, ApiError> {
    match call.kind {
        CallKind::Query => Ok(edge.backend.run_query(call, ts).await?.result),
        CallKind::Mutation => Ok(edge.backend.run_mutation(call).await?.result),
        CallKind::Action => edge.backend.run_action(call).await,
        CallKind::Any => edge.backend.run_function(call).await,
    }
}

fn reply(result: &FunctionResult, format: ValueFormat) -> Response {
    Json(function_result_json(result, format)).into_response()
}

/// `POST /api/query`, `/api/mutation`, `/api/action`: any identity; `POST /api/function`
/// (`CallKind::Any`): the admin only.
pub(super) async fn post_call(
    edge: &Edge,
    req: Request,
    kind: CallKind,
) -> Result<Response, ApiError> {
    let (_, identity, body) = identity_and_body(edge, req).await?;
    if kind == CallKind::Any {
        require_admin(&identity, &*edge.backend, None)?;
        match body.get("componentPath") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(path)) if path.is_empty() => {}
            Some(_) => return Err(bad_request("components are not supported (componentPath)")),
        }
    }
    let call = parse_call(&body)?;
    let result = run(
        edge,
        CallRequest {
            path: call.path,
            args: call.args,
            identity,
            kind,
        },
        None,
    )
    .await?;
    Ok(reply(&result, call.format))
}

/// `GET /api/query?path=…&args=<JSON>&format=…`.
pub(super) async fn get_query(edge: &Edge, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let params = QueryParams::parse(parts.uri.query())?;
    let identity = identify(&*edge.backend, &parts.headers, &params)?;
    let mut body = Map::new();
    if let Some(path) = params.get("path") {
        body.insert("path".into(), path.into());
    }
    if let Some(args) = params.get("args") {
        body.insert("args".into(), parse_json(args.as_bytes())?);
    }
    if let Some(format) = params.get("format") {
        body.insert("format".into(), format.into());
    }
    let call = parse_call(&body)?;
    let result = run(
        edge,
        CallRequest {
            path: call.path,
            args: call.args,
            identity,
            kind: CallKind::Query,
        },
        None,
    )
    .await?;
    Ok(reply(&result, call.format))
}

/// `POST /api/run/{module/path/export}` with `{args, format?}`: segments are percent-decoded,
/// the last one names the export (`dir/file/fn` → `dir/file:fn`). An empty body means no
/// arguments.
pub(super) async fn post_run(edge: &Edge, req: Request) -> Result<Response, ApiError> {
    let path = run_path(req.uri().path())?;
    let (parts, body) = req.into_parts();
    let params = QueryParams::parse(parts.uri.query())?;
    let identity = identify(&*edge.backend, &parts.headers, &params)?;
    let bytes = read_body(&parts.headers, body, HTTP_FUNCTION_BODY_MAX_BYTES).await?;
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        parse_json_object(&bytes)?
    };
    let args = parse_args(body.get("args"))?;
    let format = ValueFormat::parse(body.get("format"), ValueFormat::Clean)?;
    let result = run(
        edge,
        CallRequest {
            path,
            args,
            identity,
            kind: CallKind::Any,
        },
        None,
    )
    .await?;
    Ok(reply(&result, format))
}

/// The function path named by a `/api/run/…` URL path.
fn run_path(uri_path: &str) -> Result<String, ApiError> {
    let rest = uri_path
        .strip_prefix("/api/run/")
        .ok_or_else(|| bad_request("expected /api/run/<module path>/<function name>"))?;
    let segments = rest
        .split('/')
        .map(|segment| {
            percent_decode(segment, false)
                .ok_or_else(|| bad_request("the function path is not valid percent-encoded UTF-8"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if segments.iter().any(String::is_empty) {
        return Err(bad_request(format!(
            "the function path {rest:?} has an empty segment"
        )));
    }
    match segments.split_last() {
        Some((export, module)) if !module.is_empty() => {
            Ok(format!("{}:{export}", module.join("/")))
        }
        _ => Err(bad_request(format!(
            "the function path {rest:?} needs a module and a function name: /api/run/<module path>/<function name>"
        ))),
    }
}

/// `POST /api/query_ts` → `{"ts": base64(8 bytes LE)}`.
pub(super) async fn query_ts(edge: &Edge, req: Request) -> Result<Response, ApiError> {
    let params = QueryParams::parse(req.uri().query())?;
    identify(&*edge.backend, req.headers(), &params)?;
    let ts = edge.backend.latest_ts()?;
    Ok(Json(json!({ "ts": encode_ts(ts) })).into_response())
}

/// `POST /api/query_at_ts` `{path, args, format, ts}`.
pub(super) async fn query_at_ts(edge: &Edge, req: Request) -> Result<Response, ApiError> {
    let (_, identity, body) = identity_and_body(edge, req).await?;
    let ts = match body.get("ts") {
        Some(ts) => decode_ts(ts)?,
        None => return Err(bad_request("missing field ts")),
    };
    let call = parse_call(&body)?;
    let result = run(
        edge,
        CallRequest {
            path: call.path,
            args: call.args,
            identity,
            kind: CallKind::Query,
        },
        Some(ts),
    )
    .await?;
    Ok(reply(&result, call.format))
}

/// `POST /api/query_batch` `{queries: [{path, args, format}, …]}` → `{results: […]}`, every
/// query at one snapshot. A request-level error in any query fails the whole batch.
pub(super) async fn query_batch(edge: &Edge, req: Request) -> Result<Response, ApiError> {
    let (_, identity, body) = identity_and_body(edge, req).await?;
    let queries = match body.get("queries") {
        Some(serde_json::Value::Array(queries)) => queries,
        Some(other) => {
            return Err(bad_request(format!(
                "queries must be an array, not {}",
                json_type(other)
            )));
        }
        None => return Err(bad_request("missing field queries")),
    };
    if queries.len() > HTTP_QUERY_BATCH_MAX_QUERIES {
        return Err(bad_request(format!(
            "a batch may hold at most {HTTP_QUERY_BATCH_MAX_QUERIES} queries, not {}",
            queries.len()
        )));
    }
    let calls = queries
        .iter()
        .enumerate()
        .map(|(i, query)| match query {
            serde_json::Value::Object(query) => {
                parse_call(query).map_err(|e| bad_request(format!("queries[{i}]: {}", e.message)))
            }
            other => Err(bad_request(format!(
                "queries[{i}] must be an object, not {}",
                json_type(other)
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ts = edge.backend.latest_ts()?;
    let runs = calls.into_iter().map(|call| {
        let identity = identity.clone();
        async move {
            let request = CallRequest {
                path: call.path,
                args: call.args,
                identity,
                kind: CallKind::Query,
            };
            let result = run(edge, request, Some(ts)).await?;
            Ok::<_, ApiError>(function_result_json(&result, call.format))
        }
    });
    let results = futures_util::future::try_join_all(runs).await?;
    Ok(Json(json!({ "results": results })).into_response())
}

/// A timestamp on the wire: base64 of its 8 little-endian bytes (protocol doc §1.6).
pub(super) fn encode_ts(ts: Ts) -> String {
    STANDARD.encode(ts.to_le_bytes())
}

/// Reads `ts` as `query_ts` wrote it; a plain non-negative integer is accepted too.
fn decode_ts(json: &serde_json::Value) -> Result<Ts, ApiError> {
    match json {
        serde_json::Value::String(text) => {
            let bytes = STANDARD
                .decode(text)
                .map_err(|e| bad_request(format!("ts is not valid base64: {e}")))?;
            let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                bad_request(format!(
                    "ts must be base64 of 8 bytes, not {} bytes",
                    bytes.len()
                ))
            })?;
            Ok(Ts::from_le_bytes(bytes))
        }
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| bad_request("ts must be a non-negative integer")),
        other => Err(bad_request(format!(
            "ts must be a base64 string, not {}",
            json_type(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_paths() {
        assert_eq!(
            run_path("/api/run/messages/list").ok().as_deref(),
            Some("messages:list")
        );
        assert_eq!(
            run_path("/api/run/dir%20x/sub/my%2Dfn").ok().as_deref(),
            Some("dir x/sub:my-fn")
        );
        assert_eq!(run_path("/api/run/a%2Fb/c").ok().as_deref(), Some("a/b:c"));
        assert!(run_path("/api/run/only").is_err());
        assert!(run_path("/api/run/a//b").is_err());
        assert!(run_path("/api/run/a/").is_err());
        assert!(run_path("/api/run/a/%zz").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(encode_ts(0), "AAAAAAAAAAA=");
        assert_eq!(encode_ts(1_700_000_000_000_000_000), "AAAqNv6clxc=");
        assert_eq!(
            decode_ts(&json!("AAAqNv6clxc=")),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(decode_ts(&json!(42)), Ok(42));
        assert!(decode_ts(&json!("AAAA")).is_err());
        assert!(decode_ts(&json!(-1)).is_err());
        assert!(decode_ts(&json!(null)).is_err());
    }
}
