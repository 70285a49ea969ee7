//! Downloading the payloads behind Terra's pointers: a plain GET of a pre-signed URL, no token.
//!
//! The URL comes from a pointer on `terra-direct` or in a signed webhook, and the processor will
//! GET it from inside the network, so it is checked first: HTTPS, to a host under one of
//! `TERRA_PAYLOAD_HOSTS` (Terra stores payloads on S3, `.amazonaws.com`, also when it writes to
//! the customer's own bucket). Anything else is refused without a request: a pointer must not be
//! able to make the processor fetch an internal address.
//!
//! S3 answers an expired pre-signed URL with 403 (`Request has expired`), and an object that no
//! longer exists with 404; both mean the payload cannot be had from this pointer any more.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::Semaphore;

/// What one download came to.
#[derive(Debug)]
pub enum Download {
    Ok(Vec<u8>),
    /// 403 / 404 / 410: the URL expired, or the object is gone.
    Expired(u16),
    /// 5xx, 408, 429, timeouts, connection errors: worth another try while the URL is valid.
    Transient(String),
    /// Any other status.
    Rejected(u16),
}

/// The settings of Terra payload downloads.
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    /// Hosts (suffixes, comma-separated) Terra payload URLs may point to; others are refused.
    #[arg(long, env = "TERRA_PAYLOAD_HOSTS", value_delimiter = ',', default_value = ".amazonaws.com")]
    pub terra_payload_hosts: Vec<String>,

    /// Development only: accept `http://` payload URLs (the test and demo stand-ins for S3).
    #[arg(long, env = "INSECURE_TERRA_PAYLOAD_HTTP")]
    pub insecure_terra_payload_http: bool,

    /// Terra payload downloads in flight at once (payloads can be ~10 MB each).
    #[arg(long, env = "TERRA_DOWNLOAD_CONCURRENCY", default_value_t = 4)]
    pub terra_download_concurrency: usize,

    /// Timeout of one payload download, milliseconds.
    #[arg(long, env = "TERRA_DOWNLOAD_TIMEOUT_MS", default_value_t = 60_000)]
    pub terra_download_timeout_ms: u64,
}

pub struct Downloads {
    http: reqwest::Client,
    permits: Semaphore,
    hosts: Vec<String>,
    allow_http: bool,
}

impl Downloads {
    pub fn new(args: &DownloadArgs) -> anyhow::Result<Downloads> {
        if args.insecure_terra_payload_http {
            tracing::warn!("INSECURE_TERRA_PAYLOAD_HTTP is set: Terra payloads may be downloaded over plain HTTP. Development only.");
        }
        Ok(Downloads {
            http: crate::connections::http::client(Duration::from_millis(args.terra_download_timeout_ms.max(1)))?,
            permits: Semaphore::new(args.terra_download_concurrency.max(1)),
            hosts: args.terra_payload_hosts.iter().map(|host| host.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect(),
            allow_http: args.insecure_terra_payload_http,
        })
    }

    /// Why `url` may not be downloaded, if it may not.
    pub fn refusal(&self, url: &str) -> Option<String> {
        let Ok(parsed) = reqwest::Url::parse(url) else { return Some("not a URL".to_owned()) };
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            scheme => return Some(format!("scheme {scheme} is not allowed")),
        }
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let allowed = self.hosts.iter().any(|suffix| {
            let bare = suffix.trim_start_matches('.');
            host == bare || host.ends_with(&format!(".{bare}"))
        });
        (!allowed).then(|| format!("host {host} is not in TERRA_PAYLOAD_HOSTS"))
    }

    /// One GET of `url` (already checked with [`Downloads::refusal`]).
    pub async fn get(&self, url: &str) -> Download {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        crate::metrics::FETCH_IN_FLIGHT.with_label_values(&["terra"]).inc();
        let started = Instant::now();
        let result = self.http.get(url).send().await;
        let download = match result {
            Ok(response) => match response.status() {
                StatusCode::OK => match response.bytes().await {
                    Ok(body) => Download::Ok(body.to_vec()),
                    Err(_) => Download::Transient("body".to_owned()),
                },
                StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE => Download::Expired(response.status().as_u16()),
                status if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS => {
                    Download::Transient(format!("http_{}", status.as_u16()))
                }
                status => Download::Rejected(status.as_u16()),
            },
            // The error text of a failed request names the URL: it is a capability, never logged.
            Err(error) if error.is_timeout() => Download::Transient("timeout".to_owned()),
            Err(error) if error.is_connect() => Download::Transient("connect".to_owned()),
            Err(_) => Download::Transient("network".to_owned()),
        };
        crate::metrics::FETCH_IN_FLIGHT.with_label_values(&["terra"]).dec();
        crate::metrics::FETCH_DURATION.with_label_values(&["terra"]).observe(started.elapsed().as_secs_f64());
        let label = match &download {
            Download::Ok(_) => "ok",
            Download::Expired(_) => "expired",
            Download::Transient(_) => "transient",
            Download::Rejected(_) => "rejected",
        };
        crate::metrics::FETCH_REQUESTS.with_label_values(&["terra", label]).inc();
        download
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downloads(allow_http: bool) -> Downloads {
        let args = DownloadArgs {
            terra_payload_hosts: vec![".amazonaws.com".into(), "127.0.0.1".into()],
            insecure_terra_payload_http: allow_http,
            terra_download_concurrency: 1,
            terra_download_timeout_ms: 1_000,
        };
        Downloads::new(&args).unwrap()
    }

    #[test]
    fn only_https_urls_to_the_allowed_hosts_are_downloaded() {
        let strict = downloads(false);
        assert_eq!(strict.refusal("https://terra-payloads.s3.eu-west-2.amazonaws.com/a?X-Amz-Signature=1"), None);
        assert_eq!(strict.refusal("https://amazonaws.com/a"), None);
        assert!(strict.refusal("https://amazonaws.com.evil.example/a").is_some());
        assert!(strict.refusal("https://evilamazonaws.com/a").is_some());
        assert!(strict.refusal("http://bucket.s3.amazonaws.com/a").is_some(), "plain http");
        assert!(strict.refusal("https://169.254.169.254/latest/meta-data").is_some());
        assert!(strict.refusal("file:///etc/passwd").is_some());
        assert!(strict.refusal("not a url").is_some());
        assert_eq!(downloads(true).refusal("http://127.0.0.1:4567/payload/1"), None);
    }
}
