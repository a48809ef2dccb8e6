//! `plantgate check`: each golden case under tests/cases/config/<case>/ holds
//! a config.toml and the exact `FILE:LINE:COL: message` lines expected (with
//! the path written as FILE and the case's directory as DIR); shipped
//! configs must parse. `check` also looks at the files a config names.

mod support;

use std::path::Path;
use std::process::Command;

fn check(config: &Path) -> (i32, String, String) {
    let out = Command::new(support::bin())
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run plantgate check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn each_bad_config_is_reported_at_its_line_and_column() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&cases).expect("cases") {
        let dir = entry.expect("entry").path();
        let config = dir.join("config.toml");
        let expected = std::fs::read_to_string(dir.join("expected")).expect("expected");
        let (code, _, stderr) = check(&config);
        assert_eq!(code, 1, "{}: exit code", dir.display());
        let got = stderr
            .replace(&config.display().to_string(), "FILE")
            .replace(&dir.display().to_string(), "DIR");
        assert_eq!(got, expected, "{}", dir.display());
        seen += 1;
    }
    assert!(seen >= 6, "golden cases found: {seen}");
}

/// Syntax and meaning only: the shipped configs name /etc and /var/lib
/// paths of a real gateway, which `check` on this machine cannot find.
#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config");
    for name in [
        "gateway.toml",
        "examples/press-line.toml",
        "examples/oven-opcua.toml",
        "examples/mqtt-line.toml",
        "examples/sparkplug-line.toml",
        "examples/oven-line.toml",
    ] {
        if let Err(e) = plantgate::config::load(&root.join(name)) {
            panic!("{name}: {e}");
        }
    }
}

/// A dry-run config whose Odoo section names `key` as the API key file.
fn config_with_key(dir: &Path, key: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"
[gateway]
id = "gw1"
data_dir = "{data}"

[odoo]
url = "https://erp.local"
database = "plant"
login = "gw"
api_key_file = "{key}"
"#,
        data = dir.join("data").display(),
        key = key.display()
    );
    let path = dir.join("gw.toml");
    std::fs::write(&path, text).expect("config");
    path
}

#[test]
fn check_passes_when_every_named_file_is_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("odoo.key");
    std::fs::write(&key, "secret\n").expect("key");
    let (code, stdout, stderr) = check(&config_with_key(dir.path(), &key));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(!dir.path().join("data").exists(), "check creates nothing");
}

#[test]
fn check_reports_an_unreadable_key_file_at_its_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("odoo.key");
    std::fs::write(&key, "secret\n").expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).expect("chmod 000");
    let cfg = config_with_key(dir.path(), &key);
    let (code, _, stderr) = check(&cfg);
    if std::fs::File::open(&key).is_ok() {
        // Root (CAP_DAC_OVERRIDE) reads a mode-000 file: nothing to report.
        println!("skipped the unreadable-file assertion: this user can read mode 000 files (root)");
        assert_eq!(code, 0, "{stderr}");
        return;
    }
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "{}:11:16: api_key_file: cannot read",
            cfg.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_reports_a_data_dir_that_cannot_be_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("odoo.key");
    std::fs::write(&key, "secret\n").expect("key");
    // A file where the data dir's parent should be.
    std::fs::write(dir.path().join("data"), "").expect("file");
    let cfg = config_with_key(dir.path(), &key);
    let text = std::fs::read_to_string(&cfg)
        .expect("cfg")
        .replace("/data\"", "/data/store\"");
    std::fs::write(&cfg, text).expect("cfg");
    let (code, _, stderr) = check(&cfg);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(":4:12: data_dir:"), "{stderr}");
    assert!(stderr.contains("is not a directory"), "{stderr}");
}

#[test]
fn a_credential_is_checked_only_where_systemd_provides_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_with_key(dir.path(), Path::new("unused"));
    let text = std::fs::read_to_string(&cfg).expect("cfg").replace(
        "api_key_file = \"unused\"",
        "api_key_credential = \"odoo-api-key\"",
    );
    std::fs::write(&cfg, text).expect("cfg");
    let run = |creds: Option<&Path>| {
        let mut cmd = Command::new(support::bin());
        cmd.args(["check", "--config"]).arg(&cfg);
        match creds {
            Some(d) => cmd.env("CREDENTIALS_DIRECTORY", d),
            None => cmd.env_remove("CREDENTIALS_DIRECTORY"),
        };
        let out = cmd.output().expect("check");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stderr) = run(None);
    assert_eq!(code, Some(0), "outside systemd: {stderr}");
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).expect("creds dir");
    let (code, stderr) = run(Some(&creds));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("api_key_credential: cannot use")
            && stderr.contains("LoadCredential=odoo-api-key:"),
        "{stderr}"
    );
    std::fs::write(creds.join("odoo-api-key"), "secret\n").expect("credential");
    let (code, stderr) = run(Some(&creds));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let (code, _, stderr) = check(Path::new("/nonexistent/plantgate.toml"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/nonexistent/plantgate.toml: cannot read"),
        "{stderr}"
    );
}
