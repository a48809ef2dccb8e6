//! Opening a Modbus connection: TCP (resolved at each connect) or RTU over
//! a serial line. Both end as a tokio-modbus client context over a tapped
//! stream, so that a reply tokio-modbus rejects (or drops) can be told
//! apart from no reply and explained from its bytes.

use super::frame::{self, Framing};
use super::types::Parity;
use crate::config::modbus::{SerialLine, Transport};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_modbus::client::Context;
use tokio_modbus::Slave;

/// Bytes kept per direction: more than the largest frame (260 on TCP, 256
/// on RTU), so a reply can be judged, and a flood of noise stays bounded.
const KEEP: usize = 512;

/// What went over the link for the request in flight.
#[derive(Clone, Default)]
pub struct Wire(Arc<Mutex<WireLog>>);

#[derive(Default)]
struct WireLog {
    sent: Vec<u8>,
    received: Vec<u8>,
    /// All bytes received, also those past `KEEP`.
    received_total: usize,
}

/// A copy of one exchange.
pub struct Exchange {
    pub sent: Vec<u8>,
    pub received: Vec<u8>,
    pub received_total: usize,
}

impl Wire {
    fn log(&self) -> std::sync::MutexGuard<'_, WireLog> {
        // A poisoned lock only means a panic elsewhere mid-copy of bytes.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new request is about to go out: forget the last exchange.
    pub fn begin(&self) {
        let mut l = self.log();
        l.sent.clear();
        l.received.clear();
        l.received_total = 0;
    }

    pub fn exchange(&self) -> Exchange {
        let l = self.log();
        Exchange {
            sent: l.sent.clone(),
            received: l.received.clone(),
            received_total: l.received_total,
        }
    }

    fn wrote(&self, bytes: &[u8]) {
        let mut l = self.log();
        let room = KEEP.saturating_sub(l.sent.len());
        l.sent.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn read(&self, bytes: &[u8]) {
        let mut l = self.log();
        l.received_total += bytes.len();
        let room = KEEP.saturating_sub(l.received.len());
        l.received
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Why bytes that came back are not a reply, as an engineer reads it
/// ("garbled answer: bad CRC (...); 7 bytes"), or `None` when no byte came
/// back at all. `error` is tokio-modbus's word, used when the bytes look
/// right field by field (tokio-modbus is stricter in a few places).
pub fn garbled(framing: Framing, wire: &Wire, error: Option<&str>) -> Option<String> {
    let x = wire.exchange();
    if x.received_total == 0 {
        return None;
    }
    let faults = frame::diagnose(framing, &x.sent, &x.received);
    let what = if !faults.is_empty() {
        frame::describe(&faults)
    } else if let Some(e) = error {
        e.to_string()
    } else {
        "not accepted as a reply".to_string()
    };
    Some(format!(
        "garbled answer: {what}; {} bytes",
        x.received_total
    ))
}

/// The stream under tokio-modbus, copying what passes into a [`Wire`].
struct Tap<T> {
    inner: T,
    wire: Wire,
}

impl<T> std::fmt::Debug for Tap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tap<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            self.wire.read(&buf.filled()[before..]);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.wire.wrote(&buf[..*n]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub fn framing(transport: &Transport) -> Framing {
    match transport {
        Transport::Tcp { .. } => Framing::Tcp,
        Transport::Rtu(_) => Framing::Rtu,
    }
}

pub async fn connect(
    transport: &Transport,
    unit: u8,
    timeout: Duration,
) -> Result<(Context, Wire), String> {
    let wire = Wire::default();
    let ctx = match transport {
        Transport::Tcp { address } => {
            let resolved = tokio::time::timeout(timeout, tokio::net::lookup_host(address.as_str()))
                .await
                .map_err(|_| format!("tcp://{address}: name lookup timed out"))?
                .map_err(|e| format!("tcp://{address}: cannot resolve: {e}"))?
                .next()
                .ok_or_else(|| format!("tcp://{address}: name resolves to no address"))?;
            let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(resolved))
                .await
                .map_err(|_| format!("tcp://{address}: connect timed out after {timeout:?}"))?
                .map_err(|e| format!("tcp://{address}: {e}"))?;
            let tap = Tap {
                inner: stream,
                wire: wire.clone(),
            };
            tokio_modbus::client::tcp::attach_slave(tap, Slave(unit))
        }
        Transport::Rtu(line) => open_serial(line, unit, &wire)?,
    };
    Ok((ctx, wire))
}

fn open_serial(line: &SerialLine, unit: u8, wire: &Wire) -> Result<Context, String> {
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
    let tap = Tap {
        inner: port,
        wire: wire.clone(),
    };
    Ok(tokio_modbus::client::rtu::attach_slave(tap, Slave(unit)))
}
