//! CPU time per call of the processes on each side of a comparison, read from `/proc`: the
//! gateway process (berth, a peer, bare rmcp) and the stdio server behind it. Throughput ratios
//! on a 2-core machine are CPU-share ratios (the load generator, the gateway and the server all
//! compete for the same cores); CPU per call says what each process itself costs.

use std::time::Duration;

use crate::stats::Run;

/// Which processes to charge, sampled before and after a round. The load generator (this
/// process) is always charged as the client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    /// The gateway process (its own threads only), if the side has one.
    pub(crate) gateway: Option<u32>,
    /// The stdio server's processes.
    pub(crate) server: Servers,
}

/// Where a side's stdio server runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Servers {
    /// In this process (`Probe::gateway` is the server too), or out of sight (a container's
    /// processes belong to the engine, not to berth).
    Unseen,
    /// This process.
    Pid(u32),
    /// Every descendant of this process (the servers a gateway spawned, through a shell or not).
    DescendantsOf(u32),
}

/// CPU time consumed so far, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct Sample {
    client: u64,
    gateway: Option<u64>,
    server: Option<u64>,
}

impl Probe {
    fn sample(&self) -> Sample {
        let server = match self.server {
            Servers::Unseen => None,
            Servers::Pid(pid) => Some(ticks(pid)),
            Servers::DescendantsOf(pid) => Some(descendants(pid).into_iter().map(ticks).sum()),
        };
        Sample { client: ticks(std::process::id()), gateway: self.gateway.map(ticks), server }
    }

    /// Runs `round` and charges it the CPU time each process took meanwhile.
    pub(crate) async fn measure(&self, round: impl Future<Output = anyhow::Result<Run>>) -> anyhow::Result<Run> {
        let before = self.sample();
        let mut run = round.await?;
        let after = self.sample();
        let per_call = |before: Option<u64>, after: Option<u64>| {
            let (before, after) = (before?, after?);
            (run.calls > 0).then(|| tick().as_secs_f64() * 1e6 * after.saturating_sub(before) as f64 / run.calls as f64)
        };
        run.client_us = per_call(Some(before.client), Some(after.client));
        run.gateway_us = per_call(before.gateway, after.gateway);
        run.server_us = per_call(before.server, after.server);
        Ok(run)
    }
}

/// One clock tick of `/proc/<pid>/stat`.
fn tick() -> Duration {
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1);
    Duration::from_secs_f64(1.0 / per_sec as f64)
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces).
fn stat_fields(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.split(' ').map(str::to_owned).collect()))
        .unwrap_or_default()
}

/// User plus system time of every thread of `pid`, in clock ticks (0 when it is gone).
fn ticks(pid: u32) -> u64 {
    let fields = stat_fields(pid);
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// Every live descendant of `root`.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| Some((pid, stat_fields(pid).get(1)?.parse::<u32>().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        next += 1;
    }
    found.remove(0);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_descendant_is_charged_as_the_server() {
        // A shell that spins, under a shell that waits: a grandchild, as a peer's server is.
        use std::os::unix::process::CommandExt as _;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sh -c 'while :; do :; done'"])
            .process_group(0)
            .spawn()
            .unwrap();
        let me = std::process::id();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(descendants(me).len() >= 2, "the shell and its child");
        let probe = Probe { gateway: Some(me), server: Servers::DescendantsOf(me) };
        let round = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(Run { calls: 1, ..Run::default() })
        };
        let run = probe.measure(round).await.unwrap();
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
        assert!(run.server_us.unwrap() > 0.0, "{run:?}");
        assert!(run.gateway_us.is_some() && run.client_us.is_some());
        let unseen = Probe { gateway: None, server: Servers::Unseen }
            .measure(async { Ok(Run { calls: 1, ..Run::default() }) })
            .await
            .unwrap();
        assert_eq!((unseen.gateway_us, unseen.server_us), (None, None));
        assert!(unseen.client_us.is_some(), "the load generator is always charged");
    }
}
