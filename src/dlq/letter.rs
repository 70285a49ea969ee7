//! A dead letter as read from the DLQ, and which ones a command selects. Pure.
//!
//! A dead letter is the original raw record — key, payload and headers byte for byte — plus the
//! headers the processor appended (`error-class`, `error-message`, `source-topic`,
//! `source-partition`, `source-offset`; see `processor::pipeline::dead_letter`). Everything is kept
//! as bytes, in order, duplicates included, so `show` and `replay` can reproduce it exactly.

use rdkafka::message::{Headers, Message};

/// One record of the DLQ topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    /// The Kafka timestamp: when the record was dead-lettered, ms since the epoch.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Every header in record order; a value can be null or non-UTF-8.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    pub fn from_message(message: &impl Message) -> DeadLetter {
        let headers = message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        DeadLetter {
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// The last value of header `name` as UTF-8: the dead-letter headers are appended after the
    /// original ones, so the last one is the processor's.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// `<partition>/<offset>`, as `list` prints and `show` takes it.
    pub fn position(&self) -> String {
        format!("{}/{}", self.partition, self.offset)
    }
}

/// Which dead letters a command works on.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Selection {
    /// Only dead letters of this error class (the `error-class` header, e.g. `invalid_json`).
    #[arg(long)]
    pub error_class: Option<String>,

    /// Only dead letters written at or after this instant: RFC 3339 (`2026-11-26T08:00:00Z`) or
    /// milliseconds since the epoch.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<i64>,

    /// At most this many: the first selected, in partition/offset order.
    #[arg(long)]
    pub limit: Option<usize>,
}

impl Selection {
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let class_ok = self.error_class.as_deref().is_none_or(|class| letter.header(crate::kafka::headers::ERROR_CLASS) == Some(class));
        let time_ok = self.since.is_none_or(|since| letter.timestamp_ms.is_some_and(|at| at >= since));
        class_ok && time_ok
    }

    /// Sorts what matched by partition and offset and applies the limit.
    pub fn finish<T>(&self, mut selected: Vec<T>, position: impl Fn(&T) -> (i32, i64)) -> Vec<T> {
        selected.sort_by_key(|item| position(item));
        selected.truncate(self.limit.unwrap_or(usize::MAX));
        selected
    }
}

/// `--since`: RFC 3339 or ms since the epoch.
pub fn parse_since(raw: &str) -> Result<i64, String> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse::<i64>().map_err(|error| format!("{raw}: {error}"));
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|at| at.timestamp_millis())
        .map_err(|error| format!("{raw:?} is neither RFC 3339 (2026-11-26T08:00:00Z) nor ms since the epoch: {error}"))
}

/// `<partition>/<offset>`.
pub fn parse_position(raw: &str) -> Result<(i32, i64), String> {
    let invalid = || format!("{raw:?} is not <partition>/<offset> (e.g. 0/42, as `dlq list` prints it)");
    let (partition, offset) = raw.trim().split_once('/').ok_or_else(invalid)?;
    let partition: i32 = partition.parse().map_err(|_| invalid())?;
    let offset: i64 = offset.parse().map_err(|_| invalid())?;
    if partition < 0 || offset < 0 {
        return Err(invalid());
    }
    Ok((partition, offset))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A dead letter as the processor writes one for a truncated Terra body.
    pub fn letter(offset: i64, class: &str, timestamp_ms: i64) -> DeadLetter {
        let header = |key: &str, value: &str| (key.to_owned(), Some(value.as_bytes().to_vec()));
        DeadLetter {
            partition: 0,
            offset,
            timestamp_ms: Some(timestamp_ms),
            key: Some(b"terra:user-1".to_vec()),
            payload: Some(br#"{"type":"sleep","data":["#.to_vec()),
            headers: vec![
                header("vendor", "terra"),
                header("delivery-id", "d-1"),
                ("binary".to_owned(), Some(vec![0xff, 0x00])),
                ("empty".to_owned(), None),
                header("error-class", class),
                header("error-message", "EOF while parsing a list at line 1 column 24"),
                header("source-topic", "raw-webhooks"),
                header("source-partition", "3"),
                header("source-offset", "1234"),
            ],
        }
    }

    #[test]
    fn since_takes_rfc3339_or_milliseconds() {
        assert_eq!(parse_since("1764144000000"), Ok(1_764_144_000_000));
        assert_eq!(parse_since("2025-11-26T08:00:00Z"), Ok(1_764_144_000_000));
        assert_eq!(parse_since("2025-11-26T09:00:00+01:00"), Ok(1_764_144_000_000));
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("-5").is_err());
        assert!(parse_since("").is_err());
    }

    #[test]
    fn positions_parse() {
        assert_eq!(parse_position("0/42"), Ok((0, 42)));
        assert!(parse_position("42").is_err());
        assert!(parse_position("0/-1").is_err());
        assert!(parse_position("a/1").is_err());
    }

    #[test]
    fn selection_filters_by_class_and_time() {
        let old = letter(0, "invalid_json", 1_000);
        let new = letter(1, "unknown_vendor", 2_000);
        let all = Selection::default();
        assert!(all.matches(&old) && all.matches(&new));
        let by_class = Selection { error_class: Some("invalid_json".into()), ..Selection::default() };
        assert!(by_class.matches(&old) && !by_class.matches(&new));
        let by_time = Selection { since: Some(1_500), ..Selection::default() };
        assert!(!by_time.matches(&old) && by_time.matches(&new));
        let mut untimed = letter(2, "x", 0);
        untimed.timestamp_ms = None;
        assert!(!by_time.matches(&untimed), "no timestamp cannot be after --since");
    }

    #[test]
    fn selection_orders_then_limits() {
        let limited = Selection { limit: Some(2), ..Selection::default() };
        let picked = limited.finish(vec![(1, 5), (0, 9), (0, 2)], |p| *p);
        assert_eq!(picked, [(0, 2), (0, 9)]);
    }

    #[test]
    fn the_processors_header_wins_over_an_original_of_the_same_name() {
        let mut dead = letter(0, "invalid_json", 0);
        dead.headers.insert(0, ("error-class".into(), Some(b"client-side".to_vec())));
        assert_eq!(dead.header("error-class"), Some("invalid_json"));
        assert_eq!(dead.header("binary"), None, "not UTF-8");
        assert_eq!(dead.header("empty"), None);
        assert_eq!(dead.position(), "0/0");
    }
}
