//! `plantgate config diff OLD NEW`: each golden case under
//! tests/cases/config_diff/<case>/ holds old.toml, new.toml and the exact
//! report expected; an invalid side is refused with its diagnostics.

mod support;

use std::path::Path;
use std::process::Command;

fn diff(old: &Path, new: &Path) -> (i32, String, String) {
    let out = Command::new(support::bin())
        .args(["config", "diff"])
        .arg(old)
        .arg(new)
        .output()
        .expect("run plantgate config diff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn each_change_is_reported_in_words() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/config_diff");
    let mut seen = 0;
    for entry in std::fs::read_dir(&cases).expect("cases") {
        let dir = entry.expect("entry").path();
        let expected = std::fs::read_to_string(dir.join("expected")).expect("expected");
        let (code, out, err) = diff(&dir.join("old.toml"), &dir.join("new.toml"));
        assert_eq!(code, 0, "{}: {err}", dir.display());
        assert_eq!(out, expected, "{}", dir.display());
        seen += 1;
    }
    assert!(seen >= 2, "golden cases found: {seen}");
}

#[test]
fn an_invalid_new_config_is_refused_with_where_it_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/examples/press-line.toml");
    let text = std::fs::read_to_string(&old).expect("example");
    let bad = dir.path().join("new.toml");
    std::fs::write(&bad, text.replace("register = 0\n", "register = 70000\n")).expect("write");
    let (code, out, err) = diff(&old, &bad);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("new.toml:"), "the refusal says where: {err}");
    assert!(out.is_empty(), "no report for an invalid config: {out}");
}
