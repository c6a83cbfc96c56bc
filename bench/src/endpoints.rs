//! The one factory: the endpoint of a transport for a role. Adding a
//! transport means one [`TransportName`] variant and its arm in
//! [`endpoint`]; the runner, the measurement loops, `shmq bench` and the
//! criterion benches take it from there.

use std::io;
use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};
use shmq::{OpenError, Options, mpmc, spsc};

use crate::case::{Params, TransportName, WaitName};
use crate::link::Link;
use crate::{
    Alternating, Duplex, Floor, FloorShape, Limit, MessageQueue, PipeReceiver, PipeSender, Polling,
    SeqPacket, Transport,
};

/// What an endpoint does in a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Sends a message and waits for its echo (the parent, latency).
    Ping,
    /// Answers every message with itself.
    Echo,
    /// Sends a stream.
    Produce,
    /// Receives a stream.
    Consume,
}

impl Role {
    /// The name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ping => "ping",
            Role::Echo => "echo",
            Role::Produce => "produce",
            Role::Consume => "consume",
        }
    }

    /// The lanes (one-way channels) it sends on and receives from: a ping
    /// sends on lane 0 and receives on lane 1, its echo the other way
    /// round; a stream uses lane 0.
    fn lanes(self) -> (usize, usize) {
        match self {
            Role::Ping | Role::Produce | Role::Consume => (0, 1),
            Role::Echo => (1, 0),
        }
    }
}

/// A shmq endpoint type: the parent creates its segment, children open it.
trait Segment: Sized {
    fn create(name: &str, o: &Options) -> Result<Self, OpenError>;
    fn open(name: &str, o: &Options) -> Result<Self, OpenError>;
}

macro_rules! segment {
    ($($ty:ty),*) => {$(
        impl Segment for $ty {
            fn create(name: &str, o: &Options) -> Result<Self, OpenError> {
                <$ty>::create(name, o)
            }
            fn open(name: &str, o: &Options) -> Result<Self, OpenError> {
                <$ty>::open(name, o)
            }
        }
    )*};
}

segment!(
    spsc::Producer,
    spsc::Consumer,
    mpmc::Producer,
    mpmc::Consumer
);

/// The endpoint of segment `lane`: created by the parent, opened by a child.
fn attach<E: Segment>(link: &mut Link, lane: usize, o: &Options) -> io::Result<E> {
    let parent = link.is_parent();
    let name = link.segment(lane)?;
    if parent {
        E::create(name, o)
    } else {
        E::open(name, o)
    }
    .map_err(io::Error::other)
}

/// Builds `role`'s endpoint from a sending half `tx(lane)` and a receiving
/// half `rx(lane)` (one-way transports: rings, pipes, queues).
fn halves<S, R>(
    role: Role,
    link: &mut Link,
    tx: impl FnOnce(&mut Link, usize) -> io::Result<S>,
    rx: impl FnOnce(&mut Link, usize) -> io::Result<R>,
) -> io::Result<Box<dyn Transport>>
where
    S: Transport + 'static,
    R: Transport + 'static,
{
    let (out, back) = role.lanes();
    Ok(match role {
        Role::Ping | Role::Echo => Box::new(Duplex::new(tx(link, out)?, rx(link, back)?)),
        Role::Produce => Box::new(tx(link, out)?),
        Role::Consume => Box::new(rx(link, out)?),
    })
}

