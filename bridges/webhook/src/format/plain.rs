//! Plain messages: a text body, or a JSON object with a `text`, `body` or `message` string
//! (Slack-style `{"text": …}` senders, scripts, form posts with `text=`).

use super::Payload;

/// The fields tried, in order.
pub const FIELDS: [&str; 3] = ["text", "body", "message"];

/// The message text, if the payload is plain; `None` if it is some other shape.
pub fn format(payload: &Payload) -> Option<String> {
    match payload {
        Payload::Text(t) => Some(t.trim_end().to_owned()),
        Payload::Json(v) => FIELDS
            .iter()
            .find_map(|f| v.get(f)?.as_str())
            .map(|s| s.trim_end().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_shapes() {
        let j = |v| Payload::Json(v);
        assert_eq!(
            format(&j(json!({"text": "build passed"}))).as_deref(),
            Some("build passed")
        );
        assert_eq!(format(&j(json!({"body": "b"}))).as_deref(), Some("b"));
        assert_eq!(format(&j(json!({"message": "m\n"}))).as_deref(), Some("m"));
        assert_eq!(
            format(&j(json!({"text": "t", "body": "b"}))).as_deref(),
            Some("t")
        );
        assert_eq!(format(&j(json!({"text": 3}))), None);
        assert_eq!(format(&j(json!(["text"]))), None);
        assert_eq!(format(&Payload::Text("hi\n".into())).as_deref(), Some("hi"));
    }
}
