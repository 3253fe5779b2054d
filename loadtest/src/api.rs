//! The engine's API as the load generator calls it: JSON over a bounded
//! pool of keep-alive HTTP/1.1 connections (hyper), bearer tokens, and the
//! agent WebSocket (awc).
//!
//! Only loopback targets are accepted: a load test sends traffic to a
//! server on this machine and nowhere else.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::events::{Envelope, Reply};

/// The largest reply body read.
const MAX_BODY: usize = 64 << 20;

/// A request that did not come back with a 200 and its events.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The engine answered with an error (`{"error": kind, "message"}`).
    #[error("HTTP {status} {kind}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The error's kind, as the API names it.
        kind: String,
        /// What the engine said.
        message: String,
    },
    /// The engine refused a command sent on the agent's WebSocket.
    #[error("refused on the socket, {kind}: {message}")]
    Refused {
        /// The error's kind, as the API names it.
        kind: String,
        /// What the engine said.
        message: String,
    },
    /// No answer within the request timeout.
    #[error("timed out")]
    Timeout,
    /// The connection failed (refused, reset, closed).
    #[error("transport: {0}")]
    Transport(String),
    /// A 200 whose body is not the expected JSON.
    #[error("undecodable reply: {0}")]
    Decode(String),
}

impl ApiError {
    /// A short kind for counting: `http_409_offer_not_open`, `timeout`,
    /// `transport`, `decode`.
    pub fn kind(&self) -> String {
        match self {
            ApiError::Status { status, kind, .. } => format!("http_{status}_{kind}"),
            ApiError::Refused { kind, .. } => format!("ws_{kind}"),
            ApiError::Timeout => "timeout".into(),
            ApiError::Transport(_) => "transport".into(),
            ApiError::Decode(_) => "decode".into(),
        }
    }