/// Opens `role`'s endpoint of a measurement with `p` over `link` (the
/// parent's link creates what it needs; a child's opens what its parent
/// passed).
///
/// # Errors
/// The transport's error, or [`io::ErrorKind::Unsupported`] for a role the
/// transport has not (the floor only ping-pongs, the limit only streams).
pub fn endpoint(role: Role, p: &Params, link: &mut Link) -> io::Result<Box<dyn Transport>> {
    let o = p.shmq_options();
    let (size, buffer) = (p.size, p.kernel_buffer);
    match (p.transport, role) {
        (TransportName::Floor | TransportName::FloorRing, Role::Ping | Role::Echo) => {
            let shape = if p.transport == TransportName::Floor {
                FloorShape::Fixed
            } else {
                FloorShape::Ring
            };
            let fd = link.memfd(Floor::map_len(size, shape))?;
            Ok(Box::new(Floor::map(
                fd.as_fd(),
                size,
                shape,
                role == Role::Ping,
            )?))
        }
        (TransportName::Floor | TransportName::FloorRing, _) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the floor has no {} role", role.as_str()),
        )),
        (TransportName::Limit | TransportName::LimitBatch, Role::Produce | Role::Consume) => {
            let fd = link.memfd(Limit::map_len(size))?;
            Ok(Box::new(Limit::map(
                fd.as_fd(),
                size,
                role == Role::Produce,
            )?))
        }
        (TransportName::Limit | TransportName::LimitBatch, _) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the limit has no {} role (it only streams)", role.as_str()),
        )),
        (TransportName::ShmqSpsc, Role::Consume) if p.wait == WaitName::Poll => Ok(Box::new(
            Polling::new(attach::<spsc::Consumer>(link, 0, &o)?, false),
        )),
        (TransportName::ShmqSpsc, Role::Consume) if p.wait == WaitName::Paced => Ok(Box::new(
            Polling::new(attach::<spsc::Consumer>(link, 0, &o)?, true),
        )),
        (TransportName::ShmqSpsc, Role::Consume) if p.wait == WaitName::Alternate => Ok(Box::new(
            Alternating::new(attach::<spsc::Consumer>(link, 0, &o)?, p.size),
        )),
        (TransportName::ShmqSpsc, _) => halves(
            role,
            link,
            |l, i| attach::<spsc::Producer>(l, i, &o),
            |l, i| attach::<spsc::Consumer>(l, i, &o),
        ),
        (TransportName::ShmqMpmc, _) => halves(
            role,
            link,
            |l, i| attach::<mpmc::Producer>(l, i, &o),
            |l, i| attach::<mpmc::Consumer>(l, i, &o),
        ),
        (TransportName::Pipe, _) => halves(
            role,
            link,
            |l, i| Ok(PipeSender::from_fd(l.pipe(i, buffer)?.1)),
            |l, i| Ok(PipeReceiver::from_fd(l.pipe(i, buffer)?.0)),
        ),
        (TransportName::Mq, _) => halves(
            role,
            link,
            |l, i| MessageQueue::open(l.queue(i, p.mq_depth, size)?),
            |l, i| MessageQueue::open(l.queue(i, p.mq_depth, size)?),
        ),
        (TransportName::Uds, _) => {
            // One socket pair carries both directions: the pinger and the
            // consumer hold end 0.
            let end = usize::from(matches!(role, Role::Echo | Role::Produce));
            Ok(Box::new(SeqPacket::from_fd(link.socket(end, buffer)?)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ping and an echo endpoint in one process, through a parent link
    /// and a child link over the same objects.
    fn ping_and_echo(p: &Params) -> (Box<dyn Transport>, Box<dyn Transport>) {
        let mut parent = Link::new();
        let ping = endpoint(Role::Ping, p, &mut parent).unwrap();
        let fds: Vec<_> = parent.raw_fds();
        // The child's link takes its own copies, as inheriting would.
        let copies: Vec<_> = fds
            .iter()
            // SAFETY: `dup` of our own open descriptors.
            .map(|&fd| unsafe { libc::dup(fd) })
            .collect();
        // SAFETY: fresh copies nothing else owns.
        let mut child = unsafe { Link::inherited(parent.names().to_vec(), &copies) };
        let echo = endpoint(Role::Echo, p, &mut child).unwrap();
        drop(child);
        parent.close_fds();
        (ping, echo)
    }

    /// Three round trips of 64-byte messages.
    fn ping_echo(transport: TransportName, wait: WaitName) {
        let (mut ping, mut echo) = ping_and_echo(&Params::new(transport, wait, 64));
        let mut buf = [0u8; 128];
        for i in 0..3u8 {
            ping.send(&[i; 64]).unwrap();
            let n = echo.recv(&mut buf).unwrap();
            echo.send(&buf[..n]).unwrap();
            assert_eq!(ping.recv(&mut buf).unwrap(), 64);
            assert_eq!(buf[0], i);
        }
    }

    #[test]
    fn every_transport_ping_pongs_through_the_factory() {
        // The limit only streams (tested below).
        for t in TransportName::ALL.into_iter().filter(|&t| !t.is_limit()) {
            let wait = if t.is_shmq() {
                WaitName::Spin
            } else {
                WaitName::Kernel
            };
            ping_echo(t, wait);
        }
    }

    #[test]
    fn the_floors_refuse_streams() {
        for t in [TransportName::Floor, TransportName::FloorRing] {
            let p = Params::new(t, WaitName::Spin, 64);
            let e = endpoint(Role::Produce, &p, &mut Link::new()).err().unwrap();
            assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        }
    }

    #[test]
    fn the_ring_floor_laps_its_area_and_keeps_lengths() {
        // 4 MiB per direction in 72-byte steps: 58 254 messages a lap, so
        // 120 000 round trips lap each direction twice.
        let p = Params::new(TransportName::FloorRing, WaitName::Spin, 64);
        let (mut ping, mut echo) = ping_and_echo(&p);
        let mut buf = [0u8; 64];
        for i in 0..120_000u32 {
            let len = (i % 65) as usize;
            let msg = [i as u8; 64];
            ping.send(&msg[..len]).unwrap();
            let n = echo.recv(&mut buf).unwrap();
            assert_eq!((n, &buf[..n]), (len, &msg[..len]), "message {i}");
            echo.send(&buf[..n]).unwrap();
            assert_eq!(ping.recv(&mut buf).unwrap(), len, "answer {i}");
        }
    }

    #[test]
    fn the_limit_streams_through_the_factory_and_refuses_ping_pong() {
        let p = Params::new(TransportName::Limit, WaitName::Spin, 1024);
        for role in [Role::Ping, Role::Echo] {
            let e = endpoint(role, &p, &mut Link::new()).err().unwrap();
            assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        }
        // As in a measurement: the parent consumes, a child (a thread
        // here, with its own copies of the descriptors) produces.
        let mut parent = Link::new();
        let mut rx = endpoint(Role::Consume, &p, &mut parent).unwrap();
        let names = parent.names().to_vec();
        let copies: Vec<_> = parent
            .raw_fds()
            .iter()
            // SAFETY: `dup` of our own open descriptors.
            .map(|&fd| unsafe { libc::dup(fd) })
            .collect();
        parent.close_fds();
        let n = 30_000u32;
        let producer = std::thread::spawn(move || {
            // SAFETY: fresh copies nothing else owns.
            let mut child = unsafe { Link::inherited(names, &copies) };
            let mut tx = endpoint(Role::Produce, &p, &mut child).unwrap();
            drop(child);
            let mut msg = [0u8; 1024];
            for i in 0..n {
                msg[..4].copy_from_slice(&i.to_le_bytes());
                tx.send(&msg).unwrap();
            }
        });
        let mut buf = [0u8; 1100];
        for i in 0..n {
            assert_eq!(rx.recv(&mut buf).unwrap(), 1024);
            assert_eq!(buf[..4], i.to_le_bytes());
        }
        producer.join().unwrap();
        assert!(rx.stats().is_none());
    }
}
