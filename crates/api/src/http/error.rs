//! The one place an [`ApiError`] becomes an HTTP response.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, ErrorCode};

/// The stable short code clients see in `{"code": …}` for each error class.
pub fn short_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest => "BadRequest",
        ErrorCode::Unauthenticated => "Unauthenticated",
        ErrorCode::Forbidden => "Forbidden",
        ErrorCode::NotFound => "NotFound",
        ErrorCode::PayloadTooLarge => "PayloadTooLarge",
        ErrorCode::Unavailable => "Unavailable",
        ErrorCode::Internal => "InternalServerError",
    }
}

/// The HTTP status of each error class (Convex `crates/errors` mapping).
pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"code": "<ShortName>", "message": "…"}` with the class's status (Convex
/// `HttpResponseError`); Python clients print `<status> <code>: <message>`.
pub fn error_response(error: &ApiError) -> Response {
    if error.code == ErrorCode::Internal {
        tracing::error!(message = %error.message, "internal error answering an HTTP request");
    }
    let body = serde_json::json!({
        "code": short_code(error.code),
        "message": error.message,
    });
    (status(error.code), Json(body)).into_response()
}

/// Shorthand constructors for the errors the edge itself raises.
pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

pub(super) fn unauthenticated(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
}

pub(super) fn too_large(max_bytes: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body is larger than the limit of {max_bytes} bytes"),
    )
}

/// Turns a handler's outcome into the response, mapping errors through [`error_response`].
pub(super) fn respond(outcome: Result<Response, ApiError>) -> Response {
    outcome.unwrap_or_else(|error| error_response(&error))
}
