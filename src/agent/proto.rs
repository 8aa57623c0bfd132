//! The agent's wire format: one JSON object per line each way, UTF-8, at most 64 KiB a line.
//!
//! A request names its operation in `op`; the other keys are the ABI's (docs/ABI.md),
//! parsed by the very code that parses `hap_resolve_token`'s and `hap_report_failure`'s
//! JSON, so an unknown or ill-typed key is the same `INVALID_ARGUMENT` naming the key:
//!
//! ```text
//! {"op": "resolve", "min_validity_ms": 600000}
//! {"op": "report", "credential_id": "a1b2c3", "status_code": 429, "retry_after_s": 30}
//! {"op": "status"}
//! {"op": "agent"}
//! ```
//!
//! An optional `"id"` (any JSON value) is echoed in the answer. A `report` may carry
//! `"token_fingerprint"` (`sha256:` + 16 hex of the access token the caller used), because the
//! agent serves many processes and its own "last token handed out" says nothing about which
//! one a given caller saw refused (docs/ABI.md: a 401 is judged against the token served).
//!
//! The answer is `{"id"?, "ok": true, "result": R}` with R the ABI's token result, failure
//! result or status document (`agent`: the agent's own state, as in `agent.json`), or
//! `{"id"?, "ok": false, "error": E}` with E the ABI's error object. Only a `resolve` answer
//! holds a token; no answer ever holds a refresh token.
//!
//! Lines that hold tokens are read into and built in buffers that are zeroed when dropped
//! (the crate's rule: no token in freed memory).

use crate::error::{Error, Result, Status};
use crate::request::{Failure, ResolveRequest};
use serde_json::{Map, Value};
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// Longest line either side accepts.
pub(crate) const MAX_LINE: usize = 64 * 1024;
/// Bumped when an answer changes meaning; `{"op": "agent"}` reports it.
pub(crate) const PROTOCOL: u64 = 1;

pub enum Op {
    Resolve(ResolveRequest),
    Report {
        failure: Failure,
        token_fingerprint: Option<String>,
    },
    Status,
    Agent,
}

pub struct Request {
    /// Echoed in the answer, even when the rest of the request is refused.
    pub id: Option<Value>,
    pub op: Result<Op>,
}

fn is_fingerprint(s: &str) -> bool {
    s.len() == 23
        && s.starts_with("sha256:")
        && s[7..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses one request line; the `id` is kept even when the rest is refused.
pub fn parse_request(line: &[u8]) -> Request {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(mut m)) => {
            let id = m.remove("id");
            Request {
                id,
                op: parse_op(m),
            }
        }
        Ok(_) => Request {
            id: None,
            op: Err(Error::invalid("request must be a JSON object")),
        },
        // serde_json's syntax errors quote positions, never the input.
        Err(e) => Request {
            id: None,
            op: Err(Error::invalid(format!("request is not valid JSON: {e}"))),
        },
    }
}

fn parse_op(mut m: Map<String, Value>) -> Result<Op> {
    let op = match m.remove("op") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(Error::invalid("'op' must be a string")),
        None => {
            return Err(Error::invalid(
                "'op' is required: resolve, report, status or agent",
            ))
        }
    };
    let rest = |m: Map<String, Value>| Value::Object(m).to_string();
    Ok(match op.as_str() {
        "resolve" => Op::Resolve(ResolveRequest::from_json(Some(&rest(m)))?),
        "report" => {
            let token_fingerprint = match m.remove("token_fingerprint") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if is_fingerprint(&s) => Some(s),
                Some(_) => {
                    return Err(Error::invalid(
                        "'token_fingerprint' must be \"sha256:\" and 16 lowercase hex digits",
                    ))
                }
            };
            Op::Report {
                failure: Failure::from_json(Some(&rest(m)))?,
                token_fingerprint,
            }
        }
        "status" | "agent" => {
            if let Some(k) = m.keys().next() {
                return Err(Error::invalid(format!(
                    "unknown {op} key '{}'",
                    crate::error::shown(k)
                )));
            }
            if op == "status" {
                Op::Status
            } else {
                Op::Agent
            }
        }
        other => {
            return Err(Error::invalid(format!(
                "unknown op '{}': resolve, report, status or agent",
                crate::error::shown(other)
            )))
        }
    })
}

fn head(id: &Option<Value>, ok: bool, extra: usize) -> Zeroizing<String> {
    let id = id.as_ref().map(Value::to_string);
    let mut s = Zeroizing::new(String::with_capacity(
        32 + id.as_ref().map_or(0, String::len) + extra,
    ));
    s.push('{');
    if let Some(id) = id {
        s.push_str("\"id\":");
        s.push_str(&id);
        s.push(',');
    }
    s.push_str(if ok {
        "\"ok\":true,\"result\":"
    } else {
        "\"ok\":false,\"error\":"
    });
    s
}

/// `{"id"?, "ok": true, "result": <result_json>}` and a newline, in a buffer zeroed on drop
/// (it may hold a token), sized up front so it is never reallocated.
pub fn ok_line(id: &Option<Value>, result_json: &str) -> Zeroizing<String> {
    let mut s = head(id, true, result_json.len());
    s.push_str(result_json);
    s.push_str("}\n");
    s
}

pub fn err_line(id: &Option<Value>, e: &Error) -> Zeroizing<String> {
    let err = e.to_json().to_string();
    let mut s = head(id, false, err.len());
    s.push_str(&err);
    s.push_str("}\n");
    s
}

