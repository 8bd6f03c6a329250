//! `--listen` addresses in the forms people type: `127.0.0.1:8080`,
//! `[::1]:8080`, `0.0.0.0:8080`, `localhost:8080` and `:8080`.
//!
//! The value stays a plain [`SocketAddr`] so the rest of rill, `rill config`
//! and the config file see one resolved address. `localhost` is mapped to
//! `127.0.0.1` without asking a resolver (RFC 6761 reserves the name for
//! loopback), so start-up never depends on `/etc/hosts` or DNS. `:PORT`
//! means every IPv4 interface, as Go's `net.Listen` and many servers read
//! it; `[::]:PORT` is the way to ask for IPv6 as well.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Deserializer};

/// Parses a `--listen` value, or says which forms are accepted.
pub fn parse(text: &str) -> Result<SocketAddr, String> {
    let s = text.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let refuse = || {
        format!(
            "`{text}` is not an address to listen on; use IP:PORT (127.0.0.1:8080, \
             0.0.0.0:8080, [::1]:8080), localhost:PORT, or :PORT for all interfaces"
        )
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(refuse)?;
    let port: u16 = port.parse().map_err(|_| refuse())?;
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        h if h.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => return Err(refuse()),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Reads a `listen` key of the config file in the same forms as the flag.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn accepts_the_forms_people_type() {
        let cases = [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "0.0.0.0:8080"),
            ("[::1]:8080", "[::1]:8080"),
            ("[::]:0", "[::]:0"),
            ("localhost:8080", "127.0.0.1:8080"),
            ("LocalHost:9", "127.0.0.1:9"),
            (":8080", "0.0.0.0:8080"),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input).map(|a| a.to_string()),
                Ok(want.into()),
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_anything_else_and_shows_the_accepted_forms() {
        for bad in [
            "8080",
            "localhost",
            "example.com:8080",
            "127.0.0.1:99999",
            "127.0.0.1:",
            ":http",
            "::1:8080",
            "",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(
                e.contains("localhost:PORT") && e.contains(":PORT for all interfaces"),
                "{bad}: {e}"
            );
        }
    }
}
