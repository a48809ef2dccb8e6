//! The MQTT sink's validated config shape (`[mqtt_sink]`, read and checked
//! in `config::mqtt_sink`) and its topic template.

use crate::config::mqtt::{MqttTls, Protocol};
use std::path::PathBuf;
use std::time::Duration;

/// The event kinds a sink can publish, as [`crate::model::Event::kind`]
/// names them.
pub const KINDS: [&str; 9] = [
    "production",
    "downtime_started",
    "downtime_ended",
    "alarm_raised",
    "alarm_cleared",
    "quality_measure",
    "quality_alert",
    "scrap",
    "state_interval",
];

pub const DEFAULT_TOPIC: &str = "plantgate/{gateway}/{kind}/{key}";
pub const DEFAULT_STATUS_TOPIC: &str = "plantgate/{gateway}/status";
pub const DEFAULT_MAX_IN_FLIGHT: u16 = 256;
pub const DEFAULT_TAG_TOPIC: &str = "plantgate/{gateway}/tag/{tag}";
pub const DEFAULT_TAG_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq)]
pub struct MqttSinkConfig {
    /// `protocol = "3.1.1"` (default) or `"5"` (PUBACK reason codes).
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    /// `mqtts://`: verified TLS (plant CA or the system's roots).
    pub tls: Option<MqttTls>,
    pub client_id: String,
    pub username: Option<String>,
    /// Read at each connect, never kept in the config or logged.
    pub password_file: Option<PathBuf>,
    /// Where each event goes (`{gateway}`, `{kind}`, `{key}` filled in).
    pub topic: TopicTemplate,
    /// Kinds published; the others are passed over (acknowledged unsent).
    pub kinds: Vec<String>,
    /// Events are published retained, so each kind-and-key topic holds
    /// its last state for a subscriber that joins later.
    pub retain_last_state: bool,
    /// Birth "online" (retained) after each connect, will "offline".
    pub status_topic: String,
    /// QoS 1 publishes sent and not yet acknowledged, at most.
    pub max_in_flight: u16,
    pub keep_alive: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Where an alert goes when a lane's oldest event passes its target
    /// (and when it is back within it); `None`: no alerts.
    pub sla_alert_topic: Option<String>,
    /// Selected tags' latest values (`tags`), when set.
    pub tag_values: Option<TagValues>,
}

/// Which tag values are published, where and how often.
#[derive(Clone, Debug, PartialEq)]
pub struct TagValues {
    /// Tag names or globs (`*`, `?`).
    pub patterns: Vec<String>,
    /// `{gateway}` and `{tag}` filled in.
    pub topic: TopicTemplate,
    /// A tag's value is published on change, at most this often.
    pub every: Duration,
    /// QoS 0 (default) or 1; always retained.
    pub at_least_once: bool,
}

impl MqttSinkConfig {
    /// `host:port`, for messages.
    pub fn broker(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Gateway,
    Kind,
    Key,
    Tag,
}

/// A topic with `{gateway}`, `{kind}` and `{key}` placeholders, checked
/// at load: no wildcard, no empty level, no other placeholder.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

impl TopicTemplate {
    pub fn parse(text: &str) -> Result<TopicTemplate, String> {
        Self::parse_with(text, false)
    }

    /// A tag value's topic: `{gateway}` and `{tag}`.
    pub fn parse_tag(text: &str) -> Result<TopicTemplate, String> {
        Self::parse_with(text, true)
    }

    fn parse_with(text: &str, tag: bool) -> Result<TopicTemplate, String> {
        if text.is_empty() {
            return Err("the topic is empty".into());
        }
        if text.contains(['+', '#']) {
            return Err("a topic to publish to cannot hold the wildcards `+` or `#`".into());
        }
        if text.starts_with('$') {
            return Err("topics starting with `$` are the broker's".into());
        }
        if text.split('/').any(str::is_empty) {
            return Err("a level is empty (`//`, or `/` at the start or the end)".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err("a `{` is not closed".into());
            };
            parts.push(match (&rest[open + 1..open + close], tag) {
                ("gateway", _) => Part::Gateway,
                ("kind", false) => Part::Kind,
                ("key", false) => Part::Key,
                ("tag", true) => Part::Tag,
                (other, true) => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}: use {{gateway}} or {{tag}}"
                    ))
                }
                (other, false) => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}: use {{gateway}}, {{kind}} or {{key}}"
                    ))
                }
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err("a `}` has no `{`".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(TopicTemplate { parts })
    }

    /// Whether `{key}` is in it: without it, events of different keys
    /// share a topic (and a retained last state).
    pub fn has_key(&self) -> bool {
        self.parts.contains(&Part::Key)
    }

    /// The topic of one event. A value's `/`, `+` and `#` become `_`, so a
    /// work center name cannot add levels or wildcards.
    pub fn render(&self, gateway: &str, kind: &str, key: &str) -> String {
        self.fill(gateway, kind, key, "")
    }

    /// The topic of one tag's value, as [`TopicTemplate::render`].
    pub fn render_tag(&self, gateway: &str, tag: &str) -> String {
        self.fill(gateway, "", "", tag)
    }

    fn fill(&self, gateway: &str, kind: &str, key: &str, tag: &str) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Gateway => push_level(&mut out, gateway),
                Part::Kind => push_level(&mut out, kind),
                Part::Key => push_level(&mut out, key),
                Part::Tag => push_level(&mut out, tag),
            }
        }
        out
    }
}

fn push_level(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('_');
        return;
    }
    out.extend(value.chars().map(|c| match c {
        '/' | '+' | '#' | '\0' => '_',
        c => c,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_template_fills_each_level() {
        let t = TopicTemplate::parse(DEFAULT_TOPIC).unwrap();
        assert!(t.has_key());
        assert_eq!(
            t.render("gw1", "production", "PRESS1"),
            "plantgate/gw1/production/PRESS1"
        );
        assert_eq!(
            t.render("gw1", "alarm_raised", "line/1+#"),
            "plantgate/gw1/alarm_raised/line_1__"
        );
        assert_eq!(
            t.render("gw1", "production", ""),
            "plantgate/gw1/production/_"
        );
    }

    #[test]
    fn bad_templates_say_why() {
        for (t, why) in [
            ("a/+/b", "wildcards"),
            ("a/#", "wildcards"),
            ("a//{key}", "empty"),
            ("/a/{key}", "empty"),
            ("a/{line}", "unknown placeholder {line}"),
            ("a/{key", "not closed"),
            ("a/key}", "has no `{`"),
            ("$SYS/x", "broker's"),
        ] {
            let e = TopicTemplate::parse(t).unwrap_err();
            assert!(e.contains(why), "{t}: {e}");
        }
        assert!(TopicTemplate::parse("site/{gateway}-{kind}/{key}").is_ok());
        assert!(TopicTemplate::parse("a/{tag}").is_err());
        let t = TopicTemplate::parse_tag(DEFAULT_TAG_TOPIC).unwrap();
        assert_eq!(
            t.render_tag("gw1", "oven/temp"),
            "plantgate/gw1/tag/oven_temp"
        );
        let e = TopicTemplate::parse_tag("a/{key}").unwrap_err();
        assert!(e.contains("use {gateway} or {tag}"), "{e}");
    }
}
