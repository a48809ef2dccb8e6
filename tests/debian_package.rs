//! The Debian package (`cargo deb`, metadata in Cargo.toml, maintainer
//! scripts in packaging/debian/): its file list and conffiles, then, on a
//! CI machine as root, `apt-get install ./plantgate_*.deb` lays down the
//! install layout (release directory, current link, /usr/bin link, config,
//! units), the installed binary runs `--version` and `check` on the shipped
//! config, the installed unit passes `systemd-analyze verify`, a reinstall
//! over a release a bundle update put in place keeps that one as
//! `previous`, an upgrade to a package whose default config changed, after
//! a config switch made `gateway.toml` a link into the configs layout,
//! neither prompts (no conffile) nor touches the link, and `apt-get purge`
//! leaves nothing behind (store and credentials included).
//!
//! The package is given by PLANTGATE_DEB (.ci/run builds it first with
//! `cargo deb --profile dev`); without it, or off CI or not root, the
//! install part is skipped with the reason printed.

use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run a command; its stdout, or a panic with everything it said.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The units shipped in systemd/, each of which the package must carry.
fn units() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("systemd"))
        .expect("systemd/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".service") || n.ends_with(".timer"))
        .collect();
    names.sort();
    names
}

/// The release directory in Cargo.toml's asset list and the changelog's
/// top entry carry the version: a version bump must change both.
#[test]
fn the_package_metadata_names_this_version() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let dest = format!("\"opt/plantgate/releases/{VERSION}/plantgate\"");
    assert!(
        manifest.contains(&dest),
        "[package.metadata.deb] assets must install the binary to {dest}"
    );
    let changelog =
        std::fs::read_to_string(root().join("packaging/debian/changelog")).expect("changelog");
    let top = changelog.lines().next().unwrap_or_default();
    assert!(
        top.starts_with(&format!("plantgate ({VERSION}-")),
        "packaging/debian/changelog must open with an entry for {VERSION}: {top:?}"
    );
}

/// The package to test, or why there is none to test here.
fn package() -> Result<PathBuf, String> {
    let deb = std::env::var_os("PLANTGATE_DEB").map(PathBuf::from);
    let is_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let is_root = run(Command::new("id").arg("-u")).trim() == "0";
    match (deb, is_ci && is_root) {
        (Some(deb), true) => Ok(deb),
        (None, true) => {
            panic!("CI as root: PLANTGATE_DEB must name the package (.ci/run builds it)")
        }
        (_, false) => Err("installs into / : only with CI=true as root (see .ci/run)".into()),
    }
}

