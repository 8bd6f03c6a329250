//! The `mock` back-end: replays the seed's recorded Ollama answer.
//!
//! The recording (`data/llama3.1-planets.ndjson`, the 70 NDJSON objects of
//! Ollama's `/api/generate` stream) is compiled into the binary and parsed at
//! start-up. Prompts about the planets get that answer; any other prompt gets
//! a deterministic answer built from the prompt, so demos and tests never
//! need a model server. It reasons and calls tools on request too; see
//! [`agent`].

mod agent;

use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream;
use serde::Deserialize;

use super::{Backend, BackendError, Chunk, Finish, GenerateRequest, TokenStream};

/// The recorded answer, as Ollama streamed it.
pub const SEED_NDJSON: &str = include_str!("../../data/llama3.1-planets.ndjson");

/// One line of Ollama's `/api/generate` stream.
#[derive(Debug, Clone, Deserialize)]
pub struct GenerateLine {
    /// The model.
    pub model: String,
    /// When Ollama produced it.
    pub created_at: String,
    /// The token text.
    pub response: String,
    /// Whether this is the last line.
    pub done: bool,
    /// Why the model stopped (last line only).
    #[serde(default)]
    pub done_reason: Option<String>,
}

/// The recording could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("recorded answer, line {line}: {source}")]
pub struct RecordingError {
    line: usize,
    #[source]
    source: serde_json::Error,
}

/// Parses an NDJSON recording of `/api/generate`.
pub fn parse_recording(ndjson: &str) -> Result<Vec<GenerateLine>, RecordingError> {
    ndjson
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| RecordingError {
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// The mock back-end.
#[derive(Debug, Clone)]
pub struct MockBackend {
    recording: Vec<GenerateLine>,
    delay: Duration,
}

impl MockBackend {
    /// A mock that replays `recording`, one token every `delay`.
    pub fn new(recording: Vec<GenerateLine>, delay: Duration) -> Self {
        Self { recording, delay }
    }

    /// A mock of the seed's recorded answer.
    pub fn seed(delay: Duration) -> Result<Self, RecordingError> {
        Ok(Self::new(parse_recording(SEED_NDJSON)?, delay))
    }

    /// Whether `request` gets the recorded answer.
    fn knows(request: &GenerateRequest) -> bool {
        let prompt = request.prompt_text();
        prompt.is_empty() || prompt.to_lowercase().contains("planet")
    }

    /// The chunks before the end, and the end, for `request`: reasoning
    /// when the prompt asks the model to think, then a tool call when the
    /// request offers a tool, else the answer in text.
    pub fn answer(&self, request: &GenerateRequest) -> (Vec<Chunk>, Finish) {
        let mut chunks: Vec<Chunk> = Vec::new();
        if agent::thinks(request) {
            chunks.extend(agent::reasoning(request).into_iter().map(Chunk::Reasoning));
        }
        let prompt = request.prompt_text();
        let prompt_tokens = Some(prompt.split_whitespace().count() as u64);
        let (text, finish) = if let Some(call) = agent::tool_call(request) {
            chunks.push(Chunk::ToolCall(call));
            (Vec::new(), None)
        } else if let Some(result) = agent::tool_result(request) {
            (agent::after_tool(&result), None)
        } else if Self::knows(request) {
            let (tokens, finish) = self.seed_answer();
            (tokens, Some(finish))
        } else {
            let text = format!(
                "You asked: \"{}\". This is rill's mock model. It answers every prompt it does not know with this text, word by word, so the page can be tried without a model server.",
                prompt.trim()
            );
            (agent::words(&text), None)
        };
        chunks.extend(text.into_iter().map(Chunk::Token));
        let finish = finish.unwrap_or_else(|| Finish {
            model: self.model_for(request),
            done_reason: "stop".to_owned(),
            prompt_tokens,
            completion_tokens: Some(chunks.len() as u64),
        });
        (chunks, finish)
    }

    /// The recorded answer's tokens and finish.
    pub fn seed_answer(&self) -> (Vec<String>, Finish) {
        let tokens: Vec<String> = self
            .recording
            .iter()
            .filter(|l| !l.done || !l.response.is_empty())
            .map(|l| l.response.clone())
            .collect();
        let last = self.recording.last();
        let finish = Finish {
            model: last.map(|l| l.model.clone()).unwrap_or_default(),
            done_reason: last
                .and_then(|l| l.done_reason.clone())
                .unwrap_or_else(|| "stop".to_owned()),
            prompt_tokens: None,
            completion_tokens: Some(tokens.len() as u64),
        };
        (tokens, finish)
    }
}

#[async_trait]
impl Backend for MockBackend {
    fn name(&self) -> &'static str {
        "mock"
    }

    /// The recording's model (`llama3.1`): the mock stands in for it.
    fn default_model(&self) -> String {
        self.recording
            .last()
            .map(|l| l.model.clone())
            .unwrap_or_default()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<TokenStream, BackendError> {
        let (chunks, finish) = self.answer(request);
        let delay = self.delay;
        let chunks = chunks
            .into_iter()
            .chain(std::iter::once(Chunk::Done(finish)));
        Ok(Box::pin(stream::unfold(
            (chunks, true),
            move |(mut chunks, first)| async move {
                if !first && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                chunks.next().map(|c| (Ok(c), (chunks, false)))
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn seed_recording_has_70_lines_and_the_two_line_answer() {
        let lines = parse_recording(SEED_NDJSON).unwrap();
        assert_eq!(lines.len(), 70);
        assert!(lines.last().unwrap().done);
        let text: String = lines.iter().map(|l| l.response.as_str()).collect();
        assert!(text.starts_with("Here is a two-line summary about the planets:\n\n Our solar"));
        assert!(text.ends_with("Saturn and Uranus."));
    }

    #[tokio::test]
    async fn replays_tokens_then_done() {
        let mock = MockBackend::seed(Duration::ZERO).unwrap();
        let chunks: Vec<Chunk> = mock
            .generate(&GenerateRequest::default())
            .await
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(chunks.len(), 70);
        assert_eq!(chunks[9], Chunk::Token(":\n\n".into()));
        match chunks.last().unwrap() {
            Chunk::Done(f) => {
                assert_eq!(f.model, "llama3.1");
                assert_eq!(f.done_reason, "stop");
                assert_eq!(f.completion_tokens, Some(69));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_prompts_get_a_deterministic_answer() {
        let mock = MockBackend::seed(Duration::ZERO).unwrap();
        let req = GenerateRequest {
            prompt: Some("hello there".into()),
            ..Default::default()
        };
        let (a, _) = mock.answer(&req);
        let (b, _) = mock.answer(&req);
        assert_eq!(a, b);
        let text: String = a
            .iter()
            .map(|c| match c {
                Chunk::Token(t) => t.as_str(),
                _ => "",
            })
            .collect();
        assert!(text.contains("hello there"));
    }
}
