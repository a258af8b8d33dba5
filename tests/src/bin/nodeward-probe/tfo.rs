//! `tcp-fastopen`: a TCP connection opened by sendto(2) with `MSG_FASTOPEN` and data, no
//! connect(2) call, a path that an enforcement hooked only on connect(2) could miss.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd as _;

use clap::Args;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, sendto, setsockopt, socket,
    sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike as _};
use nodeward_testkit::ProbeResult;

#[derive(Args)]
pub struct TcpFastOpenArgs {
    #[arg(long)]
    addr: IpAddr,
    #[arg(long)]
    port: u16,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

impl TcpFastOpenArgs {
    pub fn run(self) -> io::Result<ProbeResult> {
        let family = if self.addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
            .map_err(io::Error::from)?;
        let timeout = TimeVal::milliseconds(i64::try_from(self.timeout_ms).unwrap_or(i64::MAX));
        setsockopt(&fd, sockopt::SendTimeout, &timeout).map_err(io::Error::from)?;
        let to = SockaddrStorage::from(SocketAddr::new(self.addr, self.port));
        let flags = MsgFlags::from_bits_retain(libc::MSG_FASTOPEN);
        sendto(fd.as_raw_fd(), b"GET / HTTP/1.0\r\n\r\n", &to, flags).map_err(io::Error::from)?;
        Ok(ProbeResult::success())
    }
}
