//! Redis deployments for tests, each started from scratch on spare loopback
//! ports and killed on drop: a Redis Cluster with replicas, and a master with
//! a replica behind three sentinels. Nothing is kept on disk.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any one wait for Redis to settle may take.
const SETTLE: Duration = Duration::from_secs(30);

/// A spare loopback port (and, for a Cluster node, its bus port + 10000).
fn spare_port(with_bus: bool) -> u16 {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no spare port");
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let n: u32 = rand::random();
    let dir = std::env::temp_dir().join(format!("rill-{tag}-{}-{n:08x}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn spawn(args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH")
}

/// A synchronous connection to `127.0.0.1:port`, or `None` while it does
/// not answer.
pub fn conn(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()
}

/// Runs `cmd` on `port`; `None` when the server does not answer.
pub fn ask<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    let mut c = conn(port)?;
    cmd.query(&mut c).ok()
}

fn info(port: u16, section: &str) -> String {
    ask(port, redis::cmd("INFO").arg(section)).unwrap_or_default()
}

/// Waits (bounded) until `ok` holds; panics with `what` otherwise.
pub fn settle(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("gave up waiting: {what}");
}

fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// A Redis Cluster of masters, each with replicas.
pub struct OwnCluster {
    nodes: Vec<(u16, Option<Child>)>,
    dir: std::path::PathBuf,
    seeds: Vec<u16>,
}

impl OwnCluster {
    /// Starts `masters` masters with `replicas` replicas each, creates the
    /// cluster and waits until every slot is served and every replica has
    /// synced.
    pub fn start(masters: usize, replicas: usize) -> OwnCluster {
        let dir = temp_dir("cluster");
        let count = masters * (1 + replicas);
        let mut nodes = Vec::new();
        for _ in 0..count {
            let port = spare_port(true);
            let args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--cluster-node-timeout",
                "1000",
                "--cluster-replica-validity-factor",
                "0",
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir.to_str().expect("utf-8 dir"),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            nodes.push((port, Some(spawn(&args))));
        }
        let mut cluster = OwnCluster {
            seeds: nodes.iter().take(masters).map(|(p, _)| *p).collect(),
            nodes,
            dir,
        };
        for (port, _) in &cluster.nodes {
            let port = *port;
            settle("node answers", || {
                ask::<String>(port, &redis::cmd("PING")).is_some()
            });
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli on PATH");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_healthy();
        cluster
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(p, _)| *p)
            .collect()
    }

    /// Waits until every live node sees the cluster as ok, with as many
    /// masters as slot ranges, and every live replica has synced.
    pub fn wait_healthy(&mut self) {
        let ports = self.live_ports();
        settle("cluster ok on every live node", || {
            ports
                .iter()
                .all(|&p| info_cluster(p).contains("cluster_state:ok"))
        });
        settle("replicas synced", || {
            ports.iter().all(|&p| {
                let r = info(p, "replication");
                r.contains("role:master") || r.contains("master_link_status:up")
            })
        });
    }

    /// `redis+cluster://` with the first masters as seeds.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .seeds
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The ports of the live masters.
    pub fn masters(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|&p| info(p, "replication").contains("role:master"))
            .collect()
    }

    /// The ports of the live replicas.
    pub fn replicas(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|&p| info(p, "replication").contains("role:slave"))
            .collect()
    }

    /// Keys under `pattern` (a `SCAN MATCH` glob) on the node at `port`.
    pub fn keys_on(&self, port: u16, pattern: &str) -> Vec<String> {
        let Some(mut c) = conn(port) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        for _ in 0..10_000 {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut c)
                .expect("scan");
            out.extend(keys);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        out
    }

    /// Kills the node at `port` at once (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some((_, child)) = self.nodes.iter_mut().find(|(p, _)| *p == port) {
            if let Some(mut c) = child.take() {
                kill_child(&mut c);
            }
        }
    }

    /// Waits until a replica of the killed master `old` has taken over:
    /// the survivors agree the cluster is ok, with `masters` masters.
    pub fn wait_promoted(&mut self, masters: usize) {
        settle("a replica promoted", || self.masters().len() == masters);
        self.wait_healthy();
    }
}

