//! Connections per peer, counted from accept to close. A peer at its limit has its next connection
//! closed as soon as it is accepted, before a TLS handshake or HTTP costs anything; its open
//! connections go on.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{Stream, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::Peer;
use crate::slots::{Slot, Slots};

/// The connections of a listener (`incoming`), each holding a slot of its peer while it is open.
pub struct PeerConnections<S> {
    incoming: S,
    slots: Slots<Peer>,
}

impl<S> PeerConnections<S> {
    /// `incoming`'s connections, at most `max` open per peer at a time.
    pub fn new(incoming: S, max: usize) -> Self {
        Self {
            incoming,
            slots: Slots::new(max),
        }
    }
}

impl<S> Stream for PeerConnections<S>
where
    S: Stream<Item = io::Result<TcpStream>> + Unpin,
{
    type Item = io::Result<PeerStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let stream = match std::task::ready!(self.incoming.poll_next_unpin(cx)) {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => return Poll::Ready(None),
            };
            // Gone already, or over its peer's limit: dropping it closes it. Not logged: a peer at
            // its limit would otherwise write a line per connection it tries.
            let Ok(addr) = stream.peer_addr() else { continue };
            if let Some(slot) = self.slots.try_acquire(Peer::of(addr)) {
                return Poll::Ready(Some(Ok(PeerStream {
                    inner: stream,
                    _slot: slot,
                })));
            }
        }
    }
}

/// An accepted connection, holding its peer's slot until it is dropped (closed).
pub struct PeerStream {
    inner: TcpStream,
    _slot: Slot<Peer>,
}

/// As a plain `TcpStream`: handlers and the edge find the peer the usual way.
impl Connected for PeerStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio_stream::wrappers::TcpListenerStream;

    use super::*;

    #[tokio::test]
    async fn past_its_limit_a_peers_next_connection_is_closed_at_accept_and_a_closed_one_frees_its_slot() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = PeerConnections::new(TcpListenerStream::new(listener), 2);
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            held.push(accepted.next().await.unwrap().unwrap());
        }
        assert_eq!(
            held[0].connect_info().remote_addr(),
            Some(clients[0].local_addr().unwrap())
        );

        let mut refused = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(300), accepted.next()).await;
        assert!(waiting.is_err(), "the third connection is not handed to the server");
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), refused.read(&mut buf))
            .await
            .expect("closed, not left hanging");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

        held.pop();
        let _again = TcpStream::connect(addr).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), accepted.next())
            .await
            .expect("a closed connection gave its slot back")
            .unwrap()
            .unwrap();
    }
}
