//! Redis for tests: the shared server named by `RILL_TEST_REDIS_URL` (with a
//! unique key prefix per test, removed on drop), or a private
//! `redis-server` child for tests that stop and restart it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestServer;

/// The Redis the test command provides (default: the usual local port).
pub fn redis_url() -> String {
    std::env::var("RILL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A key prefix no other test uses, and its keys deleted on drop.
pub struct Keys {
    /// The Redis URL.
    pub url: String,
    /// The prefix, for `--redis-prefix`.
    pub prefix: String,
}

impl Keys {
    /// A fresh prefix on `url`.
    pub fn new(url: &str, tag: &str) -> Keys {
        let n: u32 = rand::random();
        Keys {
            url: url.to_owned(),
            prefix: format!("rill-test:{tag}:{}:{n:08x}:", std::process::id()),
        }
    }

    /// Starts a rill node on these keys with extra `args`.
    pub fn node(&self, args: &[&str]) -> TestServer {
        let mut all = vec!["--store", &self.url, "--redis-prefix", &self.prefix];
        all.extend_from_slice(args);
        TestServer::start(&all)
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        // Best effort: a test Redis that is gone has nothing to clean.
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut c)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut c);
        }
    }
}

/// A private `redis-server` on a spare loopback port, with an append-only
/// file synced on every write in a temporary directory, so that a restart
/// keeps what it acknowledged. Killed on drop.
pub struct OwnRedis {
    child: Option<Child>,
    /// The port.
    pub port: u16,
    dir: std::path::PathBuf,
}

impl OwnRedis {
    /// Starts one and waits until it answers.
    pub fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("spare port")
            .port();
        let dir = std::env::temp_dir().join(format!("rill-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut r = OwnRedis {
            child: None,
            port,
            dir,
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and files.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
