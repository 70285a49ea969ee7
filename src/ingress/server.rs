//! The ingress's HTTP/1.1 server: the accept loop, with every connection's resources bounded.
//!
//! `axum::serve` sets no limits at all: an idle connection, or one trickling its headers, stays
//! open for ever, and each may hold a ~400 KB header buffer (1 000 idle and 200 half-sent
//! connections took the ingress from 23 MB to 103 MB, indefinitely). Here:
//!
//! - **Connection cap** ([`ServerLimits::max_connections`]): beyond it a connection is accepted,
//!   answered `503 too_many_connections` with `Retry-After`, and closed, so a flood cannot grow
//!   memory or file descriptors without bound.
//! - **Header-read timeout**: from the first byte of a request to the end of its headers. A
//!   slowloris connection is closed when it runs out.
//! - **Idle timeout**: how long a connection may wait for its next request (a fresh connection:
//!   for its first byte) before it is closed. Vendors' HTTP clients reconnect when they need to.
//! - **Header size**: hyper's read buffer is capped at [`ServerLimits::max_header_bytes`]; a larger
//!   head is answered 431 by hyper.
//!
//! hyper has a header-read timer of its own, but it also runs while a kept-alive connection is
//! idle, so it cannot tell "slow headers" from "idle between requests". [`TimedIo`] watches the
//! bytes instead: it knows when a request starts (first byte after idle), when its head ends
//! (`\r\n\r\n`) and when the response is written, and applies the matching deadline. Bodies are
//! bounded by the webhook handler (`BODY_READ_TIMEOUT_MS`, the minimum body rate).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::shutdown::CancellationToken;

/// The address a request came from (the peer of its connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub std::net::IpAddr);

/// What one connection may hold, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

/// hyper refuses read buffers smaller than this.
const MIN_HEADER_BUFFER: usize = 8192;

/// Serves `router` on `listener` until `shutdown`, then stops accepting and lets open connections
/// finish for at most `drain`. Returns whether they all finished in time.
pub async fn serve(listener: TcpListener, router: Router, limits: ServerLimits, shutdown: CancellationToken, drain: Duration) -> bool {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The header timer is TimedIo's (see the module docs); hyper's would also cut idle
        // kept-alive connections at the header deadline.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BUFFER))
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            crate::metrics::CONNECTIONS_CLOSED.with_label_values(&["over_limit"]).inc();
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        crate::metrics::OPEN_CONNECTIONS.inc();
        let io = TokioIo::new(TimedIo::new(stream, limits));
        // Handlers learn who is calling (the per-client in-flight share) from an extension.
        let client = ClientAddr(peer.ip());
        let service = router.clone().map_request(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(client);
            request
        });
        let connection = builder.serve_connection(io, TowerToHyperService::new(service));
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = watched.await {
                tracing::debug!(%error, %peer, "Connection closed with an error.");
            }
            crate::metrics::OPEN_CONNECTIONS.dec();
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(drain) => false,
    }
}

/// Answers a connection over the cap with a JSON 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":"too_many_connections","detail":"the ingress holds its maximum number of connections; retry later"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Where a connection is in its request cycle, as seen from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's first byte: the idle deadline runs.
    Idle,
    /// Inside a request head; `matched` bytes of `\r\n\r\n` seen. The header deadline runs.
    Head { matched: u8 },
    /// The head is in: the handler reads the body (with its own limits) and answers.
    Busy,
}

/// A TCP stream that enforces the idle and header-read deadlines (see the module docs).
pub struct TimedIo {
    inner: TcpStream,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    limits: ServerLimits,
}

impl TimedIo {
    fn new(inner: TcpStream, limits: ServerLimits) -> TimedIo {
        TimedIo { inner, phase: Phase::Idle, deadline: Box::pin(tokio::time::sleep(limits.idle_timeout)), limits }
    }

    fn enter_idle(&mut self) {
        self.phase = Phase::Idle;
        self.deadline.as_mut().reset(Instant::now() + self.limits.idle_timeout);
    }

    /// Follows the request cycle through freshly read bytes.
    fn on_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Head { matched: 0 };
            self.deadline.as_mut().reset(Instant::now() + self.limits.header_read_timeout);
        }
        if let Phase::Head { matched } = self.phase {
            self.phase = match end_of_head(matched, bytes) {
                Ok(()) => Phase::Busy,
                Err(matched) => Phase::Head { matched },
            };
        }
    }
}

/// Scans `bytes` for the `\r\n\r\n` that ends a request head, `matched` bytes of it having been
/// seen at the end of earlier reads: `Ok` when it ends here, else how many are matched now.
fn end_of_head(mut matched: u8, bytes: &[u8]) -> Result<(), u8> {
    const END: &[u8; 4] = b"\r\n\r\n";
    for &byte in bytes {
        matched = if byte == END[matched as usize] {
            matched + 1
        } else if byte == b'\r' {
            1
        } else {
            0
        };
        if matched == 4 {
            return Ok(());
        }
    }
    Err(matched)
}

impl AsyncRead for TimedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let this = &mut *self;
                this.on_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                if self.phase != Phase::Busy && self.deadline.as_mut().poll(cx).is_ready() {
                    let reason = if self.phase == Phase::Idle { "idle_timeout" } else { "header_timeout" };
                    crate::metrics::CONNECTIONS_CLOSED.with_label_values(&[reason]).inc();
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, reason)));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        // A response is going out: the next bytes read start a new request.
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.enter_idle();
        }
        written
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.enter_idle();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_head_is_found_across_reads() {
        assert_eq!(end_of_head(0, b"POST / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Ok(()));
        assert_eq!(end_of_head(0, b"POST / HTTP/1.1\r\nHost: x\r\n"), Err(2));
        assert_eq!(end_of_head(2, b"\r\n"), Ok(()));
        assert_eq!(end_of_head(3, b"x"), Err(0));
        assert_eq!(end_of_head(1, b"\r"), Err(1), "\\r\\r restarts the match at one");
        assert_eq!(end_of_head(0, b""), Err(0));
    }
}
