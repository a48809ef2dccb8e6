//! A real mosquitto broker per test, on its own loopback port with its own
//! config file, stopped when the guard drops. Messages are published with
//! mosquitto_pub, an MQTT client independent of the gateway's.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
    /// What mosquitto_pub needs besides host and port (credentials,
    /// certificates).
    pub_args: Vec<String>,
}

/// Certificates made for one test: a CA, the broker's certificate (for
/// `broker.test` only, not 127.0.0.1) and a client certificate, all PEM.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn make(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "plantgate test CA");
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, cn: &str| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["broker.test".into()], "broker.test");
        let (client_cert, client_key) = leaf(vec![], "gw1");
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write pem");
            p
        };
        Pki {
            ca: write("ca.pem", &ca_cert.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
        }
    }
}

impl Broker {
    /// Anonymous clients allowed.
    pub fn start() -> Broker {
        Broker::with("allow_anonymous true\n", Vec::new())
    }

    /// Only `user` with `password` may connect (a password file made by
    /// mosquitto_passwd).
    pub fn with_password(user: &str, password: &str) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("passwd");
        let ok = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&file)
            .args([user, password])
            .status()
            .expect("run mosquitto_passwd");
        assert!(ok.success(), "mosquitto_passwd failed");
        let extra = format!("allow_anonymous false\npassword_file {}\n", file.display());
        let mut b = Broker::in_dir(dir, &extra);
        b.pub_args = ["-u", user, "-P", password].map(String::from).to_vec();
        b
    }

    /// Anonymous clients limited by an ACL file holding `acl` (mosquitto's
    /// acl_file syntax; lines before any `user` apply to anonymous clients).
    pub fn with_acl(acl: &str) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("acl");
        std::fs::write(&file, acl).expect("write acl");
        let extra = format!("allow_anonymous true\nacl_file {}\n", file.display());
        Broker::in_dir(dir, &extra)
    }

    /// TLS only, with a client certificate from `pki`'s CA required.
    pub fn with_tls(pki: &Pki) -> Broker {
        let extra = format!(
            "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            pki.ca.display(),
            pki.server_cert.display(),
            pki.server_key.display()
        );
        let mut b = Broker::in_dir(tempfile::tempdir().expect("tempdir"), &extra);
        // The broker's certificate names broker.test, not 127.0.0.1:
        // --insecure skips only that name check.
        b.pub_args = vec![
            "--cafile".into(),
            pki.ca.display().to_string(),
            "--cert".into(),
            pki.client_cert.display().to_string(),
            "--key".into(),
            pki.client_key.display().to_string(),
            "--insecure".into(),
        ];
        b
    }

    fn with(extra: &str, pub_args: Vec<String>) -> Broker {
        let mut b = Broker::in_dir(tempfile::tempdir().expect("tempdir"), extra);
        b.pub_args = pub_args;
        b
    }

    fn in_dir(dir: tempfile::TempDir, extra: &str) -> Broker {
        let port = crate::support::free_port();
        let config = dir.path().join("mosquitto.conf");
        // `user root`: mosquitto started as root would otherwise switch
        // to a user that cannot read the test's files.
        let text = format!(
            "listener {port} 127.0.0.1\nuser root\npersistence false\nlog_dest file {log}\nlog_type all\n{extra}",
            log = dir.path().join("mosquitto.log").display()
        );
        std::fs::write(&config, text).expect("write mosquitto.conf");
        let mut b = Broker {
            port,
            dir,
            config,
            child: None,
            pub_args: Vec::new(),
        };
        b.spawn();
        b
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&self.config)
            // Its log goes to the file; stderr only warns about root.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no clean goodbye to the clients.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and config.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Publish with QoS 1, waiting until the broker has it.
    pub fn publish(&self, topic: &str, payload: &str, retain: bool) {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", "1", "-t", topic, "-m", payload]);
        if retain {
            cmd.arg("-r");
        }
        cmd.args(&self.pub_args);
        let out = cmd.output().expect("run mosquitto_pub");
        assert!(
            out.status.success(),
            "mosquitto_pub {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `kind = "mqtt"` source for `broker`, with short intervals.
pub fn mqtt_source(address: &str, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "broker"
kind = "mqtt"
address = "{address}"
keep_alive = "5s"
backoff_max = "300ms"
{extra}
"#
    )
}
