//! The engine's API as the load generator calls it: JSON over a few
//! keep-alive HTTP/1.1 connections (one `awc` client with a connector
//! limit), bearer tokens, and the agent WebSocket.
//!
//! Only loopback targets are accepted: a load test sends traffic to a
//! server on this machine and nowhere else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::time::Duration;

use awc::http::StatusCode;
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

/// A validated target: `http://` + a loopback host + a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://HOST:PORT`, without a trailing slash.
    pub origin: String,
    /// The port, for finding the engine's process.
    pub port: u16,
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
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = match bare {
            "localhost" => true,
            _ => bare.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false),
        };
        if !loopback {
            return Err(TargetError::NotLoopback(host.to_owned()));
        }
        // Resolve "localhost" ourselves, so no resolver is ever asked.
        let host = if bare == "localhost" { Ipv4Addr::LOCALHOST.to_string() } else { host.to_owned() };
        Ok(Self { origin: format!("http://{host}:{port}"), port })
    }

    /// The IPv6 loopback check, for completeness of [`Target::parse`].
    pub fn is_v6(&self) -> bool {
        self.origin.contains(&Ipv6Addr::LOCALHOST.to_string())
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

/// A client of one engine. Cheap to clone; single-threaded (awc).
#[derive(Clone)]
pub struct Api {
    client: awc::Client,
    ws_client: awc::Client,
    base: Rc<str>,
}

impl Api {
    /// A client of `target` with at most `connections` HTTP connections
    /// (kept alive and reused) and the given request timeout. WebSockets get
    /// connections of their own, outside that limit.
    pub fn new(target: &Target, connections: usize, timeout: Duration) -> Self {
        let client = awc::Client::builder()
            .connector(awc::Connector::new().limit(connections.max(1)).timeout(Duration::from_secs(5)))
            .timeout(timeout)
            .disable_redirects()
            .finish();
        let ws_client = awc::Client::builder()
            .connector(awc::Connector::new().limit(0).timeout(Duration::from_secs(5)))
            .timeout(timeout)
            .disable_redirects()
            .finish();
        Self { client, ws_client, base: Rc::from(format!("{}/v1", target.origin)) }
    }

    /// POSTs `body` (JSON, or nothing) to `/v1{path}` with `token`, and
    /// returns the events of the 200 reply.
    pub async fn post<B: Serialize>(
        &self,
        path: &str,
        token: &str,
        body: Option<&B>,
    ) -> Result<Vec<Envelope>, ApiError> {
        let request = self.client.post(format!("{}{path}", self.base)).bearer_auth(token);
        let sent = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(|e| match e {
            awc::error::SendRequestError::Timeout => ApiError::Timeout,
            other => ApiError::Transport(other.to_string()),
        })?;
        let status = response.status();
        let bytes = response.body().limit(MAX_BODY).await.map_err(|e| ApiError::Transport(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(t, Target { origin: "http://127.0.0.1:8080".into(), port: 8080 });
        assert_eq!(Target::parse("http://127.0.0.1:8080/v1/").unwrap().origin, "http://127.0.0.1:8080");
        assert_eq!(Target::parse("http://localhost:9").unwrap().origin, "http://127.0.0.1:9");
        assert_eq!(Target::parse("http://127.3.4.5:1").unwrap().port, 1);
        assert!(Target::parse("http://[::1]:7").unwrap().is_v6());
        for far in ["http://10.0.0.1:80", "http://192.168.1.2:80", "http://example.com:80", "http://0.0.0.0:80"] {
            assert!(matches!(Target::parse(far), Err(TargetError::NotLoopback(_))), "{far}");
        }
        for bad in [
            "127.0.0.1:80",
            "https://127.0.0.1:80",
            "http://127.0.0.1",
            "http://127.0.0.1:80/x",
            "http://u@127.0.0.1:1",
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
