//! `process.terminal`: a pty whose master goes to the engine over
//! `--console-socket` (SCM_RIGHTS, as runc sends it) and whose slave becomes
//! the monitor's stdio, so the guest's serial console is the container's
//! terminal.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::error::OciError;

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub name: String,
}

pub fn open_pty() -> Result<Pty, OciError> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: all pointers are valid for the call; name has room for any
    // /dev/pts path.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            name.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(OciError::sys("cannot open a pty for the console"));
    }
    // SAFETY: openpty succeeded, so both fds are open and now ours alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fd is open; FD_CLOEXEC keeps it out of unrelated children.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: openpty wrote a NUL-terminated string into `name`.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok(Pty {
        master,
        slave,
        name,
    })
}

/// Sends `fd` over the unix socket at `socket`, with `name` as the payload
/// (go-runc names the received file after it).
pub fn send_fd(socket: &Path, fd: &OwnedFd, name: &str) -> Result<(), OciError> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| OciError::io("cannot connect to the console socket", socket, e))?;
    let payload = name.as_bytes();
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let raw = fd.as_raw_fd();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msg points at live buffers of the stated sizes for the call;
    // the cmsg header lies within `control`, which CMSG_SPACE sized.
    let rc = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(OciError::Usage(
                "cannot build the SCM_RIGHTS message".into(),
            ));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::c_int, raw);
        libc::sendmsg(stream.as_raw_fd(), &msg, 0)
    };
    if rc < 0 {
        return Err(OciError::sys(format!(
            "cannot send the console to {}",
            socket.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_master_arrives_and_carries_the_slave_output() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("console.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let pty = open_pty().unwrap();
        assert!(pty.name.starts_with("/dev/pts/"), "{}", pty.name);
        send_fd(&sock, &pty.master, &pty.name).unwrap();
        drop(pty.master);

        let (conn, _) = listener.accept().unwrap();
        let mut name = [0u8; 128];
        let mut iov = libc::iovec {
            iov_base: name.as_mut_ptr() as *mut libc::c_void,
            iov_len: name.len(),
        };
        let mut control = [0u8; 64];
        let received = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = control.len() as _;
            let n = libc::recvmsg(conn.as_raw_fd(), &mut msg, 0);
            assert!(n > 0);
            assert_eq!(&name[..n as usize], pty.name.as_bytes());
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            assert!(!cmsg.is_null());
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
            std::fs::File::from_raw_fd(fd)
        };
        let mut slave = std::fs::File::from(pty.slave);
        slave.write_all(b"guest says hi\n").unwrap();
        let mut master = received;
        let mut buf = [0u8; 64];
        let n = master.read(&mut buf).unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).contains("guest says hi"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}
