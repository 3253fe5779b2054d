//! The email reply rules of SPEC.md: what To, Cc, Subject and the threading
//! headers of an agent's mail must be, given the thread so far.
//!
//! - Reply: To and Subject filled in and fixed.
//! - Reply all: To and Subject filled in and fixed; Cc pre-filled with the
//!   original Cc, and editable.
//! - Forward: Subject filled in; To (required) and Cc editable.
//! - Threading follows the headers: In-Reply-To is the latest customer
//!   mail's Message-ID, References the thread's Message-IDs in order.

use serde::{Deserialize, Serialize};
use switchboard_proto::v1::{EmailHeaders, EmailMode};

use crate::rejection::Rejection;

/// What the thread of an email conversation says so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailThread {
    /// Where replies go: the sender of the latest customer mail.
    pub customer_address: String,
    /// The thread's subject, without reply or forward prefixes.
    pub subject: String,
    /// Cc of the latest customer mail, for reply-all.
    pub last_cc: Vec<String>,
    /// Message-ID of the latest customer mail.
    pub last_message_id: String,
    /// Every Message-ID of the thread, oldest first.
    pub references: Vec<String>,
}

impl EmailThread {
    /// Takes in a mail of the thread (from the customer, or sent by an agent).
    pub fn record(&mut self, headers: &EmailHeaders, from_customer: bool) {
        if from_customer {
            if !headers.from.is_empty() {
                self.customer_address.clone_from(&headers.from);
            }
            if self.subject.is_empty() {
                self.subject = bare_subject(&headers.subject).to_owned();
            }
            self.last_cc.clone_from(&headers.cc);
            if !headers.message_id.is_empty() {
                self.last_message_id.clone_from(&headers.message_id);
            }
        }
        if !headers.message_id.is_empty() && !self.references.contains(&headers.message_id) {
            self.references.push(headers.message_id.clone());
        }
    }

    /// The headers an agent's mail goes out with, or why the requested ones
    /// break a rule. `message_id` is the agent message's own Message-ID.
    pub fn compose(&self, requested: Option<&EmailHeaders>, message_id: &str) -> Result<EmailHeaders, Rejection> {
        let requested = requested.cloned().unwrap_or_default();
        let mode = match requested.mode() {
            EmailMode::Unspecified => EmailMode::Reply,
            mode => mode,
        };
        let fixed = |what: &str, given: &str, fixed: &str| -> Result<(), Rejection> {
            if given.is_empty() || given == fixed {
                Ok(())
            } else {
                Err(Rejection::Invalid(format!("{what} of a reply is fixed to {fixed:?}; it cannot be {given:?}")))
            }
        };
        let (to, subject, cc) = match mode {
            EmailMode::Reply | EmailMode::ReplyAll | EmailMode::Unspecified => {
                if self.customer_address.is_empty() {
                    return Err(Rejection::Invalid("the customer's address is unknown: forward instead".into()));
                }
                let reply_subject = format!("Re: {}", self.subject);
                let given_to = requested.to.join(", ");
                fixed("To", &given_to, &self.customer_address)?;
                fixed("Subject", &requested.subject, &reply_subject)?;
                let cc = if mode == EmailMode::ReplyAll && requested.cc.is_empty() {
                    self.last_cc.clone()
                } else {
                    requested.cc
                };
                (vec![self.customer_address.clone()], reply_subject, cc)
            }
            EmailMode::Forward => {
                if requested.to.iter().all(String::is_empty) {
                    return Err(Rejection::Invalid("a forward needs at least one To address".into()));
                }
                let subject =
                    if requested.subject.is_empty() { format!("Fw: {}", self.subject) } else { requested.subject };
                (requested.to, subject, requested.cc)
            }
        };
        Ok(EmailHeaders {
            message_id: message_id.to_owned(),
            in_reply_to: self.last_message_id.clone(),
            references: self.references.clone(),
            from: String::new(),
            to,
            cc,
            subject,
            mode: mode as i32,
        })
    }
}

/// The subject without any leading "Re:" / "Fw:" / "Fwd:" prefixes.
fn bare_subject(subject: &str) -> &str {
    let mut subject = subject.trim();
    loop {
        let lower = subject.to_ascii_lowercase();
        let Some(prefix) = ["re:", "fw:", "fwd:"].into_iter().find(|p| lower.starts_with(p)) else {
            return subject;
        };
        subject = subject[prefix.len()..].trim_start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread() -> EmailThread {
        let mut thread = EmailThread::default();
        let first = EmailHeaders {
            message_id: "<m1@kim>".into(),
            from: "kim@example.com".into(),
            to: vec!["help@acme".into()],
            cc: vec!["boss@example.com".into()],
            subject: "Re: Order 42".into(),
            ..Default::default()
        };
        thread.record(&first, true);
        let second = EmailHeaders { message_id: "<m2@kim>".into(), in_reply_to: "<m1@kim>".into(), ..first };
        thread.record(&second, true);
        thread
    }

    #[test]
    fn a_reply_goes_to_the_customer_with_a_fixed_subject_and_threading_headers() {
        let reply = thread().compose(None, "<a1@acme>").unwrap();
        assert_eq!(reply.to, ["kim@example.com"]);
        assert_eq!(reply.subject, "Re: Order 42");
        assert!(reply.cc.is_empty());
        assert_eq!(reply.in_reply_to, "<m2@kim>");
        assert_eq!(reply.references, ["<m1@kim>", "<m2@kim>"]);
        assert_eq!(reply.mode(), EmailMode::Reply);
        let changed_to = EmailHeaders { to: vec!["other@example.com".into()], ..Default::default() };
        let refused = thread().compose(Some(&changed_to), "<a1@acme>").unwrap_err();
        assert!(refused.to_string().contains("To of a reply is fixed"), "{refused}");
        let changed_subject = EmailHeaders { subject: "Hello".into(), ..Default::default() };
        assert!(thread().compose(Some(&changed_subject), "<a1@acme>").is_err());
    }

    #[test]
    fn reply_all_pre_fills_the_original_cc_which_stays_editable() {
        let all = EmailHeaders { mode: EmailMode::ReplyAll as i32, ..Default::default() };
        assert_eq!(thread().compose(Some(&all), "x").unwrap().cc, ["boss@example.com"]);
        let edited = EmailHeaders { cc: vec!["team@acme".into()], ..all };
        let reply = thread().compose(Some(&edited), "x").unwrap();
        assert_eq!((reply.to, reply.cc), (vec!["kim@example.com".to_string()], vec!["team@acme".to_string()]));
    }

    #[test]
    fn a_forward_fills_the_subject_and_needs_a_recipient() {
        let forward = EmailHeaders { mode: EmailMode::Forward as i32, ..Default::default() };
        assert!(thread().compose(Some(&forward), "x").is_err());
        let to_billing = EmailHeaders { to: vec!["billing@acme".into()], ..forward };
        let sent = thread().compose(Some(&to_billing), "x").unwrap();
        assert_eq!((sent.to, sent.subject.as_str()), (vec!["billing@acme".to_string()], "Fw: Order 42"));
    }
}
