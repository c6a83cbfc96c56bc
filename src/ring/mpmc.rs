//! MPMC protocol: Dmitry Vyukov's bounded queue over fixed-size slots, with a
//! per-slot `u64` sequence number, made safe against dead endpoints.
//!
//! Slot `i` serves positions `i, i + n, i + 2n, …` (`n` slots, a power of
//! two). For position `p` its sequence goes:
//!
//! | sequence | meaning |
//! |---|---|
//! | `p` | free for the producer that claims `p` |
//! | `p + 1` | published: holds a message for the consumer that claims `p` |
//! | `p + n` | released: free for the producer of the next lap |
//!
//! A producer claims `p` by CAS on the enqueue cursor when the slot reads `p`,
//! writes the payload and the info word, and publishes with a Release store of
//! `p + 1`. A consumer claims `p` by CAS on the dequeue cursor when the slot
//! reads `p + 1`, reads, and frees it with a Release store of `p + n`.
//!
//! Before each CAS the endpoint records `claiming = p + 1` in its endpoint
//! slot; the CAS (AcqRel) publishes that record. A survivor stuck on position
//! `p` can then find who claimed it, and if every endpoint that claims `p` is
//! dead, finish its work: a consumer marks an unpublished slot abandoned and
//! publishes it (consumers skip it); a producer frees a slot whose consumer
//! died holding it.
//!
//! Abandonment is one CAS of the sequence from `p` to `(p + 1) |
//! ABANDONED`: it succeeds only while the slot still waits for position
//! `p`'s producer, so a late decision (a consumer preempted after its
//! liveness probe, while others resolved `p` and the slot moved on to
//! `p + n`) cannot touch a later message. Nothing else is written into a
//! slot that has not been won.

use crate::error::{Corruption, Error};
use crate::layout::{CONS_AT, KIND_ABANDONED, KIND_MSG, KIND_SKIP, PROD_AT, SLOT_HEADER};
use crate::region::Mem;
use crate::sync::Ordering;

/// Sequence flag: position `p`'s producer died before publishing, and a
/// consumer resolved the slot as `(p + 1) | ABANDONED`. Positions stay below
/// `CURSOR_LIMIT`, far from this bit.
const ABANDONED: u64 = 1 << 63;

/// Cursors count messages one at a time from 0 and cannot legitimately get
/// anywhere near this (centuries at any rate); a value this high comes from
/// a scribbling peer. Below it, `pos + 1` and `pos + n` never overflow into
/// the `ABANDONED` bit.
const CURSOR_LIMIT: u64 = 1 << 62;

/// How many times a claim loop retries under contention before reporting
/// "not now" to its caller (who retries within its deadline). Bounds the work
/// a peer that keeps moving cursors can make us do.
const MAX_TRIES: u32 = 1 << 16;

/// Whether `pos`, a cursor value read from the region, is in range (see
/// [`CURSOR_LIMIT`]).
fn cursor_in_range(pos: u64) -> bool {
    pos < CURSOR_LIMIT
}

fn corrupted(mem: &Mem, what: &'static str, at: Option<u64>, value: u64) -> Error {
    // Relaxed: a diagnostic flag; nothing is ordered by it.
    mem.header().meta.poisoned.store(1, Ordering::Relaxed);
    Error::Corrupted(Corruption::new(what, at, value))
}

/// Geometry shared by producer and consumer state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slots {
    /// Number of slots (power of two).
    pub n: u64,
    /// Bytes per slot, header included (multiple of 8).
    pub stride: u64,
}

impl Slots {
    pub(crate) fn of(mem: &Mem) -> Slots {
        let g = mem.geometry();
        Slots {
            n: g.capacity,
            stride: u64::from(g.slot_size),
        }
    }
    fn offset(&self, pos: u64) -> u64 {
        (pos & (self.n - 1)) * self.stride
    }
    pub(crate) fn max_message_len(&self) -> usize {
        self.stride as usize - SLOT_HEADER
    }
    fn seq<'m>(&self, mem: &'m Mem, pos: u64) -> &'m crate::sync::AtomicU64 {
        mem.word(self.offset(pos))
    }
    fn info<'m>(&self, mem: &'m Mem, pos: u64) -> &'m crate::sync::AtomicU64 {
        mem.word(self.offset(pos) + 8)
    }
    /// Payload of the slot for `pos`.
    pub(crate) fn payload(&self, mem: &Mem, pos: u64, len: usize) -> *mut u8 {
        mem.bytes(self.offset(pos) + SLOT_HEADER as u64, len)
    }

    /// Writes the initial sequences (`i` for slot `i`). Creator only, before
    /// the segment is published.
    pub(crate) fn init(&self, mem: &Mem) {
        for i in 0..self.n {
            // Relaxed: published by the creator's Release store of READY (or,
            // on the heap, by handing the endpoints to other threads).
            self.seq(mem, i).store(i, Ordering::Relaxed);
        }
    }
}

