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
    /// Credentials mosquitto_pub uses, when the broker wants them.
    login: Option<(String, String)>,
}

impl Broker {
    /// Anonymous clients allowed.
    pub fn start() -> Broker {
        Broker::with("allow_anonymous true\n", None)
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
        b.login = Some((user.to_string(), password.to_string()));
        b
    }

    fn with(extra: &str, login: Option<(String, String)>) -> Broker {
        let mut b = Broker::in_dir(tempfile::tempdir().expect("tempdir"), extra);
        b.login = login;
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
            login: None,
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
        if let Some((u, p)) = &self.login {
            cmd.args(["-u", u, "-P", p]);
        }
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
