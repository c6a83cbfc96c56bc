//! Arbitrary sequences of SPSC operations on a heap channel, checked against
//! an exact model of the byte ring (cursors, record sizes, padding, batches).
//!
//! The model knows when the ring is full (the producer refreshes the shared
//! head exactly when it could be), when a batch publishes, and when the
//! consumer frees space, so every `Full`, `Empty` and message is predicted.
#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmq::Error;
use shmq::spsc::{Consumer, Producer, ReadBatch, ReadGrant, WriteBatch, WriteGrant};

/// Nesting depth beyond which nested operations are ignored.
const MAX_DEPTH: u32 = 4;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Capacity is `64 << (cap_log % 7)`: 64 ..= 4096 bytes.
    cap_log: u8,
    ops: Vec<Op>,
    end: End,
}

#[derive(Arbitrary, Debug)]
enum Op {
    P(ProdOp),
    C(ConsOp),
}

#[derive(Arbitrary, Debug)]
enum ProdOp {
    TrySend {
        len: u16,
        fill: u8,
    },
    /// Blocking send when the model says it fits, else `send_timeout(0)`.
    Send {
        len: u16,
        fill: u8,
    },
    /// Reserve, fill, run consumer operations while the grant is held, then
    /// commit a prefix or drop the grant.
    Reserve {
        len: u16,
        fill: u8,
        during: Vec<ConsOp>,
        commit: Option<u16>,
    },
    Batch {
        ops: Vec<ProdOp>,
        /// Publish mid-batch after this many operations.
        publish_at: Option<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum ConsOp {
    TryRecv,
    TryRecvInto {
        buf: u16,
    },
    /// `recv` when the model has a message, else `recv_timeout(0)`.
    Recv,
    /// Receive and hold the grant while producer operations run.
    Hold {
        during: Vec<ProdOp>,
    },
    Batch {
        ops: Vec<ConsOp>,
        release_at: Option<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum End {
    Nothing,
    /// Drop the producer, then drain: every message, then `Disconnected`.
    DropProducerAndDrain,
    /// Drop the consumer: sends fail with `Disconnected`.
    DropConsumerThenSend,
}

struct Msg {
    /// Cursor of the record header (after any padding).
    start: u64,
    /// Cursor just past the record.
    end: u64,
    bytes: Vec<u8>,
}

/// What the ring must look like.
struct Model {
    cap: u64,
    /// Producer's next write cursor.
    tail: u64,
    /// Last published tail.
    pub_tail: u64,
    /// Consumer's private read cursor.
    head: u64,
    /// Last head the consumer published.
    cons_pub: u64,
    q: VecDeque<Msg>,
    p_batching: bool,
    c_batching: bool,
    producer_gone: bool,
}

enum Reserve {
    Ok { start: u64 },
    Full,
    TooLarge,
}

impl Model {
    fn max(&self) -> usize {
        (self.cap / 2) as usize - 8
    }

    fn reserve(&mut self, len: usize) -> Reserve {
        if len > self.max() {
            return Reserve::TooLarge;
        }
        let need = 8 + (len as u64).next_multiple_of(8);
        let pos = self.tail & (self.cap - 1);
        let contiguous = self.cap - pos;
        let pad = if need <= contiguous { 0 } else { contiguous };
        if self.tail - self.cons_pub + pad + need > self.cap {
            // A full ring publishes a pending batch (the consumer could
            // otherwise never make room).
            self.pub_tail = self.tail;
            return Reserve::Full;
        }
        Reserve::Ok {
            start: self.tail + pad,
        }
    }

    fn commit(&mut self, start: u64, bytes: Vec<u8>) {
        let end = start + 8 + (bytes.len() as u64).next_multiple_of(8);
        self.tail = end;
        self.q.push_back(Msg { start, end, bytes });
        if !self.p_batching {
            self.pub_tail = self.tail;
        }
    }

    fn visible(&self) -> Option<&Msg> {
        self.q.front().filter(|m| m.end <= self.pub_tail)
    }

    /// The consumer looked at the front (its private head moves past any
    /// padding before it).
    fn peeked(&mut self) {
        let start = self.visible().expect("peeked a visible message").start;
        self.head = start;
    }

    fn release(&mut self) {
        let m = self.q.pop_front().expect("released a message");
        self.head = m.end;
        if !self.c_batching {
            self.cons_pub = self.head;
        }
    }

    /// The consumer found nothing: it publishes what it released.
    fn empty(&mut self) -> Error {
        self.cons_pub = self.head;
        if self.producer_gone {
            Error::Disconnected
        } else {
            Error::Empty
        }
    }
}

fn pattern(fill: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| fill.wrapping_add((i as u8).wrapping_mul(31)))
        .collect()
}

fn clamp_len(m: &Model, raw: u16) -> usize {
    // Mostly valid lengths, sometimes just above the maximum.
    raw as usize % (m.max() + 9)
}

fn expect_err<T>(what: &str, r: Result<T, Error>, want: Error) {
    match r {
        Err(e) if e == want => {}
        Err(e) => panic!("{what}: got {e:?}, model says {want:?}"),
        Ok(_) => panic!("{what}: got Ok, model says {want:?}"),
    }
}

/// A producer, or a batch of it: the same sending methods.
trait Prod {
    fn try_send(&mut self, msg: &[u8]) -> Result<(), Error>;
    fn send(&mut self, msg: &[u8]) -> Result<(), Error>;
    fn send_timeout(&mut self, msg: &[u8], t: Duration) -> Result<(), Error>;
    fn try_reserve(&mut self, len: usize) -> Result<WriteGrant<'_>, Error>;
    /// A new batch; `None` inside one (batches do not nest).
    fn begin(&mut self) -> Option<WriteBatch<'_>>;
    fn publish(&mut self);
}

/// A consumer, or a batch of it.
trait Cons {
    fn try_recv(&mut self) -> Result<ReadGrant<'_>, Error>;
    fn recv(&mut self) -> Result<ReadGrant<'_>, Error>;
    fn recv_timeout(&mut self, t: Duration) -> Result<ReadGrant<'_>, Error>;
    fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Error>;
    fn begin(&mut self) -> Option<ReadBatch<'_>>;
    fn release(&mut self);
}

macro_rules! prod {
    ($t:ty, |$s:ident| $begin:expr, |$q:ident| $publish:expr) => {
        impl Prod for $t {
            fn try_send(&mut self, msg: &[u8]) -> Result<(), Error> { <$t>::try_send(self, msg) }
            fn send(&mut self, msg: &[u8]) -> Result<(), Error> { <$t>::send(self, msg) }
            fn send_timeout(&mut self, msg: &[u8], t: Duration) -> Result<(), Error> {
                <$t>::send_timeout(self, msg, t)
            }
            fn try_reserve(&mut self, len: usize) -> Result<WriteGrant<'_>, Error> {
                <$t>::try_reserve(self, len)
            }
            fn begin(&mut self) -> Option<WriteBatch<'_>> { let $s = self; $begin }
            fn publish(&mut self) { let $q = self; $publish }
        }
    };
}
prod!(Producer, |p| Some(p.batch()), |_p| ());
prod!(WriteBatch<'_>, |_b| None, |b| WriteBatch::publish(b));

macro_rules! cons {
    ($t:ty, |$s:ident| $begin:expr, |$q:ident| $release:expr) => {
        impl Cons for $t {
            fn try_recv(&mut self) -> Result<ReadGrant<'_>, Error> { <$t>::try_recv(self) }
            fn recv(&mut self) -> Result<ReadGrant<'_>, Error> { <$t>::recv(self) }
            fn recv_timeout(&mut self, t: Duration) -> Result<ReadGrant<'_>, Error> {
                <$t>::recv_timeout(self, t)
            }
            fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
                <$t>::try_recv_into(self, buf)
            }
            fn begin(&mut self) -> Option<ReadBatch<'_>> { let $s = self; $begin }
            fn release(&mut self) { let $q = self; $release }
        }
    };
}
cons!(Consumer, |c| Some(c.batch()), |_c| ());
cons!(ReadBatch<'_>, |_b| None, |b| ReadBatch::release(b));

fn prod_op<'c>(
    p: &mut dyn Prod,
    mut c: Option<&mut (dyn Cons + 'c)>,
    m: &mut Model,
    op: &ProdOp,
    depth: u32,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match op {
        ProdOp::TrySend { len, fill } | ProdOp::Send { len, fill } => {
            let len = clamp_len(m, *len);
            let msg = pattern(*fill, len);
            let blocking = matches!(op, ProdOp::Send { .. });
            match m.reserve(len) {
                Reserve::Ok { start } => {
                    let r = if blocking {
                        p.send(&msg)
                    } else {
                        p.try_send(&msg)
                    };
                    r.unwrap_or_else(|e| panic!("send of {len}: got {e:?}, model has room"));
                    m.commit(start, msg);
                }
                Reserve::Full => {
                    if blocking {
                        expect_err(
                            "send_timeout",
                            p.send_timeout(&msg, Duration::ZERO),
                            Error::Timeout,
                        );
                    } else {
                        expect_err("try_send", p.try_send(&msg), Error::Full);
                    }
                }
                Reserve::TooLarge => {
                    let want = Error::TooLarge { len, max: m.max() };
                    expect_err("try_send", p.try_send(&msg), want);
                }
            }
        }
        ProdOp::Reserve {
            len,
            fill,
            during,
            commit,
        } => {
            let len = clamp_len(m, *len);
            match m.reserve(len) {
                Reserve::Ok { start } => {
                    let mut g = p
                        .try_reserve(len)
                        .unwrap_or_else(|e| panic!("reserve {len}: got {e:?}, model has room"));
                    assert_eq!(g.len(), len);
                    let bytes = pattern(*fill, len);
                    g.copy_from_slice(&bytes);
                    if let Some(c) = c.as_deref_mut() {
                        for op in during {
                            cons_op(c, None, m, op, depth + 1);
                        }
                    }
                    // Without `commit` the grant is dropped: that writes nothing.
                    if let Some(n) = commit {
                        let n = *n as usize % (len + 1);
                        g.commit(n);
                        m.commit(start, bytes[..n].to_vec());
                    }
                }
                Reserve::Full => expect_err("try_reserve", p.try_reserve(len), Error::Full),
                Reserve::TooLarge => {
                    let want = Error::TooLarge { len, max: m.max() };
                    expect_err("try_reserve", p.try_reserve(len), want);
                }
            }
        }
        ProdOp::Batch { ops, publish_at } => {
            let mut run = |b: &mut dyn Prod, m: &mut Model| {
                for (i, op) in ops.iter().enumerate() {
                    if *publish_at == Some(i as u8) {
                        b.publish();
                        m.pub_tail = m.tail;
                    }
                    prod_op(b, c.as_deref_mut(), m, op, depth + 1);
                }
            };
            // Batches do not nest: inside one, these ops continue it.
            if m.p_batching {
                run(p, m);
            } else {
                let mut b = p.begin().expect("not in a batch");
                m.p_batching = true;
                run(&mut b, m);
                drop(b);
                m.p_batching = false;
                m.pub_tail = m.tail;
            }
        }
    }
}

fn check_msg(got: &[u8], m: &Model) {
    let want = &m.visible().expect("model has a message").bytes;
    assert_eq!(got, &want[..], "message bytes differ from the model");
}

fn cons_op<'p>(
    c: &mut dyn Cons,
    mut p: Option<&mut (dyn Prod + 'p)>,
    m: &mut Model,
    op: &ConsOp,
    depth: u32,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match op {
        ConsOp::TryRecv | ConsOp::Recv | ConsOp::Hold { .. } => {
            let blocking = matches!(op, ConsOp::Recv);
            if m.visible().is_none() {
                let want = m.empty();
                if blocking && want == Error::Empty {
                    expect_err(
                        "recv_timeout",
                        c.recv_timeout(Duration::ZERO),
                        Error::Timeout,
                    );
                } else {
                    expect_err("try_recv", c.try_recv(), want);
                }
                return;
            }
            let g = if blocking { c.recv() } else { c.try_recv() };
            let g = g.unwrap_or_else(|e| panic!("recv: got {e:?}, model has a message"));
            m.peeked();
            check_msg(&g, m);
            if let (ConsOp::Hold { during }, Some(p)) = (op, p.as_deref_mut()) {
                for op in during {
                    prod_op(p, None, m, op, depth + 1);
                }
            }
            drop(g);
            m.release();
        }
        ConsOp::TryRecvInto { buf } => {
            let mut buf = vec![0u8; *buf as usize % 4200];
            let r = c.try_recv_into(&mut buf);
            let Some(front) = m.visible() else {
                let want = m.empty();
                expect_err("try_recv_into", r, want);
                return;
            };
            let need = front.bytes.len();
            m.peeked();
            if need > buf.len() {
                let want = Error::BufferTooSmall {
                    needed: need,
                    capacity: buf.len(),
                };
                expect_err("try_recv_into", r, want);
            } else {
                let n = r.unwrap_or_else(|e| panic!("try_recv_into: got {e:?}"));
                check_msg(&buf[..n], m);
                m.release();
            }
        }
        ConsOp::Batch { ops, release_at } => {
            let mut run = |b: &mut dyn Cons, m: &mut Model| {
                for (i, op) in ops.iter().enumerate() {
                    if *release_at == Some(i as u8) {
                        b.release();
                        m.cons_pub = m.head;
                    }
                    cons_op(b, p.as_deref_mut(), m, op, depth + 1);
                }
            };
            if m.c_batching {
                run(c, m);
            } else {
                let mut b = c.begin().expect("not in a batch");
                m.c_batching = true;
                run(&mut b, m);
                drop(b);
                m.c_batching = false;
                m.cons_pub = m.head;
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let cap = 64usize << (input.cap_log % 7);
    let opts = shmq::Options::new().capacity(cap);
    let (mut tx, mut rx) = shmq::spsc::channel(&opts).expect("valid options");
    let mut m = Model {
        cap: cap as u64,
        tail: 0,
        pub_tail: 0,
        head: 0,
        cons_pub: 0,
        q: VecDeque::new(),
        p_batching: false,
        c_batching: false,
        producer_gone: false,
    };
    assert_eq!(tx.max_message_len(), m.max());
    for op in &input.ops {
        match op {
            Op::P(op) => prod_op(&mut tx, Some(&mut rx), &mut m, op, 0),
            Op::C(op) => cons_op(&mut rx, Some(&mut tx), &mut m, op, 0),
        }
    }
    match input.end {
        End::Nothing => {}
        End::DropProducerAndDrain => {
            drop(tx);
            m.pub_tail = m.tail;
            m.producer_gone = true;
            while m.visible().is_some() {
                let g = rx
                    .try_recv()
                    .expect("committed message after producer drop");
                m.peeked();
                check_msg(&g, &m);
                drop(g);
                m.release();
            }
            expect_err("drain", rx.try_recv(), Error::Disconnected);
            assert!(m.q.is_empty(), "messages lost");
        }
        End::DropConsumerThenSend => {
            drop(rx);
            expect_err(
                "send after consumer drop",
                tx.try_send(b"x"),
                Error::Disconnected,
            );
        }
    }
});