/// A message a consumer took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    pub pos: u64,
    pub len: usize,
    pub kind: u32,
}

/// Producer side: claims, commits.
pub(crate) fn try_claim(mem: &Mem, s: &Slots, me: usize) -> Result<u64, Error> {
    let h = mem.header();
    let claiming = &mem.endpoint(me).claiming;
    // Relaxed: only a starting guess; the slot sequence and the CAS validate it.
    let mut pos = h.prod.load(Ordering::Relaxed);
    for _ in 0..MAX_TRIES {
        if !cursor_in_range(pos) {
            // Relaxed: nothing is claimed (a failed CAS may have left our
            // record of an earlier guess).
            claiming.store(0, Ordering::Relaxed);
            return Err(corrupted(mem, "enqueue cursor out of range", PROD_AT, pos));
        }
        // Acquire: pairs with the consumer's Release store of `p + n` in
        // `release`: its reads of the old payload happen-before our writes.
        // An abandoned last lap (`(p - n + 1) | ABANDONED`) is not released
        // yet: without its flag it reads as "full", as it should.
        let seq = s.seq(mem, pos).load(Ordering::Acquire) & !ABANDONED;
        let diff = seq.wrapping_sub(pos) as i64;
        if diff == 0 {
            // Relaxed: published by the AcqRel CAS below.
            claiming.store(pos + 1, Ordering::Relaxed);
            // AcqRel: Release publishes `claiming` to anyone who sees the new
            // cursor with Acquire (`claim_of`); Acquire orders our slot writes
            // after winning.
            match h
                .prod
                .compare_exchange_weak(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(pos),
                Err(cur) => pos = cur,
            }
        } else if diff < 0 {
            if diff < -(s.n as i64) {
                // Relaxed: nothing is claimed.
                claiming.store(0, Ordering::Relaxed);
                return Err(corrupted(
                    mem,
                    "slot sequence behind its lap",
                    mem.at_data(s.offset(pos)),
                    seq,
                ));
            }
            // The slot still holds last lap's message: full.
            // Relaxed: nothing is claimed.
            claiming.store(0, Ordering::Relaxed);
            return Err(Error::Full);
        } else {
            // Another producer took `pos`; start again from the cursor.
            // Relaxed: coherence is enough. The sequence we just loaded
            // (Acquire) is ahead of `pos` only after a producer's claim CAS
            // moved the cursor past `pos` (that CAS happens-before the
            // publish or release we saw), so this load cannot return `pos`.
            let cur = h.prod.load(Ordering::Relaxed);
            if cur == pos {
                // A sequence ahead of an unmoved cursor is scribbled: report
                // it now rather than spinning `MAX_TRIES` times per call.
                // Relaxed: nothing is claimed.
                claiming.store(0, Ordering::Relaxed);
                let at = mem.at_data(s.offset(pos));
                return Err(corrupted(
                    mem,
                    "slot sequence ahead of the enqueue cursor",
                    at,
                    seq,
                ));
            }
            pos = cur;
        }
    }
    // Relaxed: nothing is claimed.
    claiming.store(0, Ordering::Relaxed);
    Err(Error::Full)
}

/// Publishes the claimed position `pos` with `len` payload bytes of `kind`.
pub(crate) fn publish(mem: &Mem, s: &Slots, me: usize, pos: u64, len: usize, kind: u32) {
    // Relaxed: published by the Release store of the sequence below.
    s.info(mem, pos)
        .store(((kind as u64) << 32) | len as u64, Ordering::Relaxed);
    // Release: pairs with the consumer's Acquire sequence load in `try_take`;
    // the payload and info word are visible to it.
    s.seq(mem, pos).store(pos + 1, Ordering::Release);
    // Relaxed: only a hint for survivors, which re-check the sequence.
    mem.endpoint(me).claiming.store(0, Ordering::Relaxed);
}

