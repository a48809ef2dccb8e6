//! Updates in a temporary root, with Debian's `minisign` signing and the
//! real binary as the service: a signed release bundle is applied and the
//! gateway comes up on it; tampered, unsigned, foreign-key, wrong-target,
//! older and store-incompatible bundles are refused with nothing changed;
//! a release that never gets healthy is rolled back by itself; a config
//! bundle is applied and reloaded, and an invalid one is refused while the
//! running config stays; the channel is fetched over HTTPS with a test CA
//! and a truncated download is refused by its hash.
//!
//! The "service manager" is a shell script (the restart command): it stops
//! the gateway it started before (pid file) and starts
//! `ROOT/opt/plantgate/current/plantgate run` in the background.

mod support;

use plantgate::update::TARGET;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::{eventually, free_port, get};

/// A temporary root with the layout's directories, a trusted key, the
/// fake service manager and a gateway config.
struct Root {
    dir: tempfile::TempDir,
    /// The status listener, `http://127.0.0.1:PORT`.
    base: String,
    port: u16,
}

impl Root {
    fn new(health_timeout: &str) -> Root {
        Self::with_update(health_timeout, "")
    }

    /// `extra`: more `[update]` keys.
    fn with_update(health_timeout: &str, extra: &str) -> Root {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let r = Root {
            dir,
            base: format!("http://127.0.0.1:{port}"),
            port,
        };
        for d in [
            "etc/plantgate/keys",
            "opt/plantgate",
            "var/lib/plantgate",
            "run",
            "signing",
        ] {
            std::fs::create_dir_all(r.path(d)).expect("mkdir");
        }
        keygen(&r.path("signing/release"));
        keygen(&r.path("signing/other"));
        std::fs::copy(
            r.path("signing/release.pub"),
            r.path("etc/plantgate/keys/release.pub"),
        )
        .expect("trust key");
        let root = r.dir.path().display().to_string();
        script(
            &r.path("restart.sh"),
            &format!(
                r#"#!/bin/sh
# Stop the gateway started before, then start the current release.
pid=$(cat {root}/run/pid 2>/dev/null)
if [ -n "$pid" ]; then
  kill "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
fi
PLANTGATE_LOG=warn {root}/opt/plantgate/current/plantgate run --config {root}/etc/plantgate/gateway.toml >>{root}/run/log 2>&1 &
echo $! > {root}/run/pid
"#
            ),
        );
        script(
            &r.path("reload.sh"),
            &format!("#!/bin/sh\nexec kill -HUP $(cat {root}/run/pid)\n"),
        );
        std::fs::write(
            r.path("etc/plantgate/gateway.toml"),
            r.gateway_toml("gw1", health_timeout, extra),
        )
        .expect("config");
        r
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A valid config: no sources, dry-run Odoo, the update section
    /// pointing into this root.
    fn gateway_toml(&self, id: &str, health_timeout: &str, extra: &str) -> String {
        let root = self.dir.path().display();
        format!(
            r#"[gateway]
id = "{id}"
data_dir = "{root}/var/lib/plantgate"

[status]
listen = "127.0.0.1:{port}"

[odoo]
dry_run = true

[update]
root = "{root}"
health_timeout = "{health_timeout}"
restart_command = ["sh", "{root}/restart.sh"]
reload_command = ["sh", "{root}/reload.sh"]
{extra}
"#,
            port = self.port,
        )
    }

    /// `plantgate ARGS --root ROOT`: exit code, stdout, stderr.
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(support::bin())
            .args(args)
            .arg("--root")
            .arg(self.dir.path())
            .env("PLANTGATE_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run plantgate");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// A release bundle built with `plantgate bundle release`, signed
    /// with `key` (a name under signing/), or unsigned.
    fn release(&self, version: &str, binary: &Path, extra: &[&str], key: Option<&str>) -> PathBuf {
        let out = self.path(&format!("plantgate-{version}.tar"));
        let mut args = vec!["bundle", "release", "--version", version, "--binary"];
        let bin = binary.display().to_string();
        let o = out.display().to_string();
        args.push(&bin);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-o", &o]);
        let st = Command::new(support::bin())
            .args(&args)
            .stdout(Stdio::null())
            .status()
            .expect("bundle release");
        assert!(st.success(), "bundle release");
        if let Some(key) = key {
            sign(&self.path(&format!("signing/{key}")), &out);
        }
        out
    }

    fn current(&self) -> Option<PathBuf> {
        std::fs::read_link(self.path("opt/plantgate/current")).ok()
    }

    fn previous(&self) -> Option<PathBuf> {
        std::fs::read_link(self.path("opt/plantgate/previous")).ok()
    }

    async fn status(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&get(&format!("{}/status", self.base)).await?).ok()
    }

