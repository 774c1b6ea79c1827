//! What tests and benchmarks read of a child process: CPU time, memory; and pinning it to a CPU.

use std::time::Duration;

/// The peak resident memory of process `pid` so far (`VmHWM`), in KiB.
pub fn memory_high_water_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(fields.iter().sum::<u64>() as f64 / ticks)
}

/// The resident memory of process `pid` now (`VmRSS`), in KiB.
pub fn memory_resident_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Pins every thread of process `pid` to `cpu` (best effort: says so when `taskset` is missing).
pub fn pin(pid: u32, cpu: u32) {
    let ok = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("(taskset unavailable: process {pid} not pinned)");
    }
}

/// Forks a child process that runs the real server with `config` (its listen address included), pinned to CPU 0,
/// with `publisher(hub)` spawned beside it; returns the child's pid. The child dies with this process. Call it while
/// this process is single-threaded (no runtime alive), as the benchmarks do between phases.
pub fn fork_server<F>(
    config: certstream::config::Config,
    publisher: impl FnOnce(certstream::hub::Hub) -> F,
) -> libc::pid_t
where
    F: std::future::Future<Output = ()> + 'static,
{
    // SAFETY: the caller keeps this process single-threaded here.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid > 0 {
        return pid;
    }
    // SAFETY: plain prctl: the server dies with the benchmark even if the benchmark is killed.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    pin_this_thread(0);
    crate::runtime::block_on(async move {
        let hub = certstream::hub::Hub::configured(&config);
        let server = certstream::server::Server::bind(config, hub.clone()).expect("bind");
        monoio::spawn(publisher(hub));
        let ctrl_c = monoio::utils::CtrlC::new().expect("signal handler");
        server.run(ctrl_c).await;
    });
    std::process::exit(0);
}

/// Pins the calling thread to `cpu` (best effort: says so when it cannot).
pub fn pin_this_thread(cpu: usize) {
    if let Err(error) = monoio::utils::bind_to_cpu_set(Some(cpu)) {
        eprintln!("could not pin to CPU {cpu}: {error}");
    }
}

/// Sends SIGTERM to the child `pid` and reaps it; returns how long it took to exit.
pub fn stop_child(pid: libc::pid_t) -> Duration {
    let started = std::time::Instant::now();
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
    started.elapsed()
}

/// The inode of the socket that accepted `client`'s connection on the server's side (both ends on 127.0.0.1),
/// from `/proc/net/tcp`; `None` until a process has accepted it (the kernel gives it an inode then).
pub fn accepted_socket_inode(client: &std::net::TcpStream) -> Option<u64> {
    let hex = |addr: std::net::SocketAddr| match addr {
        std::net::SocketAddr::V4(v4) => {
            format!(
                "{:08X}:{:04X}",
                u32::from_ne_bytes(v4.ip().octets()),
                v4.port()
            )
        }
        std::net::SocketAddr::V6(_) => panic!("a test connection on 127.0.0.1"),
    };
    // The server's end: local address = the client's peer, remote address = the client's local address.
    let (server_end, client_end) = (
        hex(client.peer_addr().ok()?),
        hex(client.local_addr().ok()?),
    );
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (*local == server_end && *remote == client_end)
            .then(|| inode.parse().ok())
            .flatten()
            .filter(|&inode| inode != 0)
    })
}

/// Whether process `pid` holds the socket `inode` among its open files.
pub fn holds_socket(pid: u32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str())
    })
}
