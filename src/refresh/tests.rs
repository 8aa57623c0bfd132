//! The transaction on its own: an in-memory store (`store/memory.rs`, a third `Authority`, test
//! code only: the proof that a new store needs nothing of the pool or of refresh), a ledger that records
//! what the refresh did to the rows, and a real HTTP token server on 127.0.0.1 that answers
//! as each test says.

use super::*;
use crate::config::Config;
use crate::store::memory::{pair, MemoryStore};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::AtomicUsize;

/// What the refresh did to the rows.
#[derive(Default)]
struct Ledger {
    ok: Mutex<Vec<String>>,
    dead: Mutex<Vec<String>>,
}

impl RowLedger for Ledger {
    fn mark_ok(&self, row_id: &str, _pair: &TokenPair, _held: &Held) {
        self.ok.lock().unwrap().push(row_id.into());
    }
    fn mark_dead(&self, row_id: &str, code: &str, _token_fp: Option<String>) -> Result<()> {
        self.dead.lock().unwrap().push(format!("{row_id}: {code}"));
        Ok(())
    }
    fn invalidate(&self) {}
}

type Answer = Box<dyn Fn() -> (u16, String) + Send + Sync>;

/// A token endpoint on 127.0.0.1: each POST is counted and answered by `answer`.
struct TokenServer {
    url: String,
    posts: Arc<AtomicUsize>,
}

fn token_server(answer: Answer) -> TokenServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/v1/oauth/token",
        listener.local_addr().unwrap().port()
    );
    let posts = Arc::new(AtomicUsize::new(0));
    let counted = posts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then as many body bytes as Content-Length says.
            loop {
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let (status, body) = answer();
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    TokenServer { url, posts }
}

fn issued(access: &str, refresh: &str) -> (u16, String) {
    (
        200,
        format!(r#"{{"access_token":"{access}","refresh_token":"{refresh}","expires_in":28800}}"#),
    )
}

struct Bench {
    flights: Flights,
    endpoint: TokenEndpoint,
    counters: Counters,
    ledger: Ledger,
}

impl Bench {
    fn new(server: &TokenServer) -> Bench {
        let cfg = Config::from_json_str(Some(
            &serde_json::json!({"token_urls": [server.url], "http_timeout_ms": 5000}).to_string(),
        ))
        .unwrap();
        Bench {
            flights: Flights::default(),
            endpoint: TokenEndpoint::new(&cfg),
            counters: Counters::default(),
            ledger: Ledger::default(),
        }
    }

    fn refresher(&self) -> Refresher<'_> {
        Refresher {
            flights: &self.flights,
            endpoint: &self.endpoint,
            counters: &self.counters,
            lock_timeout_ms: 1000,
            ledger: &self.ledger,
        }
    }

    fn refresh(&self, store: &Arc<MemoryStore>, stale: &TokenPair) -> Result<Outcome> {
        let row = Row::new_borrowed("mem001".into(), 0);
        self.refresher()
            .refresh(store.clone(), &row, stale, false, 60_000)
    }
}

fn expired() -> i64 {
    now_ms() - 1000
}

fn later() -> i64 {
    now_ms() + 3_600_000
}

#[test]
fn a_due_pair_is_refreshed_once_journalled_and_saved_in_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(Box::new(|| {
        issued("sk-ant-oat01-fake-a2", "sk-ant-ort01-fake-r2")
    }));
    let store = MemoryStore::new(
        &dir,
        pair("sk-ant-oat01-fake-a1", "sk-ant-ort01-fake-r1", expired()),
    );
    let bench = Bench::new(&server);
    let out = bench.refresh(&store, &store.holds().unwrap()).unwrap();
    assert!(out.refreshed);
    assert_eq!(out.pair.access.expose(), "sk-ant-oat01-fake-a2");
    let held = store.holds().unwrap();
    assert_eq!(held.access.expose(), "sk-ant-oat01-fake-a2");
    assert_eq!(held.refresh.unwrap().expose(), "sk-ant-ort01-fake-r2");
    assert_eq!(*bench.ledger.ok.lock().unwrap(), ["mem001"]);
    let doc = store.journal().unwrap().read().unwrap();
    assert_eq!(doc.entries.len(), 1);
    assert!(doc.entries[0].committed, "the store took the pair");
    assert_eq!(doc.entries[0].grant, "memory");
    assert!(doc.is_spent(&Secret::new("sk-ant-ort01-fake-r1").fingerprint()));

    // Fresh now: served from the store, no second POST.
    let again = bench.refresh(&store, &store.holds().unwrap()).unwrap();
    assert!(!again.refreshed);
    assert_eq!(server.posts.load(Ordering::SeqCst), 1);
}

