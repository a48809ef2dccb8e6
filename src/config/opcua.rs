//! OPC UA parts of the config: the keys of `kind = "opcua"` sources and of
//! their tags, and their validation into the connection (endpoint,
//! security, user identity, certificates) and each tag's node, acquisition
//! mode and monitoring parameters.

use super::files::What;
use super::raw::{Entry, S};
use super::Validator;
use crate::sources::opcua::node_id::NodeRef;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

// The protocol's own types live with the source; the config names them.
pub use crate::sources::opcua::security::{SecurityMode, SecurityPolicy};
pub use crate::sources::opcua::{Deadband, Mode};

/// `kind = "opcua"`. A part of the entry read after its keys were checked
/// (`Validator::sort_keys`), hence no `deny_unknown_fields`.
#[derive(Debug, Deserialize)]
pub struct RawOpcUa {
    pub endpoint: Option<S<String>>,
    pub security_policy: Option<S<String>>,
    pub security_mode: Option<S<String>>,
    pub user: Option<S<String>>,
    pub password_file: Option<S<String>>,
    pub user_certificate: Option<S<String>>,
    pub user_private_key: Option<S<String>>,
    pub trust_dir: Option<S<String>>,
    pub certificate: Option<S<String>>,
    pub private_key: Option<S<String>>,
    pub publishing_interval: Option<S<String>>,
    pub poll_interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub backoff_max: Option<S<String>>,
}

/// A tag of an OPC UA source: its node and how it is monitored. Read
/// like [`RawOpcUa`], as a part of the entry.
#[derive(Debug, Deserialize)]
pub struct RawOpcUaTag {
    pub node: Option<S<String>>,
    pub mode: Option<S<String>>,
    pub sampling_interval: Option<S<String>>,
    pub queue_size: Option<S<i64>>,
    pub discard_oldest: Option<S<bool>>,
    pub deadband: Option<S<RawDeadband>>,
}

/// `deadband = { kind = "absolute", value = 0.5 }` on an OPC UA tag.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadband {
    pub kind: Option<S<String>>,
    pub value: Option<S<f64>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OpcUaSource {
    /// `opc.tcp://host:port[/path]`; always the address connected to, even
    /// when the server advertises another (NAT, port forwarding).
    pub endpoint: String,
    pub security_policy: SecurityPolicy,
    pub security_mode: SecurityMode,
    pub identity: Identity,
    /// Server certificates trusted for signed or encrypted connections.
    pub trust_dir: PathBuf,
    /// The gateway's application instance certificate (DER) and key (PEM),
    /// generated on first start when absent.
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// Where the OPC UA stack keeps its own files (under the data dir).
    pub pki_dir: PathBuf,
    pub publishing_interval: Duration,
    /// Read interval of tags in `mode = "poll"`.
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub backoff_max: Duration,
}

/// Who the gateway logs in as.
#[derive(Clone, Debug, PartialEq)]
pub enum Identity {
    Anonymous,
    /// The password is read from the file at each connect, never from the config.
    UserName {
        user: String,
        password: PathBuf,
    },
    X509 {
        certificate: PathBuf,
        private_key: PathBuf,
    },
}

/// Where and how one OPC UA tag is read.
#[derive(Clone, Debug, PartialEq)]
pub struct OpcUaTag {
    pub node: NodeRef,
    pub mode: Mode,
    /// How often the server samples the value; `None` = the publishing interval.
    pub sampling_interval: Option<Duration>,
    pub queue_size: u32,
    pub discard_oldest: bool,
    pub deadband: Option<Deadband>,
}

