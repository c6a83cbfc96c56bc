//! The `#[repr(C)]` segment header, the endpoint table, and the constants that
//! say what a segment is.
//!
//! A segment is, in order: the [`Header`] (five 128-byte lines), the endpoint
//! table (one [`EndpointSlot`] per producer and consumer, padded to 128 bytes),
//! and the data area (SPSC: the byte ring; MPMC: the slots). Every field of
//! the header and the table is an atomic: the peer may write any of them at any
//! time, so we only ever reach them through atomic loads and stores, read each
//! value once, and validate it before use.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU32, AtomicU64, RawCell};

/// `b"SHMQRING"` read as a little-endian `u64`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMQRING");
/// Bumped on every incompatible change of the layout or a protocol.
///
/// 5: the asymmetric wake fences of version 4 are gone. A version-4 build
/// may wake with only a compiler fence (as a process registered for
/// `membarrier`), counting on sleepers that check `Meta::light_wakers` or
/// issue a `membarrier`; this build's sleepers do neither, so the two must
/// not share a segment. The layout itself is unchanged.
///
/// 6: `Meta::wake` may be 3, a spin-only segment, whose endpoints never
/// check for sleepers; a version-5 build would take it for a corrupted
/// header (and sleep in it if it could open it). The layout is unchanged.
pub(crate) const VERSION: u32 = 6;

// `Meta::state` is 0 (a fresh, zero-filled file) until the creator finishes.
/// `Meta::state` once the header is valid; stored last, with Release.
pub(crate) const STATE_READY: u32 = 0x5245_4459; // "READ"

/// Endpoint slot states: the low two bits of `EndpointSlot::state`; the bits
/// above count attachments (a generation), so a survivor that reaps a dead
/// endpoint with a CAS cannot clobber a new one that took the slot meanwhile.
pub(crate) const EP_FREE: u32 = 0;
pub(crate) const EP_ATTACHED: u32 = 1;
pub(crate) const EP_DETACHED: u32 = 2;
pub(crate) const EP_MASK: u32 = 3;
// (State 3 is `liveness::CRASHED`, heap rings only.)

/// Whether the endpoint state value `st` says attached (alive or not).
#[inline(always)]
pub(crate) fn ep_attached(st: u32) -> bool {
    st & EP_MASK == EP_ATTACHED
}

/// Byte offsets of the file that carry OFD locks (`F_OFD_SETLK`). They are
/// lock ranges only: the bytes themselves belong to the header.
///
/// The init lock: held (exclusive) by the creator from the moment the file
/// exists until its endpoint is attached. Free on a segment that is not
/// ready means its creator died.
pub(crate) const LOCK_INIT: u64 = 0;
/// The gate: an opener holds it shared from `shm_open` until it is attached
/// (or gives up); whoever removes the segment (the last endpoint to leave,
/// `gc`, a reclaim) holds it exclusive while it decides and unlinks. So no
/// opener can attach to a segment that is being removed under it.
pub(crate) const LOCK_GATE: u64 = 1;
/// Lock byte of endpoint slot `i` is `LOCK_ENDPOINT_BASE + i`.
pub(crate) const LOCK_ENDPOINT_BASE: u64 = 2;

pub(crate) use crate::error::{Backend, Kind};

impl Backend {
    pub(crate) fn to_raw(self) -> u32 {
        match self {
            Backend::Futex => 1,
            Backend::Semaphore => 2,
            Backend::SpinOnly => 3,
        }
    }
    pub(crate) fn from_raw(raw: u32) -> Option<Backend> {
        match raw {
            1 => Some(Backend::Futex),
            2 => Some(Backend::Semaphore),
            3 => Some(Backend::SpinOnly),
            _ => None,
        }
    }
}

impl Kind {
    pub(crate) const fn to_raw(self) -> u32 {
        match self {
            Kind::Spsc => 1,
            Kind::Mpmc => 2,
        }
    }
    pub(crate) const fn from_raw(raw: u32) -> Option<Kind> {
        match raw {
            1 => Some(Kind::Spsc),
            2 => Some(Kind::Mpmc),
            _ => None,
        }
    }
}

// The wire format of the data areas (the rings' protocols are in `ring`).

/// SPSC: bytes of the record header, a word `tag << 32 | len`.
pub(crate) const RECORD_HEADER: usize = 8;
/// SPSC record tag of a message ("MSG!" on even laps of the ring; its low
/// bit flips on odd laps: "LSG!").
pub(crate) const TAG_MSG: u32 = 0x2147_534d;
/// SPSC record tag of the padding that fills the ring's end ("PAD!", and
/// "QAD!" on odd laps).
pub(crate) const TAG_PAD: u32 = 0x2144_4150;
/// Bytes of the slot header: sequence word and info word.
pub(crate) const SLOT_HEADER: usize = 16;

/// Info word kinds.
pub(crate) const KIND_MSG: u32 = 0x2147_534d; // "MSG!"
/// A grant dropped without commit: consumers drop it silently.
pub(crate) const KIND_SKIP: u32 = 0x2150_4b53; // "SKP!"
/// Not an info word value: the kind `try_take` reports for a slot whose
/// sequence says abandoned (its info word is never read).
pub(crate) const KIND_ABANDONED: u32 = 0x2144_4241; // "ABD!"

