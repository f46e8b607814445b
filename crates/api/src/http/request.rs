//! Reading requests safely: bounded bodies, `Content-Encoding: br`, JSON, query strings and
//! percent-decoding. Every failure is an [`ApiError`] with a stable code.

use std::collections::HashMap;
use std::io::Read as _;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use futures_util::StreamExt as _;

use super::error::{bad_request, too_large};
use crate::{ApiError, ErrorCode};

/// Buffer the brotli decoder reads its input through.
const BROTLI_BUFFER_BYTES: usize = 64 << 10;

/// Reads a whole request body, at most `max_bytes` as sent and (for a brotli body) at most
/// `max_bytes` once decompressed. A declared `Content-Length` over the limit is refused before
/// reading anything.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max_bytes: usize,
) -> Result<Vec<u8>, ApiError> {
    let brotli = match headers.get(CONTENT_ENCODING) {
        None => false,
        Some(value) => match value.to_str().map(str::trim) {
            Ok(v) if v.eq_ignore_ascii_case("br") => true,
            Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("identity") => false,
            _ => {
                return Err(bad_request(format!(
                    "unsupported Content-Encoding {value:?}; send the body plain or as \"br\""
                )));
            }
        },
    };
    if let Some(length) = headers.get(CONTENT_LENGTH)
        && let Some(length) = length.to_str().ok().and_then(|s| s.parse::<u64>().ok())
        && length > max_bytes as u64
    {
        return Err(too_large(max_bytes));
    }
    let mut raw = Vec::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| bad_request(format!("could not read request body: {e}")))?;
        if raw.len() + chunk.len() > max_bytes {
            return Err(too_large(max_bytes));
        }
        raw.extend_from_slice(&chunk);
    }
    if !brotli {
        return Ok(raw);
    }
    // Decompression is CPU work of up to `max_bytes` of output: keep it off the async workers.
    tokio::task::spawn_blocking(move || decompress_brotli(&raw, max_bytes))
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("decompression task failed: {e}"),
            )
        })?
}

/// Undoes brotli, refusing output over `max_bytes` as soon as it is produced.
pub(super) fn decompress_brotli(compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let decoder = brotli::Decompressor::new(compressed, BROTLI_BUFFER_BYTES);
    let mut out = Vec::new();
    decoder
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad_request(format!("invalid brotli request body: {e}")))?;
    if out.len() > max_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body decompresses to more than the limit of {max_bytes} bytes"),
        ));
    }
    Ok(out)
}

/// Parses a body as JSON.
pub(super) fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_request("request body is empty; expected JSON"));
    }
    serde_json::from_slice(bytes).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

/// Parses a body that must be a JSON object.
pub(super) fn parse_json_object(
    bytes: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match parse_json(bytes)? {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(bad_request(format!(
            "request body must be a JSON object, not {}",
            super::format::json_type(&other)
        ))),
    }
}

/// The decoded `application/x-www-form-urlencoded` query string (later keys win).
#[derive(Debug, Default)]
pub(super) struct QueryParams(HashMap<String, String>);

impl QueryParams {
    pub(super) fn parse(query: Option<&str>) -> Result<QueryParams, ApiError> {
        let mut params = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key, true)
                .ok_or_else(|| bad_request("query string is not valid percent-encoded UTF-8"))?;
            let value = percent_decode(value, true)
                .ok_or_else(|| bad_request("query string is not valid percent-encoded UTF-8"))?;
            params.insert(key, value);
        }
        Ok(QueryParams(params))
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Decodes `%XX` escapes (and `+` as a space in query strings); `None` for a malformed escape
/// or bytes that are not UTF-8.
pub(super) fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                // `from_str_radix` alone would take a sign ("%+1").
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b", false).as_deref(), Some("a b"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%2F%2f", false).as_deref(), Some("//"));
        assert_eq!(percent_decode("%C3%A9", false).as_deref(), Some("é"));
        assert_eq!(percent_decode("%", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%+1", false), None);
        assert_eq!(percent_decode("%FF", false), None);
    }

    #[test]
    fn query_params() {
        let params = QueryParams::parse(Some("adminKey=a%7Cb&cursor=5&flag&x=1+2")).ok();
        let params = params.unwrap_or_default();
        assert_eq!(params.get("adminKey"), Some("a|b"));
        assert_eq!(params.get("cursor"), Some("5"));
        assert_eq!(params.get("flag"), Some(""));
        assert_eq!(params.get("x"), Some("1 2"));
        assert!(QueryParams::parse(Some("a=%zz")).is_err());
    }

    #[test]
    fn brotli_roundtrip_and_bound() {
        let plain = vec![b'x'; 10_000];
        let mut compressed = Vec::new();
        {
            let mut writer = brotli::CompressorWriter::new(&mut compressed, 4096, 5, 22);
            std::io::Write::write_all(&mut writer, &plain).ok();
        }
        assert_eq!(decompress_brotli(&compressed, 10_000).ok(), Some(plain));
        let refused = decompress_brotli(&compressed, 9_999).expect_err("over the bound");
        assert_eq!(refused.code, ErrorCode::PayloadTooLarge);
        let garbage = decompress_brotli(b"not brotli at all", 100).expect_err("garbage");
        assert_eq!(garbage.code, ErrorCode::BadRequest);
    }
}