    /// The API's error kind, when the engine answered with one.
    pub fn api_kind(&self) -> Option<&str> {
        match self {
            ApiError::Status { kind, .. } | ApiError::Refused { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// A target the load generator refuses.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not `http://HOST:PORT`.
    #[error("target {0:?} is not an http://HOST:PORT URL")]
    Malformed(String),
    /// A host that is not this machine.
    #[error("target host {0:?} is not a loopback address: load is only ever sent to this machine (127.0.0.0/8, ::1, localhost)")]
    NotLoopback(String),
}

/// A validated target: a loopback address and port, reached over `http://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The address to connect to.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses and checks `url` (`http://127.0.0.1:8080`, optionally with a
    /// trailing `/` or `/v1`).
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let malformed = || TargetError::Malformed(url.to_owned());
        let rest = url.strip_prefix("http://").ok_or_else(malformed)?;
        let authority = rest.trim_end_matches('/').trim_end_matches("/v1");
        if authority.contains('/') || authority.contains('@') {
            return Err(malformed());
        }
        let (host, port) = authority.rsplit_once(':').ok_or_else(malformed)?;
        let port: u16 = port.parse().map_err(|_| malformed())?;
        let bracketed = host.starts_with('[') && host.ends_with(']');
        let bare = if bracketed { &host[1..host.len() - 1] } else { host };
        let ip = match bare {
            // Resolved here, so no resolver is ever asked.
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => match bare.parse::<IpAddr>() {
                // An IPv6 host must be in brackets, or its colons and the port's run together.
                Ok(IpAddr::V6(_)) if !bracketed => return Err(malformed()),
                Ok(ip) if ip.is_loopback() => ip,
                _ => return Err(TargetError::NotLoopback(host.to_owned())),
            },
        };
        Ok(Self { addr: SocketAddr::new(ip, port) })
    }

    /// `http://HOST:PORT`, without a trailing slash; an IPv6 host in brackets.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port, for finding the engine's process.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Whether the target is the IPv6 loopback.
    pub fn is_v6(&self) -> bool {
        self.addr.ip() == Ipv6Addr::LOCALHOST
    }
}

/// The routes the load generator calls, for per-route figures.
pub mod route {
    /// `POST /v1/inbound/messages` (a new conversation).
    pub const ARRIVAL: &str = "inbound_message";
    /// `POST /v1/inbound/messages` (a customer's answer).
    pub const CUSTOMER_REPLY: &str = "inbound_reply";
    /// `POST /v1/inbound/leave`.
    pub const LEAVE: &str = "inbound_leave";
    /// `POST /v1/agents/me/state`.
    pub const STATE: &str = "agent_state";
    /// `POST /v1/offers/{id}/accept`.
    pub const ACCEPT: &str = "accept";
    /// `POST /v1/conversations/{id}/messages`.
    pub const MESSAGE: &str = "agent_message";
    /// `POST /v1/conversations/{id}/transfer`.
    pub const TRANSFER: &str = "transfer";
    /// `POST /v1/conversations/{id}/conference`.
    pub const CONFERENCE: &str = "conference";
    /// `POST /v1/conversations/{id}/conference/leave`.
    pub const CONFERENCE_LEAVE: &str = "conference_leave";
    /// `POST /v1/conversations/{id}/conference/end`.
    pub const CONFERENCE_END: &str = "conference_end";
    /// `POST /v1/conversations/{id}/end`.
    pub const END: &str = "end";
    /// `POST /v1/conversations/{id}/wrap-up`.
    pub const WRAP_UP: &str = "wrap_up";
}

/// The WebSocket frame of an agent's request to `path` with `body` (without
/// its `request_id`), or `None` for a route the agent's socket does not
/// take (customer traffic, which is not the agent's).
pub fn socket_command(name: &str, path: &str, body: Option<serde_json::Value>) -> Option<serde_json::Value> {
    let command = match name {
        route::STATE => "set_state",
        route::ACCEPT => "accept",
        route::MESSAGE => "send_message",
        route::TRANSFER => "transfer",
        route::CONFERENCE => "request_conference",
        route::CONFERENCE_LEAVE => "leave_conference",
        route::CONFERENCE_END => "end_conference",
        route::END => "end",
        route::WRAP_UP => "wrap_up",
        _ => return None,
    };
    let mut frame = match body {
        Some(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    frame.insert("command".into(), command.into());
    // `/offers/{offer_id}/accept`, `/conversations/{conversation_id}/...`
    let mut segments = path.split('/').skip(1);
    match (segments.next(), segments.next()) {
        (Some("offers"), Some(offer_id)) => {
            frame.insert("offer_id".into(), offer_id.into());
        }
        (Some("conversations"), Some(conversation_id)) => {
            frame.insert("conversation_id".into(), conversation_id.into());
        }
        _ => {}
    }
    Some(serde_json::Value::Object(frame))
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

/// A client of one engine. Cheap to clone; single-threaded.
#[derive(Clone)]
pub struct Api {
    pool: Rc<Pool>,
    ws_client: awc::Client,
    base: Rc<str>,
    timeout: Duration,
}

impl Api {
    /// A client of `target` with at most `connections` HTTP connections
    /// (kept alive and reused) and the given request timeout. WebSockets get
    /// connections of their own, outside that limit.
    pub fn new(target: &Target, connections: usize, timeout: Duration) -> Self {
        Self::with_idle_limit(target, connections, timeout, IDLE_LIMIT)
    }

    /// As [`Api::new`], letting go of a connection idle longer than `idle_limit`.
    fn with_idle_limit(target: &Target, connections: usize, timeout: Duration, idle_limit: Duration) -> Self {
        let ws_client = awc::Client::builder()
            .connector(awc::Connector::new().limit(0).timeout(Duration::from_secs(5)))
            .timeout(timeout)
            .disable_redirects()
            .finish();
        let host = HeaderValue::from_str(&target.addr.to_string()).expect("an address is a valid Host");
        let pool = Pool {
            addr: target.addr,
            host,
            slots: tokio::sync::Semaphore::new(connections.max(1)),
            idle: RefCell::new(Vec::new()),
            idle_limit,
        };
        Self { pool: Rc::new(pool), ws_client, base: Rc::from(format!("{}/v1", target.origin())), timeout }
    }

    /// POSTs `body` (JSON, or nothing) to `/v1{path}` with `token`, and
    /// returns the events of the 200 reply. The timeout covers the wait for
    /// a connection as well as the exchange.
    pub async fn post<B: Serialize>(
        &self,
        path: &str,
        token: &str,
        body: Option<&B>,
    ) -> Result<Vec<Envelope>, ApiError> {
        let body = match body {
            Some(body) => Bytes::from(serde_json::to_vec(body).expect("a request body serializes")),
            None => Bytes::new(),
        };
        let mut request = Request::post(format!("/v1{path}"))
            .header(HOST, self.pool.host.clone())
            .header(AUTHORIZATION, format!("Bearer {token}"));
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request =
            request.body(Full::new(body)).map_err(|e| ApiError::Transport(format!("request to {path}: {e}")))?;
        let (status, bytes) =
            tokio::time::timeout(self.timeout, self.pool.exchange(request)).await.map_err(|_| ApiError::Timeout)??;
        if status == StatusCode::OK {
            let reply: Reply = serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode(e.to_string()))?;
            return Ok(reply.events);
        }
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
            error: "unknown".into(),
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        });
        Err(ApiError::Status { status: status.as_u16(), kind: body.error, message: body.message })
    }

    /// Opens agent `token`'s WebSocket (`/v1/agents/me/ws`), resuming
    /// after domain sequence `after` when given.
    pub async fn agent_socket(&self, token: &str, after: Option<u64>) -> Result<AgentSocket, ApiError> {
        let mut url = format!("{}/agents/me/ws", self.base);
        if let Some(after) = after {
            url.push_str(&format!("?after={after}"));
        }
        let (_response, framed) =
            self.ws_client.ws(url).bearer_auth(token).max_frame_size(MAX_BODY).connect().await.map_err(
                |e| match e {
                    awc::error::WsClientError::InvalidResponseStatus(status) => ApiError::Status {
                        status: status.as_u16(),
                        kind: "ws_refused".into(),
                        message: format!("the WebSocket upgrade was answered {status}"),
                    },
                    other => ApiError::Transport(other.to_string()),
                },
            )?;
        Ok(AgentSocket { framed })
    }
}

/// An open agent WebSocket.
pub struct AgentSocket {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
}

impl AgentSocket {
    /// The next text frame's payload; answers pings. `None` once closed.
    pub async fn next_text(&mut self) -> Option<Result<bytes::Bytes, ApiError>> {
        use futures_util::{SinkExt, StreamExt};
        loop {
            match self.framed.next().await? {
                Ok(awc::ws::Frame::Text(text)) => return Some(Ok(text)),
                Ok(awc::ws::Frame::Ping(payload)) => {
                    if let Err(e) = self.framed.send(awc::ws::Message::Pong(payload)).await {
                        return Some(Err(ApiError::Transport(e.to_string())));
                    }
                }
                Ok(awc::ws::Frame::Close(_)) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(ApiError::Transport(e.to_string()))),
            }
        }
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: String) -> Result<(), ApiError> {
        use futures_util::SinkExt;
        self.framed.send(awc::ws::Message::Text(text.into())).await.map_err(|e| ApiError::Transport(e.to_string()))
    }

