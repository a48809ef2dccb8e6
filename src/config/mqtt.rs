//! MQTT parts of the config: the keys of `kind = "mqtt"` sources (the
//! broker connection) and of their tags (topic filter, payload coding,
//! value type, QoS), validated into [`MqttSource`] and [`MqttTag`].
//! Topic filters, name templates and payload codings are the source's
//! (`sources::mqtt`).

use super::files::What;
use super::raw::{Entry, S};
use super::Validator;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::sources::mqtt::payload::{Payload, ValueType};
pub use crate::sources::mqtt::topic::{NameTemplate, TopicFilter};

/// `kind = "mqtt"`. A part of the entry read after its keys were checked
/// (`Validator::sort_keys`), hence no `deny_unknown_fields`.
#[derive(Debug, Deserialize)]
pub struct RawMqtt {
    pub address: Option<S<String>>,
    pub protocol: Option<S<String>>,
    pub client_id: Option<S<String>>,
    pub username: Option<S<String>>,
    pub password_file: Option<S<String>>,
    pub tls: Option<S<bool>>,
    pub ca_file: Option<S<String>>,
    pub client_certificate: Option<S<String>>,
    pub client_key: Option<S<String>>,
    pub server_name: Option<S<String>>,
    pub clean_session: Option<S<bool>>,
    pub keep_alive: Option<S<String>>,
    pub backoff_max: Option<S<String>>,
    /// `"sparkplug"`: the source follows one Sparkplug B edge node.
    pub payload: Option<S<String>>,
    pub group: Option<S<String>>,
    pub node: Option<S<String>>,
    pub max_message_size: Option<S<i64>>,
    pub dead_letter: Option<S<bool>>,
}

/// A tag of an MQTT source. Read like [`RawMqtt`], as a part of the entry.
#[derive(Debug, Deserialize)]
pub struct RawMqttTag {
    pub topic: Option<S<String>>,
    pub payload: Option<S<String>>,
    pub pointer: Option<S<String>>,
    pub time_pointer: Option<S<String>>,
    #[serde(rename = "type")]
    pub data_type: Option<S<String>>,
    pub qos: Option<S<i64>>,
    /// A Sparkplug source's tags: the device (none = the node's own
    /// metric) and the metric's name.
    pub device: Option<S<String>>,
    pub metric: Option<S<String>>,
}

/// The MQTT version spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    V311,
    V5,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MqttSource {
    /// `protocol = "3.1.1"` (default) or `"5"`.
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    /// Fixed, so a persistent session is found again after a reconnect.
    pub client_id: String,
    pub username: Option<String>,
    /// Read at each connect, never kept in the config or logged.
    pub password_file: Option<PathBuf>,
    pub tls: Option<MqttTls>,
    /// false: the broker keeps subscriptions and QoS ≥ 1 messages for
    /// this client while it is away.
    pub clean_session: bool,
    pub keep_alive: Duration,
    pub backoff_max: Duration,
    /// The Sparkplug B edge node followed, when `payload = "sparkplug"`.
    pub sparkplug: Option<SparkplugNode>,
    /// Larger messages are refused (counted, dead-lettered when asked).
    pub max_message_size: usize,
    /// Refused messages are kept in the store's dead letters.
    pub dead_letter: bool,
}

/// One Sparkplug B edge node: `spBv1.0/<group>/…/<node>/…`.
#[derive(Clone, Debug, PartialEq)]
pub struct SparkplugNode {
    pub group: String,
    pub node: String,
}

/// The keys every broker connection has, a source's or the sink's, as
/// each one's raw shape holds them.
pub(super) struct RawConnection<'r> {
    pub protocol: &'r Option<S<String>>,
    pub client_id: &'r Option<S<String>>,
    pub username: &'r Option<S<String>>,
    pub password_file: &'r Option<S<String>>,
    pub ca_file: &'r Option<S<String>>,
    pub client_certificate: &'r Option<S<String>>,
    pub client_key: &'r Option<S<String>>,
    pub server_name: &'r Option<S<String>>,
    pub keep_alive: &'r Option<S<String>>,
}

