//! Logging and tracing set-up: `RUST_LOG` filters, `LOG_FORMAT=json` switches to JSON lines.
//!
//! Trace ids: the ingress takes the W3C `traceparent` of the request (or makes one), records its
//! trace id on the request span and writes it to the Kafka header `trace-id`; the processor puts
//! it on its record span and into the output event and its headers. One webhook can therefore be
//! followed from HTTP to the output topic by grepping one id.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. Logs go to stderr so stdout stays free for command output
/// (`topology describe`, `dlq list`, the demo's decoded events), through a buffered background
/// writer: a request thread never waits on an unbuffered stderr write (profiling the ingress
/// showed that cost). Keep the returned guard alive until exit; dropping it flushes the buffer.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,sqlx=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        // Colours only for a terminal: log files and collectors must not get escape codes.
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            registry.with(fmt::layer().with_writer(writer).with_target(false).with_ansi(ansi)).try_init()
        }
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true).with_current_span(true).with_writer(writer)).try_init(),
    };
    // A second init (tests that start several components in one process) keeps the first.
    let _ = result;
    guard
}

/// An error and its causes on one line, `outer: cause: root`, each said once: a cause whose text
/// the message before it already contains (`cannot read x: No such file or directory (os error
/// 2)` over the io::Error itself) is left out.
pub fn describe_error(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// A new random W3C trace id (32 lower-case hex characters).
pub fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether `value` is a trace id as we write them: 32 lower-case hex characters. Headers read
/// back from Kafka are checked with it, since a record published by someone else (Terra's own
/// destination) may carry anything under that name.
pub fn is_trace_id(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The trace id inside a W3C `traceparent` header (`00-<32 hex trace id>-<16 hex span id>-<flags>`),
/// if the header is well-formed and the id is not all zeros.
pub fn trace_id_from_traceparent(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid =
        hex(version, 2) && version != "ff" && hex(trace_id, 32) && trace_id.bytes().any(|b| b != b'0') && hex(span_id, 16) && hex(flags, 2);
    valid.then_some(trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_w3c_traceparent() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_from_traceparent(header), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let error =
            anyhow::Error::new(io).context("cannot read /x: No such file or directory (os error 2)").context("loading the topology");
        assert_eq!(describe_error(&error), "loading the topology: cannot read /x: No such file or directory (os error 2)");
        let plain = anyhow::anyhow!("refused").context("starting");
        assert_eq!(describe_error(&plain), "starting: refused");
    }

    #[test]
    fn refuses_malformed_or_zero_ids() {
        assert_eq!(trace_id_from_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id_from_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id_from_traceparent("garbage"), None);
        assert_eq!(new_trace_id().len(), 32);
    }
}
