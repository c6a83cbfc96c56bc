//! Where a ring's bytes live: a heap allocation (threads, tests, loom, Miri,
//! fuzzing) or a named shared-memory segment. The protocols see only [`Mem`],
//! so they run unchanged on both.

use std::ptr::NonNull;
use std::sync::Arc;

use crate::Kind;
pub(crate) use crate::heap::HeapBuf;
#[cfg(loom)]
use crate::heap::LoomMem;
use crate::layout::{EndpointSlot, Geometry, Header, SLOT_HEADER};
use crate::liveness::{Liveness, Local};
use crate::shm::Segment;
use crate::sync::{AtomicU32, AtomicU64};

/// The two words of an MPMC slot's header, by their byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotField {
    /// The sequence word.
    Seq = 0,
    /// The info word (kind and length).
    Info = 8,
}

/// The slot of every view that has no MPMC slots (see `Mem::slots`): a
/// header's two words, no payload.
#[cfg(not(loom))]
static NO_SLOTS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// The endpoint table of every view whose geometry has fewer than
/// [`ENDPOINTS_ALWAYS`] endpoint slots (a header-only probe; every ring has
/// at least a producer and a consumer): see `Mem::endpoint`.
#[cfg(not(loom))]
static NO_ENDPOINTS: [EndpointSlot; ENDPOINTS_ALWAYS] = [const {
    EndpointSlot {
        state: AtomicU32::new(0),
        pid: AtomicU32::new(0),
        claiming: AtomicU64::new(0),
    }
}; ENDPOINTS_ALWAYS];

/// Endpoint slots every view has, whatever its geometry: the SPSC rings'
/// two fixed slots are reached without a bounds check.
const ENDPOINTS_ALWAYS: usize = 2;

/// Memory for one endpoint's view of a ring.
pub(crate) struct Mem {
    geo: Geometry,
    /// `geo.data_offset()`, computed once: the hot path reaches every word
    /// through it.
    data_off: usize,
    /// `geo.data_len()` (loom's checked accesses).
    #[cfg(loom)]
    data_len: u64,
    #[cfg(not(loom))]
    base: NonNull<u8>,
    /// `base + data_off`: the first byte of the data area.
    #[cfg(not(loom))]
    data: NonNull<u8>,
    /// `data_len - 7` (0 if smaller): word offsets below it are in the data
    /// area (a header-only view has none). For the checked `word_ptr`,
    /// which only the fuzz targets and tests use (the rings reach their
    /// words through `ring::spsc::Data` and the slot accessors).
    #[cfg(all(not(loom), any(test, fuzzing)))]
    words_end: u64,
    /// The endpoint table, `table_len` slots: the region's if its geometry
    /// has at least [`ENDPOINTS_ALWAYS`], else `NO_ENDPOINTS`. Fixed at
    /// construction; `table_len >= ENDPOINTS_ALWAYS` always (see
    /// `endpoint`).
    #[cfg(not(loom))]
    table: NonNull<EndpointSlot>,
    #[cfg(not(loom))]
    table_len: usize,
    /// The MPMC slots: `pos & slot_mask` is the slot of position `pos`,
    /// `slot_stride` bytes after the previous one from `slots`, and
    /// `slot_payload` bytes of payload follow its 16-byte header.
    /// `from_backing` checks once that every slot lies inside the data area,
    /// so the slot accessors check nothing per access. (Other views, an SPSC
    /// ring's or a header-only probe's, get one slot of no payload in
    /// `NO_SLOTS`.)
    #[cfg(not(loom))]
    slots: NonNull<u8>,
    #[cfg(not(loom))]
    slot_mask: u64,
    #[cfg(not(loom))]
    slot_stride: u64,
    #[cfg(not(loom))]
    slot_payload: u64,
    backing: Arc<Backing>,
    /// Endpoints are `Send` but not `Sync`: each keeps private cursor caches.
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

/// The bytes behind a [`Mem`]: shared by the endpoints of a heap ring, and
/// by an endpoint and its [`Interrupter`](crate::Interrupter)s (which must
/// keep the wake words mapped).
pub(crate) enum Backing {
    Heap(HeapBuf),
    Shm(Segment),
}

impl Backing {
    /// The header.
    #[cfg(not(loom))]
    pub(crate) fn header(&self) -> &Header {
        match self {
            // SAFETY: the allocation starts with a header, 128-aligned; every
            // field is an atomic (or a RawCell never read by Rust), so a
            // shared reference is sound while others write them; it lives as
            // long as `self`.
            Backing::Heap(b) => unsafe { b.base.cast::<Header>().as_ref() },
            Backing::Shm(s) => s.header(),
        }
    }

