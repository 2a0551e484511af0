//! Incremental Server-Sent Events parser (the subset OpenAI-compatible servers use).
//!
//! Bytes arrive in whatever pieces the network hands over: an event, a line, a
//! CRLF pair or a UTF-8 sequence may be split anywhere. The parser keeps only
//! the unfinished tail between calls. Lines end with LF, CRLF or CR; a blank
//! line dispatches the event; `data:` lines are joined with `\n`; comment lines
//! (`:` first) and other fields (`event`, `id`, `retry`) are ignored.

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Unfinished line carried over from the previous `feed`.
    tail: Vec<u8>,
    /// Data of the event being assembled.
    data: Vec<u8>,
    has_data: bool,
    /// The previous piece ended with CR: an LF at the start of the next one
    /// belongs to the same line ending.
    skip_lf: bool,
}

impl SseParser {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feed the next piece of the stream; `on_event` gets each complete event's data.
    pub(crate) fn feed(&mut self, mut input: &[u8], on_event: &mut impl FnMut(&[u8])) {
        if input.is_empty() {
            return;
        }
        if self.skip_lf {
            self.skip_lf = false;
            if let [b'\n', rest @ ..] = input {
                input = rest;
            }
        }
        if self.tail.is_empty() {
            let used = self.lines(input, on_event);
            self.tail.extend_from_slice(&input[used..]);
        } else {
            // Only the unfinished line is copied; complete the line first, then go
            // on without copying the rest.
            match input.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => self.tail.extend_from_slice(input),
                Some(end) => {
                    self.tail.extend_from_slice(&input[..end]);
                    let line = std::mem::take(&mut self.tail);
                    self.line(&line, on_event);
                    self.tail = line;
                    self.tail.clear();
                    let rest = self.after_terminator(input, end);
                    let used = self.lines(rest, on_event);
                    self.tail.extend_from_slice(&rest[used..]);
                }
            }
        }
    }

    /// End of stream: a last line without terminator and an event without its
    /// blank line are still delivered (some servers omit the final blank line).
    pub(crate) fn finish(&mut self, on_event: &mut impl FnMut(&[u8])) {
        if !self.tail.is_empty() {
            let line = std::mem::take(&mut self.tail);
            self.line(&line, on_event);
        }
        self.line(b"", on_event);
    }

    /// Slice after the line terminator at `end` (CR, LF or CRLF).
    fn after_terminator<'a>(&mut self, input: &'a [u8], end: usize) -> &'a [u8] {
        if input[end] == b'\r' {
            match input.get(end + 1) {
                Some(b'\n') => &input[end + 2..],
                Some(_) => &input[end + 1..],
                None => {
                    self.skip_lf = true;
                    &input[end + 1..]
                }
            }
        } else {
            &input[end + 1..]
        }
    }

    /// Process every complete line of `input`; returns the bytes consumed.
    fn lines(&mut self, input: &[u8], on_event: &mut impl FnMut(&[u8])) -> usize {
        let mut start = 0;
        while let Some(offset) = input[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            let end = start + offset;
            self.line(&input[start..end], on_event);
            let rest = self.after_terminator(input, end);
            start = input.len() - rest.len();
        }
        start
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        if line.is_empty() {
            if self.has_data {
                on_event(&self.data);
                self.data.clear();
                self.has_data = false;
            }
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SseParser;

    fn events_of(pieces: &[&[u8]]) -> Vec<String> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let mut push = |e: &[u8]| out.push(String::from_utf8(e.to_vec()).unwrap());
        for piece in pieces {
            parser.feed(piece, &mut push);
        }
        parser.finish(&mut push);
        out
    }

    const STREAM: &str = ": ping\n\ndata: {\"a\":1}\n\ndata: {\"b\":\r\ndata: 2}\r\n\r\nevent: x\nid: 7\ndata:no-space\r\rdata: [DONE]\n\n";
    const EXPECTED: [&str; 4] = ["{\"a\":1}", "{\"b\":\n2}", "no-space", "[DONE]"];

    #[test]
    fn whole_stream() {
        assert_eq!(events_of(&[STREAM.as_bytes()]), EXPECTED);
    }

    #[test]
    fn every_single_split_point() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(
                events_of(&[&bytes[..cut], &bytes[cut..]]),
                EXPECTED,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_pair_of_split_points() {
        let bytes = STREAM.as_bytes();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                assert_eq!(
                    events_of(&[&bytes[..a], &bytes[a..b], &bytes[b..]]),
                    EXPECTED,
                    "cuts at {a}, {b}"
                );
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let pieces: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(events_of(&pieces), EXPECTED);
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_ending() {
        // "data: a\r" | "\ndata: b\r\n\r\n" must not produce an extra blank line
        // (which would split the event in two).
        assert_eq!(events_of(&[b"data: a\r", b"\ndata: b\r\n\r\n"]), ["a\nb"]);
    }

    #[test]
    fn missing_final_blank_line_still_delivers() {
        assert_eq!(events_of(&[b"data: x"]), ["x"]);
        assert_eq!(events_of(&[b"data: x\n"]), ["x"]);
    }

    #[test]
    fn comments_and_empty_events_produce_nothing() {
        assert!(events_of(&[b": keep-alive\n\n\n\n:another\r\n\r\n"]).is_empty());
    }
}
