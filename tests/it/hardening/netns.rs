//! A network namespace made by a test, removed on drop (even when the test fails), with
//! many on-link IPv6 addresses on its loopback, and sockets opened inside it from this
//! process: a thread moves into the namespace (setns(2), through rustix: no unsafe) and
//! creates them; a socket stays in the namespace it was created in.
//!
//! Needs root and iproute2 (`ip`, tests/install-deps.sh). Without them the test fails,
//! saying what is missing: it never skips silently.

use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::TcpSocket;

/// The namespace's /64; the proxy takes `::1`, clients `::100` on.
const PREFIX: [u16; 4] = [0xfd00, 0x16, 0, 0];

/// A namespace of our own; dropped, it is deleted.
pub struct Netns {
    name: String,
}

/// Runs `ip ARGS` (with `stdin` fed, if any); panics with what is missing on failure.
fn ip(args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `ip` ({e}): this test needs iproute2 (see tests/install-deps.sh) \
                 and root, to make a network namespace with many IPv6 addresses"
            )
        });
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes())
            .expect("write to `ip -batch`");
    }
    let out = child.wait_with_output().expect("wait for `ip`");
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}; this test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) \
         and iproute2, to make a network namespace with many IPv6 addresses",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Netns {
    /// A new namespace with loopback up, the proxy's address `::1` and `clients` client
    /// addresses, all on one /64 (so each client is a host of its own for the proxy).
    pub fn create(clients: u16) -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "qqmail-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name], None);
        // From here on, dropping `ns` deletes the namespace.
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"], None);
        let mut batch = format!("addr add {}/64 dev lo nodad\n", Netns::proxy_ip());
        for n in 0..clients {
            batch.push_str(&format!(
                "addr add {}/64 dev lo nodad\n",
                Netns::client_ip(n)
            ));
        }
        ip(&["-n", &ns.name, "-batch", "-"], Some(&batch));
        ns
    }

    /// The address the proxy listens on.
    pub fn proxy_ip() -> IpAddr {
        let [a, b, c, d] = PREFIX;
        IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 1))
    }

    /// Client address `n`.
    pub fn client_ip(n: u16) -> IpAddr {
        let [a, b, c, d] = PREFIX;
        IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0x100 + n))
    }

    /// `ip netns exec NAME`: the words that run a program inside the namespace.
    pub fn exec_prefix(&self) -> [&str; 3] {
        ["netns", "exec", &self.name]
    }

    /// Runs `f` on a thread inside the namespace (for creating sockets there).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap_or_else(|e| panic!("setns into {path}: {e} (needs root)"));
                f()
            })
            .join()
            .expect("namespace thread")
        })
    }

    /// `n` IPv6 TCP sockets inside the namespace, unbound.
    pub fn sockets(&self, n: usize) -> Vec<TcpSocket> {
        self.enter(|| {
            (0..n)
                .map(|_| TcpSocket::new_v6().expect("socket in the namespace"))
                .collect()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also removes its addresses; processes still inside it
        // (the proxy is killed when its handle drops) keep it alive until they exit.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
