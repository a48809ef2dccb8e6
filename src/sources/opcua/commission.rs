//! The commissioning commands behind `plantgate opcua browse` and
//! `plantgate opcua trust`: one short session (or only GetEndpoints), then
//! text for a person.

use super::browse::{self, Entry};
use super::client::{ConnectError, Link};
use super::node_id::{NodeRef, NodeRefError};
use super::security::{self, CertInfo, SecurityError};
use crate::config::opcua::OpcUaSource;
use opcua::crypto::X509;
use opcua::types::{NodeId, ObjectId};

#[derive(Debug, thiserror::Error)]
pub enum CommissionError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Node(#[from] NodeRefError),
    #[error("--node {node}: {reason}")]
    Resolve { node: String, reason: String },
    #[error("browsing failed: {0}")]
    Browse(String),
    #[error("{0}: the server sent no certificate with its endpoints (it offers only security policy None)")]
    NoCertificate(String),
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// Browse from `node` (default: the Objects folder), `depth` levels.
pub async fn browse(
    config: &OpcUaSource,
    node: Option<&str>,
    depth: usize,
) -> Result<Vec<Entry>, CommissionError> {
    let start_ref: Option<NodeRef> = node.map(str::parse).transpose()?;
    let link = Link::new(config)?;
    let conn = link.connect().await?;
    let start = match &start_ref {
        Some(r) => r
            .resolve(&conn.namespaces)
            .map_err(|e| CommissionError::Resolve {
                node: r.to_string(),
                reason: e.to_string(),
            })?,
        None => NodeId::from(ObjectId::ObjectsFolder),
    };
    let result = browse::walk(&conn.session, &conn.namespaces, start, depth).await;
    conn.close(config.timeout).await;
    result.map_err(|e| CommissionError::Browse(e.to_string()))
}

/// The distinct certificates a server hands out with its endpoints.
pub async fn server_certificates(
    config: &OpcUaSource,
) -> Result<Vec<(X509, CertInfo)>, CommissionError> {
    let link = Link::new(config)?;
    let endpoints = link.endpoints().await?;
    let mut out: Vec<(X509, CertInfo)> = Vec::new();
    for e in endpoints {
        if e.server_certificate.is_null() {
            continue;
        }
        let cert = security::parse_cert(&e.server_certificate)?;
        let info = security::describe(&cert);
        if !out.iter().any(|(_, i)| i.thumbprint == info.thumbprint) {
            out.push((cert, info));
        }
    }
    if out.is_empty() {
        return Err(CommissionError::NoCertificate(config.endpoint.clone()));
    }
    Ok(out)
}
