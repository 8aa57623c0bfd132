//! One HTTP/1.1 POST to the token endpoint, bounded by a wall-clock deadline that still reads
//! an answer already waiting in the socket when it fires.
//!
//! Why hap speaks HTTP itself for this one request (ureq still serves `hap doctor --online`):
//! ureq checks its deadline before every read and gives up without looking at what the kernel
//! already holds. A process SIGSTOPped during the POST and continued after `http_timeout_ms`
//! threw away an answer that had arrived in 0.3 s, and with it the only copy of the new
//! refresh token (issue 10, item 2). Here, once the deadline has passed, the socket is read
//! without blocking for as long as it has bytes, and a complete answer found there is used.
//! A server that drips its answer still fails on time: nothing more is waited for.
//!
//! The outcome says how far the request got, because that decides whether the refresh token
//! may be spent: [`PostError::Unreachable`] (nothing reached a server: the next URL may be
//! tried), [`PostError::NotSent`] (the request never went out whole: no server can have acted
//! on it), [`PostError::NoAnswer`] (it went out and no answer could be read: it may be spent).
//!
//! Scope: `Connection: close`, one request per connection (a refresh is rare), no redirects,
//! no compression, no proxy (as before with ureq), TLS through rustls with the webpki roots.
//! Heads are capped at 16 KiB and bodies at the caller's cap; a header line without a colon
//! is a malformed answer (ureq 2.12 panicked on it, fuzz finding 1).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Status line and headers larger than this are not an answer hap can use.
const MAX_HEAD: usize = 16 * 1024;
/// Interim (1xx) answers skipped before the real one; more is a malformed answer.
const MAX_INTERIM: usize = 4;

/// How far a POST got when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// No connection to a server (bad URL, DNS, refused, TLS handshake): nothing was sent.
    Unreachable(String),
    /// Connected, but the request did not go out whole: no server can have acted on it.
    NotSent(String),
    /// The request went out; no complete status line and headers came back in time.
    NoAnswer(String),
}

/// What became of the body of an answer.
#[derive(Debug)]
pub enum Body {
    /// The caller did not want it (it was not read).
    Unread,
    Complete(Zeroizing<Vec<u8>>),
    /// Longer than the cap (declared or read): refused without keeping it.
    TooLarge,
    /// Cut short: a timeout, the connection closing early, broken chunked framing.
    Failed(String),
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Body,
}

/// The request: where, what, and how long it may take.
pub struct Request<'a> {
    pub url: &'a str,
    pub user_agent: &'a str,
    pub body: &'a [u8],
    pub timeout: Duration,
    pub max_body: usize,
    /// Whether the body of an answer with this status is worth reading.
    pub want_body: fn(u16) -> bool,
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // The same configuration ureq used: ring, TLS 1.2 and 1.3, webpki roots.
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            Arc::new(
                rustls::ClientConfig::builder_with_provider(
                    rustls::crypto::ring::default_provider().into(),
                )
                .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
                .expect("ring supports TLS 1.2 and 1.3")
                .with_root_certificates(roots)
                .with_no_client_auth(),
            )
        })
        .clone()
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn sock(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => &t.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(t) => match t.read(buf) {
                // A server that closes without close_notify after a complete answer is
                // common; framing (Content-Length, chunked) decides whether it was complete.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(t) => t.flush(),
        }
    }
}

/// Time left before `deadline`, never zero (a zero socket timeout means "block forever").
fn left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .map(|d| d.max(Duration::from_millis(1)))
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The parts of a URL a POST needs. `url` validates; userinfo is refused whatever the
/// config check said (`http://localhost:1@host/` must never send a token to `host`).
struct Target {
    tls: bool,
    host: String,
    port: u16,
    host_header: String,
    path: String,
}

fn target(raw: &str) -> Result<Target, PostError> {
    let bad = |why: &str| PostError::Unreachable(format!("token URL {why}"));
    let u = url::Url::parse(raw).map_err(|_| bad("cannot be parsed"))?;
    let tls = match u.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(bad("is neither https:// nor http://")),
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("carries a user name or password"));
    }
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("has no host"))?;
    let port = u
        .port_or_known_default()
        .ok_or_else(|| bad("has no port"))?;
    let host_header = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut path = u.path().to_string();
    if let Some(q) = u.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok(Target {
        tls,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        host_header,
        path,
    })
}

