//! A real `redis-server` for one test (issue 16): loopback, a random port, a temporary
//! directory, `appendonly yes` + `appendfsync always` (the documented setup: Redis must keep
//! what it acknowledged), and the ACL users of docs/FLEET.md.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_PW: &str = "admin-pw-fake";
pub const REFRESHER_PW: &str = "refresher-pw-fake";
pub const CONSUMER_PW: &str = "consumer-pw-fake";

/// `redis-server` on PATH or where Debian installs it; `None` (with a loud message) when
/// it is not installed: `scripts/test` installs it, a bare `cargo test` may not have it.
pub fn redis_server_bin() -> Option<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
    {
        let p = PathBuf::from(dir).join("redis-server");
        if p.is_file() {
            return Some(p);
        }
    }
    eprintln!(
        "\n!!!!! SKIPPED: redis-server is not installed (apt-get install redis-server); \
         the Redis fleet tests did not run !!!!!\n"
    );
    if std::env::var_os("HAP_REQUIRE_REDIS").is_some() {
        panic!("HAP_REQUIRE_REDIS is set and redis-server is not installed");
    }
    None
}

pub struct RedisServer {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    tls: Option<u16>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Starts one, or `None` when redis-server is not installed.
    pub fn start() -> Option<RedisServer> {
        Self::start_inner(false, "")
    }

    /// With a TLS port too (`rediss://`), its CA at `ca_path()`.
    pub fn start_tls() -> Option<RedisServer> {
        Self::start_inner(true, "")
    }