/// Those keys, validated.
pub(super) struct Connection {
    pub protocol: Protocol,
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: Option<MqttTls>,
    pub keep_alive: Duration,
}

/// Whether a connection is TLS, which a source and the sink say apart.
pub(super) enum TlsWanted<'a> {
    /// TLS: its keys are read, and their files checked as these say
    /// (ca_file, client_certificate, client_key).
    On([fn(PathBuf) -> What; 3]),
    /// Not TLS: a TLS key is an error, with this hint.
    Off(&'a str),
    /// Not known, as the address is wrong (and said so): TLS keys are
    /// passed over.
    Unknown,
}

/// The default `max_message_size`: far above any tag's message, far below
/// what would strain the gateway's memory.
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024;

#[derive(Clone, Debug, PartialEq)]
pub struct MqttTls {
    /// PEM roots that replace the system's; `None` = the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and key for mutual TLS.
    pub client_auth: Option<(PathBuf, PathBuf)>,
    /// The name the broker's certificate must carry, when not the host.
    pub server_name: Option<String>,
}

/// Where one MQTT tag's values come from.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttTag {
    pub topic: TopicFilter,
    /// The tag's name, or how to build it from the levels `+` matched.
    pub name: NameTemplate,
    pub payload: Payload,
    pub value_type: Option<ValueType>,
    /// 0, 1 or 2.
    pub qos: u8,
}

