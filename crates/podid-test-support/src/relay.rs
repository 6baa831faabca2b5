//! A TCP relay on a fixed address whose target can change: clients keep one
//! endpoint while the process behind it stops, restarts on another port, or
//! is cut off (no target: connections are closed at once).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

/// A relay on 127.0.0.1, forwarding each connection to the current target;
/// stops accepting when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Listens on 127.0.0.1:0 and forwards to `target` (none: closes connections).
    ///
    /// # Errors
    /// When it cannot listen.
    pub async fn start(target: Option<SocketAddr>) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let target = Arc::new(Mutex::new(target));
        let current = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let to = *current.lock().unwrap_or_else(|p| p.into_inner());
                tokio::spawn(forward(client, to));
            }
        });
        Ok(Relay { addr, target, task })
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// New connections go to `target` from now on (none: closed at once);
    /// connections already relayed keep their target until either side closes.
    pub fn point_to(&self, target: Option<SocketAddr>) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(mut client: TcpStream, target: Option<SocketAddr>) {
    let Some(target) = target else { return };
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
