//! The little of netlink that cpuprof speaks: a socket, message framing and attributes.
//!
//! Two kernel interfaces tell about every task's exit as it happens: the taskstats family of
//! generic netlink ([`crate::exits::taskstats`]) and the process events connector
//! ([`crate::exits::proc_events`]). Both are four or five fixed-layout messages, so they are
//! written here on `libc` alone: the crates that wrap taskstats pull in `bindgen` (and with
//! it libclang) or pin netlink crates from 2020, and none covers the proc connector.
//!
//! Layouts (all native-endian, 4-byte aligned): `nlmsghdr` = len u32, type u16, flags u16,
//! seq u32, port u32; `nlattr` = len u16, type u16, then the payload padded to 4.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Size of `struct nlmsghdr`.
pub const HEADER_LEN: usize = 16;
/// `NLMSG_ERROR`: an error (or, with code 0, an acknowledgement).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a multi-part reply.
pub const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 1;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 4;

/// Rounds `n` up to netlink's 4-byte alignment.
pub const fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink socket of one protocol (`NETLINK_GENERIC`, `NETLINK_CONNECTOR`).
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Opens a socket of `protocol` bound to the multicast `groups` (0 for none), with a
    /// receive buffer of `rcvbuf` bytes (forced past `rmem_max` when cpuprof may: a burst of
    /// exits must not overflow it).
    pub fn open(protocol: i32, groups: u32, rcvbuf: usize) -> io::Result<Socket> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let sock = Socket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        };
        let size = rcvbuf as libc::c_int;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: `size` outlives the call; the length is its size.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = groups;
        // SAFETY: `addr` is a valid sockaddr_nl and the length is its size.
        let r = unsafe {
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    /// Sends one message to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; zeroed (port 0) addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `addr` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram into `buf` without blocking: `Ok(None)` when nothing is
    /// waiting. `ENOBUFS` (the kernel dropped messages: the buffer overflowed) is returned as
    /// an error for the caller to count; the socket stays usable.
    pub fn recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<Option<&'b [u8]>> {
        // SAFETY: `buf` is valid and writable for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(None),
                Some(libc::EINTR) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(&buf[..n as usize]))
    }

    /// Receives every waiting datagram without blocking, calling `each` with each one.
    /// Returns how many times the kernel reported that it dropped messages (`ENOBUFS`: the
    /// receive buffer overflowed); the socket stays usable.
    pub fn drain(&self, buf: &mut [u8], mut each: impl FnMut(&[u8])) -> u64 {
        let mut dropped = 0;
        loop {
            match self.recv(buf) {
                Ok(Some(d)) => each(d),
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => dropped += 1,
                Err(_) => break,
            }
        }
        dropped
    }

    /// Sends a request and waits up to a second for the kernel's reply, read into `buf`.
    pub fn request<'b>(&self, msg: &[u8], buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        self.send(msg)?;
        self.recv_wait(buf, 1000)
    }

    /// Waits up to `timeout_ms` for a message, returning the next one (blocking receive for
    /// replies to a request).
    pub fn recv_wait<'b>(&self, buf: &'b mut [u8], timeout_ms: i32) -> io::Result<&'b [u8]> {
        if !wait_readable(&[self.fd()], timeout_ms)?.contains(&true) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no reply from the kernel",
            ));
        }
        match self.recv(buf)? {
            Some(m) => Ok(m),
            None => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "no reply from the kernel",
            )),
        }
    }

    /// The descriptor, for `poll`.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits up to `timeout_ms` until any of `fds` is readable; which ones are.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `polls` is a valid array of its length.
    let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(polls
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLERR) != 0)
        .collect())
}

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// What follows the header.
    pub payload: &'a [u8],
}

impl Message<'_> {
    /// For `NLMSG_ERROR`: the error code (0 = an acknowledgement).
    pub fn error_code(&self) -> Option<i32> {
        (self.kind == NLMSG_ERROR).then(|| read_i32(self.payload, 0).unwrap_or(0))
    }
}

/// The messages of one datagram; stops at the first malformed header.
pub fn messages(datagram: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        let len = read_u32(rest, 0)? as usize;
        if len < HEADER_LEN || len > rest.len() {
            return None;
        }
        let msg = Message {
            kind: read_u16(rest, 4)?,
            flags: read_u16(rest, 6)?,
            payload: &rest[HEADER_LEN..len],
        };
        rest = &rest[align(len).min(rest.len())..];
        Some(msg)
    })
}

/// The attributes (`type`, payload) in `data`; stops at the first malformed one. The
/// nested flag (bit 15) and byte-order flag (bit 14) are cleared from the type.
pub fn attributes(data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let len = read_u16(rest, 0)? as usize;
        if len < 4 || len > rest.len() {
            return None;
        }
        let kind = read_u16(rest, 2)? & 0x3fff;
        let payload = &rest[4..len];
        rest = &rest[align(len).min(rest.len())..];
        Some((kind, payload))
    })
}

/// A message being built: header, then fixed payload and attributes.
#[derive(Debug, Clone)]
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// A request of `kind` with `flags`, sequence number `seq`.
    pub fn new(kind: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Builder { buf }
    }

    /// Appends raw bytes (a fixed header such as `genlmsghdr`), padded to alignment.
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.buf.extend_from_slice(b);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Appends one attribute.
    pub fn attr(mut self, kind: u16, payload: &[u8]) -> Self {
        let len = (4 + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Appends one attribute holding `text` as a C string (NUL-terminated).
    pub fn attr_str(self, kind: u16, text: &str) -> Self {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(0);
        self.attr(kind, &bytes)
    }

    /// The finished message, its length filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// The native-endian u16 at `at`, if in range.
pub fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The native-endian u32 at `at`, if in range.
pub fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The native-endian i32 at `at`, if in range.
pub fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The native-endian u64 at `at`, if in range.
pub fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_messages_parse_back_with_their_attributes() {
        let msg = Builder::new(0x10, NLM_F_REQUEST, 7)
            .bytes(&[3, 1])
            .attr(2, b"TASKSTATS\0")
            .attr(1, &5u16.to_ne_bytes())
            .finish();
        assert_eq!(msg.len() % 4, 0);
        // Two messages back to back in one datagram.
        let mut datagram = msg.clone();
        datagram.extend_from_slice(&msg);
        let all: Vec<_> = messages(&datagram).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, 0x10);
        assert_eq!(all[0].flags, NLM_F_REQUEST);
        let attrs: Vec<_> = attributes(&all[0].payload[4..]).collect();
        assert_eq!(attrs[0], (2, &b"TASKSTATS\0"[..]));
        assert_eq!(attrs[1], (1, &5u16.to_ne_bytes()[..]));
    }

    #[test]
    fn malformed_input_ends_the_walk_without_a_panic() {
        // A length past the end, a length below the header, and random bytes.
        let mut m = Builder::new(1, 0, 0).attr(1, &[1, 2, 3]).finish();
        m[0] = 200;
        assert_eq!(messages(&m).count(), 0);
        m[0] = 3;
        assert_eq!(messages(&m).count(), 0);
        assert_eq!(attributes(&[9, 0, 1, 0, 0]).count(), 0);
        assert_eq!(attributes(&[2, 0]).count(), 0);
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ n).collect();
            let _ = messages(&junk).count();
            let _ = attributes(&junk).count();
        }
    }
}
