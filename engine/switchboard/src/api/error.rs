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

    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Rejected(rejection) => rejection_kind(rejection).1,
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Gone(_) => "gone",
            ApiError::Unavailable(_) => "unavailable",
        }
    }
}

/// The status and machine-readable kind of a rejection. Unknown ids are 404
/// (another tenant's objects are unknown too, never 403: their existence is
/// not told), what the state forbids now is 409, what can never be done is 422.
fn rejection_kind(rejection: &Rejection) -> (StatusCode, &'static str) {
    use Rejection as R;
    match rejection {
        R::UnknownQueue(_) | R::UnknownAgent(_) | R::UnknownConversation(_) | R::UnknownMessage { .. } => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        R::OfferNotOpen(_) => (StatusCode::CONFLICT, "offer_not_open"),
        R::NotYourOffer { .. } | R::NotOwner { .. } | R::NotParticipant { .. } => (StatusCode::FORBIDDEN, "not_yours"),
        R::ConversationEnded(_) | R::ConversationNotActive(_) => (StatusCode::CONFLICT, "conversation_state"),
        R::TargetUnavailable { .. } => (StatusCode::CONFLICT, "target_unavailable"),
        R::ConferenceInProgress(_) | R::NoConference(_) => (StatusCode::CONFLICT, "conference_state"),
        R::StateChangeRefused { .. } => (StatusCode::CONFLICT, "state_change_refused"),
        R::NoWrapUpPending { .. } => (StatusCode::CONFLICT, "no_wrap_up_pending"),
        R::OfferNotDue { .. } | R::TimeWentBack { .. } => (StatusCode::CONFLICT, "too_early"),
        R::MessageTooLong { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "message_too_long"),
        R::NotAllowedOnChannel { .. } | R::ChannelMismatch { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "not_allowed_on_channel")
        }
        R::UnknownIdleReason(_) | R::UnknownWrapUpReason(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_reason"),
        R::Invalid(_) | R::WrongDomain { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        R::Configuration(_) => (StatusCode::CONFLICT, "configuration"),
        R::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Rejected(rejection) => rejection_kind(rejection).0,
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
