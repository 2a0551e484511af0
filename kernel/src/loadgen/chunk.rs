//! The JSON inside OpenAI-compatible stream events: which chunks carry text
//! (and so a token time), the server's `usage`, and errors sent in the stream.

use std::borrow::Cow;

use serde::Deserialize;

use super::RequestRecord;

#[derive(Default)]
pub(crate) struct StreamState {
    /// `data: [DONE]` came.
    pub(crate) done: bool,
    /// Why the stream failed (the first reason).
    pub(crate) error: Option<String>,
}

impl StreamState {
    /// One event's data, received at `now`: text and its time go to `rec` and `text`.
    pub(crate) fn event(
        &mut self,
        data: &[u8],
        now: u64,
        rec: &mut RequestRecord,
        text: &mut String,
    ) {
        if self.done || self.error.is_some() {
            return;
        }
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        let chunk: StreamChunk = match serde_json::from_slice(data) {
            Ok(chunk) => chunk,
            Err(e) => {
                self.error = Some(format!("malformed stream event ({e}): {}", excerpt(data)));
                return;
            }
        };
        if let Some(error) = chunk.error {
            self.error = Some(format!("server error in the stream: {error}"));
            return;
        }
        let before = text.len();
        for choice in chunk.choices.iter().flatten() {
            if let Some(t) = &choice.text {
                text.push_str(t);
            }
            if let Some(delta) = &choice.delta {
                for part in [&delta.content, &delta.reasoning_content, &delta.reasoning]
                    .into_iter()
                    .flatten()
                {
                    text.push_str(part);
                }
            }
        }
        if text.len() > before {
            rec.chunk_ns.push(now);
            rec.first_token_ns.get_or_insert(now);
        }
        if let Some(usage) = chunk.usage {
            if let Some(n) = usage.completion_tokens {
                rec.output_tokens = Some(n);
                rec.tokens_from_usage = true;
            }
            if let Some(n) = usage.prompt_tokens {
                rec.input_tokens = Some(n);
            }
        }
    }
}

fn excerpt(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
    if data.len() > 200 { text + "…" } else { text }
}

/// The parts of a completions / chat-completions stream chunk llem reads.
#[derive(Deserialize)]
struct StreamChunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RequestRecord {
        RequestRecord::pending(0, "p".into(), super::super::Phase::Measured)
    }

    #[test]
    fn chunks_with_text_count_role_only_chunks_do_not() {
        let mut rec = record();
        let mut text = String::new();
        let mut s = StreamState::default();
        s.event(
            br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            1,
            &mut rec,
            &mut text,
        );
        s.event(
            br#"{"choices":[{"delta":{"content":"Hi \u00e9"}}]}"#,
            2,
            &mut rec,
            &mut text,
        );
        s.event(
            br#"{"choices":[{"text":" there","logprobs":null,"finish_reason":"length"}]}"#,
            3,
            &mut rec,
            &mut text,
        );
        s.event(
            br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
            4,
            &mut rec,
            &mut text,
        );
        assert_eq!(rec.chunk_ns, [2, 3]);
        assert_eq!(rec.first_token_ns, Some(2));
        assert_eq!(text, "Hi é there");
        assert_eq!(
            (rec.input_tokens, rec.output_tokens, rec.tokens_from_usage),
            (Some(5), Some(2), true)
        );
        s.event(b"[DONE]", 5, &mut rec, &mut text);
        assert!(s.done && s.error.is_none());
    }

    #[test]
    fn malformed_and_error_events() {
        let mut rec = record();
        let mut text = String::new();
        let mut s = StreamState::default();
        s.event(b"{not json", 1, &mut rec, &mut text);
        assert!(s.error.unwrap().starts_with("malformed stream event"));
        let mut s = StreamState::default();
        s.event(
            br#"{"error":{"message":"out of memory","code":500}}"#,
            1,
            &mut rec,
            &mut text,
        );
        assert!(s.error.unwrap().contains("out of memory"));
    }
}
