//! Who is calling (protocol doc §2.1): `Authorization: Bearer <JWT>` for a user,
//! `Authorization: Convex <adminKey>[:<base64 JSON identity>]` (scheme case-insensitive) or
//! `?adminKey=` for the admin. Credentials that are presented but wrong are refused with 401
//! before anything runs; no credentials at all is [`Identity::None`].

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

use super::error::unauthenticated;
use super::request::QueryParams;
use crate::{ApiError, Backend, ErrorCode, Identity};

/// npm's `setAdminAuth` writes the acting-as identity with `btoa` (standard alphabet, padded);
/// accept it unpadded too.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The caller's identity from the `Authorization` header, else the `adminKey` query parameter.
pub(super) fn identify(
    backend: &dyn Backend,
    headers: &HeaderMap,
    params: &QueryParams,
) -> Result<Identity, ApiError> {
    if let Some(header) = headers.get(AUTHORIZATION) {
        let header = header
            .to_str()
            .map_err(|_| unauthenticated("the Authorization header is not valid text"))?
            .trim();
        let (scheme, credential) = header
            .split_once(char::is_whitespace)
            .map(|(s, c)| (s, c.trim()))
            .unwrap_or((header, ""));
        if credential.is_empty() {
            return Err(unauthenticated(
                "the Authorization header has no credentials after its scheme",
            ));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return backend
                .authenticate_user(credential)
                .map(Identity::User)
                .map_err(|reason| unauthenticated(format!("invalid auth token: {reason}")));
        }
        if scheme.eq_ignore_ascii_case("convex") {
            return admin(backend, credential);
        }
        return Err(unauthenticated(format!(
            "unsupported Authorization scheme {scheme:?}; use \"Bearer <token>\" or \"Convex <admin key>\""
        )));
    }
    match params.get("adminKey") {
        Some(key) => admin(backend, key),
        None => Ok(Identity::None),
    }
}

/// An admin credential: the key itself, or `key:base64(JSON user identity)` to act as a user.
/// The whole text is tried as a key first, so keys that contain `:` still work.
fn admin(backend: &dyn Backend, credential: &str) -> Result<Identity, ApiError> {
    if backend.check_admin_key(credential) {
        return Ok(Identity::Admin { acting_as: None });
    }
    if let Some((key, acting_as)) = credential.rsplit_once(':')
        && backend.check_admin_key(key)
    {
        let identity = BASE64_LENIENT
            .decode(acting_as)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .filter(serde_json::Value::is_object)
            .ok_or_else(|| {
                unauthenticated(
                    "the acting-as identity after the admin key is not base64 of a JSON object",
                )
            })?;
        return Ok(Identity::Admin {
            acting_as: Some(identity),
        });
    }
    Err(unauthenticated("invalid admin key"))
}

/// Requires the admin: from the header / query credentials, else from `body_key` (the
/// `adminKey` field deploy bodies carry). A user token is not enough (403).
pub(super) fn require_admin(
    identity: &Identity,
    backend: &dyn Backend,
    body_key: Option<&str>,
) -> Result<(), ApiError> {
    match identity {
        Identity::Admin { .. } => match body_key {
            Some(key) if !backend.check_admin_key(key) => {
                Err(unauthenticated("invalid admin key in the request body"))
            }
            _ => Ok(()),
        },
        Identity::User(_) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "this endpoint needs the admin key, not a user token",
        )),
        Identity::None => match body_key {
            Some(key) if backend.check_admin_key(key) => Ok(()),
            Some(_) => Err(unauthenticated("invalid admin key")),
            None => Err(unauthenticated(
                "this endpoint needs the admin key (Authorization: Convex <admin key>)",
            )),
        },
    }
}
