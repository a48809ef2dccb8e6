//! Activation after a switch: run the restart (or reload) command, then
//! wait until the gateway answers `/healthz` with 200 and, where its
//! `/status` can be read, reports the expected version or config hash.
//! The caller restores the previous links when this fails.

use std::time::Duration;

/// What the gateway must show to pass the gate.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// `/status` `version` (a release switch).
    pub version: Option<String>,
    /// `/status` `config_hash` (a config switch).
    pub config_hash: Option<String>,
}

/// Run a command (program and arguments, no shell); Err says why in words.
pub fn run_command(cmd: &[String]) -> Result<(), String> {
    let Some((program, args)) = cmd.split_first() else {
        return Err("the command is empty".into());
    };
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", cmd.join(" ")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "`{}` failed ({}){}",
        cmd.join(" "),
        out.status,
        match stderr.trim() {
            "" => String::new(),
            s => format!(": {s}"),
        }
    ))
}

/// Poll `health_url` until it says 200 and `/status` (beside it) matches
/// `expect`, or `timeout` has passed; Err holds the last answer seen.
pub async fn wait_healthy(
    client: &reqwest::Client,
    health_url: &str,
    expect: &Expect,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let status_url = health_url
        .strip_suffix("/healthz")
        .map(|base| format!("{base}/status"));
    loop {
        let last = match probe(client, health_url, status_url.as_deref(), expect).await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not healthy within {}: {last}",
                humantime::format_duration(timeout)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn probe(
    client: &reqwest::Client,
    health_url: &str,
    status_url: Option<&str>,
    expect: &Expect,
) -> Result<(), String> {
    let resp = client
        .get(health_url)
        .send()
        .await
        .map_err(|e| format!("{health_url}: {}", cause(&e)))?;
    let code = resp.status();
    if !code.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(format!("{health_url} answered {code}: {}", body.trim()));
    }
    let Some(status_url) = status_url else {
        return Ok(());
    };
    let resp = client
        .get(status_url)
        .send()
        .await
        .map_err(|e| format!("{status_url}: {}", cause(&e)))?;
    // A status listener behind a token: /healthz is all there is to see.
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Ok(());
    }
    let status: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| format!("{status_url}: not JSON: {e}"))?;
    for (key, want) in [
        ("version", &expect.version),
        ("config_hash", &expect.config_hash),
    ] {
        if let Some(want) = want {
            let seen = status[key].as_str().unwrap_or("none");
            if seen != want {
                return Err(format!(
                    "the gateway answering reports {key} {seen}, not {want} (still the old one?)"
                ));
            }
        }
    }
    Ok(())
}

/// The innermost cause ("Connection refused"), not reqwest's "error
/// sending request".
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}
