//! Where requests go: `base_url` parsed once into host, port, `Host` header
//! and request path.

use super::{Api, LoadError};

/// Where requests go: parsed once from `base_url`.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `host[:port]` as written in `base_url`: the `Host` header.
    pub(crate) authority: String,
    pub(crate) path: String,
}

impl Endpoint {
    /// `http://host[:port][/base]` + `/completions` or `/chat/completions`.
    pub(crate) fn parse(base_url: &str, api: Api) -> Result<Self, LoadError> {
        let invalid = |why: &str| LoadError::InvalidConfig(format!("base_url `{base_url}`: {why}"));
        let rest = if let Some(rest) = base_url.strip_prefix("http://") {
            rest
        } else if base_url.starts_with("https://") {
            return Err(invalid(
                "https is not supported yet (engines are local: use http://)",
            ));
        } else {
            return Err(invalid(
                "expected http://HOST[:PORT]/PATH, e.g. http://127.0.0.1:8000/v1",
            ));
        };
        let (authority, base_path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid("no host, or credentials in the URL"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unterminated [IPv6] host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(invalid("junk after the [IPv6] host")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| invalid(&format!("`{p}` is not a port number")))?,
            None => 80,
        };
        let suffix = match api {
            Api::Completions => "/completions",
            Api::Chat => "/chat/completions",
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            authority: valid_header(authority)
                .ok_or_else(|| invalid("the host is not a valid header value"))?,
            path: format!("{base_path}{suffix}"),
        })
    }
}

/// `value` if it can be sent as a header value (visible ASCII and spaces:
/// no CR or LF that would end the header early).
pub(crate) fn valid_header(value: &str) -> Option<String> {
    value
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        .then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:8000/v1", Api::Completions).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 8000, "/v1/completions")
        );
        let e = Endpoint::parse("http://localhost/v1/", Api::Chat).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("localhost", 80, "/v1/chat/completions")
        );
        let e = Endpoint::parse("http://[::1]:9/", Api::Chat).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("::1", 9, "/chat/completions")
        );
        assert!(Endpoint::parse("https://x/v1", Api::Chat).is_err());
        assert!(Endpoint::parse("127.0.0.1:8000", Api::Chat).is_err());
        assert!(Endpoint::parse("http://h:port/v1", Api::Chat).is_err());
    }
}
