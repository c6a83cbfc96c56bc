//! Entry points for the cargo-fuzz targets in `fuzz/` (compiled only with
//! `--cfg fuzzing`, which cargo-fuzz sets). Not part of the public API.

use crate::acquire::{create_heap, open_image};
use crate::endpoint::{Endpoint, Front};
use crate::error::{Kind, OpenError};
use crate::header::{Spec, TypeInfo};
use crate::options::Options;
use crate::region::Mem;
use crate::{mpmc, spsc};

/// Attaches a `F` endpoint to `mem`.
fn attach<F: Front>(mem: Mem, opts: &Options, name: Option<&str>) -> Result<F, OpenError> {
    Endpoint::attach(mem, opts, name, TypeInfo::default()).map(F::from_endpoint)
}

/// Runs the open path's header validation over `image` (a whole segment's
/// bytes) and, if it passes, attaches an endpoint of kind `kind` to a heap
/// copy.
fn open_as<F: Front>(image: &[u8], kind: Kind) -> Result<F, OpenError> {
    let spec = Spec {
        kind,
        ty: TypeInfo::default(),
    };
    attach(open_image(image, &spec)?, &Options::new(), Some("<image>"))
}

/// [`open_as`] for an SPSC consumer.
pub fn open_spsc_image(image: &[u8]) -> Result<spsc::Consumer, OpenError> {
    open_as(image, Kind::Spsc)
}

/// [`open_as`] for an MPMC consumer.
pub fn open_mpmc_image(image: &[u8]) -> Result<mpmc::Consumer, OpenError> {
    open_as(image, Kind::Mpmc)
}

/// The bytes of a freshly created, valid segment for `opts` and `kind`: a
/// preamble the fuzzer can mutate past the magic and version checks.
pub fn valid_image(kind: Kind, opts: &Options) -> Vec<u8> {
    let spec = Spec {
        kind,
        ty: TypeInfo::default(),
    };
    image_of(&create_heap(&spec, opts).expect("valid options"))
}

/// The bytes of a heap region that nobody writes now.
fn image_of(mem: &Mem) -> Vec<u8> {
    let len = mem.geometry().total_size().unwrap() as usize;
    let mut out = vec![0u8; len];
    // SAFETY: the region is `len` bytes from its header, a heap allocation
    // `mem` keeps alive; no endpoint is attached to it (or the last one has
    // detached), so nobody writes it while we read it as bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (mem.header() as *const crate::layout::Header).cast::<u8>(),
            out.as_mut_ptr(),
            len,
        )
    };
    out
}

/// Size of a segment's header in bytes.
pub const HEADER_LEN: usize = size_of::<crate::layout::Header>();

/// A simulated peer stores `v` at byte `off` (8-aligned, in bounds) of the
/// SPSC ring behind `p`.
pub fn poke_spsc(p: &spsc::Producer, off: usize, v: u64) {
    p.mem().poke(off, v);
}

/// A simulated peer stores `v` at byte `off` of the MPMC ring behind `p`.
pub fn poke_mpmc(p: &mpmc::Producer, off: usize, v: u64) {
    p.mem().poke(off, v);
}

/// Total bytes of the region behind an SPSC endpoint.
pub fn spsc_len(p: &spsc::Producer) -> usize {
    p.mem().geometry().total_size().unwrap() as usize
}

/// Total bytes of the region behind an MPMC endpoint.
pub fn mpmc_len(p: &mpmc::Producer) -> usize {
    p.mem().geometry().total_size().unwrap() as usize
}

/// Byte offset of the data area (SPSC ring bytes or MPMC slots) in the region
/// behind an SPSC endpoint.
pub fn spsc_data_offset(p: &spsc::Producer) -> usize {
    p.mem().geometry().data_offset()
}

/// Byte offset of the data area in the region behind an MPMC endpoint.
pub fn mpmc_data_offset(p: &mpmc::Producer) -> usize {
    p.mem().geometry().data_offset()
}

/// Bytes from one MPMC slot to the next for a `slot_size` option: the slot
/// size rounded up to a cache line.
pub fn mpmc_slot_stride(slot_size: usize) -> usize {
    slot_size.next_multiple_of(crate::layout::SLOT_ALIGN as usize)
}

/// Byte offset of the endpoint table (the same for both kinds).
pub const TABLE_OFFSET: usize = 5 * crate::layout::LINE;

/// Byte offset of the producer (enqueue / write) cursor.
pub const PROD_OFFSET: usize = std::mem::offset_of!(crate::layout::Header, prod);

/// Byte offset of the consumer (dequeue / read) cursor.
pub const CONS_OFFSET: usize = std::mem::offset_of!(crate::layout::Header, cons);