    /// The gateway answering on the status port, and its config hash.
    async fn running_hash(&self) -> String {
        eventually(Duration::from_secs(60), "the gateway healthy", || async {
            get(&format!("{}/healthz", self.base)).await?;
            self.status().await?["config_hash"]
                .as_str()
                .map(str::to_string)
        })
        .await
    }
}

impl Drop for Root {
    /// Stop the gateway the fake service manager started (by its pid).
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.path("run/pid")) {
            let pid = pid.trim().to_string();
            let _ = Command::new("kill").arg(&pid).status();
            for _ in 0..600 {
                let alive = Command::new("kill")
                    .args(["-0", &pid])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !alive {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("script");
}

/// A passwordless minisign key pair: PREFIX.pub, PREFIX.key.
fn keygen(prefix: &Path) {
    let out = Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(prefix.with_extension("pub"))
        .arg("-s")
        .arg(prefix.with_extension("key"))
        .stdin(Stdio::null())
        .output()
        .expect("Debian's minisign must be installed (apt-get install minisign; .ci/run does)");
    assert!(out.status.success(), "minisign -G: {out:?}");
}

/// `minisign -S -s KEY -m FILE` → FILE.minisig.
fn sign(prefix: &Path, file: &Path) {
    let out = Command::new("minisign")
        .args(["-S", "-s"])
        .arg(prefix.with_extension("key"))
        .arg("-m")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("minisign");
    assert!(out.status.success(), "minisign -S: {out:?}");
}

/// A "release" that is no gateway at all: it exits at once.
fn broken_binary(root: &Root) -> PathBuf {
    let p = root.path("broken-plantgate");
    script(
        &p,
        "#!/bin/sh\necho 'this release cannot start' >&2\nexit 3\n",
    );
    p
}

fn sha256(path: &Path) -> String {
    plantgate::update::bundle::sha256_hex(&std::fs::read(path).expect("read"))
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_release_applies_and_a_never_healthy_one_is_rolled_back() {
    let root = Root::new("20s");
    let real = support::bin();

    // First install: the real binary, as version VERSION.
    let good = root.release(VERSION, &real, &[], Some("release"));
    let (code, out, err) = root.cli(&["update", "apply", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("running and healthy"), "{out}");
    assert_eq!(
        root.current(),
        Some(PathBuf::from(format!("releases/{VERSION}")))
    );
    assert_eq!(
        sha256(&root.path(&format!("opt/plantgate/releases/{VERSION}/plantgate"))),
        sha256(&real),
        "the installed binary is the bundle's"
    );
    let version = root.status().await.expect("status")["version"].clone();
    assert_eq!(version, VERSION);
    let pid_before = std::fs::read_to_string(root.path("run/pid")).expect("pid");

    // A newer release that never becomes healthy.
    let broken = root.release("99.0.0", &broken_binary(&root), &[], Some("release"));
    let (code, out, err) = root.cli(&["update", "apply", broken.to_str().unwrap()]);
    assert_eq!(code, 3, "rolled back: {out}{err}");
    assert!(
        err.contains("release 99.0.0 failed its health check and was rolled back")
            && err.contains(&format!("release {VERSION} runs again")),
        "{err}"
    );
    assert_eq!(
        root.current(),
        Some(PathBuf::from(format!("releases/{VERSION}")))
    );
    assert_eq!(root.previous(), None, "the links are as before the update");
    // The previous release was started again and is the one answering.
    let pid_after = std::fs::read_to_string(root.path("run/pid")).expect("pid");
    assert_ne!(pid_before, pid_after, "restarted");
    root.running_hash().await;
    assert_eq!(root.status().await.expect("status")["version"], VERSION);
    let (code, out, _) = root.cli(&["update", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("current:  {VERSION}")), "{out}");
    assert!(out.contains("99.0.0 (failed its health check"), "{out}");
    // Nothing to roll back to by hand: the failed release is not kept as previous.
    let (code, _, err) = root.cli(&["update", "rollback"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no previous release"), "{err}");

    // `update rollback` by hand: as if 99.1.0 ran (laid out here; the real
    // binary reports VERSION, so it could not pass an update's gate) with
    // VERSION kept as previous.
    let releases = root.path("opt/plantgate/releases");
    std::fs::create_dir_all(releases.join("99.1.0")).unwrap();
    std::fs::copy(real, releases.join("99.1.0/plantgate")).unwrap();
    std::fs::write(
        releases.join("99.1.0/manifest.toml"),
        format!("kind = \"release\"\nversion = \"99.1.0\"\ntarget = \"{TARGET}\"\n[files]\n"),
    )
    .unwrap();
    let relink = |name: &str, to: &str| {
        let tmp = root.path("opt/plantgate/tmp-link");
        std::os::unix::fs::symlink(to, &tmp).unwrap();
        std::fs::rename(&tmp, root.path(&format!("opt/plantgate/{name}"))).unwrap();
    };
    relink("previous", &format!("releases/{VERSION}"));
    relink("current", "releases/99.1.0");
    let (code, out, err) = root.cli(&["update", "rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("rolled back: {VERSION} is running and healthy")),
        "{out}"
    );
    assert_eq!(
        root.current(),
        Some(PathBuf::from(format!("releases/{VERSION}")))
    );
    assert_eq!(root.previous(), Some(PathBuf::from("releases/99.1.0")));
    assert_ne!(
        std::fs::read_to_string(root.path("run/pid")).unwrap(),
        pid_after,
        "restarted"
    );
    root.running_hash().await;
}

#[test]
fn untrusted_or_unfit_bundles_are_refused_and_nothing_changes() {
    let root = Root::new("20s");
    let real = support::bin();
    // An installed release to compare with, without starting it.
    let installed = root.path("opt/plantgate/releases/1.0.0");
    std::fs::create_dir_all(&installed).expect("mkdir");
    std::fs::write(
        installed.join("manifest.toml"),
        format!("kind = \"release\"\nversion = \"1.0.0\"\ntarget = \"{TARGET}\"\n[files]\n"),
    )
    .expect("manifest");
    std::os::unix::fs::symlink("releases/1.0.0", root.path("opt/plantgate/current")).expect("link");
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir(root.path("opt/plantgate/releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let refused = |bundle: &Path, extra: &[&str], what: &str| {
        let mut args = vec!["update", "apply", bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (code, out, err) = root.cli(&args);
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert!(err.contains(what), "expected {what:?} in: {err}");
        assert_eq!(
            root.current(),
            Some(PathBuf::from("releases/1.0.0")),
            "{what}"
        );
        assert_eq!(
            listing(),
            vec!["1.0.0".to_string()],
            "{what}: nothing installed"
        );
        assert!(!root.path("run/pid").exists(), "{what}: nothing restarted");
    };

    // Tampered after signing: one byte of the binary changed.
    let b = root.release("1.1.0", &real, &[], Some("release"));
    let mut bytes = std::fs::read(&b).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&b, &bytes).unwrap();
    refused(&b, &[], "the signature does not match the file");

    // Signed with a key this gateway does not trust (Debian's minisign,
    // another key pair).
    let b = root.release("1.1.0", &real, &[], Some("other"));
    refused(&b, &[], "signed with a key that is not trusted here");

    // No signature at all.
    let b = root.release("1.1.0", &real, &[], None);
    refused(&b, &[], "is not signed");

    // Built for another target.
    let other = if TARGET.starts_with("aarch64") {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    };
    let b = root.release("1.1.0", &real, &["--target", other], Some("release"));
    refused(
        &b,
        &[],
        &format!("is built for {other}, this gateway runs {TARGET}"),
    );

    // Older than the installed release.
    let b = root.release("0.9.0", &real, &[], Some("release"));
    refused(&b, &[], "older than the installed 1.0.0");

    // The store on disk is newer than the release reads...
    let store = root.path("var/lib/plantgate/store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("plantgate-format"), "7\n").unwrap();
    let b = root.release("1.1.0", &real, &[], Some("release"));
    refused(&b, &[], "has format 7 (written by a newer release)");
    // ...or older than it can convert.
    std::fs::write(store.join("plantgate-format"), "1\n").unwrap();
    let b = root.release(
        "1.1.0",
        &real,
        &["--min-store-format", "2", "--store-format", "2"],
        Some("release"),
    );
    refused(&b, &[], "reads event stores from format 2 on");
    assert_eq!(
        std::fs::read_to_string(store.join("plantgate-format")).unwrap(),
        "1\n",
        "the data dir is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_bundle_is_applied_and_an_invalid_one_refused_while_the_running_config_stays() {
    let root = Root::new("30s");
    // A gateway running the package's plain gateway.toml.
    let good = root.release(VERSION, &support::bin(), &[], Some("release"));
    let (code, out, err) = root.cli(&["update", "apply", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let original = std::fs::read_to_string(root.path("etc/plantgate/gateway.toml")).unwrap();
    assert_eq!(
        root.running_hash().await,
        sha256(&root.path("etc/plantgate/gateway.toml"))
    );

    let config_bundle = |name: &str, text: &str| {
        let toml = root.path(&format!("{name}.toml"));
        std::fs::write(&toml, text).unwrap();
        let out = root.path(&format!("{name}.tar"));
        // A tag list travels with the config (kept beside it).
        let csv = root.path("press-tags.csv");
        std::fs::write(&csv, "name,address,type\nparts,40101,u32\n").unwrap();
        let st = Command::new(support::bin())
            .args(["bundle", "config", "--version", name])
            .arg(&toml)
            .arg(&csv)
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        sign(&root.path("signing/release"), &out);
        out
    };

    // An invalid tag map: refused with the place of the problem, and the
    // gateway goes on with its config.
    let bad_text = format!(
        "{}\n[[tags]]\nname = \"t\"\nsource = \"nowhere\"\nregister = 1\n",
        root.gateway_toml("gw2", "30s", "")
    );
    let bad = config_bundle("bad", &bad_text);
    let (code, out, err) = root.cli(&["config", "apply", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("the running config stays"), "{err}");
    assert!(err.contains("gateway.toml:"), "FILE:LINE:COL: {err}");
    assert!(err.contains("nowhere"), "{err}");
    assert_eq!(
        std::fs::read_to_string(root.path("etc/plantgate/gateway.toml")).unwrap(),
        original
    );
    assert_eq!(
        root.running_hash().await,
        sha256(&root.path("etc/plantgate/gateway.toml"))
    );

    // A valid one: switched, reloaded, and the gateway runs it.
    // Its health_timeout is the one the next apply waits for.
    let new_text = root.gateway_toml("gw2", "10s", "");
    let new = config_bundle("line3", &new_text);
    let (code, out, err) = root.cli(&["config", "apply", new.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the gateway runs it"), "{out}");
    let toml = root.path("etc/plantgate/gateway.toml");
    assert!(std::fs::symlink_metadata(&toml)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&toml).unwrap(), new_text);
    let hash = plantgate::update::bundle::sha256_hex(new_text.as_bytes());
    assert_eq!(root.running_hash().await, hash);
    assert_eq!(root.status().await.unwrap()["gateway"], "gw2");
    // The package's config is kept as the previous one.
    assert!(root
        .path("etc/plantgate/active-config/press-tags.csv")
        .is_file());
    let prev = root.path("etc/plantgate/previous-config/gateway.toml");
    assert_eq!(std::fs::read_to_string(&prev).unwrap(), original);
    // No file of the Debian package is where the apply put links and
    // configs: dpkg would see it changed (a conffile: a prompt at the next
    // upgrade) or put its own back over the link.
    let moved = layout_paths(&root.path("etc/plantgate"));
    assert!(
        moved.iter().any(|p| p == "etc/plantgate/gateway.toml"),
        "{moved:?}"
    );
    for asset in package_assets() {
        assert!(
            !moved
                .iter()
                .any(|m| asset == *m || asset.starts_with(&format!("{m}/"))),
            "the package ships {asset}, which config apply replaces"
        );
    }

    // Valid, but the gateway cannot run it (its status port is taken): the
    // reload fails, the gate sees the old config still running, and the
    // links go back.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let cannot_run = root.gateway_toml("gw3", "10s", "").replace(
        &format!("127.0.0.1:{}", root.port),
        &format!("127.0.0.1:{busy_port}"),
    );
    let b = config_bundle("busy", &cannot_run);
    let (code, out, err) = root.cli(&["config", "apply", b.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("failed its health check and was rolled back"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&toml).unwrap(),
        new_text,
        "the old config stays"
    );
    assert_eq!(std::fs::read_to_string(&prev).unwrap(), original);
    assert_eq!(root.running_hash().await, hash);
    drop(busy);
}

/// The paths under `etc` (as `etc/plantgate/…`) that are links or hold
/// applied configs.
fn layout_paths(etc: &Path) -> Vec<String> {
    std::fs::read_dir(etc)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() == "configs" || e.file_type().is_ok_and(|t| t.is_symlink()))
        .map(|e| format!("etc/plantgate/{}", e.file_name().to_string_lossy()))
        .collect()
}

/// Where the Debian package installs its files (Cargo.toml's
/// `[package.metadata.deb] assets`), without the leading `/`.
fn package_assets() -> Vec<String> {
    let manifest: toml::Table = toml::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap(),
    )
    .unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    assets
        .iter()
        .map(|a| a[1].as_str().unwrap().trim_start_matches('/').to_string())
        .collect()
}

/// A file server over HTTPS with the test CA's certificate for 127.0.0.1.
async fn https_server(
    acceptor: tokio_rustls::TlsAcceptor,
    files: Vec<(String, Vec<u8>)>,
) -> String {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, files) = (acceptor.clone(), files.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let files = files.clone();
                        async move {
                            let found = files.iter().find(|(p, _)| p == req.uri().path());
                            let resp = match found {
                                Some((_, data)) => {
                                    hyper::Response::new(Full::new(Bytes::from(data.clone())))
                                }
                                None => hyper::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::from_static(b"not found")))
                                    .unwrap(),
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    format!("https://127.0.0.1:{}", addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_over_https_with_a_test_ca_and_a_truncated_download_refused() {
    let pki = support::fake_odoo::TestPki::new();
    // Built in a scratch root: only its bundle is served.
    let scratch = Root::new("30s");
    let bundle = scratch.release(VERSION, &support::bin(), &[], Some("release"));
    let bytes = std::fs::read(&bundle).unwrap();
    let sig = std::fs::read(plantgate::update::bundle::signature_path(&bundle)).unwrap();
    let full_hash = plantgate::update::bundle::sha256_hex(&bytes);
    let manifest = |name: &str| {
        format!(
            "[[releases]]\nversion = \"{VERSION}\"\ntarget = \"{TARGET}\"\nbundle = \"{name}\"\nsha256 = \"{full_hash}\"\n\n[[releases]]\nversion = \"999.0.0\"\ntarget = \"sparc-unknown-none\"\nbundle = \"x.tar\"\nsha256 = \"00\"\n"
        )
    };
    let base = https_server(
        pki.acceptor(false),
        vec![
            (
                "/stable/channel.toml".into(),
                manifest("good.tar").into_bytes(),
            ),
            ("/stable/good.tar".into(), bytes.clone()),
            ("/stable/good.tar.minisig".into(), sig.clone()),
            ("/cut/channel.toml".into(), manifest("cut.tar").into_bytes()),
            // A download cut short: the server sends less than the bundle.
            ("/cut/cut.tar".into(), bytes[..bytes.len() / 2].to_vec()),
            ("/cut/cut.tar.minisig".into(), sig),
        ],
    )
    .await;
    let with_channel = |path: &str, ca: &Path| {
        let root = Root::with_update(
            "30s",
            &format!("channel = \"{base}{path}\"\nca_file = \"{}\"", ca.display()),
        );
        std::fs::copy(
            scratch.path("signing/release.pub"),
            root.path("etc/plantgate/keys/release.pub"),
        )
        .unwrap();
        root
    };

    // A channel whose certificate is not from the configured CA.
    let root = with_channel("/stable/channel.toml", &pki.other_ca_file);
    let (code, out, err) = root.cli(&["update", "check"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("not signed by a CA this gateway trusts"),
        "{err}"
    );
    drop(root);

    // The truncated download.
    let root = with_channel("/cut/channel.toml", &pki.ca_file);
    let (code, out, err) = root.cli(&["update", "apply", "--from-channel"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("incomplete or altered"), "{err}");
    assert_eq!(root.current(), None, "nothing installed");
    assert!(!root
        .path(&format!("opt/plantgate/releases/{VERSION}"))
        .exists());
    drop(root);

    // The good channel: a check, then the update from it.
    let root = with_channel("/stable/channel.toml", &pki.ca_file);
    let (code, out, err) = root.cli(&["update", "check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("update available: {VERSION} (installed: none)")),
        "{out}"
    );
    let (code, out, err) = root.cli(&["update", "apply", "--from-channel"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        root.current(),
        Some(PathBuf::from(format!("releases/{VERSION}")))
    );
    root.running_hash().await;
    let (code, out, _) = root.cli(&["update", "check"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("up to date: {VERSION}")), "{out}");
}
