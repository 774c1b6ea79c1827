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

/// Established TCP connections (IPv4) of process `pid` whose local port is `port`: its clients, also when several
/// processes share the listening port (`SO_REUSEPORT`, where an HTTP request may reach any of them).
pub fn tcp_connections_on(pid: u32, port: u16) -> usize {
    let sockets: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        // sl, local_address, rem_address, st (01: established), …, inode (the 10th field)
        .filter(|fields| {
            fields.len() > 9
                && fields[1].ends_with(&local)
                && fields[3] == "01"
                && sockets.contains(fields[9])
        })
        .count()
}
