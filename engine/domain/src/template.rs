//! Message templates: their placeholders, and the text a template gives in
//! one conversation.
//!
//! A placeholder is `{{name}}` (spaces inside the braces allowed), where a
//! name is lowercase letters, digits and `_`. Written by hand: the whole
//! language is that one form, and a template engine crate would bring
//! loops, filters and escaping that a message to a customer must not have.

use std::collections::{BTreeMap, BTreeSet};

use switchboard_proto::v1::MessageTemplate;

use crate::rejection::Rejection;
use crate::state::DomainState;

/// The parameters the engine fills in from the conversation; every other
/// placeholder is the agent's to fill.
pub const SYSTEM_PARAMETERS: [&str; 5] =
    ["customer_name", "customer_email", "customer_number", "agent_name", "queue_name"];

/// One piece of a template's text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Parameter(&'a str),
}

/// Splits `text` into literal text and placeholders, or says what is wrong.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close =
            after.find("}}").ok_or_else(|| format!("a placeholder opened at {:?} is not closed", short(rest, open)))?;
        let name = after[..close].trim();
        let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(format!(
                "placeholder {{{{{}}}}} is not a name (lowercase letters, digits and _)",
                &after[..close]
            ));
        }
        pieces.push(Piece::Parameter(name));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// A few characters from `at`, to point at a problem in a long text.
fn short(text: &str, at: usize) -> String {
    text[at..].chars().take(20).collect()
}

/// The names of the placeholders of `text`, each once, in order of first
/// appearance; or what is wrong with the text.
pub fn placeholders(text: &str) -> Result<Vec<String>, String> {
    let mut seen = BTreeSet::new();
    Ok(pieces(text)?
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Parameter(name) if seen.insert(name) => Some(name.to_owned()),
            _ => None,
        })
        .collect())
}

/// The placeholders of a template: those the agent fills in, and those the
/// engine fills in from the conversation, each in order of appearance.
pub fn parameters(template: &MessageTemplate) -> (Vec<String>, Vec<String>) {
    placeholders(&template.text).unwrap_or_default().into_iter().partition(|name| !is_system(name))
}

fn is_system(name: &str) -> bool {
    SYSTEM_PARAMETERS.contains(&name)
}

/// Checks a template as configuration: an id, a text, and placeholders
/// that parse.
pub fn validate(template: &MessageTemplate) -> Result<(), String> {
    if template.template_id.is_empty() {
        return Err("a template needs an id".into());
    }
    if template.text.is_empty() {
        return Err(format!("template {} has no text", template.template_id));
    }
    pieces(&template.text).map(|_| ()).map_err(|problem| format!("template {}: {problem}", template.template_id))
}

impl DomainState {
    /// The text `template` gives when `agent_id` sends it in
    /// `conversation_id`, with the agent's `parameters` filled in.
    pub(crate) fn render_template(
        &self,
        template: &MessageTemplate,
        agent_id: &str,
        conversation_id: &str,
        parameters: &BTreeMap<String, String>,
    ) -> Result<String, Rejection> {
        let misuse = |problem: String| Rejection::Template { template_id: template.template_id.clone(), problem };
        if let Some(name) = parameters.keys().find(|name| is_system(name)) {
            return Err(misuse(format!("{name} is filled in from the conversation, not by the agent")));
        }
        let (wanted, _) = self::parameters(template);
        if let Some(name) = parameters.keys().find(|name| !wanted.contains(name)) {
            return Err(misuse(format!("it has no parameter {name} (its parameters: {})", listed(&wanted))));
        }
        let conversation = &self.conversations[conversation_id];
        let customer = &conversation.customer;
        let system = |name: &str| -> Option<String> {
            Some(match name {
                "customer_name" => customer.name.clone(),
                "customer_email" => customer.email.clone(),
                "customer_number" => customer.number.clone(),
                "agent_name" => self.agents.get(agent_id).map(|a| a.name.clone()).unwrap_or_default(),
                "queue_name" => {
                    self.queues.get(&conversation.queue_id).map(|q| q.config.name.clone()).unwrap_or_default()
                }
                _ => return None,
            })
        };
        let mut text = String::with_capacity(template.text.len());
        for piece in pieces(&template.text).map_err(misuse)? {
            match piece {
                Piece::Text(literal) => text.push_str(literal),
                Piece::Parameter(name) => match system(name).or_else(|| parameters.get(name).cloned()) {
                    Some(value) => text.push_str(&value),
                    None => return Err(misuse(format!("parameter {name} is not filled in"))),
                },
            }
        }
        Ok(text)
    }
}

fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_names_in_double_braces_each_listed_once() {
        assert_eq!(
            placeholders("Hi {{customer_name}}, order {{ order }} ({{order}}) by {{agent_name}}").unwrap(),
            ["customer_name", "order", "agent_name"]
        );
        assert_eq!(placeholders("no placeholders { here }").unwrap(), Vec::<String>::new());
        assert!(placeholders("Hi {{customer_name").unwrap_err().contains("not closed"));
        assert!(placeholders("Hi {{Customer Name}}").unwrap_err().contains("not a name"));
        assert!(placeholders("Hi {{}}").unwrap_err().contains("not a name"));
    }

    #[test]
    fn a_template_needs_an_id_a_text_and_placeholders_that_parse() {
        let template = |id: &str, text: &str| MessageTemplate {
            template_id: id.into(),
            text: text.into(),
            ..MessageTemplate::default()
        };
        assert!(validate(&template("hello", "Hello {{customer_name}}")).is_ok());
        assert!(validate(&template("", "Hello")).is_err());
        assert!(validate(&template("hello", "")).unwrap_err().contains("no text"));
        assert!(validate(&template("hello", "Hello {{")).unwrap_err().contains("template hello"));
    }
}
