//! The other ways a subscriber reaches a server: HTTP/1.1 over TLS
//! (rustls, trusting one certificate file: the throwaway self-signed one
//! `bench/run` makes for the run) and HTTP/2 without TLS, by prior
//! knowledge (h2c), one stream per connection as a browser's `EventSource`
//! behind a proxy that speaks h2 would hold it.
//!
//! Each opener returns a [`Held`] subscription: whatever must stay alive
//! for the server to keep the stream open.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::net::{read_head, request, Sources};

/// An open subscription, held only to be dropped at the end.
pub enum Held {
    Tls {
        _stream: Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    },
    H2 {
        _send: h2::client::SendRequest<bytes::Bytes>,
        _body: h2::RecvStream,
        _conn: tokio::task::JoinHandle<()>,
    },
}

/// How subscriptions are opened.
#[derive(Clone)]
pub enum Transport {
    Tls(TlsConnector),
    H2c,
}

impl Transport {
    /// `tls` (with the certificate file to trust) or `h2c`.
    pub fn new(kind: &str, ca: &str) -> std::io::Result<Self> {
        match kind {
            "tls" => Ok(Self::Tls(connector(Path::new(ca))?)),
            "h2c" => Ok(Self::H2c),
            other => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("transport {other:?}: tls or h2c"),
            )),
        }
    }

    /// Opens one subscription to `path`; returns its status and what holds it.
    pub async fn subscribe(
        &self,
        sources: &Sources,
        addr: SocketAddr,
        path: &str,
    ) -> std::io::Result<(u16, Held)> {
        let tcp = sources.connect(addr).await?;
        match self {
            Self::Tls(connector) => {
                let name = ServerName::IpAddress(addr.ip().into());
                let mut tls = connector.connect(name, tcp).await?;
                tls.write_all(&request(
                    "GET",
                    path,
                    &[("accept", "text/event-stream")],
                    b"",
                ))
                .await?;
                let head = read_head(&mut tls, &mut Vec::new()).await?;
                Ok((
                    head.status,
                    Held::Tls {
                        _stream: Box::new(tls),
                    },
                ))
            }
            Self::H2c => {
                let (send, conn) = h2::client::handshake(tcp).await.map_err(h2_error)?;
                let conn = tokio::spawn(async move {
                    let _ = conn.await;
                });
                let mut send = send.ready().await.map_err(h2_error)?;
                let req = http::Request::get(format!("http://{addr}{path}"))
                    .header("accept", "text/event-stream")
                    .body(())
                    .map_err(std::io::Error::other)?;
                let (answer, _) = send.send_request(req, true).map_err(h2_error)?;
                let answer = answer.await.map_err(h2_error)?;
                let status = answer.status().as_u16();
                Ok((
                    status,
                    Held::H2 {
                        _send: send,
                        _body: answer.into_body(),
                        _conn: conn,
                    },
                ))
            }
        }
    }
}

/// A TLS client that trusts exactly the certificates in `ca` and offers
/// only `http/1.1` by ALPN, so the server cannot pick HTTP/2.
fn connector(ca: &Path) -> std::io::Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(std::io::Error::other)? {
        roots
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

fn h2_error(e: h2::Error) -> std::io::Error {
    std::io::Error::other(e)
}