    /// Closes the socket politely.
    pub async fn close(mut self) {
        use futures_util::SinkExt;
        let _ = self.framed.send(awc::ws::Message::Close(None)).await;
    }
}

/// Keep-alive HTTP/1.1 connections to the engine, at most as many in use as
/// it has slots; each connection's task runs on this thread. A real agent
/// desktop has a connection of its own, so the pool is wide (512 by default)
/// and a request waits for a free slot, in arrival order, only past that.
struct Pool {
    addr: SocketAddr,
    host: HeaderValue,
    slots: tokio::sync::Semaphore,
    /// Idle connections and when each was last answered, the latest last.
    idle: RefCell<Vec<(SendRequest<Full<Bytes>>, Instant)>>,
    idle_limit: Duration,
}

/// How long a connection may wait in the pool and still be reused: less
/// than actix-web's keep-alive (5 s, the engine's), after which the engine
/// closes it. A request sent on a connection the engine is closing at that
/// moment crosses the close and fails ("connection closed before message
/// completed"), and is not sent twice; so a connection nearly that old is
/// let go instead, as clients of servers with keep-alive timeouts do.
const IDLE_LIMIT: Duration = Duration::from_secs(4);

impl Pool {
    /// Sends `request` on an idle connection (or a new one) and reads the
    /// whole reply. Dropped part-way (the caller's timeout), it drops the
    /// connection with it, so none goes back to the pool mid-exchange.
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), ApiError> {
        let _slot = self.slots.acquire().await.expect("the pool's semaphore is never closed");
        let mut connection = match self.checkout().await {
            Some(idle) => idle,
            None => self.connect().await?,
        };
        // Sent right after the connection was found ready, with no await
        // between in this single-threaded runtime: if the engine closes it
        // now, the request may have gone out, and is not sent twice.
        let response = connection.send_request(request).await.map_err(|e| ApiError::Transport(e.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| ApiError::Transport(format!("reading the reply: {e}")))?
            .to_bytes();
        self.idle.borrow_mut().push((connection, Instant::now()));
        Ok((status, body))
    }

    /// An idle connection that is still open and ready for a request; one
    /// the engine closed while it was idle (its keep-alive timeout) is
    /// dropped here, and so are all idle longer than the pool's limit.
    async fn checkout(&self) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let (mut connection, since) = self.idle.borrow_mut().pop()?;
            if since.elapsed() > self.idle_limit {
                // The rest were answered earlier still.
                self.idle.borrow_mut().clear();
                return None;
            }
            // Ready once its task has read the previous reply to the end.
            if connection.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    /// A new connection to the engine, its task spawned on this thread.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ApiError> {
        let failed = |e: &dyn std::fmt::Display| ApiError::Transport(format!("connecting to {}: {e}", self.addr));
        let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| failed(&e))?;
        stream.set_nodelay(true).map_err(|e| failed(&e))?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(&e))?;
        // Its failures reach the request in flight on it, which reports them.
        actix_rt::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
        assert_eq!((t.origin().as_str(), t.port(), t.addr), ("http://127.0.0.1:8080", 8080, addr));
        assert_eq!(Target::parse("http://127.0.0.1:8080/v1/").unwrap().origin(), "http://127.0.0.1:8080");
        assert_eq!(Target::parse("http://localhost:9").unwrap().origin(), "http://127.0.0.1:9");
        assert_eq!(Target::parse("http://127.3.4.5:1").unwrap().port(), 1);
        let v6 = Target::parse("http://[::1]:7").unwrap();
        assert!(v6.is_v6());
        assert_eq!((v6.origin().as_str(), v6.addr), ("http://[::1]:7", SocketAddr::from((Ipv6Addr::LOCALHOST, 7))));
        for far in ["http://10.0.0.1:80", "http://192.168.1.2:80", "http://example.com:80", "http://0.0.0.0:80"] {
            assert!(matches!(Target::parse(far), Err(TargetError::NotLoopback(_))), "{far}");
        }
        for bad in [
            "127.0.0.1:80",
            "https://127.0.0.1:80",
            "http://127.0.0.1",
            "http://127.0.0.1:80/x",
            "http://u@127.0.0.1:1",
            "http://::1:8080",
        ] {
            assert!(matches!(Target::parse(bad), Err(TargetError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn an_agents_requests_have_socket_frames_and_customer_traffic_has_none() {
        use serde_json::json;
        let accept = socket_command(route::ACCEPT, "/offers/o-7/accept", None);
        assert_eq!(accept, Some(json!({ "command": "accept", "offer_id": "o-7" })));
        let wrap_up = socket_command(route::WRAP_UP, "/conversations/c-1/wrap-up", Some(json!({ "reasons": ["x"] })));
        assert_eq!(wrap_up, Some(json!({ "command": "wrap_up", "conversation_id": "c-1", "reasons": ["x"] })));
        let state = socket_command(route::STATE, "/agents/me/state", Some(json!({ "status": "available" })));
        assert_eq!(state, Some(json!({ "command": "set_state", "status": "available" })));
        let leave = socket_command(route::CONFERENCE_LEAVE, "/conversations/c-2/conference/leave", None);
        assert_eq!(leave, Some(json!({ "command": "leave_conference", "conversation_id": "c-2" })));
        assert_eq!(socket_command(route::ARRIVAL, "/inbound/messages", Some(json!({}))), None);
    }

    /// What a [`test_server`] saw: each request's head and body, and which
    /// connection (counted from 0 in the order accepted) it came on.
    type Received = Rc<RefCell<Vec<(usize, String)>>>;

    /// A server on 127.0.0.1 that answers requests with `replies` in turn
    /// (status line, JSON body), and past the last holds its connections
    /// without answering. With `close_each`, it closes every connection
    /// after its first reply, as the engine closes a kept-alive connection
    /// left idle too long; without, it keeps each open for more.
    async fn test_server(replies: Vec<(&'static str, &'static str)>, close_each: bool) -> (Target, Received) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Received = Rc::new(RefCell::new(Vec::new()));
        let log = received.clone();
        let replies = Rc::new(RefCell::new(replies.into_iter()));
        actix_rt::spawn(async move {
            for connection in 0.. {
                let (mut stream, _) = listener.accept().await.unwrap();
                let (log, replies) = (log.clone(), replies.clone());
                actix_rt::spawn(async move {
                    loop {
                        let mut request = Vec::new();
                        let mut chunk = [0u8; 4096];
                        let complete = |r: &[u8]| {
                            let text = String::from_utf8_lossy(r);
                            let Some((head, rest)) = text.split_once("\r\n\r\n") else { return false };
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .map_or(0, |n| n.parse::<usize>().unwrap());
                            rest.len() >= length
                        };
                        while !complete(&request) {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return, // the client let go
                                Ok(n) => request.extend_from_slice(&chunk[..n]),
                            }
                        }
                        log.borrow_mut().push((connection, String::from_utf8(request).unwrap()));
                        let Some((status, body)) = replies.borrow_mut().next() else {
                            std::future::pending::<()>().await;
                            return;
                        };
                        let reply = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        stream.write_all(reply.as_bytes()).await.unwrap();
                        if close_each {
                            return;
                        }
                    }
                });
            }
        });
        (Target::parse(&format!("http://127.0.0.1:{port}")).unwrap(), received)
    }

    const EMPTY_REPLY: (&str, &str) = ("200 OK", r#"{"events":[]}"#);

    #[actix_rt::test]
    async fn a_connection_the_engine_closed_is_replaced_and_each_request_carries_its_token_and_body() {
        let conflict = ("409 Conflict", r#"{"error":"offer_not_open","message":"the offer timed out"}"#);
        let (target, received) = test_server(vec![EMPTY_REPLY, conflict], true).await;
        let api = Api::new(&target, 4, Duration::from_secs(5));
        let events = api.post::<()>("/offers/o-1/accept", "agent-token", None).await.unwrap();
        assert!(events.is_empty());
        // The server has closed the connection it answered on; let its task see that.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = api.post("/conversations/c-1/end", "other-token", Some(&serde_json::json!({"note": 1}))).await;
        match refused {
            Err(ApiError::Status { status: 409, kind, message }) => {
                assert_eq!((kind.as_str(), message.as_str()), ("offer_not_open", "the offer timed out"));
            }
            other => panic!("expected the engine's 409, got {other:?}"),
        }
        let received = received.borrow();
        assert_eq!(received.iter().map(|(connection, _)| *connection).collect::<Vec<_>>(), [0, 1]);
        let (first, second) = (&received[0].1, &received[1].1);
        assert!(first.starts_with("POST /v1/offers/o-1/accept HTTP/1.1\r\n"), "{first}");
        assert!(first.contains("authorization: Bearer agent-token\r\n"), "{first}");
        assert!(first.contains(&format!("host: 127.0.0.1:{}\r\n", target.port())), "{first}");
        assert!(!first.contains("content-type"), "no body, no content type: {first}");
        assert!(second.contains("authorization: Bearer other-token\r\n"), "{second}");
        assert!(second.contains("content-type: application/json\r\n"), "{second}");
        assert!(second.ends_with("\r\n\r\n{\"note\":1}"), "{second}");
    }

    #[actix_rt::test]
    async fn a_kept_alive_connection_serves_request_after_request() {
        let (target, received) = test_server(vec![EMPTY_REPLY; 3], false).await;
        let api = Api::new(&target, 4, Duration::from_secs(5));
        for _ in 0..3 {
            api.post::<()>("/agents/me/state", "t", None).await.unwrap();
        }
        let connections: Vec<usize> = received.borrow().iter().map(|(connection, _)| *connection).collect();
        assert_eq!(connections, [0, 0, 0]);
    }

    #[actix_rt::test]
    async fn a_connection_idle_past_the_limit_is_let_go_before_the_engine_closes_it() {
        // A server that keeps its connections open; the pool lets go after 100 ms idle.
        let (target, received) = test_server(vec![EMPTY_REPLY; 4], false).await;
        let api = Api::with_idle_limit(&target, 4, Duration::from_secs(5), Duration::from_millis(100));
        api.post::<()>("/agents/me/state", "t", None).await.unwrap();
        api.post::<()>("/agents/me/state", "t", None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        api.post::<()>("/agents/me/state", "t", None).await.unwrap();
        api.post::<()>("/agents/me/state", "t", None).await.unwrap();
        let connections: Vec<usize> = received.borrow().iter().map(|(connection, _)| *connection).collect();
        assert_eq!(connections, [0, 0, 1, 1], "reused within the limit, replaced past it");
    }

    #[actix_rt::test]
    async fn a_request_times_out_waiting_for_a_connection_and_one_that_timed_out_is_not_reused() {
        // Answers nothing: every request waits until its timeout.
        let (target, received) = test_server(vec![], false).await;
        let api = Api::new(&target, 1, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let (first, second) =
            tokio::join!(api.post::<()>("/agents/me/state", "a", None), api.post::<()>("/agents/me/state", "b", None));
        assert!(matches!(first, Err(ApiError::Timeout)), "{first:?}");
        // The second waited for the only connection slot, within its own timeout.
        assert!(matches!(second, Err(ApiError::Timeout)), "{second:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(received.borrow().len(), 1, "only one request had a slot");
        let third = api.post::<()>("/agents/me/state", "c", None).await;
        assert!(matches!(third, Err(ApiError::Timeout)), "{third:?}");
        let connections: Vec<usize> = received.borrow().iter().map(|(connection, _)| *connection).collect();
        // (The second may have opened a connection before its time ran out.)
        assert_eq!(connections.len(), 2, "{connections:?}");
        assert_ne!(connections[1], 0, "the connection of a request that timed out is dropped, not reused");
    }

    #[test]
    fn error_kinds_name_the_status_and_the_apis_kind() {
        let e = ApiError::Status { status: 409, kind: "offer_not_open".into(), message: String::new() };
        assert_eq!(e.kind(), "http_409_offer_not_open");
        assert_eq!(e.api_kind(), Some("offer_not_open"));
        assert_eq!(ApiError::Timeout.kind(), "timeout");
        let refused = ApiError::Refused { kind: "offer_not_open".into(), message: String::new() };
        assert_eq!((refused.kind().as_str(), refused.api_kind()), ("ws_offer_not_open", Some("offer_not_open")));
        assert_eq!(ApiError::Transport("reset".into()).api_kind(), None);
    }
}
