//! What each channel allows: compose limits, transfer targets, conference,
//! receipts. One table, so a rule is never written twice.

use switchboard_proto::v1::Channel;

/// The rules a channel imposes on a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelPolicy {
    /// Longest agent message in characters (Unicode scalar values); `None`
    /// means no limit.
    pub compose_limit: Option<usize>,
    /// Whether the conversation may be transferred to a named agent (email
    /// goes to queues only).
    pub transfer_to_agent: bool,
    /// Whether another agent may be invited into the conversation.
    pub conference: bool,
    /// Whether the invitee may be picked from a queue instead of named
    /// (WhatsApp, as in the reference product).
    pub conference_from_queue: bool,
    /// Whether the channel reports delivery of agent messages.
    pub delivery_receipts: bool,
    /// Whether the channel reports that the customer read a message.
    pub read_receipts: bool,
}

/// The policy of `channel`, or `None` for an unspecified channel.
pub fn policy(channel: Channel) -> Option<ChannelPolicy> {
    let chat = ChannelPolicy {
        compose_limit: Some(1000),
        transfer_to_agent: true,
        conference: true,
        conference_from_queue: false,
        delivery_receipts: true,
        read_receipts: false,
    };
    match channel {
        Channel::Unspecified => None,
        Channel::Messenger | Channel::Sms => Some(chat),
        Channel::Webchat => Some(ChannelPolicy { delivery_receipts: false, ..chat }),
        Channel::Email => Some(ChannelPolicy {
            compose_limit: None,
            transfer_to_agent: false,
            conference: false,
            conference_from_queue: false,
            delivery_receipts: true,
            read_receipts: false,
        }),
        Channel::Whatsapp => {
            Some(ChannelPolicy { compose_limit: Some(4096), read_receipts: true, conference_from_queue: true, ..chat })
        }
    }
}

/// A short lowercase name for messages and reports (`"whatsapp"`).
pub fn name(channel: Channel) -> &'static str {
    match channel {
        Channel::Unspecified => "unspecified",
        Channel::Messenger => "messenger",
        Channel::Sms => "sms",
        Channel::Webchat => "webchat",
        Channel::Email => "email",
        Channel::Whatsapp => "whatsapp",
    }
}

/// The channel with the given [`name`], for configuration files and CLIs.
pub fn from_name(name: &str) -> Option<Channel> {
    ALL.into_iter().find(|c| self::name(*c) == name)
}

/// Every real channel, in schema order.
pub const ALL: [Channel; 5] = [Channel::Messenger, Channel::Sms, Channel::Webchat, Channel::Email, Channel::Whatsapp];

/// The length that counts against a compose limit: characters, not bytes,
/// so that a limit means the same in every script.
pub fn message_length(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_channels_allow_1000_characters_and_whatsapp_4096() {
        for channel in [Channel::Messenger, Channel::Sms, Channel::Webchat] {
            assert_eq!(policy(channel).unwrap().compose_limit, Some(1000));
        }
        assert_eq!(policy(Channel::Whatsapp).unwrap().compose_limit, Some(4096));
        assert_eq!(policy(Channel::Email).unwrap().compose_limit, None);
    }

    #[test]
    fn email_goes_to_queues_only_and_never_into_a_conference() {
        let email = policy(Channel::Email).unwrap();
        assert!(!email.transfer_to_agent);
        assert!(!email.conference);
        for channel in [Channel::Messenger, Channel::Sms, Channel::Webchat, Channel::Whatsapp] {
            let p = policy(channel).unwrap();
            assert!(p.transfer_to_agent && p.conference, "{channel:?}");
        }
    }

    #[test]
    fn webchat_has_no_delivery_receipts_and_only_whatsapp_has_read_receipts() {
        assert!(!policy(Channel::Webchat).unwrap().delivery_receipts);
        for channel in ALL {
            let p = policy(channel).unwrap();
            assert_eq!(p.read_receipts, channel == Channel::Whatsapp);
            if channel != Channel::Webchat {
                assert!(p.delivery_receipts);
            }
        }
    }

    #[test]
    fn names_round_trip_and_lengths_count_characters() {
        for channel in ALL {
            assert_eq!(from_name(name(channel)), Some(channel));
        }
        assert_eq!(from_name("fax"), None);
        assert_eq!(message_length("héllo"), 5);
        assert_eq!(policy(Channel::Unspecified), None);
    }
}
