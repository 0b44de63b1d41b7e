//! The connection layer under every HTTP surface: one accept loop for plain TCP and TLS that
//! bounds what a client can hold. Each connection gets `TCP_NODELAY` (a small response never
//! waits for a delayed ACK), a header-read timeout, an idle keep-alive timeout, and a place
//! among at most `max_connections` (past that: an immediate `503` on plain HTTP, a closed
//! connection on TLS); request bodies must keep a minimum rate. On shutdown, in-flight
//! requests get a bounded drain period, then the rest are closed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::http::ClientAddr;

/// What one client may hold, and for how long.
#[derive(Clone, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub min_body_rate: MinRate,
    pub drain: Duration,
}

/// A body must bring at least `bytes_per_second`, averaged over each `window`.
#[derive(Clone, Copy, Debug)]
pub struct MinRate {
    pub bytes_per_second: u64,
    pub window: Duration,
}

/// A TLS handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a connection's watchdog looks at it.
const WATCH_EVERY: Duration = Duration::from_millis(500);
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n";

/// Raises the soft open-files limit to the hard one, so the connection cap, not the
/// descriptor table, is what bounds clients. Returns the soft limit now in force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit write to and read from a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(io::Error::last_os_error());
            }
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// Serves `app` on `listener` (TLS when `tls` is given) until `shutdown` resolves, then lets
/// in-flight requests finish within the drain period and closes what is left.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    // `stop`: finish the request being served and close; `kill`: close now (drain over).
    let (stop_tx, stop_rx) = watch::channel(false);
    let (kill_tx, kill_rx) = watch::channel(false);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept: wait a
                    // little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let slot = slots.clone().try_acquire_owned().ok();
        let (app, limits, acceptor) = (app.clone(), limits.clone(), acceptor.clone());
        let signals = Signals { stop: stop_rx.clone(), kill: kill_rx.clone() };
        tracker.spawn(async move {
            let Some(_slot) = slot else {
                tracing::warn!(%peer, "connection refused: at the open-connection limit");
                // Plain HTTP gets the 503 at once. Over TLS an answer would need a handshake
                // (CPU, and a descriptor held up to its timeout) for a connection that is
                // refused anyway: it is closed instead.
                if acceptor.is_none() {
                    let mut s = stream;
                    let _ = s.write_all(BUSY).await;
                    let _ = s.shutdown().await;
                }
                return;
            };
            match acceptor {
                Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(stream)).await {
                    Ok(Ok(tls)) => serve_connection(tls, peer, app, &limits, signals).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
                None => serve_connection(stream, peer, app, &limits, signals).await,
            }
        });
    }
    drop(listener);
    tracker.close();
    let _ = stop_tx.send(true);
    let open = tracker.len();
    if open > 0 {
        tracing::info!(connections = open, drain_seconds = limits.drain.as_secs(), "draining connections");
    }
    if tokio::time::timeout(limits.drain, tracker.wait()).await.is_err() {
        tracing::warn!(connections = tracker.len(), "drain period over: closing the connections left");
        let _ = kill_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    }
}

/// What the accept loop tells every connection at shutdown.
struct Signals {
    stop: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
}

/// What a connection's watchdog knows of it.
struct Activity {
    started: Instant,
    /// Milliseconds since `started` of the last byte read or written.
    last_io_ms: AtomicU64,
    /// Milliseconds since `started` (+1, 0 = none) when a request's first byte arrived while
    /// none was being served: its headers are being read.
    head_since_ms: AtomicU64,
    /// Requests whose response has not been sent in full (or dropped): see [`InFlight`].
    in_flight: AtomicUsize,
    /// HTTP/2 sends frames of its own (window updates, pings) between requests: a byte read
    /// with nothing in flight is no request head there, so the header-read rule is HTTP/1's.
    http2: std::sync::atomic::AtomicBool,
}

/// One request being served, from its head until its response body is sent or dropped (a
/// reset HTTP/2 stream drops it too): a long download is busy, never idle.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_since_ms.store(0, Ordering::Release);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its request's [`InFlight`] until it is done.
struct GuardedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

async fn serve_connection<S>(io: S, peer: SocketAddr, app: Router, limits: &Limits, signals: Signals)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Signals { mut stop, mut kill } = signals;
    let activity = Arc::new(Activity {
        started: Instant::now(),
        last_io_ms: AtomicU64::new(0),
        head_since_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
        http2: std::sync::atomic::AtomicBool::new(false),
    });
    let io = Tracked { inner: io, activity: activity.clone() };
    let min_rate = limits.min_body_rate;
    let seen = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        if req.version() == axum::http::Version::HTTP_2 {
            seen.http2.store(true, Ordering::Release);
        }
        let in_flight = InFlight::start(&seen);
        let mut req = req.map(|b| Body::new(MinRateBody::new(b, min_rate)));
        req.extensions_mut().insert(ConnectInfo(ClientAddr(peer)));
        async move {
            let resp = app.oneshot(req).await;
            resp.map(|r| r.map(|inner| Body::new(GuardedBody { inner, _in_flight: in_flight })))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut ticker = tokio::time::interval(WATCH_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                // Finishes the request being served (if any) and closes; idle ones close now.
                stopping = changed.is_err() || *stop.borrow();
                if stopping {
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = kill.changed() => return,
            _ = ticker.tick() => {
                if activity.in_flight.load(Ordering::Acquire) > 0 {
                    continue;
                }
                let now = activity.now_ms();
                let head_since =
                    if activity.http2.load(Ordering::Acquire) { 0 } else { activity.head_since_ms.load(Ordering::Acquire) };
                if head_since > 0 && now.saturating_sub(head_since - 1) > limits.header_read_timeout.as_millis() as u64 {
                    tracing::debug!(%peer, "closing: the request's headers did not arrive in time");
                    return;
                }
                let idle = now.saturating_sub(activity.last_io_ms.load(Ordering::Acquire));
                if head_since == 0 && idle > limits.idle_timeout.as_millis() as u64 {
                    tracing::debug!(%peer, "closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// The connection's stream, noting when bytes move and when a new request's first byte comes.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let a = &self.activity;
            let now = a.now_ms();
            a.last_io_ms.store(now, Ordering::Release);
            if a.in_flight.load(Ordering::Acquire) == 0 {
                let _ = a.head_since_ms.compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Acquire);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.last_io_ms.store(self.activity.now_ms(), Ordering::Release);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.last_io_ms.store(self.activity.now_ms(), Ordering::Release);
        }
        r
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

/// A request body that fails once a window passes with fewer than the minimum bytes in it
/// (and the body not finished): a stalled upload frees its connection, a slow one goes on.
struct MinRateBody<B> {
    inner: B,
    rate: MinRate,
    window_bytes: u64,
    /// The end of the current window; the first starts when the handler first reads, so time
    /// a request spends waiting (for a lock, say) before it reads is not held against it.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> MinRateBody<B> {
    fn new(inner: B, rate: MinRate) -> Self {
        MinRateBody { inner, rate, window_bytes: 0, deadline: None }
    }
}

impl<B> HttpBody for MinRateBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let window = this.rate.window;
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(window)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.window_bytes += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                while deadline.as_mut().poll(cx).is_ready() {
                    if this.window_bytes < this.rate.bytes_per_second.saturating_mul(window.as_secs().max(1)) {
                        return Poll::Ready(Some(Err(format!(
                            "the request body arrived slower than {} bytes/s over {} s",
                            this.rate.bytes_per_second,
                            this.rate.window.as_secs()
                        )
                        .into())));
                    }
                    this.window_bytes = 0;
                    deadline.as_mut().reset(tokio::time::Instant::now() + window);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
