//! Processes the benchmark starts: pinned to a core with `taskset`, stopped by PID when dropped,
//! and measured from `/proc` (process CPU time, resident memory, per-core busy time).

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child process pinned to `core`, killed (by PID) when dropped.
#[derive(Debug)]
pub struct Pinned {
    pub name: &'static str,
    child: Child,
}

impl Pinned {
    pub fn spawn(name: &'static str, core: usize, program: &Path, args: &[&str], log: &Path) -> anyhow::Result<Pinned> {
        Self::spawn_env(name, core, program, args, log, &[])
    }

    /// [`Pinned::spawn`] with extra environment variables.
    pub fn spawn_env(
        name: &'static str,
        core: usize,
        program: &Path,
        args: &[&str],
        log: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Pinned> {
        let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(core.to_string())
            .arg(program)
            .args(args)
            .env("SLUICE_BENCH_UPSTREAM_KEY", "bench-upstream-key")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {name} ({}) under taskset", program.display()))?;
        Ok(Pinned { name, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU time of the process so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        process_cpu(self.pid())
    }

    /// Resident set size in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        rss_of(self.pid())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Pinned {
    /// SIGTERM first, so a profiler wrapping the process can write its output and Sluice drains;
    /// SIGKILL if it is still there after 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of a process in bytes (`VmRSS` in `/proc/PID/status`).
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS missing")?;
    Ok(kb * 1024)
}

fn clock_ticks() -> u64 {
    // USER_HZ is 100 on every Linux the project runs on.
    100
}

/// CPU time of a process (all its threads) from `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the `(comm)` part; utime and stime are fields 14 and 15 (1-based).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).context("utime")?;
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).context("stime")?;
    Ok(Duration::from_millis((utime + stime) * 1000 / clock_ticks()))
}

/// Busy and total jiffies per core, from `/proc/stat`.
#[derive(Debug, Clone, Default)]
pub struct CoreTimes(pub Vec<(u64, u64)>);

impl CoreTimes {
    pub fn read() -> anyhow::Result<CoreTimes> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let mut cores = Vec::new();
        for line in stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")) {
            let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            cores.push((total - idle, total));
        }
        Ok(CoreTimes(cores))
    }

    /// Busy share of each core between `self` and `later`, 0.0–1.0.
    pub fn busy_since(&self, later: &CoreTimes) -> Vec<f64> {
        self.0
            .iter()
            .zip(&later.0)
            .map(|((b0, t0), (b1, t1))| {
                if t1 > t0 {
                    (b1 - b0) as f64 / (t1 - t0) as f64
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listening on {addr} after {within:?}")
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