impl Validator<'_> {
    pub(super) fn opcua_source(&mut self, s: &Entry<'_>, r: &RawOpcUa) -> Option<OpcUaSource> {
        let endpoint = self.require(
            s,
            &r.endpoint,
            "endpoint",
            "the server's URL, e.g. endpoint = \"opc.tcp://192.168.10.30:4840\"",
        )?;
        let url = endpoint.get_ref().clone();
        let host_ok = url
            .strip_prefix("opc.tcp://")
            .and_then(|rest| rest.split('/').next())
            .is_some_and(|hp| {
                hp.rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            });
        if !host_ok {
            self.err(
                endpoint,
                format!("bad endpoint {url:?}: write opc.tcp://HOST:PORT, like \"opc.tcp://192.168.10.30:4840\""),
            );
        }
        let policy_known = r
            .security_policy
            .as_ref()
            .is_none_or(|p| SecurityPolicy::parse(p.get_ref()).is_some());
        let security_policy = match &r.security_policy {
            Some(p) => SecurityPolicy::parse(p.get_ref()).unwrap_or_else(|| {
                self.err(
                    p,
                    format!(
                        "unknown security_policy {:?}: use {}",
                        p.get_ref(),
                        SecurityPolicy::NAMES
                    ),
                );
                SecurityPolicy::None
            }),
            None => SecurityPolicy::None,
        };
        let default_mode = if security_policy == SecurityPolicy::None {
            SecurityMode::None
        } else {
            SecurityMode::SignAndEncrypt
        };
        let security_mode = match &r.security_mode {
            Some(m) => match SecurityMode::parse(m.get_ref()) {
                Some(mode) => {
                    let none_policy = security_policy == SecurityPolicy::None;
                    // An unknown policy was reported already; no second guess.
                    if policy_known && none_policy != (mode == SecurityMode::None) {
                        self.err(m, format!(
                            "security_mode {:?} does not fit security_policy {:?}: policy \"None\" goes with mode \"None\", any other policy with \"Sign\" or \"SignAndEncrypt\"",
                            mode.name(), security_policy.name()
                        ));
                    }
                    mode
                }
                None => {
                    self.err(
                        m,
                        format!(
                            "unknown security_mode {:?}: use \"None\", \"Sign\" or \"SignAndEncrypt\"",
                            m.get_ref()
                        ),
                    );
                    default_mode
                }
            },
            None => default_mode,
        };
        let identity = match (
            &r.user,
            &r.password_file,
            &r.user_certificate,
            &r.user_private_key,
        ) {
            (None, None, None, None) => Identity::Anonymous,
            (Some(u), pw, None, None) => {
                let Some(pw) = pw else {
                    self.err(
                        u,
                        "a `user` needs `password_file`, a file holding only the password",
                    );
                    return None;
                };
                let password = self.base.join(pw.get_ref());
                self.need(pw, "password_file", What::File(password.clone()));
                Identity::UserName {
                    user: u.get_ref().clone(),
                    password,
                }
            }
            (None, Some(pw), None, None) => {
                self.err(pw, "`password_file` needs `user`");
                return None;
            }
            (None, None, Some(c), Some(k)) => {
                let certificate = self.base.join(c.get_ref());
                let private_key = self.base.join(k.get_ref());
                self.need(c, "user_certificate", What::File(certificate.clone()));
                self.need(k, "user_private_key", What::File(private_key.clone()));
                Identity::X509 {
                    certificate,
                    private_key,
                }
            }
            (None, None, Some(c), None) => {
                self.err(c, "`user_certificate` needs `user_private_key`");
                return None;
            }
            (None, None, None, Some(k)) => {
                self.err(k, "`user_private_key` needs `user_certificate`");
                return None;
            }
            (Some(u), _, _, _) => {
                self.err(u, "give either `user` + `password_file` or `user_certificate` + `user_private_key`, not both");
                return None;
            }
            (None, Some(pw), _, _) => {
                self.err(pw, "give either `user` + `password_file` or `user_certificate` + `user_private_key`, not both");
                return None;
            }
        };
        let opcua_dir = self.data_dir.join("opcua");
        // The stack's own scratch store; plantgate checks trust itself.
        let pki_dir = opcua_dir.join("stack");
        let trust_dir = r.trust_dir.as_ref().map_or_else(
            || opcua_dir.join("trusted"),
            |d| {
                let dir = self.base.join(d.get_ref());
                self.need(d, "trust_dir", What::Dir(dir.clone()));
                dir
            },
        );
        let (certificate, private_key) = match (&r.certificate, &r.private_key) {
            (Some(c), Some(k)) => {
                let certificate = self.base.join(c.get_ref());
                let private_key = self.base.join(k.get_ref());
                self.need(c, "certificate", What::File(certificate.clone()));
                self.need(k, "private_key", What::File(private_key.clone()));
                (certificate, private_key)
            }
            (None, None) => (
                opcua_dir.join("own/cert.der"),
                opcua_dir.join("private/private.pem"),
            ),
            (Some(c), None) => {
                self.err(c, "`certificate` needs `private_key` (or drop both to have them generated in the data dir)");
                return None;
            }
            (None, Some(k)) => {
                self.err(k, "`private_key` needs `certificate` (or drop both to have them generated in the data dir)");
                return None;
            }
        };
        Some(OpcUaSource {
            endpoint: url,
            security_policy,
            security_mode,
            identity,
            trust_dir,
            certificate,
            private_key,
            pki_dir,
            publishing_interval: self.duration(&r.publishing_interval, Duration::from_secs(1)),
            poll_interval: self.duration(&r.poll_interval, Duration::from_secs(1)),
            timeout: self.duration(&r.timeout, Duration::from_secs(5)),
            backoff_max: self.duration(&r.backoff_max, Duration::from_secs(30)),
        })
    }

    pub(super) fn opcua_tag(&mut self, t: &Entry<'_>, r: &RawOpcUaTag) -> Option<OpcUaTag> {
        let node = self.require(
            t,
            &r.node,
            "node",
            "the node id, e.g. node = \"ns=2;s=Press.Counter\"",
        )?;
        let node_ref = match node.get_ref().parse::<NodeRef>() {
            Ok(n) => n,
            Err(e) => {
                self.err(node, e.to_string());
                return None;
            }
        };
        let mode = match &r.mode {
            Some(m) => match m.get_ref().as_str() {
                "subscribe" => Mode::Subscribe,
                "poll" => Mode::Poll,
                other => {
                    self.err(
                        m,
                        format!("unknown mode {other:?}: use \"subscribe\" or \"poll\""),
                    );
                    Mode::Subscribe
                }
            },
            None => Mode::Subscribe,
        };
        if mode == Mode::Poll {
            self.misplaced(&[
                (
                    r.sampling_interval.as_ref().map(|v| v.span()),
                    "sampling_interval",
                ),
                (r.queue_size.as_ref().map(|v| v.span()), "queue_size"),
                (
                    r.discard_oldest.as_ref().map(|v| v.span()),
                    "discard_oldest",
                ),
                (r.deadband.as_ref().map(|v| v.span()), "deadband"),
            ], |key| format!("`{key}` is for mode = \"subscribe\"; a polled tag is read every poll_interval of its source"));
        }
        let sampling_interval = r
            .sampling_interval
            .as_ref()
            .map(|s| self.duration(&Some(s.clone()), Duration::from_secs(1)));
        let queue_size = match &r.queue_size {
            Some(q) if !(1..=10_000).contains(q.get_ref()) => {
                self.err(q, "queue_size must be 1..=10000");
                1
            }
            Some(q) => *q.get_ref() as u32,
            None => 1,
        };
        let deadband = r.deadband.as_ref().and_then(|d| {
            let dr = d.get_ref();
            let kind = self.require(d, &dr.kind, "kind", "\"absolute\" or \"percent\"")?;
            let value = self.require(d, &dr.value, "value", "the deadband, e.g. value = 0.5")?;
            let v = *value.get_ref();
            if !v.is_finite() || v < 0.0 {
                self.err(value, "deadband value must be a number ≥ 0");
                return None;
            }
            match kind.get_ref().as_str() {
                "absolute" => Some(Deadband::Absolute(v)),
                "percent" if v <= 100.0 => Some(Deadband::Percent(v)),
                "percent" => {
                    self.err(value, "a percent deadband is 0..=100");
                    None
                }
                other => {
                    self.err(
                        kind,
                        format!("unknown deadband kind {other:?}: use \"absolute\" or \"percent\""),
                    );
                    None
                }
            }
        });
        Some(OpcUaTag {
            node: node_ref,
            mode,
            sampling_interval,
            queue_size,
            discard_oldest: r.discard_oldest.as_ref().is_none_or(|d| *d.get_ref()),
            deadband,
        })
    }
}

impl OpcUaSource {
    /// A connection for the commissioning commands (`plantgate opcua …`),
    /// with the same defaults under `data_dir` as a configured source.
    pub fn for_commissioning(
        endpoint: &str,
        security_policy: SecurityPolicy,
        security_mode: SecurityMode,
        identity: Identity,
        data_dir: &std::path::Path,
        trust_dir: Option<PathBuf>,
        timeout: Duration,
    ) -> OpcUaSource {
        let opcua_dir = data_dir.join("opcua");
        OpcUaSource {
            endpoint: endpoint.to_string(),
            security_policy,
            security_mode,
            identity,
            trust_dir: trust_dir.unwrap_or_else(|| opcua_dir.join("trusted")),
            certificate: opcua_dir.join("own/cert.der"),
            private_key: opcua_dir.join("private/private.pem"),
            pki_dir: opcua_dir.join("stack"),
            publishing_interval: Duration::from_secs(1),
            poll_interval: Duration::from_secs(1),
            timeout,
            backoff_max: Duration::from_secs(30),
        }
    }
}
