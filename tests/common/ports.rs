//! Free loopback ports for the servers a test starts.
//!
//! A port is picked by binding `127.0.0.1:0` and asking the kernel which port it chose; the
//! listener is then closed so the server can bind it. A process-wide set remembers every port
//! handed out, so two servers started by tests of the same binary never get the same one even
//! when the kernel hands a just-released port out again.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago and that no other caller in this
/// process has been given.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("binding 127.0.0.1:0 to pick a free port failed");
        let port = listener
            .local_addr()
            .expect("a bound listener has a local address")
            .port();
        drop(listener);
        let mut ports = handed_out()
            .lock()
            .expect("the free-port registry mutex is not poisoned");
        if ports.insert(port) {
            return port;
        }
    }
    panic!("could not find a free loopback port in 100 attempts");
}

/// Returns `127.0.0.1:<port>`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Whether something accepts TCP connections on `addr` right now.
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Waits until every address has accepted a TCP connection once, calling `check` between
/// attempts (it may panic, e.g. when the server process has exited). Returns `false` when
/// `limit` passed first.
pub async fn wait_until_accepting(
    addrs: &[SocketAddr],
    limit: Duration,
    mut check: impl FnMut(),
) -> bool {
    let deadline = Instant::now() + limit;
    let mut waiting: Vec<SocketAddr> = addrs.to_vec();
    loop {
        check();
        let mut still = Vec::new();
        for addr in waiting {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                still.push(addr);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
