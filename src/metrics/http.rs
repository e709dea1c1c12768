//! The HTTP endpoint of the metrics: `GET /metrics` on `metrics.listen`, from one small std thread (no
//! async runtime), one connection at a time.
//!
//! Owns: the listener thread and the little HTTP it speaks. Must never: block the daemon's loop, answer
//! anything but the metrics (no other path, no method but GET and HEAD), or let one client hold the
//! thread for long.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tracing::{debug, info, warn};

use super::registry::render;

/// Why metrics could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// `metrics.listen` could not be bound (in use, or not an address of this host).
    #[error(
        "cannot serve metrics on `{addr}` (`metrics.listen`): is another program using the port, or is it not an address of this host?"
    )]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What this process serves: the configured address, the bound one, and the registry in use. A daemon
/// that starts again in the same process (a standby taking over after it was deposed) swaps its registry
/// in instead of binding the address a second time.
type Served = (SocketAddr, SocketAddr, Arc<std::sync::Mutex<Arc<Registry>>>);
static SERVED: std::sync::Mutex<Option<Served>> = std::sync::Mutex::new(None);

/// Binds `addr` and serves the registry from one thread, one connection at a time (a scrape every few
/// seconds needs nothing more); returns the bound address.
pub(super) fn serve(addr: SocketAddr, registry: Arc<Registry>) -> Result<SocketAddr, MetricsError> {
    let mut served = SERVED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((configured, bound, slot)) = served.as_ref()
        && *configured == addr
        && addr.port() != 0
    {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = registry;
        return Ok(*bound);
    }
    let slot = Arc::new(std::sync::Mutex::new(registry));
    let listener =
        TcpListener::bind(addr).map_err(|source| MetricsError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Listen { addr, source })?;
    if !bound.ip().is_loopback() {
        warn!(
            "metrics are served on {bound}, which is not a loopback address: anyone who can reach it can read them (no authentication)"
        );
    }
    info!(listen = %bound, "serving metrics on http://{bound}/metrics");
    let serving = slot.clone();
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        let registry = serving.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        if let Err(e) = answer(stream, &registry) {
                            debug!("metrics request failed: {e}");
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: do not spin.
                        debug!("cannot accept a metrics connection: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(|source| MetricsError::Listen { addr, source })?;
    *served = Some((addr, bound, slot));
    Ok(bound)
}

/// One HTTP/1.x request: `GET /metrics` (or `HEAD`); anything else gets a short error. Bounded in time and
/// size so a stuck client cannot hold the thread for long.
fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            break;
        }
    }
    let (status, content_type, body, head_only) = respond(&head, || render(registry));
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// The response to a request head: (status line, content type, body, HEAD request).
fn respond(
    head: &[u8],
    metrics: impl FnOnce() -> String,
) -> (&'static str, &'static str, String, bool) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return ("400 Bad Request", TEXT, "bad request\n".into(), false);
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (
            "405 Method Not Allowed",
            TEXT,
            "only GET /metrics\n".into(),
            false,
        );
    }
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/metrics" => (
            "200 OK",
            prometheus_text::CONTENT_TYPE,
            metrics(),
            head_only,
        ),
        "/" => (
            "200 OK",
            TEXT,
            "dirwatcher: metrics are at /metrics\n".into(),
            head_only,
        ),
        _ => (
            "404 Not Found",
            TEXT,
            "not found; metrics are at /metrics\n".into(),
            head_only,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_get_metrics_and_refuses_the_rest() {
        let body = || "x 1\n".to_string();
        let (s, ct, b, _) = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", body);
        assert_eq!(
            (s, ct, b.as_str()),
            ("200 OK", prometheus_text::CONTENT_TYPE, "x 1\n")
        );
        assert!(respond(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", body).3);
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n", body).0,
            "405 Method Not Allowed"
        );
        assert_eq!(
            respond(b"GET /secrets HTTP/1.1\r\n\r\n", body).0,
            "404 Not Found"
        );
        assert_eq!(respond(b"\r\n", body).0, "400 Bad Request");
    }
}