#[test]
fn the_package_installs_runs_and_purges() {
    let deb = match package() {
        Ok(deb) => deb,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let deb = std::fs::canonicalize(&deb).unwrap_or_else(|e| panic!("{}: {e}", deb.display()));

    // What the package holds, before anything is installed.
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let release = format!("./opt/plantgate/releases/{VERSION}/plantgate");
    let mut want = vec![
        release.clone(),
        "./usr/share/plantgate/gateway.toml".to_string(),
        "./usr/share/doc/plantgate/README.md".to_string(),
        "./usr/share/doc/plantgate/copyright".to_string(),
        "./usr/share/doc/plantgate/changelog.Debian.gz".to_string(),
        "./usr/share/doc/plantgate/examples/demo.toml".to_string(),
        "./usr/share/lintian/overrides/plantgate".to_string(),
    ];
    for unit in units() {
        want.push(format!("./usr/lib/systemd/system/{unit}"));
    }
    for w in &want {
        assert!(
            files.contains(&w.as_str()),
            "{w} missing from the package:\n{listing}"
        );
    }
    let binary_line = listing
        .lines()
        .find(|l| l.ends_with(&release))
        .expect("release binary");
    assert!(binary_line.starts_with("-rwxr-xr-x 0/0"), "{binary_line}");
    // The link and the data directory are made at install and run time,
    // and the config by postinst only when there is none.
    for absent in [
        "./usr/bin/plantgate",
        "./var/lib/plantgate/",
        "./etc/plantgate/gateway.toml",
    ] {
        assert!(
            !files.contains(&absent),
            "{absent} must not be in the package"
        );
    }
    // No conffile: the first `config apply` turns gateway.toml into a
    // link, which dpkg would take for a changed conffile at each upgrade.
    let control = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(
        !control.contains(" conffiles"),
        "the package has conffiles:\n{control}"
    );

    // A leftover of an earlier failed run would hide what this one does.
    let _ = Command::new("apt-get")
        .args(["purge", "-y", "-qq", "plantgate"])
        .status();

    apt_install(&deb);
    let opt = Path::new("/opt/plantgate");
    let link = |p: &str| std::fs::read_link(p).map(|t| t.display().to_string()).ok();
    assert_eq!(
        link("/opt/plantgate/current").as_deref(),
        Some(format!("releases/{VERSION}").as_str())
    );
    assert_eq!(link("/opt/plantgate/previous"), None, "nothing ran before");
    assert_eq!(
        link("/usr/bin/plantgate").as_deref(),
        Some("/opt/plantgate/current/plantgate")
    );
    assert_eq!(
        std::fs::read_to_string("/etc/plantgate/gateway.toml").expect("config"),
        std::fs::read_to_string(root().join("firmware-config/gateway.toml")).expect("shipped")
    );
    assert!(
        Path::new("/etc/plantgate/keys").is_dir(),
        "the directory of trusted bundle keys ([update] keys_dir)"
    );
    for unit in units() {
        let installed = Path::new("/usr/lib/systemd/system").join(&unit);
        assert_eq!(
            std::fs::read_to_string(&installed).expect("installed unit"),
            std::fs::read_to_string(root().join("systemd").join(&unit)).expect("unit"),
            "{unit}"
        );
        // Not enabled: the shipped config is an example until filled in.
        let wants = Path::new("/etc/systemd/system/multi-user.target.wants").join(&unit);
        let timers = Path::new("/etc/systemd/system/timers.target.wants").join(&unit);
        assert!(
            !wants.exists() && !timers.exists(),
            "{unit} enabled on install"
        );
    }

    let version = run(Command::new("/usr/bin/plantgate").arg("--version"));
    assert_eq!(version.trim(), format!("plantgate {VERSION}"));
    let check = run(Command::new("/usr/bin/plantgate").args([
        "check",
        "--config",
        "/etc/plantgate/gateway.toml",
    ]));
    assert!(
        check.starts_with("/etc/plantgate/gateway.toml: valid:"),
        "{check}"
    );
    let verify = Command::new("systemd-analyze")
        .args([
            "verify",
            "--man=no",
            "/usr/lib/systemd/system/plantgate.service",
        ])
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("plantgate")).collect();
    assert!(
        verify.status.success() && ours.is_empty(),
        "systemd-analyze verify: {stderr}"
    );

    // A bundle update installed another release and switched to it; the
    // package installed again takes over and keeps that one as previous.
    let bundled = opt.join("releases/0.0.1-bundle");
    std::fs::create_dir_all(&bundled).expect("mkdir");
    std::fs::copy(opt.join("current/plantgate"), bundled.join("plantgate")).expect("copy");
    std::os::unix::fs::symlink("releases/0.0.1-bundle", opt.join("current.tmp")).expect("ln");
    std::fs::rename(opt.join("current.tmp"), opt.join("current")).expect("switch");
    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(
        link("/opt/plantgate/current").as_deref(),
        Some(format!("releases/{VERSION}").as_str())
    );
    assert_eq!(
        link("/opt/plantgate/previous").as_deref(),
        Some("releases/0.0.1-bundle")
    );
    // Installed again over itself: current stays, previous is not itself.
    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(
        link("/opt/plantgate/previous").as_deref(),
        Some("releases/0.0.1-bundle")
    );

    // A config bundle applied, as `config apply` lays it out: the package's
    // config kept as the previous one, gateway.toml a link to the active
    // one, which the operator's bundle changed.
    let shipped =
        std::fs::read_to_string(root().join("firmware-config/gateway.toml")).expect("shipped");
    let layout = plantgate::update::layout::Layout::new(Path::new("/"));
    layout
        .adopt_plain_config(|_| "package".to_string())
        .expect("adopt the package's config");
    let applied = format!("{shipped}\n# line 3, as its config bundle has it\n");
    std::fs::create_dir_all("/etc/plantgate/configs/line3").expect("config dir");
    std::fs::write("/etc/plantgate/configs/line3/gateway.toml", &applied).expect("config");
    layout
        .set_config_link(plantgate::update::layout::PREVIOUS_CONFIG, "package")
        .expect("previous");
    layout
        .set_config_link(plantgate::update::layout::ACTIVE_CONFIG, "line3")
        .expect("active");
    // The next package revision ships a changed default config: with a
    // conffile, dpkg would ask (and fail here, with no stdin) or replace
    // the link.
    let newer_default = format!("{shipped}\n# the next release's default\n");
    let (_tree, newer) = repack(&deb, &newer_default);
    run(Command::new("dpkg").arg("-i").arg(&newer));
    assert_eq!(
        link("/etc/plantgate/gateway.toml").as_deref(),
        Some("active-config/gateway.toml"),
        "the upgrade left the config link alone"
    );
    assert_eq!(
        std::fs::read_to_string("/etc/plantgate/gateway.toml").expect("config"),
        applied
    );
    assert_eq!(
        std::fs::read_to_string("/usr/share/plantgate/gateway.toml").expect("default"),
        newer_default
    );
    let leftovers: Vec<_> = std::fs::read_dir("/etc/plantgate")
        .expect("/etc/plantgate")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".dpkg-") || n.ends_with(".new"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // What a running gateway and its operator leave: the store, a key.
    // As systemd lays out a DynamicUser= StateDirectory= (unless there
    // is one already).
    if Path::new("/var/lib/plantgate").symlink_metadata().is_err() {
        std::fs::create_dir_all("/var/lib/private/plantgate").expect("state dir");
        std::os::unix::fs::symlink("private/plantgate", "/var/lib/plantgate").expect("link");
    }
    std::fs::create_dir_all("/var/lib/plantgate/store").expect("store dir");
    std::fs::write("/var/lib/plantgate/store/db", b"events").expect("store");
    std::fs::write("/etc/plantgate/odoo-api-key", b"secret\n").expect("key");

    run(Command::new("apt-get").args(["purge", "-y", "-qq", "plantgate"]));
    let status = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "plantgate"])
        .output()
        .expect("dpkg-query");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.is_empty() || status.contains("not-installed"),
        "still known to dpkg: {status}"
    );
    let mut left: Vec<PathBuf> = [
        "/opt/plantgate",
        "/usr/bin/plantgate",
        "/etc/plantgate",
        "/var/lib/plantgate",
        "/var/lib/private/plantgate",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    left.extend(
        units()
            .iter()
            .map(|u| Path::new("/usr/lib/systemd/system").join(u)),
    );
    let left: Vec<&PathBuf> = left
        .iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
}