fn connect(
    t: &Target,
    deadline: Instant,
    tls: impl FnOnce() -> Arc<rustls::ClientConfig>,
) -> Result<Conn, PostError> {
    let addrs: Vec<_> = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|_| PostError::Unreachable("cannot resolve the token endpoint's host".into()))?
        .collect();
    let mut last = PostError::Unreachable("the token endpoint's host has no address".into());
    let mut sock = None;
    for a in addrs {
        let Some(d) = left(deadline) else {
            last = PostError::Unreachable("timed out connecting to the token endpoint".into());
            break;
        };
        match TcpStream::connect_timeout(&a, d) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => {
                last = PostError::Unreachable(format!(
                    "cannot connect to the token endpoint ({})",
                    e.kind()
                ))
            }
        }
    }
    let sock = sock.ok_or(last)?;
    let _ = sock.set_nodelay(true);
    if !t.tls {
        return Ok(Conn::Plain(sock));
    }
    let name = rustls::pki_types::ServerName::try_from(t.host.clone())
        .map_err(|_| PostError::Unreachable("token URL host is not a valid TLS name".into()))?;
    let mut conn = rustls::ClientConnection::new(tls(), name)
        .map_err(|_| PostError::Unreachable("cannot start TLS".into()))?;
    let mut sock = sock;
    while conn.is_handshaking() {
        let d = left(deadline)
            .ok_or_else(|| PostError::Unreachable("timed out in the TLS handshake".into()))?;
        let _ = sock.set_read_timeout(Some(d));
        let _ = sock.set_write_timeout(Some(d));
        match conn.complete_io(&mut sock) {
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => {
                return Err(PostError::Unreachable(format!(
                    "TLS handshake with the token endpoint failed ({})",
                    e.kind()
                )))
            }
        }
    }
    Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, sock))))
}

/// Reads the answer into one buffer with room for the cap reserved up front (no regrowth:
/// each reallocation would leave a copy of token bytes behind in freed memory).
struct Input {
    conn: Conn,
    buf: Zeroizing<Vec<u8>>,
    deadline: Instant,
    /// The deadline passed: read only what is already there, never wait.
    draining: bool,
    eof: bool,
}

impl Input {
    /// Reads more. `Ok(false)`: the peer closed. `Err`: the deadline passed with nothing more
    /// waiting, or the connection failed.
    fn more(&mut self, limit: usize) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        let start = self.buf.len();
        let room = limit.saturating_sub(start).clamp(1, 16 * 1024);
        loop {
            if !self.draining {
                match left(self.deadline) {
                    Some(d) => {
                        let _ = self.conn.sock().set_read_timeout(Some(d));
                    }
                    None => {
                        self.draining = true;
                        let _ = self.conn.sock().set_nonblocking(true);
                    }
                }
            }
            self.buf.resize(start + room, 0);
            let r = self.conn.read(&mut self.buf[start..]);
            let n = match &r {
                Ok(n) => *n,
                Err(_) => 0,
            };
            self.buf.truncate(start + n);
            match r {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(_) => return Ok(true),
                // A stop signal (SIGSTOP, then SIGCONT) ends a blocking read with EINTR; the
                // deadline check above then decides between waiting on and draining.
                Err(e) if timed_out(&e) && !self.draining => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if timed_out(&e) => {
                    return Err("timed out waiting for the token endpoint's answer".into())
                }
                Err(e) => {
                    return Err(format!(
                        "reading the token endpoint's answer failed ({})",
                        e.kind()
                    ))
                }
            }
        }
    }
}

