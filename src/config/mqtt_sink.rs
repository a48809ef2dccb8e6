//! The `[mqtt_sink]` section: the northbound broker the gateway publishes
//! business events to (URL, TLS, credentials, topic layout, status topic),
//! validated into [`MqttSinkConfig`]. The sink itself is `sinks::mqtt`.

use super::files::What;
use super::mqtt::{Protocol, RawConnection, TlsWanted};
use super::raw::S;
use super::Validator;
use crate::sinks::mqtt::config::{
    TagValues, TopicTemplate, DEFAULT_MAX_IN_FLIGHT, DEFAULT_STATUS_TOPIC, DEFAULT_TAG_EVERY,
    DEFAULT_TAG_TOPIC, DEFAULT_TOPIC, KINDS,
};
use serde::Deserialize;
use std::time::Duration;

pub use crate::sinks::mqtt::config::MqttSinkConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqttSink {
    pub protocol: Option<S<String>>,
    pub url: Option<S<String>>,
    pub allow_plaintext: Option<S<bool>>,
    pub ca_file: Option<S<String>>,
    pub client_certificate: Option<S<String>>,
    pub client_key: Option<S<String>>,
    pub server_name: Option<S<String>>,
    pub username: Option<S<String>>,
    pub password_file: Option<S<String>>,
    pub client_id: Option<S<String>>,
    pub topic: Option<S<String>>,
    pub kinds: Option<S<Vec<S<String>>>>,
    pub retain_last_state: Option<S<bool>>,
    pub status_topic: Option<S<String>>,
    pub sla_alert_topic: Option<S<String>>,
    pub max_in_flight: Option<S<i64>>,
    pub keep_alive: Option<S<String>>,
    pub backoff_min: Option<S<String>>,
    pub backoff_max: Option<S<String>>,
    pub tags: Option<S<Vec<S<String>>>>,
    pub tag_topic: Option<S<String>>,
    pub tag_every: Option<S<String>>,
    pub tag_qos: Option<S<i64>>,
}

