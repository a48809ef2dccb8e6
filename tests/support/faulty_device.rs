//! A Modbus TCP endpoint that misbehaves on demand in front of a real
//! device: it forwards to the device, or swallows requests, answers
//! garbage, or hangs up. Switching mode drops the open connections, as a
//! device that fails does.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Forward,
    /// Reads requests and never answers.
    Silent,
    /// Answers each request with bytes that are not a Modbus frame for it.
    Garbage,
    /// Accepts and closes at once.
    HangUp,
}

pub struct FaultyDevice {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyDevice {
    pub async fn start(target: SocketAddr) -> FaultyDevice {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(Mutex::new(Mode::Forward));
        let (generation, _) = watch::channel(0u64);
        let (m, g) = (mode.clone(), generation.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let current = *m.lock().expect("mode");
                let stop = g.subscribe();
                tokio::spawn(serve(stream, current, target, stop));
            }
        });
        FaultyDevice {
            addr,
            mode,
            generation,
            task,
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for FaultyDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    mode: Mode,
    target: SocketAddr,
    mut stop: watch::Receiver<u64>,
) {
    let work = async {
        match mode {
            Mode::Forward => {
                if let Ok(mut up) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut up).await;
                }
            }
            Mode::Silent => {
                let mut buf = [0u8; 512];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            }
            Mode::Garbage => {
                let mut buf = [0u8; 512];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    let _ = stream
                        .write_all(&[0x13, 0x37, 0x00, 0x00, 0x00, 0x03, 0x01, 0x03, 0x08])
                        .await;
                }
            }
            Mode::HangUp => {}
        }
    };
    tokio::select! {
        _ = work => {}
        _ = stop.changed() => {}
    }
}
