//! Plugin text made safe for a terminal. A WASM plugin is untrusted, and so is
//! every string it returns: escape sequences could clear the screen, move the
//! cursor or set the window title, a newline could start a forged `error:` or
//! `✔` line, and bidirectional controls could reorder what is shown. Such
//! characters are written out as visible escapes (`\x1b`, `\n`, `\u{202e}`),
//! never passed through.

use std::borrow::Cow;

/// `text` with every control, line-breaking and bidirectional-formatting
/// character shown as an escape. For one-line fields (names, messages).
pub fn sanitize(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// Like [`sanitize`], but newlines are kept: for text llem itself laid out on
/// several lines (an error and its `fix:` hint) once each plugin-supplied part
/// has been through [`sanitize`].
pub fn sanitize_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| needs_escape(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 controls (ESC, CSI, BEL, CR, LF, …), DEL, the Unicode line and
/// paragraph separators, and bidirectional overrides and isolates.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_newlines_are_shown_not_executed() {
        assert_eq!(sanitize("\x1b[2Jgone"), "\\x1b[2Jgone");
        assert_eq!(
            sanitize("fine\nerror: forged\r✔ ok"),
            "fine\\nerror: forged\\r✔ ok"
        );
        assert_eq!(sanitize("\u{9b}31m"), "\\x9b31m", "8-bit CSI");
        assert_eq!(sanitize("a\u{202e}b\u{7f}"), "a\\u{202e}b\\x7f");
        assert_eq!(sanitize_lines("a\nb\x1b"), "a\nb\\x1b");
    }

    #[test]
    fn clean_text_is_borrowed_unchanged() {
        let text = "plugin `energy-rapl`: 3 device(s), 42 µJ ✔ — ok";
        assert!(matches!(sanitize(text), Cow::Borrowed(t) if t == text));
    }
}
