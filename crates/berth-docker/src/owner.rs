//! Who a container belongs to: the deployment of berth that made it, and the run (one berth
//! process, from start to exit) that uses it, with what tells whether that run still lives.
//! Written as labels on every container, read back by sweeps ([`crate::Sweep`]).

use std::collections::HashMap;

/// The label naming the deployment: sweeps look at their own deployment's containers only.
pub(crate) const LABEL_DEPLOYMENT: &str = "berth.deployment";
/// The label naming the run that created the container.
pub(crate) const LABEL_RUN: &str = "berth.run";
/// The label naming the container that run's berth ran in, when the engine knew it.
pub(crate) const LABEL_RUN_CONTAINER: &str = "berth.run.container";
/// The label naming the pid namespace that run's berth ran in (boot id and namespace).
pub(crate) const LABEL_RUN_PID_NAMESPACE: &str = "berth.run.pid_namespace";
/// The label holding that run's process id, within its pid namespace.
pub(crate) const LABEL_RUN_PID: &str = "berth.run.pid";
/// The label holding that process's start time (clock ticks after boot), which tells a reused
/// pid from the original.
pub(crate) const LABEL_RUN_PID_START: &str = "berth.run.pid_start";

/// The berth that creates containers: its deployment and this run of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    deployment: String,
    run: Run,
}

impl Owner {
    /// The owner of the containers `run` creates for `deployment`, a name that stays the same
    /// across restarts of one deployment and differs between deployments.
    pub fn new(deployment: impl Into<String>, run: Run) -> Owner {
        Owner { deployment: deployment.into(), run }
    }

    /// The deployment's name (label `berth.deployment`).
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// This run.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// The labels of a container this owner creates.
    pub(crate) fn labels(&self) -> Vec<(String, String)> {
        let mut labels =
            vec![(LABEL_DEPLOYMENT.to_owned(), self.deployment.clone()), (LABEL_RUN.to_owned(), self.run.id.clone())];
        if let Some(container) = &self.run.container {
            labels.push((LABEL_RUN_CONTAINER.to_owned(), container.clone()));
        }
        if let Some(process) = &self.run.process {
            labels.push((LABEL_RUN_PID_NAMESPACE.to_owned(), process.namespace.clone()));
            labels.push((LABEL_RUN_PID.to_owned(), process.pid.to_string()));
            labels.push((LABEL_RUN_PID_START.to_owned(), process.start.to_string()));
        }
        labels
    }
}

/// One run of berth: a process from its start to its exit, and where to look to know whether it
/// still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Unique to the run (label `berth.run`).
    pub id: String,
    /// The id of the container berth runs in, when the engine knows it
    /// ([`crate::Engine::own_container`]): that run lives at most as long as the container runs.
    pub container: Option<String>,
    /// The process, when `/proc` tells.
    pub process: Option<ProcessMark>,
}

impl Run {
    /// This process's run: a fresh id, the container it runs in (`container`, from
    /// [`crate::Engine::own_container`]) and its [`ProcessMark`].
    pub fn current(container: Option<String>) -> Run {
        Run { id: uuid::Uuid::new_v4().simple().to_string(), container, process: ProcessMark::current() }
    }

    /// The run recorded in a container's labels; `None` when the labels are not those of a run
    /// (a container made by an older berth, or by hand).
    pub(crate) fn from_labels(labels: &HashMap<String, String>) -> Option<Run> {
        let id = labels.get(LABEL_RUN).filter(|id| !id.is_empty())?.clone();
        let container = labels.get(LABEL_RUN_CONTAINER).filter(|c| !c.is_empty()).cloned();
        let process = match (
            labels.get(LABEL_RUN_PID_NAMESPACE),
            labels.get(LABEL_RUN_PID).and_then(|p| p.parse().ok()),
            labels.get(LABEL_RUN_PID_START).and_then(|s| s.parse().ok()),
        ) {
            (Some(namespace), Some(pid), Some(start)) if !namespace.is_empty() => {
                Some(ProcessMark { namespace: namespace.clone(), pid, start })
            }
            _ => None,
        };
        Some(Run { id, container, process })
    }
}

/// A process as `/proc` knows it: which pid namespace of which boot, its pid there, and when it
/// started, so that a pid reused by another process later is not taken for the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessMark {
    /// `<boot id>/<pid namespace>` (`/proc/sys/kernel/random/boot_id`, `/proc/self/ns/pid`):
    /// pids are comparable only between processes with the same one.
    pub namespace: String,
    /// The process id within that namespace.
    pub pid: u32,
    /// The start time of the process, in clock ticks after boot (`/proc/<pid>/stat`, field 22).
    pub start: u64,
}

impl ProcessMark {
    /// This process's mark; `None` where `/proc` does not tell (not Linux).
    pub fn current() -> Option<ProcessMark> {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let pid = std::process::id();
        let (_, start) = crate::liveness::parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(ProcessMark { namespace: format!("{}/{}", boot.trim(), namespace.display()), pid, start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(container: Option<&str>, process: bool) -> Run {
        Run {
            id: "r1".to_owned(),
            container: container.map(str::to_owned),
            process: process.then(|| ProcessMark { namespace: "boot/pid:[1]".to_owned(), pid: 42, start: 7 }),
        }
    }

    #[test]
    fn runs_survive_their_labels() {
        for run in [run(None, false), run(Some("c0ffee"), false), run(None, true), run(Some("c0ffee"), true)] {
            let owner = Owner::new("dep", run.clone());
            let labels: HashMap<String, String> = owner.labels().into_iter().collect();
            assert_eq!(labels[LABEL_DEPLOYMENT], "dep");
            assert_eq!(Run::from_labels(&labels), Some(run));
        }
    }

    #[test]
    fn labels_that_are_not_a_run_are_none_and_partial_marks_are_dropped() {
        let labels = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        assert_eq!(Run::from_labels(&labels(&[("berth.owner", "host")])), None, "an older berth's container");
        assert_eq!(Run::from_labels(&labels(&[(LABEL_RUN, "")])), None);
        let partial = labels(&[(LABEL_RUN, "r1"), (LABEL_RUN_PID_NAMESPACE, "ns"), (LABEL_RUN_PID, "x")]);
        assert_eq!(Run::from_labels(&partial), Some(run(None, false)));
    }

    #[test]
    fn this_process_has_a_mark_on_linux() {
        let mark = ProcessMark::current().expect("/proc answers");
        assert_eq!(mark.pid, std::process::id());
        assert!(mark.namespace.contains("/pid:["), "{}", mark.namespace);
        assert_eq!(ProcessMark::current(), Some(mark), "the mark of a process does not change");
    }
}
