//! The commissioning commands an engineer runs before deploying a tag map:
//! `plantgate modbus read` against a live device and `plantgate tags import`
//! from a CSV tag list, whose output `plantgate check` must accept.

mod support;

use plantgate::config::modbus::ByteOrder;
use plantgate::demo::plc::{Registers, SimulatedPlc};
use plantgate::sources::modbus::codec;
use tokio::process::Command;

async fn plantgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(support::bin())
        .args(args)
        .output()
        .await
        .expect("run plantgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_read_decodes_like_the_gateway() {
    let regs = Registers::default();
    let mut words = codec::encode(&21.5f32.to_be_bytes(), ByteOrder::Cdab);
    words.extend(codec::encode(&(-3.25f32).to_be_bytes(), ByteOrder::Cdab));
    regs.set_holding(100, &words);
    regs.set_coil(3, true);
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs)
        .await
        .expect("plc");
    let target = format!("tcp://{}", plc.addr);

    let (code, out, err) = plantgate(&[
        "modbus",
        "read",
        &target,
        "holding:100",
        "--count",
        "2",
        "--type",
        "f32",
        "--order",
        "CDAB",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "holding 100 f32 CDAB = 21.5\nholding 102 f32 CDAB = -3.25\n"
    );

    let (code, out, _) = plantgate(&["modbus", "read", &target, "40101", "--count", "2"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "holding 100 = {0} (0x{0:04X})\nholding 101 = {1} (0x{1:04X})\n",
            words[0], words[1]
        )
    );

    let (code, out, _) = plantgate(&["modbus", "read", &target, "coil:3"]).await;
    assert_eq!((code, out.as_str()), (0, "coil 3 = true\n"));

    plc.registers.make_illegal(500);
    let (code, _, err) = plantgate(&["modbus", "read", &target, "holding:500"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("IllegalDataAddress"), "{err}");

    plc.stop();
    // The abort lands when the server task is next polled: until then a
    // connect is still accepted (and reset), so wait for the port to close.
    let addr = plc.addr;
    support::eventually(
        std::time::Duration::from_secs(5),
        "the PLC's port closed",
        || {
            let closed = std::net::TcpStream::connect(addr).is_err();
            async move { closed.then_some(()) }
        },
    )
    .await;
    let (code, _, err) =
        plantgate(&["modbus", "read", &target, "holding:0", "--timeout", "500ms"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("refused"), "{err}");
}

#[tokio::test]
async fn imported_tags_pass_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("tags.csv");
    std::fs::write(
        &csv,
        "name,address,type,scale,offset,engineering_unit,poll_group,order\n\
         oven_temp,30001,f32,0.1,,°C,,CDAB\n\
         parts,40101,u32,,,,fast,\n\
         door_closed,coil:7,,,,,,\n",
    )
    .expect("csv");
    let (code, tags, err) = plantgate(&[
        "tags",
        "import",
        &csv.display().to_string(),
        "--source",
        "oven1",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\ndata_dir = \"data\"\n[odoo]\ndry_run = true\n\
             [[sources]]\nname = \"oven1\"\nkind = \"modbus_tcp\"\naddress = \"10.0.0.9:502\"\n\
             [sources.poll_groups]\nfast = \"200ms\"\n\n{tags}"
        ),
    )
    .expect("config");
    let (code, out, err) = plantgate(&["check", "--config", &config.display().to_string()]).await;
    assert_eq!(code, 0, "{err}\n{tags}");
    assert!(out.contains("3 tags"), "{out}");

    std::fs::write(&csv, "name,address,type\nok,40001,u16\nbad,coil:x,bool\n").expect("csv");
    let (code, out, err) = plantgate(&["tags", "import", &csv.display().to_string()]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.starts_with(&format!("{}:3: address \"coil:x\"", csv.display())),
        "{err}"
    );
}