/// Fixed facts about a segment, written once by the creator before READY.
#[repr(C)]
pub(crate) struct Meta {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub kind: AtomicU32,
    pub layout_hash: AtomicU64,
    /// `STATE_INIT` or `STATE_READY`; READY is stored last with Release.
    pub state: AtomicU32,
    /// Wake backend: see `notify::Backend`.
    pub wake: AtomicU32,
    /// SPSC: bytes in the data ring. MPMC: number of slots.
    pub capacity: AtomicU64,
    /// MPMC: bytes per slot, slot header included. SPSC: 0.
    pub slot_size: AtomicU32,
    pub max_producers: AtomicU32,
    pub max_consumers: AtomicU32,
    /// Non-zero once any endpoint found the segment corrupted (diagnostic).
    pub poisoned: AtomicU32,
    /// Size of the whole segment file in bytes.
    pub total_size: AtomicU64,
    /// Display only: PIDs are reused and differ across namespaces.
    pub creator_pid: AtomicU32,
    /// Permission bits the creator chose.
    pub mode: AtomicU32,
    /// Typed channels: element size, alignment and fingerprint (0 = bytes).
    pub type_size: AtomicU32,
    pub type_align: AtomicU32,
    pub type_fingerprint: AtomicU64,
    /// Producers found dead and reaped, ever (lets a consumer tell a
    /// producer's death from a clean detach).
    pub producers_died: AtomicU32,
    /// Unused since version 5; was the asymmetric-fence flag of version 4
    /// (`light_wakers`: a process waking with compiler fences had
    /// attached). Kept so that the layout stays byte-identical; creators
    /// leave it zero.
    pub _reserved0: AtomicU32,
}

/// One direction's wakeup state: one 64-bit word whose low 32 bits are the
/// epoch (the futex word) and whose high 32 bits count registered sleepers,
/// and a process-shared semaphore for the semaphore backend. Packing both in
/// one word lets a waker clear every registration and bump the epoch in a
/// single CAS (see `notify`).
#[repr(C)]
pub(crate) struct WakeWord {
    pub state: AtomicU64,
    pub sem: RawCell<libc::sem_t>,
    /// Loom's stand-in for the kernel side: the semaphore's token count
    /// and a condition variable that sleepers block on (see `notify::sys`).
    #[cfg(loom)]
    pub kernel: loom::sync::Mutex<u32>,
    #[cfg(loom)]
    pub kernel_cv: loom::sync::Condvar,
}

/// The segment header. Each part sits on its own 128-byte line so that the
/// producer's and the consumer's hot words never share a cache line (pair).
#[repr(C)]
pub(crate) struct Header {
    pub meta: CachePadded<Meta>,
    /// SPSC: the write cursor (`tail`). MPMC: the enqueue cursor.
    pub prod: CachePadded<AtomicU64>,
    /// SPSC: the read cursor (`head`). MPMC: the dequeue cursor.
    pub cons: CachePadded<AtomicU64>,
    /// Consumers sleep here while the ring is empty.
    pub not_empty: CachePadded<WakeWord>,
    /// Producers sleep here while the ring is full.
    pub not_full: CachePadded<WakeWord>,
}

/// One producer's or consumer's entry in the endpoint table.
#[repr(C)]
pub(crate) struct EndpointSlot {
    /// `EP_FREE`, `EP_ATTACHED` or `EP_DETACHED`.
    pub state: AtomicU32,
    /// Display only.
    pub pid: AtomicU32,
    /// MPMC: `position + 1` of the slot this endpoint is claiming or holds; 0
    /// when none. Lets survivors recognise a slot left behind by a dead
    /// endpoint.
    pub claiming: AtomicU64,
}

/// Line size used for padding the table and aligning the data area.
pub(crate) const LINE: usize = 128;

/// MPMC slots start on a cache line of their own: the slot stride is the
/// slot size rounded up to a multiple of this, so that a producer writing
/// one slot and a consumer reading its neighbour never share a line.
pub(crate) const SLOT_ALIGN: u64 = 64;

/// Byte offsets of `Header::prod` and `Header::cons` (for error reports;
/// asserted below).
pub(crate) const PROD_AT: Option<u64> = Some(LINE as u64);
pub(crate) const CONS_AT: Option<u64> = Some(2 * LINE as u64);

#[cfg(not(loom))]
mod asserts {
    use super::*;
    use static_assertions::const_assert;
    use std::mem::{align_of, offset_of, size_of};