/// Consumer side: takes the next published slot.
pub(crate) fn try_take(mem: &Mem, s: &Slots, me: usize) -> Result<Taken, Error> {
    let h = mem.header();
    let claiming = &mem.endpoint(me).claiming;
    // Relaxed: a starting guess, validated by the sequence and the CAS.
    let mut pos = h.cons.load(Ordering::Relaxed);
    for _ in 0..MAX_TRIES {
        if !cursor_in_range(pos) {
            // Relaxed: nothing is claimed (as in `try_claim`).
            claiming.store(0, Ordering::Relaxed);
            return Err(corrupted(mem, "dequeue cursor out of range", CONS_AT, pos));
        }
        // Acquire: pairs with the producer's Release publish in `publish`
        // (and the Release CAS in `abandon`).
        let raw = s.seq(mem, pos).load(Ordering::Acquire);
        let abandoned = raw & ABANDONED != 0;
        let seq = raw & !ABANDONED;
        let diff = seq.wrapping_sub(pos + 1) as i64;
        if diff == 0 {
            // Relaxed: published by the AcqRel CAS below.
            claiming.store(pos + 1, Ordering::Relaxed);
            // AcqRel: Release publishes `claiming` (see `try_claim`).
            match h
                .cons
                .compare_exchange_weak(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if abandoned => {
                    // Its producer died before writing: nothing to read.
                    return Ok(Taken {
                        pos,
                        len: 0,
                        kind: KIND_ABANDONED,
                    });
                }
                Ok(_) => {
                    // Relaxed: ordered after the Acquire sequence load above.
                    let info = s.info(mem, pos).load(Ordering::Relaxed);
                    let (len, kind) = (info as u32 as usize, (info >> 32) as u32);
                    let ok_kind = matches!(kind, KIND_MSG | KIND_SKIP);
                    if !ok_kind || len > s.max_message_len() {
                        // Free the slot so producers are not wedged, then report.
                        release(mem, s, me, pos);
                        let at = mem.at_data(s.offset(pos) + 8);
                        return Err(corrupted(mem, "bad slot info word", at, info));
                    }
                    return Ok(Taken { pos, len, kind });
                }
                Err(cur) => pos = cur,
            }
        } else if diff < 0 {
            if diff < -(s.n as i64) - 1 {
                // Relaxed: nothing is claimed.
                claiming.store(0, Ordering::Relaxed);
                return Err(corrupted(
                    mem,
                    "slot sequence behind its lap",
                    mem.at_data(s.offset(pos)),
                    seq,
                ));
            }
            // Relaxed: nothing is claimed.
            claiming.store(0, Ordering::Relaxed);
            return Err(Error::Empty);
        } else {
            // Another consumer took `pos`. Relaxed: as in `try_claim`, the
            // cursor has moved past `pos` unless a peer scribbled.
            let cur = h.cons.load(Ordering::Relaxed);
            if cur == pos {
                // Relaxed: nothing is claimed.
                claiming.store(0, Ordering::Relaxed);
                let at = mem.at_data(s.offset(pos));
                return Err(corrupted(
                    mem,
                    "slot sequence ahead of the dequeue cursor",
                    at,
                    raw,
                ));
            }
            pos = cur;
        }
    }
    // Relaxed: nothing is claimed.
    claiming.store(0, Ordering::Relaxed);
    Err(Error::Empty)
}

/// Frees the slot a consumer took.
pub(crate) fn release(mem: &Mem, s: &Slots, me: usize, pos: u64) {
    // Release: pairs with the producer's Acquire sequence load in `try_claim`.
    s.seq(mem, pos).store(pos + s.n, Ordering::Release);
    // Relaxed: only a hint for survivors, which re-check the sequence.
    mem.endpoint(me).claiming.store(0, Ordering::Relaxed);
}

/// Where the consumer side stands when `try_take` says empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stall {
    /// Nothing claimed beyond the dequeue cursor: really empty.
    Empty,
    /// Position `p` was claimed by a producer but is not published yet.
    InFlight(u64),
}

