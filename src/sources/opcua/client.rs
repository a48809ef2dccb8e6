//! Opening an OPC UA session: find the configured endpoint among those the
//! server offers, check its certificate against the trust directory, and
//! connect to the configured URL (not the one the server advertises, which
//! is wrong behind NAT or port forwarding).
//!
//! The stack's own reconnect is switched off: after a reconnect it recreates
//! subscriptions but sends no Publish requests, so no data would arrive.
//! The source instead drops a lost session and builds a new one, with
//! fresh namespaces and subscriptions.

use super::security::SecurityPolicy;
use super::security::{self, SecurityError};
use crate::config::opcua::OpcUaSource;
use futures::StreamExt;
use opcua::client::{Client, ClientBuilder, IdentityToken, Session, SessionPollResult};
use opcua::types::{EndpointDescription, NamespaceMap, UserTokenType};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{endpoint}: cannot set up the OPC UA client: {reason}")]
    Setup { endpoint: String, reason: String },
    #[error("{endpoint}: {what} timed out after {after:?}")]
    Timeout {
        endpoint: String,
        what: &'static str,
        after: Duration,
    },
    #[error("{endpoint}: cannot get the server's endpoints: {reason}")]
    Endpoints { endpoint: String, reason: String },
    #[error("{endpoint}: the server offers no endpoint with security policy {policy} and mode {mode}; it offers: {offered}")]
    NoMatchingEndpoint {
        endpoint: String,
        policy: &'static str,
        mode: &'static str,
        offered: String,
    },
    #[error("{endpoint}: the server's {policy}/{mode} endpoint does not accept {token} logins")]
    TokenNotAccepted {
        endpoint: String,
        policy: &'static str,
        mode: &'static str,
        token: &'static str,
    },
    #[error(transparent)]
    Security(#[from] SecurityError),
    #[error("{endpoint}: session refused or lost: {reason}")]
    Session { endpoint: String, reason: String },
}

/// What the session's event loop reports to the source.
#[derive(Debug)]
pub enum LinkEvent {
    Connected,
    Lost(String),
}

