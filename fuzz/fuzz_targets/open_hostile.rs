//! Arbitrary bytes as a whole segment image, opened as an SPSC or MPMC
//! consumer and drained. With `preamble`, the image starts as a valid segment
//! (optionally holding messages) that the input then overwrites word by word
//! and with a byte splice, so the fuzzer gets past magic, version and
//! geometry checks. Opening and draining may only return `Ok` or errors:
//! never a panic, an out-of-bounds access, a hang or unbounded allocation.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmq::fuzzing::{self, MPMC_KINDS, SPSC_TAGS};
use shmq::{Error, Kind};

#[path = "common/hostile.rs"]
mod hostile;
use hostile::{Poke, Shape};

#[derive(Arbitrary, Debug)]
struct Input {
    mpmc: bool,
    preamble: Option<Preamble>,
    /// The whole image without a preamble, else spliced in at `splice_at`.
    bytes: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Preamble {
    /// SPSC capacity `64 << (x % 5)`; MPMC slots `2 << (x % 5)`.
    size_log: u8,
    /// MPMC slot size `24 + 8 * (x % 12)`.
    size_sel: u8,
    max_p: u8,
    max_c: u8,
    /// Lengths of messages a producer sent before detaching.
    msgs: Vec<u8>,
    /// Words overwritten (offsets and values biased as a peer's would be).
    words: Vec<Poke>,
    splice_at: u16,
    /// Grow or shrink the image by this many bytes (size checks).
    resize: i8,
}

fn image(input: &Input) -> Vec<u8> {
    let Some(pre) = &input.preamble else {
        return input.bytes.clone();
    };
    let kind = if input.mpmc { Kind::Mpmc } else { Kind::Spsc };
    let opts = match kind {
        Kind::Spsc => shmq::Options::new().capacity(64 << (pre.size_log % 5)),
        Kind::Mpmc => shmq::Options::new()
            .slots(2 << (pre.size_log % 5))
            .slot_size(24 + 8 * (pre.size_sel as usize % 12))
            .max_producers(1 + u32::from(pre.max_p % 3))
            .max_consumers(1 + u32::from(pre.max_c % 3)),
    };
    let payload: Vec<Vec<u8>> = pre
        .msgs
        .iter()
        .enumerate()
        .map(|(i, &l)| vec![i as u8; l as usize])
        .collect();
    let refs: Vec<&[u8]> = payload.iter().map(|v| &v[..]).collect();
    let mut img = fuzzing::image_with_messages(kind, &opts, &refs);
    let data_offset = {
        // Same formula as the crate's geometry: header, then the table
        // rounded up to 128 bytes.
        let eps = match kind {
            Kind::Spsc => 2,
            Kind::Mpmc => (2 + pre.max_p % 3 + pre.max_c % 3) as usize,
        };
        640 + (eps * 16).div_ceil(128) * 128
    };
    let shape = Shape {
        total: img.len(),
        data_offset,
        data_len: img.len() - data_offset,
        endpoints: match kind {
            Kind::Spsc => 2,
            Kind::Mpmc => (2 + pre.max_p % 3 + pre.max_c % 3) as usize,
        },
        slots: match kind {
            Kind::Spsc => None,
            Kind::Mpmc => {
                let n = 2u64 << (pre.size_log % 5);
                let size = 24 + 8 * (pre.size_sel as usize % 12);
                Some((n, fuzzing::mpmc_slot_stride(size) as u64))
            }
        },
        tags: match kind {
            Kind::Spsc => &SPSC_TAGS,
            Kind::Mpmc => &MPMC_KINDS,
        },
    };
    for w in &pre.words {
        let snapshot = img.clone();
        let peek =
            |off: usize| -> u64 { u64::from_le_bytes(snapshot[off..off + 8].try_into().unwrap()) };
        let off = shape.offset(w.at, &peek);
        let v = shape.value(w.val, off, &peek);
        img[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    let at = pre.splice_at as usize % (img.len() + 1);
    let end = (at + input.bytes.len()).min(img.len());
    img[at..end].copy_from_slice(&input.bytes[..end - at]);
    let new_len = (img.len() as isize + pre.resize as isize).max(0) as usize;
    img.resize(new_len, 0);
    img
}

/// Drains consumer `$c` with `try_recv` (and `try_recv_into`, starting
/// with a `$buf`-byte buffer) until an error; fails if it returns more than
/// `$bound` messages (what the ring can hold, and a little).
macro_rules! drain {
    ($c:ident, $bound:expr, $buf:expr) => {{
        let bound = $bound;
        let mut c = $c;
        let max = c.max_message_len();
        let mut buf = vec![0u8; $buf(max)];
        for i in 0.. {
            assert!(i <= bound, "more than {bound} messages from the ring");
            let r = if i % 3 == 2 {
                c.try_recv_into(&mut buf)
                    .map(|n| buf[..n].iter().map(|&b| b as u64).sum::<u64>())
            } else {
                c.try_recv().map(|g| {
                    assert!(g.len() <= max, "message of {} bytes > max {max}", g.len());
                    g.iter().map(|&b| b as u64).sum::<u64>()
                })
            };
            match r {
                Ok(_) => {}
                Err(Error::BufferTooSmall { .. }) => buf.resize(max, 0),
                Err(Error::Empty | Error::Disconnected | Error::Corrupted(_)) => break,
                Err(e) => panic!("unexpected error from a drained image: {e:?}"),
            }
        }
    }};
}

fn drain_spsc(c: shmq::spsc::Consumer) {
    drain!(c, c.capacity() / 8 + 2, |_| 64)
}

fn drain_mpmc(c: shmq::mpmc::Consumer) {
    drain!(c, c.slots() + 2, |max| max)
}

fuzz_target!(|input: Input| {
    let img = image(&input);
    if input.mpmc {
        if let Ok(c) = fuzzing::open_mpmc_image(&img) {
            drain_mpmc(c);
        }
    } else if let Ok(c) = fuzzing::open_spsc_image(&img) {
        drain_spsc(c);
    }
});