    #[cfg(loom)]
    pub(crate) fn header(&self) -> &Header {
        match self {
            Backing::Heap(b) => &b.loom.header,
            Backing::Shm(s) => &s.heap().loom.header,
        }
    }
}

// SAFETY: `Mem` only holds pointers into an allocation or a mapping that it
// keeps alive itself (the Arc or the Segment), and all access to the shared
// bytes goes through atomics or through grants whose exclusivity the ring
// protocols establish; nothing is tied to the creating thread.
unsafe impl Send for Mem {}

impl Mem {
    /// A fresh zeroed heap region for `geo`.
    pub(crate) fn heap(geo: Geometry) -> Mem {
        Mem::from_backing(Arc::new(Backing::Heap(HeapBuf::new(geo))), geo)
    }

    /// A heap region holding a copy of `image` (a whole segment's bytes, as a
    /// peer may have left them), viewed with geometry `geo`. For fuzzing the
    /// open path without files.
    ///
    /// # Panics
    /// If `geo` needs more bytes than `image` has.
    #[cfg(not(loom))]
    #[allow(dead_code)]
    pub(crate) fn from_image(image: &[u8], geo: Geometry) -> Mem {
        let need = geo.total_size().expect("validated geometry") as usize;
        assert!(need <= image.len());
        let buf = HeapBuf::new(geo);
        // SAFETY: `buf` has `need` bytes (its layout is `geo.total_size()`),
        // nobody else sees it yet, and `image` has at least `need` bytes.
        unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), buf.base.as_ptr(), need) };
        Mem::from_backing(Arc::new(Backing::Heap(buf)), geo)
    }

    /// Stores `v` at byte `off` of the whole region (header, table or data)
    /// with a Relaxed atomic store: a simulated peer scribbling on the
    /// segment. For fuzzing and tests.
    ///
    /// # Panics
    /// If `off` is not 8-aligned or out of bounds.
    #[cfg(not(loom))]
    #[allow(dead_code)]
    pub(crate) fn poke(&self, off: usize, v: u64) {
        let total = self.geo.total_size().unwrap_or(0) as usize;
        assert!(off % 8 == 0 && off + 8 <= total);
        // SAFETY: in bounds and 8-aligned (checked above; the base is
        // 128-aligned); an atomic store is sound against concurrent access.
        let a = unsafe { self.base.add(off).cast::<AtomicU64>().as_ref() };
        // Relaxed: a scribbling peer promises no ordering.
        a.store(v, crate::sync::Ordering::Relaxed);
    }

    /// Another view of the same heap region (the other endpoint).
    pub(crate) fn share(&self) -> Option<Mem> {
        match &*self.backing {
            Backing::Heap(_) => Some(Mem::from_backing(self.backing.clone(), self.geo)),
            Backing::Shm(_) => None,
        }
    }

    /// What keeps the bytes alive (for interrupters).
    pub(crate) fn backing(&self) -> Arc<Backing> {
        self.backing.clone()
    }

    fn from_backing(backing: Arc<Backing>, geo: Geometry) -> Mem {
        // The SPSC ring relies on this (`ring::spsc::Data::of`): a data area
        // of `capacity` bytes (SPSC), or of `capacity` slots (MPMC).
        assert!(geo.capacity <= geo.data_len());
        #[cfg(not(loom))]
        let base = match &*backing {
            Backing::Heap(b) => b.base,
            Backing::Shm(s) => s.ptr(),
        };
        #[cfg(not(loom))]
        // SAFETY: the data area starts inside the region, which holds
        // `geo.total_size()` bytes from `base` (checked by the callers).
        let data = unsafe { base.add(geo.data_offset()) };
        // What the slot accessors rely on: the last slot's header and
        // payload end inside the data area. (An MPMC geometry that validated
        // always has that; anything else gets no slots.)
        #[cfg(not(loom))]
        let last_slot = geo.capacity.saturating_sub(1);
        #[cfg(not(loom))]
        let (slots, slot_mask, slot_stride, slot_payload) = match geo.kind {
            Kind::Mpmc
                if last_slot
                    .checked_mul(geo.slot_stride())
                    .and_then(|last| last.checked_add(u64::from(geo.slot_size)))
                    .is_some_and(|end| end <= geo.data_len())
                    && u64::from(geo.slot_size) >= SLOT_HEADER as u64
                    && geo.slot_stride() % 8 == 0 =>
            {
                (
                    data,
                    last_slot,
                    geo.slot_stride(),
                    u64::from(geo.slot_size) - SLOT_HEADER as u64,
                )
            }
            _ => (NonNull::from(&NO_SLOTS).cast::<u8>(), 0, 0, 0),
        };
        #[cfg(not(loom))]
        let (table, table_len) = if geo.endpoints() >= ENDPOINTS_ALWAYS {
            (
                // SAFETY: the table starts inside the region (as `data`),
                // 16-byte aligned (a multiple of LINE from the mapping's
                // start).
                unsafe { base.add(geo.table_offset()).cast::<EndpointSlot>() },
                geo.endpoints(),
            )
        } else {
            (
                NonNull::from(&NO_ENDPOINTS).cast::<EndpointSlot>(),
                ENDPOINTS_ALWAYS,
            )
        };
        Mem {
            geo,
            data_off: geo.data_offset(),
            #[cfg(loom)]
            data_len: geo.data_len(),
            #[cfg(not(loom))]
            base,
            #[cfg(not(loom))]
            data,
            #[cfg(all(not(loom), any(test, fuzzing)))]
            words_end: geo.data_len().saturating_sub(7),
            #[cfg(not(loom))]
            table,
            #[cfg(not(loom))]
            table_len,
            #[cfg(not(loom))]
            slots,
            #[cfg(not(loom))]
            slot_mask,
            #[cfg(not(loom))]
            slot_stride,
            #[cfg(not(loom))]
            slot_payload,
            backing,
            _not_sync: std::marker::PhantomData,
        }
    }

    /// A view of a mapped segment. `geo` must have been validated against the
    /// segment's size (`geo.total_size() <= seg.len()`).
    pub(crate) fn shm(seg: Segment, geo: Geometry) -> Mem {
        assert!(geo.total_size().is_some_and(|t| t <= seg.len() as u64));
        Mem::from_backing(Arc::new(Backing::Shm(seg)), geo)
    }

    /// Byte offset in the region of the data-area word at `off` (for error
    /// reports).
    pub(crate) fn at_data(&self, off: u64) -> Option<u64> {
        Some(self.data_off as u64 + off)
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The segment, while this is the only view of it (a fresh creation).
    pub(crate) fn segment_mut(&mut self) -> Option<&mut Segment> {
        match Arc::get_mut(&mut self.backing)? {
            Backing::Shm(s) => Some(s),
            Backing::Heap(_) => None,
        }
    }

    pub(crate) fn segment(&self) -> Option<&Segment> {
        match &*self.backing {
            Backing::Shm(s) => Some(s),
            Backing::Heap(_) => None,
        }
    }

    /// The header.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `base` points to at least `geo.total_size()` bytes, aligned to
        // 128 (page-aligned mapping or 128-aligned allocation), kept alive by
        // `backing`. Every field of `Header` is an atomic (or a RawCell never
        // read by Rust), so a shared reference is sound even though other
        // processes write those fields concurrently.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    /// Under loom, heap and (fake) segment regions alike are a `LoomMem`.
    #[cfg(loom)]
    fn loom(&self) -> &LoomMem {
        match &*self.backing {
            Backing::Heap(b) => &b.loom,
            Backing::Shm(s) => &s.heap().loom,
        }
    }

    #[cfg(loom)]
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        &self.loom().header
    }

    /// Endpoint slot `i`.
    ///
    /// # Panics
    /// If `i` is not below the geometry's endpoint count (a bug in shmq, never
    /// a consequence of segment contents).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn endpoint(&self, i: usize) -> &EndpointSlot {
        // SAFETY: `from_backing` makes `table_len` at least
        // `ENDPOINTS_ALWAYS`, and nothing changes it. (Told to the compiler
        // so that a constant `i` below it, as the SPSC rings' two slots
        // are, is no test at all.)
        unsafe { std::hint::assert_unchecked(self.table_len >= ENDPOINTS_ALWAYS) };
        assert!(i < self.table_len);
        // SAFETY: `table` holds `table_len` slots (`from_backing`: the
        // region's table, inside the region (see `Geometry`), or
        // `NO_ENDPOINTS`); slots are 16-byte aligned and made only of
        // atomics.
        unsafe { self.table.add(i).as_ref() }
    }

    #[cfg(loom)]
    pub(crate) fn endpoint(&self, i: usize) -> &EndpointSlot {
        &self.loom().endpoints[i]
    }

    /// The 8-byte word at byte `off` of the data area, as an atomic.
    ///
    /// # Panics
    /// If `off` is not 8-aligned or the word is not inside the data area.
    /// Callers validate peer-supplied offsets first; this is a last line of
    /// defence against shmq bugs.
    #[cfg(all(not(loom), fuzzing))]
    #[inline]
    pub(crate) fn word(&self, off: u64) -> &AtomicU64 {
        assert!(off % 8 == 0);
        // SAFETY: in bounds (`word_ptr` checks) and 8-aligned (checked above;
        // the data area is 128-aligned); atomics may be accessed while peers
        // access them too; the region outlives `&self`.
        unsafe { &*self.word_ptr(off).cast::<AtomicU64>() }
    }

    #[cfg(loom)]
    pub(crate) fn word(&self, off: u64) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.data_len);
        &self.loom().words[(off / 8) as usize]
    }

    /// The 8-byte word at byte `off` of the data area, as a pointer, with one
    /// comparison (`off + 8 <= data_len`, as `off < data_len - 7`, computed
    /// once).
    ///
    /// # Panics
    /// If the word is not inside the data area.
    #[cfg(all(not(loom), any(test, fuzzing)))]
    #[inline(always)]
    pub(crate) fn word_ptr(&self, off: u64) -> *mut u8 {
        assert!(off < self.words_end);
        // SAFETY: `off + 8 <= data_len`, checked above.
        unsafe { self.data.as_ptr().add(off as usize) }
    }

    /// Data offset of the MPMC slot of position `pos` (each position maps to
    /// a slot; for reports and the accessors below).
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn slot_offset(&self, pos: u64) -> u64 {
        (pos & self.slot_mask) * self.slot_stride
    }

    #[cfg(loom)]
    pub(crate) fn slot_offset(&self, pos: u64) -> u64 {
        (pos & (self.geo.capacity - 1)) * self.geo.slot_stride()
    }

    /// Word `field` (0: the sequence, 8: the info word) of the MPMC slot of
    /// position `pos`, without a check: every slot lies inside the data
    /// area (`from_backing`).
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn slot_word(&self, pos: u64, field: SlotField) -> &AtomicU64 {
        let off = self.slot_offset(pos) + field as u64;
        // SAFETY: `off + 8 <= slot_mask * slot_stride + SLOT_HEADER`, which
        // `from_backing` checked to be within the data area that `slots`
        // starts (or `off + 8 <= 16`, `NO_SLOTS`); 8-aligned (`slots` is,
        // the stride a multiple of 8, `field` 0 or 8); atomics may be
        // accessed while peers access them too; the region (or the static)
        // outlives `&self`.
        unsafe { &*self.slots.as_ptr().add(off as usize).cast::<AtomicU64>() }
    }

    #[cfg(loom)]
    pub(crate) fn slot_word(&self, pos: u64, field: SlotField) -> &AtomicU64 {
        self.word(self.slot_offset(pos) + field as u64)
    }

    /// The payload of the MPMC slot of position `pos`, `len` bytes of it.
    ///
    /// # Panics
    /// If `len` exceeds the slot's payload size.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn slot_payload(&self, pos: u64, len: usize) -> *mut u8 {
        assert!(len as u64 <= self.slot_payload);
        let off = self.slot_offset(pos) + SLOT_HEADER as u64;
        // SAFETY: `off + len` is at most the last slot's payload end, which
        // `from_backing` checked to be within the data area that `slots`
        // starts (or 16 + 0, the end of `NO_SLOTS`).
        unsafe { self.slots.as_ptr().add(off as usize) }
    }

    #[cfg(loom)]
    pub(crate) fn slot_payload(&self, pos: u64, len: usize) -> *mut u8 {
        assert!(len as u64 <= u64::from(self.geo.slot_size) - SLOT_HEADER as u64);
        self.bytes(self.slot_offset(pos) + SLOT_HEADER as u64, len)
    }

    /// Pointer to `len` payload bytes at byte `off` of the loom model's
    /// data area.
    ///
    /// # Panics
    /// If the range is not inside the data area.
    #[cfg(loom)]
    pub(crate) fn bytes(&self, off: u64, len: usize) -> *mut u8 {
        assert!(
            off.checked_add(len as u64)
                .is_some_and(|e| e <= self.data_len)
        );
        // SAFETY: in bounds of the loom byte buffer, checked above.
        unsafe { self.loom().bytes.as_ptr().add(off as usize) }
    }

    /// The first byte of the data area (which holds at least
    /// `geometry().capacity` bytes: see `from_backing`).
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn data_ptr(&self) -> *mut u8 {
        self.data.as_ptr()
    }

    /// Who says whether an endpoint slot's process is alive.
    pub(crate) fn liveness(&self) -> &dyn Liveness {
        match &*self.backing {
            Backing::Heap(_) => &Local,
            Backing::Shm(s) => s,
        }
    }

    /// Whether endpoint slot `i`'s endpoint is alive (a syscall on
    /// segments; our own slot reads as dead there).
    pub(crate) fn endpoint_alive(&self, i: usize) -> bool {
        // Relaxed: a liveness hint; callers re-check cursors with their own
        // orderings afterwards.
        let st = self.endpoint(i).state.load(crate::sync::Ordering::Relaxed);
        self.liveness().alive(i, st)
    }

    pub(crate) fn is_heap(&self) -> bool {
        matches!(*self.backing, Backing::Heap(_))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::layout::Kind;

    /// A view of a header alone, with a geometry of `kind` and nothing else.
    fn header_only(kind: Kind) -> Mem {
        let geo = Geometry {
            kind,
            capacity: 0,
            slot_size: 0,
            max_producers: 0,
            max_consumers: 0,
        };
        Mem::from_image(&vec![0u8; size_of::<Header>()], geo)
    }

    /// The slot accessors (no check per access) place the last slot's words
    /// and payload at the end of an MPMC data area, wrap positions onto
    /// slots, refuse a payload longer than a slot's, and hand views without
    /// MPMC slots (a header-only probe) the static `NO_SLOTS` instead of
    /// bytes they do not have.
    #[test]
    fn slot_accessors_stay_inside_the_data_area() {
        let geo = Geometry {
            kind: Kind::Mpmc,
            capacity: 4,
            slot_size: 80,
            max_producers: 1,
            max_consumers: 1,
        };
        let m = Mem::heap(geo);
        let data = m.data_ptr() as usize;
        let at = |w: &AtomicU64| w as *const AtomicU64 as usize - data;
        assert_eq!(at(m.slot_word(3, SlotField::Seq)), 3 * 128);
        assert_eq!(at(m.slot_word(7, SlotField::Info)), 3 * 128 + 8);
        assert_eq!(m.slot_payload(7, 64) as usize - data, 3 * 128 + 16);
        assert!(3 * 128 + 16 + 64 <= geo.data_len() as usize);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.slot_payload(0, 65)));
        assert!(r.is_err(), "a payload longer than the slot's");

        let h = header_only(Kind::Mpmc);
        let w = h.slot_word(5, SlotField::Info);
        assert!(std::ptr::eq(w, &NO_SLOTS[1]));
    }

    /// Endpoint slots: a ring's are its table's, in the region before the
    /// data area (the last one too), one past them is refused; a view whose
    /// geometry has fewer than two (a header-only probe) gets two in
    /// `NO_ENDPOINTS`, which the SPSC rings' unchecked fixed slots rely on.
    #[test]
    fn endpoint_slots_stay_inside_the_table() {
        let geo = Geometry {
            kind: Kind::Mpmc,
            capacity: 4,
            slot_size: 80,
            max_producers: 3,
            max_consumers: 2,
        };
        let m = Mem::heap(geo);
        let base = m.header() as *const Header as usize;
        let at = |s: &EndpointSlot| s as *const EndpointSlot as usize - base;
        assert_eq!(at(m.endpoint(0)), geo.table_offset());
        assert_eq!(at(m.endpoint(4)), geo.table_offset() + 4 * 16);
        assert!(at(m.endpoint(4)) + 16 <= geo.data_offset());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.endpoint(5)));
        assert!(r.is_err(), "a slot past the table");

        let h = header_only(Kind::Spsc);
        assert!(std::ptr::eq(h.endpoint(1), &NO_ENDPOINTS[1]));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.endpoint(2)));
        assert!(r.is_err(), "a slot past the probe's two");
    }

    /// A header-only view (no table, no data: what `acquire::open_image`
    /// reads a header through) is built without panicking, and has no data
    /// word to hand out. (Found by the fuzzer's regression input: building
    /// it used to assert a data area of at least one word.)
    #[test]
    fn header_only_view_has_no_data_words() {
        let m = header_only(Kind::Spsc);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.word_ptr(0)));
        assert!(r.is_err(), "a word of an empty data area");
    }
}
