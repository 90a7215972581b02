//! A TCP proxy between one agent and the server replicas: each new connection goes to a live
//! replica (a load balancer's job), and the soak can cut the agent's network: refuse new
//! connections, reset the open ones, or stall everything (a black hole) until it is opened again.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// What the network between the agent and the servers does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Forwards.
    Open,
    /// New connections are closed at once; open ones are reset.
    Refuse,
    /// Open connections are reset; new ones too, with an RST.
    Reset,
    /// Nothing moves: new connections are accepted and held, open ones stop forwarding; all of
    /// them are dropped when the stall ends.
    Stall,
}

impl Cut {
    /// As a fault, in the soak's report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Cut::Open => "network open",
            Cut::Refuse => "network refused",
            Cut::Reset => "network reset",
            Cut::Stall => "network stalled",
        }
    }
}

/// The proxy: its port, and the switch of its cut.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    cut: watch::Sender<Cut>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a loopback port; forwards to `backends` (loopback ports), trying them from a
    /// rotating start so that the connections spread over the replicas.
    pub(crate) async fn start(backends: Vec<u16>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let port = listener.local_addr().expect("addr").port();
        let (cut, watch) = watch::channel(Cut::Open);
        let backends = Arc::new(backends);
        let task = tokio::spawn(async move {
            let mut turn = 0usize;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                turn = turn.wrapping_add(1);
                tokio::spawn(serve(client, backends.clone(), turn, watch.clone()));
            }
        });
        Proxy { port, cut, task }
    }

    pub(crate) fn set(&self, cut: Cut) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Closes with an RST rather than a FIN.
fn reset(stream: TcpStream) {
    // A zero linger does not block the drop: the kernel sends the RST at once.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn serve(
    mut client: TcpStream,
    backends: Arc<Vec<u16>>,
    turn: usize,
    mut cut: watch::Receiver<Cut>,
) {
    // Held while stalled; dropped when the stall ends (the agent sees a broken connection).
    if *cut.borrow_and_update() == Cut::Stall {
        let _ = cut.wait_for(|c| *c != Cut::Stall).await;
        return reset(client);
    }
    match *cut.borrow() {
        Cut::Open => {}
        Cut::Refuse => return drop(client),
        Cut::Reset | Cut::Stall => return reset(client),
    }
    let mut server = None;
    for i in 0..backends.len() {
        let port = backends[(turn + i) % backends.len()];
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_secs(2),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            server = Some(s);
            break;
        }
    }
    let Some(mut server) = server else {
        return reset(client);
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let interrupted = tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => None,
        changed = cut.wait_for(|c| *c != Cut::Open) => Some(changed.map_or(Cut::Reset, |c| *c)),
    };
    if let Some(now) = interrupted {
        if now == Cut::Stall {
            let _ = cut.wait_for(|c| *c != Cut::Stall).await;
        }
        reset(server);
        reset(client);
    }
}
