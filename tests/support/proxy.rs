//! A cuttable TCP proxy on loopback, for partition tests: placed between one
//! party (the operator, or the replicas) and a server, it forwards bytes until
//! it is cut. A cut behaves like a network partition, not like a crash: open
//! connections stay open but nothing crosses them (bytes wait, as TCP would
//! retransmit them), and new connections are accepted but go nowhere until
//! the proxy heals. Nobody is told: timeouts on either side are the only way
//! to notice, exactly as with a real partition.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub struct Proxy {
    pub listen: SocketAddr,
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listen on `listen` (a loopback address) and forward to `upstream`.
    pub async fn start(listen: &str, upstream: &str) -> Proxy {
        let listen: SocketAddr = listen.parse().expect("proxy listen address");
        assert!(listen.ip().is_loopback(), "proxies listen on loopback only");
        let upstream: SocketAddr = upstream.parse().expect("proxy upstream address");
        assert!(
            upstream.ip().is_loopback(),
            "proxies forward to loopback only"
        );
        let listener = TcpListener::bind(listen).await.expect("bind the proxy");
        let (open, _) = watch::channel(true);
        let rx = open.subscribe();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every pump.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        conns.spawn(relay(client, upstream, rx.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Proxy { listen, open, task }
    }

    /// Partition: nothing crosses the proxy any more.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Heal the partition: waiting bytes and connections go through.
    pub fn heal(&self) {
        self.open.send_replace(true);
    }

    pub fn is_cut(&self) -> bool {
        !*self.open.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_open(open: &mut watch::Receiver<bool>) {
    let _ = open.wait_for(|o| *o).await;
}

async fn relay(client: TcpStream, upstream: SocketAddr, mut open: watch::Receiver<bool>) {
    wait_open(&mut open).await;
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // When either direction ends, both sockets are dropped.
    tokio::select! {
        _ = pump(cr, sw, open.clone()) => {}
        _ = pump(sr, cw, open) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut open: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        wait_open(&mut open).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Cut meanwhile: the bytes wait (in flight) until the proxy heals.
        wait_open(&mut open).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