/// The package as its next revision (`-2`) with `default` as the shipped
/// default config: unpacked, changed and built again with dpkg-deb.
fn repack(deb: &Path, default: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let rel = "usr/share/plantgate/gateway.toml";
    std::fs::write(tree.join(rel), default).expect("default config");
    let control_path = tree.join("DEBIAN/control");
    let control = std::fs::read_to_string(&control_path).expect("control");
    let control = control.replace(
        &format!("Version: {VERSION}-1\n"),
        &format!("Version: {VERSION}-2\n"),
    );
    assert!(
        control.contains(&format!("Version: {VERSION}-2\n")),
        "{control}"
    );
    std::fs::write(&control_path, control).expect("control");
    let sums_path = tree.join("DEBIAN/md5sums");
    if let Ok(sums) = std::fs::read_to_string(&sums_path) {
        let sum = run(Command::new("md5sum").arg(rel).current_dir(&tree));
        let sums: String = sums
            .lines()
            .map(|l| if l.ends_with(rel) { sum.trim_end() } else { l })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&sums_path, sums).expect("md5sums");
    }
    let out = dir.path().join("plantgate-next.deb");
    run(Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .arg("-b")
        .arg(&tree)
        .arg(&out));
    (dir, out)
}

fn apt_install(deb: &Path) {
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .arg(deb));
}
