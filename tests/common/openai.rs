//! Reading rill's OpenAI-shaped answers over real HTTP: POST a JSON body,
//! read an event stream to its end with rill's WHATWG parser, and check the
//! framing rules the official SDKs rely on.

use std::time::Duration;

use rill::sse::{ParsedEvent, Parser};
use serde_json::Value;

/// How long a whole answer may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// POSTs JSON `body` to `url` with `headers`.
pub async fn post(url: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(url).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("post")
}

/// A streamed answer, read to its end.
pub struct Streamed {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// Every byte.
    pub raw: String,
    /// The events, as a browser would dispatch them.
    pub events: Vec<ParsedEvent>,
}

impl Streamed {
    /// Reads `res` to its end.
    pub async fn read(res: reqwest::Response) -> Streamed {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = tokio::time::timeout(WAIT, res.bytes())
            .await
            .expect("the stream ends")
            .expect("body");
        let mut parser = Parser::default();
        parser.feed(&bytes).expect("parse");
        let events = std::iter::from_fn(|| parser.next_event()).collect();
        Streamed {
            status,
            headers,
            raw: String::from_utf8(bytes.to_vec()).expect("UTF-8"),
            events,
        }
    }

    /// The data of each event, as JSON (`[DONE]` left out).
    pub fn json(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| serde_json::from_str(&e.data).expect("one JSON document per event"))
            .collect()
    }

    /// Checks the SDKs' framing rules: no `id:` or `retry:` line, every
    /// data line one JSON document (or `[DONE]`), no event without data.
    pub fn assert_sdk_framing(&self) {
        for line in self.raw.split('\n') {
            assert!(!line.starts_with("id:"), "an id: line: {line}");
            assert!(!line.starts_with("retry:"), "a retry: line: {line}");
            if let Some(data) = line.strip_prefix("data: ") {
                assert!(
                    data == "[DONE]" || serde_json::from_str::<Value>(data).is_ok(),
                    "not one JSON document: {data}"
                );
            }
        }
        for block in self.raw.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let data = block.lines().any(|l| l.starts_with("data: "));
            let comment = block.lines().all(|l| l.starts_with(':'));
            assert!(data || comment, "an event without data: {block:?}");
        }
    }
}
