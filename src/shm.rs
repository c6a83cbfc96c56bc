//! Named shared-memory segments: `shm_open` under `/dev/shm`, permission and
//! size checks, the mapping, and the open-file-description locks that say
//! which endpoints are alive.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::ptr::NonNull;

use memmap2::MmapRaw;

use crate::error::OpenError;

/// Prefix of every shmq object under `/dev/shm`, so tools can find them.
pub const PREFIX: &str = "shmq.";

/// Longest user name accepted.
pub const MAX_NAME_LEN: usize = 200;

/// Checks a user-facing segment name against the rule: 1–200 bytes of
/// `[A-Za-z0-9._-]`, not starting with `.`.
///
/// # Errors
/// [`OpenError::InvalidName`] naming the broken part of the rule.
///
/// # Examples
/// ```
/// assert!(shmq::validate_name("orders").is_ok());
/// assert!(shmq::validate_name("../etc").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), OpenError> {
    let bad = |reason| {
        Err(OpenError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 200 bytes");
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("it contains a character outside [A-Za-z0-9._-]");
    }
    Ok(())
}

/// The object name passed to `shm_open`: `/shmq.NAME`.
pub(crate) fn os_name(name: &str) -> CString {
    // validate_name has excluded NUL bytes.
    CString::new(format!("/{PREFIX}{name}")).expect("validated names contain no NUL")
}

