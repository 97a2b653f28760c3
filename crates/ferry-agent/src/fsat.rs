//! File operations for a root process working in trees that other users can change while it
//! works: everything is done through a descriptor of the very inode that was checked, never by
//! path after the check.
//!
//! - Directories are opened `O_DIRECTORY | O_NOFOLLOW` relative to their parent's descriptor, so
//!   a directory swapped for a symlink is not entered.
//! - Other entries are opened `O_PATH | O_NOFOLLOW`: no open of the file itself (no side effect
//!   on devices or FIFOs, no lease break), and the descriptor names that inode whatever happens to
//!   the name afterwards. Owner and group change through `fchownat(fd, "", AT_EMPTY_PATH)`; mode
//!   and ACL xattrs, which Linux offers no `O_PATH` call for, through `/proc/self/fd/N`, a magic
//!   link the kernel resolves to the descriptor's own inode (never re-resolved by name).
//! - The paths an operator gives are opened by [`open_parent`], which follows a symlink only
//!   when root owns it and the directory holding it (so no other user can have put it there).

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, OFlags, Stat, Uid, XattrFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// What the engine needs of an inode's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub nlink: u64,
    /// `st_ctime` in ns: changes with every rename in a directory (and cannot be set by a user).
    pub ctime: i128,
}

impl Meta {
    // The field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    pub fn of(st: &Stat) -> Meta {
        Meta {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode as u32,
            nlink: st.st_nlink as u64,
            ctime: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec as i64),
        }
    }
    pub fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.mode as _)
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == FileType::Directory
    }
    pub fn is_symlink(&self) -> bool {
        self.kind() == FileType::Symlink
    }
    pub fn is_file(&self) -> bool {
        self.kind() == FileType::RegularFile
    }
    pub fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// An open inode: a directory opened for reading, or any other entry opened `O_PATH`.
pub struct Node {
    fd: OwnedFd,
    /// Opened for reading (a directory): the `f*` calls work on it directly.
    real: bool,
}

impl Node {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn stat(&self) -> std::io::Result<Meta> {
        Ok(Meta::of(&rustix::fs::fstat(&self.fd)?))
    }

    /// `/proc/self/fd/N` of this descriptor.
    fn magic(&self) -> OsString {
        magic_path(self.fd.as_fd(), None)
    }

    pub fn get_xattr(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        if self.real {
            read_xattr(|buf| rustix::fs::fgetxattr(&self.fd, name, buf))
        } else {
            let p = self.magic();
            read_xattr(|buf| rustix::fs::getxattr(p.as_os_str(), name, buf))
        }
    }

    pub fn set_xattr(&self, name: &str, value: Option<&[u8]>) -> std::io::Result<()> {
        let r = match (value, self.real) {
            (Some(v), true) => rustix::fs::fsetxattr(&self.fd, name, v, XattrFlags::empty()),
            (Some(v), false) => {
                rustix::fs::setxattr(self.magic().as_os_str(), name, v, XattrFlags::empty())
            }
            (None, true) => rustix::fs::fremovexattr(&self.fd, name),
            (None, false) => rustix::fs::removexattr(self.magic().as_os_str(), name),
        };
        match r {
            Err(Errno::NODATA) if value.is_none() => Ok(()),
            r => r.map_err(Into::into),
        }
    }

