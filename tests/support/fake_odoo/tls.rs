//! HTTPS for the fake: a test PKI made with rcgen (a CA, a server
//! certificate for 127.0.0.1 signed by it, a client CA and a client
//! certificate for mutual TLS, and a CA that signed nothing here), written
//! as PEM files a gateway config can name.

use super::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, PublicKeyData};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::PathBuf;
use tokio_rustls::TlsAcceptor;

pub struct TestPki {
    /// Holds the PEM files.
    pub dir: tempfile::TempDir,
    /// The CA that signed the server's certificate.
    pub ca_file: PathBuf,
    /// A CA that signed nothing the fake presents.
    pub other_ca_file: PathBuf,
    /// A client certificate the fake accepts under mutual TLS, and its key.
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// base64 SHA-256 of the server key's SubjectPublicKeyInfo, computed
    /// from the key (not from the certificate the gateway parses).
    pub server_pin: String,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
    client_ca: CertificateDer<'static>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert")
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let server_ca = ca("plantgate test CA");
        let client_ca = ca("plantgate test client CA");
        let other_ca = ca("some other CA");

        let server_key = KeyPair::generate().expect("server key");
        let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("server params")
            .signed_by(&server_key, &server_ca)
            .expect("server cert");
        let digest =
            ring::digest::digest(&ring::digest::SHA256, &server_key.subject_public_key_info());
        use base64::Engine;
        let server_pin = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());

        let client_key = KeyPair::generate().expect("client key");
        let mut client_params =
            CertificateParams::new(vec!["gateway".to_string()]).expect("client params");
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "plantgate gw1");
        let client_cert = client_params
            .signed_by(&client_key, &client_ca)
            .expect("client cert");

        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write PEM");
            p
        };
        TestPki {
            ca_file: write("ca.pem", server_ca.pem()),
            other_ca_file: write("other-ca.pem", other_ca.pem()),
            client_cert_file: write("client.pem", client_cert.pem()),
            client_key_file: write("client.key", client_key.serialize_pem()),
            server_pin,
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
            client_ca: client_ca.der().clone(),
            dir,
        }
    }

    /// The fake's TLS; `require_client_cert`: mutual TLS with the client CA.
    pub fn acceptor(&self, require_client_cert: bool) -> TlsAcceptor {
        plantgate::sinks::odoo::http::install_crypto_provider();
        let builder = rustls::ServerConfig::builder();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.client_ca.clone()).expect("client CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let config = builder
            .with_single_cert(vec![self.server_cert.clone()], key)
            .expect("server TLS config");
        TlsAcceptor::from(Arc::new(config))
    }
}
