//! Which Redis deployment `--store` names: one server, a Cluster, or a
//! master found through Sentinel.
//!
//! The forms follow the `redis` crate's URLs, with the scheme saying the
//! topology:
//! - `redis://[user:pass@]host:port[/db]`: one server.
//! - `redis+cluster://[user:pass@]h1:p1,h2:p2,...`: seed nodes of a Redis
//!   Cluster (any reachable one is enough; rill learns the rest). A port
//!   left out is 6379. A Cluster has only database 0.
//! - `redis+sentinel://[user:pass@]s1:p1,s2:p2,.../master[/db]`: the
//!   sentinels (port 26379 when left out) and the name they monitor. The
//!   credentials are the master's; the sentinels are asked without.

use thiserror::Error;

/// A `--store` URL that names no Redis deployment rill can use.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("bad redis URL `{url}`: {why}")]
pub struct BadUrl {
    url: String,
    why: &'static str,
}

/// Sentinels and the master they watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    /// `redis://host:port` of each sentinel.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor.
    pub master: String,
    /// User and password for the master, if any.
    pub auth: Option<(String, String)>,
    /// Database on the master.
    pub db: i64,
}

/// The Redis deployment rill stores streams in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (`redis://`): the URL as given.
    Single(String),
    /// A Redis Cluster: `redis://[auth@]host:port` of each seed.
    Cluster(Vec<String>),
    /// A master found through Sentinel.
    Sentinel(SentinelTarget),
}

impl Topology {
    /// Reads a `--store` URL.
    pub fn parse(url: &str) -> Result<Topology, BadUrl> {
        let bad = |why| BadUrl {
            url: url.to_owned(),
            why,
        };
        if url.starts_with("redis://") {
            return Ok(Topology::Single(url.to_owned()));
        }
        let (cluster, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else {
            return Err(bad(
                "the scheme must be redis://, redis+cluster:// or redis+sentinel://",
            ));
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (hosts, path) = match rest.split_once('/') {
            Some((hosts, path)) => (hosts, path),
            None => (rest, ""),
        };
        let default_port = if cluster { 6379 } else { 26379 };
        let hosts = hosts
            .split(',')
            .map(|h| {
                host_port(h, default_port).ok_or_else(|| bad("each address must be host[:port]"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if cluster {
            if !matches!(path, "" | "0") {
                return Err(bad("a Redis Cluster has only database 0"));
            }
            let auth = auth.map_or(String::new(), |a| format!("{a}@"));
            return Ok(Topology::Cluster(
                hosts
                    .into_iter()
                    .map(|h| format!("redis://{auth}{h}"))
                    .collect(),
            ));
        }
        let mut parts = path.split('/');
        let master = parts.next().unwrap_or_default();
        if master.is_empty() {
            return Err(bad("name the master: redis+sentinel://host:port/MASTER"));
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse()
                .map_err(|_| bad("the database must be a number"))?,
        };
        if parts.next().is_some() {
            return Err(bad("the path is /MASTER or /MASTER/DB"));
        }
        let auth = auth.map(|a| match a.split_once(':') {
            Some((user, pass)) => (decode(user), decode(pass)),
            None => (decode(a), String::new()),
        });
        Ok(Topology::Sentinel(SentinelTarget {
            sentinels: hosts.into_iter().map(|h| format!("redis://{h}")).collect(),
            master: master.to_owned(),
            auth,
            db,
        }))
    }

    /// Whether `url` names Redis in any of its forms (not `memory`).
    pub fn is_redis(url: &str) -> bool {
        ["redis://", "redis+cluster://", "redis+sentinel://"]
            .iter()
            .any(|s| url.starts_with(s))
    }

    /// Whether this is a Cluster, where keys must be laid out by slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Topology::Cluster(_))
    }
}

/// `host:port` with the port filled in, or `None` when malformed.
fn host_port(h: &str, default_port: u16) -> Option<String> {
    let h = h.trim();
    if h.is_empty() {
        return None;
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
            let port: u16 = port.parse().ok()?;
            Some(format!("{host}:{port}"))
        }
        Some(_) => None,
        None => Some(format!("{h}:{default_port}")),
    }
}

/// Undoes `%XX` escapes in credentials.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_urls_pass_through() {
        assert_eq!(
            Topology::parse("redis://127.0.0.1:6379/2"),
            Ok(Topology::Single("redis://127.0.0.1:6379/2".into()))
        );
    }

    #[test]
    fn cluster_seeds_get_ports_and_auth() {
        assert_eq!(
            Topology::parse("redis+cluster://u:p@a:7000,b"),
            Ok(Topology::Cluster(vec![
                "redis://u:p@a:7000".into(),
                "redis://u:p@b:6379".into()
            ]))
        );
        assert!(Topology::parse("redis+cluster://a:7000/3").is_err());
        assert!(Topology::parse("redis+cluster://a:x").is_err());
        assert!(Topology::parse("redis+cluster://a:1,,b").is_err());
    }

    #[test]
    fn sentinel_names_master_and_db() {
        assert_eq!(
            Topology::parse("redis+sentinel://:s%40cret@s1,s2:26380/mymaster/2"),
            Ok(Topology::Sentinel(SentinelTarget {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26380".into()],
                master: "mymaster".into(),
                auth: Some((String::new(), "s@cret".into())),
                db: 2,
            }))
        );
        assert!(Topology::parse("redis+sentinel://s1:26379").is_err());
        assert!(Topology::parse("redis+sentinel://s1/m/x").is_err());
        assert!(Topology::parse("http://x").is_err());
        assert!(Topology::is_redis("redis+sentinel://s/m"));
        assert!(!Topology::is_redis("memory"));
    }
}
