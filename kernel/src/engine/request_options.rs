//! Which optional request keys each kind of server takes. Every request
//! carries `max_tokens`, `temperature` and `top_p` (OpenAI's own keys, which
//! every compatible server knows); `seed` and `ignore_eos` go only when
//! `[load]` asks for them ([`Decoding::request_fields`]), and some servers
//! refuse a key they do not know — `transformers serve` answers HTTP 422 to
//! `ignore_eos` — so every request of the run would fail. Such a run is
//! refused when it is planned, naming the `[load]` key and the backend.
//!
//! A server kind is the plan's `engine` in server mode. A kind listed in
//! [`SERVER_KINDS`] declares the optional keys it accepts; an unlisted kind
//! (a third-party backend) gets every key, as before. Offline workers are
//! written by their backend against the worker protocol, which carries
//! every key: they are not restricted here.

use crate::loadgen::Decoding;
use llem_sdk::{EngineMode, EnginePlan};

/// What one kind of server accepts beyond the keys every request carries.
#[derive(Debug, Clone, Copy)]
pub struct ServerKind {
    /// The plan's `engine`.
    pub engine: &'static str,
    /// The server, as its users call it.
    pub server: &'static str,
    /// Optional request keys it takes.
    pub accepts: &'static [&'static str],
    /// What it does with another key.
    pub refusal: &'static str,
    /// What to do instead, for the error message.
    pub instead: &'static str,
}

/// Server kinds of llem's own backends.
pub const SERVER_KINDS: &[ServerKind] = &[
    ServerKind {
        engine: "transformers",
        server: "`transformers serve`",
        accepts: &["seed"],
        refusal: "answers HTTP 422 (\"Unexpected fields in the request\")",
        instead: ", or run where it is honoured: mode = \"offline\" (the PyTorch worker) or the vllm backend",
    },
    ServerKind {
        engine: "vllm",
        server: "`vllm serve`",
        accepts: &["seed", "ignore_eos"],
        refusal: "",
        instead: "",
    },
    ServerKind {
        engine: "trtllm",
        server: "`trtllm-serve`",
        accepts: &["seed", "ignore_eos"],
        refusal: "",
        instead: "",
    },
];

/// The declaration for `plan`'s server, if llem knows it.
pub fn server_kind(plan: &EnginePlan) -> Option<&'static ServerKind> {
    if plan.mode != EngineMode::Server {
        return None;
    }
    SERVER_KINDS.iter().find(|k| k.engine == plan.engine)
}

/// Refuse `decoding` when `plan`'s server would reject a key it adds to every
/// request. `instance` is the backend's `[plugins.<instance>]` table.
pub fn refuse_unaccepted(
    plan: &EnginePlan,
    decoding: &Decoding,
    instance: &str,
) -> Result<(), String> {
    let Some(kind) = server_kind(plan) else {
        return Ok(());
    };
    match decoding
        .optional_keys()
        .into_iter()
        .find(|key| !kind.accepts.contains(key))
    {
        None => Ok(()),
        Some(key) => Err(format!(
            "load.{key}: backend `{instance}` runs {}, which {} to a request carrying `{key}`, so every request would fail; remove `{key}` from [load]{}",
            kind.server, kind.refusal, kind.instead
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(engine: &str, mode: EngineMode) -> EnginePlan {
        crate::engine::test_plan(mode, engine, "x", &[])
    }

    #[test]
    fn transformers_serve_refuses_ignore_eos_by_key_and_backend() {
        let decoding = Decoding {
            ignore_eos: true,
            ..Decoding::default()
        };
        let err = refuse_unaccepted(
            &plan("transformers", EngineMode::Server),
            &decoding,
            "pytorch",
        )
        .unwrap_err();
        assert!(err.starts_with("load.ignore_eos:"), "{err}");
        assert!(
            err.contains("backend `pytorch`") && err.contains("422"),
            "{err}"
        );
        // A seed it takes; the offline worker takes everything; so do vLLM
        // and servers llem knows nothing about.
        let seeded = Decoding {
            seed: Some(3),
            ..Decoding::default()
        };
        assert!(refuse_unaccepted(&plan("transformers", EngineMode::Server), &seeded, "p").is_ok());
        for (engine, mode) in [
            ("transformers", EngineMode::Offline),
            ("vllm", EngineMode::Server),
            ("trtllm", EngineMode::Server),
            ("someones-server", EngineMode::Server),
        ] {
            assert!(
                refuse_unaccepted(&plan(engine, mode), &decoding, "b").is_ok(),
                "{engine} {mode:?}"
            );
        }
    }
}
