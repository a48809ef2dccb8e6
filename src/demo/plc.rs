//! A simulated PLC: a bank of holding registers served over Modbus TCP by
//! tokio-modbus's own server, on loopback. The demo's press runs on it, and
//! tests use it as the device under the gateway.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::{ExceptionCode, Request, Response};

/// 65,536 holding registers, all readable and writable.
#[derive(Clone)]
pub struct Registers(Arc<Mutex<Vec<u16>>>);

impl Default for Registers {
    fn default() -> Self {
        Registers(Arc::new(Mutex::new(vec![0; 65536])))
    }
}

impl Registers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u16>> {
        // Poisoning only follows a panic elsewhere; the registers stay valid.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_u16(&self, addr: u16, value: u16) {
        self.lock()[usize::from(addr)] = value;
    }

    pub fn get_u16(&self, addr: u16) -> u16 {
        self.lock()[usize::from(addr)]
    }

    /// Big-endian, high word at `addr`. The two words change together, so a
    /// reader never sees half an update.
    pub fn set_u32(&self, addr: u16, value: u32) {
        let mut regs = self.lock();
        let a = usize::from(addr);
        if a + 1 < regs.len() {
            regs[a] = (value >> 16) as u16;
            regs[a + 1] = value as u16;
        }
    }

    pub fn get_u32(&self, addr: u16) -> u32 {
        let regs = self.lock();
        let a = usize::from(addr);
        match (regs.get(a), regs.get(a + 1)) {
            (Some(hi), Some(lo)) => (u32::from(*hi) << 16) | u32::from(*lo),
            _ => 0,
        }
    }

    fn read(&self, addr: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        let regs = self.lock();
        let start = usize::from(addr);
        let end = start + usize::from(count);
        if count == 0 || count > 125 || end > regs.len() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok(regs[start..end].to_vec())
    }

    fn write(&self, addr: u16, values: &[u16]) -> Result<(), ExceptionCode> {
        let mut regs = self.lock();
        let start = usize::from(addr);
        let end = start + values.len();
        if end > regs.len() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        regs[start..end].copy_from_slice(values);
        Ok(())
    }
}

struct Service(Registers);

impl tokio_modbus::server::Service for Service {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let regs = &self.0;
        std::future::ready(match req {
            Request::ReadHoldingRegisters(addr, count) => {
                regs.read(addr, count).map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(addr, count) => {
                regs.read(addr, count).map(Response::ReadInputRegisters)
            }
            Request::WriteSingleRegister(addr, value) => regs
                .write(addr, &[value])
                .map(|()| Response::WriteSingleRegister(addr, value)),
            Request::WriteMultipleRegisters(addr, values) => regs
                .write(addr, &values)
                .map(|()| Response::WriteMultipleRegisters(addr, values.len() as u16)),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// A running simulated PLC. Dropping it stops the server and its connections.
pub struct SimulatedPlc {
    pub addr: SocketAddr,
    pub registers: Registers,
    task: JoinHandle<()>,
}

impl SimulatedPlc {
    /// Serve `registers` on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr, registers: Registers) -> std::io::Result<SimulatedPlc> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = Server::new(listener);
        let regs = registers.clone();
        let task = tokio::spawn(async move {
            let on_connected = |stream, socket_addr| {
                let regs = regs.clone();
                async move {
                    accept_tcp_connection(stream, socket_addr, |_| Ok(Some(Service(regs.clone()))))
                }
            };
            if let Err(e) = server
                .serve(
                    &on_connected,
                    |e| tracing::debug!(error = %e, "simulated PLC connection error"),
                )
                .await
            {
                tracing::warn!(error = %e, "simulated PLC stopped");
            }
        });
        Ok(SimulatedPlc {
            addr,
            registers,
            task,
        })
    }

    /// Stop serving: the port closes and open connections end.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for SimulatedPlc {
    fn drop(&mut self) {
        self.task.abort();
    }
}
