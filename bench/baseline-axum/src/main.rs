//! The baseline peer: the SSE server a Rust developer writes from axum's
//! docs, with nothing tuned. `GET /sub` streams every message posted to
//! `POST /pub` through a `tokio::sync::broadcast` channel and axum's `Sse`
//! with its default keep-alive (one timer per connection). Each subscriber
//! formats its own `Event`, as the docs show.
//!
//! Usage: `baseline-axum 127.0.0.1:PORT`.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::Router;
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

type Tx = broadcast::Sender<String>;

async fn sub(State(tx): State<Tx>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(tx.subscribe())
        .filter_map(|m| async move { m.ok() })
        .map(|data| Ok(Event::default().data(data)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn publish(State(tx): State<Tx>, body: String) -> StatusCode {
    let _ = tx.send(body);
    StatusCode::CREATED
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18900".into());
    let (tx, _) = broadcast::channel::<String>(1024);
    let app = Router::new()
        .route("/sub", get(sub))
        .route("/pub", post(publish))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
