//! The HTTP/1.1 the load generator speaks, and nothing more: a request
//! rendered once per prompt (so it goes out in one write), the response head,
//! and the body's framing (chunked, `Content-Length`, or until the server
//! closes). It is this small so that the request task itself reads its socket
//! (one task wake-up per chunk; with hyper's client, the connection task read
//! it and handed it over to the request task: two).

use bytes::Bytes;

/// The longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// `POST path` with a JSON body, as bytes ready to write.
pub(crate) fn render_request(
    path: &str,
    authority: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\naccept: text/event-stream\r\n");
    if let Some(auth) = auth {
        out.extend_from_slice(b"authorization: ");
        out.extend_from_slice(auth.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// What the response head says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// The status line's reason phrase (`Internal Server Error`), may be empty.
    pub(crate) reason: String,
    pub(crate) framing: Framing,
    /// The connection cannot carry another request (`Connection: close`, or HTTP/1.0).
    pub(crate) close: bool,
}

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Chunked,
    Length(u64),
    /// When the server closes the connection.
    Close,
}

/// Parse a response head from the start of `buf`: `Ok(None)` while it is
/// incomplete, else the head and its length in bytes.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(format!("response head longer than {MAX_HEAD} bytes"));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end])
        .map_err(|_| "response head is not valid UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next();
    let reason = parts.next().unwrap_or_default().trim().to_owned();
    let status = code
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP/1 response: {:?}", excerpt(status_line)))?;
    let mut close = version == "HTTP/1.0";
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed response header {:?}", excerpt(line)));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad Content-Length {:?}", excerpt(value)))?,
            );
        } else if name.eq_ignore_ascii_case("connection") {
            if value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("close"))
            {
                close = true;
            } else if value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("keep-alive"))
            {
                close = false;
            }
        }
    }
    // RFC 9112 §6.3: chunked wins over a length; no length and no chunking
    // means the body runs until the server closes.
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => {
            close = true;
            Framing::Close
        }
    };
    // 1xx, 204 and 304 responses have no body.
    let framing = if status < 200 || status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        framing
    };
    Ok(Some((
        Head {
            status,
            reason,
            framing,
            close,
        },
        end + 4,
    )))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn excerpt(text: &str) -> String {
    text.chars().take(100).collect()
}

/// Turns the bytes after the head into the body's content, whatever pieces
/// they arrive in.
#[derive(Debug)]
pub(crate) struct BodyDecoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A chunk-size line: the size so far; true once past the digits
    /// (an extension or whitespace, ignored).
    Size(u64, bool),
    /// Bytes left of the current chunk.
    Data(u64),
    /// The CRLF after a chunk's data (LF seen ends it).
    DataEnd,
    /// Trailer lines after the last chunk: bytes in the current line.
    Trailer(usize),
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    UntilClose,
    Done,
}

