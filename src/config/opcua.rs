//! OPC UA parts of the config: the connection (endpoint, security, user
//! identity, certificates) and each tag's node, acquisition mode and
//! monitoring parameters, with their validation.

use super::files::What;
use super::raw::{RawSource, RawTag, S};
use super::Validator;
use crate::sources::opcua::node_id::NodeRef;
use std::path::PathBuf;
use std::time::Duration;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityPolicy {
    None,
    Basic256Sha256,
    Aes128Sha256RsaOaep,
    Aes256Sha256RsaPss,
}

impl SecurityPolicy {
    pub const NAMES: &'static str =
        "\"None\", \"Basic256Sha256\", \"Aes128_Sha256_RsaOaep\" or \"Aes256_Sha256_RsaPss\"";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "None" | "none" => SecurityPolicy::None,
            "Basic256Sha256" => SecurityPolicy::Basic256Sha256,
            "Aes128_Sha256_RsaOaep" => SecurityPolicy::Aes128Sha256RsaOaep,
            "Aes256_Sha256_RsaPss" => SecurityPolicy::Aes256Sha256RsaPss,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityPolicy::None => "None",
            SecurityPolicy::Basic256Sha256 => "Basic256Sha256",
            SecurityPolicy::Aes128Sha256RsaOaep => "Aes128_Sha256_RsaOaep",
            SecurityPolicy::Aes256Sha256RsaPss => "Aes256_Sha256_RsaPss",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    None,
    Sign,
    SignAndEncrypt,
}

impl SecurityMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "None" | "none" => SecurityMode::None,
            "Sign" => SecurityMode::Sign,
            "SignAndEncrypt" => SecurityMode::SignAndEncrypt,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityMode::None => "None",
            SecurityMode::Sign => "Sign",
            SecurityMode::SignAndEncrypt => "SignAndEncrypt",
        }
    }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A monitored item: the server reports changes (the default).
    Subscribe,
    /// The Read service every `poll_interval`, for servers that limit
    /// monitored items.
    Poll,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Deadband {
    /// Report a change only when it exceeds this much.
    Absolute(f64),
    /// Percent of the node's EURange (the server must have one).
    Percent(f64),
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

const MODBUS_SOURCE_KEYS: &str = "kind = \"modbus_tcp\" or \"modbus_rtu\"";

impl Validator<'_> {
    pub(super) fn opcua_source(&mut self, s: &S<RawSource>) -> Option<OpcUaSource> {
        let r = s.get_ref();
        for (v, key) in [
            (&r.address, "address"),
            (&r.device, "device"),
            (&r.parity, "parity"),
        ] {
            if let Some(v) = v {
                self.err(
                    v,
                    format!(
                        "`{key}` belongs to {MODBUS_SOURCE_KEYS}; an OPC UA source has `endpoint`"
                    ),
                );
            }
        }
        self.misplaced(
            &[
                (r.baud.as_ref().map(|v| v.span()), "baud"),
                (r.data_bits.as_ref().map(|v| v.span()), "data_bits"),
                (r.stop_bits.as_ref().map(|v| v.span()), "stop_bits"),
                (r.unit.as_ref().map(|v| v.span()), "unit"),
                (r.max_gap.as_ref().map(|v| v.span()), "max_gap"),
                (r.poll_groups.as_ref().map(|v| v.span()), "poll_groups"),
                (
                    r.reprobe_interval.as_ref().map(|v| v.span()),
                    "reprobe_interval",
                ),
            ],
            |key| format!("`{key}` belongs to {MODBUS_SOURCE_KEYS}"),
        );
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

    pub(super) fn opcua_tag(&mut self, t: &S<RawTag>) -> Option<OpcUaTag> {
        let r = t.get_ref();
        self.misplaced(&[
            (r.table.as_ref().map(|v| v.span()), "table"),
            (r.register.as_ref().map(|v| v.span()), "register"),
            (r.address.as_ref().map(|v| v.span()), "address"),
            (r.data_type.as_ref().map(|v| v.span()), "type"),
            (r.order.as_ref().map(|v| v.span()), "order"),
            (r.bit.as_ref().map(|v| v.span()), "bit"),
            (r.length.as_ref().map(|v| v.span()), "length"),
            (r.unit_id.as_ref().map(|v| v.span()), "unit_id"),
            (r.poll_group.as_ref().map(|v| v.span()), "poll_group"),
        ], |key| format!("`{key}` belongs to a Modbus tag; an OPC UA tag has `node` (the server reports the type)"));
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
