//! Errors at the API: every one is an HTTP status and a JSON body
//! `{"error": "<kind>", "message": "<what was wrong>"}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use switchboard_domain::Rejection;
use switchboard_live::SubmitError;

/// What the API answers when it cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or an unknown bearer token.
    #[error("missing or unknown bearer token: send `Authorization: Bearer <token>`")]
    Unauthorized,
    /// The caller may not do this (an agent acting as another, an agent on a supervisor's route).
    #[error("{0}")]
    Forbidden(String),
    /// A request the engine refused.
    #[error("{0}")]
    Rejected(Rejection),
    /// A request an engine in another process refused, as its log tells it.
    #[error("{message}")]
    Refused {
        /// [`Rejection::code`] of the refusal.
        code: String,
        /// What was wrong.
        message: String,
    },
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// Something named in the path that the caller's tenant does not have.
    #[error("{0}")]
    NotFound(String),
    /// What was asked for is no longer kept.
    #[error("{0}")]
    Gone(String),
    /// The engine cannot take commands right now.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    /// The JSON body of this error, also sent in WebSocket replies.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.kind(), "message": self.to_string() })
    }

    fn kind(&self) -> &str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Rejected(rejection) => rejection.code(),
            ApiError::Refused { code, .. } => code,
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Gone(_) => "gone",
            ApiError::Unavailable(_) => "unavailable",
        }
    }
}

/// The status of a refusal, from its code ([`Rejection::code`]). Unknown ids
/// are 404 (another tenant's objects are unknown too, never 403: their
/// existence is not told), what the state forbids now is 409, what can never
/// be done is 422.
fn refusal_status(code: &str) -> StatusCode {
    match code {
        "not_found" => StatusCode::NOT_FOUND,
        "not_yours" => StatusCode::FORBIDDEN,
        "message_too_long" | "not_allowed_on_channel" | "unknown_reason" | "invalid" | "template" => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Rejected(rejection) => refusal_status(rejection.code()),
            ApiError::Refused { code, .. } => refusal_status(code),
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.body())
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Rejected(rejection) => ApiError::Rejected(rejection),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}