fn io_err(name: &str, op: &'static str, source: io::Error) -> OpenError {
    match source.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound {
            name: name.to_owned(),
        },
        Some(libc::EEXIST) => OpenError::AlreadyExists {
            name: name.to_owned(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::PermissionDenied {
            name: name.to_owned(),
            detail: format!("{op}: {source}"),
        },
        Some(libc::ELOOP) => OpenError::NotShmq {
            name: name.to_owned(),
            detail: "it is a symbolic link".into(),
        },
        Some(libc::ENOSPC) | Some(libc::ENOMEM) | Some(libc::EFBIG) => OpenError::NoSpace {
            name: name.to_owned(),
            size: 0,
        },
        _ => OpenError::Io {
            name: name.to_owned(),
            op,
            source,
        },
    }
}

fn shm_open(name: &str, flags: libc::c_int, mode: libc::mode_t) -> Result<OwnedFd, OpenError> {
    let c = os_name(name);
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let fd = unsafe { libc::shm_open(c.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io_err(name, "shm_open", io::Error::last_os_error()));
    }
    // SAFETY: shm_open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the segment `name` from `/dev/shm`. Endpoints that have it mapped
/// keep working; new opens fail with `NotFound`.
///
/// # Errors
/// [`OpenError::NotFound`] if there is no such segment, or the OS error.
///
/// # Examples
/// ```
/// # use shmq::{remove, OpenError};
/// assert!(matches!(remove("surely-not-there-42"), Err(OpenError::NotFound { .. })));
/// ```
pub fn remove(name: &str) -> Result<(), OpenError> {
    validate_name(name)?;
    let c = os_name(name);
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::shm_unlink(c.as_ptr()) } != 0 {
        return Err(io_err(name, "shm_unlink", io::Error::last_os_error()));
    }
    Ok(())
}

/// One open of a named segment: its own file description (so its own OFD
/// locks) and its own mapping.
pub(crate) struct Segment {
    name: String,
    file: File,
    map: MmapRaw,
    dev: u64,
    ino: u64,
}

/// What `Segment::create` and `Segment::open` need to know.
pub(crate) struct CreateParams {
    pub size: u64,
    pub mode: u32,
}

impl Segment {
    /// Creates `name` exclusively, sized and space-reserved, zero-filled, mapped.
    pub(crate) fn create(name: &str, p: &CreateParams) -> Result<Segment, OpenError> {
        validate_name(name)?;
        let fd = shm_open(
            name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            p.mode as libc::mode_t,
        )?;
        let file = File::from(fd);
        let cleanup = |e: OpenError| {
            let _ = remove(name);
            e
        };
        // The umask may have cleared bits the caller asked for; set exactly.
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::fchmod(file.as_raw_fd(), p.mode as libc::mode_t) } != 0 {
            return Err(cleanup(io_err(name, "fchmod", io::Error::last_os_error())));
        }
        let size = i64::try_from(p.size).map_err(|_| {
            cleanup(OpenError::InvalidOptions(format!(
                "segment size {} is too large",
                p.size
            )))
        })?;
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::ftruncate(file.as_raw_fd(), size) } != 0 {
            let e = io_err(name, "ftruncate", io::Error::last_os_error());
            return Err(cleanup(no_space(e, name, p.size)));
        }
        // Reserve the pages now, so a full /dev/shm fails here with a clear
        // error instead of SIGBUS on first touch later.
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size) };
        if rc != 0 {
            let e = io_err(name, "posix_fallocate", io::Error::from_raw_os_error(rc));
            return Err(cleanup(no_space(e, name, p.size)));
        }
        let seg = Self::map(name, file).map_err(cleanup)?;
        Ok(seg)
    }

    /// Opens an existing segment and checks what `fstat` can tell: a regular
    /// file, ours, not more permissive than `max_mode`, at least `min_size`.
    pub(crate) fn open(name: &str, max_mode: u32, min_size: u64) -> Result<Segment, OpenError> {
        validate_name(name)?;
        let fd = shm_open(name, libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0)?;
        let file = File::from(fd);
        let md = file.metadata().map_err(|e| io_err(name, "fstat", e))?;
        if !md.file_type().is_file() {
            return Err(OpenError::NotShmq {
                name: name.into(),
                detail: "it is not a regular file".into(),
            });
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if md.uid() != euid {
            return Err(OpenError::PermissionDenied {
                name: name.into(),
                detail: format!(
                    "it is owned by uid {}, not by us (uid {euid}); shmq only opens segments of the same user",
                    md.uid()
                ),
            });
        }
        let extra = md.mode() & 0o7777 & !max_mode;
        if extra != 0 {
            return Err(OpenError::PermissionDenied {
                name: name.into(),
                detail: format!(
                    "its mode {:o} grants bits {extra:o} beyond the allowed {max_mode:o}; someone else may write it",
                    md.mode() & 0o7777
                ),
            });
        }
        if md.len() < min_size {
            return Err(OpenError::NotShmq {
                name: name.into(),
                detail: format!(
                    "it has {} bytes, fewer than a header ({min_size})",
                    md.len()
                ),
            });
        }
        Self::map(name, file)
    }

    fn map(name: &str, file: File) -> Result<Segment, OpenError> {
        let md = file.metadata().map_err(|e| io_err(name, "fstat", e))?;
        let map = MmapRaw::map_raw(&file).map_err(|e| io_err(name, "mmap", e))?;
        Ok(Segment {
            name: name.to_owned(),
            file,
            map,
            dev: md.dev(),
            ino: md.ino(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn ptr(&self) -> NonNull<u8> {
        NonNull::new(self.map.as_mut_ptr()).expect("mmap never returns null")
    }

    /// Takes a write lock on `byte` of the file for this file description,
    /// without blocking. `Ok(false)` when someone else holds it.
    pub(crate) fn try_lock(&self, byte: u64) -> io::Result<bool> {
        let mut fl = flock(libc::F_WRLCK as libc::c_short, byte);
        // SAFETY: `fl` is a valid, initialised flock for the duration of the call.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
            _ => Err(e),
        }
    }

    /// Releases a lock taken with `try_lock`.
    pub(crate) fn unlock(&self, byte: u64) {
        let mut fl = flock(libc::F_UNLCK as libc::c_short, byte);
        // SAFETY: `fl` is a valid, initialised flock for the duration of the call.
        let _ = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    }

    /// Whether another file description (any process) holds a lock on `byte`.
    /// Our own description's locks never count.
    pub(crate) fn is_locked(&self, byte: u64) -> bool {
        let mut fl = flock(libc::F_WRLCK as libc::c_short, byte);
        // SAFETY: `fl` is a valid, initialised flock for the duration of the call.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        // On error we cannot tell; say "alive" so that we never declare a live
        // peer dead.
        rc != 0 || fl.l_type != libc::F_UNLCK as libc::c_short
    }

    /// `fstat` of the open file.
    pub(crate) fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// Unlinks the name if it still refers to this very segment (and not to a
    /// newer one created under the same name since).
    pub(crate) fn unlink_if_same(&self) {
        if let Ok(fd) = shm_open(
            &self.name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        ) {
            let f = File::from(fd);
            if let Ok(md) = f.metadata() {
                if md.dev() == self.dev && md.ino() == self.ino {
                    let _ = remove(&self.name);
                }
            }
        }
    }
}

fn flock(kind: libc::c_short, byte: u64) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    fl.l_pid = 0; // required for OFD locks
    fl
}

fn no_space(e: OpenError, name: &str, size: u64) -> OpenError {
    match e {
        OpenError::NoSpace { .. } => OpenError::NoSpace {
            name: name.to_owned(),
            size,
        },
        other => other,
    }
}

/// Names of every shmq segment currently in `/dev/shm` (without the prefix).
///
/// # Errors
/// The OS error if `/dev/shm` cannot be listed.
pub fn list() -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/dev/shm")? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str() {
            if let Some(rest) = n.strip_prefix(PREFIX) {
                out.push(rest.to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}
