//! What an agent can ask for, in one place: the REST routes and the
//! WebSocket both turn their input into an [`AgentRequest`], and only this
//! module turns an `AgentRequest` into a command.

use std::collections::BTreeMap;

use serde::Deserialize;
use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::*;

use super::ApiError;

/// How an agent's email is addressed. The domain fills in and checks the
/// rest (a reply's To and Subject are fixed; reply-all pre-fills Cc).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    /// `reply` (default), `reply_all` or `forward`.
    #[serde(default)]
    pub mode: String,
    /// Recipients (a forward's are required; a reply's are fixed).
    #[serde(default)]
    pub to: Vec<String>,
    /// Copies.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Subject (fixed for replies).
    #[serde(default)]
    pub subject: String,
}

impl EmailRequest {
    fn headers(self) -> Result<EmailHeaders, ApiError> {
        let mode = match self.mode.as_str() {
            "" | "reply" => EmailMode::Reply,
            "reply_all" => EmailMode::ReplyAll,
            "forward" => EmailMode::Forward,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown email mode {other:?}: use reply, reply_all or forward"
                )))
            }
        };
        Ok(EmailHeaders { to: self.to, cc: self.cc, subject: self.subject, mode: mode as i32, ..Default::default() })
    }
}

/// A file sent with a message: the bytes live at `url`, outside the log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRequest {
    /// The file's name.
    pub name: String,
    /// Where its bytes are.
    pub url: String,
    /// Its media type.
    #[serde(default)]
    pub content_type: String,
    /// Its size.
    #[serde(default)]
    pub size_bytes: u64,
    /// An image shown inline in an email's body (email only).
    #[serde(default)]
    pub inline: bool,
}

impl From<AttachmentRequest> for Attachment {
    fn from(a: AttachmentRequest) -> Attachment {
        Attachment {
            name: a.name,
            content_type: a.content_type,
            size_bytes: a.size_bytes,
            url: a.url,
            inline: a.inline,
        }
    }
}

/// One request of an agent, as the WebSocket receives it:
/// `{"command": "accept", "offer_id": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentRequest {
    /// Available, idle (with a reason) or logged out; also leaves RONA.
    SetState {
        /// `available`, `idle` or `logged_out`.
        status: String,
        /// Required with `idle`.
        #[serde(default)]
        idle_reason: String,
    },
    /// Accept an offer.
    Accept {
        /// The offer.
        offer_id: String,
    },
    /// Send a message to the customer.
    SendMessage {
        /// The conversation.
        conversation_id: String,
        /// The agent's id for the message: a retry with the same id is sent once.
        message_id: String,
        /// The text, within the channel's limit; may be left out to send
        /// the template rendered.
        #[serde(default)]
        text: String,
        /// The template it came from, if any: with no text the engine
        /// renders it; a locked one is sent only as rendered.
        #[serde(default)]
        template_id: String,
        /// The template's parameters the agent fills in, by name.
        #[serde(default)]
        template_parameters: BTreeMap<String, String>,
        /// For email: reply, reply all or forward, and the editable headers.
        #[serde(default)]
        email: Option<EmailRequest>,
        /// Files sent with it.
        #[serde(default)]
        attachments: Vec<AttachmentRequest>,
    },
    /// Transfer to a queue or an agent.
    Transfer {
        /// The conversation.
        conversation_id: String,
        /// A target queue.
        queue_id: Option<String>,
        /// Or a target agent.
        agent_id: Option<String>,
    },
    /// Invite another agent, named or (WhatsApp) picked from a queue.
    RequestConference {
        /// The conversation.
        conversation_id: String,
        /// The agent invited.
        agent_id: Option<String>,
        /// Or the queue whose strategy picks the invitee.
        queue_id: Option<String>,
    },
    /// Leave a conference one was invited to.
    LeaveConference {
        /// The conversation.
        conversation_id: String,
    },
    /// End the conference one owns.
    EndConference {
        /// The conversation.
        conversation_id: String,
    },
    /// End the conversation one owns.
    End {
        /// The conversation.
        conversation_id: String,
    },
    /// Submit wrap-up reasons.
    WrapUp {
        /// The conversation.
        conversation_id: String,
        /// One or more configured reasons.
        reasons: Vec<String>,
    },
    /// Start a configured workflow.
    TriggerWorkflow {
        /// The conversation.
        conversation_id: String,
        /// The workflow.
        workflow_id: String,
        /// Its parameters.
        #[serde(default)]
        parameters: BTreeMap<String, String>,
    },
}

impl AgentRequest {
    /// The command this request is for `agent_id`; bad input is named.
    pub fn into_command(self, agent_id: &str) -> Result<C, ApiError> {
        let agent_id = agent_id.to_owned();
        Ok(match self {
            AgentRequest::SetState { status, idle_reason } => {
                let status = match status.as_str() {
                    "available" => AgentStatus::Available,
                    "idle" => AgentStatus::Idle,
                    "logged_out" => AgentStatus::LoggedOut,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "unknown status {other:?}: use available, idle (with idle_reason) or logged_out"
                        )))
                    }
                };
                C::SetAgentState(SetAgentState { agent_id, status: status as i32, idle_reason })
            }
            AgentRequest::Accept { offer_id } => C::AcceptOffer(AcceptOffer { agent_id, offer_id }),
            AgentRequest::SendMessage {
                conversation_id,
                message_id,
                text,
                template_id,
                template_parameters,
                email,
                attachments,
            } => C::SendAgentMessage(SendAgentMessage {
                agent_id,
                conversation_id,
                message_id,
                text,
                attachments: attachments.into_iter().map(Attachment::from).collect(),
                template_id,
                email: email.map(EmailRequest::headers).transpose()?,
                template_parameters,
            }),
            AgentRequest::Transfer { conversation_id, queue_id, agent_id: target } => {
                let target = match (queue_id, target) {
                    (Some(queue), None) => transfer::Target::ToQueueId(queue),
                    (None, Some(agent)) => transfer::Target::ToAgentId(agent),
                    _ => return Err(ApiError::BadRequest("give exactly one of queue_id or agent_id".into())),
                };
                C::Transfer(Transfer { agent_id, conversation_id, target: Some(target) })
            }
            AgentRequest::RequestConference { conversation_id, agent_id: invitee, queue_id } => {
                let (invitee_agent_id, invitee_queue_id) = match (invitee, queue_id) {
                    (Some(agent), None) => (agent, String::new()),
                    (None, Some(queue)) => (String::new(), queue),
                    _ => return Err(ApiError::BadRequest("give exactly one of agent_id or queue_id".into())),
                };
                C::RequestConference(RequestConference {
                    agent_id,
                    conversation_id,
                    invitee_agent_id,
                    invitee_queue_id,
                })
            }
            AgentRequest::LeaveConference { conversation_id } => {
                C::LeaveConference(LeaveConference { agent_id, conversation_id })
            }
            AgentRequest::EndConference { conversation_id } => {
                C::EndConference(EndConference { agent_id, conversation_id })
            }
            AgentRequest::End { conversation_id } => C::EndConversation(EndConversation { agent_id, conversation_id }),
            AgentRequest::WrapUp { conversation_id, reasons } => {
                C::SubmitWrapUp(SubmitWrapUp { agent_id, conversation_id, reasons })
            }
            AgentRequest::TriggerWorkflow { conversation_id, workflow_id, parameters } => {
                C::TriggerWorkflow(TriggerWorkflow { agent_id, conversation_id, workflow_id, parameters })
            }
        })
    }
}
