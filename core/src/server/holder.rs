//! Who holds a TCP port: a busy port named by the process listening on it (`pid 4242
//! (nginx)`), read from Linux's `/proc` — the socket's inode from `/proc/net/tcp{,6}`, then the
//! process whose file descriptors include it. Best effort: elsewhere, or without permission to
//! read other processes' descriptors, the answer is `None` and the error says "another process".

use std::fs;
use std::net::SocketAddr;

/// The listening socket's inode for `port`, if any.
fn listening_inode(port: u16) -> Option<String> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is `HEXIP:HEXPORT`; state 0A is LISTEN; the inode is field 9.
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let p = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if p == Some(port) && *state == "0A" {
                return Some((*inode).to_owned());
            }
        }
    }
    None
}

/// `pid N (name)` of the process listening on `addr`'s port.
pub fn port_holder(addr: SocketAddr) -> Option<String> {
    let inode = listening_inode(addr.port())?;
    let wanted = format!("socket:[{inode}]");
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == wanted));
        if holds {
            let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some(format!("pid {pid} ({})", comm.trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_this_process_for_a_port_it_listens_on() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let who = port_holder(addr).unwrap_or_default();
        if std::path::Path::new("/proc/net/tcp").exists() {
            assert!(
                who.starts_with(&format!("pid {} ", std::process::id())),
                "{who}"
            );
        }
    }
}