/// Reads newline-terminated lines from a stream into one buffer that is zeroed when dropped
/// and never reallocated (its capacity is fixed at `MAX_LINE`).
pub struct LineReader {
    buf: Zeroizing<Vec<u8>>,
    /// Bytes in `buf` that are read and not yet returned.
    filled: usize,
    /// Length of the line last returned (consumed at the next call).
    last: usize,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader {
            buf: Zeroizing::new(vec![0u8; MAX_LINE]),
            filled: 0,
            last: 0,
        }
    }
}

pub enum Line<'a> {
    Line(&'a [u8]),
    Eof,
    TooLong,
}

impl LineReader {
    /// The next line without its newline; `Eof` at a clean end of the stream.
    pub fn next<R: Read>(&mut self, r: &mut R) -> std::io::Result<Line<'_>> {
        if self.last > 0 {
            self.buf.copy_within(self.last..self.filled, 0);
            let filled = self.filled - self.last;
            // Zero what was shifted away, so a token does not linger past its line.
            self.buf[filled..self.filled].fill(0);
            self.filled = filled;
            self.last = 0;
        }
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[scanned..self.filled]
                .iter()
                .position(|&b| b == b'\n')
            {
                let end = scanned + i;
                self.last = end + 1;
                return Ok(Line::Line(&self.buf[..end]));
            }
            scanned = self.filled;
            if self.filled == self.buf.len() {
                return Ok(Line::TooLong);
            }
            let n = r.read(&mut self.buf[self.filled..])?;
            if n == 0 {
                return if self.filled == 0 {
                    Ok(Line::Eof)
                } else {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the line ended without a newline",
                    ))
                };
            }
            self.filled += n;
        }
    }
}

/// Writes a whole line.
pub fn write_line<W: Write>(w: &mut W, line: &str) -> std::io::Result<()> {
    w.write_all(line.as_bytes())?;
    w.flush()
}

/// The ABI error object back into an [`Error`].
pub fn error_from_json(v: &Value) -> Error {
    let status = v["status"]
        .as_i64()
        .and_then(|c| Status::from_code(c as i32))
        .unwrap_or(Status::Internal);
    let mut e = Error::new(status, v["message"].as_str().unwrap_or("").to_string());
    e.retry_at_ms = v["retry_at_ms"].as_i64();
    e.credential_id = v["credential_id"].as_str().map(str::to_string);
    e.path = v["path"].as_str().map(std::path::PathBuf::from);
    e
}

/// An answer whose result holds no secret, as a `Value`.
pub fn parse_answer(line: &[u8]) -> Result<Value> {
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| Error::internal(format!("the agent's answer is not JSON: {e}")))?;
    match v["ok"].as_bool() {
        Some(true) => Ok(v["result"].clone()),
        Some(false) => Err(error_from_json(&v["error"])),
        None => Err(Error::internal("the agent's answer has no 'ok'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_use_the_abi_parsers() {
        let r = parse_request(br#"{"op":"resolve","id":7,"min_validity_ms":5}"#);
        assert_eq!(r.id, Some(Value::from(7)));
        assert!(matches!(
            r.op,
            Ok(Op::Resolve(ResolveRequest {
                min_validity_ms: Some(5),
                ..
            }))
        ));
        let r = parse_request(br#"{"op":"resolve","id":"x","force":true}"#);
        assert_eq!(r.id, Some(Value::from("x")));
        let e = r.op.err().unwrap();
        assert!(e.message.contains("force"), "{}", e.message);
        let err = |line: &[u8]| parse_request(line).op.err().unwrap();
        assert!(err(br#"{"op":"report","credential_id":"a"}"#)
            .message
            .contains("status_code"));
        let e = err(br#"{"op":"report","credential_id":"a","status_code":401,"token_fingerprint":"sk-ant-oat01-fake"}"#);
        assert!(!e.message.contains("sk-ant"), "{}", e.message);
        assert!(parse_request(br#"{"op":"status","x":1}"#).op.is_err());
        assert!(!err(br#"{"op":"sk-ant-oat01-fake-a1"}"#)
            .message
            .contains("sk-ant-"));
        assert!(err(b"[1]").message.contains("JSON object"));
        assert!(err(b"{").message.contains("not valid JSON"));
        assert!(matches!(
            parse_request(br#"{"op":"agent"}"#).op,
            Ok(Op::Agent)
        ));
    }

    #[test]
    fn lines_are_split_and_capped() {
        let mut input: &[u8] = b"{\"a\":1}\n{\"b\":2}\npartial";
        let mut r = LineReader::default();
        assert!(matches!(r.next(&mut input).unwrap(), Line::Line(l) if l == b"{\"a\":1}"));
        assert!(matches!(r.next(&mut input).unwrap(), Line::Line(l) if l == b"{\"b\":2}"));
        assert!(r.next(&mut input).is_err());
        let long = vec![b'x'; MAX_LINE + 10];
        let mut r = LineReader::default();
        assert!(matches!(
            r.next(&mut long.as_slice()).unwrap(),
            Line::TooLong
        ));
        let mut empty: &[u8] = b"";
        assert!(matches!(
            LineReader::default().next(&mut empty).unwrap(),
            Line::Eof
        ));
    }

    #[test]
    fn answers_round_trip() {
        let line = ok_line(&Some(Value::from(1)), r#"{"x":2}"#);
        assert_eq!(
            line.as_str(),
            "{\"id\":1,\"ok\":true,\"result\":{\"x\":2}}\n"
        );
        assert_eq!(parse_answer(line.trim_end().as_bytes()).unwrap()["x"], 2);
        let e = Error::new(Status::Unavailable, "later").with_retry_at(Some(5));
        let line = err_line(&None, &e);
        let back = parse_answer(line.trim_end().as_bytes()).unwrap_err();
        assert_eq!(back.status, Status::Unavailable);
        assert_eq!(back.retry_at_ms, Some(5));
    }
}
