//! A valid heap channel whose peer scribbles: between (and during) our
//! operations a simulated peer writes arbitrary words at arbitrary 8-aligned
//! offsets, biased toward the cursors, the endpoint table, record headers and
//! slot sequence / info words. Every call must return a message no longer
//! than the maximum, or `Corrupted`, `Empty`, `Full`, `Disconnected` (and
//! `Timeout` / `PeerDied` from the waiting variants); never panic. Once an
//! endpoint reported `Corrupted` it keeps doing so.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmq::Error;
use shmq::fuzzing::{MPMC_KINDS, Peer, SPSC_TAGS};

#[path = "common/hostile.rs"]
mod hostile;
use hostile::{Poke, Shape};

#[derive(Arbitrary, Debug)]
enum Input {
    Spsc {
        cap_log: u8,
        ops: Vec<SOp>,
    },
    Mpmc {
        slots_log: u8,
        size_sel: u8,
        ops: Vec<MOp>,
    },
}

#[derive(Arbitrary, Debug)]
enum SOp {
    Poke(Poke),
    TrySend {
        len: u16,
    },
    SendTimeout {
        len: u16,
    },
    /// Reserve, let the peer scribble, then commit a prefix or drop.
    Reserve {
        len: u16,
        during: Vec<Poke>,
        commit: Option<u16>,
    },
    Batch {
        lens: Vec<u16>,
        during: Vec<Poke>,
    },
    TryRecv,
    RecvTimeout,
    TryRecvInto {
        buf: u16,
    },
    /// Hold a read grant while the peer scribbles.
    Hold {
        during: Vec<Poke>,
    },
    ReadBatch {
        n: u8,
        during: Vec<Poke>,
    },
}

#[derive(Arbitrary, Debug)]
enum MOp {
    Poke(Poke),
    TrySend {
        h: bool,
        len: u16,
    },
    SendTimeout {
        h: bool,
        len: u16,
    },
    Reserve {
        h: bool,
        during: Vec<Poke>,
        commit: Option<u16>,
    },
    TryRecv {
        h: bool,
    },
    RecvTimeout {
        h: bool,
    },
    TryRecvInto {
        h: bool,
        buf: u16,
    },
    Hold {
        h: bool,
        during: Vec<Poke>,
    },
    CloneP,
    CloneC,
}

/// Tracks one endpoint's results: allowed errors only; `Corrupted` sticks.
#[derive(Default)]
struct Verdict {
    corrupted: bool,
}

impl Verdict {
    fn check<T>(&mut self, what: &str, r: &Result<T, Error>, extra: &[Error]) {
        match r {
            Err(Error::Corrupted(_)) => self.corrupted = true,
            Err(e) if self.corrupted => {
                panic!("{what}: {e:?} after Corrupted (the channel must stay poisoned)")
            }
            Ok(_) if self.corrupted => panic!("{what}: Ok after Corrupted"),
            Ok(_) => {}
            Err(Error::Full | Error::Empty | Error::Disconnected) => {}
            Err(e) if extra.contains(e) => {}
            Err(Error::BufferTooSmall { .. })
                if extra
                    .iter()
                    .any(|x| matches!(x, Error::BufferTooSmall { .. })) => {}
            Err(e) => panic!("{what}: unexpected {e:?}"),
        }
    }
}

const WAITING: [Error; 2] = [Error::Timeout, Error::PeerDied];
const COPYING: [Error; 1] = [Error::BufferTooSmall {
    needed: 0,
    capacity: 0,
}];

fn scribble(peer: &Peer, shape: &Shape, pokes: &[Poke]) {
    let peek = |off: usize| peer.peek(off);
    for p in pokes {
        let off = shape.offset(p.at, &peek);
        let v = shape.value(p.val, off, &peek);
        peer.poke(off, v);
    }
}

fn sum(b: &[u8]) -> u64 {
    b.iter().map(|&x| x as u64).sum()
}

fn spsc(cap_log: u8, ops: &[SOp]) {
    let cap = 64usize << (cap_log % 7);
    let opts = shmq::Options::new().capacity(cap);
    let (mut tx, mut rx) = shmq::spsc::channel(&opts).expect("valid options");
    let peer = Peer::of_spsc(&tx);
    let shape = Shape {
        total: peer.region_len(),
        data_offset: peer.data_offset(),
        data_len: peer.data_len(),
        endpoints: 2,
        slots: None,
        tags: &SPSC_TAGS,
    };
    let max = tx.max_message_len();
    let clamp = |l: u16| l as usize % (max + 1);
    let (mut vp, mut vc) = (Verdict::default(), Verdict::default());
    for op in ops {
        match op {
            SOp::Poke(p) => scribble(&peer, &shape, std::slice::from_ref(p)),
            SOp::TrySend { len } => {
                let r = tx.try_send(&vec![7; clamp(*len)]);
                vp.check("try_send", &r, &[]);
            }
            SOp::SendTimeout { len } => {
                let r = tx.send_timeout(&vec![7; clamp(*len)], Duration::ZERO);
                vp.check("send_timeout", &r, &WAITING);
            }
            SOp::Reserve {
                len,
                during,
                commit,
            } => {
                let len = clamp(*len);
                let r = tx.try_reserve(len);
                vp.check("try_reserve", &r, &[]);
                if let Ok(mut g) = r {
                    assert_eq!(g.len(), len);
                    g.fill(0xa5);
                    scribble(&peer, &shape, during);
                    // Without `commit` the grant is dropped: that writes nothing.
                    if let Some(n) = commit {
                        g.commit(*n as usize % (len + 1));
                    }
                }
            }
            SOp::Batch { lens, during } => {
                let mut b = tx.batch();
                for (i, l) in lens.iter().enumerate() {
                    let r = b.try_send(&vec![i as u8; clamp(*l)]);
                    vp.check("batch try_send", &r, &[]);
                    if i == 0 {
                        scribble(&peer, &shape, during);
                    }
                }
            }
            SOp::TryRecv | SOp::RecvTimeout | SOp::Hold { .. } => {
                let r = if matches!(op, SOp::RecvTimeout) {
                    rx.recv_timeout(Duration::ZERO)
                } else {
                    rx.try_recv()
                };
                vc.check("recv", &r, &WAITING);
                if let Ok(g) = r {
                    assert!(g.len() <= max, "message of {} bytes > max {max}", g.len());
                    let _ = sum(&g);
                    if let SOp::Hold { during } = op {
                        scribble(&peer, &shape, during);
                        let _ = sum(&g);
                    }
                }
            }
            SOp::TryRecvInto { buf } => {
                let mut buf = vec![0u8; *buf as usize % (max + 8)];
                let r = rx.try_recv_into(&mut buf);
                vc.check("try_recv_into", &r, &COPYING);
                if let Ok(n) = r {
                    assert!(n <= buf.len());
                }
            }
            SOp::ReadBatch { n, during } => {
                let mut b = rx.batch();
                for i in 0..*n % 8 {
                    let r = b.try_recv();
                    vc.check("batch try_recv", &r, &[]);
                    if let Ok(g) = r {
                        assert!(g.len() <= max);
                        let _ = sum(&g);
                    }
                    if i == 0 {
                        scribble(&peer, &shape, during);
                    }
                }
            }
        }
    }
}