    const_assert!(size_of::<Meta>() <= LINE);
    const_assert!(size_of::<WakeWord>() <= LINE);
    const_assert!(size_of::<Header>() == 5 * LINE);
    const_assert!(align_of::<Header>() == LINE);
    const_assert!(offset_of!(Header, prod) == LINE);
    const_assert!(offset_of!(Header, cons) == 2 * LINE);
    const_assert!(offset_of!(Header, not_empty) == 3 * LINE);
    const_assert!(offset_of!(Header, not_full) == 4 * LINE);
    const_assert!(offset_of!(Meta, magic) == 0);
    const_assert!(offset_of!(Meta, version) == 8);
    const_assert!(offset_of!(Meta, kind) == 12);
    const_assert!(offset_of!(Meta, state) == 24);
    const_assert!(offset_of!(Meta, producers_died) == 88);
    const_assert!(offset_of!(Meta, _reserved0) == 92);
    const_assert!(size_of::<EndpointSlot>() == 16);
    const_assert!(size_of::<libc::sem_t>() <= 32);
}

/// 64-bit FNV-1a: the layout hash here and the element-type fingerprints of
/// typed channels.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds one byte into an FNV-1a hash.
pub(crate) const fn fnv_byte(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
}

/// Folds the 8 little-endian bytes of `v` into an FNV-1a hash.
const fn fnv(mut h: u64, v: u64) -> u64 {
    let mut i = 0;
    while i < 8 {
        h = fnv_byte(h, (v >> (i * 8)) as u8);
        i += 1;
    }
    h
}

/// Bumped when the meaning of a field changes without its size or offset
/// changing (2: the packed wake word).
const WAKE_PROTOCOL: u64 = 2;

/// A hash of every size and offset of the layout: it changes when the layout
/// does, so a segment made by an incompatible build is refused at open even if
/// someone forgot to bump [`VERSION`].
#[cfg(not(loom))]
pub(crate) const LAYOUT_HASH: u64 = {
    use std::mem::{offset_of, size_of};
    let parts: [u64; 19] = [
        VERSION as u64,
        SLOT_ALIGN,
        WAKE_PROTOCOL,
        size_of::<Header>() as u64,
        size_of::<Meta>() as u64,
        offset_of!(Meta, layout_hash) as u64,
        offset_of!(Meta, wake) as u64,
        offset_of!(Meta, capacity) as u64,
        offset_of!(Meta, slot_size) as u64,
        offset_of!(Meta, max_consumers) as u64,
        offset_of!(Meta, total_size) as u64,
        offset_of!(Meta, type_fingerprint) as u64,
        offset_of!(Meta, producers_died) as u64,
        offset_of!(Meta, _reserved0) as u64,
        size_of::<WakeWord>() as u64,
        offset_of!(WakeWord, sem) as u64,
        size_of::<EndpointSlot>() as u64,
        SLOT_HEADER as u64,
        RECORD_HEADER as u64,
    ];
    let mut h = FNV_OFFSET;
    let mut i = 0;
    while i < parts.len() {
        h = fnv(h, parts[i]);
        i += 1;
    }
    h
};
#[cfg(loom)]
pub(crate) const LAYOUT_HASH: u64 = fnv(FNV_OFFSET, VERSION as u64);

/// Where the parts of a segment start, computed from its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub kind: Kind,
    /// SPSC: ring bytes. MPMC: slots.
    pub capacity: u64,
    /// MPMC: bytes per slot (header included). SPSC: 0.
    pub slot_size: u32,
    pub max_producers: u32,
    pub max_consumers: u32,
}

impl Geometry {
    /// Whether a geometry read from a header is one a creator could have
    /// written (the options' ranges; see `Options::check_for`).
    pub(crate) fn is_valid(&self) -> bool {
        match self.kind {
            Kind::Spsc => {
                self.capacity.is_power_of_two()
                    && (64..=1 << 40).contains(&self.capacity)
                    && self.slot_size == 0
                    && self.max_producers == 1
                    && self.max_consumers == 1
            }
            Kind::Mpmc => {
                self.capacity.is_power_of_two()
                    && (2..=1 << 24).contains(&self.capacity)
                    && self.slot_size % 8 == 0
                    && (24..=1 << 24).contains(&self.slot_size)
                    && (1..=1024).contains(&self.max_producers)
                    && (1..=1024).contains(&self.max_consumers)
            }
        }
    }
    pub(crate) fn endpoints(&self) -> usize {
        (self.max_producers + self.max_consumers) as usize
    }
    pub(crate) fn table_offset(&self) -> usize {
        LINE * 5
    }
    pub(crate) fn data_offset(&self) -> usize {
        let table = self.endpoints() * 16;
        self.table_offset() + table.div_ceil(LINE) * LINE
    }
    /// MPMC: bytes from one slot to the next, the slot size rounded up to
    /// [`SLOT_ALIGN`].
    pub(crate) fn slot_stride(&self) -> u64 {
        u64::from(self.slot_size).next_multiple_of(SLOT_ALIGN)
    }
    /// Bytes in the data area.
    pub(crate) fn data_len(&self) -> u64 {
        match self.kind {
            Kind::Spsc => self.capacity,
            Kind::Mpmc => self.capacity * self.slot_stride(),
        }
    }
    /// Total segment size in bytes, or `None` on overflow.
    pub(crate) fn total_size(&self) -> Option<u64> {
        let data = match self.kind {
            Kind::Spsc => Some(self.capacity),
            Kind::Mpmc => self.capacity.checked_mul(self.slot_stride()),
        }?;
        (self.data_offset() as u64).checked_add(data)
    }
}