    /// Sets an xattr, or removes it (`None`); whether anything changed (a removal of one that
    /// is not there changes nothing).
    pub fn put_xattr(&self, name: &str, value: Option<&[u8]>) -> std::io::Result<bool> {
        if value.is_some() {
            return self.set_xattr(name, value).map(|()| true);
        }
        let r = if self.real {
            rustix::fs::fremovexattr(&self.fd, name)
        } else {
            rustix::fs::removexattr(self.magic().as_os_str(), name)
        };
        match r {
            Ok(()) => Ok(true),
            Err(Errno::NODATA) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes owner and group of this inode (a symlink itself, not what it points to).
    pub fn chown(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        rustix::fs::chownat(
            &self.fd,
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH,
        )
        .map_err(Into::into)
    }

    /// Sets the permission bits (never called on a symlink).
    pub fn chmod(&self, mode: u32) -> std::io::Result<()> {
        let m = Mode::from_raw_mode((mode & 0o7777) as _);
        if self.real {
            rustix::fs::fchmod(&self.fd, m).map_err(Into::into)
        } else {
            rustix::fs::chmod(self.magic().as_os_str(), m).map_err(Into::into)
        }
    }
}

/// `/proc/self/fd/N`, or `/proc/self/fd/N/NAME` for an entry of the directory `N`.
fn magic_path(fd: BorrowedFd<'_>, name: Option<&OsStr>) -> OsString {
    let mut p = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(n) = name {
        p.push(b'/');
        p.extend_from_slice(n.as_bytes());
    }
    OsString::from_vec(p)
}

fn read_xattr(
    mut get: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match get(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::NODATA) | Err(Errno::OPNOTSUPP) => return Ok(None),
            Err(Errno::RANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Opens the directory `name` of `parent` for reading, refusing a symlink.
pub fn open_dir(parent: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<Node> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    Ok(Node { fd, real: true })
}

/// Opens the entry `name` of `parent` as `O_PATH`, not following a symlink.
pub fn open_entry(parent: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<Node> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Node { fd, real: false })
}

/// Opens `path` as `O_PATH` without following its last component (the kernel resolves the rest;
/// callers check the inode they get).
pub fn open_path(path: &Path) -> std::io::Result<Node> {
    open_entry(CWD, path.as_os_str())
}

/// `lstat` of the entry `name` of the directory `dir`.
pub fn stat_entry(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<Meta> {
    Ok(Meta::of(&rustix::fs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// An xattr of the entry `name` of the directory `dir`, without following a symlink there: one
/// look-up through the directory's own descriptor (no path above it is resolved again).
pub fn entry_xattr(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    attr: &str,
) -> std::io::Result<Option<Vec<u8>>> {
    let p = magic_path(dir, Some(name));
    read_xattr(|buf| rustix::fs::lgetxattr(p.as_os_str(), attr, buf))
}

/// The names in a directory (without `.` and `..`).
pub fn list(dir: BorrowedFd<'_>) -> std::io::Result<Vec<OsString>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsString::from_vec(n.to_vec()));
        }
    }
    Ok(out)
}

/// Whether `/proc/self/fd` is procfs (the magic links are only trusted there).
pub fn check_procfs() -> Result<(), String> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    match rustix::fs::statfs("/proc/self/fd") {
        #[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between architectures
        Ok(s) if s.f_type as i64 == PROC_SUPER_MAGIC => Ok(()),
        Ok(_) => Err("/proc is not procfs: re-permissioning changes files through /proc/self/fd and refuses to run without it".into()),
        Err(e) => Err(format!("/proc/self/fd: {e} (re-permissioning needs procfs mounted on /proc)")),
    }
}

/// Raises the soft limit of open descriptors to the hard one; returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (l.current, l.maximum)
        && cur < max
    {
        l.current = Some(max);
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(1 << 20)
}

/// Opens the directory holding `path` and returns it with the last name, following symlinks on
/// the way only where root owns the link and the directory it is in, and no one else may write
/// that directory: a user who owns a directory on the path cannot redirect it elsewhere by
/// swapping it for a symlink. `..` is refused (give the path without it).
pub fn open_parent(path: &Path) -> Result<(Node, OsString), String> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("the current directory: {e}"))?
            .join(path)
    };
    let show = |p: &Path| p.display().to_string();
    let mut pending: Vec<OsString> = Vec::new();
    for c in abs.components() {
        match c {
            Component::Normal(n) => pending.push(n.to_os_string()),
            Component::ParentDir => {
                return Err(format!("{}: give the path without `..`", show(path)));
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let Some(last) = pending.pop() else {
        return Err(format!(
            "{}: the file system root cannot be re-permissioned",
            show(path)
        ));
    };
    let open_root = || open_dir(CWD, OsStr::new("/")).map_err(|e| format!("/: {e}"));
    let mut cur = open_root()?;
    let mut at = PathBuf::from("/");
    // Components still to walk, in reverse so that a symlink's target can be pushed in front.
    let mut todo: Vec<OsString> = pending.into_iter().rev().collect();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == "." || name.is_empty() {
            continue;
        }
        if name == ".." {
            return Err(format!(
                "{}: a symlink on the way leads through `..`; give the resolved path",
                show(path)
            ));
        }
        let here = at.join(&name);
        let m = stat_entry(cur.fd(), &name).map_err(|e| format!("{}: {e}", show(&here)))?;
        if m.is_symlink() {
            let dir = cur.stat().map_err(|e| format!("{}: {e}", show(&at)))?;
            if m.uid != 0 || dir.uid != 0 || dir.mode & 0o022 != 0 {
                return Err(format!(
                    "{}: a symlink owned by uid {} in a directory {}; ferry follows symlinks on the way to a path only where root owns both and no one else may write the directory (give the resolved path)",
                    show(&here),
                    m.uid,
                    if dir.uid != 0 {
                        format!("owned by uid {}", dir.uid)
                    } else {
                        "others may write".into()
                    }
                ));
            }
            links += 1;
            if links > 40 {
                return Err(format!("{}: too many levels of symlinks", show(path)));
            }
            let target = rustix::fs::readlinkat(cur.fd(), &name, Vec::new())
                .map_err(|e| format!("{}: {e}", show(&here)))?;
            let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
            if target.is_absolute() {
                cur = open_root()?;
                at = PathBuf::from("/");
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => todo.push(n.to_os_string()),
                    Component::ParentDir => todo.push("..".into()),
                    _ => {}
                }
            }
            continue;
        }
        cur = open_dir(cur.fd(), &name).map_err(|e| format!("{}: {e}", show(&here)))?;
        at = here;
    }
    Ok((cur, last))
}