/// A live session, its namespace table and the task driving it.
pub struct Connection {
    pub session: Arc<Session>,
    pub namespaces: NamespaceMap,
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    driver: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Close the session politely, within `timeout`.
    pub async fn close(self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.session.disconnect()).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// One OPC UA client (its application certificate loaded or generated).
pub struct Link {
    client: Client,
    config: OpcUaSource,
}

impl Link {
    pub fn new(config: &OpcUaSource) -> Result<Link, ConnectError> {
        let setup = |reason: String| ConnectError::Setup {
            endpoint: config.endpoint.clone(),
            reason,
        };
        for dir in [&config.pki_dir, &config.trust_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| setup(format!("cannot create {}: {e}", dir.display())))?;
        }
        let keep_alive = config.timeout.max(Duration::from_secs(1));
        let client = ClientBuilder::new()
            .application_name("plantgate")
            .application_uri("urn:plantgate")
            .product_uri("urn:plantgate")
            .pki_dir(&config.pki_dir)
            .certificate_path(&config.certificate)
            .private_key_path(&config.private_key)
            // Generated into the data dir on first start when absent.
            .create_sample_keypair(true)
            // Trust is decided in `security` before connecting.
            .trust_server_certs(true)
            .verify_server_certs(false)
            .session_retry_limit(0)
            .request_timeout(config.timeout)
            .keep_alive_interval(keep_alive)
            .max_failed_keep_alive_count(2)
            .session_timeout(60_000)
            // A publish with the first values of thousands of monitored items,
            // or a large browse, holds arrays far above the stack's default
            // limit of 1000 elements.
            .max_array_length(1_000_000)
            // Room for those publishes: up to 16 MiB in 64 KiB chunks.
            .max_chunk_count(256)
            .max_message_size(256 * 65_535)
            .client()
            .map_err(|e| setup(e.join("; ")))?;
        if config.security_policy != SecurityPolicy::None
            && !(config.certificate.exists() && config.private_key.exists())
        {
            return Err(setup(format!(
                "no application certificate: cannot read or create {} and {}",
                config.certificate.display(),
                config.private_key.display()
            )));
        }
        Ok(Link {
            client,
            config: config.clone(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The server's endpoints, asked over an unsecured channel (as the
    /// standard has it), with their certificates.
    pub async fn endpoints(&self) -> Result<Vec<EndpointDescription>, ConnectError> {
        let url = self.config.endpoint.clone();
        tokio::time::timeout(
            self.config.timeout,
            self.client.get_server_endpoints_from_url(url.as_str()),
        )
        .await
        .map_err(|_| ConnectError::Timeout {
            endpoint: url.clone(),
            what: "GetEndpoints",
            after: self.config.timeout,
        })?
        .map_err(|e| ConnectError::Endpoints {
            endpoint: url.clone(),
            reason: e.to_string(),
        })
    }

    /// Open a session and read the server's namespace table.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        let c = &self.config;
        let url = c.endpoint.clone();
        let policy = security::policy(c.security_policy);
        let mode = security::mode(c.security_mode);
        let endpoints = self.endpoints().await?;
        let Some(mut endpoint) = endpoints
            .iter()
            .find(|e| e.security_policy_uri.as_ref() == policy.to_uri() && e.security_mode == mode)
            .cloned()
        else {
            let offered: Vec<String> = endpoints
                .iter()
                .map(|e| {
                    let uri = e.security_policy_uri.as_ref();
                    let name = uri.rsplit('#').next().unwrap_or(uri);
                    format!("{name}/{:?}", e.security_mode)
                })
                .collect();
            return Err(ConnectError::NoMatchingEndpoint {
                endpoint: url,
                policy: c.security_policy.name(),
                mode: c.security_mode.name(),
                offered: if offered.is_empty() {
                    "nothing".to_string()
                } else {
                    offered.join(", ")
                },
            });
        };
        if c.security_policy != SecurityPolicy::None {
            if endpoint.server_certificate.is_null() {
                return Err(SecurityError::NoCertificate {
                    policy: c.security_policy.name(),
                }
                .into());
            }
            let cert = security::parse_cert(&endpoint.server_certificate)?;
            security::check_trusted(&url, &c.trust_dir, &cert)?;
        }
        let token = security::identity_token(&c.identity)?;
        let (wanted, token_name) = match &token {
            IdentityToken::Anonymous => (UserTokenType::Anonymous, "anonymous"),
            IdentityToken::UserName(..) => (UserTokenType::UserName, "username/password"),
            IdentityToken::X509(..) => (UserTokenType::Certificate, "X.509 certificate"),
            IdentityToken::IssuedToken(_) => (UserTokenType::IssuedToken, "issued token"),
        };
        let accepted = endpoint
            .user_identity_tokens
            .as_ref()
            .is_none_or(|t| t.iter().any(|p| p.token_type == wanted));
        if !accepted {
            return Err(ConnectError::TokenNotAccepted {
                endpoint: url,
                policy: c.security_policy.name(),
                mode: c.security_mode.name(),
                token: token_name,
            });
        }
        // Connect where we were told to, not where the server says it is.
        endpoint.endpoint_url = url.as_str().into();
        let session_err = |reason: String| ConnectError::Session {
            endpoint: url.clone(),
            reason,
        };
        let (session, event_loop) = self
            .client
            .session_builder()
            .connect_to_endpoint_directly(endpoint)
            .map_err(|e| session_err(e.to_string()))?
            .user_identity_token(token)
            .build(self.client.certificate_store().clone())
            .map_err(|e| session_err(e.to_string()))?;
        let (tx, mut events) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let stream = event_loop.enter();
            tokio::pin!(stream);
            loop {
                let report = match stream.next().await {
                    Some(Ok(SessionPollResult::Reconnected(_))) => LinkEvent::Connected,
                    Some(Ok(SessionPollResult::ConnectionLost(code))) => {
                        LinkEvent::Lost(format!("connection lost: {code}"))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(code)) => LinkEvent::Lost(format!("{code}")),
                    None => LinkEvent::Lost("connection closed".to_string()),
                };
                let end = matches!(report, LinkEvent::Lost(_));
                if tx.send(report).is_err() || end {
                    return;
                }
            }
        });
        let first = tokio::time::timeout(c.timeout * 2, events.recv()).await;
        match first {
            Ok(Some(LinkEvent::Connected)) => {}
            Ok(Some(LinkEvent::Lost(why))) => {
                driver.abort();
                return Err(session_err(why));
            }
            Ok(None) => {
                driver.abort();
                return Err(session_err("connection closed".into()));
            }
            Err(_) => {
                driver.abort();
                return Err(ConnectError::Timeout {
                    endpoint: url,
                    what: "session activation",
                    after: c.timeout * 2,
                });
            }
        }
        let conn_fail = |what: &'static str| ConnectError::Timeout {
            endpoint: url.clone(),
            what,
            after: c.timeout,
        };
        let namespaces = match tokio::time::timeout(c.timeout, session.read_namespace_array()).await
        {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                driver.abort();
                return Err(session_err(format!("cannot read the namespace array: {e}")));
            }
            Err(_) => {
                driver.abort();
                return Err(conn_fail("reading the namespace array"));
            }
        };
        Ok(Connection {
            session,
            namespaces,
            events,
            driver,
        })
    }
}