fn info_cluster(port: u16) -> String {
    ask(port, redis::cmd("CLUSTER").arg("INFO")).unwrap_or_default()
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut c) = child.take() {
                kill_child(&mut c);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The name the sentinels monitor.
pub const MASTER_NAME: &str = "rillmaster";

/// One master, one replica and three sentinels.
pub struct OwnSentinel {
    servers: Vec<(u16, Option<Child>)>,
    sentinels: Vec<(u16, Child)>,
    dir: std::path::PathBuf,
}

impl OwnSentinel {
    /// Starts them and waits until every sentinel knows the replica and
    /// the other sentinels, and the replica has synced.
    pub fn start() -> OwnSentinel {
        let dir = temp_dir("sentinel");
        let master = spare_port(false);
        let replica = spare_port(false);
        let server = |port: u16, extra: &[&str]| {
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                dir.to_str().expect("utf-8 dir"),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            spawn(&args)
        };
        let mut servers = vec![(master, Some(server(master, &[])))];
        settle("master answers", || {
            ask::<String>(master, &redis::cmd("PING")).is_some()
        });
        servers.push((
            replica,
            Some(server(
                replica,
                &["--replicaof", "127.0.0.1", &master.to_string()],
            )),
        ));
        settle("replica synced", || {
            info(replica, "replication").contains("master_link_status:up")
        });
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = spare_port(false);
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir.display()
                ),
            )
            .expect("sentinel conf");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel");
            sentinels.push((port, child));
        }
        let s = OwnSentinel {
            servers,
            sentinels,
            dir,
        };
        for &(port, _) in &s.sentinels {
            settle("sentinel knows the replica and its peers", || {
                let replicas: Option<Vec<redis::Value>> = ask(
                    port,
                    redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME),
                );
                let peers: Option<Vec<redis::Value>> = ask(
                    port,
                    redis::cmd("SENTINEL").arg("SENTINELS").arg(MASTER_NAME),
                );
                replicas.is_some_and(|r| r.len() == 1) && peers.is_some_and(|p| p.len() == 2)
            });
        }
        s
    }

    /// `redis+sentinel://` naming the three sentinels and the master.
    pub fn url(&self) -> String {
        let s: Vec<String> = self
            .sentinels
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", s.join(","))
    }

    /// The port of the master, as the first sentinel names it.
    pub fn master_port(&self) -> u16 {
        let port = self.sentinels[0].0;
        let addr: Vec<String> = ask(
            port,
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME),
        )
        .expect("sentinel answers");
        addr[1].parse().expect("port")
    }

    /// The port of the server that is not the master.
    pub fn replica_port(&self) -> u16 {
        let master = self.master_port();
        self.servers
            .iter()
            .map(|(p, _)| *p)
            .find(|&p| p != master)
            .expect("a replica")
    }

    fn pid(&self, port: u16) -> u32 {
        self.servers
            .iter()
            .find(|(p, _)| *p == port)
            .and_then(|(_, c)| c.as_ref())
            .expect("a running server")
            .id()
    }

    /// Kills the master at once (SIGKILL); returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let master = self.master_port();
        if let Some((_, child)) = self.servers.iter_mut().find(|(p, _)| *p == master) {
            if let Some(mut c) = child.take() {
                kill_child(&mut c);
            }
        }
        master
    }

    /// Freezes the server at `port` (SIGSTOP).
    pub fn stop(&self, port: u16) {
        signal(self.pid(port), "-STOP");
    }

    /// Thaws the server at `port` (SIGCONT).
    pub fn cont(&self, port: u16) {
        signal(self.pid(port), "-CONT");
    }

    /// Cuts the replica off: freezes it (SIGSTOP) and has the master drop
    /// its replication link, so nothing the master takes from now on can
    /// reach it (a frozen process's socket would still buffer what was
    /// sent). Returns the replica's port, for [`OwnSentinel::cont`].
    pub fn cut_replica(&self) -> u16 {
        let replica = self.replica_port();
        self.stop(replica);
        let killed: Option<i64> = ask(
            self.master_port(),
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica"),
        );
        assert_eq!(killed, Some(1), "the replication link dropped");
        replica
    }

    /// Blocks until every write the master took has reached the replica.
    pub fn wait_replicated(&self) {
        let master = self.master_port();
        let acked: Option<i64> = ask(master, redis::cmd("WAIT").arg(1).arg(5000));
        assert_eq!(acked, Some(1), "the replica took every write");
    }

    /// Waits until the sentinels name a master other than `old` and that
    /// server says it is a master.
    pub fn wait_failover(&self, old: u16) {
        settle("the replica promoted", || {
            self.sentinels.iter().all(|&(port, _)| {
                let addr: Option<Vec<String>> = ask(
                    port,
                    redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(MASTER_NAME),
                );
                addr.and_then(|a| a.get(1).and_then(|p| p.parse::<u16>().ok()))
                    .is_some_and(|p| p != old && info(p, "replication").contains("role:master"))
            })
        });
    }
}

