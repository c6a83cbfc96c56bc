//! Arbitrary sequences of MPMC operations on a heap channel with several
//! producer and consumer handles (`try_clone`), grants held across
//! operations, grants dropped without commit, handles dropped, checked
//! against a model of Vyukov's queue (positions, laps, slot states).
#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmq::Error;
use shmq::mpmc::{Consumer, Producer, ReadGrant, WriteGrant};

/// Handles of each kind the harness juggles.
const HANDLES: usize = 4;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Slots: `2 << (slots_log % 6)` (2 ..= 64).
    slots_log: u8,
    /// Slot size: `24 + 8 * (size_sel % 30)` (24 ..= 256 bytes).
    size_sel: u8,
    /// Endpoint maxima: `1 + x % 4`.
    max_p: u8,
    max_c: u8,
    ops: Vec<Op>,
    drain_at_end: bool,
}

#[derive(Arbitrary, Debug)]
enum Op {
    TrySend {
        h: u8,
        len: u16,
        fill: u8,
    },
    /// Blocking `send` when the model has room, else `send_timeout(0)`.
    Send {
        h: u8,
        len: u16,
        fill: u8,
    },
    /// Claim a slot and hold the grant.
    Reserve {
        h: u8,
        fill: u8,
    },
    /// Commit the held grant with a prefix of its payload.
    Commit {
        h: u8,
        n: u16,
    },
    /// Drop the held grant without commit (a skip record).
    DropWrite {
        h: u8,
    },
    TryRecv {
        h: u8,
    },
    /// `recv` when a message is ready, else `recv_timeout(0)`.
    Recv {
        h: u8,
    },
    TryRecvInto {
        h: u8,
        buf: u16,
    },
    /// Take a message and hold the grant.
    Take {
        h: u8,
    },
    /// Drop the held read grant.
    Release {
        h: u8,
    },
    CloneP {
        from: u8,
        to: u8,
    },
    CloneC {
        from: u8,
        to: u8,
    },
    DropP {
        h: u8,
    },
    DropC {
        h: u8,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Slot {
    /// Claimed by producer handle `h`, not yet published.
    Claimed(usize),
    Msg(Vec<u8>),
    Skip,
    /// Taken by a consumer, not yet released.
    Taken(Vec<u8>),
    Released,
}

struct Model {
    n: u64,
    max_len: usize,
    /// Position of `slots[0]`; every position below it is released.
    base: u64,
    slots: VecDeque<Slot>,
    /// Next position a consumer takes.
    deq: u64,
    live_p: usize,
    live_c: usize,
    max_p: usize,
    max_c: usize,
}

impl Model {
    fn enq(&self) -> u64 {
        self.base + self.slots.len() as u64
    }
    fn at(&mut self, pos: u64) -> &mut Slot {
        &mut self.slots[(pos - self.base) as usize]
    }
    fn trim(&mut self) {
        while self.slots.front() == Some(&Slot::Released) {
            self.slots.pop_front();
            self.base += 1;
        }
    }
    /// Whether a producer can claim the next position.
    fn can_claim(&self) -> bool {
        let enq = self.enq();
        // The slot's previous lap (position enq - n) must be released.
        enq < self.n || enq - self.n < self.base
    }
    fn claim(&mut self, h: usize) -> u64 {
        assert!(self.can_claim());
        self.slots.push_back(Slot::Claimed(h));
        self.enq() - 1
    }
    /// What the next take yields: skips are consumed on the way. `None`:
    /// nothing ready.
    fn take(&mut self) -> Option<(u64, Vec<u8>)> {
        loop {
            if self.deq == self.enq() {
                return None;
            }
            let pos = self.deq;
            match self.at(pos).clone() {
                Slot::Claimed(_) => return None,
                Slot::Skip => {
                    *self.at(pos) = Slot::Released;
                    self.deq += 1;
                    self.trim();
                }
                Slot::Msg(b) => {
                    *self.at(pos) = Slot::Taken(b.clone());
                    self.deq += 1;
                    return Some((pos, b));
                }
                s => panic!("model: position {pos} at the dequeue cursor is {s:?}"),
            }
        }
    }
    fn release(&mut self, pos: u64) {
        *self.at(pos) = Slot::Released;
        self.trim();
    }
    /// The error a consumer gets when nothing is ready.
    fn nothing(&self) -> Error {
        if self.live_p == 0 {
            Error::Disconnected
        } else {
            Error::Empty
        }
    }
}

fn pattern(fill: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| fill.wrapping_add((i as u8).wrapping_mul(13)))
        .collect()
}

fn expect_err<T>(what: &str, r: Result<T, Error>, want: Error) {
    match r {
        Err(e) if e == want => {}
        Err(e) => panic!("{what}: got {e:?}, model says {want:?}"),
        Ok(_) => panic!("{what}: got Ok, model says {want:?}"),
    }
}

struct Held<'a> {
    write: [Option<(WriteGrant<'a>, u64, Vec<u8>)>; HANDLES],
    read: [Option<(ReadGrant<'a>, u64)>; HANDLES],
}

/// Runs the operations. The handles live in fixed arrays owned by the caller;
/// a grant mutably borrows its handle through a raw pointer, and the harness
/// never touches a handle while a grant of it is held.
fn run<'a>(
    prods: &'a mut [Option<Producer>; HANDLES],
    cons: &'a mut [Option<Consumer>; HANDLES],
    m: &mut Model,
    ops: &[Op],
    drain_at_end: bool,
) {
    let pp: *mut Option<Producer> = prods.as_mut_ptr();
    let cp: *mut Option<Consumer> = cons.as_mut_ptr();
    // SAFETY (for every `p(h)` / `c(h)` below): `h < HANDLES`, the arrays
    // outlive 'a, and each call site first checks that no grant of handle
    // `h` is held, so this is the only live reference to that element.
    let p = |h: usize| -> &'a mut Option<Producer> { unsafe { &mut *pp.add(h) } };
    let c = |h: usize| -> &'a mut Option<Consumer> { unsafe { &mut *cp.add(h) } };
    // Per consumer handle: a message a too-small buffer left with it.
    let mut pending: [Option<(u64, Vec<u8>)>; HANDLES] = Default::default();
    let mut held = Held {
        write: Default::default(),
        read: Default::default(),
    };
    let max_len = m.max_len;
    for op in ops {
        match *op {
            Op::TrySend { h, len, fill } | Op::Send { h, len, fill } => {
                let h = h as usize % HANDLES;
                if held.write[h].is_some() {
                    continue;
                }
                let Some(tx) = p(h) else { continue };
                let blocking = matches!(op, Op::Send { .. });
                let len = len as usize % (max_len + 9);
                let msg = pattern(fill, len);
                if len > max_len {
                    let want = Error::TooLarge { len, max: max_len };
                    expect_err("try_send", tx.try_send(&msg), want);
                } else if m.can_claim() {
                    let r = if blocking {
                        tx.send(&msg)
                    } else {
                        tx.try_send(&msg)
                    };
                    r.unwrap_or_else(|e| panic!("send: got {e:?}, model has room"));
                    let pos = m.claim(h);
                    *m.at(pos) = Slot::Msg(msg);
                } else if blocking {
                    expect_err(
                        "send_timeout",
                        tx.send_timeout(&msg, Duration::ZERO),
                        Error::Timeout,
                    );
                } else {
                    expect_err("try_send", tx.try_send(&msg), Error::Full);
                }
            }
            Op::Reserve { h, fill } => {
                let h = h as usize % HANDLES;
                if held.write[h].is_some() {
                    continue;
                }
                let Some(tx) = p(h) else { continue };
                if m.can_claim() {
                    let mut g = tx
                        .try_reserve()
                        .unwrap_or_else(|e| panic!("try_reserve: got {e:?}, model has room"));
                    assert_eq!(g.len(), max_len);
                    let bytes = pattern(fill, max_len);
                    g.copy_from_slice(&bytes);
                    let pos = m.claim(h);
                    held.write[h] = Some((g, pos, bytes));
                } else {
                    expect_err("try_reserve", tx.try_reserve(), Error::Full);
                }
            }
            Op::Commit { h, n } => {
                let h = h as usize % HANDLES;
                if let Some((g, pos, bytes)) = held.write[h].take() {
                    let n = n as usize % (max_len + 1);
                    g.commit(n);
                    *m.at(pos) = Slot::Msg(bytes[..n].to_vec());
                }
            }
            Op::DropWrite { h } => {
                let h = h as usize % HANDLES;
                if let Some((g, pos, _)) = held.write[h].take() {
                    drop(g);
                    *m.at(pos) = Slot::Skip;
                }
            }
            Op::TryRecv { h } | Op::Recv { h } | Op::Take { h } => {
                let h = h as usize % HANDLES;
                if held.read[h].is_some() {
                    continue;
                }
                let Some(rx) = c(h) else { continue };
                let blocking = matches!(op, Op::Recv { .. });
                match pending[h].take().or_else(|| m.take()) {
                    Some((pos, want)) => {
                        let g = if blocking { rx.recv() } else { rx.try_recv() };
                        let g = g.unwrap_or_else(|e| panic!("recv: got {e:?}, model has {want:?}"));
                        assert_eq!(&*g, &want[..], "message differs from the model");
                        if matches!(op, Op::Take { .. }) {
                            held.read[h] = Some((g, pos));
                        } else {
                            drop(g);
                            m.release(pos);
                        }
                    }
                    None if blocking && m.nothing() == Error::Empty => {
                        expect_err(
                            "recv_timeout",
                            rx.recv_timeout(Duration::ZERO),
                            Error::Timeout,
                        );
                    }
                    None => expect_err("try_recv", rx.try_recv(), m.nothing()),
                }
            }
            Op::TryRecvInto { h, buf } => {
                let h = h as usize % HANDLES;
                if held.read[h].is_some() {
                    continue;
                }
                let Some(rx) = c(h) else { continue };
                let mut buf = vec![0u8; buf as usize % (max_len + 8)];
                let r = rx.try_recv_into(&mut buf);
                match pending[h].take().or_else(|| m.take()) {
                    Some((pos, want)) => {
                        // Too small a buffer: the message stays with this
                        // consumer for its next receive (documented).
                        if want.len() > buf.len() {
                            let e = Error::BufferTooSmall {
                                needed: want.len(),
                                capacity: buf.len(),
                            };
                            expect_err("try_recv_into", r, e);
                            pending[h] = Some((pos, want));
                        } else {
                            let k = r.unwrap_or_else(|e| panic!("try_recv_into: got {e:?}"));
                            assert_eq!(&buf[..k], &want[..]);
                            m.release(pos);
                        }
                    }
                    None => expect_err("try_recv_into", r, m.nothing()),
                }
            }
            Op::Release { h } => {
                let h = h as usize % HANDLES;
                if let Some((g, pos)) = held.read[h].take() {
                    drop(g);
                    m.release(pos);
                }
            }
            Op::CloneP { from, to } => {
                let (from, to) = (from as usize % HANDLES, to as usize % HANDLES);
                if held.write[from].is_some() || held.write[to].is_some() || from == to {
                    continue;
                }
                let (Some(src), None) = (p(from).as_ref(), p(to).as_ref()) else {
                    continue;
                };
                match src.try_clone() {
                    Ok(new) => {
                        assert!(m.live_p < m.max_p, "clone beyond max_producers");
                        *p(to) = Some(new);
                        m.live_p += 1;
                    }
                    Err(shmq::OpenError::Busy { .. }) => assert_eq!(m.live_p, m.max_p),
                    Err(e) => panic!("producer try_clone: {e}"),
                }
            }
            Op::CloneC { from, to } => {
                let (from, to) = (from as usize % HANDLES, to as usize % HANDLES);
                if held.read[from].is_some() || held.read[to].is_some() || from == to {
                    continue;
                }
                let (Some(src), None) = (c(from).as_ref(), c(to).as_ref()) else {
                    continue;
                };
                match src.try_clone() {
                    Ok(new) => {
                        assert!(m.live_c < m.max_c, "clone beyond max_consumers");
                        *c(to) = Some(new);
                        m.live_c += 1;
                    }
                    Err(shmq::OpenError::Busy { .. }) => assert_eq!(m.live_c, m.max_c),
                    Err(e) => panic!("consumer try_clone: {e}"),
                }
            }
            Op::DropP { h } => {
                let h = h as usize % HANDLES;
                if held.write[h].is_none() && p(h).take().is_some() {
                    m.live_p -= 1;
                }
            }
            Op::DropC { h } => {
                let h = h as usize % HANDLES;
                if held.read[h].is_none() && c(h).take().is_some() {
                    m.live_c -= 1;
                    // A message it kept for a too-small buffer goes with it.
                    if let Some((pos, _)) = pending[h].take() {
                        m.release(pos);
                    }
                }
            }
        }
    }
    // Settle: drop the grants (writes become skips), then drain.
    for (h, w) in held.write.iter_mut().enumerate() {
        if let Some((g, pos, _)) = w.take() {
            drop(g);
            *m.at(pos) = Slot::Skip;
            let _ = h;
        }
    }
    for r in held.read.iter_mut() {
        if let Some((g, pos)) = r.take() {
            drop(g);
            m.release(pos);
        }
    }
    if !drain_at_end {
        return;
    }
    for h in 0..HANDLES {
        if p(h).take().is_some() {
            m.live_p -= 1;
        }
    }
    assert_eq!(m.live_p, 0);
    let Some(h) = (0..HANDLES).find(|&h| c(h).is_some()) else {
        return;
    };
    for other in (0..HANDLES).filter(|&o| o != h) {
        if c(other).take().is_some() {
            if let Some((pos, _)) = pending[other].take() {
                m.release(pos);
            }
        }
    }
    let rx = c(h).as_mut().unwrap();
    while let Some((pos, want)) = pending[h].take().or_else(|| m.take()) {
        let g = rx
            .try_recv()
            .unwrap_or_else(|e| panic!("drain: got {e:?}, model has {want:?}"));
        assert_eq!(&*g, &want[..]);
        drop(g);
        m.release(pos);
    }
    expect_err("drained", rx.try_recv(), Error::Disconnected);
    assert!(m.slots.is_empty(), "model not drained: {:?}", m.slots);
}

fuzz_target!(|input: Input| {
    let n = 2u64 << (input.slots_log % 6);
    let slot_size = 24 + 8 * (input.size_sel as usize % 30);
    let max_p = 1 + input.max_p as usize % 4;
    let max_c = 1 + input.max_c as usize % 4;
    let opts = shmq::Options::new()
        .slots(n as usize)
        .slot_size(slot_size)
        .max_producers(max_p as u32)
        .max_consumers(max_c as u32);
    let (tx, rx) = shmq::mpmc::channel(&opts).expect("valid options");
    let mut prods: [Option<Producer>; HANDLES] = [Some(tx), None, None, None];
    let mut cons: [Option<Consumer>; HANDLES] = [Some(rx), None, None, None];
    let mut m = Model {
        n,
        max_len: slot_size - 16,
        base: 0,
        slots: VecDeque::new(),
        deq: 0,
        live_p: 1,
        live_c: 1,
        max_p,
        max_c,
    };
    assert_eq!(prods[0].as_ref().unwrap().max_message_len(), m.max_len);
    run(
        &mut prods,
        &mut cons,
        &mut m,
        &input.ops,
        input.drain_at_end,
    );
});
