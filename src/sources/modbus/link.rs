//! Opening a Modbus connection: TCP (resolved at each connect) or RTU over
//! a serial line. Both end as a tokio-modbus client context.

use crate::config::modbus::{Parity, SerialLine, Transport};
use std::time::Duration;
use tokio_modbus::client::Context;
use tokio_modbus::Slave;

pub async fn connect(
    transport: &Transport,
    unit: u8,
    timeout: Duration,
) -> Result<Context, String> {
    match transport {
        Transport::Tcp { address } => {
            let resolved = tokio::time::timeout(timeout, tokio::net::lookup_host(address.as_str()))
                .await
                .map_err(|_| format!("tcp://{address}: name lookup timed out"))?
                .map_err(|e| format!("tcp://{address}: cannot resolve: {e}"))?
                .next()
                .ok_or_else(|| format!("tcp://{address}: name resolves to no address"))?;
            tokio::time::timeout(
                timeout,
                tokio_modbus::client::tcp::connect_slave(resolved, Slave(unit)),
            )
            .await
            .map_err(|_| format!("tcp://{address}: connect timed out after {timeout:?}"))?
            .map_err(|e| format!("tcp://{address}: {e}"))
        }
        Transport::Rtu(line) => open_serial(line, unit),
    }
}

fn open_serial(line: &SerialLine, unit: u8) -> Result<Context, String> {
    use tokio_serial::{DataBits, SerialPortBuilderExt, StopBits};
    let parity = match line.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let data_bits = match line.data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    let stop_bits = if line.stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    };
    let port = tokio_serial::new(&line.device, line.baud)
        .parity(parity)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .open_native_async()
        .map_err(|e| format!("rtu://{}: cannot open: {e}", line.device))?;
    Ok(tokio_modbus::client::rtu::attach_slave(port, Slave(unit)))
}
