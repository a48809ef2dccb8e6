//! The shipped systemd unit passes `systemd-analyze verify`, with ExecStart
//! pointed at the binary this build made.

use std::path::Path;
use std::process::Command;

#[test]
fn unit_verifies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/plantgate.service")).expect("unit");
    assert!(
        unit.contains("ExecStart=/usr/bin/plantgate run"),
        "unit runs the installed binary"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plantgate.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/plantgate", env!("CARGO_BIN_EXE_plantgate")),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze must be installed (Debian package systemd); .ci/run installs it");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines about other units on this machine are not ours to judge.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("plantgate")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