impl Validator<'_> {
    pub(super) fn mqtt_sink(&mut self, raw: Option<&S<RawMqttSink>>) -> Option<MqttSinkConfig> {
        let section = raw?;
        let r = section.get_ref();
        let url = self.require(
            section,
            &r.url,
            "url",
            "the broker, e.g. url = \"mqtts://broker.plant.local:8883\"",
        );
        let allow_plaintext = r.allow_plaintext.as_ref().is_some_and(|p| *p.get_ref());
        let parsed = url.and_then(|u| {
            let text = u.get_ref();
            let (tls, rest) = if let Some(rest) = text.strip_prefix("mqtts://") {
                (true, rest)
            } else if let Some(rest) = text.strip_prefix("mqtt://") {
                (false, rest)
            } else {
                self.err(u, format!("bad url {text:?}: write mqtts://HOST[:PORT] (TLS, port 8883 by default) or mqtt://HOST[:PORT]"));
                return None;
            };
            let rest = rest.trim_end_matches('/');
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
                    Ok(p) if p != 0 => (h, p),
                    _ => {
                        self.err(u, format!("bad port in {text:?}: write a number from 1 to 65535"));
                        return None;
                    }
                },
                _ => (rest, if tls { 8883 } else { 1883 }),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() || host.contains(['/', '@', '?']) {
                self.err(u, format!("bad url {text:?}: write mqtts://HOST[:PORT], nothing after the port"));
                return None;
            }
            if !tls && !allow_plaintext && !is_loopback(host) {
                self.err(u, "plain MQTT to a broker off this host is refused: use mqtts://, or set allow_plaintext = true if this link is protected otherwise");
            }
            Some((tls, host.to_string(), port))
        });
        let tls = match &parsed {
            Some((true, _, _)) => TlsWanted::On([What::PemCerts, What::PemCerts, What::PemKey]),
            Some((false, _, _)) => TlsWanted::Off("use an mqtts:// url"),
            None => TlsWanted::Unknown,
        };
        let connection = self.mqtt_connection(
            RawConnection {
                protocol: &r.protocol,
                client_id: &r.client_id,
                username: &r.username,
                password_file: &r.password_file,
                ca_file: &r.ca_file,
                client_certificate: &r.client_certificate,
                client_key: &r.client_key,
                server_name: &r.server_name,
                keep_alive: &r.keep_alive,
            },
            tls,
            format!("plantgate-{}-northbound", self.gateway_id),
        );
        let topic = match &r.topic {
            None => TopicTemplate::parse(DEFAULT_TOPIC).ok(),
            Some(t) => match TopicTemplate::parse(t.get_ref()) {
                Ok(tt) => Some(tt),
                Err(e) => {
                    self.err(t, format!("bad topic {:?}: {e}", t.get_ref()));
                    None
                }
            },
        };
        let retain_last_state = r.retain_last_state.as_ref().is_some_and(|v| *v.get_ref());
        if let (Some(t), Some(tt), true) = (&r.topic, &topic, retain_last_state) {
            if !tt.has_key() {
                self.err(t, "retain_last_state keeps one message per topic: the topic needs {key}, or every work center overwrites the others' last state");
            }
        }
        let kinds = match &r.kinds {
            None => KINDS.iter().map(|k| k.to_string()).collect(),
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.err(list, "kinds is empty: nothing would be published (leave kinds out to publish every kind)");
                }
                let mut out = Vec::new();
                for k in list.get_ref() {
                    if KINDS.contains(&k.get_ref().as_str()) {
                        out.push(k.get_ref().clone());
                    } else {
                        self.err(
                            k,
                            format!(
                                "unknown event kind {:?}: use {}",
                                k.get_ref(),
                                super::quoted_choice(&KINDS)
                            ),
                        );
                    }
                }
                out
            }
        };
        let gateway_id = self.gateway_id.clone();
        let plain_topic = |this: &mut Self, v: &S<String>, key: &str| -> Option<String> {
            let t = v.get_ref().replace("{gateway}", &gateway_id);
            match TopicTemplate::parse(&t) {
                Ok(tt) if tt.render("", "", "") == t => Some(t),
                Ok(_) => {
                    this.err(v, format!("{key} takes only the placeholder {{gateway}}"));
                    None
                }
                Err(e) => {
                    this.err(v, format!("bad {key} {:?}: {e}", v.get_ref()));
                    None
                }
            }
        };
        let status_topic = match &r.status_topic {
            None => Some(DEFAULT_STATUS_TOPIC.replace("{gateway}", &self.gateway_id)),
            Some(v) => plain_topic(self, v, "status_topic"),
        };
        let sla_alert_topic = r
            .sla_alert_topic
            .as_ref()
            .map(|v| plain_topic(self, v, "sla_alert_topic"));
        let max_in_flight = match &r.max_in_flight {
            None => DEFAULT_MAX_IN_FLIGHT,
            Some(n) => match u16::try_from(*n.get_ref()) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.err(n, "max_in_flight must be 1 to 65535: the QoS 1 messages sent before the broker's acknowledgement");
                    DEFAULT_MAX_IN_FLIGHT
                }
            },
        };
        let keep_alive = connection.keep_alive;
        if let Some(k) = &r.keep_alive {
            // Out of 1s..=65535s is said by the shared reader already.
            if connection.protocol == Protocol::V5
                && (Duration::from_secs(1)..Duration::from_secs(5)).contains(&keep_alive)
            {
                self.err(k, "keep_alive must be at least 5s with protocol = \"5\"");
            }
        }
        let backoff_min = self.duration(&r.backoff_min, Duration::from_millis(200));
        let backoff_max = self.duration(&r.backoff_max, Duration::from_secs(30));
        if let Some(m) = &r.backoff_max {
            if backoff_max < backoff_min {
                self.err(m, "backoff_max is shorter than backoff_min");
            }
        }
        let tag_values = self.tag_values(r);
        let (_, host, port) = parsed?;
        Some(MqttSinkConfig {
            protocol: connection.protocol,
            host,
            port,
            tls: connection.tls,
            client_id: connection.client_id,
            username: connection.username,
            password_file: connection.password_file,
            topic: topic?,
            kinds,
            retain_last_state,
            status_topic: status_topic?,
            sla_alert_topic: match sla_alert_topic {
                Some(None) => return None,
                Some(Some(t)) => Some(t),
                None => None,
            },
            max_in_flight,
            keep_alive,
            backoff_min,
            backoff_max,
            tag_values: tag_values?,
        })
    }

    /// `tags` and the keys that go with it; `Some(None)` when not set,
    /// `None` on an error.
    fn tag_values(&mut self, r: &RawMqttSink) -> Option<Option<TagValues>> {
        let Some(list) = &r.tags else {
            self.misplaced(
                &[
                    (r.tag_topic.as_ref().map(|v| v.span()), "tag_topic"),
                    (r.tag_every.as_ref().map(|v| v.span()), "tag_every"),
                    (r.tag_qos.as_ref().map(|v| v.span()), "tag_qos"),
                ],
                |key| format!("`{key}` is for tag values: add tags = [\"NAME\", \"GLOB*\"] to publish some"),
            );
            return Some(None);
        };
        let mut ok = true;
        if list.get_ref().is_empty() {
            self.err(list, "tags is empty: name the tags to publish (globs with * and ? too), or leave tags out");
            ok = false;
        }
        let mut patterns = Vec::new();
        for p in list.get_ref() {
            let text = p.get_ref().trim();
            if text.is_empty() {
                self.err(
                    p,
                    "an empty tag name: write a tag name or a glob like \"oven_*\"",
                );
                ok = false;
            } else {
                patterns.push(text.to_string());
            }
        }
        let topic = match &r.tag_topic {
            None => TopicTemplate::parse_tag(DEFAULT_TAG_TOPIC).ok(),
            Some(t) => match TopicTemplate::parse_tag(t.get_ref()) {
                Ok(tt) if tt.render_tag("g", "a") != tt.render_tag("g", "b") => Some(tt),
                Ok(_) => {
                    self.err(
                        t,
                        "tag_topic needs {tag}, or every tag overwrites the others' value",
                    );
                    None
                }
                Err(e) => {
                    self.err(t, format!("bad tag_topic {:?}: {e}", t.get_ref()));
                    None
                }
            },
        };
        let every = self.duration(&r.tag_every, DEFAULT_TAG_EVERY);
        let at_least_once = match &r.tag_qos {
            None => false,
            Some(q) => match *q.get_ref() {
                0 => false,
                1 => true,
                _ => {
                    self.err(
                        q,
                        "tag_qos must be 0 (the default) or 1; tag values are always retained",
                    );
                    ok = false;
                    false
                }
            },
        };
        let topic = topic?;
        ok.then_some(Some(TagValues {
            patterns,
            topic,
            every,
            at_least_once,
        }))
    }
}

