//! Outgoing connections, made from the address the servant listens on.
//!
//! A servant with `<bind>` set to one address of a host with several (a LAN host with
//! aliases, or 127.0.0.x on loopback in the tests and the lab) is listed by the manager
//! at the address its connection comes from. Its outgoing connections must therefore
//! come from that same address, as ssh's `BindAddress` does, or the manager would list
//! it where it does not listen, and bans or the complaint rule's count of addresses would
//! see it somewhere else. The address is set once at start-up, before any connection.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

static SOURCE: OnceLock<IpAddr> = OnceLock::new();

/// Makes every later `connect` come from `ip`; an unspecified address (0.0.0.0, ::)
/// leaves the choice to the operating system. Only the first call counts.
pub fn set_source(ip: IpAddr) {
    if !ip.is_unspecified() {
        let _ = SOURCE.set(ip);
    }
}

/// Connects to `to` within `timeout`, from the source address set at start-up if any.
pub fn connect(to: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let Some(&from) = SOURCE.get().filter(|f| f.is_ipv4() == to.is_ipv4()) else {
        return TcpStream::connect_timeout(to, timeout);
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(*to),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&(*to).into(), timeout)?;
    Ok(socket.into())
}
