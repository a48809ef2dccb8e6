//! The shipped systemd units pass `systemd-analyze verify`, with their
//! ExecStart pointed at the binary this build made: the gateway, and the
//! update service with its timer.

use std::path::Path;
use std::process::Command;

/// Copy `units` into a temporary directory (binary path replaced) and
/// verify them together; only lines about plantgate's units count.
fn verify(units: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut paths = Vec::new();
    for name in units {
        let unit = std::fs::read_to_string(root.join("systemd").join(name)).expect("unit");
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            unit.replace("/usr/bin/plantgate", env!("CARGO_BIN_EXE_plantgate")),
        )
        .expect("write unit");
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
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

#[test]
fn unit_verifies() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/plantgate.service"),
    )
    .expect("unit");
    assert!(
        unit.contains("ExecStart=/usr/bin/plantgate run"),
        "unit runs the installed binary"
    );
    verify(&["plantgate.service"]);
}

#[test]
fn update_units_verify() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let service =
        std::fs::read_to_string(root.join("systemd/plantgate-update.service")).expect("unit");
    assert!(service.contains("ExecStart=/usr/bin/plantgate update apply --from-channel"));
    assert!(service.contains("Type=oneshot"));
    let timer =
        std::fs::read_to_string(root.join("systemd/plantgate-update.timer")).expect("timer");
    assert!(
        timer.contains("RandomizedDelaySec="),
        "a fleet must not stampede"
    );
    assert!(timer.contains("Persistent=true"));
    verify(&[
        "plantgate.service",
        "plantgate-update.service",
        "plantgate-update.timer",
    ]);
}
