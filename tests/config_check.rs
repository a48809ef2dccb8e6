//! `plantgate check`: each golden case under tests/cases/config/<case>/ holds
//! a config.toml and the exact `FILE:LINE:COL: message` lines expected (with
//! the path written as FILE); shipped configs must pass.

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
        let got = stderr.replace(&config.display().to_string(), "FILE");
        assert_eq!(got, expected, "{}", dir.display());
        seen += 1;
    }
    assert!(seen >= 6, "golden cases found: {seen}");
}

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config");
    for name in [
        "gateway.toml",
        "examples/press-line.toml",
        "examples/oven-opcua.toml",
    ] {
        let (code, stdout, stderr) = check(&root.join(name));
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(stdout.contains("valid"), "{stdout}");
    }
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