fn mpmc(slots_log: u8, size_sel: u8, ops: &[MOp]) {
    let n = 2usize << (slots_log % 5);
    let slot_size = 24 + 8 * (size_sel as usize % 12);
    let opts = shmq::Options::new()
        .slots(n)
        .slot_size(slot_size)
        .max_producers(3)
        .max_consumers(3);
    let (tx, rx) = shmq::mpmc::channel(&opts).expect("valid options");
    let peer = Peer::of_mpmc(&tx);
    let shape = Shape {
        total: peer.region_len(),
        data_offset: peer.data_offset(),
        data_len: peer.data_len(),
        endpoints: 6,
        slots: Some((n as u64, shmq::fuzzing::mpmc_slot_stride(slot_size) as u64)),
        tags: &MPMC_KINDS,
    };
    let max = tx.max_message_len();
    let clamp = |l: u16| l as usize % (max + 1);
    let mut tx = [Some(tx), None];
    let mut rx = [Some(rx), None];
    let mut vp = [Verdict::default(), Verdict::default()];
    let mut vc = [Verdict::default(), Verdict::default()];
    for op in ops {
        match op {
            MOp::Poke(p) => scribble(&peer, &shape, std::slice::from_ref(p)),
            MOp::TrySend { h, len } | MOp::SendTimeout { h, len } => {
                let h = *h as usize;
                let Some(p) = tx[h].as_mut() else { continue };
                let msg = vec![3; clamp(*len)];
                if matches!(op, MOp::SendTimeout { .. }) {
                    let r = p.send_timeout(&msg, Duration::ZERO);
                    vp[h].check("send_timeout", &r, &WAITING);
                } else {
                    let r = p.try_send(&msg);
                    vp[h].check("try_send", &r, &[]);
                }
            }
            MOp::Reserve { h, during, commit } => {
                let h = *h as usize;
                let Some(p) = tx[h].as_mut() else { continue };
                let r = p.try_reserve();
                vp[h].check("try_reserve", &r, &[]);
                if let Ok(mut g) = r {
                    assert_eq!(g.len(), max);
                    g.fill(0x5a);
                    scribble(&peer, &shape, during);
                    match commit {
                        Some(k) => g.commit(*k as usize % (max + 1)),
                        None => drop(g),
                    }
                }
            }
            MOp::TryRecv { h } | MOp::RecvTimeout { h } | MOp::Hold { h, .. } => {
                let h = *h as usize;
                let Some(c) = rx[h].as_mut() else { continue };
                let r = if matches!(op, MOp::RecvTimeout { .. }) {
                    c.recv_timeout(Duration::ZERO)
                } else {
                    c.try_recv()
                };
                vc[h].check("recv", &r, &WAITING);
                if let Ok(g) = r {
                    assert!(g.len() <= max, "message of {} bytes > max {max}", g.len());
                    let _ = sum(&g);
                    if let MOp::Hold { during, .. } = op {
                        scribble(&peer, &shape, during);
                    }
                }
            }
            MOp::TryRecvInto { h, buf } => {
                let h = *h as usize;
                let Some(c) = rx[h].as_mut() else { continue };
                let mut buf = vec![0u8; *buf as usize % (max + 8)];
                let r = c.try_recv_into(&mut buf);
                vc[h].check("try_recv_into", &r, &COPYING);
            }
            MOp::CloneP => {
                if let (None, Some(p)) = (&tx[1], &tx[0]) {
                    // A scribbled endpoint table may make this Busy.
                    tx[1] = p.try_clone().ok();
                    vp[1] = Verdict::default();
                }
            }
            MOp::CloneC => {
                if let (None, Some(c)) = (&rx[1], &rx[0]) {
                    rx[1] = c.try_clone().ok();
                    vc[1] = Verdict::default();
                }
            }
        }
    }
}

fuzz_target!(|input: Input| match input {
    Input::Spsc { cap_log, ops } => spsc(cap_log, &ops),
    Input::Mpmc {
        slots_log,
        size_sel,
        ops,
    } => mpmc(slots_log, size_sel, &ops),
});
