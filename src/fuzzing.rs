//! Entry points for the cargo-fuzz targets in `fuzz/` (compiled only with
//! `--cfg fuzzing`, which cargo-fuzz sets). Not part of the public API.

use crate::endpoint::{self, Spec, TypeInfo};
use crate::error::OpenError;
use crate::layout::Kind;
use crate::options::Options;
use crate::{mpmc, spsc};

/// Runs the open path's header validation over `image` (a whole segment's
/// bytes) and, if it passes, attaches an SPSC consumer to a heap copy.
pub fn open_spsc_image(image: &[u8]) -> Result<spsc::Consumer, OpenError> {
    let spec = Spec {
        kind: Kind::Spsc,
        ty: TypeInfo::default(),
    };
    let mem = endpoint::open_image(image, &spec)?;
    spsc::Consumer::from_mem(mem, &Options::new(), "<image>")
}

/// As [`open_spsc_image`], for an MPMC consumer.
pub fn open_mpmc_image(image: &[u8]) -> Result<mpmc::Consumer, OpenError> {
    let spec = Spec {
        kind: Kind::Mpmc,
        ty: TypeInfo::default(),
    };
    let mem = endpoint::open_image(image, &spec)?;
    mpmc::Consumer::from_mem(mem, &Options::new(), "<image>")
}

/// The bytes of a freshly created, valid segment for `opts` and `kind`: a
/// preamble the fuzzer can mutate past the magic and version checks.
pub fn valid_image(kind: Kind, opts: &Options) -> Vec<u8> {
    let spec = Spec {
        kind,
        ty: TypeInfo::default(),
    };
    let mem = endpoint::create_heap(&spec, opts).expect("valid options");
    let len = mem.geometry().total_size().unwrap() as usize;
    let mut out = vec![0u8; len];
    // SAFETY: the region is `len` bytes from its header (a heap allocation
    // we own, with no other endpoint attached); reading it as bytes is fine.
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
