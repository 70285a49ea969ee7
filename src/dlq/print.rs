//! What `dlq list` and `dlq show` print. Pure: a dead letter in, text (or bytes) out.
//!
//! `list` gives one line per dead letter, for a human or `grep`/`awk`: position, time, class,
//! where it came from, vendor, delivery id, size, and the start of the error message last (so the
//! free text cannot shift the columns). `show` prints everything: header values as text when they
//! are printable UTF-8, else as hex; the payload as its exact bytes when it is UTF-8, else as hex,
//! so nothing is altered or replaced on the way to the terminal.

use std::fmt::Write;

use super::letter::DeadLetter;
use crate::kafka::headers;

/// How much of `error-message` a list line shows, in characters.
const MESSAGE_CHARS: usize = 80;

fn instant(timestamp_ms: Option<i64>) -> String {
    timestamp_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| "-".to_owned(), |at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// `value` as text if it is UTF-8 without control characters, else `hex:<hex>`.
fn printable(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => format!("hex:{}", hex::encode(value)),
    }
}

/// One line of `dlq list`.
pub fn list_line(letter: &DeadLetter) -> String {
    let get = |name: &str| letter.header(name).unwrap_or("-");
    let message: String = get(headers::ERROR_MESSAGE).chars().take(MESSAGE_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut line = format!(
        "{}  {}  {}  from={}/{}/{}  vendor={}  delivery-id={}  {}B",
        letter.position(),
        instant(letter.timestamp_ms),
        get(headers::ERROR_CLASS),
        get(headers::SOURCE_TOPIC),
        get(headers::SOURCE_PARTITION),
        get(headers::SOURCE_OFFSET),
        get(headers::VENDOR),
        get(headers::DELIVERY_ID),
        letter.payload.as_ref().map_or(0, Vec::len),
    );
    if let Some(from) = letter.header(headers::REPLAYED_FROM) {
        let _ = write!(line, "  replayed-from={from}");
    }
    let _ = write!(line, "  {message}");
    line
}

/// The whole of `dlq show`; `sealed` says what opening a sealed payload gave.
pub fn show(topic: &str, letter: &DeadLetter, sealed: Option<&str>) -> Vec<u8> {
    let mut out = String::new();
    let _ = writeln!(out, "dead letter  {topic}/{}", letter.position());
    let _ = writeln!(
        out,
        "timestamp    {} ({} ms)",
        instant(letter.timestamp_ms),
        letter.timestamp_ms.map_or("-".to_owned(), |ms| ms.to_string())
    );
    let _ = writeln!(out, "key          {}", letter.key.as_deref().map_or("(none)".to_owned(), printable));
    let _ = writeln!(out, "headers      {}", letter.headers.len());
    for (key, value) in &letter.headers {
        let _ = writeln!(out, "  {key}: {}", value.as_deref().map_or("(null)".to_owned(), printable));
    }
    if let Some(sealed) = sealed {
        let _ = writeln!(out, "sealed       {sealed}");
    }
    let mut out = out.into_bytes();
    match letter.payload.as_deref() {
        None => out.extend_from_slice(b"payload      (null)\n"),
        Some(payload) if std::str::from_utf8(payload).is_ok() => {
            out.extend_from_slice(format!("payload      {} bytes, UTF-8 text, exactly:\n", payload.len()).as_bytes());
            out.extend_from_slice(payload);
            out.push(b'\n');
        }
        Some(payload) => {
            out.extend_from_slice(format!("payload      {} bytes, not UTF-8, hex:\n", payload.len()).as_bytes());
            for chunk in payload.chunks(32) {
                out.extend_from_slice(hex::encode(chunk).as_bytes());
                out.push(b'\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::letter::tests::letter;
    use super::*;

    #[test]
    fn a_list_line_has_every_column() {
        let line = list_line(&letter(7, "invalid_json", 1_764_144_000_123));
        assert_eq!(
            line,
            "0/7  2025-11-26T08:00:00.123Z  invalid_json  from=raw-webhooks/3/1234  vendor=terra  delivery-id=d-1  24B  \
             EOF while parsing a list at line 1 column 24"
        );
    }

    #[test]
    fn a_list_line_cuts_the_message_and_shows_a_replay() {
        let mut dead = letter(7, "invalid_json", 0);
        dead.headers.push(("error-message".into(), Some(format!("line one\n{}", "x".repeat(200)).into_bytes())));
        dead.headers.push(("replayed-from".into(), Some(b"raw-webhooks.dlq/0/3".to_vec())));
        let line = list_line(&dead);
        assert!(line.contains("  replayed-from=raw-webhooks.dlq/0/3  line one x"), "{line}");
        assert!(line.ends_with(&"x".repeat(71)) && !line.ends_with(&"x".repeat(72)), "80 characters of the message: {line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn show_prints_every_header_and_the_exact_payload() {
        let text = String::from_utf8(show("raw-webhooks.dlq", &letter(7, "invalid_json", 1_764_144_000_123), None)).unwrap();
        assert!(text.starts_with("dead letter  raw-webhooks.dlq/0/7\ntimestamp    2025-11-26T08:00:00.123Z (1764144000123 ms)\nkey          terra:user-1\nheaders      9\n"));
        for line in ["  vendor: terra\n", "  binary: hex:ff00\n", "  empty: (null)\n", "  source-offset: 1234\n"] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        assert!(text.ends_with("payload      24 bytes, UTF-8 text, exactly:\n{\"type\":\"sleep\",\"data\":[\n"), "{text}");
    }

    #[test]
    fn show_prints_binary_payloads_as_hex() {
        let mut dead = letter(7, "invalid_json", 0);
        dead.payload = Some(vec![0xc3, 0x28, 0x00]);
        let text = String::from_utf8(show("dlq", &dead, None)).unwrap();
        assert!(text.ends_with("payload      3 bytes, not UTF-8, hex:\nc32800\n"), "{text}");
    }
}
