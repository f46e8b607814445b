//! A minimal blocking HTTP/1.1 client (one connection per request, `Connection: close`) for
//! tests and the harness: enough for JSON requests to a Chorus node, with a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One request; returns the status and the body. Any transport failure (refused, reset,
/// timed out) is an `Err`: the caller cannot know whether the server acted on the request.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    admin_key: Option<&str>,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let socket: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut stream = TcpStream::connect_timeout(&socket, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let auth = admin_key
        .map(|key| format!("Authorization: Convex {key}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let response = String::from_utf8_lossy(&raw);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "truncated HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> io::Result<String> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed chunked body");
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").ok_or_else(bad)?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| bad())?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).ok_or_else(bad)?);
        body = rest.get(size + 2..).ok_or_else(bad)?;
    }
}

/// Calls a Convex function over the HTTP API (`/api/query` or `/api/mutation`, JSON format);
/// `Ok(Ok(value))` on success, `Ok(Err(message))` for a function error or an error status
/// (the server answered), `Err` when the transport failed (outcome unknown).
pub fn call(
    addr: &str,
    kind: &str,
    path: &str,
    args: &serde_json::Value,
    timeout: Duration,
) -> io::Result<Result<serde_json::Value, String>> {
    let body = serde_json::json!({ "path": path, "args": args, "format": "json" }).to_string();
    let (status, text) = request(addr, "POST", &format!("/api/{kind}"), &body, None, timeout)?;
    if status != 200 {
        return Ok(Err(format!("{status}: {text}")));
    }
    let answer: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e}: {text}")))?;
    if answer["status"] == "success" {
        Ok(Ok(answer["value"].clone()))
    } else {
        Ok(Err(answer["errorMessage"]
            .as_str()
            .unwrap_or("function failed")
            .to_string()))
    }
}