impl Validator<'_> {
    pub(super) fn mqtt_source(
        &mut self,
        s: &Entry<'_>,
        name: &str,
        r: &RawMqtt,
    ) -> Option<MqttSource> {
        let address = self.require(
            s,
            &r.address,
            "address",
            "the broker as HOST:PORT, e.g. address = \"192.168.10.5:1883\"",
        )?;
        let parsed = address
            .get_ref()
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .filter(|(h, p)| !h.is_empty() && *p != 0);
        if parsed.is_none() {
            self.err(
                address,
                format!(
                    "bad address {:?}: write HOST:PORT, like \"192.168.10.5:1883\" (8883 for TLS)",
                    address.get_ref()
                ),
            );
        }
        // The rest is validated even without an address, so every problem
        // shows at once; the source is kept only with one.
        let (host, port) = parsed
            .map(|(h, p)| {
                (
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    p,
                )
            })
            .unwrap_or_default();
        let tls = if r.tls.as_ref().is_some_and(|t| *t.get_ref()) {
            TlsWanted::On([What::File, What::File, What::File])
        } else {
            TlsWanted::Off("add tls = true")
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
            format!("plantgate-{}-{name}", self.gateway_id),
        );
        let sparkplug = self.sparkplug_node(s, r);
        let max_message_size = match &r.max_message_size {
            Some(m) if !(64..=(256 << 20)).contains(m.get_ref()) => {
                self.err(
                    m,
                    "max_message_size must be 64 to 268435456 bytes (default 262144, 256 KiB)",
                );
                DEFAULT_MAX_MESSAGE
            }
            Some(m) => *m.get_ref() as usize,
            None => DEFAULT_MAX_MESSAGE,
        };
        parsed?;
        Some(MqttSource {
            protocol: connection.protocol,
            host,
            port,
            client_id: connection.client_id,
            username: connection.username,
            password_file: connection.password_file,
            tls: connection.tls,
            clean_session: r.clean_session.as_ref().is_none_or(|c| *c.get_ref()),
            keep_alive: connection.keep_alive,
            backoff_max: self.duration(&r.backoff_max, Duration::from_secs(30)),
            sparkplug,
            max_message_size,
            dead_letter: r.dead_letter.as_ref().is_some_and(|d| *d.get_ref()),
        })
    }

    /// The keys of a broker connection, a source's or the sink's: the
    /// protocol, the client id (`default_client_id` when not given), the
    /// credentials, TLS as `tls` says, and the keep-alive.
    pub(super) fn mqtt_connection(
        &mut self,
        r: RawConnection<'_>,
        tls: TlsWanted<'_>,
        default_client_id: String,
    ) -> Connection {
        let protocol = self.mqtt_protocol(r.protocol.as_ref());
        let client_id = match r.client_id {
            Some(c) if c.get_ref().is_empty() || c.get_ref().len() > 128 => {
                self.err(c, "client_id must be 1 to 128 characters");
                String::new()
            }
            Some(c) => c.get_ref().clone(),
            None => default_client_id,
        };
        let password_file = match (r.username, r.password_file) {
            (Some(_), Some(pw)) => {
                let path = self.base.join(pw.get_ref());
                self.need(pw, "password_file", What::File(path.clone()));
                Some(path)
            }
            (Some(u), None) => {
                self.err(
                    u,
                    "a `username` needs `password_file`, a file holding only the password",
                );
                None
            }
            (None, Some(pw)) => {
                self.err(pw, "`password_file` needs `username`");
                None
            }
            (None, None) => None,
        };
        let tls = match tls {
            TlsWanted::On(files) => Some(self.mqtt_tls(
                [r.ca_file, r.client_certificate, r.client_key],
                r.server_name,
                files,
            )),
            TlsWanted::Off(hint) => {
                let at = |v: &Option<S<String>>| v.as_ref().map(|v| v.span());
                self.misplaced(
                    &[
                        (at(r.ca_file), "ca_file"),
                        (at(r.client_certificate), "client_certificate"),
                        (at(r.client_key), "client_key"),
                        (at(r.server_name), "server_name"),
                    ],
                    |key| format!("`{key}` is for a TLS connection: {hint}"),
                );
                None
            }
            TlsWanted::Unknown => None,
        };
        let keep_alive = self.duration(r.keep_alive, Duration::from_secs(30));
        if let Some(k) = r.keep_alive {
            if keep_alive < Duration::from_secs(1) || keep_alive > Duration::from_secs(65_535) {
                self.err(k, "keep_alive must be 1s to 65535s");
            }
        }
        Connection {
            protocol,
            client_id,
            username: r.username.as_ref().map(|u| u.get_ref().clone()),
            password_file,
            tls,
            keep_alive,
        }
    }

    /// `protocol`: the MQTT version of a connection.
    fn mqtt_protocol(&mut self, protocol: Option<&S<String>>) -> Protocol {
        match protocol.map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "3.1.1")) => Protocol::V311,
            Some((_, "5")) => Protocol::V5,
            Some((p, other)) => {
                self.err(
                    p,
                    format!("unknown protocol {other:?}: use \"3.1.1\" (the default) or \"5\""),
                );
                Protocol::V311
            }
        }
    }

    /// The TLS keys of an MQTT connection: the CA file, the client
    /// certificate and key (each needs the other), and the server name.
    /// `files` says how each file is checked (ca_file, client_certificate,
    /// client_key).
    fn mqtt_tls(
        &mut self,
        [ca_file, certificate, key]: [&Option<S<String>>; 3],
        server_name: &Option<S<String>>,
        files: [fn(PathBuf) -> What; 3],
    ) -> MqttTls {
        let ca_file = ca_file.as_ref().map(|f| {
            let path = self.base.join(f.get_ref());
            self.need(f, "ca_file", files[0](path.clone()));
            path
        });
        let client_auth = match (certificate, key) {
            (Some(c), Some(k)) => {
                let (cp, kp) = (self.base.join(c.get_ref()), self.base.join(k.get_ref()));
                self.need(c, "client_certificate", files[1](cp.clone()));
                self.need(k, "client_key", files[2](kp.clone()));
                Some((cp, kp))
            }
            (Some(c), None) => {
                self.err(c, "`client_certificate` needs `client_key`");
                None
            }
            (None, Some(k)) => {
                self.err(k, "`client_key` needs `client_certificate`");
                None
            }
            (None, None) => None,
        };
        let server_name = server_name.as_ref().and_then(|n| {
            if rustls_pki_types::ServerName::try_from(n.get_ref().as_str()).is_err() {
                self.err(
                    n,
                    format!(
                        "server_name {:?} is not a DNS name or IP address",
                        n.get_ref()
                    ),
                );
                return None;
            }
            Some(n.get_ref().clone())
        });
        MqttTls {
            ca_file,
            client_auth,
            server_name,
        }
    }

    /// `payload = "sparkplug"` with `group` and `node`, or none of them.
    fn sparkplug_node(&mut self, s: &Entry<'_>, r: &RawMqtt) -> Option<SparkplugNode> {
        match r.payload.as_ref().map(|p| (p, p.get_ref().as_str())) {
            None => {
                self.misplaced(
                    &[
                        (r.group.as_ref().map(|v| v.span()), "group"),
                        (r.node.as_ref().map(|v| v.span()), "node"),
                    ],
                    |key| {
                        format!("`{key}` is for a Sparkplug B source: add payload = \"sparkplug\"")
                    },
                );
                None
            }
            Some((_, "sparkplug")) => {
                let group = self.require(
                    s,
                    &r.group,
                    "group",
                    "the Sparkplug group id, e.g. group = \"plant1\"",
                );
                let node = self.require(
                    s,
                    &r.node,
                    "node",
                    "the Sparkplug edge node id, e.g. node = \"press-gw\"",
                );
                for v in [group, node].into_iter().flatten() {
                    let id = v.get_ref();
                    if id.is_empty() || id.contains(['/', '+', '#']) {
                        self.err(v, format!("Sparkplug id {id:?} must be one topic level: not empty, without `/`, `+` or `#`"));
                    }
                }
                Some(SparkplugNode {
                    group: group?.get_ref().clone(),
                    node: node?.get_ref().clone(),
                })
            }
            Some((p, other)) => {
                self.err(p, format!("unknown source payload {other:?}: the only one set on a source is \"sparkplug\" (set plain or json payloads on each tag)"));
                None
            }
        }
    }

    /// `name` is the tag's `name` as written: a template for wildcard topics.
    pub(super) fn mqtt_tag(
        &mut self,
        t: &Entry<'_>,
        name: &S<String>,
        r: &RawMqttTag,
        source: &MqttSource,
    ) -> Option<MqttTag> {
        if let Some(node) = &source.sparkplug {
            return self.sparkplug_tag(t, name, r, node);
        }
        self.misplaced(
            &[
                (r.device.as_ref().map(|v| v.span()), "device"),
                (r.metric.as_ref().map(|v| v.span()), "metric"),
            ],
            |key| format!("`{key}` is for a tag of a Sparkplug B source (payload = \"sparkplug\" on the source)"),
        );
        let topic = self.require(
            t,
            &r.topic,
            "topic",
            "the topic or filter, e.g. topic = \"plant1/press1/count\"",
        )?;
        let filter = match TopicFilter::parse(topic.get_ref()) {
            Ok(f) => f,
            Err(e) => {
                self.err(topic, format!("bad topic {:?}: {e}", topic.get_ref()));
                return None;
            }
        };
        let template = match NameTemplate::parse(name.get_ref(), filter.captures()) {
            Ok(t) => t,
            Err(e) => {
                self.err(name, e);
                return None;
            }
        };
        if template.fixed().is_none() {
            // The levels fill the rest; what is written must be plain.
            let plain = template.literals().all(|l| {
                l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
            if !plain {
                self.err(
                    name,
                    format!(
                        "tag name {:?} may hold only letters, digits, `_`, `-` and {{N}} levels",
                        name.get_ref()
                    ),
                );
            }
        }
        let pointer = |v: &S<String>, this: &mut Self| {
            let p = v.get_ref();
            let escapes_ok = p
                .split('~')
                .skip(1)
                .all(|rest| rest.starts_with('0') || rest.starts_with('1'));
            if !p.starts_with('/') || !escapes_ok {
                this.err(v, format!("bad JSON pointer {p:?}: write /KEY/KEY… from the document's root, like \"/value\" or \"/data/0/count\" (RFC 6901; `~` only as ~0 or ~1)"));
            }
            p.clone()
        };
        let payload = match r.payload.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("plain") => {
                for (v, key) in [(&r.pointer, "pointer"), (&r.time_pointer, "time_pointer")] {
                    if let Some(v) = v {
                        self.err(v, format!("`{key}` is for payload = \"json\""));
                    }
                }
                Payload::Plain
            }
            Some("json") => Payload::Json {
                pointer: r
                    .pointer
                    .as_ref()
                    .map(|p| pointer(p, self))
                    .unwrap_or_default(),
                time_pointer: r.time_pointer.as_ref().map(|p| pointer(p, self)),
            },
            Some("sparkplug") => {
                if let Some(p) = &r.payload {
                    self.err(p, "payload = \"sparkplug\" is set on the source, with `group` and `node`; its tags name a `metric` (and `device`), not a topic");
                }
                Payload::Plain
            }
            Some(other) => {
                if let Some(p) = &r.payload {
                    self.err(
                        p,
                        format!("unknown payload {other:?}: use \"plain\" or \"json\""),
                    );
                }
                Payload::Plain
            }
        };
        let value_type = self.mqtt_value_type(r);
        let qos = self.mqtt_qos(r);
        Some(MqttTag {
            topic: filter,
            name: template,
            payload,
            value_type,
            qos,
        })
    }

    /// A tag of a Sparkplug B source: a metric of the node or of one of
    /// its devices; the topic is the node's.
    fn sparkplug_tag(
        &mut self,
        t: &Entry<'_>,
        name: &S<String>,
        r: &RawMqttTag,
        node: &SparkplugNode,
    ) -> Option<MqttTag> {
        self.misplaced(
            &[
                (r.topic.as_ref().map(|v| v.span()), "topic"),
                (r.payload.as_ref().map(|v| v.span()), "payload"),
                (r.pointer.as_ref().map(|v| v.span()), "pointer"),
                (r.time_pointer.as_ref().map(|v| v.span()), "time_pointer"),
            ],
            |key| format!("`{key}` is not set on a tag of a Sparkplug B source: the source reads spBv1.0/{}/…/{}; name the value with `metric` (and `device`)", node.group, node.node),
        );
        if name.get_ref().contains('{') {
            self.err(
                name,
                "a Sparkplug tag's name is fixed: `{N}` levels are for topic filters",
            );
        }
        let metric = self.require(
            t,
            &r.metric,
            "metric",
            "the Sparkplug metric's name, e.g. metric = \"Counts/Good\"",
        );
        if let Some(m) = metric.filter(|m| m.get_ref().is_empty()) {
            self.err(m, "an empty metric name");
        }
        let device = r.device.as_ref().map(|d| {
            let id = d.get_ref();
            if id.is_empty() || id.contains(['/', '+', '#']) {
                self.err(d, format!("Sparkplug device id {id:?} must be one topic level: not empty, without `/`, `+` or `#`"));
            }
            id.clone()
        });
        let value_type = self.mqtt_value_type(r);
        let qos = self.mqtt_qos(r);
        let metric = metric?.get_ref().clone();
        let filter = TopicFilter::parse(&format!(
            "{}/{}/+/{}/#",
            crate::sources::mqtt::sparkplug::NAMESPACE,
            node.group,
            node.node
        ))
        .ok()?;
        Some(MqttTag {
            topic: filter,
            name: NameTemplate::parse(name.get_ref(), 0).ok()?,
            payload: Payload::Sparkplug { device, metric },
            value_type,
            qos,
        })
    }

    fn mqtt_value_type(&mut self, r: &RawMqttTag) -> Option<ValueType> {
        r.data_type.as_ref().and_then(|d| {
            let t = ValueType::parse(d.get_ref());
            if t.is_none() {
                self.err(
                    d,
                    format!(
                        "unknown type {:?} for an MQTT tag: use one of {}",
                        d.get_ref(),
                        ValueType::NAMES
                    ),
                );
            }
            t
        })
    }

    fn mqtt_qos(&mut self, r: &RawMqttTag) -> u8 {
        match &r.qos {
            Some(q) if !(0..=2).contains(q.get_ref()) => {
                self.err(q, "qos must be 0, 1 or 2");
                1
            }
            Some(q) => *q.get_ref() as u8,
            None => 1,
        }
    }
}