/// Consumer view: is the next position claimed but unpublished?
pub(crate) fn consumer_stall(mem: &Mem, s: &Slots) -> Stall {
    let h = mem.header();
    // Acquire: pairs with the AcqRel claim CAS, so a later `claim_of` sees the
    // claimer's `claiming` record.
    let pos = h.cons.load(Ordering::Acquire);
    let enq = h.prod.load(Ordering::Acquire);
    // Acquire: pairs with `publish`.
    let seq = s.seq(mem, pos).load(Ordering::Acquire);
    if enq > pos && seq == pos {
        Stall::InFlight(pos)
    } else {
        Stall::Empty
    }
}

/// Producer view: is the slot we need held by a consumer that took it but has
/// not released it? Returns the position that consumer took.
pub(crate) fn producer_stall(mem: &Mem, s: &Slots) -> Option<u64> {
    let h = mem.header();
    // Acquire: as in `consumer_stall`.
    let pos = h.prod.load(Ordering::Acquire);
    let deq = h.cons.load(Ordering::Acquire);
    let prev = pos.checked_sub(s.n)?;
    // Acquire: pairs with `release`. (A taken abandoned slot counts too: its
    // consumer may die before releasing it.)
    let seq = s.seq(mem, pos).load(Ordering::Acquire) & !ABANDONED;
    (deq > prev && seq == prev + 1).then_some(prev)
}

/// The endpoint slots in `range` that record a claim of `pos`.
pub(crate) fn claimers(mem: &Mem, range: std::ops::Range<usize>, pos: u64) -> Vec<usize> {
    range
        .filter(|&i| {
            // Acquire: pairs with the AcqRel claim CAS that published it.
            mem.endpoint(i).claiming.load(Ordering::Acquire) == pos + 1
        })
        .collect()
}

/// Consumer-side recovery: resolves the unpublished slot `pos` as abandoned,
/// with one CAS of its sequence from `pos` (still waiting for `pos`'s
/// producer) to `(pos + 1) | ABANDONED`. Call only when every producer
/// claiming `pos` is dead. Returns whether this call did it: it does nothing
/// once `pos` was resolved (published, or abandoned by another consumer),
/// however late the call comes.
pub(crate) fn abandon(mem: &Mem, s: &Slots, pos: u64, dead: &[usize]) -> bool {
    if !cursor_in_range(pos) {
        return false;
    }
    // Release: pairs with the Acquire sequence load in `try_take`. (Nothing
    // else is written: the info word of an abandoned slot is never read.)
    let done = s
        .seq(mem, pos)
        .compare_exchange(
            pos,
            (pos + 1) | ABANDONED,
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok();
    for &i in dead {
        // Relaxed: clears a stale hint; the claim is resolved now.
        let _ = mem.endpoint(i).claiming.compare_exchange(
            pos + 1,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    done
}

/// Producer-side recovery: frees the slot at `prev` that a dead consumer took
/// and never released (a message, or an abandoned slot). Returns whether
/// this call did it: a CAS from the taken sequence, so it does nothing once
/// the slot was released.
pub(crate) fn reclaim(mem: &Mem, s: &Slots, prev: u64, dead: &[usize]) -> bool {
    let seq = s.seq(mem, prev);
    let release = |from: u64| {
        // Release: pairs with the Acquire sequence load in `try_claim`.
        seq.compare_exchange(from, prev + s.n, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    };
    let done = release(prev + 1) || release((prev + 1) | ABANDONED);
    for &i in dead {
        // Relaxed: clears a stale hint.
        let _ = mem.endpoint(i).claiming.compare_exchange(
            prev + 1,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    done
}

/// Whether a dead endpoint's recorded claim still matters (its slot may only
/// be reused once it does not). `producer` says which side it was.
pub(crate) fn claim_unresolved(mem: &Mem, s: &Slots, claim: u64, producer: bool) -> bool {
    if claim == 0 {
        return false;
    }
    let pos = claim - 1;
    let h = mem.header();
    // Acquire loads: pair with the claim CASes and publishes, as above.
    let seq = s.seq(mem, pos).load(Ordering::Acquire);
    if producer {
        h.prod.load(Ordering::Acquire) > pos && seq == pos
    } else {
        h.cons.load(Ordering::Acquire) > pos && seq & !ABANDONED == pos + 1
    }
}

/// Number of messages (published or in flight) between the cursors.
pub(crate) fn len(mem: &Mem) -> u64 {
    let h = mem.header();
    // Relaxed: a snapshot for display.
    let enq = h.prod.load(Ordering::Relaxed);
    let deq = h.cons.load(Ordering::Relaxed);
    enq.saturating_sub(deq)
}