#[test]
fn a_pair_someone_else_saved_meanwhile_is_adopted_without_a_post() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(Box::new(|| {
        issued("sk-ant-oat01-fake-x", "sk-ant-ort01-fake-x")
    }));
    let stale = pair("sk-ant-oat01-fake-a1", "sk-ant-ort01-fake-r1", expired());
    let store = MemoryStore::new(
        &dir,
        pair("sk-ant-oat01-fake-a2", "sk-ant-ort01-fake-r2", later()),
    );
    let bench = Bench::new(&server);
    let out = bench.refresh(&store, &stale).unwrap();
    assert!(!out.refreshed);
    assert_eq!(out.pair.access.expose(), "sk-ant-oat01-fake-a2");
    assert_eq!(server.posts.load(Ordering::SeqCst), 0);
    assert_eq!(bench.counters.refresh_adopted.load(Ordering::SeqCst), 1);
}

#[test]
fn the_write_is_a_compare_and_set_so_a_login_saved_during_the_post_stands() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new(
        &dir,
        pair("sk-ant-oat01-fake-a1", "sk-ant-ort01-fake-r1", expired()),
    );
    let relogin = pair("sk-ant-oat01-fake-a9", "sk-ant-ort01-fake-r9", later());
    let (s, l) = (store.clone(), relogin.clone());
    // The user logs in again while the token endpoint is answering.
    let server = token_server(Box::new(move || {
        s.set(l.clone());
        issued("sk-ant-oat01-fake-a2", "sk-ant-ort01-fake-r2")
    }));
    let bench = Bench::new(&server);
    let out = bench.refresh(&store, &store.holds().unwrap()).unwrap();
    // Our pair is valid: served once; the store keeps the new login.
    assert!(out.refreshed);
    assert_eq!(out.pair.access.expose(), "sk-ant-oat01-fake-a2");
    assert_eq!(store.holds().unwrap(), relogin);
    assert!(bench.ledger.ok.lock().unwrap().is_empty());
    assert!(!bench.flights.has_unsaved());
    let doc = store.journal().unwrap().read().unwrap();
    assert!(
        doc.entries.iter().all(|e| e.committed),
        "nothing left to replay"
    );
}

#[test]
fn after_invalid_grant_a_pair_another_writer_saves_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new(
        &dir,
        pair("sk-ant-oat01-fake-a1", "sk-ant-ort01-fake-r1", expired()),
    );
    let s = store.clone();
    // An older Claude Code, which takes no lock, spent the token and saves its pair a
    // moment after our POST is refused.
    let server = token_server(Box::new(move || {
        let s = s.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            s.set(pair(
                "sk-ant-oat01-fake-a3",
                "sk-ant-ort01-fake-r3",
                later(),
            ));
        });
        (400, r#"{"error":"invalid_grant"}"#.into())
    }));
    let bench = Bench::new(&server);
    let out = bench.refresh(&store, &store.holds().unwrap()).unwrap();
    assert!(!out.refreshed);
    assert_eq!(out.pair.access.expose(), "sk-ant-oat01-fake-a3");
    assert!(bench.ledger.dead.lock().unwrap().is_empty());
    assert_eq!(server.posts.load(Ordering::SeqCst), 1);
}

#[test]
fn after_invalid_grant_with_nobody_writing_the_row_is_dead() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new(
        &dir,
        pair("sk-ant-oat01-fake-a1", "sk-ant-ort01-fake-r1", expired()),
    );
    let server = token_server(Box::new(|| (400, r#"{"error":"invalid_grant"}"#.into())));
    let bench = Bench::new(&server);
    let err = bench.refresh(&store, &store.holds().unwrap()).unwrap_err();
    assert_eq!(err.status, Status::ReauthRequired);
    assert_eq!(
        *bench.ledger.dead.lock().unwrap(),
        ["mem001: invalid_grant"]
    );
    // The spent token is never POSTed again, by this process or any other.
    let err = bench.refresh(&store, &store.holds().unwrap()).unwrap_err();
    assert_eq!(err.status, Status::ReauthRequired);
    assert_eq!(server.posts.load(Ordering::SeqCst), 1);
}
