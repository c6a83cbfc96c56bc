//! Proptest state-machine models of the SPSC and MPMC rings: random
//! single-threaded sequences of operations on heap channels, each checked
//! against a reference model built from `VecDeque`s.
//!
//! The SPSC reference tracks the four cursors exactly as the protocol
//! documents them (8-byte record headers, payloads padded to 8, a padding
//! record where a record would not fit before the end of the ring, the
//! producer's view of space bounded by the consumer's *published* head), so
//! it predicts `Full` and `Empty` exactly, not just the order of messages.
//! The MPMC reference tracks positions: a slot is free for the producer's
//! next position once the message `slots` positions earlier was released.
//!
//! Heap-only, so these also run under Miri (`scripts/ci-miri.sh`), with few
//! cases.

use std::collections::{BTreeSet, VecDeque};

use proptest::prelude::*;
use shmq::{Error, OpenError, Options, mpmc, spsc};

/// Proptest settings: the default case count normally (or `PROPTEST_CASES`),
/// a handful under Miri, which runs these about 10^4 times slower. No
/// failure-persistence files under Miri (isolation forbids file access).
fn config() -> ProptestConfig {
    if cfg!(miri) {
        ProptestConfig {
            cases: 6,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    } else {
        ProptestConfig::default()
    }
}

/// Longest operation sequence per case.
const MAX_OPS: usize = if cfg!(miri) { 24 } else { 80 };

fn payload(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
}

// ---------------------------------------------------------------------------
// SPSC
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum SpscOp {
    /// `try_send` of `len` bytes.
    Send { len: usize, tag: u8 },
    /// `try_reserve(len)`, fill, `commit(n)` with `n <= len`.
    ReserveCommit { len: usize, n: usize, tag: u8 },
    /// `try_reserve(len)`, fill, drop without commit.
    ReserveDrop { len: usize },
    /// Sends under one `batch()`, with consumer attempts in between (which
    /// must not see the batch before it is published).
    WriteBatch(Vec<(usize, u8)>),
    /// `try_recv`, grant dropped at once.
    Recv,
    /// `try_recv_into` a buffer of `cap` bytes (too small: the message stays).
    RecvInto { cap: usize },
    /// `try_recv`, and while holding the grant, producer sends.
    RecvHold(Vec<(usize, u8)>),
    /// Up to `k` receives under one consumer `batch()`, with producer sends
    /// in between; `release` the batch midway if asked.
    ReadBatch {
        k: usize,
        send_len: usize,
        release_midway: bool,
    },
}

fn spsc_op(max: usize) -> impl Strategy<Value = SpscOp> {
    // Lengths go a little past the maximum, to reach `TooLarge`.
    let len = 0..=max + 9;
    prop_oneof![
        4 => (len.clone(), any::<u8>()).prop_map(|(len, tag)| SpscOp::Send { len, tag }),
        2 => (len.clone(), any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(len, n, tag)| SpscOp::ReserveCommit { len, n: n.index(len + 1), tag }),
        1 => len.clone().prop_map(|len| SpscOp::ReserveDrop { len }),
        1 => prop::collection::vec((len.clone(), any::<u8>()), 1..6).prop_map(SpscOp::WriteBatch),
        5 => Just(SpscOp::Recv),
        1 => (0..=max).prop_map(|cap| SpscOp::RecvInto { cap }),
        1 => prop::collection::vec((len.clone(), any::<u8>()), 0..3).prop_map(SpscOp::RecvHold),
        1 => (1..5usize, len, any::<bool>()).prop_map(|(k, send_len, release_midway)| {
            SpscOp::ReadBatch { k, send_len, release_midway }
        }),
    ]
}

/// The reference: cursors and the messages between them.
#[derive(Debug)]
struct SpscModel {
    cap: u64,
    /// Producer's write cursor, committed records included.
    tail: u64,
    /// Committed but unpublished records: (cursor after it, bytes).
    pending: Vec<(u64, Vec<u8>)>,
    /// Published, unread records.
    visible: VecDeque<(u64, Vec<u8>)>,
    /// Consumer's read cursor.
    head: u64,
    /// Head as the producer can see it (published by the consumer).
    released: u64,
}

fn record_size(len: usize) -> u64 {
    8 + (len as u64).next_multiple_of(8)
}

impl SpscModel {
    fn new(cap: u64) -> SpscModel {
        SpscModel {
            cap,
            tail: 0,
            pending: Vec::new(),
            visible: VecDeque::new(),
            head: 0,
            released: 0,
        }
    }

    fn max(&self) -> usize {
        (self.cap / 2 - 8) as usize
    }

    /// Where a record of `len` bytes would start, or the error.
    fn reserve(&mut self, len: usize) -> Result<u64, Error> {
        if len > self.max() {
            return Err(Error::TooLarge {
                len,
                max: self.max(),
            });
        }
        let need = record_size(len);
        let pos = self.tail % self.cap;
        let pad = if need <= self.cap - pos {
            0
        } else {
            self.cap - pos
        };
        if self.tail - self.released + pad + need > self.cap {
            // A full ring publishes what a batch committed so far.
            self.publish();
            return Err(Error::Full);
        }
        Ok(self.tail + pad)
    }

    fn commit(&mut self, start: u64, bytes: Vec<u8>) {
        self.tail = start + record_size(bytes.len());
        self.pending.push((self.tail, bytes));
    }

    fn publish(&mut self) {
        self.visible.extend(self.pending.drain(..));
    }

    /// The next message, consumed locally; `released` moves only when the
    /// caller says the release is published.
    fn recv(&mut self) -> Result<Vec<u8>, Error> {
        match self.visible.pop_front() {
            Some((next, bytes)) => {
                self.head = next;
                Ok(bytes)
            }
            None => {
                // An empty look publishes the consumer's batched releases.
                self.released = self.head;
                Err(Error::Empty)
            }
        }
    }
}

/// Sends `bytes` in both the ring and the model; the results must agree.
fn spsc_send(
    try_send: impl FnOnce(&[u8]) -> Result<(), Error>,
    m: &mut SpscModel,
    bytes: Vec<u8>,
    publish: bool,
) {
    let want = m.reserve(bytes.len());
    let got = try_send(&bytes);
    match want {
        Ok(start) => {
            assert_eq!(got, Ok(()), "model: fits at {start}; {m:?}");
            m.commit(start, bytes);
            if publish {
                m.publish();
            }
        }
        Err(e) => assert_eq!(got, Err(e), "{m:?}"),
    }
}

/// One `try_recv`, compared with the model. Returns whether it got a message.
fn spsc_recv(
    try_recv: impl FnOnce() -> Result<Vec<u8>, Error>,
    m: &mut SpscModel,
    publish_release: bool,
) -> bool {
    let want = m.recv();
    match try_recv() {
        Ok(g) => {
            assert_eq!(Ok(&g[..]), want.as_deref().map_err(|e| *e), "{m:?}");
            if publish_release {
                m.released = m.head;
            }
            true
        }
        Err(e) => {
            assert_eq!(Err(e), want, "{m:?}");
            false
        }
    }
}

fn run_spsc(cap: u64, ops: Vec<SpscOp>) {
    let (mut tx, mut rx) = spsc::channel(&Options::new().capacity(cap as usize)).unwrap();
    let mut m = SpscModel::new(cap);
    assert_eq!(tx.max_message_len(), m.max());
    for op in ops {
        match op {
            SpscOp::Send { len, tag } => {
                spsc_send(|x| tx.try_send(x), &mut m, payload(tag, len), true)
            }
            SpscOp::ReserveCommit { len, n, tag } => {
                let want = m.reserve(len);
                match tx.try_reserve(len) {
                    Ok(mut g) => {
                        let start = want.expect("model says it does not fit");
                        assert_eq!(g.len(), len);
                        let bytes = payload(tag, len);
                        g.copy_from_slice(&bytes);
                        g.commit(n);
                        m.commit(start, bytes[..n].to_vec());
                        m.publish();
                    }
                    Err(e) => assert_eq!(Err(e), want.map(|_| ())),
                }
            }
            SpscOp::ReserveDrop { len } => {
                let want = m.reserve(len);
                match tx.try_reserve(len) {
                    Ok(mut g) => {
                        assert!(want.is_ok(), "{m:?}");
                        g.fill(0xee);
                    }
                    Err(e) => assert_eq!(Err(e), want.map(|_| ())),
                }
            }
            SpscOp::WriteBatch(sends) => {
                let mut b = tx.batch();
                for (len, tag) in sends {
                    spsc_send(|x| b.try_send(x), &mut m, payload(tag, len), false);
                    // The consumer sees only what a full ring forced out.
                    spsc_recv(|| rx.try_recv().map(|g| g.to_vec()), &mut m, true);
                }
                drop(b);
                m.publish();
            }
            SpscOp::Recv => {
                spsc_recv(|| rx.try_recv().map(|g| g.to_vec()), &mut m, true);
            }
            SpscOp::RecvInto { cap } => {
                let mut buf = vec![0u8; cap];
                let got = rx.try_recv_into(&mut buf);
                match m.visible.front() {
                    Some((_, bytes)) if bytes.len() > cap => {
                        assert_eq!(
                            got,
                            Err(Error::BufferTooSmall {
                                needed: bytes.len(),
                                capacity: cap
                            })
                        );
                    }
                    _ => match got {
                        Ok(n) => {
                            let want = m.recv().unwrap();
                            m.released = m.head;
                            assert_eq!(&buf[..n], &want[..]);
                        }
                        Err(e) => assert_eq!(Err(e), m.recv()),
                    },
                }
            }
            SpscOp::RecvHold(sends) => {
                let want = m.recv();
                match rx.try_recv() {
                    Ok(g) => {
                        assert_eq!(Ok(&*g), want.as_deref().map_err(|e| *e));
                        for (len, tag) in sends {
                            // The held record is not free yet.
                            spsc_send(|x| tx.try_send(x), &mut m, payload(tag, len), true);
                        }
                        assert_eq!(Ok(&*g), want.as_deref().map_err(|e| *e));
                        drop(g);
                        m.released = m.head;
                    }
                    Err(e) => assert_eq!(Err(e), want),
                }
            }
            SpscOp::ReadBatch {
                k,
                send_len,
                release_midway,
            } => {
                let mut b = rx.batch();
                for i in 0..k {
                    spsc_recv(|| b.try_recv().map(|g| g.to_vec()), &mut m, false);
                    // Space freed under the batch is not visible yet.
                    spsc_send(|x| tx.try_send(x), &mut m, payload(i as u8, send_len), true);
                    if release_midway && i == k / 2 {
                        b.release();
                        m.released = m.head;
                    }
                }
                drop(b);
                m.released = m.head;
            }
        }
    }
    // Drain: everything published arrives, in order, then Disconnected.
    drop(tx);
    m.publish();
    while let Some((_, want)) = m.visible.pop_front() {
        assert_eq!(&*rx.try_recv().unwrap(), &want[..]);
    }
    assert_eq!(rx.try_recv().err(), Some(Error::Disconnected));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn spsc_matches_model(
        cap in prop::sample::select(vec![64u64, 128, 256]),
        ops in prop::collection::vec(spsc_op(248), 1..MAX_OPS),
    ) {
        // Lengths were drawn for the largest ring; clamp to this one's
        // maximum + 9 so that every size class, `TooLarge` included, occurs.
        let max = (cap / 2 - 8) as usize;
        let clamp = |len: usize| len % (max + 10);
        let ops = ops
            .into_iter()
            .map(|op| match op {
                SpscOp::Send { len, tag } => SpscOp::Send { len: clamp(len), tag },
                SpscOp::ReserveCommit { len, n, tag } => {
                    let len = clamp(len);
                    SpscOp::ReserveCommit { len, n: n.min(len), tag }
                }
                SpscOp::ReserveDrop { len } => SpscOp::ReserveDrop { len: clamp(len) },
                SpscOp::WriteBatch(v) => {
                    SpscOp::WriteBatch(v.into_iter().map(|(l, t)| (clamp(l), t)).collect())
                }
                SpscOp::RecvInto { cap } => SpscOp::RecvInto { cap: cap % (max + 1) },
                SpscOp::RecvHold(v) => {
                    SpscOp::RecvHold(v.into_iter().map(|(l, t)| (clamp(l), t)).collect())
                }
                SpscOp::ReadBatch { k, send_len, release_midway } => SpscOp::ReadBatch {
                    k,
                    send_len: clamp(send_len),
                    release_midway,
                },
                op => op,
            })
            .collect();
        run_spsc(cap, ops);
    }
}

// ---------------------------------------------------------------------------
// MPMC
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum MpmcOp {
    /// Producer `p` (index modulo the live ones) sends `len` bytes.
    Send {
        p: usize,
        len: usize,
        tag: u8,
    },
    /// Producer `p` reserves, fills, commits `n` bytes.
    ReserveCommit {
        p: usize,
        n: usize,
        tag: u8,
    },
    /// Producer `p` reserves and drops the grant: a skip record.
    ReserveDrop {
        p: usize,
    },
    /// Consumer `c` receives once.
    Recv {
        c: usize,
    },
    /// Consumer `c` receives into a buffer of `cap` bytes (too small: the
    /// message stays with `c` for its next receive).
    RecvInto {
        c: usize,
        cap: usize,
    },
    /// Consumer `c` holds a message while consumer `d` receives and producer
    /// `p` sends.
    RecvHold {
        c: usize,
        d: usize,
        p: usize,
        tag: u8,
    },
    CloneProducer {
        p: usize,
    },
    CloneConsumer {
        c: usize,
    },
    DropProducer {
        p: usize,
    },
    DropConsumer {
        c: usize,
    },
}

fn mpmc_op() -> impl Strategy<Value = MpmcOp> {
    let i = 0..8usize;
    prop_oneof![
        5 => (i.clone(), 0..=48usize, any::<u8>()).prop_map(|(p, len, tag)| MpmcOp::Send { p, len, tag }),
        2 => (i.clone(), 0..=40usize, any::<u8>()).prop_map(|(p, n, tag)| MpmcOp::ReserveCommit { p, n, tag }),
        2 => i.clone().prop_map(|p| MpmcOp::ReserveDrop { p }),
        6 => i.clone().prop_map(|c| MpmcOp::Recv { c }),
        1 => (i.clone(), 0..=40usize).prop_map(|(c, cap)| MpmcOp::RecvInto { c, cap }),
        2 => (i.clone(), i.clone(), i.clone(), any::<u8>())
            .prop_map(|(c, d, p, tag)| MpmcOp::RecvHold { c, d, p, tag }),
        1 => i.clone().prop_map(|p| MpmcOp::CloneProducer { p }),
        1 => i.clone().prop_map(|c| MpmcOp::CloneConsumer { c }),
        1 => i.clone().prop_map(|p| MpmcOp::DropProducer { p }),
        1 => i.prop_map(|c| MpmcOp::DropConsumer { c }),
    ]
}

#[derive(Debug)]
struct MpmcModel {
    slots: u64,
    max_len: usize,
    /// Next position a producer claims.
    prod: u64,
    /// Published or skipped, not yet taken: (position, message or skip).
    queue: VecDeque<(u64, Option<Vec<u8>>)>,
    /// Positions whose slot is not yet released (queued or held).
    unreleased: BTreeSet<u64>,
}

impl MpmcModel {
    fn claim(&mut self) -> Result<u64, Error> {
        if self.prod >= self.slots && self.unreleased.contains(&(self.prod - self.slots)) {
            return Err(Error::Full);
        }
        let pos = self.prod;
        self.prod += 1;
        self.unreleased.insert(pos);
        Ok(pos)
    }

    /// Takes the next message, skipping (and releasing) skip records. The
    /// caller releases the returned position.
    fn take(&mut self, producers: usize) -> Result<(u64, Vec<u8>), Error> {
        while let Some((pos, m)) = self.queue.pop_front() {
            match m {
                Some(m) => return Ok((pos, m)),
                None => {
                    self.unreleased.remove(&pos);
                }
            }
        }
        if producers == 0 {
            Err(Error::Disconnected)
        } else {
            Err(Error::Empty)
        }
    }
}

struct Mpmc {
    producers: Vec<mpmc::Producer>,
    consumers: Vec<mpmc::Consumer>,
    /// Per consumer: the message a too-small buffer left with it, which its
    /// next receive returns.
    pending: Vec<Option<(u64, Vec<u8>)>>,
    m: MpmcModel,
    max_producers: usize,
    max_consumers: usize,
}

impl Mpmc {
    /// What consumer `c`'s next receive gets.
    fn take(&mut self, c: usize) -> Result<(u64, Vec<u8>), Error> {
        match self.pending[c].take() {
            Some(m) => Ok(m),
            None => self.m.take(self.producers.len()),
        }
    }

    fn send(&mut self, p: usize, bytes: Vec<u8>) {
        if self.producers.is_empty() {
            return;
        }
        let p = p % self.producers.len();
        let got = self.producers[p].try_send(&bytes);
        if bytes.len() > self.m.max_len {
            assert_eq!(
                got,
                Err(Error::TooLarge {
                    len: bytes.len(),
                    max: self.m.max_len
                })
            );
            return;
        }
        match self.m.claim() {
            Ok(pos) => {
                assert_eq!(got, Ok(()), "{:?}", self.m);
                self.m.queue.push_back((pos, Some(bytes)));
            }
            Err(e) => assert_eq!(got, Err(e), "{:?}", self.m),
        }
    }

    fn recv(&mut self, c: usize) {
        let c = c % self.consumers.len();
        let want = self.take(c);
        match self.consumers[c].try_recv() {
            Ok(g) => {
                let (pos, bytes) = want.expect("model has no message");
                assert_eq!(&*g, &bytes[..]);
                drop(g);
                self.m.unreleased.remove(&pos);
            }
            Err(e) => assert_eq!(Err(e), want.map(|_| ())),
        }
    }

    fn check_len(&self) {
        if let Some(c) = self.consumers.first() {
            // Queued messages and skip records, as the cursors see them.
            assert_eq!(c.len(), self.m.queue.len(), "{:?}", self.m);
        }
    }
}

fn run_mpmc(slots: u64, slot_size: usize, ops: Vec<MpmcOp>) {
    let opts = Options::new()
        .slots(slots as usize)
        .slot_size(slot_size)
        .max_producers(3)
        .max_consumers(3);
    let (tx, rx) = mpmc::channel(&opts).unwrap();
    let mut s = Mpmc {
        producers: vec![tx],
        consumers: vec![rx],
        pending: vec![None],
        m: MpmcModel {
            slots,
            max_len: slot_size - 16,
            prod: 0,
            queue: VecDeque::new(),
            unreleased: BTreeSet::new(),
        },
        max_producers: 3,
        max_consumers: 3,
    };
    assert_eq!(s.producers[0].max_message_len(), s.m.max_len);
    for op in ops {
        match op {
            MpmcOp::Send { p, len, tag } => s.send(p, payload(tag, len)),
            MpmcOp::ReserveCommit { p, n, tag } => {
                if s.producers.is_empty() {
                    continue;
                }
                let p = p % s.producers.len();
                let n = n.min(s.m.max_len);
                let want = s.m.claim();
                match s.producers[p].try_reserve() {
                    Ok(mut g) => {
                        let pos = want.expect("model says full");
                        assert_eq!(g.len(), s.m.max_len);
                        let bytes = payload(tag, g.len());
                        g.copy_from_slice(&bytes);
                        g.commit(n);
                        s.m.queue.push_back((pos, Some(bytes[..n].to_vec())));
                    }
                    Err(e) => assert_eq!(Err(e), want.map(|_| ())),
                }
            }
            MpmcOp::ReserveDrop { p } => {
                if s.producers.is_empty() {
                    continue;
                }
                let p = p % s.producers.len();
                let want = s.m.claim();
                match s.producers[p].try_reserve() {
                    Ok(mut g) => {
                        let pos = want.expect("model says full");
                        g.fill(0xee);
                        drop(g);
                        s.m.queue.push_back((pos, None));
                    }
                    Err(e) => assert_eq!(Err(e), want.map(|_| ())),
                }
            }
            MpmcOp::Recv { c } => s.recv(c),
            MpmcOp::RecvInto { c, cap } => {
                let c = c % s.consumers.len();
                let want = s.take(c);
                let mut buf = vec![0u8; cap];
                let got = s.consumers[c].try_recv_into(&mut buf);
                match want {
                    Ok((pos, bytes)) => {
                        if bytes.len() > cap {
                            assert_eq!(
                                got,
                                Err(Error::BufferTooSmall {
                                    needed: bytes.len(),
                                    capacity: cap
                                })
                            );
                            // Kept, unreleased, for c's next receive.
                            s.pending[c] = Some((pos, bytes));
                        } else {
                            s.m.unreleased.remove(&pos);
                            assert_eq!(got, Ok(bytes.len()));
                            assert_eq!(&buf[..bytes.len()], &bytes[..]);
                        }
                    }
                    Err(e) => assert_eq!(got, Err(e)),
                }
            }
            MpmcOp::RecvHold { c, d, p, tag } => {
                let n = s.consumers.len();
                let (c, d) = (c % n, d % n);
                if c == d {
                    s.recv(c);
                    continue;
                }
                let want = s.take(c);
                // Split borrows: the held grant lives in `first`, the other
                // consumer in `second`.
                let (lo, hi) = s.consumers.split_at_mut(c.max(d));
                let (held, other) = if c < d {
                    (&mut lo[c], &mut hi[0])
                } else {
                    (&mut hi[0], &mut lo[d])
                };
                match held.try_recv() {
                    Ok(g) => {
                        let (pos, bytes) = want.expect("model has no message");
                        assert_eq!(&*g, &bytes[..]);
                        // Another consumer gets the next message meanwhile.
                        let want2 = match s.pending[d].take() {
                            Some(m) => Ok(m),
                            None => s.m.take(s.producers.len()),
                        };
                        match other.try_recv() {
                            Ok(g2) => {
                                let (pos2, bytes2) = want2.expect("model has no second message");
                                assert_eq!(&*g2, &bytes2[..]);
                                drop(g2);
                                s.m.unreleased.remove(&pos2);
                            }
                            Err(e) => assert_eq!(Err(e), want2.map(|_| ())),
                        }
                        // A producer may need the held slot: Full until released.
                        if !s.producers.is_empty() {
                            let p = p % s.producers.len();
                            let bytes3 = payload(tag, s.m.max_len.min(3));
                            let got = s.producers[p].try_send(&bytes3);
                            match s.m.claim() {
                                Ok(pos3) => {
                                    assert_eq!(got, Ok(()), "{:?}", s.m);
                                    s.m.queue.push_back((pos3, Some(bytes3)));
                                }
                                Err(e) => assert_eq!(got, Err(e), "{:?}", s.m),
                            }
                        }
                        assert_eq!(&*g, &bytes[..]);
                        drop(g);
                        s.m.unreleased.remove(&pos);
                    }
                    Err(e) => assert_eq!(Err(e), want.map(|_| ())),
                }
            }
            MpmcOp::CloneProducer { p } => {
                if s.producers.is_empty() {
                    continue;
                }
                let p = p % s.producers.len();
                match s.producers[p].try_clone() {
                    Ok(tx) => {
                        assert!(s.producers.len() < s.max_producers);
                        s.producers.push(tx);
                    }
                    Err(OpenError::Busy { .. }) => {
                        assert_eq!(s.producers.len(), s.max_producers);
                    }
                    Err(e) => panic!("clone producer: {e}"),
                }
            }
            MpmcOp::CloneConsumer { c } => {
                let c = c % s.consumers.len();
                match s.consumers[c].try_clone() {
                    Ok(rx) => {
                        assert!(s.consumers.len() < s.max_consumers);
                        s.consumers.push(rx);
                        s.pending.push(None);
                    }
                    Err(OpenError::Busy { .. }) => {
                        assert_eq!(s.consumers.len(), s.max_consumers);
                    }
                    Err(e) => panic!("clone consumer: {e}"),
                }
            }
            MpmcOp::DropProducer { p } => {
                if !s.producers.is_empty() {
                    let p = p % s.producers.len();
                    s.producers.remove(p);
                }
            }
            MpmcOp::DropConsumer { c } => {
                // Keep one consumer, so that the queue can be drained.
                if s.consumers.len() > 1 {
                    let c = c % s.consumers.len();
                    s.consumers.remove(c);
                    // Its undelivered message is dropped with it.
                    if let Some((pos, _)) = s.pending.remove(c) {
                        s.m.unreleased.remove(&pos);
                    }
                }
            }
        }
        s.check_len();
    }
    // Drain: every published message arrives exactly once, in order; then
    // (all producers gone) Disconnected.
    s.producers.clear();
    // The other consumers leave; a message one kept for a too-small buffer
    // goes with it.
    while s.consumers.len() > 1 {
        s.consumers.pop();
        if let Some(Some((pos, _))) = s.pending.pop() {
            s.m.unreleased.remove(&pos);
        }
    }
    loop {
        let want = s.take(0);
        match s.consumers[0].try_recv() {
            Ok(g) => {
                let (pos, bytes) = want.expect("model has no message");
                assert_eq!(&*g, &bytes[..]);
                drop(g);
                s.m.unreleased.remove(&pos);
            }
            Err(e) => {
                assert_eq!(Err(e), want.map(|_| ()));
                break;
            }
        }
    }
    assert_eq!(s.consumers[0].try_recv().err(), Some(Error::Disconnected));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mpmc_matches_model(
        slots in prop::sample::select(vec![2u64, 4, 8]),
        slot_size in prop::sample::select(vec![24usize, 32, 56]),
        ops in prop::collection::vec(mpmc_op(), 1..MAX_OPS),
    ) {
        run_mpmc(slots, slot_size, ops);
    }
}