    // The default user keeps every permission (behind a password): with `user default off`,
    // Redis 7.0.15 replays the AOF's MULTI/EXEC blocks (where a Lua script's writes go) as
    // the default user, the ACL re-check of EXEC refuses them, and every pair hap committed
    // is silently gone after a restart (seen here; redis/redis#14541, valkey#3983).
    fn start_inner(tls: bool, extra: &str) -> Option<RedisServer> {
        let bin = redis_server_bin()?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let tls = tls.then(free_port);
        let mut conf = format!(
            "bind 127.0.0.1\nport {port}\ndir {}\nappendonly yes\nappendfsync always\n\
             save \"\"\ndaemonize no\nprotected-mode yes\n\
             user default on >{ADMIN_PW} ~* &* +@all\n\
             user admin on >{ADMIN_PW} ~* &* +@all\n\
             user refresher on >{REFRESHER_PW} ~hap:* &hap:* +@all\n\
             user consumer on >{CONSUMER_PW} resetchannels &hap:rotated %R~hap:access \
             +hgetall +hget +ping +subscribe +unsubscribe +hello\n",
            dir.path().display()
        );
        conf.push_str(extra);
        if let Some(tls_port) = tls {
            make_certs(dir.path());
            let d = dir.path().display();
            conf.push_str(&format!(
                "tls-port {tls_port}\ntls-cert-file {d}/server.crt\ntls-key-file {d}/server.key\n\
                 tls-ca-cert-file {d}/ca.crt\ntls-auth-clients no\n"
            ));
        }
        std::fs::write(dir.path().join("redis.conf"), conf).unwrap();
        let mut s = RedisServer {
            bin,
            dir,
            port,
            child: None,
            tls,
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .arg(self.dir.path().join("redis.conf"))
            .stdout(std::fs::File::create(self.dir.path().join("redis.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "redis-server did not listen: {}",
                std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Listening is not ready: while it replays the AOF, Redis answers LOADING.
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < until, "redis-server did not get ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A replica of `primary` (docs/FLEET.md, Replicas and failover): the same ACL users,
    /// `appendonly yes` + `appendfsync always`, replicating as the admin user; returned once
    /// its link is up and the initial sync is in its AOF.
    pub fn start_replica_of(primary: &RedisServer) -> Option<RedisServer> {
        // Redis 7 waits 5 s for more replicas before a diskless initial sync.
        primary.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
        let r = Self::start_inner(
            false,
            &format!(
                "replicaof 127.0.0.1 {}\nmasteruser admin\nmasterauth {ADMIN_PW}\n",
                primary.port
            ),
        )?;
        r.wait_info("replication", "master_link_status:up");
        r.wait_aof_written();
        // The primary counts a replica for WAIT only once it is `online` there, after the
        // replica's first ACK (up to a second after its link is up).
        let until = Instant::now() + Duration::from_secs(20);
        while !primary
            .cli(&["INFO", "replication"])
            .lines()
            .any(|l| l.starts_with("slave0:") && l.contains("state=online"))
        {
            assert!(Instant::now() < until, "the replica never came online");
            std::thread::sleep(Duration::from_millis(20));
        }
        // And caught up: a replica still busy after its sync (its AOF rewrite's fsyncs, on
        // a loaded disk) acknowledges nothing for a while.
        let offset = |srv: &RedisServer, key: &str| {
            srv.cli(&["INFO", "replication"])
                .lines()
                .find_map(|l| l.trim().strip_prefix(key).map(str::to_string))
        };
        while offset(&r, "slave_repl_offset:") != offset(primary, "master_repl_offset:") {
            assert!(Instant::now() < until, "the replica never caught up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(r)
    }

    /// Waits until `INFO section` shows the line `want`.
    pub fn wait_info(&self, section: &str, want: &str) {
        let until = Instant::now() + Duration::from_secs(20);
        while !self
            .cli(&["INFO", section])
            .lines()
            .any(|l| l.trim() == want)
        {
            assert!(
                Instant::now() < until,
                "redis on {} never showed {want}: {}",
                self.port,
                self.cli(&["INFO", section])
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A replica rewrites its AOF after each full sync; until that is done, its data is
    /// not all on disk.
    fn wait_aof_written(&self) {
        self.wait_info("persistence", "aof_rewrite_in_progress:0");
        self.wait_info("persistence", "aof_rewrite_scheduled:0");
        self.wait_info("persistence", "aof_last_bgrewrite_status:ok");
    }

    /// Cuts this replica off its primary, as a network partition does: it keeps its data and
    /// receives nothing more. Its primary is re-pointed to port 1, where nothing listens
    /// (a free port of the moment could become another test's Redis, and this replica its
    /// replica: seen). A SIGSTOP is not a partition: what the primary sent meanwhile waits in
    /// the replica's socket buffer and is applied once it runs again.
    pub fn partition(&self) {
        assert_eq!(self.cli(&["REPLICAOF", "127.0.0.1", "1"]), "OK");
    }

    /// The failover as a client sees it: this replica becomes a primary (`REPLICAOF NO
    /// ONE`), shuts down cleanly and starts again on `port` with its own data, as if a VIP
    /// or DNS name moved to it (hap's URL, and so each host's journal file name, stays the
    /// same). The old primary on `port` must be dead.
    pub fn promote_to(&mut self, port: u16) {
        assert_eq!(self.cli(&["REPLICAOF", "NO", "ONE"]), "OK");
        self.wait_aof_written();
        self.cli(&["SHUTDOWN"]);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        let conf_path = self.dir.path().join("redis.conf");
        let conf: String = std::fs::read_to_string(&conf_path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("replicaof ") && !l.starts_with("master"))
            .map(|l| {
                if l.starts_with("port ") {
                    format!("port {port}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&conf_path, conf).unwrap();
        self.port = port;
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no shutdown, no final fsync; only what `appendfsync always` wrote survives.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn url(&self, user: &str) -> String {
        format!("redis://{user}@127.0.0.1:{}/", self.port)
    }

    pub fn tls_url(&self, user: &str) -> String {
        format!("rediss://{user}@127.0.0.1:{}/", self.tls.expect("tls"))
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A password file for `user`, as `redis_password_file` names it.
    pub fn password_file(&self, user: &str) -> PathBuf {
        let pw = match user {
            "admin" => ADMIN_PW,
            "refresher" => REFRESHER_PW,
            "consumer" => CONSUMER_PW,
            _ => "no-such-password",
        };
        let p = self.dir.path().join(format!("{user}.pw"));
        std::fs::write(&p, format!("{pw}\n")).unwrap();
        p
    }

    /// `redis-cli` as admin (tests inspect and plant keys with it).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--user",
                "admin",
                "--pass",
                ADMIN_PW,
                "--no-auth-warning",
            ])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(st.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=hap test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}