/// The end of the head (index after the blank line), accepting bare LF line ends.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_head(bytes: &[u8]) -> Result<Head, String> {
    let malformed = |what: &str| format!("the token endpoint sent a malformed answer ({what})");
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or(b"");
    let rest = status_line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix(b"HTTP/1.0 "))
        .ok_or_else(|| malformed("status line"))?;
    let code = rest.get(..3).ok_or_else(|| malformed("status line"))?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return Err(malformed("status line"));
    }
    let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| malformed("header line"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        if name.is_empty() || !name.iter().all(token) {
            return Err(malformed("header name"));
        }
        // Values may carry obs-text (not UTF-8); hap reads only a few ASCII ones.
        let value = String::from_utf8_lossy(value);
        headers.push((
            String::from_utf8_lossy(name).into_owned(),
            value.trim().to_string(),
        ));
    }
    Ok(Head { status, headers })
}

enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

fn framing(head: &Head) -> Result<Framing, String> {
    if (100..200).contains(&head.status) || head.status == 204 || head.status == 304 {
        return Ok(Framing::None);
    }
    if let Some(te) = head.get("transfer-encoding").last() {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for v in head.get("content-length") {
        for part in v.split(',') {
            let part = part.trim();
            let n: usize = part
                .parse()
                .ok()
                .filter(|_| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .ok_or("the token endpoint sent a malformed Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("the token endpoint sent conflicting Content-Lengths".into());
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Decodes a chunked body from `raw`; `Ok(None)` while more input is needed.
fn dechunk(raw: &[u8], max: usize) -> Result<Option<Body>, String> {
    let bad = || "the token endpoint sent a malformed chunked body".to_string();
    let mut out = Zeroizing::new(Vec::new());
    let mut i = 0;
    loop {
        let Some(nl) = raw[i..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line = &raw[i..i + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let size_text = line.split(|&b| b == b';').next().unwrap_or(b"");
        let size_text = std::str::from_utf8(size_text).map_err(|_| bad())?.trim();
        if size_text.is_empty() || size_text.len() > 8 {
            return Err(bad());
        }
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        i += nl + 1;
        if size == 0 {
            // Trailers until a blank line; their content is not used.
            loop {
                let Some(nl) = raw[i..].iter().position(|&b| b == b'\n') else {
                    return Ok(None);
                };
                let line = &raw[i..i + nl];
                i += nl + 1;
                if line.is_empty() || line == b"\r" {
                    return Ok(Some(Body::Complete(out)));
                }
            }
        }
        if out.len().saturating_add(size) > max {
            return Ok(Some(Body::TooLarge));
        }
        let Some(end) = i.checked_add(size) else {
            return Err(bad());
        };
        if raw.len() < end {
            return Ok(None);
        }
        if out.capacity() == 0 {
            out.reserve_exact(max);
        }
        out.extend_from_slice(&raw[i..end]);
        i = end;
        match raw.get(i..) {
            Some([b'\r', b'\n', ..]) => i += 2,
            Some([b'\n', ..]) => i += 1,
            Some([]) | Some([b'\r']) => return Ok(None),
            _ => return Err(bad()),
        }
    }
}

fn read_body(input: &mut Input, from: usize, framing: Framing, max: usize) -> Body {
    // Room for the cap, plus chunk framing around it.
    let limit = from + max + 1 + max / 8 + 64;
    match framing {
        Framing::None => Body::Complete(Zeroizing::new(Vec::new())),
        Framing::Length(n) if n > max => Body::TooLarge,
        Framing::Length(n) => loop {
            if input.buf.len() - from >= n {
                return Body::Complete(Zeroizing::new(input.buf[from..from + n].to_vec()));
            }
            match input.more(from + n) {
                Ok(true) => {}
                Ok(false) => return Body::Failed("the connection closed mid-answer".into()),
                Err(why) => return Body::Failed(why),
            }
        },
        Framing::UntilClose => loop {
            if input.buf.len() - from > max {
                return Body::TooLarge;
            }
            match input.more(from + max + 1) {
                Ok(true) => {}
                Ok(false) => {
                    return Body::Complete(Zeroizing::new(input.buf[from..].to_vec()));
                }
                Err(why) => return Body::Failed(why),
            }
        },
        Framing::Chunked => loop {
            match dechunk(&input.buf[from..], max) {
                Ok(Some(b)) => return b,
                Ok(None) => {}
                Err(why) => return Body::Failed(why),
            }
            if input.buf.len() >= limit {
                return Body::TooLarge;
            }
            match input.more(limit) {
                Ok(true) => {}
                Ok(false) => return Body::Failed("the connection closed mid-answer".into()),
                Err(why) => return Body::Failed(why),
            }
        },
    }
}

/// Sends one POST and reads its answer. See the module comment for the deadline's rule.
pub fn post(req: &Request<'_>) -> Result<Reply, PostError> {
    post_with(req, tls_config)
}

/// `post` with the TLS configuration to use for https (tests trust their own root).
fn post_with(
    req: &Request<'_>,
    tls: impl FnOnce() -> Arc<rustls::ClientConfig>,
) -> Result<Reply, PostError> {
    // Checked: `Instant + Duration` panics on overflow (a timeout of u64::MAX ms).
    let now = Instant::now();
    let deadline = now
        .checked_add(req.timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
    let t = target(req.url)?;
    let mut conn = connect(&t, deadline, tls)?;

    // A control character in the configured user agent must not end the header early.
    let user_agent: String = req.user_agent.chars().filter(|c| !c.is_control()).collect();
    let mut out = Zeroizing::new(Vec::with_capacity(512 + req.body.len()));
    out.extend_from_slice(
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {user_agent}\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            t.path,
            t.host_header,
            req.body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(req.body);
    let mut written = 0;
    while written < out.len() {
        let Some(d) = left(deadline) else {
            return Err(PostError::NotSent(
                "timed out sending the request to the token endpoint".into(),
            ));
        };
        let _ = conn.sock().set_write_timeout(Some(d));
        match conn.write(&out[written..]) {
            Ok(0) => return Err(PostError::NotSent("the token endpoint closed early".into())),
            Ok(n) => written += n,
            Err(e) if timed_out(&e) => {}
            Err(e) => {
                return Err(PostError::NotSent(format!(
                    "sending the request to the token endpoint failed ({})",
                    e.kind()
                )))
            }
        }
    }
    // For TLS the records may still sit in rustls: the request is out once they are flushed.
    loop {
        match conn.flush() {
            Ok(()) => break,
            Err(e) if timed_out(&e) && left(deadline).is_some() => {}
            Err(e) => {
                return Err(PostError::NotSent(format!(
                    "sending the request to the token endpoint failed ({})",
                    e.kind()
                )))
            }
        }
    }
    drop(out);
    read_reply(
        Input {
            conn,
            // Every head (interim ones too), the body with chunk framing, one read of slack.
            buf: Zeroizing::new(Vec::with_capacity(
                (MAX_INTERIM + 1) * (MAX_HEAD + 1)
                    + req.max_body
                    + req.max_body / 8
                    + 64
                    + 16 * 1024,
            )),
            deadline,
            draining: false,
            eof: false,
        },
        req.max_body,
        req.want_body,
    )
}

/// Reads the answer to a request that went out: any failure now is `NoAnswer`.
fn read_reply(
    mut input: Input,
    max_body: usize,
    want_body: fn(u16) -> bool,
) -> Result<Reply, PostError> {
    let mut from = 0;
    let mut interim = 0;
    let head = loop {
        if let Some(end) = head_end(&input.buf[from..]) {
            let head = parse_head(&input.buf[from..from + end]).map_err(PostError::NoAnswer)?;
            from += end;
            if (100..200).contains(&head.status) && head.status != 101 && interim < MAX_INTERIM {
                interim += 1;
                continue;
            }
            break head;
        }
        if input.buf.len() - from > MAX_HEAD {
            return Err(PostError::NoAnswer(
                "the token endpoint sent a head larger than 16 KiB".into(),
            ));
        }
        match input.more(from + MAX_HEAD + 1) {
            Ok(true) => {}
            Ok(false) => {
                return Err(PostError::NoAnswer(
                    "the token endpoint closed the connection without an answer".into(),
                ))
            }
            Err(why) => return Err(PostError::NoAnswer(why)),
        }
    };
    let retry_after = head.get("retry-after").next().map(str::to_string);
    let body = if want_body(head.status) {
        match framing(&head) {
            Ok(f) => read_body(&mut input, from, f, max_body),
            Err(why) => Body::Failed(why),
        }
    } else {
        Body::Unread
    };
    Ok(Reply {
        status: head.status,
        retry_after,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server on 127.0.0.1 running `serve` on the accepted connection after
    /// reading the request head and body.
    fn serve(serve: impl FnOnce(TcpStream) + Send + 'static) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                if let Some(end) = head_end(&req) {
                    let text = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    if req.len() >= end + len {
                        break;
                    }
                }
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed before its request was complete");
                req.extend_from_slice(&buf[..n]);
            }
            serve(s);
        });
        format!("http://127.0.0.1:{port}/v1/oauth/token")
    }

    fn post_to(url: &str, timeout_ms: u64) -> Result<Reply, PostError> {
        post(&Request {
            url,
            user_agent: "hap-test",
            body: br#"{"x":1}"#,
            timeout: Duration::from_millis(timeout_ms),
            max_body: 1024,
            want_body: |_| true,
        })
    }

    fn body(r: Reply) -> Vec<u8> {
        match r.body {
            Body::Complete(b) => b.to_vec(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_length_chunked_and_until_close_bodies() {
        let url = serve(|mut s| {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap();
        });
        assert_eq!(body(post_to(&url, 2000).unwrap()), b"hello");
        let url = serve(|mut s| {
            s.write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: 1\r\n\r\n",
            )
            .unwrap();
        });
        assert_eq!(body(post_to(&url, 2000).unwrap()), b"hello");
        let url = serve(|mut s| {
            s.write_all(b"HTTP/1.0 200 OK\n\nhello").unwrap();
        });
        assert_eq!(body(post_to(&url, 2000).unwrap()), b"hello");
    }

    #[test]
    fn heads_parse_leniently_where_http_allows_it() {
        let h = parse_head(b"HTTP/1.1 429\r\nRetry-After:  30 \r\nX-Odd: caf\xe9\r\n\r\n").unwrap();
        assert_eq!(h.status, 429);
        assert_eq!(h.get("retry-after").next(), Some("30"));
        assert!(parse_head(b"HTTP/1.1 200 OK\nX: 1\n\n").is_ok());
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n: x\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn malformed_heads_are_no_answer_and_short_bodies_fail() {
        for raw in [
            &b"HTTP/1.1 200 K\nTransfer-Encoding\n\n"[..],
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"SSH-2.0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ] {
            let url = serve(move |mut s| s.write_all(raw).unwrap());
            match post_to(&url, 2000) {
                Err(PostError::NoAnswer(_)) => {}
                Ok(Reply {
                    body: Body::Failed(_),
                    ..
                }) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
            }
        }
        let url = serve(|mut s| {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello")
                .unwrap();
        });
        assert!(matches!(post_to(&url, 2000).unwrap().body, Body::Failed(_)));
        let url = serve(|mut s| {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n")
                .unwrap();
        });
        assert!(matches!(post_to(&url, 2000).unwrap().body, Body::TooLarge));
    }

    #[test]
    fn nothing_listening_is_unreachable_and_silence_is_no_answer() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let url = format!("http://127.0.0.1:{port}/x");
        assert!(matches!(
            post_to(&url, 2000),
            Err(PostError::Unreachable(_))
        ));
        assert!(matches!(
            post_to("http://user:pw@127.0.0.1:1/x", 2000),
            Err(PostError::Unreachable(_))
        ));
        let url = serve(|s| {
            std::thread::sleep(Duration::from_millis(600));
            drop(s);
        });
        let t0 = Instant::now();
        assert!(matches!(post_to(&url, 200), Err(PostError::NoAnswer(_))));
        assert!(t0.elapsed() < Duration::from_millis(550));
    }

    /// Issue 10 item 2: the deadline passed while the process was stopped, and the whole
    /// answer is waiting in the socket. It is read, not discarded.
    #[test]
    fn an_answer_already_waiting_is_read_after_the_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let input = |c: TcpStream| Input {
            conn: Conn::Plain(c),
            buf: Zeroizing::new(Vec::with_capacity(MAX_HEAD + 2048)),
            deadline: Instant::now() - Duration::from_secs(5),
            draining: false,
            eof: false,
        };
        let r = read_reply(input(client), 1024, |_| true).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(body(r), b"hello");
        // Half an answer waiting is not an answer, and nothing more is waited for.
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        let r = read_reply(input(client), 1024, |_| true).unwrap();
        assert!(matches!(r.body, Body::Failed(_)));
        assert!(t0.elapsed() < Duration::from_millis(500));
        drop(server);
    }

    #[test]
    fn a_timeout_too_large_for_the_clock_is_not_a_panic() {
        let url = serve(|mut s| {
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        });
        let r = post(&Request {
            url: &url,
            user_agent: "hap-test",
            body: b"{}",
            timeout: Duration::from_millis(u64::MAX),
            max_body: 1024,
            want_body: |_| true,
        });
        assert_eq!(r.unwrap().status, 204);
    }

    #[test]
    fn a_dripping_answer_fails_at_the_deadline() {
        let url = serve(|mut s| {
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let t0 = Instant::now();
        assert!(matches!(post_to(&url, 300), Err(PostError::NoAnswer(_))));
        assert!(t0.elapsed() < Duration::from_millis(1500));
    }

    // --- TLS, against a rustls server on 127.0.0.1 with a throwaway self-signed
    // certificate (testing/tls/, for localhost and 127.0.0.1) that only these tests trust.

    const CERT: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testing/tls/localhost-cert.der"
    ));
    const KEY: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testing/tls/localhost-key.der"
    ));

    fn trusting_the_test_root() -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(CERT))
            .unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(
                rustls::crypto::ring::default_provider().into(),
            )
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }

    /// A one-shot TLS server: handshake, read the request, then `answer` on the stream.
    fn serve_tls(
        answer: impl FnOnce(&mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>)
            + Send
            + 'static,
    ) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (sock, _) = l.accept().unwrap();
            let cfg = rustls::ServerConfig::builder_with_provider(
                rustls::crypto::ring::default_provider().into(),
            )
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(CERT)],
                rustls::pki_types::PrivateKeyDer::Pkcs8(KEY.to_vec().into()),
            )
            .unwrap();
            let conn = rustls::ServerConnection::new(Arc::new(cfg)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while head_end(&req).is_none_or(|end| req.len() < end + 7) {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            answer(&mut tls);
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
        });
        port
    }

    fn post_tls(url: &str, timeout_ms: u64) -> Result<Reply, PostError> {
        post_with(
            &Request {
                url,
                user_agent: "hap-test",
                body: br#"{"x":1}"#,
                timeout: Duration::from_millis(timeout_ms),
                max_body: 1024,
                want_body: |_| true,
            },
            trusting_the_test_root,
        )
    }

    #[test]
    fn a_post_over_tls_reads_the_answer() {
        let port = serve_tls(|s| {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap();
        });
        let r = post_tls(&format!("https://localhost:{port}/v1/oauth/token"), 5000).unwrap();
        assert_eq!(body(r), b"hello");
    }

    #[test]
    fn a_certificate_nobody_trusts_is_unreachable() {
        let port = serve_tls(|_| {});
        let url = format!("https://localhost:{port}/v1/oauth/token");
        match post(&Request {
            url: &url,
            user_agent: "hap-test",
            body: b"{}",
            timeout: Duration::from_secs(5),
            max_body: 1024,
            want_body: |_| true,
        }) {
            Err(PostError::Unreachable(why)) => assert!(why.contains("TLS"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// Item 2 over TLS: the deadline passed while the answer's records sat in the socket.
    #[test]
    fn a_tls_answer_already_waiting_is_read_after_the_deadline() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let port = serve_tls(move |s| {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap();
            s.flush().unwrap();
            ready_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let t = target(&format!("https://localhost:{port}/x")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut conn = connect(&t, deadline, trusting_the_test_root).unwrap();
        conn.write_all(
            b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 7\r\n\r\n{\"x\":1}",
        )
        .unwrap();
        conn.flush().unwrap();
        ready_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let input = Input {
            conn,
            buf: Zeroizing::new(Vec::with_capacity(MAX_HEAD + 2048)),
            deadline: Instant::now() - Duration::from_secs(5),
            draining: false,
            eof: false,
        };
        let r = read_reply(input, 1024, |_| true).unwrap();
        assert_eq!(body(r), b"hello");
    }
}
