//! A simulated PLC: register and bit tables served over Modbus TCP by
//! tokio-modbus's own server, on loopback. The demo's press runs on it, and
//! tests use it as the device under the gateway.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::{ExceptionCode, Request, Response};

/// The PLC's memory: 65,536 each of holding registers, input registers,
/// coils and discrete inputs, all zero at start. Addresses marked illegal
/// answer ILLEGAL DATA ADDRESS, as a PLC does for unmapped memory.
#[derive(Clone, Default)]
pub struct Registers(Arc<Mutex<Memory>>);

struct Memory {
    holding: Vec<u16>,
    input: Vec<u16>,
    coils: Vec<bool>,
    discrete: Vec<bool>,
    illegal: Vec<std::ops::Range<u32>>,
    requests: u64,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            holding: vec![0; 65536],
            input: vec![0; 65536],
            coils: vec![false; 65536],
            discrete: vec![false; 65536],
            illegal: Vec::new(),
            requests: 0,
        }
    }
}

impl Registers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // Poisoning only follows a panic elsewhere; the memory stays valid.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_u16(&self, addr: u16, value: u16) {
        self.lock().holding[usize::from(addr)] = value;
    }

    pub fn get_u16(&self, addr: u16) -> u16 {
        self.lock().holding[usize::from(addr)]
    }

    /// Set holding registers from `addr` on, all in one step.
    pub fn set_holding(&self, addr: u16, words: &[u16]) {
        let mut m = self.lock();
        let a = usize::from(addr);
        let n = words.len().min(65536 - a);
        m.holding[a..a + n].copy_from_slice(&words[..n]);
    }

    pub fn set_input(&self, addr: u16, words: &[u16]) {
        let mut m = self.lock();
        let a = usize::from(addr);
        let n = words.len().min(65536 - a);
        m.input[a..a + n].copy_from_slice(&words[..n]);
    }

    pub fn set_coil(&self, addr: u16, on: bool) {
        self.lock().coils[usize::from(addr)] = on;
    }

    pub fn set_discrete(&self, addr: u16, on: bool) {
        self.lock().discrete[usize::from(addr)] = on;
    }

    /// Big-endian, high word at `addr`. The two words change together, so a
    /// reader never sees half an update.
    pub fn set_u32(&self, addr: u16, value: u32) {
        self.set_holding(addr, &[(value >> 16) as u16, value as u16]);
    }

    pub fn get_u32(&self, addr: u16) -> u32 {
        let m = self.lock();
        let a = usize::from(addr);
        match (m.holding.get(a), m.holding.get(a + 1)) {
            (Some(hi), Some(lo)) => (u32::from(*hi) << 16) | u32::from(*lo),
            _ => 0,
        }
    }

    /// Make reads touching `addr` (any table) answer ILLEGAL DATA ADDRESS.
    pub fn make_illegal(&self, addr: u16) {
        let a = u32::from(addr);
        self.lock().illegal.push(a..a + 1);
    }

    /// Read requests served so far.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    fn check(
        m: &Memory,
        addr: u16,
        count: u16,
        max: u16,
    ) -> Result<std::ops::Range<usize>, ExceptionCode> {
        let start = u32::from(addr);
        let end = start + u32::from(count);
        if count == 0 || count > max {
            return Err(ExceptionCode::IllegalDataValue);
        }
        if end > 65536 || m.illegal.iter().any(|r| r.start < end && start < r.end) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok(start as usize..end as usize)
    }

    fn read_words(&self, input: bool, addr: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        let mut m = self.lock();
        m.requests += 1;
        let r = Self::check(&m, addr, count, 125)?;
        Ok(if input {
            m.input[r].to_vec()
        } else {
            m.holding[r].to_vec()
        })
    }

    fn read_bits(&self, discrete: bool, addr: u16, count: u16) -> Result<Vec<bool>, ExceptionCode> {
        let mut m = self.lock();
        m.requests += 1;
        let r = Self::check(&m, addr, count, 2000)?;
        Ok(if discrete {
            m.discrete[r].to_vec()
        } else {
            m.coils[r].to_vec()
        })
    }

    fn write(&self, addr: u16, values: &[u16]) -> Result<(), ExceptionCode> {
        let mut m = self.lock();
        let r = Self::check(&m, addr, values.len() as u16, 123)?;
        m.holding[r].copy_from_slice(values);
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
            Request::ReadHoldingRegisters(addr, count) => regs
                .read_words(false, addr, count)
                .map(Response::ReadHoldingRegisters),
            Request::ReadInputRegisters(addr, count) => regs
                .read_words(true, addr, count)
                .map(Response::ReadInputRegisters),
            Request::ReadCoils(addr, count) => {
                regs.read_bits(false, addr, count).map(Response::ReadCoils)
            }
            Request::ReadDiscreteInputs(addr, count) => regs
                .read_bits(true, addr, count)
                .map(Response::ReadDiscreteInputs),
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
