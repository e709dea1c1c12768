//! HTTP over a unix socket for the REST transport: a `ureq` connector that opens slurmrestd's socket
//! (`job.slurmrest_url: unix:/path`) whatever host a request names, and a resolver that asks no DNS.
//! The agent keeps the connection alive and reuses it exactly as over TCP (its pool checks
//! [`Transport::is_open`] before each reuse).
//!
//! Must never: follow the request's host or port anywhere else than the one configured socket.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use ureq::Error;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

/// Opens the configured socket for every connection the agent makes.
#[derive(Debug)]
pub struct SocketConnector(pub PathBuf);

impl Connector for SocketConnector {
    type Out = SocketTransport;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        _chained: Option<()>,
    ) -> Result<Option<Self::Out>, Error> {
        // A unix connect does not wait for the server (the backlog takes it or it is refused at once).
        let stream = UnixStream::connect(&self.0)?;
        let config = details.config;
        Ok(Some(SocketTransport {
            stream,
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
        }))
    }
}

/// No name to resolve: every request goes to the socket. One placeholder address, as `ureq` wants one.
#[derive(Debug)]
pub struct NoResolver;

impl Resolver for NoResolver {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let mut addrs = self.empty();
        addrs.push(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)));
        Ok(addrs)
    }
}

/// One connection to the socket.
#[derive(Debug)]
pub struct SocketTransport {
    stream: UnixStream,
    buffers: LazyBuffers,
}

/// A timeout as the socket takes it (`None`: none), and the error `ureq` expects when it runs out.
fn timed<T>(
    timeout: NextTimeout,
    set: impl FnOnce(Option<std::time::Duration>) -> io::Result<()>,
    mut op: impl FnMut() -> io::Result<T>,
) -> Result<T, Error> {
    if timeout.after.is_zero() {
        return Err(Error::Timeout(timeout.reason));
    }
    set(timeout.not_zero().map(|d| *d))?;
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::Timeout(timeout.reason));
            }
            other => return other.map_err(Error::from),
        }
    }
}

impl Transport for SocketTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let stream = &self.stream;
        let output = &self.buffers.output()[..amount];
        timed(
            timeout.for_write(),
            |t| stream.set_write_timeout(t),
            || (&*stream).write_all(output),
        )
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let stream = &self.stream;
        let input = self.buffers.input_append_buf();
        let amount = timed(
            timeout.for_read(),
            |t| stream.set_read_timeout(t),
            || (&*stream).read(input),
        )?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    /// Open while a read would block: nothing unasked-for waiting, and not closed by the server (which
    /// slurmrestd does to an idle connection after a while).
    fn is_open(&mut self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8];
        let open = matches!((&self.stream).read(&mut byte),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        open && self.stream.set_nonblocking(false).is_ok()
    }
}

/// Whether a unix connect failed before anything was sent: no socket at the path, nobody listening, or
/// no permission to connect.
pub fn not_sent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::PermissionDenied
    )
}