impl BodyDecoder {
    pub(crate) fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Chunked => State::Size(0, false),
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Close => State::UntilClose,
        };
        BodyDecoder { state }
    }

    /// The body is complete (a close-delimited body is complete only at the close).
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The server closed the connection: fine only for a close-delimited body.
    pub(crate) fn at_close(&mut self) -> Result<(), String> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err("the server closed the connection before the end of the body".into()),
        }
    }

    /// Decode `input`; `out` gets the content in order. Bytes after the end
    /// of the body are returned as the count left unread.
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> Result<usize, String> {
        while !input.is_empty() {
            match self.state {
                State::Done => return Ok(input.len()),
                State::UntilClose => {
                    out(input);
                    return Ok(0);
                }
                State::Length(left) | State::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    out(&input[..take]);
                    input = &input[take..];
                    let left = left - take as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::DataEnd,
                        _ => State::Data(left),
                    };
                }
                State::DataEnd => {
                    let b = input[0];
                    input = &input[1..];
                    match b {
                        b'\r' => {}
                        b'\n' => self.state = State::Size(0, false),
                        _ => return Err("malformed chunked body: no CRLF after a chunk".into()),
                    }
                }
                State::Size(size, past_digits) => {
                    let b = input[0];
                    input = &input[1..];
                    self.state = match (b, past_digits) {
                        (b'\n', _) if size == 0 => State::Trailer(0),
                        (b'\n', _) => State::Data(size),
                        (b'\r', _) => State::Size(size, true),
                        (_, false) if b.is_ascii_hexdigit() => {
                            let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                            let size = size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(digit))
                                .ok_or("malformed chunked body: chunk size overflows")?;
                            State::Size(size, false)
                        }
                        (b';' | b' ' | b'\t', _) => State::Size(size, true),
                        (_, true) => State::Size(size, true),
                        _ => return Err("malformed chunked body: bad chunk size".into()),
                    };
                }
                State::Trailer(len) => {
                    let b = input[0];
                    input = &input[1..];
                    self.state = match b {
                        b'\n' if len == 0 => State::Done,
                        b'\n' => State::Trailer(0),
                        b'\r' => State::Trailer(len),
                        _ => State::Trailer(len + 1),
                    };
                }
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_buffer() {
        let r = render_request("/v1/completions", "h:1", Some("Bearer k"), b"{}");
        assert_eq!(
            &r[..],
            b"POST /v1/completions HTTP/1.1\r\nhost: h:1\r\ncontent-type: application/json\r\n\
              accept: text/event-stream\r\nauthorization: Bearer k\r\ncontent-length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn heads() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nrest";
        assert_eq!(parse_head(&head[..20]).unwrap(), None);
        let (h, n) = parse_head(head).unwrap().unwrap();
        assert_eq!(
            (h.status, h.framing, h.close),
            (200, Framing::Chunked, false)
        );
        assert_eq!(&head[n..], b"rest");
        let (h, _) = parse_head(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 12\r\nconnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.framing, h.close),
            (500, Framing::Length(12), true)
        );
        assert_eq!(h.reason, "Internal Server Error");
        let (h, _) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.close), (Framing::Close, true));
        let (h, _) = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(0));
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
    }

    fn decode(framing: Framing, pieces: &[&[u8]]) -> (Vec<u8>, bool, usize) {
        let mut d = BodyDecoder::new(framing);
        let mut out = Vec::new();
        let mut extra = 0;
        for p in pieces {
            extra += d.feed(p, &mut |b| out.extend_from_slice(b)).unwrap();
        }
        (out, d.is_done(), extra)
    }

    const CHUNKED: &[u8] = b"5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";

    #[test]
    fn chunked_bodies_at_every_split() {
        for a in 0..=CHUNKED.len() {
            for b in a..=CHUNKED.len() {
                let (out, done, extra) = decode(
                    Framing::Chunked,
                    &[&CHUNKED[..a], &CHUNKED[a..b], &CHUNKED[b..]],
                );
                assert_eq!(out, b"hello, world!!!", "cuts {a} {b}");
                assert!(done);
                assert_eq!(extra, 4, "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn length_and_close_bodies() {
        assert_eq!(
            decode(Framing::Length(5), &[b"he", b"llo+"]),
            (b"hello".to_vec(), true, 1)
        );
        let mut d = BodyDecoder::new(Framing::Close);
        let mut out = Vec::new();
        d.feed(b"abc", &mut |b| out.extend_from_slice(b)).unwrap();
        assert!(!d.is_done());
        assert!(d.at_close().is_ok() && d.is_done());
        let mut d = BodyDecoder::new(Framing::Chunked);
        d.feed(b"5\r\nhe", &mut |_| {}).unwrap();
        assert!(d.at_close().is_err());
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloX\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            let mut d = BodyDecoder::new(Framing::Chunked);
            assert!(d.feed(bad, &mut |_| {}).is_err(), "{bad:?}");
        }
    }
}
