//! OPC UA peers for the tests: an async-opcua server in-process on a
//! loopback port (stopped when dropped), and the Python `asyncua` server
//! under tests/peers/ as an independent stack.
#![allow(dead_code)]

use opcua::crypto::SecurityPolicy;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{simple_node_manager, SimpleNodeManager};
use opcua::server::{ServerBuilder, ServerHandle, ServerUserToken, ANONYMOUS_USER_TOKEN_ID};
use opcua::types::{DataValue, MessageSecurityMode, NodeId, Variant};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub const NS_URI: &str = "urn:plantgate:test";

/// A press in namespace NS_URI: Press.Counter (UInt32), Press.State (Int32),
/// Press.Temperature (Double), Press.Recipe (String), and numeric i=1001 (Double).
pub struct TestServer {
    pub port: u16,
    pub handle: ServerHandle,
    nm: Arc<SimpleNodeManager>,
    pub ns: u16,
    task: tokio::task::JoinHandle<()>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl TestServer {
    /// Start on `port`. `shift` registers a namespace before NS_URI, so its
    /// index differs from an unshifted server's (as after a server update).
    pub async fn start(port: u16, pki: &Path, shift: bool) -> TestServer {
        Self::start_with(port, pki, shift, None, 0).await
    }

    /// A server that allows at most `max_items` monitored items per subscription.
    pub async fn start_limited(pki: &Path, max_items: usize) -> TestServer {
        Self::start_with(0, pki, false, None, max_items).await
    }

    /// Also offer every supported secure policy in Sign and SignAndEncrypt,
    /// with the logins `op`/`op-password` and the X.509 user `user_cert`.
    pub async fn start_secure(pki: &Path, user_cert: &Path) -> TestServer {
        Self::start_with(0, pki, false, Some(user_cert), 0).await
    }

    async fn start_with(
        port: u16,
        pki: &Path,
        shift: bool,
        secure: Option<&Path>,
        max_items: usize,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut builder = ServerBuilder::new()
            .application_name("plantgate test server")
            .application_uri("urn:plantgate:testserver")
            .product_uri("urn:plantgate:testserver")
            .create_sample_keypair(true)
            .pki_dir(pki)
            .host("127.0.0.1")
            .port(port)
            .discovery_urls(vec![format!("opc.tcp://127.0.0.1:{port}/")])
            .trust_client_certs(true)
            .diagnostics_enabled(false)
            .add_endpoint(
                "none",
                (
                    "/",
                    SecurityPolicy::None,
                    MessageSecurityMode::None,
                    &[ANONYMOUS_USER_TOKEN_ID] as &[&str],
                ),
            );
        builder
            .limits_mut()
            .subscriptions
            .max_monitored_items_per_sub = max_items;
        if let Some(user_cert) = secure {
            let tokens = [ANONYMOUS_USER_TOKEN_ID, "op", "x509"];
            builder = builder
                .add_user_token("op", ServerUserToken::user_pass("op", "op-password"))
                .add_user_token("x509", ServerUserToken::x509("x509", user_cert));
            for (i, policy) in [
                SecurityPolicy::Basic256Sha256,
                SecurityPolicy::Aes128Sha256RsaOaep,
                SecurityPolicy::Aes256Sha256RsaPss,
            ]
            .into_iter()
            .enumerate()
            {
                for (j, mode) in [
                    MessageSecurityMode::Sign,
                    MessageSecurityMode::SignAndEncrypt,
                ]
                .into_iter()
                .enumerate()
                {
                    builder = builder.add_endpoint(
                        format!("secure{i}{j}"),
                        ("/", policy, mode, &tokens as &[&str]),
                    );
                }
            }
        }
        if shift {
            builder = builder.with_node_manager(simple_node_manager(
                NamespaceMetadata {
                    namespace_uri: "urn:plantgate:other".to_owned(),
                    ..Default::default()
                },
                "other",
            ));
        }
        let builder = builder.with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: NS_URI.to_owned(),
                ..Default::default()
            },
            "press",
        ));
        let (server, handle) = builder.build().expect("server");
        let nm = handle
            .node_managers()
            .get_by_name::<SimpleNodeManager>("press")
            .expect("node manager");
        let ns = handle.get_namespace_index(NS_URI).expect("namespace");
        {
            let mut space = nm.address_space().write();
            let press = NodeId::new(ns, "Press");
            space.add_folder(&press, "Press", "Press", &NodeId::objects_folder_id());
            let vars = vec![
                opcua::nodes::Variable::new(
                    &NodeId::new(ns, "Press.Counter"),
                    "Counter",
                    "Counter",
                    0u32,
                ),
                opcua::nodes::Variable::new(
                    &NodeId::new(ns, "Press.State"),
                    "State",
                    "State",
                    1i32,
                ),
                opcua::nodes::Variable::new(
                    &NodeId::new(ns, "Press.Temperature"),
                    "Temperature",
                    "Temperature",
                    20.0f64,
                ),
                opcua::nodes::Variable::new(
                    &NodeId::new(ns, "Press.Recipe"),
                    "Recipe",
                    "Recipe",
                    "R-100",
                ),
                opcua::nodes::Variable::new(&NodeId::new(ns, 1001u32), "Oven", "Oven", 180.0f64),
            ];
            space.add_variables(vars, &press);
        }
        let task = tokio::spawn(async move {
            let _ = server.run_with(listener).await;
        });
        TestServer {
            port,
            handle,
            nm,
            ns,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("opc.tcp://127.0.0.1:{}/", self.port)
    }

    pub fn node(&self, id: impl Into<opcua::types::Identifier>) -> NodeId {
        NodeId {
            namespace: self.ns,
            identifier: id.into(),
        }
    }

    pub fn set(&self, id: &NodeId, v: impl Into<Variant>) {
        self.nm
            .set_value(
                self.handle.subscriptions(),
                id,
                None,
                DataValue::new_now(v.into()),
            )
            .expect("set value");
    }

    /// Stop and wait until the port is closed.
    pub async fn stop(mut self) {
        self.handle.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.cancel();
        self.task.abort();
    }
}

/// The Python asyncua server, killed when dropped.
pub struct PyServer {
    pub port: u16,
    child: Child,
}

impl PyServer {
    pub fn start(args: &[&str]) -> PyServer {
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/asyncua_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 tests/peers/asyncua_server.py (pip install asyncua)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read READY");
        assert_eq!(line.trim(), "READY", "asyncua peer did not start");
        PyServer { port, child }
    }

    pub fn url(&self) -> String {
        format!("opc.tcp://127.0.0.1:{}/", self.port)
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestServer {
    /// Set a value with its own timestamps.
    pub fn set_data_value(&self, id: &NodeId, dv: DataValue) {
        self.nm
            .set_value(self.handle.subscriptions(), id, None, dv)
            .expect("set value");
    }
}

impl TestServer {
    /// Add `n` Double variables `Many.0` … under the Press folder.
    pub fn add_many(&self, n: usize) {
        let mut space = self.nm.address_space().write();
        let vars = (0..n)
            .map(|i| {
                opcua::nodes::Variable::new(
                    &NodeId::new(self.ns, format!("Many.{i}")),
                    format!("Many{i}"),
                    format!("Many{i}"),
                    i as f64,
                )
            })
            .collect();
        space.add_variables(vars, &NodeId::new(self.ns, "Press"));
    }
}