impl Drop for OwnSentinel {
    fn drop(&mut self) {
        for (_, child) in &mut self.servers {
            if let Some(mut c) = child.take() {
                // A stopped server must be thawed to die cleanly.
                let _ = Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status();
                kill_child(&mut c);
            }
        }
        for (_, child) in &mut self.sentinels {
            kill_child(child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Publishes `data` to `stream` once: `Ok(id)` when acknowledged,
/// `Err(())` for a `503` with `Retry-After` (Redis away or failing over).
/// Any other answer fails the test.
pub async fn try_publish(base: &str, stream: &str, data: &str) -> Result<String, ()> {
    let res = reqwest::Client::new()
        .post(format!("{base}/v1/streams/{stream}"))
        .json(&serde_json::json!({ "data": data }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("publish reaches rill");
    match res.status().as_u16() {
        201 => {
            let v: serde_json::Value = res.json().await.expect("json");
            Ok(v["id"].as_str().expect("id").to_owned())
        }
        503 => {
            assert!(
                res.headers().contains_key("retry-after"),
                "a 503 says when to retry"
            );
            Err(())
        }
        other => panic!("publish answered {other}: {:?}", res.text().await),
    }
}

/// Publishes until acknowledged (bounded), as a client honouring
/// `Retry-After` would, only faster.
pub async fn publish_through(base: &str, stream: &str, data: &str) -> String {
    publish_counting(base, stream, data, &mut 0).await
}

/// Like [`publish_through`], adding the refusals (`503`) to `refused`.
pub async fn publish_counting(base: &str, stream: &str, data: &str, refused: &mut u32) -> String {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if let Ok(id) = try_publish(base, stream, data).await {
            return id;
        }
        *refused += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishes did not come back by themselves"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every event `f` received under an acknowledged id carries the data
/// acknowledged for it: no id was ever given to two events.
pub fn assert_ids_unique(acked: &std::collections::HashMap<String, String>, f: &Follower) {
    for e in f.events.iter().filter(|e| e.event_type == "message") {
        if let Some(data) = acked.get(&e.last_event_id) {
            assert_eq!(&e.data, data, "id {} given twice", e.last_event_id);
        }
    }
}

/// A subscriber that comes back with its `Last-Event-ID` whenever its
/// stream closes, as `EventSource` does, and keeps every event it got.
pub struct Follower {
    url: String,
    last: Option<String>,
    client: Option<super::SseClient>,
    /// Every event, in the order received, over every connection.
    pub events: Vec<rill::sse::ParsedEvent>,
    /// Connections opened.
    pub connections: usize,
}

impl Follower {
    /// Follows `url` (reconnects send `Last-Event-ID`); `from` is the id
    /// to send on the first connection, if any.
    pub fn new(url: String, from: Option<String>) -> Follower {
        Follower {
            url,
            last: from,
            client: None,
            events: Vec::new(),
            connections: 0,
        }
    }

    /// Reads until `done` holds for the events so far, or panics after
    /// `limit`.
    pub async fn until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&[rill::sse::ParsedEvent]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.events) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up after {} events over {} connections: {:?}",
                self.events.len(),
                self.connections,
                self.events
                    .iter()
                    .map(|e| (
                        e.event_type.clone(),
                        e.last_event_id.clone(),
                        e.data.clone()
                    ))
                    .collect::<Vec<_>>()
            );
            let client = match self.client.as_mut() {
                Some(c) if !c.closed => c,
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let headers: Vec<(&str, &str)> = match &self.last {
                        Some(id) => vec![("last-event-id", id.as_str())],
                        None => vec![],
                    };
                    let c = super::SseClient::open(&self.url, &headers).await;
                    assert_eq!(c.status, 200, "a subscribe is never refused");
                    self.connections += 1;
                    self.client.insert(c)
                }
            };
            if let Some(e) = client.next_event(Duration::from_millis(500)).await {
                if !e.last_event_id.is_empty() {
                    self.last = Some(e.last_event_id.clone());
                }
                self.events.push(e);
            }
        }
    }

    /// Reads until an event with each of `data` was received.
    pub async fn until_all(&mut self, limit: Duration, data: &[String]) {
        self.until(limit, |events| {
            data.iter().all(|d| events.iter().any(|e| &e.data == d))
        })
        .await;
    }

    /// Where the first event with `data` is in [`Follower::events`].
    pub fn position(&self, data: &str) -> usize {
        self.events
            .iter()
            .position(|e| e.data == data)
            .unwrap_or_else(|| panic!("no event {data:?} in {:?}", self.events))
    }

    /// Whether an `event: reset` came between the events at `from` and
    /// `to`.
    pub fn reset_between(&self, from: usize, to: usize) -> bool {
        self.events[from..to]
            .iter()
            .any(|e| e.event_type == "reset")
    }

    /// Checks a follower through a failover that lost nothing: its first
    /// `n` events are `before-0..n` in order, and a reset came before the
    /// first event the new master gave (`after-0`), since the new master
    /// fenced the stream.
    pub fn assert_told_before_new(&self, n: usize) {
        let before: Vec<&str> = self.data().into_iter().take(n).collect();
        let expected: Vec<String> = (0..n).map(|i| format!("before-{i}")).collect();
        assert_eq!(before, expected);
        assert!(
            self.reset_between(n, self.position("after-0")),
            "a reset before the new master's events: {:?}",
            self.events
        );
    }

    /// The data of the ordinary events received.
    pub fn data(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter(|e| e.event_type == "message")
            .map(|e| e.data.as_str())
            .collect()
    }

    /// Whether an `event: reset` was received.
    pub fn was_reset(&self) -> bool {
        self.events.iter().any(|e| e.event_type == "reset")
    }
}
