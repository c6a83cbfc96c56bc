//! The few system calls the transports and the runner share: the `EINTR`
//! retry, the monotonic clock, CPU time and CPU pinning, the shared mapping
//! of the reference transports; and what every descriptor-owning transport
//! implements.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A shared read-write mapping of the first `len` bytes of a descriptor,
/// unmapped on drop: the memory of the reference transports
/// ([`Floor`](crate::Floor), [`Limit`](crate::Limit)), which address it
/// themselves.
pub(crate) struct SharedMap {
    base: *mut u8,
    len: usize,
}

impl SharedMap {
    /// Maps `len` bytes of `fd` (which must have at least that many); the
    /// mapping outlives the descriptor.
    ///
    /// # Errors
    /// The `mmap` error.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedMap> {
        // SAFETY: a fresh shared mapping of the caller's descriptor; the
        // kernel picks the address; we check for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap {
            base: p.cast(),
            len,
        })
    }

    /// The first byte (page-aligned); `len` bytes from it are mapped for as
    /// long as `self` lives.
    pub(crate) fn base(&self) -> *mut u8 {
        self.base
    }

    /// The 8-byte word at byte `off`, as a std atomic (the reference
    /// transports deliberately use std's, not the library's loom shim).
    ///
    /// # Safety
    /// `off` is a multiple of 8 and `off + 8 <= len`, and every process
    /// accesses that word only atomically.
    #[allow(clippy::disallowed_types)]
    pub(crate) unsafe fn word(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        debug_assert!(off % 8 == 0 && off + 8 <= self.len);
        // SAFETY: in bounds and aligned (the caller; the mapping is
        // page-aligned), alive as long as `self`, accessed atomically only.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.base.add(off).cast()) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; its owner keeps
        // no references into it past its own life, which ends with ours.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Retries `f` while it fails with `EINTR`; converts -1 into the OS error.
pub(crate) fn retry(mut f: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let r = f();
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Two new descriptors from a call that fills an array of two ints and
/// returns 0 (`pipe2`, `socketpair`); -1 becomes the OS error.
pub(crate) fn fd_pair(
    make: impl FnOnce(*mut libc::c_int) -> libc::c_int,
) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1; 2];
    if make(fds.as_mut_ptr()) != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so both descriptors are open, and nothing
    // else in this process knows them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `AsFd`, `AsRawFd` and `From<$ty> for OwnedFd` (giving the descriptor
/// up, e.g. to hand it to another process) for a type whose `fd` field is
/// its `OwnedFd`.
macro_rules! owns_fd {
    ($($ty:ty),*) => {$(
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.fd.as_fd()
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.fd.as_raw_fd()
            }
        }

        impl From<$ty> for std::os::fd::OwnedFd {
            fn from(t: $ty) -> std::os::fd::OwnedFd {
                t.fd
            }
        }
    )*};
}
pub(crate) use owns_fd;

/// `CLOCK_MONOTONIC` in nanoseconds: comparable across processes, so a
/// parent can hand its children a measurement window.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User + system CPU time of this process, in nanoseconds.
pub fn cpu_ns() -> u64 {
    // SAFETY: rusage is plain old data; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
}

/// Pins the calling process to one CPU. Best effort: returns whether it
/// worked.
pub fn pin_to(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET only writes inside `set`; it bounds-checks `cpu`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu set of the size we pass; pid 0 = us.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as in `pin_to`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid out-pointer of the size we pass.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return vec![0];
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET only reads `set`; `c` is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}
