//! Load client for rill's benchmarks. One scenario per run, one JSON line
//! on stdout; `bench/run` starts the servers and collects the lines.
//!
//! ```text
//! loadgen idle    --addr A --sub PATH --pids P[,P] --n N [--transport tls --ca CERT.pem | --transport h2c]
//! loadgen fanout  --addr A --sub PATH --pub PATH --pids P --n N --events E --rate R
//!                 [--pub-conns K] [--scenario burst]
//! loadgen publish --addr A --pub PATH --pids P --conns C --secs S
//! loadgen tokens  --addr A --pids P --n N --delay-ms D
//! loadgen replay  --addr A --sub PATH?lastEventId=0 --pub PATH --pids P --n N --events E
//! loadgen storm   --addr A --sub PATH --pub PATH --pids P --n N --events E [--id-field F]
//! ```
//! Every address must be in 127.0.0.0/8; every loop is bounded in count
//! and in time.

mod fanout;
mod idle;
mod net;
mod procfs;
mod replay;
mod stats;
mod storm;
mod throughput;
mod transport;

use std::collections::HashMap;
use std::io;

/// Parsed `--key value` flags.
pub struct Args {
    mode: String,
    flags: HashMap<String, String>,
}

impl Args {
    fn parse() -> io::Result<Self> {
        let mut it = std::env::args().skip(1);
        let mode = it.next().unwrap_or_default();
        let mut flags = HashMap::new();
        while let Some(k) = it.next() {
            let key = k.strip_prefix("--").ok_or_else(|| bad(&k))?.to_owned();
            let v = it.next().ok_or_else(|| bad(&k))?;
            flags.insert(key, v);
        }
        Ok(Self { mode, flags })
    }

    /// A string flag, or `default`.
    pub fn get(&self, k: &str, default: &str) -> String {
        self.flags.get(k).cloned().unwrap_or_else(|| default.into())
    }

    /// A number flag, or `default`.
    pub fn num(&self, k: &str, default: u64) -> io::Result<u64> {
        match self.flags.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| bad(&format!("--{k} {v}"))),
        }
    }

    /// The server's address (`--addr`), which must be in 127.0.0.0/8.
    pub fn addr(&self) -> io::Result<std::net::SocketAddr> {
        net::loopback(&self.get("addr", "127.0.0.1:8080"))
    }

    /// Source addresses to spread connections over (`--sources`, 16).
    pub fn sources(&self) -> io::Result<std::sync::Arc<net::Sources>> {
        Ok(std::sync::Arc::new(net::Sources::new(
            self.num("sources", 16)? as usize,
        )))
    }

    /// The server's process ids.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        self.get("pids", "")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| bad(s)))
            .collect()
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("bad argument: {what}"))
}

fn main() -> io::Result<()> {
    let args = Args::parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match args.mode.as_str() {
            "idle" => idle::run(&args).await,
            "fanout" => fanout::run(&args).await,
            "publish" => throughput::publish(&args).await,
            "tokens" => throughput::tokens(&args).await,
            "replay" => replay::run(&args).await,
            "storm" => storm::run(&args).await,
            other => Err(bad(&format!("mode {other:?}"))),
        }
    })
}