/// A broker on this host: plain MQTT to it crosses no network.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const BASE: &str = r#"
[gateway]
id = "gw1"

[[sources]]
name = "press1"
kind = "modbus_tcp"
address = "10.0.0.5:502"

[[tags]]
name = "parts"
source = "press1"
register = 100
type = "u32"

[[events]]
kind = "production"
name = "parts"
tag = "parts"
workcenter = "PRESS1"

[odoo]
dry_run = true
"#;

    fn sink(section: &str) -> super::MqttSinkConfig {
        let text = format!("{BASE}\n[mqtt_sink]\n{section}");
        crate::config::parse(&text, Path::new("/etc/plantgate/gw.toml"))
            .expect("valid")
            .mqtt_sink
            .expect("a sink")
    }

    #[test]
    fn defaults_follow_the_gateway_and_the_scheme() {
        let s = sink("url = \"mqtts://broker.plant.local\"\nca_file = \"ca.pem\"\n");
        assert_eq!((s.host.as_str(), s.port), ("broker.plant.local", 8883));
        let tls = s.tls.expect("tls");
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(Path::new("/etc/plantgate/ca.pem"))
        );
        assert_eq!(s.client_id, "plantgate-gw1-northbound");
        assert_eq!(s.status_topic, "plantgate/gw1/status");
        assert_eq!(s.kinds.len(), 9);
        assert_eq!(s.max_in_flight, 256);
        assert!(!s.retain_last_state);
        assert_eq!(
            s.topic.render("gw1", "production", "PRESS1"),
            "plantgate/gw1/production/PRESS1"
        );

        let s = sink("url = \"mqtt://127.0.0.1:1884\"\nkinds = [\"alarm_raised\"]\nsla_alert_topic = \"site/{gateway}/alerts\"\n");
        assert_eq!(
            (s.host.as_str(), s.port, s.tls.is_none()),
            ("127.0.0.1", 1884, true)
        );
        assert_eq!(s.kinds, vec!["alarm_raised".to_string()]);
        assert_eq!(s.sla_alert_topic.as_deref(), Some("site/gw1/alerts"));
    }

    #[test]
    fn mqtt5_and_tag_values() {
        let s =
            sink("url = \"mqtt://127.0.0.1\"\nprotocol = \"5\"\ntags = [\"oven_*\", \"state\"]\n");
        assert_eq!(s.protocol, crate::config::mqtt::Protocol::V5);
        let t = s.tag_values.expect("tag values");
        assert_eq!(t.patterns, vec!["oven_*".to_string(), "state".to_string()]);
        assert_eq!(
            t.topic.render_tag("gw1", "oven_t"),
            "plantgate/gw1/tag/oven_t"
        );
        assert_eq!(t.every, std::time::Duration::from_secs(1));
        assert!(!t.at_least_once);
        let s = sink("url = \"mqtt://127.0.0.1\"\n");
        assert_eq!(s.protocol, crate::config::mqtt::Protocol::V311);
        assert!(s.tag_values.is_none());
    }

    #[test]
    fn plaintext_off_this_host_needs_consent() {
        let s = sink("url = \"mqtt://10.0.0.9\"\nallow_plaintext = true\n");
        assert_eq!((s.host.as_str(), s.port), ("10.0.0.9", 1883));
        let text = format!("{BASE}\n[mqtt_sink]\nurl = \"mqtt://10.0.0.9\"\n");
        let err = crate::config::parse(&text, Path::new("gw.toml")).unwrap_err();
        assert!(
            err.to_string()
                .contains("plain MQTT to a broker off this host is refused"),
            "{err}"
        );
    }
}
