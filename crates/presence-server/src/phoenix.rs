//! The Phoenix Channels V2 JSON serializer (`?vsn=2.0.0`), as phoenix.js
//! speaks it: every message is a text frame holding
//! `[join_ref, ref, topic, event, payload]`, where the refs are strings or
//! null and the payload is any JSON value (an object in practice).

use serde_json::{json, Value};

/// One message, either way.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// The ref of the join that opened the channel (null outside a channel).
    pub join_ref: Option<String>,
    /// This message's ref, echoed by its reply (null for pushes).
    pub msg_ref: Option<String>,
    /// The channel's topic (`phoenix` for the socket's own heartbeats).
    pub topic: String,
    /// The event: `phx_join`, `phx_leave`, `heartbeat`, `phx_reply`, ...
    pub event: String,
    /// The payload.
    pub payload: Value,
}

/// Why a client's text frame is not a V2 message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON.
    NotJson(String),
    /// JSON, but not a five-element array.
    NotAnArrayOfFive,
    /// A ref is neither a string nor null (phoenix.js sends strings).
    BadRef,
    /// The topic or the event is not a non-empty string.
    BadName,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJson(error) => write!(f, "not JSON: {error}"),
            Self::NotAnArrayOfFive => f.write_str("not [join_ref, ref, topic, event, payload]"),
            Self::BadRef => f.write_str("a ref is neither a string nor null"),
            Self::BadName => f.write_str("the topic or event is not a non-empty string"),
        }
    }
}

impl std::error::Error for FrameError {}

fn reference(value: Value) -> Result<Option<String>, FrameError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text)),
        // Some clients number their refs; phoenix.js sends strings.
        Value::Number(number) => Ok(Some(number.to_string())),
        _ => Err(FrameError::BadRef),
    }
}

fn name(value: Value) -> Result<String, FrameError> {
    match value {
        Value::String(text) if !text.is_empty() => Ok(text),
        _ => Err(FrameError::BadName),
    }
}

impl Frame {
    /// Parses a client's text frame.
    pub fn decode(text: &str) -> Result<Self, FrameError> {
        let value: Value =
            serde_json::from_str(text).map_err(|error| FrameError::NotJson(error.to_string()))?;
        let Value::Array(items) = value else {
            return Err(FrameError::NotAnArrayOfFive);
        };
        let Ok([join_ref, msg_ref, topic, event, payload]) = <[Value; 5]>::try_from(items) else {
            return Err(FrameError::NotAnArrayOfFive);
        };
        Ok(Self {
            join_ref: reference(join_ref)?,
            msg_ref: reference(msg_ref)?,
            topic: name(topic)?,
            event: name(event)?,
            payload,
        })
    }

    /// The frame's text.
    pub fn encode(&self) -> String {
        json!([self.join_ref, self.msg_ref, self.topic, self.event, self.payload]).to_string()
    }

    /// A reply to this message: `phx_reply` with a status and a response.
    pub fn reply(&self, status: Status, response: Value) -> Self {
        Self {
            join_ref: self.join_ref.clone(),
            msg_ref: self.msg_ref.clone(),
            topic: self.topic.clone(),
            event: "phx_reply".to_owned(),
            payload: json!({"status": status.as_str(), "response": response}),
        }
    }

    /// An error reply giving a reason, as Phoenix sends for a refused join.
    pub fn refuse(&self, reason: &str) -> Self {
        self.reply(Status::Error, json!({ "reason": reason }))
    }

    /// A push from the server on a channel (no ref).
    pub fn push(join_ref: Option<&str>, topic: &str, event: &str, payload: Value) -> Self {
        Self {
            join_ref: join_ref.map(str::to_owned),
            msg_ref: None,
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        }
    }

    /// `phx_close` or `phx_error` for a channel, which phoenix.js matches
    /// by its join ref.
    pub fn channel_event(join_ref: &str, topic: &str, event: &str) -> Self {
        Self {
            join_ref: Some(join_ref.to_owned()),
            msg_ref: Some(join_ref.to_owned()),
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload: json!({}),
        }
    }
}

/// A reply's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Done.
    Ok,
    /// Refused; the response says why.
    Error,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// A broadcast to a topic's subscribers, as Phoenix's fastlane encodes it:
/// no refs, so one text serves every subscriber.
pub fn broadcast_text(topic: &str, event: &str, payload_json: &str) -> String {
    push_text(None, topic, event, payload_json)
}

/// A push on a channel, around a payload already encoded as JSON (so a
/// large payload is encoded once for many channels).
pub fn push_text(join_ref: Option<&str>, topic: &str, event: &str, payload_json: &str) -> String {
    let string = |text: &str| Value::String(text.to_owned()).to_string();
    let join_ref = join_ref.map_or_else(|| "null".to_owned(), string);
    let (topic, event) = (string(topic), string(event));
    // One allocation of the final size: a hot topic's state is large, and
    // growing it by doubling was a third of the hub's time under a burst.
    let mut text =
        String::with_capacity(join_ref.len() + topic.len() + event.len() + payload_json.len() + 12);
    for part in [
        "[",
        &join_ref,
        ",null,",
        &topic,
        ",",
        &event,
        ",",
        payload_json,
        "]",
    ] {
        text.push_str(part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phoenix_js_join_round_trips() {
        let text = r#"["3","3","room:lobby","phx_join",{"presence":{"key":"ann","meta":{}}}]"#;
        let frame = Frame::decode(text).unwrap();
        assert_eq!(frame.join_ref.as_deref(), Some("3"));
        assert_eq!(frame.event, "phx_join");
        assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        let reply = frame.reply(Status::Ok, json!({}));
        assert_eq!(
            reply.encode(),
            r#"["3","3","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#
        );
    }

    #[test]
    fn malformed_frames_are_typed() {
        assert!(matches!(Frame::decode("nope"), Err(FrameError::NotJson(_))));
        assert_eq!(Frame::decode("{}"), Err(FrameError::NotAnArrayOfFive));
        assert_eq!(
            Frame::decode(r#"[null,null,"t","e"]"#),
            Err(FrameError::NotAnArrayOfFive)
        );
        assert_eq!(
            Frame::decode(r#"[null,null,"t","e",{},1]"#),
            Err(FrameError::NotAnArrayOfFive)
        );
        assert_eq!(Frame::decode(r#"[{},null,"t","e",{}]"#), Err(FrameError::BadRef));
        assert_eq!(
            Frame::decode(r#"[null,null,"","e",{}]"#),
            Err(FrameError::BadName)
        );
        assert_eq!(Frame::decode(r#"[null,null,"t",7,{}]"#), Err(FrameError::BadName));
        // Deep nesting stops at serde_json's recursion limit, not the stack.
        let deep = format!(
            "[null,null,\"t\",\"e\",{}{}]",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(Frame::decode(&deep), Err(FrameError::NotJson(_))));
    }

    #[test]
    fn a_broadcast_escapes_its_topic() {
        let text = broadcast_text("room:\"x\"", "presence_diff", r#"{"joins":{},"leaves":{}}"#);
        let frame = Frame::decode(&text).unwrap();
        assert_eq!(frame.topic, "room:\"x\"");
        assert_eq!(frame.join_ref, None);
        assert_eq!(frame.payload, json!({"joins": {}, "leaves": {}}));
        let pushed = push_text(Some("7\""), "t", "presence_state", "{}");
        let frame = Frame::decode(&pushed).unwrap();
        assert_eq!(frame, Frame::push(Some("7\""), "t", "presence_state", json!({})));
    }
}