/// Reads the 8-byte word at byte `off` of a region (8-aligned), as a peer
/// would see it: cursors, endpoint-table words or data-area words. Other
/// header words read as 0. Lets the fuzzers derive plausible hostile values
/// (a cursor plus a small delta) from the current ones.
fn peek(mem: &crate::region::Mem, off: usize) -> u64 {
    use crate::sync::Ordering;
    let geo = mem.geometry();
    let data = geo.data_offset();
    // Relaxed loads: a snapshot for choosing values, nothing is ordered by it.
    if off == PROD_OFFSET {
        mem.header().prod.load(Ordering::Relaxed)
    } else if off == CONS_OFFSET {
        mem.header().cons.load(Ordering::Relaxed)
    } else if off >= TABLE_OFFSET && off < TABLE_OFFSET + geo.endpoints() * 16 {
        let ep = mem.endpoint((off - TABLE_OFFSET) / 16);
        if off % 16 == 0 {
            u64::from(ep.state.load(Ordering::Relaxed))
                | u64::from(ep.pid.load(Ordering::Relaxed)) << 32
        } else {
            ep.claiming.load(Ordering::Relaxed)
        }
    } else if off >= data && ((off - data) as u64) + 8 <= geo.data_len() && off % 8 == 0 {
        mem.word((off - data) as u64).load(Ordering::Relaxed)
    } else {
        0
    }
}

/// The word at byte `off` of the SPSC ring behind `p` (see `peek`).
pub fn peek_spsc(p: &spsc::Producer, off: usize) -> u64 {
    peek(p.mem(), off)
}

/// The word at byte `off` of the MPMC ring behind `p` (see `peek`).
pub fn peek_mpmc(p: &mpmc::Producer, off: usize) -> u64 {
    peek(p.mem(), off)
}

/// Record-header tags of the SPSC ring (message and padding, for even and
/// odd laps) and slot kinds of the MPMC ring, so the fuzzers can forge
/// plausible words.
pub const SPSC_TAGS: [u32; 4] = [
    crate::layout::TAG_MSG,
    crate::layout::TAG_PAD,
    crate::layout::TAG_MSG ^ 1,
    crate::layout::TAG_PAD ^ 1,
];
/// MPMC info-word kinds: message, skip, abandoned.
pub const MPMC_KINDS: [u32; 3] = [
    crate::layout::KIND_MSG,
    crate::layout::KIND_SKIP,
    crate::layout::KIND_ABANDONED,
];

/// A simulated hostile peer: another view of a heap ring's region that can
/// read and scribble on any word of it while our endpoints (and their grants)
/// are in use.
pub struct Peer {
    mem: crate::region::Mem,
}

impl Peer {
    /// A peer of the heap SPSC ring behind `p`.
    ///
    /// # Panics
    /// If `p` is not a heap channel.
    pub fn of_spsc(p: &spsc::Producer) -> Peer {
        Peer {
            mem: p.mem().share().expect("a heap channel"),
        }
    }

    /// A peer of the heap MPMC ring behind `p`.
    ///
    /// # Panics
    /// If `p` is not a heap channel.
    pub fn of_mpmc(p: &mpmc::Producer) -> Peer {
        Peer {
            mem: p.mem().share().expect("a heap channel"),
        }
    }

    /// Stores `v` at byte `off` (8-aligned, in bounds) with a Relaxed store.
    pub fn poke(&self, off: usize, v: u64) {
        self.mem.poke(off, v);
    }

    /// The word at byte `off` (see `peek`).
    pub fn peek(&self, off: usize) -> u64 {
        peek(&self.mem, off)
    }

    /// Total bytes of the region.
    pub fn region_len(&self) -> usize {
        self.mem.geometry().total_size().unwrap() as usize
    }

    /// Byte offset of the data area.
    pub fn data_offset(&self) -> usize {
        self.mem.geometry().data_offset()
    }

    /// Bytes of the data area.
    pub fn data_len(&self) -> usize {
        self.mem.geometry().data_len() as usize
    }
}

/// The bytes of a valid segment for `kind` and `opts` after a producer sent
/// `msgs` (those that fit) and detached: a preamble with records or
/// published slots in it, so the fuzzer reaches the consumer's record and
/// slot validation, not only the header checks.
pub fn image_with_messages(kind: Kind, opts: &Options, msgs: &[&[u8]]) -> Vec<u8> {
    let spec = Spec {
        kind,
        ty: TypeInfo::default(),
    };
    let mem = create_heap(&spec, opts).expect("valid options");
    let view = mem.share().expect("heap regions can be shared");
    match kind {
        Kind::Spsc => {
            let mut p: spsc::Producer = attach(mem, opts, None).expect("fresh ring");
            for m in msgs {
                let _ = p.try_send(m);
            }
        }
        Kind::Mpmc => {
            let mut p: mpmc::Producer = attach(mem, opts, None).expect("fresh ring");
            for m in msgs {
                let _ = p.try_send(m);
            }
        }
    }
    image_of(&view)
}
