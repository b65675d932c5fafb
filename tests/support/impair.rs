//! A small userspace UDP impairment relay: delay, jitter (and with it reordering) that this
//! kernel cannot add (no netem). It listens on one address and passes each client's
//! datagrams to `upstream` from a socket of that client's own, and the answers back, holding
//! every datagram from or to an impaired client for `delay ± jitter` (uniform, drawn per
//! datagram, so that packets overtake each other as on a real path). Clients from other
//! addresses pass at once.
//!
//! A media test uses it by running the node's relay on loopback and advertising the
//! address this listens on (`--relay-listen 127.0.0.1:P --relay-ip IP`, this on IP:P): the
//! browsers then send their media through it. Loss stays with nftables (`netns::lose_udp`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How a path misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Added to each datagram, each way.
    pub delay: Duration,
    /// Each datagram's delay is drawn uniformly from `delay - jitter ..= delay + jitter`.
    pub jitter: Duration,
}

/// What passed through, for the test's report.
#[derive(Debug, Default)]
pub struct Counts {
    pub impaired: AtomicU64,
    pub passed: AtomicU64,
    /// Datagrams that left after one that came in after them.
    pub reordered: AtomicU64,
}

pub struct UdpImpairer {
    pub listen: SocketAddr,
    pub counts: Arc<Counts>,
    setting: Arc<Mutex<Option<Impairment>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl UdpImpairer {
    /// Listens on `listen` and relays to `upstream`, impairing clients from `impaired` once
    /// [`UdpImpairer::set`] says how. Port 0 in `upstream` means the port this listens on.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr, impaired: IpAddr) -> UdpImpairer {
        let socket = Arc::new(UdpSocket::bind(listen).await.unwrap_or_else(|e| panic!("the impairment relay cannot listen on {listen}: {e}")));
        let listen = socket.local_addr().expect("a bound socket has an address");
        let upstream = if upstream.port() == 0 { SocketAddr::new(upstream.ip(), listen.port()) } else { upstream };
        let counts = Arc::new(Counts::default());
        let setting = Arc::new(Mutex::new(None));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let forward = tokio::spawn(forward(socket, upstream, impaired, counts.clone(), setting.clone(), tasks.clone()));
        tasks.lock().unwrap().push(forward);
        UdpImpairer { listen, counts, setting, tasks }
    }

    /// From now on (`None`: no impairment).
    pub fn set(&self, impairment: Option<Impairment>) {
        *self.setting.lock().unwrap() = impairment;
    }
}

impl Drop for UdpImpairer {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Client → upstream; each new client gets its own upstream socket and a task for the way back.
async fn forward(
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    impaired: IpAddr,
    counts: Arc<Counts>,
    setting: Arc<Mutex<Option<Impairment>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut rng = Rng::seeded();
    let order = Arc::new(Order::default());
    loop {
        let Ok((len, client)) = socket.recv_from(&mut buf).await else { return };
        let out = match clients.get(&client) {
            Some(out) => out.clone(),
            None => {
                let bind = SocketAddr::new(upstream.ip(), 0);
                let Ok(out) = UdpSocket::bind(bind).await else { continue };
                let out = Arc::new(out);
                clients.insert(client, out.clone());
                let back = tokio::spawn(backward(out.clone(), socket.clone(), client, client.ip() == impaired, counts.clone(), setting.clone()));
                tasks.lock().unwrap().push(back);
                out
            }
        };
        let delay = if client.ip() == impaired { draw(&setting, &mut rng) } else { None };
        send_after(delay, out, buf[..len].to_vec(), upstream, &counts, &order);
    }
}

/// Upstream → one client.
async fn backward(
    out: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    impaired: bool,
    counts: Arc<Counts>,
    setting: Arc<Mutex<Option<Impairment>>>,
) {
    let mut buf = vec![0u8; 65536];
    let mut rng = Rng::seeded();
    let order = Arc::new(Order::default());
    loop {
        let Ok((len, _)) = out.recv_from(&mut buf).await else { return };
        let delay = if impaired { draw(&setting, &mut rng) } else { None };
        send_after(delay, socket.clone(), buf[..len].to_vec(), client, &counts, &order);
    }
}

fn draw(setting: &Mutex<Option<Impairment>>, rng: &mut Rng) -> Option<Duration> {
    let impairment = (*setting.lock().unwrap())?;
    let spread = impairment.jitter.as_micros() as u64 * 2;
    let offset = if spread == 0 { 0 } else { rng.next() % (spread + 1) };
    Some(impairment.delay.saturating_sub(impairment.jitter) + Duration::from_micros(offset))
}

/// Sequence numbers of one direction's datagrams, to count those that overtook others.
#[derive(Default)]
struct Order {
    next: AtomicU64,
    highest_sent: AtomicU64,
}

fn send_after(delay: Option<Duration>, socket: Arc<UdpSocket>, datagram: Vec<u8>, to: SocketAddr, counts: &Arc<Counts>, order: &Arc<Order>) {
    let Some(delay) = delay else {
        counts.passed.fetch_add(1, Ordering::Relaxed);
        let _ = socket.try_send_to(&datagram, to);
        return;
    };
    let seq = order.next.fetch_add(1, Ordering::Relaxed) + 1;
    let (counts, order) = (counts.clone(), order.clone());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        counts.impaired.fetch_add(1, Ordering::Relaxed);
        if order.highest_sent.fetch_max(seq, Ordering::Relaxed) > seq {
            counts.reordered.fetch_add(1, Ordering::Relaxed);
        }
        let _ = socket.send_to(&datagram, to).await;
    });
}

/// xorshift64*: enough to spread delays; seeded from the OS.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("the OS has randomness");
        Rng(u64::from_le_bytes(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
