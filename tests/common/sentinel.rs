//! A Redis Sentinel set for one test (docs/FLEET.md, "Sentinel"): a master and a replica
//! (each `appendonly yes`, `appendfsync always`, the ACL users of tests/common/redis.rs plus
//! the `replicator` and `sentinel` users that replication and Sentinel need) and sentinels
//! that monitor the master as `hapm`. Loopback, random ports, temporary directories.
#![allow(dead_code)]

use super::redis_server::{redis_server_bin, ADMIN_PW, CONSUMER_PW, REFRESHER_PW};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MASTER_NAME: &str = "hapm";
pub const REPLICATOR_PW: &str = "replicator-pw-fake";
pub const SENTINEL_USER_PW: &str = "sentinel-user-pw-fake";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One redis-server process (a data node or a sentinel) of the set.
pub struct SentinelNode {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    sentinel: bool,
    child: Option<Child>,
}

impl SentinelNode {
    fn start(
        bin: &std::path::Path,
        conf: impl Fn(u16, &str) -> String,
        sentinel: bool,
    ) -> SentinelNode {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let text = conf(port, &dir.path().display().to_string());
        std::fs::write(dir.path().join("node.conf"), text).unwrap();
        let mut n = SentinelNode {
            dir,
            port,
            bin: bin.to_path_buf(),
            sentinel,
            child: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(self.dir.path().join("node.conf"));
        if self.sentinel {
            cmd.arg("--sentinel");
        }
        let child = cmd
            .stdout(std::fs::File::create(self.dir.path().join("node.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(
                Instant::now() < until,
                "redis node did not get ready: {}",
                std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `redis-cli` on this node: as admin on a data node, without a password on a
    /// sentinel (docs/FLEET.md: sentinels on a private network).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if !self.sentinel {
            cmd.args(["--user", "admin", "--pass", ADMIN_PW, "--no-auth-warning"]);
        }
        let out = cmd.args(args).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SentinelNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The ACL of every data node: either may become the master. `sentinel` has the
/// permissions the Redis docs list for a Sentinel user; `replicator` those of a replica's
/// link. `consumer` has +role: with Sentinel, hap checks that it reached the master.
/// `repl-diskless-sync-delay 0`: Redis 7's default waits 5 s for more replicas before each
/// full sync, which made every set start (and every resync after a failover) 5 s slower.
fn data_conf(port: u16, dir: &str, replica_of: Option<u16>) -> String {
    let mut c = format!(
        "bind 127.0.0.1\nport {port}\ndir {dir}\nappendonly yes\nappendfsync always\n\
         save \"\"\ndaemonize no\nprotected-mode yes\n\
         user default on >{ADMIN_PW} ~* &* +@all\n\
         user admin on >{ADMIN_PW} ~* &* +@all\n\
         user refresher on >{REFRESHER_PW} ~hap:* &hap:* +@all\n\
         user consumer on >{CONSUMER_PW} resetchannels &hap:rotated %R~hap:access \
         +hgetall +hget +ping +subscribe +unsubscribe +hello +role\n\
         user replicator on >{REPLICATOR_PW} +psync +replconf +ping\n\
         user sentinel on >{SENTINEL_USER_PW} allchannels +multi +slaveof +ping +exec \
         +subscribe +config|rewrite +role +publish +info +client|setname +client|kill \
         +script|kill\n\
         masteruser replicator\nmasterauth {REPLICATOR_PW}\n\
         repl-diskless-sync-delay 0\n"
    );
    if let Some(m) = replica_of {
        c.push_str(&format!("replicaof 127.0.0.1 {m}\n"));
    }
    c
}

/// A master, a replica and `n` sentinels (quorum `n / 2 + 1`).
pub struct SentinelSet {
    pub nodes: Vec<SentinelNode>,
    pub sentinels: Vec<SentinelNode>,
}

impl SentinelSet {
    /// `None` (with the loud message of tests/common/redis.rs) without redis-server.
    pub fn start(n: usize) -> Option<SentinelSet> {
        let bin = redis_server_bin()?;
        let master = SentinelNode::start(&bin, |p, d| data_conf(p, d, None), false);
        let mp = master.port;
        let replica = SentinelNode::start(&bin, |p, d| data_conf(p, d, Some(mp)), false);
        let mut set = SentinelSet {
            nodes: vec![master, replica],
            sentinels: Vec::new(),
        };
        // Replicating before the sentinels start: their first INFO of the master lists the
        // replica (the next comes 10 s later).
        set.wait_replicated_on(mp);
        let quorum = n / 2 + 1;
        let sentinels = (0..n)
            .map(|_| {
                SentinelNode::start(
                    &bin,
                    |p, d| {
                        format!(
                            "bind 127.0.0.1\nport {p}\ndir {d}\ndaemonize no\n\
                             sentinel monitor {MASTER_NAME} 127.0.0.1 {mp} {quorum}\n\
                             sentinel auth-user {MASTER_NAME} sentinel\n\
                             sentinel auth-pass {MASTER_NAME} {SENTINEL_USER_PW}\n\
                             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                             sentinel failover-timeout {MASTER_NAME} 5000\n\
                             sentinel parallel-syncs {MASTER_NAME} 1\n"
                        )
                    },
                    true,
                )
            })
            .collect();
        set.sentinels = sentinels;
        // Every sentinel knows the replica (a failover needs a candidate).
        for s in &set.sentinels {
            wait("the sentinel to discover the replica", 15, || {
                s.cli(&["SENTINEL", "REPLICAS", MASTER_NAME])
                    .contains(&set.nodes[1].port.to_string())
            });
        }
        Some(set)
    }

    /// The `redis_sentinels` config value.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(SentinelNode::addr).collect()
    }

    /// The node the first live sentinel names as master.
    pub fn master(&self) -> &SentinelNode {
        let port = self.master_port();
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("the master is one of the nodes")
    }

    pub fn master_port(&self) -> u16 {
        for s in &self.sentinels {
            let out = s.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
            if let Some(p) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                return p;
            }
        }
        panic!("no sentinel names a master");
    }

    /// Waits until every live replica holds what the master holds (its replication offset),
    /// so a failover loses nothing acknowledged before.
    pub fn wait_replicated(&self) {
        self.wait_replicated_on(self.master_port());
    }

    fn wait_replicated_on(&self, master: u16) {
        let m = self.node(master);
        wait("the replica to catch up", 15, || {
            let offset =
                |info: &str, f: &str| info_field(info, f).and_then(|v| v.parse::<u64>().ok());
            let Some(want) = offset(&m.cli(&["INFO", "REPLICATION"]), "master_repl_offset") else {
                return false;
            };
            self.nodes.iter().filter(|n| n.port != m.port).all(|n| {
                let info = n.cli(&["INFO", "REPLICATION"]);
                info_field(&info, "master_link_status").as_deref() == Some("up")
                    && offset(&info, "slave_repl_offset").is_some_and(|o| o >= want)
            })
        });
    }

    /// `SENTINEL FAILOVER`: the replica becomes the master, the old master its replica.
    /// Returns once the sentinels name the new master, it says ROLE master and the old one
    /// replicates from it.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let s = &self.sentinels[0];
        // A sentinel refuses while it has not yet judged the replica fit (NOGOODSLAVE).
        wait("the sentinel to start a failover", 20, || {
            s.cli(&["SENTINEL", "FAILOVER", MASTER_NAME]) == "OK"
        });
        self.wait_new_master(old)
    }

    /// Waits until the sentinels name a master other than `old`, that node says ROLE
    /// master; returns its port.
    pub fn wait_new_master(&self, old: u16) -> u16 {
        let mut port = old;
        wait("the sentinels to name a new master", 30, || {
            port = self.master_port();
            port != old
                && self
                    .nodes
                    .iter()
                    .find(|n| n.port == port)
                    .is_some_and(|n| n.cli(&["ROLE"]).starts_with("master"))
        });
        port
    }

    pub fn node(&self, port: u16) -> &SentinelNode {
        self.nodes.iter().find(|n| n.port == port).expect("a node")
    }

    pub fn node_mut(&mut self, port: u16) -> &mut SentinelNode {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node")
    }
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
