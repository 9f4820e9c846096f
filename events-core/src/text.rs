//! Text from outside, made safe for a log line, an error message or a header.
//!
//! Every adapter that quotes outside input (a subject, a header, a database message) goes
//! through these, so the rules are the same everywhere.

/// `text` from outside with control characters escaped, cut to `chars` characters (then
/// `…`): safe in a log line, an error message or a terminal.
pub fn clip(text: &str, chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(chars * 4));
    for (i, c) in text.chars().enumerate() {
        if i == chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// A header value as the CloudEvents bindings encode one: space, `"`, `%` and every byte
/// outside printable ASCII percent-encoded (UTF-8), so no value can end a header line.
pub fn header_value(text: &str) -> String {
    percent_encode(text, |b| {
        (0x21..0x7f).contains(&b) && b != b'"' && b != b'%'
    })
}

/// A diagnostic header value: readable, with `%`, control characters and every byte outside
/// ASCII percent-encoded, so no value can end a header line.
pub fn readable_header_value(text: &str) -> String {
    percent_encode(text, |b| (0x20..0x7f).contains(&b) && b != b'%')
}

/// `text` with every byte `keep` refuses as `%XX`.
fn percent_encode(text: &str, keep: fn(u8) -> bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The text of a percent-encoded header value ([`header_value`]), or `None` if it does not
/// decode to UTF-8.
pub fn decode_header_value(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_cannot_break_a_line_and_decode_back() {
        for text in ["a b", "x\r\nInjected: 1", "100%", "\"q\"", "é", ""] {
            let v = header_value(text);
            assert!(v.bytes().all(|b| (0x21..0x7f).contains(&b)), "{v}");
            assert_eq!(decode_header_value(&v).as_deref(), Some(text));
            let r = readable_header_value(text);
            assert!(!r.contains('\r') && !r.contains('\n'), "{r}");
        }
        assert_eq!(decode_header_value("%ZZ"), None);
        assert_eq!(decode_header_value("%C3"), None);
    }
}
